"""``async_collection``: env steps in a worker process, the replay ratio held to within one update.

The worker runs the module's own policies on a forked copy with the latest parameters, so it collects the
transitions of the synchronous run; only their arrival in the buffer is one update later.
"""

from __future__ import annotations

import math
import warnings

import pytest
import pytorch_lightning as pl

import tests.helpers.faulty_envs  # noqa: F401  (registers lightq-test/* ids)
from lightq.algos import DDPG, DQN
from lightq.interaction.async_collector import AsyncCollector
from lightq.reliability import EnvFaultError


class ClockSpy(pl.Callback):
    def __init__(self) -> None:
        self.after_update: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after_update.append((module.updates, module.env_steps))


def _fit(model, *callbacks) -> None:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)


@pytest.mark.parametrize(("num_envs", "ratio"), [(1, 1.0), (2, 0.5), (3, 2.5)])
def test_async_collection_keeps_the_replay_ratio_one_update_behind(num_envs, ratio) -> None:
    start, total = 200, 500
    model = DQN(env={"id": "CartPole-v1", "num_envs": num_envs}, replay={"capacity": 2000, "batch_size": 16},
                evaluation={"every_env_steps": 100, "episodes": 1}, total_env_steps=total,
                learning_starts_env_steps=start, env_steps_per_update=ratio, async_collection=True)
    spy = ClockSpy()
    _fit(model, spy)
    assert isinstance(model.collector, AsyncCollector)
    assert model.updates == model.num_updates == math.ceil((total - start) / ratio)
    # The spy runs before lightq's callbacks, so after update u it sees the clock as the previous update's
    # collection left it: synchronously start + (u - 1) * ratio; asynchronously one chunk less (the chunk
    # submitted after update u - 1 is still in flight; the one of update u - 2 has been joined).
    for u, env_steps in spy.after_update:
        behind = start + max(u - 2, 0) * ratio
        assert behind <= env_steps < behind + num_envs, (u, env_steps)
    # At the end every chunk is joined and stored or staged: nothing collected is lost.
    assert model.env_steps >= total and not model.collector.in_flight
    stored = len(model.collector.buffer) + sum(len(c["reward"]) for c in model.collector._staged)
    assert stored == model.collector.env_steps
    assert model.final_eval is not None


def test_async_collects_the_synchronous_transitions() -> None:
    """Same seed: the async run's buffer holds exactly the synchronous run's transitions, in order."""
    buffers = []
    for async_collection in (False, True):
        model = DQN(env={"id": "CartPole-v1"}, replay={"capacity": 2000, "batch_size": 16},
                    evaluation={"every_env_steps": None}, total_env_steps=450, learning_starts_env_steps=200,
                    seed=3, async_collection=async_collection)
        _fit(model)
        model.collector.flush()
        storage = model.collector.buffer.storage
        buffers.append({k: storage[: len(model.collector.buffer)][k].clone() for k in ("obs", "action", "reward")})
    sync, async_ = buffers
    assert len(sync["reward"]) == len(async_["reward"]) == 450
    # The first 200 + 1 steps are the same (warm-up, then the first update's step with the initial network);
    # later greedy actions come from networks trained on batches drawn one update apart, so they may differ.
    for key in sync:
        assert (sync[key][:201] == async_[key][:201]).all(), key


def test_async_collection_ddpg_trains() -> None:
    model = DDPG(env={"id": "Pendulum-v1"}, replay={"capacity": 2000, "batch_size": 16}, hidden=[32, 32],
                 evaluation={"every_env_steps": None}, total_env_steps=400, learning_starts_env_steps=200,
                 async_collection=True)
    _fit(model)
    assert model.updates == 200 and model.env_steps == 400


def test_env_fault_on_the_worker_surfaces_in_the_main_thread() -> None:
    env_id = "tests.helpers.faulty_envs:lightq-test/RaiseOnStepCartPole-v0"  # raises on its 900th step
    model = DQN(env={"id": env_id}, replay={"capacity": 2000, "batch_size": 16},
                evaluation={"every_env_steps": None}, total_env_steps=1500, learning_starts_env_steps=100,
                async_collection=True)
    with pytest.raises(EnvFaultError, match="failed during step at env step 899"):
        _fit(model)
    assert model.updates < 1400


def test_async_collection_is_refused_for_atari() -> None:
    with pytest.raises(ValueError, match="async_collection is not supported for Atari"):
        DQN(env={"id": "ALE/Pong-v5"}, async_collection=True)


def test_async_checkpoint_resumes_with_a_warning(tmp_path) -> None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    def model():
        return DQN(env={"id": "CartPole-v1"}, replay={"capacity": 2000, "batch_size": 16},
                   evaluation={"every_env_steps": None}, total_env_steps=400, learning_starts_env_steps=200,
                   async_collection=True)

    first = model()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, max_steps=100,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(first)
    resumed = model()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="written with async_collection"):
        trainer.fit(resumed, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.updates >= 100 and resumed.env_steps >= 300  # restored clocks
