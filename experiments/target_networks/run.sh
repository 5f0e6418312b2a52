#!/usr/bin/env bash
# The one command of this experiment: train the variants (5 seeds; finished runs are skipped), then report.
set -euo pipefail
cd "$(dirname "$0")/../.."
experiments/cartpole_lecture.sh no_target hard_copy dqn
${PYTHON:-.venv/bin/python} -m lightq.cli report --experiment cartpole_lecture --variants no_target hard_copy dqn \
  --tracking-uri "${MLFLOW_TRACKING_URI:-sqlite:///experiments/runs/mlflow.db}" --value-probe \
  --out experiments/target_networks --title "target_networks (CartPole-v1)"
