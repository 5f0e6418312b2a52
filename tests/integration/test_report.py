"""`lightq report` on a synthetic MLflow store with known numbers: table against a direct computation."""

import json
import time

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from scipy.stats import trim_mean

from lightq.commands import report

# variant -> seed -> eval/return_mean at env steps 1000, 2000, 3000 (the final score is the last one).
CURVES = {
    "dqn": {0: [10, 50, 120], 1: [12, 60, 300], 2: [9, 40, 80], 3: [15, 90, 500], 4: [11, 70, 200]},
    "double": {0: [20, 150, 480], 1: [25, 160, 500], 2: [18, 140, 430], 3: [22, 170, 90], 4: [30, 120, 470]},
}


def _store(uri: str) -> None:
    client = MlflowClient(uri)
    exp = client.create_experiment("synthetic")
    for variant, seeds in CURVES.items():
        for seed, values in seeds.items():
            run = client.create_run(exp, tags={"variant": variant, "seed": str(seed), "env": "CartPole-v1",
                                               "sweep_id": "s1"})
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[
                Metric(key, v / div, now, step)
                for step, v in zip((1000, 2000, 3000), values)
                for key, div in (("eval/return_mean", 1), ("eval/q_estimate", 2), ("eval/mc_return", 4))
            ])
            client.set_terminated(run.info.run_id, "FINISHED")
    # Not counted: an older run of dqn with other settings, a failed run, and a run of another sweep.
    old = client.create_run(exp, start_time=1, tags={"variant": "dqn", "seed": "5", "env": "CartPole-v1",
                                                     "sweep_id": "s1", "args_hash": "old"})
    client.log_metric(old.info.run_id, "eval/return_mean", 5e5, step=3000)
    client.set_terminated(old.info.run_id, "FINISHED")
    bad = client.create_run(exp, tags={"variant": "dqn", "seed": "9", "env": "CartPole-v1", "sweep_id": "s1"})
    client.log_metric(bad.info.run_id, "eval/return_mean", 1e6, step=3000)
    client.set_terminated(bad.info.run_id, "FAILED")
    other = client.create_run(exp, tags={"variant": "dqn", "seed": "7", "env": "CartPole-v1", "sweep_id": "s2"})
    client.log_metric(other.info.run_id, "eval/return_mean", -1e6, step=3000)
    client.set_terminated(other.info.run_id, "FINISHED")
    # Not counted either: a run stopped by --trainer.max_steps before its end (FINISHED in MLflow's eyes).
    stopped = client.create_run(exp, tags={"variant": "dqn", "seed": "6", "env": "CartPole-v1", "sweep_id": "s1",
                                           "complete": "false"})
    client.log_metric(stopped.info.run_id, "eval/return_mean", 7e5, step=1000)
    client.set_terminated(stopped.info.run_id, "FINISHED")


def _direct_ci(x: np.ndarray, stat, reps: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(reps, len(x)))
    return tuple(np.percentile([stat(x[i]) for i in idx], [2.5, 97.5]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{path}/mlflow.db"
    _store(uri)
    return uri


def test_report_table_matches_direct_computation(tmp_path, store):
    uri = store
    out = tmp_path / "rep"
    report.main(["--experiment", "synthetic", "--tracking-uri", uri, "--sweep-id", "s1", "--out", str(out),
                 "--reps", "2000", "--value-probe", "--html"])
    data = json.loads((out / "report.json").read_text())["variants"]
    assert list(data) == ["double", "dqn"]
    for variant, seeds in CURVES.items():
        finals = np.array([v[-1] for v in seeds.values()], dtype=float)
        got = data[variant]
        assert got["seeds"] == [0, 1, 2, 3, 4]
        assert [got["final"][str(s)] for s in range(5)] == finals.tolist()
        assert got["stats"]["IQM"]["value"] == pytest.approx(trim_mean(finals, 0.25))
        assert got["stats"]["mean"]["value"] == pytest.approx(finals.mean())
        assert got["stats"]["median"]["value"] == pytest.approx(np.median(finals))
        for name, stat in (("IQM", lambda s: trim_mean(s, 0.25)), ("mean", np.mean), ("median", np.median)):
            lo, hi = _direct_ci(finals, stat, 2000, 0)
            assert (got["stats"][name]["lo"], got["stats"][name]["hi"]) == pytest.approx((lo, hi))
        assert got["eval/q_estimate"] == pytest.approx(finals.mean() / 2)
        assert got["eval/mc_return"] == pytest.approx(finals.mean() / 4)
    md = (out / "report.md").read_text()
    iqm = data["dqn"]["stats"]["IQM"]
    assert f"| dqn | 5 | 3,000 | {iqm['value']:.1f} [{iqm['lo']:.1f}, {iqm['hi']:.1f}] |" in md
    for png in ("curves.png", "value_estimates.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size < 300_000
    assert "<table" in (out / "report.html").read_text()


def test_report_names_a_missing_experiment_and_variant(tmp_path, store):
    uri = store
    with pytest.raises(SystemExit, match="no MLflow experiment 'nope'"):
        report.main(["--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match=r"variant\(s\) \['dueling'\]"):
        report.main(["--experiment", "synthetic", "--tracking-uri", uri, "--variants", "dueling",
                     "--out", str(tmp_path / "r")])
