"""IQM and stratified-bootstrap CIs against direct computations and scipy's bootstrap as an oracle."""

import numpy as np
import pytest
from scipy import stats

from lightq.tracking.analysis import aggregate, bootstrap_band, iqm, stratified_bootstrap_ci


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])  # middle half: 2, 3, 4, 5
    assert iqm(x) == pytest.approx(3.5)
    assert iqm(np.array([[1.0, 9.0], [2.0, 8.0], [3.0, 7.0], [4.0, 6.0]])) == pytest.approx(5.0)  # pooled 1..4, 6..9


def test_stratified_bootstrap_resamples_runs_within_each_task():
    scores = np.array([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])  # [runs, tasks]
    lo, hi = stratified_bootstrap_ci(scores, iqm, reps=500, seed=7)
    # Direct recomputation with the documented resampling order.
    rng = np.random.default_rng(7)
    idx = [rng.integers(0, 3, size=(500, 3)) for _ in range(2)]
    reps = [stats.trim_mean(np.stack([scores[idx[0][b], 0], scores[idx[1][b], 1]], 1), 0.25, axis=None)
            for b in range(500)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))
    # Strata: every replicate draws 3 runs of each task, so no replicate mean leaves [min, max] of a
    # half-and-half pool; an unstratified resample of the 6 numbers could reach 1 (all task-0's first run).
    lo_m, hi_m = stratified_bootstrap_ci(scores, lambda s: float(s.mean()), reps=2000, seed=0)
    assert 1.0 + 10.0 <= 2 * lo_m and 2 * hi_m <= 4.0 + 30.0


def test_percentile_ci_agrees_with_scipy_bootstrap():
    x = np.array([12.0, 30.0, 41.0, 55.0, 80.0, 120.0, 150.0, 500.0])
    lo, hi = stratified_bootstrap_ci(x, lambda s: float(s.mean()), reps=20_000, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile", random_state=2).confidence_interval
    width = ref.high - ref.low
    assert lo == pytest.approx(ref.low, abs=0.05 * width) and hi == pytest.approx(ref.high, abs=0.05 * width)


def test_aggregate_and_constant_scores():
    out = aggregate(np.full((5, 1), 3.0), reps=100)
    for name in ("IQM", "mean", "median"):
        assert out[name] == {"value": 3.0, "lo": 3.0, "hi": 3.0}
    x = np.array([1.0, 2.0, 3.0, 4.0, 50.0])
    out = aggregate(x[:, None], reps=2000)
    assert out["median"]["value"] == 3.0 and out["mean"]["value"] == 12.0
    assert out["IQM"]["value"] == pytest.approx(stats.trim_mean(x, 0.25))  # trims 1 of 5 each end: (2+3+4)/3
    assert all(out[k]["lo"] <= out[k]["value"] <= out[k]["hi"] for k in out)


def test_bootstrap_band_brackets_the_mean_over_seeds():
    curves = np.array([[0.0, 10.0, 20.0], [2.0, 14.0, 20.0], [4.0, 12.0, 20.0]])
    mean, lo, hi = bootstrap_band(curves, reps=1000)
    assert mean.tolist() == [2.0, 12.0, 20.0]
    assert np.all(lo <= mean) and np.all(mean <= hi) and lo[0] >= 0.0 and hi[0] <= 4.0
    assert lo[2] == hi[2] == 20.0
