"""Mixed precision on CPU: every algorithm trains under ``bf16-mixed`` with finite losses, its TD target
and bootstrap value in float32; ``16-mixed``'s loss-scaling path runs with a CPU GradScaler."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.plugins.precision import MixedPrecision

import lightq.algos.cemq
import lightq.algos.ddpg
import lightq.algos.naf
import lightq.objectives.dqn
from lightq.algos import CEMQ, DDPG, DQN, NAF
from lightq.objectives.common import float32_math, td_target

SMALL = dict(total_env_steps=260, learning_starts_env_steps=100, evaluation={"every_env_steps": None},
             log_every_updates=10, seed=1)
CASES = {
    "DQN": (DQN, dict(env={"id": "CartPole-v1"}, replay={"batch_size": 32}, hidden=[32], double_q=True)),
    "DDPG": (DDPG, dict(env={"id": "Pendulum-v1"}, replay={"batch_size": 32}, hidden=[32])),
    "TD3": (DDPG, dict(env={"id": "Pendulum-v1"}, replay={"batch_size": 32}, hidden=[32], twin_critics=True,
                       target_policy_noise=0.2, policy_delay=2)),
    "NAF": (NAF, dict(env={"id": "Pendulum-v1"}, replay={"batch_size": 32}, hidden=[32])),
    "CEMQ": (CEMQ, dict(env={"id": "Pendulum-v1"}, replay={"batch_size": 32}, hidden=[32])),
}
# Where each algorithm's training_step finds td_target.
TD_TARGET_HOMES = [lightq.objectives.dqn, lightq.algos.ddpg, lightq.algos.naf, lightq.algos.cemq]


class MemoryLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []

    name = "memory"
    version = 0

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append(dict(metrics))


@pytest.fixture
def td_target_spy(monkeypatch):
    calls: list[dict] = []

    def spy(r_t, discount_t, terminated_t, v_t):
        y = td_target(r_t, discount_t, terminated_t, v_t)
        calls.append({"autocast": torch.is_autocast_enabled("cpu"), "v_dtype": v_t.dtype, "y_dtype": y.dtype})
        return y

    for module in TD_TARGET_HOMES:
        monkeypatch.setattr(module, "td_target", spy)
    return calls


def _fit(model, precision="bf16-mixed", plugins=None):
    logger = MemoryLogger()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, precision=None if plugins else precision,
        plugins=plugins,
    )
    trainer.fit(model)
    return trainer, logger


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_mixed_trains_with_float32_td_targets(name, td_target_spy):
    cls, kwargs = CASES[name]
    model = cls(**SMALL, **kwargs)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    trainer, logger = _fit(model)
    assert type(trainer.precision_plugin).__name__ == "MixedPrecision" and trainer.precision_plugin.precision == "bf16-mixed"
    assert model.updates == model.num_updates == 160
    # The TD target was built inside an autocast region (the training step is autocast) ...
    assert td_target_spy and all(c["autocast"] for c in td_target_spy)
    # ... yet the bootstrap value fed to it and the target itself are float32 (bf16 without float32_math).
    assert {c["v_dtype"] for c in td_target_spy} == {torch.float32}
    assert {c["y_dtype"] for c in td_target_spy} == {torch.float32}
    losses = [v for m in logger.metrics for k, v in m.items() if k.startswith("train/") and "loss" in k]
    assert len(losses) >= 16 and all(math.isfinite(v) for v in losses)
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed, not bf16-true


def test_float32_math_turns_autocast_off_only_inside():
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 4)
    x = torch.randn(8, 16)
    exact = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
        with float32_math(x.device):
            high = net(x)
        assert torch.is_autocast_enabled("cpu")  # restored after the block
    assert low.dtype == torch.bfloat16 and high.dtype == torch.float32
    assert torch.equal(high, exact)
    assert not torch.equal(low.float(), exact)  # what the target would have been without it


@pytest.mark.parametrize("name", ["DQN", "TD3"])
def test_16_mixed_loss_scaling_path_with_a_cpu_grad_scaler(name, td_target_spy):
    # Lightning maps precision="16-mixed" on CPU to bf16-mixed; the fp16 + GradScaler path is reached here
    # with an explicit plugin (torch's GradScaler supports CPU), as it would be on a GPU.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    cls, kwargs = CASES[name]
    model = cls(**SMALL, **kwargs, max_grad_norm=1.0)
    trainer, logger = _fit(model, plugins=[plugin])
    assert model._direct_optimization() is False  # the scaler must see backward and step
    assert model.updates == 160
    assert scaler._scale is not None  # scale() was called: the loss went through the scaler
    assert {c["v_dtype"] for c in td_target_spy} == {torch.float32}
    losses = [v for m in logger.metrics for k, v in m.items() if k.startswith("train/") and "loss" in k]
    assert losses and all(math.isfinite(v) for v in losses)
