#!/usr/bin/env bash
# The main job: set up .venv, then run the demo (extra arguments go to `hf-etrag demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/hf-etrag demo "$@"
