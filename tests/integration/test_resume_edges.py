"""``--ckpt_path`` paths that used to do nothing (issue 14, item 6).

A run stopped by ``--trainer.max_steps`` is saved with its one Lightning epoch counted as processed,
so a resume used to stop at once ("max_epochs=1 reached") and print the stale eval of the first half.
Extending a finished run with a larger ``total_env_steps`` did the same, with ``last`` and with an
explicit path (where Lightning also replaced the new total by the checkpoint's).
"""

from __future__ import annotations

import pytest
import torch

from tests.integration.test_exact_resume import N, _args, _fit, _last_ckpt, _metrics, _only_run


def _eval_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "eval return" in line)


def _total(args: list[str]) -> int:
    return int(args[args.index("--model.init_args.total_env_steps") + 1])


def _with_total(args: list[str], total: int) -> list[str]:
    args = list(args)
    args[args.index("--model.init_args.total_env_steps") + 1] = str(total)
    return args


def test_resume_after_max_steps_stop_trains_to_the_end(tmp_path):
    args = _args("dqn", "plain")
    full = _fit(tmp_path / "full", *args)
    first = _fit(tmp_path / "split", *args, "--trainer.max_steps", str(N))  # last.ckpt saved at the stop
    assert _last_ckpt(tmp_path / "split")["lightq"]["updates"] == N
    assert "final eval return" not in first.stdout and "continue with --ckpt_path last" in first.stdout
    assert _only_run(tmp_path / "split")[1].data.tags["complete"] == "false"  # sweeps/reports skip it
    second = _fit(tmp_path / "split", *args, "--ckpt_path", "last")

    a, b = _last_ckpt(tmp_path / "full"), _last_ckpt(tmp_path / "split")
    assert b["lightq"]["updates"] == a["lightq"]["updates"] == 2 * N
    assert b["lightq"]["env_steps"] == a["lightq"]["env_steps"] == _total(args)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    # The printed result is the final eval of the whole run, the same as the uninterrupted run's.
    assert _eval_line(second.stdout).startswith("final eval return")
    assert _eval_line(second.stdout) == _eval_line(full.stdout)
    assert _metrics(tmp_path / "split") == _metrics(tmp_path / "full")
    assert _only_run(tmp_path / "split")[1].data.tags["complete"] == "true"


@pytest.mark.parametrize("how", ["last", "path"])
def test_extending_a_finished_run_trains_the_extra_steps_in_the_same_run(tmp_path, how):
    short = _args("dqn", "plain")
    longer = _with_total(short, _total(short) + N)
    straight = _fit(tmp_path / "straight", *longer)
    _fit(tmp_path / "ext", *short)
    finished = _last_ckpt(tmp_path / "ext")
    assert finished["lightq"]["updates"] == 2 * N
    ckpt = "last" if how == "last" else str(next((tmp_path / "ext").glob("runs/*/checkpoints/last.ckpt")))
    extended = _fit(tmp_path / "ext", *longer, "--ckpt_path", ckpt)

    a, b = _last_ckpt(tmp_path / "straight"), _last_ckpt(tmp_path / "ext")
    assert b["lightq"]["updates"] == a["lightq"]["updates"] == 3 * N
    assert b["lightq"]["env_steps"] == _total(longer)
    # ε is scheduled on the absolute env-step clock and the eval in between draws from its own streams:
    # the extended run is the straight run of the longer length, parameter for parameter.
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs from the straight run"
    assert _eval_line(extended.stdout).startswith("final eval return")
    assert _eval_line(extended.stdout) == _eval_line(straight.stdout)

    client, run = _only_run(tmp_path / "ext")  # one MLflow run holds both invocations
    assert run.info.run_id == finished["lightq"]["mlflow_run"]["run_id"]
    assert run.data.params["total_env_steps"] == str(_total(short))  # params are write-once
    assert run.data.tags["resumed.total_env_steps"] == str(_total(longer))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/return_mean")]
    assert _total(short) in steps and _total(longer) in steps


def test_a_new_run_moves_an_earlier_runs_checkpoints_aside(tmp_path):
    """Same config and seed twice without ``--ckpt_path``: the second run used to overwrite the first's
    ``last.ckpt`` (the folder is named after the run). It is moved aside, byte for byte."""
    args = _with_total(_args("dqn", "plain"), 150)
    _fit(tmp_path, *args)
    (first,) = list(tmp_path.glob("runs/*/checkpoints/last.ckpt"))
    before = first.read_bytes()
    second = _fit(tmp_path, *_with_total(args, 160))
    assert "held the checkpoints of an earlier run; moved them to" in second.stderr
    (moved,) = [p for p in tmp_path.glob("runs/*/checkpoints.*/last.ckpt")]
    assert moved.read_bytes() == before
    assert torch.load(first, weights_only=True)["lightq"]["env_steps"] == 160  # the new run's, where it was
    assert torch.load(moved, weights_only=True)["lightq"]["env_steps"] == 150
