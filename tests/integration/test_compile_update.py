"""``compile_update``: the torch.compile'd TD loss trains the same network as the eager one (to float rounding)."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch

from lightq.algos import DDPG, DQN


def _fit(compile_update: bool) -> DQN:
    model = DQN(env={"id": "CartPole-v1"}, replay={"capacity": 2000, "batch_size": 32},
                evaluation={"every_env_steps": None}, total_env_steps=600, learning_starts_env_steps=200,
                log_every_updates=50, double_q=True, compile_update=compile_update, seed=1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    return model


def test_compiled_td_loss_matches_eager() -> None:
    eager, compiled = _fit(False), _fit(True)
    assert compiled.loss_fn is not compiled.td_loss  # the compiled wrapper was used
    assert compiled.updates == eager.updates == 400
    for name, value in eager.state_dict().items():
        # 400 Adam steps apart only by float rounding of fused kernels
        torch.testing.assert_close(compiled.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_compile_update_refused_where_not_implemented() -> None:
    with pytest.raises(ValueError, match="compile_update is implemented for the DQN family, not DDPG"):
        DDPG(env={"id": "Pendulum-v1"}, compile_update=True)
