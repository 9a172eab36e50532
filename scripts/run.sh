#!/usr/bin/env bash
# Install fastsample and run the main job: train PPO on CartPole-v1 until solved, printing
# SPS and time-to-solve (extra arguments go to `fastsample train`, e.g. --seed 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m fastsample.cli train --env CartPole-v1 "$@"
