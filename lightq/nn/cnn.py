"""The Nature DQN convolutional network (Mnih et al. 2015, Methods: "Model architecture").

Input uint8 ``[B, 4, 84, 84]`` (scaled to [0, 1] inside, so replay and acting keep uint8); conv 32×8×8
stride 4 → conv 64×4×4 stride 2 → conv 64×3×3 stride 1 → linear 512 → one output per action, ReLU
between. The dueling variant (Wang et al. 2016) splits after the convolutions into value and advantage
streams of 512 units each, reusing ``DuelingHead``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightq.nn.mlp import DuelingHead

__all__ = ["NatureCNN", "NatureQNetwork"]


class NatureCNN(nn.Module):
    """The three conv layers, flattened (3136 features for 84×84 input)."""

    def __init__(self, in_shape: Sequence[int] = (4, 84, 84)) -> None:
        super().__init__()
        channels = in_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, *in_shape)).shape[1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # uint8 pixels in, scaled here: the buffer and the env→policy path stay uint8 (4× less memory/copy).
        return self.net(obs.float() / 255.0)


class NatureQNetwork(nn.Module):
    """Q(s, ·) from stacked frames: Nature CNN torso, then a 512-unit layer and a plain or dueling head."""

    def __init__(self, in_shape: Sequence[int], num_actions: int, *, hidden: int = 512, dueling: bool = False) -> None:
        super().__init__()
        self.torso = NatureCNN(in_shape)
        if dueling:  # Wang et al. 2016: separate 512-unit value and advantage streams after the convs
            self.head = DuelingHead(self.torso.out_dim, num_actions, hidden=hidden)
        else:
            self.head = nn.Sequential(nn.Linear(self.torso.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))
