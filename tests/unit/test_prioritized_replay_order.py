"""Prioritized replay through ``ReplayIterable`` on a ring buffer that wraps, against a naive reference.

The reference is a plain list of tree values driven by the same extend / priority-update sequence:
queued updates (last write wins) land on the transitions that were sampled, then the flush writes the
staged transitions at the ring cursor with the current max priority (Schaul et al. 2016), which
includes the updates just applied.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from lightq.data.replay import ReplayConfig, ReplayIterable, make_replay_buffer

CAPACITY, ALPHA, EPS = 8, 0.5, 1e-3


class _NaivePriorities:
    def __init__(self) -> None:
        self.values: list[float | None] = [None] * CAPACITY  # (|δ| + eps) ** alpha per slot
        self.max_raw = 1.0  # largest |δ| + eps so far; 1 before any update
        self.cursor = 0

    def update(self, index: list[int], priority: list[float]) -> None:
        for i, p in zip(index, priority):
            raw = abs(p) + EPS
            self.max_raw = max(self.max_raw, raw)
            self.values[i] = raw**ALPHA

    def extend(self, n: int) -> None:
        for _ in range(n):
            self.values[self.cursor] = self.max_raw**ALPHA
            self.cursor = (self.cursor + 1) % CAPACITY


def _td(start: int, n: int) -> TensorDict:
    f = torch.arange(start, start + n, dtype=torch.float32)
    return TensorDict(
        {"obs": f[:, None], "action": f.long(), "reward": f, "next_obs": f[:, None],
         "terminated": torch.zeros(n, dtype=torch.bool), "discount": torch.ones(n)},
        batch_size=[n],
    )


@pytest.mark.parametrize("batches_per_sample", [1, 3])
def test_overwritten_slots_enter_with_max_priority_including_pending_updates(batches_per_sample):
    config = ReplayConfig(capacity=CAPACITY, batch_size=4, prioritized=True, alpha=ALPHA, beta_start=0.4,
                          priority_eps=EPS, batches_per_sample=batches_per_sample)
    buffer = make_replay_buffer(config, device="cpu", seed=0)
    sampler = buffer.sampler
    ref = _NaivePriorities()
    written = [0]
    per_flush = 3  # not a divisor of CAPACITY: the cursor wraps at every position

    def flush():  # the collector's flush: one extend of the staged transitions
        buffer.extend(_td(written[0], per_flush))
        written[0] += per_flush

    buffer.extend(_td(0, CAPACITY))  # a full buffer from the start: every flush overwrites
    written[0] = CAPACITY
    ref.extend(CAPACITY)
    replay = ReplayIterable(buffer, config, num_updates=30, before_sample=flush)
    pending: list[tuple[list[int], list[float]]] = []
    priorities = torch.Generator().manual_seed(1)
    for update in range(30):
        drew = not replay._queue
        batch = replay.next_batch()
        if drew:  # the draw applied the queued updates, then flushed
            for index, priority in pending:
                ref.update(index, priority)
            pending.clear()
            ref.extend(per_flush)
        leaves = sampler._sum_tree[sampler._capacity_pow2: sampler._capacity_pow2 + CAPACITY].tolist()
        assert leaves == pytest.approx(ref.values, rel=1e-12), f"update {update}"
        # Mostly tiny |δ| (an overwritten slot would show them), now and then a new maximum.
        priority = torch.rand(4, generator=priorities) * 1e-3
        if update % 7 == 3:
            priority[0] = 1.5 + update
        replay.update_priorities(batch.index, priority)
        pending.append((batch.index.tolist(), priority.tolist()))
    assert written[0] > 3 * CAPACITY and ref.max_raw > 20  # the buffer wrapped; the max grew past 1
