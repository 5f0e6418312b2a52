"""``learning_starts_env_steps: 0`` and batches larger than the warm-up (issue 14, items 7 and 8).

RL Baselines3 Zoo's Acrobot and LunarLander settings use no warm-up and batch 128; SB3 then samples with
replacement from the few transitions stored. lightq used to crash on the empty buffer, and to refuse any
batch larger than the warm-up.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl

from lightq.algos import DQN


@pytest.mark.parametrize("n_step, num_envs", [(1, 1), (3, 2)])
def test_no_warm_up_trains_with_the_configured_clocks(n_step, num_envs):
    model = DQN(env={"id": "CartPole-v1", "num_envs": num_envs}, total_env_steps=400, learning_starts_env_steps=0,
                env_steps_per_update=2.0, n_step=n_step, replay={"batch_size": 128, "batches_per_sample": 1},
                evaluation={"every_env_steps": None}, hidden=(16,))
    with pytest.warns(UserWarning, match=r"replay.batch_size=128 is larger than the \d+ transitions stored"):
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(model)
    assert model.num_updates == 200 and model.updates == 200
    assert model.env_steps == 400
    # The warm-up was raised to the fewest env steps that store one transition (n_step vector steps).
    assert len(model.collector.buffer) > 0


def test_capacity_smaller_than_batch_is_refused():
    with pytest.raises(ValueError, match=r"replay.capacity=64 is smaller than replay.batch_size=128"):
        DQN(env={"id": "CartPole-v1"}, replay={"capacity": 64, "batch_size": 128})
