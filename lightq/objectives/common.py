"""Pieces shared by every Q-learning loss."""

from __future__ import annotations

import contextlib
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["LOSS_NAMES", "LossName", "LossOutput", "check_loss_name", "float32_math", "td_error_loss", "td_target"]


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
    """What every loss returns.

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

    Shape contract: ``r_t``, ``discount_t`` and ``terminated_t`` are [B]; ``v_t`` is [B] or [B, ...]
    (one value per quantile, atom or ensemble member) and ``y`` has ``v_t``'s shape: the per-sample
    terms apply to every entry of their row. Anything else raises ``ValueError`` (plain broadcasting
    would pair sample b's reward with entry b of another axis, silently when the sizes agree).

    Args:
        r_t: [B] (n-step) reward sum.
        discount_t: [B] γ^k for the k rewards summed.
        terminated_t: [B] bool; only termination cuts the bootstrap (truncation does not).
        v_t: [B, ...] bootstrap value max_a' Q_target(s_{t+k}, a') (or its algorithm's equivalent).
    """
    b = r_t.shape
    if len(b) != 1 or discount_t.shape != b or terminated_t.shape != b or v_t.shape[:1] != b:
        raise ValueError(
            "td_target needs r_t, discount_t, terminated_t of shape [B] and v_t of shape [B, ...]; got "
            f"r_t {tuple(r_t.shape)}, discount_t {tuple(discount_t.shape)}, "
            f"terminated_t {tuple(terminated_t.shape)}, v_t {tuple(v_t.shape)}."
        )
    with torch.no_grad(), float32_math(v_t.device):
        # Casts only where needed (a no-op cast is still a dispatcher call): this runs every update.
        r_t, discount_t, v_t = (x if x.dtype == torch.float32 else x.float() for x in (r_t, discount_t, v_t))
        if terminated_t.dtype != torch.bool:
            terminated_t = terminated_t.bool()
        bootstrap = discount_t.masked_fill(terminated_t, 0.0)  # γ^k, or 0 at a terminal s'
        if v_t.ndim > 1:  # [B] -> [B, 1, ...]: broadcast along v's trailing axes, never across samples
            per_row = (-1,) + (1,) * (v_t.ndim - 1)
            r_t, bootstrap = r_t.view(per_row), bootstrap.view(per_row)
        return torch.addcmul(r_t, bootstrap, v_t)  # r + bootstrap · v


LossName = Literal["huber", "mse", "half_mse"]
LOSS_NAMES: tuple[str, ...] = ("huber", "mse", "half_mse")
_RENAMED = {"l2": "mse"}  # old names whose meaning now has another name


def check_loss_name(loss: str, *, option: str = "loss") -> str:
    """``loss`` if it is one of ``LOSS_NAMES``; otherwise a ``ValueError`` (naming the new name for an old one).

    Every algorithm uses this one vocabulary: ``mse`` is ``F.mse_loss`` (mean of (q − y)²),
    ``half_mse`` is ½ of it (its gradient is the TD error), ``huber`` is ``F.huber_loss`` with
    ``huber_delta`` (``F.smooth_l1_loss`` at δ = 1).
    """
    if loss in LOSS_NAMES:
        return loss
    if loss in _RENAMED:
        raise ValueError(
            f"{option}={loss!r} is no longer accepted: use {option}={_RENAMED[loss]!r} (the same mean of "
            f"(q − y)², F.mse_loss); 'half_mse' is ½ of it."
        )
    raise ValueError(f"{option}={loss!r} must be one of {', '.join(repr(n) for n in LOSS_NAMES)}.")


def td_error_loss(
    q_tm1: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: LossName = "huber",
    huber_delta: float = 1.0,
    weights: torch.Tensor | None = None,
    with_td: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean (importance-weighted) regression loss of ``q_tm1`` toward ``y`` (same shape); returns (loss, |td|).

    ``mse`` is ``F.mse_loss``: mean (q − y)². ``half_mse`` is ½ (q − y)², whose gradient is the TD
    error (the lecture's update). ``huber`` is ``F.huber_loss`` with δ = ``huber_delta``; with δ = 1
    it is what the Nature paper calls "clipping the error term to [-1, 1]".
    ``with_td=False`` (no priorities, no metrics wanted) skips |td| (returned as ``None``): with no
    weights the loss is then one fused Huber/MSE-mean op, three ops fewer per update.
    """
    if q_tm1.shape != y.shape:  # F.*_loss would broadcast [B] against [B, 1] into [B, B]
        raise ValueError(
            f"td_error_loss needs q_tm1 and y of one shape; got {tuple(q_tm1.shape)} and {tuple(y.shape)}."
        )
    if q_tm1.dtype != torch.float32:
        q_tm1 = q_tm1.float()
    if not with_td and weights is None:
        if loss == "huber":
            return F.huber_loss(q_tm1, y, delta=huber_delta), None
        if loss == "mse":
            return F.mse_loss(q_tm1, y), None
        if loss == "half_mse":
            return 0.5 * F.mse_loss(q_tm1, y), None
    td = y - q_tm1
    if loss == "huber":
        per_sample = F.huber_loss(q_tm1, y, reduction="none", delta=huber_delta)
    elif loss == "mse":
        per_sample = td.square()
    elif loss == "half_mse":
        per_sample = 0.5 * td.square()
    else:
        check_loss_name(loss)
        raise AssertionError  # check_loss_name raised
    if weights is not None:
        per_sample = per_sample * weights.float()
    return per_sample.mean(), td.detach().abs()
