"""Run the `lightq` CLI in a subprocess (the user's path) and read the eval curve back from MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]


def train_and_read_eval(config: Path, seed: int, workdir: Path, *extra: str) -> list[tuple[int, float]]:
    """``lightq fit --config config --model.init_args.seed seed``; returns [(env_steps, eval return)]."""
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "lightq.cli", "fit", "--config", str(config),
        "--model.init_args.seed", str(seed), "--trainer.enable_progress_bar", "false", *extra,
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/return_mean")]


def train_seeds(config: Path, seeds, tmp_path: Path, workers: int = 2) -> list[list[tuple[int, float]]]:
    """Train several seeds, ``workers`` processes at a time (the CI machine has 2 cores)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: train_and_read_eval(config, s, tmp_path / f"seed{s}"), seeds))
