"""lightq against a real `mlflow server` on 127.0.0.1 (SQLite backend, local artifact root)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "dqn" / "cartpole.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port, self.proc = workdir, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self) -> "Server":
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.workdir}/server.db",
               "--artifacts-destination", str(self.workdir / "artifacts"), "--workers", "1"]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not start within 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, _free_port()).start()
    yield srv
    srv.stop()


def _lightq(workdir: Path, uri: str, *extra: str, env_id: str = "CartPole-v1", total: int = 600, sleep="0",
            wait=True):
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1", LIGHTQ_TEST_STEP_SLEEP=sleep,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "lightq.cli", "fit", "--config", str(CARTPOLE), "--model.init_args.env.id", env_id,
           "--model.init_args.total_env_steps", str(total), "--model.init_args.learning_starts_env_steps", "100",
           "--model.init_args.replay.batch_size", "16", "--model.init_args.evaluation.every_env_steps", "200",
           "--model.init_args.evaluation.episodes", "1", "--model.init_args.evaluation.log_model", "false",
           "--model.init_args.log_every_updates", "25", "--trainer.enable_progress_bar", "false", *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def _only_run(client):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    return runs[0]


def test_metrics_params_and_config_arrive_over_http(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    done = _lightq(work, server.uri)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(server.uri)
    run = _only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["total_env_steps"] == "600" and run.data.tags["algorithm"] == "DQN"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/return_mean")] == [200, 400, 600]
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert not (work / "mlflow.db").exists()  # nothing went to the local store


def test_unreachable_server_at_start_is_a_clear_error_or_an_explicit_fallback(tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    started = time.time()
    done = _lightq(tmp_path, dead)
    assert done.returncode == 2
    assert f"MLflow tracking server {dead} is unreachable" in done.stderr
    assert "on_unreachable local" in done.stderr
    assert time.time() - started < 60 and not (tmp_path / "runs").exists()  # refused before training

    done = _lightq(tmp_path, dead, "--trainer.logger.init_args.on_unreachable", "local")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"MLflow server {dead} unreachable" in done.stdout
    run = _only_run(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    assert run.info.status == "FINISHED" and "eval/return_mean" in run.data.metrics


def test_server_stopped_mid_run_metrics_are_spooled_then_synced(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    slow = "tests.helpers.faulty_envs:lightq-test/SlowCartPole-v0"
    proc = _lightq(work, server.uri, "--trainer.logger.init_args.retry_every_s", "2",
                   env_id=slow, total=1400, sleep="0.01", wait=False)
    client = MlflowClient(server.uri)
    deadline = time.time() + 300
    while True:  # wait for the first evaluation to reach the server
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        if runs and client.get_metric_history(runs[0].info.run_id, "eval/return_mean"):
            break
        time.sleep(0.5)
    run_id = runs[0].info.run_id
    server.stop()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]  # training finished without the server
    (spool,) = work.glob("mlflow-spool-*.jsonl")
    assert spool.name == f"mlflow-spool-{run_id}.jsonl"
    assert f"lightq sync-mlflow {spool}" in out
    # The server comes back (same store): the spooled metrics and the final status are uploaded.
    server.start()
    synced = subprocess.run([sys.executable, "-m", "lightq.cli", "sync-mlflow", str(spool)], cwd=work,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert synced.returncode == 0, synced.stderr[-3000:]
    client = MlflowClient(server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "eval/return_mean")]
    assert steps[-1] == 1400 and steps == sorted(set(steps))  # every evaluation, the late ones included
    assert not spool.exists()
