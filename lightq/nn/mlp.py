"""MLP networks for vector observations, with plain or dueling Q heads (Wang et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The layers as functions (F.linear, relu): nn.Module.__call__ costs ~5 µs a layer on this CPU (hook
        # dispatch), as much as the matmul of a small layer, and a CartPole-sized net pays it ~15 times per
        # update and env step. Same ops on the same parameters. A layer with hooks (or a global module hook)
        # sends the whole stack through the usual module calls, so hooks still fire; a layer of another type
        # (e.g. a parametrized Linear, whose class is not nn.Linear) is called as a module.
        layers = self._modules.values()
        if _global_hooks() or any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers):
            return super().forward(x)  # nn.Sequential's loop of module calls
        for layer in layers:
            kind = type(layer)
            if kind is nn.Linear:  # attribute access, not _parameters: functional_call / to_module swap them
                x = F.linear(x, layer.weight, layer.bias)
            elif kind is nn.ReLU:
                x = torch.relu(x)
            else:
                x = layer(x)
        return x


def _global_hooks() -> bool:
    """Whether a global forward hook is registered (``register_module_forward_hook`` and friends)."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_forward_hooks_always_called)


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has forward hooks of its own."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


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
        x = obs.flatten(1).float()
        torso, head = self.torso, self.head
        if type(head) is nn.Linear and not (_global_hooks() or _hooked(torso) or _hooked(head)):
            return F.linear(torso.forward(x), head.weight, head.bias)  # as in MLP.forward: no module calls
        return head(torso(x))
