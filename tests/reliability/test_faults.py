"""Faults: an env that raises mid-run; SIGTERM during training."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from lightq.callbacks.checkpoint import read_sidecar
from lightq.cli import LightqCLI
from lightq.reliability import EnvFaultError

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "dqn" / "cartpole.yaml"
CHECKPOINT_EVERY = ('--trainer.callbacks+={"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", '
                    '"init_args": {"every_n_train_steps": 100, "save_last": true}}')


def _args(env_id, total, *extra):
    return ["fit", "--config", str(CARTPOLE), "--model.init_args.env.id", env_id,
            "--model.init_args.total_env_steps", str(total), "--model.init_args.learning_starts_env_steps", "100",
            "--model.init_args.replay.batch_size", "16", "--model.init_args.evaluation.every_env_steps", "0",
            "--model.init_args.evaluation.episodes", "1", "--trainer.enable_progress_bar", "false",
            CHECKPOINT_EVERY, *extra]


def test_env_raising_mid_run_stops_with_a_clear_error_and_keeps_the_last_checkpoint(in_tmp):
    env_id = "tests.helpers.faulty_envs:lightq-test/RaiseOnStepCartPole-v0"  # raises on its 900th step
    with pytest.raises(EnvFaultError) as info:
        LightqCLI(args=_args(env_id, 2000))
    message = str(info.value)
    assert f"Environment {env_id!r} failed during step at env step 899: RuntimeError: simulated env crash" in message
    assert "--ckpt_path last" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    (last,) = in_tmp.rglob("last.ckpt")
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # loadable, and from before the crash
    assert 0 < ckpt["lightq"]["env_steps"] < 900
    sidecar = read_sidecar(ckpt["lightq"]["replay_sidecar"]["path"], 0)  # weights_only inside
    assert sidecar is not None and sidecar["served"] == ckpt["lightq"]["updates"]
    assert not list(in_tmp.rglob("diverged.ckpt"))  # nothing written from the broken state
    client = MlflowClient(f"sqlite:///{in_tmp}/mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_and_last_resumes(in_tmp, sig):
    env_id = "tests.helpers.faulty_envs:lightq-test/SlowCartPole-v0"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{in_tmp}/mlflow.db", OMP_NUM_THREADS="1",
               LIGHTQ_TEST_STEP_SLEEP="0.002", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = _args(env_id, 6000)
    proc = subprocess.Popen([sys.executable, "-m", "lightq.cli", *args], cwd=in_tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(in_tmp.rglob("last.ckpt")):  # wait until training is under way
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out[-3000:]
    assert f"{sig.name} received at env step" in out and "resume with --ckpt_path last" in out
    (last,) = in_tmp.rglob("last.ckpt")
    stopped = torch.load(last, map_location="cpu", weights_only=True)["lightq"]
    stopped_at = stopped["env_steps"]
    assert read_sidecar(stopped["replay_sidecar"]["path"], 0) is not None  # the replay data came with it
    assert 100 < stopped_at < 6000
    # Resume: it continues from the checkpoint (same config; the checkpoint's hyperparameters rule) and finishes.
    env["LIGHTQ_TEST_STEP_SLEEP"] = "0"
    done = subprocess.run([sys.executable, "-m", "lightq.cli", *args, "--ckpt_path", str(last)], cwd=in_tmp,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in done.stderr
    assert "(env steps 6000," in done.stdout
