"""Divergence watchdog: non-finite / exploding numbers stop the run with a report (or warn)."""

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient

from lightq.algos import DQN
from lightq.cli import LightqCLI
from lightq.reliability import DivergenceError, Watchdog, WatchdogConfig
from lightq.reliability.watchdog import check_env_step, describe

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "dqn" / "cartpole.yaml"
NAN_ENV = "tests.helpers.faulty_envs:lightq-test/NaNRewardCartPole-v0"


def _args(**extra):
    args = ["fit", "--config", str(CARTPOLE),
            "--model.init_args.total_env_steps", "1000", "--model.init_args.learning_starts_env_steps", "100",
            "--model.init_args.replay.batch_size", "16", "--model.init_args.evaluation.every_env_steps", "0",
            "--model.init_args.evaluation.episodes", "1", "--trainer.enable_progress_bar", "false"]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


def test_describe_names_the_problem():
    assert describe(torch.tensor([1.0, 2.0]), 10.0) is None
    assert describe(torch.tensor([1.0, math.nan, math.inf]), 10.0) == "non-finite (+inf/nan in 2 of 3 values)"
    assert describe(torch.tensor([1.0, -50.0]), 10.0) == "exploding (max |value| 50 > limit 10)"
    assert describe(torch.tensor([7], dtype=torch.int64), 1.0) is None  # integer data is never checked


def test_env_checks_name_reward_and_observation():
    ok = np.zeros((2, 4), np.float32)
    check_env_step(np.array([1.0, 0.0]), ok, env_step=5, update=1, transition={})
    with pytest.raises(DivergenceError, match=r"reward is non-finite \(nan in 1 of 2 values\) at env step 5"):
        check_env_step(np.array([1.0, np.nan]), ok, env_step=5, update=1, transition={})
    bad = ok.copy()
    bad[1, 2] = np.inf
    with pytest.raises(DivergenceError, match="observation is non-finite"):
        check_env_step(np.array([1.0, 0.0]), bad, env_step=5, update=1, transition={})
    check_env_step(np.array([0.0]), np.full((1, 84, 84), 255, np.uint8), env_step=1, update=0, transition={})


def test_nan_reward_stops_the_run_with_a_report(in_tmp):
    with pytest.raises(DivergenceError) as info:
        LightqCLI(args=_args(**{"model.init_args.env.id": NAN_ENV}))
    err = info.value
    message = str(err)
    # The wrapper returns NaN on the env's 300th step; one env, so env step 300.
    assert err.tensor == "reward" and err.env_step == 300
    assert "reward is non-finite (nan in 1 of 1 values) at env step 300 (update 100)" in message
    saved = sorted(in_tmp.rglob("divergence-update*-rank0.pt"))
    assert len(saved) == 1 and str(saved[0]) in message
    evidence = torch.load(saved[0], weights_only=True)
    assert evidence["tensor"] == "reward" and evidence["env_step"] == 300
    assert torch.isnan(evidence["data"]["reward"]).all()
    assert (saved[0].parent / "diverged.ckpt").exists()
    client = MlflowClient(f"sqlite:///{in_tmp}/mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["lightq.divergence"].startswith("Divergence: reward is non-finite")


def test_warn_mode_goes_on(in_tmp):
    cli = LightqCLI(args=_args(**{"model.init_args.env.id": NAN_ENV,
                                  "model.init_args.watchdog.on_divergence": "warn",
                                  "model.init_args.watchdog.check_env": "true"}))
    assert cli.model.env_steps >= 1000  # finished despite the NaN reward
    dog = next(cb for cb in cli.trainer.callbacks if isinstance(cb, Watchdog))
    assert dog.divergences >= 1


def _tiny_dqn(**kwargs):
    return DQN(env={"id": "CartPole-v1"}, total_env_steps=400, learning_starts_env_steps=64, seed=0,
               replay={"capacity": 1000, "batch_size": 16}, evaluation={"every_env_steps": None},
               hidden=(16,), **kwargs)


def test_exploding_learning_rate_is_caught_at_the_update_that_explodes(tmp_path):
    # lr 1e8 on an MLP with the MSE loss: Q-values / loss leave the finite range within a few updates.
    model = _tiny_dqn(lr=1e8, loss="mse", max_grad_norm=None, watchdog={"max_abs_q": 1e6})
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, default_root_dir=str(tmp_path),
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(DivergenceError) as info:
        trainer.fit(model)
    err = info.value
    assert err.tensor in ("loss (optimizer 0)", "q_values (optimizer 0)", "gradient norm", "parameters")
    assert err.update == model.updates and err.env_step == model.env_steps
    assert f"at env step {model.env_steps} (update {model.updates})" in str(err)
    assert err.update < 100  # caught early, not at the end of the run
    saved = list(tmp_path.rglob("divergence-update*.pt"))
    assert len(saved) == 1
    batch = torch.load(saved[0], weights_only=True)["data"]
    assert batch["obs"].shape == (16, 4)  # the replay batch of that update


def test_bad_watchdog_settings_are_refused():
    with pytest.raises(ValueError, match="watchdog.on_divergence='ignore' must be one of"):
        WatchdogConfig(on_divergence="ignore")
    with pytest.raises(ValueError, match="watchdog.check_every_updates=0 must be >= 1"):
        WatchdogConfig(check_every_updates=0)
