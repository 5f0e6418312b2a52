#!/usr/bin/env bash
# The lecture reproductions on CartPole-v1 (experiments/{double_dqn_overestimation,target_networks,n_step_returns}):
# one `lightq sweep` (sweep id / MLflow experiment `cartpole_lecture`) whose variants are overrides of
# configs/dqn/cartpole.yaml, then one `lightq report` per experiment.
#
#   experiments/cartpole_lecture.sh [VARIANT ...]   # default: all six variants; seeds: $SEEDS (default 0..4)
#
# The three experiments share runs: `dqn` is DQN with a Polyak target and n = 1, the baseline of all three.
# Variants are defined once here so that their argument hashes match whichever script runs them (a
# re-run skips every finished run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0 1 2 3 4}
BUDGET="--model.init_args.total_env_steps 10_000 --model.init_args.evaluation.every_env_steps 1_000 --model.init_args.evaluation.episodes 5"  # CPU budget here (config: 50_000 steps, eval every 2_500 on 10 episodes); see the READMEs
declare -A VARIANTS=(
  [dqn]="--config configs/dqn/cartpole.yaml $BUDGET"
  [double]="--config configs/dqn/cartpole_double.yaml $BUDGET"
  [no_target]="--config configs/dqn/cartpole.yaml $BUDGET --model.init_args.tau null --model.init_args.target_update_period_updates 1"
  [hard_copy]="--config configs/dqn/cartpole.yaml $BUDGET --model.init_args.tau null --model.init_args.target_update_period_updates 250"
  [nstep3]="--config configs/dqn/cartpole_nstep.yaml $BUDGET"
  [nstep10]="--config configs/dqn/cartpole.yaml $BUDGET --model.init_args.n_step 10"
)
ORDER=(dqn double no_target hard_copy nstep3 nstep10)
ARGS=()
for v in "${@:-${ORDER[@]}}"; do ARGS+=(--variant "$v=${VARIANTS[$v]}"); done
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///experiments/runs/mlflow.db}
mkdir -p experiments/runs
# shellcheck disable=SC2086
$PY -m lightq.cli sweep --experiment cartpole_lecture --seeds $SEEDS --workers "${WORKERS:-3}" \
  --logs experiments/runs/logs "${ARGS[@]}" \
  -- --trainer.enable_checkpointing false --trainer.enable_progress_bar false
