"""`lightq sweep` end to end: a SLURM array task run locally, a parallel sweep that skips it, a report."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lightq.commands import report, sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = (
    f"tiny=--config {ROOT}/configs/dqn/cartpole.yaml --model.init_args.total_env_steps 400 "
    "--model.init_args.learning_starts_env_steps 100 --model.init_args.evaluation.every_env_steps 200 "
    "--model.init_args.evaluation.episodes 2 --model.init_args.replay.batch_size 16"
)


def _args(uri: str, logs: Path) -> list[str]:
    return ["--experiment", "tiny_sweep", "--seeds", "0", "1", "--tracking-uri", uri, "--logs", str(logs),
            "--variant", TINY, "--", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false"]


def test_sweep_slurm_task_then_local_sweep_skips_it_then_report(in_tmp, capsys):
    uri = f"sqlite:///{in_tmp}/mlflow.db"
    logs = in_tmp / "logs"
    # 1. The SLURM launcher writes an array script; run its task 0 here, without sbatch.
    argv = _args(uri, logs)
    sweep.main(["--launcher", "slurm", "--slurm-script", "job.sbatch", *argv[:-5], "--workers", "2", *argv[-5:]])
    script = (in_tmp / "job.sbatch").read_text()
    assert "#SBATCH --array=0-1%2" in script
    command = [line for line in script.splitlines() if "lightq.cli sweep" in line][0]
    assert "--launcher" not in command
    assert command.endswith("--index $SLURM_ARRAY_TASK_ID -- --trainer.enable_checkpointing false "
                            "--trainer.enable_progress_bar false")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", OMP_NUM_THREADS="1")
    subprocess.run(["bash", "-c", command], env=env, check=True, capture_output=True, timeout=600)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny_sweep")
    (first,) = client.search_runs([exp.experiment_id])
    tags = first.data.tags
    assert first.info.status == "FINISHED" and tags["seed"] == "0" and tags["variant"] == "tiny"
    assert tags["complete"] == "true"  # reached its total_env_steps
    assert tags["sweep_id"] == "tiny_sweep" and tags["algorithm"] == "DQN" and tags["env"] == "CartPole-v1"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", tags["git_sha"])

    # 2. The local sweep skips the finished run 0 and runs seed 1; both in the summary.
    capsys.readouterr()
    sweep.main(argv)
    out = capsys.readouterr().out
    assert "2 runs, 1 already finished, 1 to run" in out
    assert re.search(r"tiny\s+0\s+skipped", out) and re.search(r"tiny\s+1\s+finished", out)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"] and len({r.data.tags["args_hash"] for r in runs}) == 1
    assert (logs / "tiny-seed1.log").exists()

    # 3. The report over the two seeds.
    report.main(["--experiment", "tiny_sweep", "--tracking-uri", uri, "--out", "rep", "--reps", "200", "--value-probe"])
    data = json.loads((in_tmp / "rep" / "report.json").read_text())["variants"]["tiny"]
    finals = [client.get_metric_history(r.info.run_id, "eval/return_mean")[-1].value for r in
              sorted(runs, key=lambda r: r.data.tags["seed"])]
    assert [data["final"][k] for k in ("0", "1")] == finals
    assert data["stats"]["mean"]["value"] == pytest.approx(sum(finals) / 2)
    assert (in_tmp / "rep" / "curves.png").exists() and (in_tmp / "rep" / "value_estimates.png").exists()


def test_failed_run_makes_the_sweep_fail(in_tmp):
    bad = "bad=--config configs/dqn/cartpole.yaml --model.init_args.total_env_steps -5"
    with pytest.raises(SystemExit, match="1 of 1 runs failed"):
        sweep.main(["--experiment", "x", "--seeds", "0", "--tracking-uri", f"sqlite:///{in_tmp}/m.db",
                    "--variant", bad.replace("configs/", f"{ROOT}/configs/")])


def test_bad_variant_and_index_are_refused():
    with pytest.raises(SystemExit, match="expected NAME=ARGS"):
        sweep.parse_variant("--config a.yaml")
    runs = sweep.build_runs([("a", ["--config", "a.yaml"]), ("b", ["--config", "b.yaml"])], [0, 1, 2], ["--x", "1"])
    assert [(r.index, r.variant, r.seed) for r in runs][:4] == [(0, "a", 0), (1, "a", 1), (2, "a", 2), (3, "b", 0)]
    assert runs[0].args == ["--config", "a.yaml", "--x", "1"] and runs[0].args_hash == runs[1].args_hash
    assert runs[0].args_hash != runs[3].args_hash
    with pytest.raises(SystemExit, match="unique"):
        sweep.build_runs([("a", []), ("a", [])], [0], [])


def test_gpu_workers_pin_one_run_per_gpu(in_tmp, monkeypatch):
    """With GPUs, each concurrent run gets its own CUDA_VISIBLE_DEVICES (no GPU here: subprocess faked)."""
    import threading
    import time
    from types import SimpleNamespace

    active, seen, lock = {}, [], threading.Lock()

    def fake_run(cmd, stdout, stderr, env):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert gpu not in active.values(), "two concurrent runs on one GPU"
            active[id(cmd)] = gpu
            seen.append(gpu)
        time.sleep(0.2)
        with lock:
            del active[id(cmd)]
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(sweep, "_default_workers", lambda: (2, ["0", "1"]))
    monkeypatch.setattr(sweep, "finished_runs", lambda *a: {})
    monkeypatch.setattr(sweep, "_ensure_experiment", lambda *a: None)
    monkeypatch.setattr(sweep.subprocess, "run", fake_run)
    sweep.main(["--experiment", "g", "--seeds", "0", "1", "2", "3", "--variant", "a=--config x.yaml"])
    assert sorted(seen) == ["0", "0", "1", "1"]


def test_skip_rule_ignores_a_run_stopped_before_its_end(in_tmp):
    """A run stopped by --trainer.max_steps ends FINISHED in MLflow; the sweep must run it again."""
    uri = f"sqlite:///{in_tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("skips")
    for seed, complete in ((0, "true"), (1, "false"), (2, None)):  # None: runs logged before the tag existed
        tags = {"sweep_id": "s", "variant": "v", "seed": str(seed), "args_hash": "h"}
        if complete is not None:
            tags["complete"] = complete
        run = client.create_run(exp, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED")
    assert sorted(k[1] for k in sweep.finished_runs(uri, "skips", "s")) == [0, 2]
