# The two set-up commands: `make demo` (classify the bundled sample photos) and `make test`.
# Each creates .venv with everything it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint browser legacy-venv tfjs litert kserve

# The web page's test drives a real browser: Debian's Chromium and its driver, installed when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.all: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[all]' -c constraints.txt
	touch $@ $(VENV)/.core

# The last stack where tensorflow_hub's hub.Module exists (TF 2.15, tensorflow_hub 0.15), for
# tests/test_legacy_hub.py: the TF1 module pages' code runs there, unchanged, on our exports.
# TF 2.15 has wheels for Python 3.9 to 3.11. Nothing is cached outside this folder.
LEGACY := .venv-legacy
LEGACY_PYTHON ?= $(PYTHON)

$(LEGACY)/.ready:
	$(LEGACY_PYTHON) -m venv $(LEGACY)
	echo '*' > $(LEGACY)/.gitignore
	$(LEGACY)/bin/pip install --quiet --no-cache-dir 'tensorflow==2.15.1' 'tensorflow-hub==0.15.0' 'numpy<2' 'setuptools<81'
	touch $@

legacy-venv: $(LEGACY)/.ready

# TF.js for tests/test_tfjs.py: npm's @tensorflow/tfjs (pure JavaScript, its CPU backend; no native
# binaries to download), in the git-ignored .tfjs/ folder, nothing installed globally.
TFJS := .tfjs
TFJS_VERSION := 4.22.0

$(TFJS)/.ready:
	@command -v npm >/dev/null 2>&1 || { echo "make test: npm is missing: install Node.js 18+ and npm for tests/test_tfjs.py"; exit 1; }
	mkdir -p $(TFJS)
	echo '{"private": true}' > $(TFJS)/package.json
	cd $(TFJS) && npm install --silent --no-audit --no-fund @tensorflow/tfjs@$(TFJS_VERSION)
	touch $@

tfjs: $(TFJS)/.ready

# LiteRT's converter, which writes the fp32 mobile.tflite. Its xdsl pins typing-extensions < 4.13,
# which selenium and anyio (in .[all]) do not accept, so it goes in without its pins; it runs with
# the newer typing-extensions (tests/test_tflite_metadata.py converts through it).
$(VENV)/.litert: $(VENV)/.all
	$(BIN)/pip install --quiet --no-deps 'litert-converter==0.5.0' 'xdsl==0.28.0' 'ordered-set==4.1.0' 'immutabledict<4.2.2' lark backports.strenum
	touch $@

litert: $(VENV)/.litert

# KServe's Python clients (InferenceRESTClient, InferenceGRPCClient) for tests/test_serve_v2.py.
# kserve pins protobuf < 7 and pandas < 3, which .[all] does not accept, so it goes in without its
# pins, with what its client modules import.
$(VENV)/.kserve: $(VENV)/.all
	$(BIN)/pip install --quiet --no-deps 'kserve==0.21.0'
	$(BIN)/pip install --quiet -c constraints.txt python-rapidjson geventhttpclient 'greenlet<3.4' fastapi starlette \
		pydantic uvicorn 'cloudevents<2' kubernetes httpx orjson grpc-interceptor timing-asgi tabulate 'psutil<6' \
		python-multipart pyjwt cryptography watchfiles
	touch $@

kserve: $(VENV)/.kserve

demo: $(VENV)/.core
	$(BIN)/python scripts/demo.py

browser:
	@if command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "make test: installing Debian's chromium and chromium-driver for the web page's test ($(if $(SUDO),sudo )apt-get)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "make test: no chromedriver and no apt-get here: install Chromium and ChromeDriver, or tests/test_web_page.py fails"; \
	fi

test: $(VENV)/.all $(VENV)/.litert $(VENV)/.kserve browser legacy-venv tfjs
	$(BIN)/python -m pytest -q

lint: $(VENV)/.all
	$(BIN)/ruff check src tests scripts tools
