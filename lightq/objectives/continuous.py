"""Losses of the continuous-action Q-learners. Pure functions; the target comes from ``td_target``."""

from __future__ import annotations

from typing import Literal

import torch

from lightq.objectives.common import LossOutput, td_error_loss

__all__ = ["critic_loss", "deterministic_actor_loss"]


def critic_loss(
    q_tm1: torch.Tensor | tuple[torch.Tensor, ...],
    y: torch.Tensor,
    *,
    loss: Literal["mse", "huber", "l2"] = "l2",
    weights: torch.Tensor | None = None,
) -> LossOutput:
    """Regression of one or several critics' Q(s, a) [B] toward the TD target y [B] (summed over critics).

    ``l2`` is ``mean((q − y)²)``: what DDPG/TD3 implementations (and TorchRL's ``DDPGLoss``) minimise;
    ``mse`` is lightq's ½(q − y)² and ``huber`` is Huber with δ = 1.
    """
    qs = q_tm1 if isinstance(q_tm1, tuple) else (q_tm1,)
    total = 0.0
    for q in qs:
        if loss == "l2":
            per = (q.float() - y).pow(2)
            total = total + (per * weights if weights is not None else per).mean()
        else:
            total = total + td_error_loss(q, y, loss=loss, weights=weights)[0]
    abs_td = (qs[0].detach().float() - y).abs()
    metrics = {"critic_loss": total.detach(), "q_mean": qs[0].detach().float().mean()}
    return LossOutput(total, metrics, abs_td)


def deterministic_actor_loss(q_pi: torch.Tensor) -> LossOutput:
    """DDPG's actor objective: ascend Q(s, μ(s)), i.e. minimise ``−mean Q(s, μ(s))``."""
    value = -q_pi.float().mean()
    return LossOutput(value, {"actor_loss": value.detach()}, q_pi.detach().new_zeros(q_pi.shape))


