"""Exploration noise (``lightq.interaction.noise``): Gaussian and Ornstein–Uhlenbeck statistics,
per-env reset, ``none``, and config validation.

Noise is in units of half the action range: Gaussian std = σ · (high − low)/2 per dimension; OU follows
x ← x − θ x dt + σ √dt ε and is returned as x · (high − low)/2.
"""

from __future__ import annotations

import numpy as np
import pytest

from lightq.interaction.noise import ActionNoise, NoiseConfig

LOW = np.array([-2.0, -0.5, 0.0], dtype=np.float32)
HIGH = np.array([2.0, 0.5, 3.0], dtype=np.float32)
HALF = (HIGH - LOW) / 2  # [2, 0.5, 1.5]


def _noise(kind="gaussian", num_envs=4, seed=0, **kw) -> ActionNoise:
    return ActionNoise(NoiseConfig(kind=kind, **kw), num_envs=num_envs, low=LOW, high=HIGH,
                       rng=np.random.default_rng(seed))


def _lag1_autocorr(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x[1:] * x[:-1]).sum() / (x * x).sum())


def test_gaussian_noise_has_configured_std() -> None:
    n = _noise("gaussian", num_envs=8, sigma=0.3)
    draws = np.stack([n() for _ in range(2500)])  # [T, envs, A]: 20 000 draws per dimension
    assert draws.shape == (2500, 8, 3) and draws.dtype == np.float32
    flat = draws.reshape(-1, 3)
    expected_std = 0.3 * HALF  # [0.6, 0.15, 0.45]
    # std estimate of 20 000 normals: relative s.e. ≈ 1/√(2·20 000) = 0.5 %; allow 3 %
    np.testing.assert_allclose(flat.std(0), expected_std, rtol=0.03)
    # zero mean: s.e. ≈ std/√20 000 = 0.7 % of std; allow 4 %
    assert (np.abs(flat.mean(0)) < 0.04 * expected_std).all()
    # i.i.d. in time (contrast with OU below) and the state is untouched
    for e in range(3):
        assert abs(_lag1_autocorr(draws[:, e, 0])) < 0.1
    assert (n.state == 0).all()


def test_gaussian_noise_is_reproducible_from_the_rng() -> None:
    a, b, c = _noise(seed=3, sigma=0.2)(), _noise(seed=3, sigma=0.2)(), _noise(seed=4, sigma=0.2)()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # exactly σ · half-range · standard normal from the same generator
    eps = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(a, 0.2 * HALF * eps, rtol=1e-6)


def test_ou_first_steps_match_hand_recursion() -> None:
    theta, sigma, dt = 0.15, 0.2, 1e-2
    n = _noise("ou", num_envs=2, seed=5, sigma=sigma, theta=theta, dt=dt)
    rng = np.random.default_rng(5)
    x = np.zeros((2, 3), dtype=np.float32)
    for _ in range(5):
        eps = rng.standard_normal((2, 3)).astype(np.float32)
        x = x + theta * (0.0 - x) * dt + sigma * np.sqrt(dt) * eps
        np.testing.assert_allclose(n(), x * HALF, rtol=1e-5, atol=1e-7)


def test_ou_is_temporally_correlated() -> None:
    # lag-1 autocorrelation of a stationary OU step is 1 − θ dt = 0.9985; from 3000 steps starting at 0
    # the estimate is far above 0.5 (Gaussian noise gives ≈ 0).
    n = _noise("ou", num_envs=4, sigma=0.2, theta=0.15, dt=1e-2)
    xs = np.stack([n() for _ in range(3000)])
    for e in range(4):
        for d in range(3):
            assert _lag1_autocorr(xs[:, e, d]) > 0.9
    # increments are small compared with the level: |Δx| ~ σ √dt · half = 0.02 · half per step
    steps = np.abs(np.diff(xs, axis=0)).mean((0, 1))
    np.testing.assert_allclose(steps, 0.2 * 0.1 * HALF * np.sqrt(2 / np.pi), rtol=0.05)


def test_ou_is_mean_reverting() -> None:
    # Start every env at x₀ = 1 (state units). E[x_k] = x₀ (1 − θ dt)^k exactly (the noise has mean 0).
    theta, dt, k = 1.0, 0.1, 20  # (1 − 0.1)^20 = 0.12158
    n = _noise("ou", num_envs=2000, sigma=0.02, theta=theta, dt=dt)
    n.state[:] = 1.0
    for _ in range(k):
        out = n()
    mean = n.state.mean(0)
    np.testing.assert_allclose(mean, (1 - theta * dt) ** k, atol=0.003)  # s.e. = 0.02·√(0.1·Σ_j 0.81^j)/√2000 ≈ 3e-4
    np.testing.assert_allclose(out, n.state * HALF, rtol=1e-6)
    # negative start reverts from below too
    n.state[:] = -2.0
    for _ in range(k):
        n()
    np.testing.assert_allclose(n.state.mean(0), -2.0 * (1 - theta * dt) ** k, atol=0.003)


def test_ou_reset_mask_zeroes_only_masked_envs() -> None:
    n = _noise("ou", num_envs=4, sigma=0.5, theta=0.15, dt=1e-2)
    for _ in range(50):
        n()
    before = n.state.copy()
    assert (np.abs(before) > 0).all()
    mask = np.array([True, False, True, False])
    n.reset(mask)
    assert (n.state[mask] == 0).all()
    np.testing.assert_array_equal(n.state[~mask], before[~mask])
    # next step: masked envs restart from 0, i.e. their output is just σ √dt ε · half
    peek = np.random.default_rng()
    peek.bit_generator.state = n.rng.bit_generator.state  # the next ε the noise will draw
    eps = peek.standard_normal((4, 3)).astype(np.float32)
    out = n()
    np.testing.assert_allclose(out[mask], (0.5 * np.sqrt(1e-2) * eps[mask]) * HALF, rtol=1e-5)
    expected_unmasked = before[~mask] - 0.15 * before[~mask] * 1e-2 + 0.5 * np.sqrt(1e-2) * eps[~mask]
    np.testing.assert_allclose(out[~mask], expected_unmasked * HALF, rtol=1e-5, atol=1e-7)
    # reset() with no mask zeroes everything
    n.reset()
    assert (n.state == 0).all()


def test_none_kind_and_zero_sigma_give_zeros() -> None:
    for n in (_noise("none", sigma=0.5), _noise("ou", sigma=0.0), _noise("gaussian", sigma=0.0)):
        for _ in range(3):
            z = n()
            assert z.shape == (4, 3)
            assert (z == 0).all()


@pytest.mark.parametrize("kwargs", [{"kind": "uniform"}, {"kind": "OU"}, {"kind": ""}, {"sigma": -0.1}])
def test_invalid_config_raises(kwargs) -> None:
    with pytest.raises(ValueError, match="noise"):
        NoiseConfig(**kwargs)
