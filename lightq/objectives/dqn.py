"""The DQN family's loss (Mnih et al. 2015; van Hasselt et al. 2016 for the double-Q target).

Names follow rlax/Acme: ``_tm1`` is the sampled state s, ``_t`` the (n-step) next state s'.
"""

from __future__ import annotations

import torch

from lightq.objectives.common import LossName, LossOutput, td_error_loss, td_target

__all__ = ["dqn_loss", "double_q_bootstrap", "max_q_bootstrap", "td_target"]


def max_q_bootstrap(q_t_target: torch.Tensor) -> torch.Tensor:
    """DQN: ``max_a' Q_target(s', a')``; [B, A] -> [B]."""
    return q_t_target.max(dim=-1).values


def double_q_bootstrap(q_t_target: torch.Tensor, q_t_online: torch.Tensor) -> torch.Tensor:
    """Double DQN: ``Q_target(s', argmax_a' Q_online(s', a'))``; select online, evaluate target."""
    a_t = q_t_online.argmax(dim=-1, keepdim=True)  # [B, 1]
    return q_t_target.gather(-1, a_t).squeeze(-1)


def dqn_loss(
    q_tm1: torch.Tensor,
    a_tm1: torch.Tensor,
    r_t: torch.Tensor,
    discount_t: torch.Tensor,
    terminated_t: torch.Tensor,
    q_t_target: torch.Tensor,
    q_t_online: torch.Tensor | None = None,
    *,
    loss: LossName = "huber",
    huber_delta: float = 1.0,
    weights: torch.Tensor | None = None,
    with_metrics: bool = True,
    with_priorities: bool = True,
) -> LossOutput:
    """TD loss of DQN, or of Double DQN when ``q_t_online`` is given.

    Args:
        q_tm1: [B, A] online Q(s, ·).
        a_tm1: [B] actions taken (int64).
        r_t: [B] n-step reward sums.
        discount_t: [B] γ^k.
        terminated_t: [B] bool.
        q_t_target: [B, A] target-network Q(s', ·).
        q_t_online: [B, A] online Q(s', ·) for double-Q action selection, or ``None``.
        loss: ``huber``, ``mse`` (``F.mse_loss``) or ``half_mse`` (½ of it); see ``td_error_loss``.
        huber_delta: Huber threshold.
        weights: [B] importance weights (prioritized replay) or ``None``.
        with_metrics: Also return ``q_mean`` and ``td_abs_mean`` (two reductions: skip them on updates
            whose metrics are not logged).
        with_priorities: Return |TD error| as ``priorities`` (prioritized replay); ``None`` otherwise.
    """
    if a_tm1.dtype != torch.int64:
        a_tm1 = a_tm1.long()
    qa_tm1 = q_tm1.gather(-1, a_tm1.unsqueeze(-1)).squeeze(-1)  # [B] Q(s, a)
    with torch.no_grad():
        v_t = max_q_bootstrap(q_t_target) if q_t_online is None else double_q_bootstrap(q_t_target, q_t_online)
        y = td_target(r_t, discount_t, terminated_t, v_t)  # [B] float32
    value, abs_td = td_error_loss(qa_tm1, y, loss=loss, huber_delta=huber_delta, weights=weights,
                                  with_td=with_metrics or with_priorities)
    metrics = {"loss": value.detach()}
    if with_metrics:
        metrics["q_mean"] = qa_tm1.detach().float().mean()
        metrics["td_abs_mean"] = abs_td.mean()
    return LossOutput(value, metrics, abs_td)
