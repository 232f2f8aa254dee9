#!/usr/bin/env bash
# Tune batching on the real server (each configuration's knee under open-loop Poisson load, by
# the shared method), start the server with the tuned file, load-test it at 80 % of the chosen
# knee, and leave both reports under bench/results/. Arguments pass through to both commands'
# image options (e.g. --width 1920 --height 1080). Environment: P95_SLA_MS (200), BATCH_SIZES
# (1,2,4,8), QUEUE_DELAYS_MS (2,10), WINDOW_S (30) and WARMUP_S (5) per measured window, RATE
# (the load test's rate; default 80 % of the tuned knee), OUT_DIR (bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SLA=${P95_SLA_MS:-200}
WINDOW=${WINDOW_S:-30}
tag=$([ "${USE_GPU:-true}" != false ] && $BIN/python -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' && echo gpu || echo cpu)
out=${OUT_DIR:-bench/results}/tuning_${tag}_$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$out"
$BIN/hearthwatch tune --batch-sizes "${BATCH_SIZES:-1,2,4,8}" --queue-delays-ms "${QUEUE_DELAYS_MS:-2,10}" \
  --window "$WINDOW" --warmup "${WARMUP_S:-5}" --p95-sla-ms "$SLA" \
  --output "$out/tuned.yml" --report "$out/tune" "$@"
knee=$($BIN/python -c 'import sys, yaml; m = yaml.safe_load(open(sys.argv[1]))["models"]; print(next(iter(m.values()))["measured"]["knee_rps"])' "$out/tuned.yml")
rate=${RATE:-$($BIN/python -c "print(round(0.8 * $knee, 3))")}
port=$($BIN/python -c 'from hearthwatch.processes import free_port; print(free_port())')
TUNED_CONFIG_FILE="$out/tuned.yml" PORT=$port HOST=127.0.0.1 LOG_LEVEL=warning $BIN/hearthwatch serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.5; done
$BIN/hearthwatch tune --show --output "$out/tuned.yml" | tee "$out/active_config.txt"
echo "load test at $rate requests/s (the tuned knee: $knee/s)"
$BIN/hearthwatch loadtest --url "http://127.0.0.1:$port" --p95-sla-ms "$SLA" \
  --rate "$rate" --duration "$WINDOW" --out "$out/loadtest" "$@" || true  # a FAIL verdict is a result
echo "reports in $out"
