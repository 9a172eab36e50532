#!/usr/bin/env bash
# Install fastsample and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m fastsample.cli demo "$@"
