"""Pieces shared by every Q-learning loss."""

from __future__ import annotations

import contextlib
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["LossOutput", "float32_math", "td_error_loss", "td_target"]


def float32_math(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast off on ``device`` (when on): the block runs in float32 under ``bf16-mixed`` / ``16-mixed``.

    Lightning's mixed precision autocasts all of ``training_step``; lightq computes TD targets (the
    bootstrap value and ``td_target``) in float32 inside this block, so a bf16 rounding of Q_target
    (~3 significant digits) never becomes the regression target. A no-op without autocast.
    """
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return _NO_CONTEXT


_NO_CONTEXT = contextlib.nullcontext()  # reusable: nullcontext holds no state


class LossOutput(NamedTuple):
    """What every loss returns (DESIGN.md §5.1).

    Attributes:
        loss: Scalar to minimise.
        metrics: Detached scalars for logging, keyed without namespace (the module adds ``train/``).
        priorities: Per-sample |TD error| for prioritized replay, detached, shape [B].
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    priorities: torch.Tensor


def td_target(
    r_t: torch.Tensor, discount_t: torch.Tensor, terminated_t: torch.Tensor, v_t: torch.Tensor
) -> torch.Tensor:
    """``y = r_t + discount_t * (1 - terminated_t) * v_t``, computed in float32, no gradient.

    Args:
        r_t: [B] (n-step) reward sum.
        discount_t: [B] γ^k for the k rewards summed.
        terminated_t: [B] bool; only termination cuts the bootstrap (truncation does not).
        v_t: [B] bootstrap value max_a' Q_target(s_{t+k}, a') (or its algorithm's equivalent).
    """
    with torch.no_grad(), float32_math(v_t.device):
        # Casts only where needed (a no-op cast is still a dispatcher call): this runs every update.
        r_t, discount_t, v_t = (x if x.dtype == torch.float32 else x.float() for x in (r_t, discount_t, v_t))
        if terminated_t.dtype != torch.bool:
            terminated_t = terminated_t.bool()
        bootstrap = discount_t.masked_fill(terminated_t, 0.0)  # γ^k, or 0 at a terminal s'
        return torch.addcmul(r_t, bootstrap, v_t)  # r + bootstrap · v


def td_error_loss(
    q_tm1: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Literal["huber", "mse"] = "huber",
    huber_delta: float = 1.0,
    weights: torch.Tensor | None = None,
    with_td: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean (importance-weighted) regression loss of ``q_tm1`` [B] toward ``y`` [B]; returns (loss, |td|).

    Huber with δ=1 is what the Nature paper calls "clipping the error term to [-1, 1]".
    MSE is ½ (q − y)² so its gradient is the TD error, as in the lecture's update.
    ``with_td=False`` (no priorities, no metrics wanted) skips |td| (returned as ``None``): with no
    weights the loss is then one fused Huber/MSE-mean op, three ops fewer per update.
    """
    if q_tm1.dtype != torch.float32:
        q_tm1 = q_tm1.float()
    if not with_td and weights is None:
        if loss == "huber":
            return F.huber_loss(q_tm1, y, delta=huber_delta), None
        if loss == "mse":
            return 0.5 * F.mse_loss(q_tm1, y), None
    td = y - q_tm1
    if loss == "huber":
        per_sample = F.huber_loss(q_tm1, y, reduction="none", delta=huber_delta)
    elif loss == "mse":
        per_sample = 0.5 * td.pow(2)
    else:
        raise ValueError(f"loss={loss!r} must be 'huber' or 'mse'.")
    if weights is not None:
        per_sample = per_sample * weights.float()
    return per_sample.mean(), td.detach().abs()
