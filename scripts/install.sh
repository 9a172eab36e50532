#!/usr/bin/env bash
# Install fastsample (editable) with the extras given as arguments, e.g. `scripts/install.sh dev`.
# torch first: a loose requirement with no torch present would pull a multi-GB CUDA build,
# so take the CPU wheel 2.13.0 when torch is missing (users with a GPU install their own first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
extras=$(IFS=,; echo "$*")
"$PY" -m pip install -q -e ".${extras:+[$extras]}"
