"""What lightq needs from data-parallel training (Lightning's ``ddp`` strategy): world size and small collectives.

Under DDP every rank runs its own vector envs (its own members of the run's ``train_env`` seed stream, ``lightq.seeding``), its own replay buffer
and exploration generators; the gradients of each update are all-reduced by DDP. The ranks move in
lockstep: every rank does the same updates and, after update u, the same number of env steps, so the
global env-step clock is ``world_size × (env steps of one rank)`` on every rank without a collective per
step (``check_lockstep`` verifies this with one all-gather at the start and end of fit). Episode statistics
and evaluation returns are gathered across ranks, so what is logged (once, by rank 0: Lightning's loggers
are rank-zero only) describes all ranks.

With one process these helpers do no communication.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["DDPBatch", "check_lockstep", "gather_values", "sum_over_ranks", "world_size"]

# How ``replay.batch_size`` and ``env_steps_per_update`` read under N ranks (README, "Multi-GPU"):
#   split:    both are global, as with one GPU. Each rank samples batch_size / N and collects
#             env_steps_per_update / N per update; the all-reduced gradient is the one-GPU gradient of a
#             batch_size batch. Same learning dynamics per update as one GPU, N times less work per rank.
#   per_rank: both are per rank. The global batch is N · batch_size and N · env_steps_per_update env steps
#             are collected per update; the replay ratio (samples per env step) is the one-GPU one and the
#             run (total_env_steps) takes N times fewer updates.
DDPBatch = Literal["split", "per_rank"]


def world_size(module) -> int:
    """Processes taking part in training (1 when the module is not attached to a Trainer)."""
    trainer = getattr(module, "_trainer", None)
    return int(trainer.world_size) if trainer is not None else 1


def _strategy(module):
    return module._trainer.strategy


def sum_over_ranks(module, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if world_size(module) == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_strategy(module).root_device)
    return _strategy(module).reduce(t, reduce_op="sum").tolist()


def gather_values(module, values: np.ndarray, max_len: int) -> np.ndarray:
    """Concatenate each rank's 1-D ``values`` (at most ``max_len`` each), in rank order."""
    if world_size(module) == 1:
        return np.asarray(values, dtype=np.float64)
    padded = torch.full((max_len,), float("nan"), dtype=torch.float64, device=_strategy(module).root_device)
    padded[: len(values)] = torch.as_tensor(np.asarray(values, dtype=np.float64))
    gathered = _strategy(module).all_gather(padded).reshape(-1).cpu().numpy()  # [N * max_len]
    return gathered[~np.isnan(gathered)]


def check_lockstep(module, local_env_steps: int, updates: int) -> None:
    """Raise if the ranks' clocks differ (the global env-step clock assumes lockstep collection)."""
    if world_size(module) == 1:
        return
    t = torch.tensor([local_env_steps, updates], dtype=torch.float64, device=_strategy(module).root_device)
    gathered = _strategy(module).all_gather(t).reshape(-1, 2)
    if not bool((gathered == gathered[0]).all()):
        rows = ", ".join(f"rank {r}: {int(e)} env steps / {int(u)} updates" for r, (e, u) in enumerate(gathered.tolist()))
        raise RuntimeError(
            f"DDP ranks are out of lockstep ({rows}); every rank must use the same env config "
            "(num_envs) and resume from the same checkpoint."
        )
