"""Exact resume (issue 6): train 2N == train N, checkpoint, resume in a new process, train N.

Each case runs the user's path, ``python -m lightq.cli fit``, in subprocesses: one uninterrupted run
with no periodic checkpoints (so saving is also shown not to perturb the run), and one run stopped
after N updates (``--trainer.max_steps``) and resumed with ``--ckpt_path last`` in a new process.
Parameters are compared bitwise; every logged metric except ``perf/*`` (wall clock) must have the
same values at the same env steps, in the same MLflow run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]

N = 150  # updates per half; ~seconds of training per process


def _args(algo: str, variant: str) -> list[str]:
    common = [
        "--model.init_args.total_env_steps", str(100 + 2 * N),
        "--model.init_args.learning_starts_env_steps", "100",
        "--model.init_args.replay.capacity", "1000",
        "--model.init_args.replay.batch_size", "16",
        "--model.init_args.replay.batches_per_sample", "4",  # N is not a multiple: batches are in flight
        "--model.init_args.evaluation.every_env_steps", "50",
        "--model.init_args.evaluation.episodes", "2",
        "--model.init_args.log_every_updates", "10",
        "--trainer.enable_progress_bar", "false",
    ]
    if algo == "dqn":
        config = ROOT / "configs" / "dqn" / ("cartpole_prioritized.yaml" if variant == "prioritized" else "cartpole.yaml")
        extra = ["--model.init_args.env_steps_per_update", "1.0", "--model.init_args.exploration.duration_env_steps", "300"]
        if variant == "prioritized":  # prioritized replay, 3-step returns, two envs: one case, to keep CI short
            extra += ["--model.init_args.n_step", "3", "--model.init_args.env.num_envs", "2"]
    else:
        config = ROOT / "configs" / "ddpg" / "pendulum.yaml"
        extra = ["--model.init_args.hidden", "[32, 32]", "--model.init_args.noise.kind", "ou",
                 "--model.init_args.evaluation.episodes", "1"]
    return ["fit", "--config", str(config), *common, *extra]


def _fit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "lightq.cli", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _only_run(workdir: Path):
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, f"expected one MLflow run, found {len(runs)}"
    return client, runs[0]


def _metrics(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    client, run = _only_run(workdir)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics if not key.startswith("perf/")
    }


def _last_ckpt(workdir: Path) -> dict:
    (path,) = list(workdir.glob("runs/*/checkpoints/last.ckpt"))
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("algo, variant", [("dqn", "plain"), ("dqn", "prioritized"), ("ddpg", "plain")])
def test_resume_in_new_process_equals_uninterrupted_run(tmp_path, algo, variant):
    args = _args(algo, variant)
    steps_per_update = 2 if algo == "ddpg" else 1  # Lightning counts optimizer steps: DDPG has two per update
    periodic = ["--trainer.callbacks+=ModelCheckpoint",
                "--trainer.callbacks.every_n_train_steps", str(N * steps_per_update),
                "--trainer.callbacks.save_on_train_epoch_end", "false"]
    _fit(tmp_path / "full", *args)
    _fit(tmp_path / "split", *args, *periodic, "--trainer.max_steps", str(N * steps_per_update))
    first = _last_ckpt(tmp_path / "split")
    assert first["lightq"]["updates"] == N
    second = _fit(tmp_path / "split", *args, *periodic, "--ckpt_path", "last")
    assert "RESUME IS NOT EXACT" not in second.stderr and "could not be saved" not in second.stderr

    full, split = _last_ckpt(tmp_path / "full"), _last_ckpt(tmp_path / "split")
    assert full["lightq"]["updates"] == split["lightq"]["updates"] == 2 * N
    assert full["lightq"]["env_steps"] == split["lightq"]["env_steps"]
    assert full["state_dict"].keys() == split["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), f"{key} differs after resume"

    # Same metric values at the same env steps, all in the run the first half created.
    full_metrics, split_metrics = _metrics(tmp_path / "full"), _metrics(tmp_path / "split")
    assert "eval/return_mean" in full_metrics and "train/loss" in full_metrics
    assert split_metrics == full_metrics
    _, run = _only_run(tmp_path / "split")
    assert run.info.run_id == first["lightq"]["mlflow_run"]["run_id"] == split["lightq"]["mlflow_run"]["run_id"]
    steps = [s for s, _ in split_metrics["eval/return_mean"]]
    assert max(steps) == 100 + 2 * N and min(steps) <= 100 + N  # both halves logged into it


def test_resume_without_sidecar_warns_and_diverges(tmp_path):
    """The negative control: without the replay sidecar the resume is not exact, and says so loudly."""
    args = _args("dqn", "plain")
    periodic = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", str(N),
                "--trainer.callbacks.save_on_train_epoch_end", "false"]
    _fit(tmp_path / "full", *args)
    _fit(tmp_path / "split", *args, *periodic, "--trainer.max_steps", str(N))
    (sidecars,) = list((tmp_path / "split").glob("runs/*/checkpoints/replay"))
    for folder in sidecars.glob("u*"):
        for f in folder.iterdir():
            f.unlink()
    second = _fit(tmp_path / "split", *args, *periodic, "--ckpt_path", "last")
    assert "RESUME IS NOT EXACT" in second.stderr
    full, split = _last_ckpt(tmp_path / "full"), _last_ckpt(tmp_path / "split")
    assert not all(torch.equal(v, split["state_dict"][k]) for k, v in full["state_dict"].items())


def test_ckpt_path_last_without_checkpoint_starts_fresh(tmp_path):
    proc = _fit(tmp_path, *_args("dqn", "plain"), "--ckpt_path", "last")
    assert "no checkpoint at" in proc.stderr
    assert _last_ckpt(tmp_path)["lightq"]["updates"] == 2 * N
    client, run = _only_run(tmp_path)
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
