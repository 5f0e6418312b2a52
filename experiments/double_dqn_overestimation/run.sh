#!/usr/bin/env bash
# The one command of this experiment: train the variants (5 seeds; finished runs are skipped), then report.
set -euo pipefail
cd "$(dirname "$0")/../.."
experiments/cartpole_lecture.sh dqn double
${PYTHON:-.venv/bin/python} -m lightq.cli report --experiment cartpole_lecture --variants dqn double \
  --tracking-uri "${MLFLOW_TRACKING_URI:-sqlite:///experiments/runs/mlflow.db}" --value-probe \
  --out experiments/double_dqn_overestimation --title "double_dqn_overestimation (CartPole-v1)"
