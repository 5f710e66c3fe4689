# The commands the README gives. Each one sets up what it needs first, so it works on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# DVC stages run `python`: make it the project's environment
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

# Telemetry off everywhere (dvc, prefect, great expectations, evidently, llama.cpp's users)
export DVC_NO_ANALYTICS := 1
export ITERATIVE_DO_NOT_TRACK := 1
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# llama-cpp-python compiles on the installing machine; keep GGML_NATIVE on (≈1.6× faster here)
# and skip the parts this project never runs. AMX stays out of the native build: on machines that
# report AMX, ggml's AMX kernels crash on the nano models' quantized files (Q8_0, Q4_K_M: segfault
# or "Illegal instruction" in the first decode), while F16 and the rest of the native build run fine.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
	"-DCMAKE_C_FLAGS=$(NO_AMX)" "-DCMAKE_CXX_FLAGS=$(NO_AMX)"

# apt needs root: sudo when not running as root
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup repro test lint ui chat
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly: pip then takes the CPU wheel on disk instead of a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# built with the CMAKE_ARGS above, never taken from pip's wheel cache (a cached wheel keeps the
	# flags it was built with, e.g. the AMX kernels)
	$(BIN)/pip install --quiet --no-cache-dir -c constraints.txt llama-cpp-python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# the browser tests drive Debian's chromium (Playwright's own browser download needs a network)
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; } || \
		echo "could not install Debian's chromium: the browser tests will say so"
	touch $(STAMP)

repro: setup
	$(BIN)/dvc repro

# the Prefect server and deployments and the Evidently UI; Ctrl-C stops them all
ui: setup
	$(BIN)/python -m flows.ui

# ImpChat: the registry's releases behind an OpenAI-compatible API and a web page on 127.0.0.1
# (params.yaml `chat:`; docs/chat.md); Ctrl-C stops it
chat: setup
	$(BIN)/python -m impkit.cli chat

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check impkit stages flows tests benchmarks
	$(BIN)/ruff format --check impkit stages flows tests benchmarks
