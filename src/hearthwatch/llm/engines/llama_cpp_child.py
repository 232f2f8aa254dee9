"""Child process: llama.cpp's HTTP server through xllamacpp, configured from the command
line, serving until it is terminated."""

from __future__ import annotations

import argparse
import signal
import threading

import xllamacpp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, required=True)
    parser.add_argument("--n-parallel", type=int, required=True)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--cache-type-k", default="f16")
    parser.add_argument("--cache-type-v", default="f16")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--alias", default=None, help="the model name the engine's replies carry")
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    if args.alias:
        params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.n_ctx
    params.n_parallel = args.n_parallel
    params.n_gpu_layers = args.n_gpu_layers
    params.n_batch = args.n_batch
    params.cont_batching = True
    params.endpoint_metrics = True
    params.cache_type_k = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{args.cache_type_k.upper()}")
    params.cache_type_v = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{args.cache_type_v.upper()}")
    if args.threads:
        params.cpuparams.n_threads = args.threads
    server = xllamacpp.Server(params)  # listens until the process ends
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"llama.cpp listening on {server.listening_address}", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
