"""Losses of the continuous-action Q-learners. Pure functions; the target comes from ``td_target``."""

from __future__ import annotations

import torch

from lightq.objectives.common import LossName, LossOutput, check_loss_name, td_error_loss

__all__ = ["critic_loss", "deterministic_actor_loss"]


def critic_loss(
    q_tm1: torch.Tensor | tuple[torch.Tensor, ...],
    y: torch.Tensor,
    *,
    loss: LossName = "mse",
    huber_delta: float = 1.0,
    weights: torch.Tensor | None = None,
) -> LossOutput:
    """Regression of one or several critics' Q(s, a) [B] toward the TD target y [B] (summed over critics).

    ``loss`` names mean what they mean in every lightq algorithm (``td_error_loss``): ``mse`` is
    ``F.mse_loss``, mean (q − y)², what DDPG/TD3 implementations (and TorchRL's ``DDPGLoss`` with
    ``loss_function="l2"``) minimise; ``half_mse`` is ½ of it; ``huber`` is Huber with δ = ``huber_delta``.
    """
    check_loss_name(loss)
    qs = q_tm1 if isinstance(q_tm1, tuple) else (q_tm1,)
    total = 0.0
    for q in qs:
        total = total + td_error_loss(q, y, loss=loss, huber_delta=huber_delta, weights=weights, with_td=False)[0]
    abs_td = (qs[0].detach().float() - y).abs()
    metrics = {"critic_loss": total.detach(), "q_mean": qs[0].detach().float().mean()}
    return LossOutput(total, metrics, abs_td)


def deterministic_actor_loss(q_pi: torch.Tensor) -> LossOutput:
    """DDPG's actor objective: ascend Q(s, μ(s)), i.e. minimise ``−mean Q(s, μ(s))``."""
    value = -q_pi.float().mean()
    return LossOutput(value, {"actor_loss": value.detach()}, q_pi.detach().new_zeros(q_pi.shape))


