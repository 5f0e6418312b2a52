"""Proportional prioritized experience replay sampler, in pure torch.

Why this exists: torchrl's own ``PrioritizedSampler`` keeps its priorities in C++ segment trees
(``torchrl._torchrl.SumSegmentTreeFp32`` & co). The compiled extension of torchrl 0.14.1 does not
load with torch 2.13 (undefined symbol), so that sampler raises "SumSegmentTreeFp32 is not
available" as soon as it is built. This module re-implements the proportional variant of

    Schaul, Quan, Antonoglou, Silver. "Prioritized Experience Replay". ICLR 2016.
    https://arxiv.org/abs/1511.05952

with a sum tree and a min tree held as flat torch tensors, and plugs into TorchRL's ``ReplayBuffer``
as its ``sampler``:

* priority of item i:      p_i = (|delta_i| + eps) ** alpha          (what the trees store)
* sampling probability:    P(i) = p_i / sum_k p_k                     (over the N filled slots)
* importance weight:       w_i = (N * P(i)) ** -beta / max_j (N * P(j)) ** -beta
                               = (p_i / p_min) ** -beta
* new items get the largest ``|delta| + eps`` seen so far (1.0 before any update), raised to alpha,
  so that every new transition is likely to be replayed at least once.

Sampling is stratified: the total mass is split into ``batch_size`` equal segments and one point is
drawn uniformly in each (Schaul et al., Appendix B.2.1). Tree updates and the tree descent are
vectorised over the batch; the only Python loops run over the log2(capacity) levels of the tree.

The info dict returned by :meth:`PrioritizedSampler.sample` holds the weights under ``"_weight"``
(torchrl's C++-backed sampler uses ``"priority_weight"``); ``ReplayBuffer`` adds ``"index"``.
Only one-dimensional storages are supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchrl.data.replay_buffers.samplers import Sampler

__all__ = ["PrioritizedSampler"]

_STATE_FILE = "prioritized_sampler.pt"
_TOP_LEVELS = 10  # first descent step: one cumsum over the <= 1024 nodes at this depth
_STEP_LEVELS = 7  # later steps: gather <= 128 descendants per sampled node


class PrioritizedSampler(Sampler):
    """Proportional prioritized sampler (Schaul et al. 2016) backed by torch sum/min trees.

    Args:
        max_capacity: Capacity of the storage it samples from (indices live in ``[0, max_capacity)``).
        alpha: Prioritisation exponent (0 = uniform). Fixed for the life of the sampler: the trees
            store priorities already raised to it.
        beta: Importance-sampling exponent. A plain attribute: schedules assign ``sampler.beta``.
        eps: Added to ``|priority|`` before raising to ``alpha`` so no item has zero mass.
        device: Device holding the trees (and of the returned index / weights).

    Example:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, ReplayBuffer
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(100),
        ...                   sampler=PrioritizedSampler(100, alpha=0.6, beta=0.4), batch_size=8)
        >>> _ = rb.extend(TensorDict({"x": torch.arange(50.0)}, batch_size=[50]))
        >>> data, info = rb.sample(return_info=True)  # info["_weight"], info["index"]
        >>> rb.update_priority(info["index"], torch.rand(8))
    """

    # TensorDictReplayBuffer reads this to reduce multi-element priorities.
    reduction: str = "max"

    def __init__(
        self,
        max_capacity: int,
        alpha: float,
        beta: float,
        eps: float = 1e-6,
        device: str | torch.device = "cpu",
    ) -> None:
        max_capacity = int(max_capacity)
        if max_capacity < 1:
            raise ValueError(f"max_capacity={max_capacity} must be >= 1.")
        if alpha < 0:
            raise ValueError(f"alpha={alpha} must be >= 0.")
        if beta < 0:
            raise ValueError(f"beta={beta} must be >= 0.")
        if eps <= 0:
            raise ValueError(f"eps={eps} must be > 0 (it keeps every priority strictly positive).")
        self._max_capacity = max_capacity
        self._alpha = float(alpha)
        self.beta = float(beta)
        self._eps = float(eps)
        self._device = torch.device(device)
        self._depth = (max_capacity - 1).bit_length()  # number of levels below the root
        self._capacity_pow2 = 1 << self._depth
        self._shifts = torch.arange(1, self._depth + 1, device=self._device).unsqueeze(1)
        self._aranges = {k: torch.arange(1 << k, device=self._device) for k in range(1, _STEP_LEVELS + 1)}
        self._init()

    # ------------------------------------------------------------------ trees

    def _init(self) -> None:
        size = 2 * self._capacity_pow2
        # Node k has children 2k and 2k+1; leaves sit at [capacity_pow2, 2 * capacity_pow2); node 0 is unused.
        self._sum_tree = torch.zeros(size, dtype=torch.float64, device=self._device)
        self._min_tree = torch.full((size,), float("inf"), dtype=torch.float64, device=self._device)
        self._max_priority = 1.0  # largest |priority| + eps seen so far (Schaul: p_1 = 1)
        self._range_cache: tuple[int, torch.Tensor] | None = None

    def _empty(self) -> None:
        self._init()

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def eps(self) -> float:
        return self._eps

    @property
    def max_capacity(self) -> int:
        return self._max_capacity

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def default_priority(self) -> float:
        """Raw priority (before ``+ eps`` and ``** alpha``) that maps to the current max tree value."""
        return max(self._max_priority - self._eps, 0.0)

    def _new_item_value(self) -> float:
        return self._max_priority**self._alpha

    def _as_index(self, index: Any) -> torch.Tensor:
        if isinstance(index, slice):
            index = torch.arange(self._max_capacity)[index]
        index = torch.as_tensor(index, device=self._device)
        if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"index must be integer, got dtype {index.dtype}.")
        if index.ndim > 1:
            raise NotImplementedError(
                f"{type(self).__name__} supports one-dimensional storages only (got an index of shape "
                f"{tuple(index.shape)})."
            )
        return index.reshape(-1).long()

    def _set_leaves(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """Write ``value`` at leaves ``index`` and recompute their ancestors, level by level.

        Duplicate indices: the last occurrence wins (a stable sort makes this deterministic).
        """
        keep = index >= 0  # MaxValueWriter marks "do not update" with -1
        if not bool(keep.all()):
            index, value = index[keep], value[keep]
        if index.numel() == 0:
            return
        if int(index.max()) >= self._max_capacity:
            raise IndexError(f"index {int(index.max())} out of range for max_capacity={self._max_capacity}.")
        if index.numel() > 1:
            index, order = torch.sort(index, stable=True)
            last = torch.ones_like(index, dtype=torch.bool)
            last[:-1] = index[1:] != index[:-1]
            index, value = index[last], value[order[last]]
        st, mt = self._sum_tree, self._min_tree
        node = index + self._capacity_pow2
        st.index_copy_(0, node, value)
        mt.index_copy_(0, node, value)
        if self._depth == 0:
            return
        # Row j holds the ancestors j + 1 levels up. Leaves sharing an ancestor write the same value
        # (computed from the same, already updated, children), so repeated indices are harmless.
        ancestors = node.unsqueeze(0) >> self._shifts
        st_pairs, mt_pairs = st.view(-1, 2), mt.view(-1, 2)  # row k = (node 2k, node 2k + 1) = children of k
        for anc in ancestors.unbind(0):
            st.index_copy_(0, anc, st_pairs.index_select(0, anc).sum(1))
            mt.index_copy_(0, anc, mt_pairs.index_select(0, anc).amin(1))

    def _range_nodes(self, n: int) -> torch.Tensor:
        """Tree nodes whose leaves exactly tile ``[0, n)`` (at most two per level)."""
        if self._range_cache is not None and self._range_cache[0] == n:
            return self._range_cache[1]
        lo, hi = self._capacity_pow2, self._capacity_pow2 + n
        nodes = []
        while lo < hi:
            if lo & 1:
                nodes.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                nodes.append(hi)
            lo >>= 1
            hi >>= 1
        out = torch.tensor(nodes, dtype=torch.long, device=self._device)
        self._range_cache = (n, out)
        return out

    def _retrieve(self, mass: torch.Tensor, n: int) -> torch.Tensor:
        """Leaf index i with ``prefix(i) <= mass < prefix(i + 1)`` for each mass (float64), clamped to < n.

        Top-down descent of the sum tree, several levels per step: first one cumulative sum over the
        (at most 2**_TOP_LEVELS) nodes at depth t, shared by the whole batch, then steps of at most
        _STEP_LEVELS levels, each gathering the 2**k descendants of every current node ([batch, 2**k])
        and locating the mass in their cumulative sum. This gives the same leaf as a one-level-at-a-time
        descent, in far fewer (per-op overhead bound) torch calls. Rounding can push a draw at or above
        the total mass onto the rightmost child at some step, i.e. past the last filled leaf; clamping
        to ``n - 1`` returns the last filled leaf instead.
        """
        st = self._sum_tree
        t = min(self._depth, _TOP_LEVELS)
        level = st[1 << t : 2 << t]
        cs = level.cumsum(0)
        pos = torch.searchsorted(cs, mass, right=True).clamp_max_(level.numel() - 1)  # #(cs <= mass)
        mass = mass - (cs - level).index_select(0, pos)
        node = pos.add_(1 << t)
        d = self._depth - t
        while d > 0:
            k = min(d, _STEP_LEVELS)
            m = 1 << k
            children = torch.add(self._aranges[k], node.unsqueeze(1), alpha=m)  # [batch, m] nodes k levels down
            vals = st.take(children)
            cs = vals.cumsum(1)
            pos = torch.searchsorted(cs, mass.unsqueeze(1), right=True).clamp_max_(m - 1)
            mass = mass - (cs - vals).gather(1, pos).squeeze(1)
            node = torch.add(pos.squeeze(1), node, alpha=m)
            d -= k
        return node.sub_(self._capacity_pow2).clamp_max_(n - 1)

    # --------------------------------------------------------------- sampler API

    @torch.no_grad()
    def sample(self, storage: Any, batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = len(storage)
        if n == 0:
            raise RuntimeError("Cannot sample from an empty storage.")
        if getattr(storage, "ndim", 1) > 1:
            raise NotImplementedError(f"{type(self).__name__} supports one-dimensional storages only.")
        n = min(n, self._max_capacity)
        nodes = self._range_nodes(n)
        total = self._sum_tree.index_select(0, nodes).sum()
        p_min = self._min_tree.index_select(0, nodes).min()
        if not (float(total) > 0 and float(p_min) < float("inf")):
            raise RuntimeError(
                f"Priorities of the {n} filled slots are not all set (total={float(total)}, min={float(p_min)}); "
                "was extend()/add() called for every write?"
            )
        # Stratified: one uniform draw in each of batch_size equal segments of [0, total).
        gen_device = self._rng.device if self._rng is not None else self._device
        mass = torch.rand(batch_size, generator=self._rng, dtype=torch.float64, device=gen_device)
        mass = mass.to(self._device)
        mass.add_(torch.arange(batch_size, dtype=torch.float64, device=self._device))
        mass.mul_(total / batch_size)
        index = self._retrieve(mass, n)
        p = self._sum_tree.index_select(0, index + self._capacity_pow2)
        if not bool((p > 0).all()):  # only reachable if a slot < n was never written
            raise RuntimeError("Sampled a slot that holds no priority; was extend()/add() called for every write?")
        # w_i = (N P(i))^-beta / (N p_min / total)^-beta = (p_i / p_min)^-beta
        weight = (p / p_min).pow_(-self.beta).to(torch.float32)
        return index, {"_weight": weight}

    @torch.no_grad()
    def extend(self, index: Any) -> None:
        index = self._as_index(index)
        value = torch.full(index.shape, self._new_item_value(), dtype=torch.float64, device=self._device)
        self._set_leaves(index, value)

    def add(self, index: Any) -> None:
        self.extend(index)

    @torch.no_grad()
    def update_priority(
        self,
        index: Any,
        priority: float | torch.Tensor,
        *,
        storage: Any | None = None,
    ) -> None:
        """Set the priority of ``index`` to ``(|priority| + eps) ** alpha``.

        ``priority`` is a number or has one value per index. Negative indices are skipped; for an index
        given several times the last value wins.
        """
        index = self._as_index(index)
        priority = torch.as_tensor(priority, device=self._device).detach().to(torch.float64)
        if priority.numel() == 1:
            priority = priority.reshape(()).expand(index.shape)
        elif priority.numel() == index.numel():
            priority = priority.reshape(index.shape)
        else:
            raise ValueError(
                f"priority must be a number or have one value per index; got {priority.numel()} priorities "
                f"for {index.numel()} indices."
            )
        keep = index >= 0
        if not bool(keep.all()):
            index, priority = index[keep], priority[keep]
        if index.numel() == 0:
            return
        raw = priority.abs() + self._eps
        raw_max = float(raw.max())
        if not raw_max < float("inf"):  # also catches NaN
            raise ValueError("priorities must be finite.")
        self._max_priority = max(self._max_priority, raw_max)
        self._set_leaves(index, raw.pow(self._alpha))

    def mark_update(self, index: Any, *, storage: Any | None = None) -> None:
        self.extend(index)

    # ------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        return {
            "max_capacity": self._max_capacity,
            "alpha": self._alpha,
            "beta": float(self.beta),
            "eps": self._eps,
            "max_priority": float(self._max_priority),
            "sum_tree": self._sum_tree.detach().cpu().clone(),
            "min_tree": self._min_tree.detach().cpu().clone(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict["max_capacity"]) != self._max_capacity:
            raise RuntimeError(
                f"state_dict max_capacity={state_dict['max_capacity']} != this sampler's {self._max_capacity}."
            )
        size = 2 * self._capacity_pow2
        for key in ("sum_tree", "min_tree"):
            if tuple(state_dict[key].shape) != (size,):
                raise RuntimeError(f"state_dict[{key!r}] has shape {tuple(state_dict[key].shape)}, expected ({size},).")
        self._alpha = float(state_dict["alpha"])
        self.beta = float(state_dict["beta"])
        self._eps = float(state_dict["eps"])
        self._max_priority = float(state_dict["max_priority"])
        self._sum_tree = state_dict["sum_tree"].to(device=self._device, dtype=torch.float64).clone()
        self._min_tree = state_dict["min_tree"].to(device=self._device, dtype=torch.float64).clone()
        self._range_cache = None

    def dumps(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / _STATE_FILE)

    def loads(self, path: str | Path) -> None:
        state = torch.load(Path(path) / _STATE_FILE, map_location="cpu", weights_only=True)
        self.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_capacity={self._max_capacity}, alpha={self._alpha}, beta={self.beta}, "
            f"eps={self._eps}, max_priority={self._max_priority:.6g}, total={float(self._sum_tree[1]):.6g}, "
            f"device={self._device})"
        )
