"""Pixel replay that stores every frame once and rebuilds frame stacks at sample time.

Layout. The storage holds one row per env step of each env ("stream"): the newest frame of the
observation ``s_t`` (uint8 84×84), the action ``a_t``, the (clipped) reward ``r_{t+1}``, ``terminated``
(the transition ended in a terminal state: game over, or a life loss under the ``nature`` protocol),
``ep_step`` (the frame's index in its game: 0 at a reset) and ``last``. When a game ends (reset), one
extra row with ``last=True`` holds the newest frame of the true final observation: it differs from the
next game's reset frame and is the ``next_obs`` of the last transition. ``last`` rows are never sampled
as a transition start. Capacity is split into one circular segment per env, so each env's frames are
consecutive in its segment whatever the other envs do (an extra ``last`` row shifts only its own stream).

Rebuilding at sample time (Dopamine's ``OutOfGraphReplayBuffer`` idea, per stream):
    obs      = frames[t-3 .. t]       with frames before the game's first frame (``ep_step``) set to zero
    next_obs = frames[t+k-3 .. t+k]   same rule; k = rewards summed (n-step, cut at terminated / game end)
Zero padding is what ``AtariVectorEnv`` itself shows the agent after a reset (its stack is
``[0, 0, 0, f_0]``), and what Dopamine and DeepMind's Nature code store, so the replayed stacks equal the
acted-on stacks exactly. A stack never mixes two games: rows of an earlier game are zeroed by
``ep_step``. N-step: ``reward = Σ_{m<k} γ^m r_{t+m}``, ``discount = γ^k``, ``terminated`` when the cut was
a terminal transition; a game cut by the time limit (truncated) bootstraps from its true final frame.

A row t is a valid transition start when it is not ``last``, its n successors are written (so the
n-step target is final), and its ≤3 history frames have not been overwritten by the circular write.
Uniform sampling draws candidates over the filled rows and rejects invalid ones (at most n + 3 rows per
stream plus one per game, a small fraction), so every valid start has the same probability.

Bytes per row: 7056 (frame) + 8 (action) + 4 (reward) + 4 (ep_step) + 2 (flags) = 7074, plus one row
per game for the final frame; stacked storage of obs and next_obs would be 56_448 bytes.

Why not TorchRL's ``CatFrames`` as a replay transform with a ``SliceSampler`` (checked in torchrl 0.14.1,
``CatFrames.make_rb_transform_and_sampler``): the transform it builds stacks both ``pixels`` and
``("next", "pixels")``, so every frame is stored twice (~14 KB per transition, over the 7.2 KB budget);
its ``SliceSampler(slice_len=N)`` draws N consecutive rows per transition and stacks the window, which
gives the 1-step next stack only (no n-step offset, no final-frame row at a game end); and it needs
trajectories delimited by a ``done`` key per stream. The gather here reads 2 × 4 frames per transition
from single-copy storage, for any n. What is
used from TorchRL: ``TensorStorage`` over a preallocated ``TensorDict`` (RAM on the training device, or
``MemoryMappedTensor`` files on disk) and its ``set`` for writes. ``LazyTensorStorage`` is not used because
its ``get`` only reads the first ``len`` rows, and the per-stream segments are not filled front to back.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch
from tensordict import MemoryMappedTensor, TensorDict
from torchrl.data import TensorStorage

__all__ = ["FrameReplay"]


class FrameReplay:
    """Frame-once replay for stacked-pixel observations, with n-step targets built at sample time.

    Args:
        capacity: Rows kept in total (about one per env step); split evenly between ``num_streams``.
        num_streams: Envs writing to the buffer (each gets a circular segment of ``capacity // num_streams``).
        frame_shape: Shape of one frame, e.g. ``(84, 84)``.
        stack: Frames per observation.
        n_step: Rewards summed per sampled transition.
        gamma: Discount per env step.
        device: Where the storage lives (``storage="tensor"``) and where samples are returned.
        storage: ``tensor`` (RAM of ``device``) or ``memmap`` (files in ``memmap_dir``).
        memmap_dir: Folder of the memmap files (a temporary folder when ``None``).
        seed: Seed of the buffer's own ``torch.Generator``.
    """

    def __init__(
        self,
        *,
        capacity: int,
        num_streams: int,
        frame_shape: tuple[int, ...] = (84, 84),
        stack: int = 4,
        n_step: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
        storage: str = "tensor",
        memmap_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        if n_step < 1 or stack < 1:
            raise ValueError(f"n_step={n_step} and stack={stack} must be >= 1.")
        self.segment = capacity // num_streams
        if self.segment < stack + n_step + 2:
            raise ValueError(
                f"replay.capacity={capacity} gives {self.segment} rows per env for {num_streams} envs; "
                f"need at least stack + n_step + 2 = {stack + n_step + 2}. Raise replay.capacity."
            )
        self.num_streams, self.stack, self.n_step, self.gamma = num_streams, stack, n_step, float(gamma)
        self.frame_shape = tuple(frame_shape)
        self.device = torch.device(device)
        size = self.segment * num_streams + 1  # + one all-zero frame row, read as padding (never written)
        self._zero_row = size - 1
        specs = {
            "frame": (self.frame_shape, torch.uint8), "action": ((), torch.int64), "reward": ((), torch.float32),
            "ep_step": ((), torch.int32), "terminated": ((), torch.bool), "last": ((), torch.bool),
        }
        if storage == "memmap":
            # Files are created sparse; pages are written as rows arrive.
            folder = memmap_dir or tempfile.mkdtemp(prefix="lightq-frames-")
            data = TensorDict(
                {k: MemoryMappedTensor.empty((size, *shape), dtype=dtype, filename=f"{folder}/{k}.memmap")
                 for k, (shape, dtype) in specs.items()},
                batch_size=[size],
            )
        elif storage == "tensor":
            # torch.empty: host pages are committed only when rows are written (RSS grows with the fill).
            data = TensorDict(
                {k: torch.empty((size, *shape), dtype=dtype, device=self.device) for k, (shape, dtype) in specs.items()},
                batch_size=[size], device=self.device,
            )
        else:
            raise ValueError(f"replay.storage={storage!r} must be 'tensor' or 'memmap'.")
        for key in specs:  # the padding row: zero frame, never a valid start
            data.get(key)[self._zero_row] = 0
        self.storage = TensorStorage(storage=data, max_size=size, device=self.device)
        # Reads index the columns of the same preallocated TensorDict directly: ``storage.get`` would
        # gather every column (frames included) for the metadata look-ups of the rejection step.
        self._columns = {k: data.get(k) for k in specs}
        # Rows written per stream since the start (monotonic); row L of stream s is at s·segment + L % segment.
        self.count = np.zeros(num_streams, dtype=np.int64)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._gamma_pow = torch.tensor([self.gamma**m for m in range(n_step + 1)], device=self.device)

    def __len__(self) -> int:
        """Rows held (valid transition starts are slightly fewer)."""
        return int(np.minimum(self.count, self.segment).sum())

    # -- writing ----------------------------------------------------------------------------------
    def add(
        self,
        *,
        stream: np.ndarray,
        frame: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        ep_step: np.ndarray,
        last: np.ndarray,
    ) -> None:
        """Append rows, in order; a stream may appear more than once (its rows land consecutively)."""
        stream = np.asarray(stream, dtype=np.int64)
        logical = np.empty(len(stream), dtype=np.int64)
        for j, s in enumerate(stream):  # sequential per stream (a final-frame row follows its step's row)
            logical[j] = self.count[s]
            self.count[s] += 1
        index = torch.as_tensor(stream * self.segment + logical % self.segment, device=self.device)
        rows = TensorDict(
            {
                "frame": torch.as_tensor(frame, device=self.device),
                "action": torch.as_tensor(action, dtype=torch.int64, device=self.device),
                "reward": torch.as_tensor(reward, dtype=torch.float32, device=self.device),
                "ep_step": torch.as_tensor(ep_step, dtype=torch.int32, device=self.device),
                "terminated": torch.as_tensor(terminated, dtype=torch.bool, device=self.device),
                "last": torch.as_tensor(last, dtype=torch.bool, device=self.device),
            },
            batch_size=[len(stream)], device=self.device,
        )
        self.storage.set(index, rows, set_cursor=False)

    # -- sampling ---------------------------------------------------------------------------------
    def _rows(self, stream: torch.Tensor, logical: torch.Tensor) -> torch.Tensor:
        return stream * self.segment + torch.remainder(logical, self.segment)

    def _valid(self, stream: torch.Tensor, logical: torch.Tensor, meta: TensorDict) -> torch.Tensor:
        count = torch.as_tensor(self.count, device=self.device)[stream]
        filled = torch.clamp(count, max=self.segment)
        age = count - 1 - logical  # rows written after this one
        history = torch.clamp(meta["ep_step"][:, 0].long(), max=self.stack - 1)
        return (~meta["last"][:, 0]) & (age >= self.n_step) & (age + history <= filled - 1)

    def sample(self, batch_size: int, return_info: bool = False):
        """``batch_size`` transitions, uniform over valid starts; a TensorDict (and info with ``index``)."""
        n = self.n_step
        count = torch.as_tensor(self.count, device=self.device)
        filled = torch.clamp(count, max=self.segment)
        cum = torch.cumsum(filled, 0)
        total = int(cum[-1])
        chosen_s, chosen_l, chosen_meta = [], [], []
        have = 0
        for _ in range(100):
            draws = batch_size + batch_size // 4 + 8
            u = torch.randint(total, (draws,), generator=self.generator, device=self.device)
            stream = torch.searchsorted(cum, u, right=True)
            offset = u - (cum[stream] - filled[stream])  # 0 = oldest row held by the stream
            logical = count[stream] - filled[stream] + offset
            ahead = logical[:, None] + torch.arange(n + 1, device=self.device)  # rows t .. t+n
            rows = self._rows(stream[:, None], ahead)
            meta = TensorDict(
                {k: self._columns[k][rows] for k in ("reward", "ep_step", "terminated", "last")},
                batch_size=rows.shape, device=self.device,
            )
            ok = self._valid(stream, logical, meta)
            chosen_s.append(stream[ok]), chosen_l.append(logical[ok]), chosen_meta.append(meta[ok])
            have += int(ok.sum())
            if have >= batch_size:
                break
        else:
            raise RuntimeError(
                f"FrameReplay.sample: no valid transition among {total} rows (each env needs more than "
                f"n_step={n} rows); collect more env steps before the first update."
            )
        stream = torch.cat(chosen_s)[:batch_size]
        logical = torch.cat(chosen_l)[:batch_size]
        meta = torch.cat(chosen_meta)[:batch_size]
        # n-step cut: first m < n where the transition t+m was terminal or the game ended after it.
        terminated = meta["terminated"][:, :n]  # [B, n]
        game_end = meta["last"][:, 1:]  # [B, n]  row t+m+1 is a final frame
        cut = terminated | game_end
        any_cut = cut.any(dim=1)
        k = torch.where(any_cut, cut.float().argmax(dim=1) + 1, torch.full_like(logical, n))  # [B]
        steps = torch.arange(n, device=self.device)
        summed = steps[None, :] < k[:, None]
        reward = (meta["reward"][:, :n] * self._gamma_pow[:n] * summed).sum(dim=1)
        term = terminated.gather(1, (k - 1)[:, None]).squeeze(1)
        next_ep_step = meta["ep_step"].gather(1, k[:, None]).squeeze(1)
        obs = self._stack(stream, logical, meta["ep_step"][:, 0])
        next_obs = self._stack(stream, logical + k, next_ep_step)
        index = self._rows(stream, logical)
        action = self._columns["action"][index]
        td = TensorDict(
            {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "terminated": term,
             "discount": self._gamma_pow[k].float()},
            batch_size=[batch_size], device=self.device,
        )
        if return_info:
            return td, {"index": index}
        return td

    def _stack(self, stream: torch.Tensor, logical: torch.Tensor, ep_step: torch.Tensor) -> torch.Tensor:
        back = torch.arange(self.stack - 1, -1, -1, device=self.device)  # 3, 2, 1, 0
        rows = self._rows(stream[:, None], logical[:, None] - back)  # [B, stack]
        before_start = back[None, :] > ep_step[:, None].long()  # frames of an earlier game
        # Padding frames are read from the all-zero row at the end of the storage: one gather, no masking
        # pass over the batch (masked_fill on the gathered uint8 frames took ~half the sample time on CPU).
        rows = torch.where(before_start, self._zero_row, rows)
        return self._columns["frame"].index_select(0, rows.flatten()).view(*rows.shape, *self.frame_shape)

    # -- checkpoint ------------------------------------------------------------------------------
    def _held_rows(self) -> torch.Tensor:
        """Storage rows that hold data, stream by stream (a stream's segment fills from its start)."""
        held = [torch.arange(s * self.segment, s * self.segment + min(int(c), self.segment))
                for s, c in enumerate(self.count)]
        return torch.cat(held).to(self.device)

    def state_dict(self) -> dict:
        """Contents (the rows written so far), per-stream write counts and the sampling generator."""
        rows = self._held_rows()
        return {
            "count": torch.from_numpy(self.count.copy()),
            "generator": self.generator.get_state(),
            "columns": {k: col.index_select(0, rows).cpu() for k, col in self._columns.items()},
            "shape": [self.num_streams, self.segment, self.stack, self.n_step, *self.frame_shape],
        }

    def load_state_dict(self, state: dict) -> None:
        shape = [self.num_streams, self.segment, self.stack, self.n_step, *self.frame_shape]
        if list(state["shape"]) != shape:
            raise ValueError(
                f"The checkpoint's frame replay has (streams, rows per stream, stack, n_step, frame) = "
                f"{tuple(state['shape'])}, this run {tuple(shape)}: resume with the checkpoint's env.num_envs, "
                "replay.capacity and n_step."
            )
        self.count = state["count"].numpy().astype(np.int64).copy()
        rows = self._held_rows()
        for key, col in self._columns.items():
            col[rows] = state["columns"][key].to(col.device)
        self.generator.set_state(state["generator"])
