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
drawn uniformly in each (Schaul et al., Appendix B.2.1); the indices come back in random order.
Tree updates and the tree descent are
vectorised over the batch; the only Python loops run over the log2(capacity) levels of the tree
(updates: one iteration per level; the sampling descent handles several levels per iteration, see
``PrioritizedSampler._retrieve``). CPU cost is dominated by per-op overhead, hence the few-ops design.

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
_TOP_LEVELS = 11  # first descent step: one cumsum over the <= 2048 nodes at this depth
_STEP_LEVELS = 6  # later steps: gather <= 64 descendants per sampled node


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
            index = torch.arange(self._max_capacity, device=self._device)[index]
        index = torch.as_tensor(index, device=self._device)
        if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"index must be integer, got dtype {index.dtype}.")
        if index.ndim > 1:
            raise NotImplementedError(
                f"{type(self).__name__} supports one-dimensional storages only (got an index of shape "
                f"{tuple(index.shape)})."
            )
        return index.reshape(-1).long()

    def _valid(self, index: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop negative indices (MaxValueWriter's "do not update" marker); reject out-of-range ones."""
        if index.numel() == 0:
            return index, value
        lo, hi = (int(x) for x in torch.aminmax(index))
        if hi >= self._max_capacity:
            raise IndexError(f"index {hi} out of range for max_capacity={self._max_capacity}.")
        if lo < 0:
            keep = index >= 0
            index, value = index[keep], value[keep]
        return index, value

    def _set_leaves(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """Write float64 ``value`` at leaves ``index`` (valid, 1-D) and recompute their ancestors.

        Duplicate indices: the last occurrence wins (a stable sort makes this deterministic).
        """
        if index.numel() == 0:
            return
        if index.numel() > 1:
            index, order = torch.sort(index, stable=True)
            index, counts = torch.unique_consecutive(index, return_counts=True)
            if index.numel() < order.numel():
                order = order.index_select(0, counts.cumsum_(0).sub_(1))  # last of each run of equal indices
            value = value.index_select(0, order)
        st, mt = self._sum_tree, self._min_tree
        node = index + self._capacity_pow2
        st.index_copy_(0, node, value)
        mt.index_copy_(0, node, value)
        if self._depth == 0:
            return
        # Row j holds the ancestors j + 1 levels up; rows are processed bottom-up, one level at a time.
        # Leaves sharing an ancestor write the same value (computed from the same, already updated
        # children), so the repeated indices within a row are harmless.
        ancestors = node.unsqueeze(0) >> self._shifts
        st_left, st_right, mt_left, mt_right = st[0::2], st[1::2], mt[0::2], mt[1::2]  # [k]: children of k
        for anc in ancestors.unbind(0):
            st.index_copy_(0, anc, st_left.index_select(0, anc).add_(st_right.index_select(0, anc)))
            mt.index_copy_(0, anc, torch.minimum(mt_left.index_select(0, anc), mt_right.index_select(0, anc)))

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
        """Tree node (leaf ``i + capacity_pow2``) with ``prefix(i) <= mass < prefix(i + 1)``, with i < n.

        Top-down descent of the sum tree, several levels per step: first one cumulative sum over the
        (at most 2**_TOP_LEVELS) nodes at depth t, shared by the whole batch, then steps of at most
        _STEP_LEVELS levels, each gathering the 2**k descendants of every current node ([batch, 2**k])
        and locating the remaining mass in their cumulative sum. This lands on the same leaf as a
        one-level-at-a-time descent, in far fewer torch calls (each costs microseconds of overhead).
        ``mass`` is consumed (modified in place). Rounding can push a draw at or above the total mass
        onto the rightmost child at some step, i.e. past the last filled leaf; the final clamp returns
        the last filled leaf (i = n - 1) then.
        """
        st = self._sum_tree
        t = min(self._depth, _TOP_LEVELS)
        level = st[1 << t : 2 << t]
        cs = level.cumsum(0)
        pos = torch.searchsorted(cs, mass, right=True).clamp_max_(level.numel() - 1)  # #(cs <= mass)
        d = self._depth - t
        if d > 0:
            mass = mass.sub_((cs - level).index_select(0, pos))  # mass left inside the chosen node
        node = pos.add_(1 << t)
        while d > 0:
            k = min(d, _STEP_LEVELS)
            m = 1 << k
            d -= k
            children = torch.add(self._aranges[k], node.unsqueeze(1), alpha=m)  # [batch, m], k levels down
            vals = st.take(children)
            cs = vals.cumsum(1)
            pos = torch.searchsorted(cs, mass.unsqueeze(1), right=True).clamp_max_(m - 1)
            if d > 0:
                mass = mass.sub_((cs - vals).gather(1, pos).squeeze(1))
            node = torch.add(pos.squeeze(1), node, alpha=m)
        return node.clamp_max_(self._capacity_pow2 + n - 1)

    # --------------------------------------------------------------- sampler API

    @torch.no_grad()
    def sample(self, storage: Any, batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Stratified proportional draw of ``batch_size`` indices among the ``len(storage)`` filled slots.

        Returns ``(index, {"_weight": w})``, ``w_i = (N P(i))^-beta / max_j (N P(j))^-beta`` (float32),
        N = len(storage). Randomness comes from ``self._rng`` (set by the ReplayBuffer; may be None).
        """
        n = len(storage)
        if n == 0:
            raise RuntimeError("Cannot sample from an empty storage.")
        if getattr(storage, "ndim", 1) > 1:
            raise NotImplementedError(f"{type(self).__name__} supports one-dimensional storages only.")
        n = min(n, self._max_capacity)
        nodes = self._range_nodes(n)
        total = self._sum_tree.index_select(0, nodes).sum().item()
        p_min = self._min_tree.index_select(0, nodes).min().item()
        # The min tree holds +inf for never-written slots, so a finite p_min means all n are set.
        if not (total > 0 and 0 < p_min < float("inf")):
            raise RuntimeError(
                f"Priorities of the {n} filled slots are not all set (total={total}, min={p_min}); "
                "was extend()/add() called for every write?"
            )
        # Stratified: one uniform draw in each of batch_size equal segments of [0, total). The segments
        # are visited in random order, so the result is not sorted by index: any slice of it (e.g. one
        # of several minibatches cut from one large draw) is a random subset of the strata, not a
        # contiguous block of the buffer.
        gen_device = self._rng.device if self._rng is not None else self._device
        mass = torch.rand(batch_size, generator=self._rng, dtype=torch.float64, device=gen_device)
        segment = torch.randperm(batch_size, generator=self._rng, dtype=torch.float64, device=gen_device)
        mass = mass.add_(segment)
        if mass.device != self._device:
            mass = mass.to(self._device)
        mass.mul_(total / batch_size)
        node = self._retrieve(mass, n)
        p = self._sum_tree.index_select(0, node)
        index = node.sub_(self._capacity_pow2)
        # (N P(i))^-beta / (N p_min / total)^-beta = (p_i / p_min)^-beta
        weight = p.div_(p_min).pow_(-self.beta).float()
        return index, {"_weight": weight}

    @torch.no_grad()
    def extend(self, index: Any) -> None:
        """New items (just written at ``index``) get the max priority seen so far, raised to alpha."""
        index = self._as_index(index)
        value = torch.full(index.shape, self._new_item_value(), dtype=torch.float64, device=self._device)
        self._set_leaves(*self._valid(index, value))

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
        priority = torch.as_tensor(priority, dtype=torch.float64, device=self._device)
        if priority.numel() == 1:
            priority = priority.reshape(()).expand(index.shape)
        elif priority.numel() == index.numel():
            priority = priority.reshape(index.shape)
        else:
            raise ValueError(
                f"priority must be a number or have one value per index; got {priority.numel()} priorities "
                f"for {index.numel()} indices."
            )
        index, priority = self._valid(index, priority)
        if index.numel() == 0:
            return
        raw = priority.abs().add_(self._eps)
        raw_max = raw.max().item()
        if not raw_max < float("inf"):  # also catches NaN
            raise ValueError(f"priorities must be finite, got max |priority| + eps = {raw_max}.")
        self._max_priority = max(self._max_priority, raw_max)
        self._set_leaves(index, raw.pow_(self._alpha))

    def mark_update(self, index: Any, *, storage: Any | None = None) -> None:
        """Give ``index`` the max priority again (as for new items)."""
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
                f"state_dict max_capacity={state_dict['max_capacity']} != this sampler's "
                f"max_capacity={self._max_capacity}."
            )
        size = 2 * self._capacity_pow2
        for key in ("sum_tree", "min_tree"):
            if tuple(state_dict[key].shape) != (size,):
                shape = tuple(state_dict[key].shape)
                raise RuntimeError(f"state_dict[{key!r}] has shape {shape}, expected ({size},).")
        self._alpha = float(state_dict["alpha"])
        self.beta = float(state_dict["beta"])
        self._eps = float(state_dict["eps"])
        self._max_priority = float(state_dict["max_priority"])
        contiguous = torch.contiguous_format
        self._sum_tree = state_dict["sum_tree"].to(self._device, torch.float64).clone(memory_format=contiguous)
        self._min_tree = state_dict["min_tree"].to(self._device, torch.float64).clone(memory_format=contiguous)
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
