"""Networks for continuous actions: critic Q(s, a), deterministic actor μ(s), NAF's quadratic head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightq.nn.mlp import MLP

__all__ = ["Actor", "Critic", "NAFNetwork", "naf_q"]


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenation [s, a] -> scalar."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = MLP(obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs.flatten(1).float(), action.float()], dim=-1)).squeeze(-1)


class _Box(nn.Module):
    """Maps (-1, 1) to the action box [low, high] (buffers: they move with the module)."""

    def __init__(self, low, high) -> None:
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32)
        high = torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("mid", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mid + self.half_range * torch.tanh(x)


class Actor(nn.Module):
    """μ(s) = center + half-range · tanh(MLP(s)): always inside the action box."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, act_dim)
        self.box = _Box(low, high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.box(self.net(obs.flatten(1).float()))


def naf_q(v: torch.Tensor, mu: torch.Tensor, l_mat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """NAF's ``Q = V − ½ (a − μ)ᵀ L Lᵀ (a − μ)``; v [B], mu/action [B, A], l_mat [B, A, A] lower-triangular."""
    diff = (action.float() - mu).unsqueeze(-1)  # [B, A, 1]
    lt_diff = l_mat.transpose(-1, -2) @ diff  # Lᵀ (a − μ)   [B, A, 1]
    return v - 0.5 * lt_diff.squeeze(-1).pow(2).sum(-1)  # ‖Lᵀ(a−μ)‖² = (a−μ)ᵀ L Lᵀ (a−μ)


class NAFNetwork(nn.Module):
    """Normalized advantage functions (Gu et al. 2016): heads V(s), μ(s) (tanh to the box), L(s).

    L is lower-triangular with a positive diagonal (exp of the raw diagonal), so P = L Lᵀ is positive
    definite, argmax_a Q = μ(s) and max_a Q = V(s).
    """

    def __init__(self, obs_dim: int, act_dim: int, low, high, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.torso = MLP(obs_dim, hidden)
        width = self.torso.out_dim
        self.value = nn.Linear(width, 1)
        self.mu = nn.Linear(width, act_dim)
        self.l_entries = nn.Linear(width, act_dim * (act_dim + 1) // 2)
        self.box = _Box(low, high)
        rows, cols = torch.tril_indices(act_dim, act_dim)
        # Own storage each (tril_indices returns two views of one tensor, which torch.export's pt2
        # archive warns about when the policy is exported).
        self.register_buffer("rows", rows.clone(), persistent=False)
        self.register_buffer("cols", cols.clone(), persistent=False)

    def heads(self, obs: torch.Tensor, *, with_preactivation: bool = False):
        """(V [B], μ [B, A], L [B, A, A]), and μ's pre-tanh activation [B, A] when asked."""
        h = self.torso(obs.flatten(1).float())
        v = self.value(h).squeeze(-1)
        mu_pre = self.mu(h)
        mu = self.box(mu_pre)
        entries = self.l_entries(h)
        l_mat = h.new_zeros(h.shape[0], self.act_dim, self.act_dim)
        l_mat[:, self.rows, self.cols] = entries
        diag = torch.diagonal(l_mat, dim1=-2, dim2=-1)
        l_mat = l_mat - torch.diag_embed(diag) + torch.diag_embed(diag.exp())  # positive diagonal
        if with_preactivation:
            return v, mu, l_mat, mu_pre
        return v, mu, l_mat

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        v, mu, l_mat = self.heads(obs)
        return naf_q(v, mu, l_mat, action)
