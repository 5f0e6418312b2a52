"""``updates_per_iteration``: k updates per Lightning iteration are the same run as one per iteration.

lightq runs the per-update callbacks (env steps, evaluation, watchdog, checkpoints, user callbacks)
between the updates of an iteration itself. These tests compare k = 1 with k = 8 and k = 3 (not a
divisor of anything here) bitwise: parameters, the (update, env step) seen by a user callback after
every update, every logged metric but wall-clock ``perf/*``; and a checkpoint written in the middle of
an iteration resumes to the same end state.
"""

from __future__ import annotations

import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers.logger import Logger

from lightq.algos import DDPG, DQN

UPDATES = 60


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.after_update: list[tuple[int, int]] = []
        self.iterations = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.iterations += 1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after_update.append((module.updates, module.env_steps))


class MemoryLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    name = "memory"
    version = 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, {k: v for k, v in metrics.items() if not k.startswith("perf/")}))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def _model(cls, k: int, **extra):
    env = "CartPole-v1" if cls is DQN else "Pendulum-v1"
    kwargs = dict(hidden=[32, 32]) if cls is DDPG else {}
    return cls(
        env={"id": env}, replay={"capacity": 1000, "batch_size": 16, "batches_per_sample": 4},
        evaluation={"every_env_steps": 25, "episodes": 1}, seed=5, total_env_steps=50 + UPDATES,
        learning_starts_env_steps=50, log_every_updates=7, updates_per_iteration=k, **kwargs, **extra,
    )


def _fit(model, *callbacks, **trainer_kwargs):
    recorder, logger = Recorder(), MemoryLogger()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=logger, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[recorder, *callbacks],
                         **{"enable_checkpointing": False, **trainer_kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    return recorder, logger


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cls", [DQN, DDPG])
def test_k_updates_per_iteration_is_the_same_run(cls) -> None:
    runs = {}
    for k in (1, 3, 8):
        model = _model(cls, k)
        recorder, logger = _fit(model)
        runs[k] = (model, recorder, logger)
    base_model, base_rec, base_log = runs[1]
    assert [u for u, _ in base_rec.after_update] == list(range(1, UPDATES + 1))
    assert base_rec.iterations == UPDATES
    assert any("eval/return_mean" in row for _, row in base_log.rows)
    for k in (3, 8):
        model, rec, log = runs[k]
        assert model.updates == UPDATES and model.env_steps == base_model.env_steps
        params, base = _params(model), _params(base_model)
        assert all(torch.equal(params[name], base[name]) for name in base), f"k={k}: parameters differ"
        assert rec.after_update == base_rec.after_update  # every callback saw every update, same clocks
        assert rec.iterations == math.ceil(UPDATES / k)  # only on_train_batch_start sees iterations
        assert log.rows == base_log.rows  # train/, rollout/, eval/ metrics: same values, same env steps
        assert model.final_eval == base_model.final_eval


def test_max_steps_stops_inside_an_iteration() -> None:
    model = _model(DQN, 8)
    recorder, _ = _fit(model, max_steps=13)
    assert model.updates == 13
    assert recorder.after_update[-1][0] == 13


def test_checkpoint_written_mid_iteration_resumes_to_the_same_end(tmp_path) -> None:
    """every_n_train_steps=20 with k=8: saves land inside iterations (updates 20, 40), and resume is exact."""
    full = _model(DQN, 8)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=20, save_top_k=-1, filename="{step}")
    _fit(full, ckpt, enable_checkpointing=True)
    saved = sorted(p.name for p in tmp_path.glob("step=*.ckpt"))
    assert saved == ["step=20.ckpt", "step=40.ckpt", "step=60.ckpt"]

    resumed = _model(DQN, 8)
    recorder, logger = Recorder(), MemoryLogger()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=logger, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[recorder])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(resumed, ckpt_path=str(tmp_path / "step=20.ckpt"))
    assert recorder.after_update[0][0] == 21 and resumed.updates == UPDATES
    params, base = _params(resumed), _params(full)
    assert all(torch.equal(params[name], base[name]) for name in base)


def test_invalid_updates_per_iteration() -> None:
    with pytest.raises(ValueError, match="updates_per_iteration=0 must be >= 1"):
        _model(DQN, 0)
