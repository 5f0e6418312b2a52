"""``ReplayIterable``'s direct draw (TorchRL's index draw + one gather per column) equals ``buffer.sample``."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

import lightq.data.replay as replay_mod
from lightq.data.replay import ReplayConfig, ReplayIterable, make_replay_buffer


def _filled(config: ReplayConfig, n: int):
    buffer = make_replay_buffer(config, device="cpu", seed=3)
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, 37):  # several extends, wrapping around the capacity
        m = min(37, n - start)
        buffer.extend(TensorDict({
            "obs": torch.randn(m, 4, generator=g), "action": torch.randint(0, 2, (m,), generator=g),
            "reward": torch.randn(m, generator=g), "next_obs": torch.randn(m, 4, generator=g),
            "terminated": torch.rand(m, generator=g) < 0.1, "discount": torch.full((m,), 0.99),
        }, batch_size=[m]))
    return buffer


@pytest.mark.parametrize("storage", ["tensor", "memmap"])
@pytest.mark.parametrize("n", [150, 500])  # not full; wrapped around (capacity 200)
def test_direct_draw_equals_torchrl_sample(storage, n, tmp_path, monkeypatch) -> None:
    config = ReplayConfig(capacity=200, batch_size=16, batches_per_sample=4, storage=storage,
                          memmap_dir=str(tmp_path / "mm") if storage == "memmap" else None)
    direct = ReplayIterable(_filled(config, n), config, num_updates=20)
    assert replay_mod._uniform_columns(direct.buffer) is not None  # the fast path is taken
    direct_batches = [direct.next_batch() for _ in range(20)]

    config_b = ReplayConfig(**{**config.__dict__, "memmap_dir": str(tmp_path / "mm2") if storage == "memmap" else None})
    reference = ReplayIterable(_filled(config_b, n), config_b, num_updates=20)
    monkeypatch.setattr(replay_mod, "_uniform_columns", lambda buffer: None)  # TorchRL's sample
    reference_batches = [reference.next_batch() for _ in range(20)]

    # 20 batches = 5 draws of 4: the generator advances alike from draw to draw.
    for a, b in zip(direct_batches, reference_batches, strict=True):
        for x, y in zip(a, b):
            if x is None:
                assert y is None
            else:
                assert x.dtype == y.dtype and x.shape == y.shape
                assert torch.equal(x, y)


def test_prioritized_keeps_torchrl_sample() -> None:
    config = ReplayConfig(capacity=200, batch_size=16, prioritized=True)
    buffer = make_replay_buffer(config, device="cpu", seed=3)
    assert replay_mod._uniform_columns(buffer) is None
