"""Aggregate scores over seeds: IQM, mean, median with stratified-bootstrap CIs; bootstrap bands of curves.

Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (the ``rliable`` library):
report the interquartile mean (IQM, the mean of the middle 50% of all run scores) with a stratified
bootstrap confidence interval, not a mean over 3 seeds. rliable is not a dependency; this module
implements the same estimators in numpy:

- ``iqm(scores)`` = ``scipy.stats.trim_mean(scores, 0.25, axis=None)`` over the pooled ``[runs, tasks]``
  scores (rliable's ``aggregate_iqm``);
- ``stratified_bootstrap_ci``: each replicate resamples the runs *within each task* with replacement
  (rliable's ``StratifiedBootstrap``), recomputes the statistic, and the CI is the percentile interval of
  the replicates (rliable's default ``method='percentile'``).

Deviation: ``median`` is the median of the pooled run scores; rliable's ``aggregate_median`` is the
median over tasks of the per-task mean, which with one task (one env, as here) is just the mean.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import trim_mean

__all__ = ["aggregate", "bootstrap_band", "iqm", "stratified_bootstrap_ci", "STATISTICS"]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores (25% trimmed from each end of the pooled runs × tasks)."""
    return float(trim_mean(np.asarray(scores, dtype=np.float64), proportiontocut=0.25, axis=None))


def _mean(scores: np.ndarray) -> float:
    return float(np.mean(scores))


def _median(scores: np.ndarray) -> float:
    return float(np.median(scores))


STATISTICS: dict[str, Callable[[np.ndarray], float]] = {"IQM": iqm, "mean": _mean, "median": _median}

# Row-wise versions over pooled replicates [reps, runs * tasks] of the statistics above.
_POOLED = {
    iqm: lambda r: trim_mean(r, proportiontocut=0.25, axis=1),
    _mean: lambda r: r.mean(axis=1),
    _median: lambda r: np.median(r, axis=1),
}


def stratified_bootstrap_ci(
    scores: np.ndarray, statistic: Callable[[np.ndarray], float], *, reps: int = 10_000, seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` under a bootstrap that resamples runs within each task.

    Args:
        scores: ``[runs, tasks]`` (or ``[runs]`` for one task).
        statistic: Maps a ``[runs, tasks]`` array to a number.
        reps: Bootstrap replicates.
        seed: Seed of the resampling (the CI is reproducible).
        confidence: Coverage of the interval.

    Resampling order (fixed, so a test can recompute it): ``rng = default_rng(seed)``; for each task t in
    order, ``rng.integers(0, runs, size=(reps, runs))`` are that task's run indices of every replicate.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"scores must be [runs, tasks] with at least one run, got shape {x.shape}.")
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, runs, size=(reps, runs)) for _ in range(tasks)]  # [tasks][reps, runs]
    samples = np.stack([x[idx[t], t] for t in range(tasks)], axis=2)  # [reps, runs, tasks]
    if statistic in _POOLED:  # the same numbers, vectorized over replicates
        replicates = _POOLED[statistic](samples.reshape(reps, runs * tasks))
    else:
        replicates = np.array([statistic(samples[b]) for b in range(reps)])
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)


def aggregate(scores: np.ndarray, *, reps: int = 10_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{name: {"value", "lo", "hi"}}`` for IQM, mean and median of ``[runs, tasks]`` scores."""
    out = {}
    for name, fn in STATISTICS.items():
        lo, hi = stratified_bootstrap_ci(scores, fn, reps=reps, seed=seed)
        out[name] = {"value": fn(np.asarray(scores, dtype=np.float64)), "lo": lo, "hi": hi}
    return out


def bootstrap_band(
    curves: np.ndarray, *, reps: int = 2_000, seed: int = 0, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of ``curves [seeds, points]`` with a percentile-bootstrap band (seeds resampled)."""
    y = np.asarray(curves, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.shape[0], size=(reps, y.shape[0]))
    means = y[idx].mean(axis=1)  # [reps, points]
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return y.mean(axis=0), lo, hi
