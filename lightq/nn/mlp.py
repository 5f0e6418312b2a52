"""MLP networks for vector observations, with plain or dueling Q heads (Wang et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "DuelingHead", "QNetwork"]


class MLP(nn.Sequential):
    """Linear → ReLU stacks; ``out_dim=None`` ends on the last hidden activation (a torso)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> None:
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        if out_dim is not None:
            layers.append(nn.Linear(last, out_dim))
            last = out_dim
        super().__init__(*layers)
        self.out_dim = last


class DuelingHead(nn.Module):
    """``Q(s, a) = V(s) + A(s, a) − mean_a A(s, a)`` (Wang et al. 2016, eq. 9)."""

    def __init__(self, in_dim: int, num_actions: int, hidden: int | None = None) -> None:
        super().__init__()
        if hidden:
            self.value = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.advantage = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
        else:
            self.value = nn.Linear(in_dim, 1)
            self.advantage = nn.Linear(in_dim, num_actions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        v = self.value(features)  # [B, 1]
        a = self.advantage(features)  # [B, A]
        return v + a - a.mean(dim=-1, keepdim=True)


class QNetwork(nn.Module):
    """Q(s, ·) for discrete actions: MLP torso + plain linear or dueling head."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int] = (120, 84), dueling: bool = False) -> None:
        super().__init__()
        self.torso = MLP(obs_dim, hidden)
        self.head = DuelingHead(self.torso.out_dim, num_actions) if dueling else nn.Linear(self.torso.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs.flatten(1).float()))
