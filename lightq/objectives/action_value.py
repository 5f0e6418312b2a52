"""The seam of the lecture's table: how ``max_a Q(s, a)`` and the greedy action are computed.

PFRL's ``ActionValue`` idea: every algorithm exposes its Q-function through three operations,

    greedy(obs)            argmax_a Q(s, a)                  [B, *act]
    max(obs)               max_a Q(s, a)                     [B]
    evaluate(obs, action)  Q(s, a)                           [B]

and the TD target is written once, in ``bootstrap_value`` + ``td_target``:

    y = r + γ^k (1 − terminated) · Q_target(s', a*),   a* = selector.greedy(s')  (selector = target → max)

DQN: discrete argmax. Double DQN: selector = online net. QT-Opt: CEM over actions. NAF: closed form
(greedy μ(s), max V(s)). DDPG: a deterministic actor (greedy μ(s)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from lightq.objectives.common import float32_math

__all__ = [
    "ActionValue", "CEMConfig", "ContinuousQ", "DiscreteQ", "MinOfQ", "bootstrap_value", "cem_maximize",
]


class ActionValue(Protocol):
    def greedy(self, obs: torch.Tensor) -> torch.Tensor: ...

    def max(self, obs: torch.Tensor) -> torch.Tensor: ...

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor: ...


def bootstrap_value(target: ActionValue, next_obs: torch.Tensor, selector: ActionValue | None = None) -> torch.Tensor:
    """``Q_target(s', a*)`` with ``a* = selector.greedy(s')``; ``target.max(s')`` when there is no selector.

    Computed in float32 even under mixed precision (``float32_math``): it is the TD target's bootstrap.
    """
    with torch.no_grad(), float32_math(next_obs.device):
        if selector is None:
            return target.max(next_obs)
        return target.evaluate(next_obs, selector.greedy(next_obs))


class DiscreteQ:
    """A network giving Q(s, ·) over discrete actions."""

    def __init__(self, q_net: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.q_net = q_net

    def greedy(self, obs):
        return self.q_net(obs).argmax(dim=-1)

    def max(self, obs):
        return self.q_net(obs).max(dim=-1).values

    def evaluate(self, obs, action):
        return self.q_net(obs).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)


@dataclass
class CEMConfig:
    """Cross-entropy method over actions (Rubinstein 1999; QT-Opt, Kalashnikov et al. 2018: 64 samples,
    6 elites, 2 iterations). ``iterations=1`` is random shooting (uniform samples in the box, best kept).

    Attributes:
        samples: Actions sampled per state per iteration.
        elites: Best samples refitted per iteration.
        iterations: Rounds of sample → select → refit.
        min_std: Floor of the refitted std, as a fraction of the action range (keeps later rounds exploring).
    """

    samples: int = 64
    elites: int = 6
    iterations: int = 2
    min_std: float = 0.01

    def __post_init__(self) -> None:
        if self.samples < 1 or self.iterations < 1 or not 1 <= self.elites <= self.samples:
            raise ValueError(
                f"cem: need samples >= 1, iterations >= 1 and 1 <= elites <= samples; got samples={self.samples}, "
                f"elites={self.elites}, iterations={self.iterations}."
            )
        if self.min_std < 0:
            raise ValueError(f"cem.min_std={self.min_std} must be >= 0.")


def cem_maximize(
    q_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    config: CEMConfig,
    generator: torch.Generator | None = None,
    noise: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximize ``q_fn(obs, a)`` over ``a`` in the box [low, high], batched over states on obs's device.

    The first iteration samples uniformly in the box; later ones sample a diagonal Gaussian refitted to
    the elites, clipped to the box. No Python loop over the batch: states × samples are one forward pass.

    Args:
        q_fn: (obs [N, *obs], action [N, A]) -> Q [N].
        obs: [B, *obs].
        low, high: [A] action bounds.
        config: samples / elites / iterations.
        generator: Randomness source (None = global RNG).
        noise: Fixed draws, one per iteration, broadcastable to [B, samples, A] (uniform in [0, 1) for
            the first, standard normal after), used instead of fresh ones: a deterministic CEM, e.g. for
            an exported policy (``lightq.tracking.models``).

    Returns:
        (best action [B, A], its Q value [B]); the best over every sample drawn, not the final mean.
    """
    b, n = obs.shape[0], config.samples
    dim = low.shape[-1]
    span = high - low
    obs_rep = obs.repeat_interleave(n, dim=0)  # [B·n, *obs]
    best_a = best_q = None
    mean = std = None
    for it in range(config.iterations):
        if noise is not None:
            u = noise[it].to(low.dtype).expand(b, n, dim)
        else:
            draw = torch.rand if it == 0 else torch.randn
            u = draw((b, n, dim), generator=generator, device=obs.device, dtype=low.dtype)
        if it == 0:
            actions = low + u * span  # [B, n, A]
        else:
            actions = torch.max(torch.min(mean.unsqueeze(1) + std.unsqueeze(1) * u, high), low)
        q = q_fn(obs_rep, actions.reshape(b * n, dim)).reshape(b, n).float()
        top_q, top_i = q.topk(config.elites, dim=1)  # [B, e]
        elites = actions.gather(1, top_i.unsqueeze(-1).expand(-1, -1, dim))  # [B, e, A]
        if best_q is None:
            best_q, best_a = top_q[:, 0], elites[:, 0]
        else:
            better = top_q[:, 0] > best_q
            best_q = torch.where(better, top_q[:, 0], best_q)
            best_a = torch.where(better.unsqueeze(-1), elites[:, 0], best_a)
        mean = elites.mean(dim=1)
        std = elites.std(dim=1, unbiased=False) if config.elites > 1 else torch.zeros_like(mean)
        std = torch.max(std, config.min_std * span)
    return best_a, best_q


class ContinuousQ:
    """A critic Q(s, a) over a box of actions, maximized by CEM (QT-Opt) or by a deterministic actor (DDPG)."""

    def __init__(
        self,
        critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        low: torch.Tensor,
        high: torch.Tensor,
        cem: CEMConfig | None = None,
        actor: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if (cem is None) == (actor is None):
            raise ValueError("ContinuousQ needs exactly one maximizer: cem or actor.")
        self.critic, self.low, self.high, self.cem, self.actor, self.generator = critic, low, high, cem, actor, generator

    def greedy(self, obs):
        if self.actor is not None:
            return self.actor(obs)
        return cem_maximize(self.critic, obs, self.low, self.high, self.cem, self.generator)[0]

    def max(self, obs):
        if self.actor is not None:
            return self.critic(obs, self.actor(obs))
        return cem_maximize(self.critic, obs, self.low, self.high, self.cem, self.generator)[1]

    def evaluate(self, obs, action):
        return self.critic(obs, action)


class MinOfQ:
    """Clipped double Q (Fujimoto et al. 2018): ``min_i Q_i(s, a)``; greedy/max via the first critic's maximizer."""

    def __init__(self, first: ContinuousQ, *others: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.first, self.others = first, others

    def greedy(self, obs):
        return self.first.greedy(obs)

    def max(self, obs):
        return self.evaluate(obs, self.first.greedy(obs))

    def evaluate(self, obs, action):
        q = self.first.evaluate(obs, action)
        for critic in self.others:
            q = torch.min(q, critic(obs, action))
        return q
