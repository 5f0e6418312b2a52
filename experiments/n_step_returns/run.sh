#!/usr/bin/env bash
# The one command of this experiment: train the variants (5 seeds; finished runs are skipped), then report.
set -euo pipefail
cd "$(dirname "$0")/../.."
experiments/cartpole_lecture.sh dqn nstep3 nstep10
${PYTHON:-.venv/bin/python} -m lightq.cli report --experiment cartpole_lecture --variants dqn nstep3 nstep10 \
  --tracking-uri "${MLFLOW_TRACKING_URI:-sqlite:///experiments/runs/mlflow.db}" --value-probe \
  --out experiments/n_step_returns --title "n_step_returns (CartPole-v1)"
