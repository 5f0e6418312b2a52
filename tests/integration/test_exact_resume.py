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
    assert "eval/return_mean" in full_metrics and any(k.startswith("train/") for k in full_metrics)
    assert split_metrics == full_metrics
    client, run = _only_run(tmp_path / "split")
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert run.info.run_id == first["lightq"]["mlflow_run"]["run_id"] == split["lightq"]["mlflow_run"]["run_id"]
    steps = [s for s, _ in split_metrics["eval/return_mean"]]
    assert max(steps) == 100 + 2 * N and min(steps) <= 100 + N  # both halves logged into it


def test_ckpt_path_last_without_checkpoint_starts_fresh(tmp_path):
    proc = _fit(tmp_path, *_args("dqn", "plain"), "--ckpt_path", "last")
    assert "no checkpoint at" in proc.stderr
    assert _last_ckpt(tmp_path)["lightq"]["updates"] == 2 * N
    client, run = _only_run(tmp_path)
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]


def _check_last_loadable(workdir: Path) -> int:
    """last.ckpt loads with weights_only and its replay sidecar is complete; returns its update count."""
    from lightq.callbacks.checkpoint import read_sidecar

    (path,) = list(workdir.glob("runs/*/checkpoints/last.ckpt"))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sidecar = read_sidecar(path.parent / "replay" / ckpt["lightq"]["replay_sidecar"]["name"], 0)
    assert sidecar is not None, "last.ckpt references a missing sidecar"
    assert sidecar["served"] == ckpt["lightq"]["updates"]
    return ckpt["lightq"]["updates"]


def test_sigkill_during_checkpoint_writes_leaves_previous_checkpoint_loadable(tmp_path):
    """Kill -9 inside the .ckpt write, the sidecar write and the index write; each time the previous
    ``last.ckpt`` and its sidecar stay loadable, and the run then resumes to the end, exactly."""
    import signal
    import time

    every = 40
    args = [*_args("dqn", "plain"), "--trainer.callbacks+=ModelCheckpoint",
            "--trainer.callbacks.every_n_train_steps", str(every),
            "--trainer.callbacks.save_on_train_epoch_end", "false"]
    workdir = tmp_path / "run"
    workdir.mkdir()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", OMP_NUM_THREADS="1",
               LIGHTQ_PAUSE_S="0.3")
    helper = ROOT / "tests" / "helpers" / "paused_writes.py"
    previous = None
    for round_, (target, nth) in enumerate([("last.ckpt", 2), ("rank0.pt", 1), ("index.json", 2)]):
        pause_dir = tmp_path / f"pauses{round_}"
        pause_dir.mkdir()
        resume = ["--ckpt_path", "last"] if round_ else []
        proc = subprocess.Popen([sys.executable, str(helper), *args, *resume], cwd=workdir,
                                env=dict(env, LIGHTQ_PAUSE_DIR=str(pause_dir)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len([p for p in pause_dir.iterdir() if p.name.endswith(target)]) >= nth:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"round {round_} ended before the kill: {proc.stderr.read()[-3000:]}"
        os.kill(proc.pid, signal.SIGKILL)  # the process sleeps inside the write of `target`
        proc.wait()
        updates = _check_last_loadable(workdir)
        assert updates > 0 and (previous is None or updates >= previous)
        previous = updates
    final = _fit(workdir, *args, "--ckpt_path", "last")
    assert "RESUME IS NOT EXACT" not in final.stderr
    assert _check_last_loadable(workdir) == 2 * N, final.stdout[-2000:]
