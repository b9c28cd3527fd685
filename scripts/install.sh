#!/usr/bin/env bash
# Install hf-etrag for development into the active Python environment.
# torch is pinned first so that pip takes the CPU wheel (a plain `torch` requirement pulls a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev,demo]"
