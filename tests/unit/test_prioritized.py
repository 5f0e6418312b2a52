"""Tests of lightq.data.prioritized.PrioritizedSampler (pure-torch proportional PER, Schaul et al. 2016)."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer, TensorDictReplayBuffer

from lightq.data.prioritized import PrioritizedSampler


class _Storage:
    """Minimal stand-in for a torchrl storage: the sampler only needs len() (and ndim)."""

    ndim = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _sampler(capacity, alpha, beta, eps=1e-6, seed=0, n_filled=None):
    s = PrioritizedSampler(capacity, alpha=alpha, beta=beta, eps=eps)
    s._rng = torch.Generator().manual_seed(seed)
    n_filled = capacity if n_filled is None else n_filled
    s.extend(torch.arange(n_filled))
    return s


def _leaves(s: PrioritizedSampler, n: int) -> torch.Tensor:
    return s._sum_tree[s._capacity_pow2 : s._capacity_pow2 + n]


def _counts(s: PrioritizedSampler, storage, batch_size: int, calls: int, size: int) -> torch.Tensor:
    counts = torch.zeros(size, dtype=torch.long)
    for _ in range(calls):
        index, _ = s.sample(storage, batch_size)
        counts += torch.bincount(index, minlength=size)
    return counts


# -------------------------------------------------------------------------------- (1) probabilities


@pytest.mark.parametrize("capacity", [4, 5])  # 5: a non-power-of-two capacity (padded tree, empty leaves)
def test_sampling_frequencies_match_p_alpha(capacity):
    # alpha = 0.5, eps = 0.5: |p| + eps = 1, 4, 16, 64  ->  tree values 1, 2, 4, 8
    s = _sampler(capacity, alpha=0.5, beta=0.4, eps=0.5, n_filled=4)
    s.update_priority(torch.arange(4), torch.tensor([0.5, 3.5, 15.5, 63.5]))

    # exact tree content against the hand computation
    assert _leaves(s, 4).tolist() == pytest.approx([1.0, 2.0, 4.0, 8.0], rel=1e-15)
    assert s._sum_tree[1].item() == pytest.approx(15.0, rel=1e-15)  # root = 1 + 2 + 4 + 8
    assert s._min_tree[1].item() == pytest.approx(1.0, rel=1e-15)

    counts = _counts(s, _Storage(4), batch_size=100, calls=500, size=capacity)
    freq = counts.double() / counts.sum()
    expected = torch.tensor([1, 2, 4, 8] + [0] * (capacity - 4), dtype=torch.float64) / 15.0
    # 50k stratified draws: the binomial std is < 0.0023, stratification makes it smaller still
    assert torch.allclose(freq, expected, atol=0.005), (freq, expected)


def test_alpha_zero_is_uniform():
    s = _sampler(8, alpha=0.0, beta=1.0)
    s.update_priority(torch.arange(8), torch.tensor([0.0, 1.0, 10.0, 100.0, 1e3, 1e4, 3.0, 7.0]))
    assert torch.equal(_leaves(s, 8), torch.ones(8, dtype=torch.float64))
    freq = _counts(s, _Storage(8), 64, 200, 8).double() / (64 * 200)
    assert torch.allclose(freq, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)
    _, info = s.sample(_Storage(8), 16)
    assert torch.equal(info["_weight"], torch.ones(16))


def _check_descent(capacity, seed=1):
    # Integer tree values (alpha = 1, eps = 0.5, priorities k - 0.5) keep every partial sum exact, so
    # the expected leaf is unambiguous, also for masses exactly on a boundary (prefix(i) <= mass).
    g = torch.Generator().manual_seed(seed)
    s = _sampler(capacity, alpha=1.0, beta=0.5, eps=0.5)
    k = torch.randint(1, 10, (capacity,), generator=g).double()
    s.update_priority(torch.arange(capacity), k - 0.5)
    assert torch.equal(_leaves(s, capacity), k)
    total = int(k.sum())
    assert s._sum_tree[1].item() == total
    inner = torch.randint(0, total, (4096,), generator=g).double() + 0.5
    boundaries = k.cumsum(0)[:-1]  # prefix(i) for i = 1 .. capacity - 1
    on_boundary = boundaries[torch.randint(0, max(len(boundaries), 1), (1024 * (capacity > 1),), generator=g)]
    mass = torch.cat([inner, on_boundary, torch.tensor([0.0])])
    expected = torch.searchsorted(k.cumsum(0), mass, right=True)
    node = s._retrieve(mass.clone(), capacity)
    assert torch.equal(node - s._capacity_pow2, expected)


@pytest.mark.parametrize("capacity", [37, 2048, 5000, 100_000, 300_000])  # depths 6, 11, 13, 17, 19
def test_descent_matches_cumsum_searchsorted(capacity):
    _check_descent(capacity)


@pytest.mark.parametrize("top,step", [(0, 1), (1, 2), (2, 3), (3, 1)])
def test_descent_with_small_blocks(monkeypatch, top, step):
    # Shrink the descent blocks so that small trees go through many (and uneven) descent steps.
    import lightq.data.prioritized as mod

    monkeypatch.setattr(mod, "_TOP_LEVELS", top)
    monkeypatch.setattr(mod, "_STEP_LEVELS", step)
    for capacity in (1, 2, 3, 37, 64, 200):
        _check_descent(capacity, seed=capacity)


def test_sampling_is_stratified():
    # Equal priorities and batch_size = k * N: segment j of the total mass covers exactly item j // k,
    # so a stratified draw returns every item exactly k times (an i.i.d. draw would not).
    s = _sampler(12, alpha=0.6, beta=0.4, n_filled=10)
    index, _ = s.sample(_Storage(10), 10)
    assert torch.equal(index.sort().values, torch.arange(10))
    index, _ = s.sample(_Storage(10), 30)
    assert torch.equal(index.sort().values, torch.arange(10).repeat_interleave(3))


def test_strata_come_back_in_random_order():
    # A slice of one large draw (several minibatches drawn at once, then split) must not be a
    # contiguous block of the buffer.
    s = _sampler(1000, alpha=0.6, beta=0.4)
    index, info = s.sample(_Storage(1000), 1000)
    assert torch.equal(index.sort().values, torch.arange(1000))
    first = index[:100]
    assert first.max() - first.min() > 500  # a sorted result would span exactly 99
    assert torch.equal(info["_weight"], torch.ones(1000))


# -------------------------------------------------------------------------------- (2) weights


def test_importance_weights_match_hand_computation():
    s = _sampler(4, alpha=0.5, beta=0.4, eps=0.5)
    s.update_priority(torch.arange(4), torch.tensor([0.5, 3.5, 15.5, 63.5]))  # tree values 1, 2, 4, 8
    n, total, p = 4, 15.0, [1.0, 2.0, 4.0, 8.0]

    def hand(beta):  # w_i = (N P(i))^-beta / max_j (N P(j))^-beta
        w = [(n * pi / total) ** -beta for pi in p]
        return [wi / max(w) for wi in w]

    for beta in (0.4, 1.0, 0.0):
        s.beta = beta  # schedules assign the attribute
        index, info = s.sample(_Storage(4), 256)
        w = info["_weight"]
        assert w.dtype == torch.float32 and w.shape == (256,)
        assert set(index.tolist()) == {0, 1, 2, 3}
        expected = torch.tensor([hand(beta)[i] for i in index.tolist()], dtype=torch.float32)
        assert torch.allclose(w, expected, rtol=1e-6, atol=0), (beta, w[:8], expected[:8])
    assert hand(0.4)[3] == pytest.approx(8**-0.4)  # sanity of the hand formula itself


# ------------------------------------------------------------- (3) new items get max priority


def test_new_items_get_max_priority_and_updates_change_distribution():
    s = PrioritizedSampler(16, alpha=0.5, beta=0.4, eps=0.5)
    s._rng = torch.Generator().manual_seed(0)
    s.extend(torch.arange(4))
    assert torch.equal(_leaves(s, 4), torch.ones(4, dtype=torch.float64))  # initial max priority 1.0
    assert s.default_priority == pytest.approx(0.5)  # raw value whose (p + eps) ** alpha is the max

    s.update_priority(torch.tensor([0, 1]), torch.tensor([8.5, 2.5]))  # (|p| + eps) ** 0.5 = 3, sqrt(3)
    assert _leaves(s, 2).tolist() == pytest.approx([3.0, math.sqrt(3.0)])
    s.extend(torch.tensor([4, 5]))  # new items: max(|p| + eps) = 9, raised to alpha -> 3
    assert _leaves(s, 6).tolist() == pytest.approx([3.0, math.sqrt(3.0), 1.0, 1.0, 3.0, 3.0])
    assert s.default_priority == pytest.approx(8.5)

    s.update_priority(torch.tensor([0]), torch.tensor([0.5]))  # lowering the item does not lower the max
    s.add(6)
    assert _leaves(s, 7)[6].item() == pytest.approx(3.0)

    s.mark_update(torch.tensor([2]))  # torchrl's "treat as new" hook
    assert _leaves(s, 7)[2].item() == pytest.approx(3.0)


def test_zero_priority_item_is_almost_never_drawn():
    s = _sampler(10, alpha=1.0, beta=0.4, eps=1e-6)
    counts_before = _counts(s, _Storage(10), 100, 100, 10)
    assert counts_before[3] > 500  # uniform at first: ~1000 of 10_000
    s.update_priority(torch.arange(10), torch.ones(10))
    s.update_priority(3, 0.0)
    counts = _counts(s, _Storage(10), 100, 1000, 10)  # P(3) ~ 1e-6 / 9 over 100_000 draws
    assert counts[3] <= 1
    assert counts.sum() == 100_000
    s.update_priority(3, 50.0)  # now item 3 holds 50 / 59 of the mass
    freq3 = _counts(s, _Storage(10), 100, 100, 10)[3].item() / 10_000
    assert freq3 == pytest.approx(50 / 59, abs=0.01)


def test_duplicate_indices_last_write_wins():
    s = _sampler(8, alpha=1.0, beta=0.4, eps=0.5)
    s.update_priority(torch.tensor([2, 5, 2, 2, 5]), torch.tensor([9.5, 1.5, 0.5, 3.5, 6.5]))
    assert _leaves(s, 8).tolist() == [1.0, 1.0, 4.0, 1.0, 1.0, 7.0, 1.0, 1.0]
    assert s._sum_tree[1].item() == 17.0 and s._min_tree[1].item() == 1.0
    assert s.default_priority == pytest.approx(9.5)  # max over everything seen, incl. overwritten


def test_update_priority_input_checks():
    s = _sampler(8, alpha=1.0, beta=0.4, eps=0.5)
    s.update_priority(torch.tensor([-1, 3]), torch.tensor([100.0, 1.5]))  # -1 (MaxValueWriter) is skipped
    assert _leaves(s, 8)[3].item() == 2.0 and s.default_priority == pytest.approx(1.5)
    s.update_priority(torch.tensor([1, 2]), 2.5)  # one number for all
    assert _leaves(s, 3).tolist() == [1.0, 3.0, 3.0]
    with pytest.raises(IndexError):
        s.update_priority(torch.tensor([8]), torch.tensor([1.0]))
    with pytest.raises(ValueError):
        s.update_priority(torch.tensor([0]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError):
        s.update_priority(torch.tensor([0, 1]), torch.tensor([1.0, 2.0, 3.0]))


# ------------------------------------------------------- (4) filled indices only, wrap-around


def test_only_filled_indices_are_drawn():
    s = _sampler(1000, alpha=0.6, beta=0.4, n_filled=7)
    s.update_priority(torch.arange(7), torch.tensor([1.0, 2, 3, 4, 5, 6, 100]))  # the last slot dominates
    counts = _counts(s, _Storage(7), 64, 300, 1000)
    assert counts[7:].sum() == 0
    assert (counts[:7] > 0).all()
    with pytest.raises(RuntimeError):
        s.sample(_Storage(0), 4)


def test_draw_at_total_mass_returns_last_filled_index():
    for capacity, n in [(1000, 7), (1000, 1000), (1024, 1024), (100_000, 54_321), (1, 1)]:
        s = _sampler(capacity, alpha=0.6, beta=0.4, n_filled=n)
        g = torch.Generator().manual_seed(capacity)
        s.update_priority(torch.arange(n), torch.rand(n, generator=g) + 0.1)
        total = _leaves(s, n).sum().item()
        above = math.nextafter(total, math.inf)
        mass = torch.tensor([total, above, total * (1 + 1e-9), 0.0], dtype=torch.float64)
        node = s._retrieve(mass, n) - s._capacity_pow2
        assert node.tolist() == [n - 1, n - 1, n - 1, 0]


def test_slots_beyond_length_are_never_drawn_even_with_priority():
    # Stale or foreign priorities beyond len(storage) must not leak into the draw.
    s = _sampler(64, alpha=1.0, beta=0.4)
    s.update_priority(torch.arange(10, 64), torch.full((54,), 1e6))
    counts = _counts(s, _Storage(10), 50, 100, 64)
    assert counts[10:].sum() == 0 and counts.sum() == 5000
    assert torch.equal(counts[:10], torch.full((10,), 500))  # uniform over the 10 filled slots (stratified)


def test_wraparound_in_replay_buffer():
    g = torch.Generator().manual_seed(0)
    sampler = PrioritizedSampler(10, alpha=1.0, beta=0.5, eps=0.5)
    rb = ReplayBuffer(storage=LazyTensorStorage(10), sampler=sampler, batch_size=32, generator=g)
    rb.extend(TensorDict({"x": torch.arange(8.0)}, batch_size=[8]))
    rb.update_priority(torch.arange(8), torch.full((8,), 0.5))  # low priority (tree value 1)
    rb.update_priority(torch.tensor([0]), torch.tensor([4.5]))  # max |p| + eps = 5
    rb.extend(TensorDict({"x": torch.arange(8.0, 13.0)}, batch_size=[5]))  # writes 8, 9, 0, 1, 2
    assert len(rb) == 10
    # overwritten slots are new items with the max priority, untouched ones keep theirs
    assert _leaves(sampler, 10).tolist() == [5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0]
    expected_x = torch.tensor([10.0, 11, 12, 3, 4, 5, 6, 7, 8, 9])
    seen = torch.zeros(10, dtype=torch.long)
    for _ in range(50):
        data, info = rb.sample(return_info=True)
        index = info["index"]
        assert ((index >= 0) & (index < 10)).all()
        assert torch.equal(data["x"], expected_x[index])
        seen += torch.bincount(index, minlength=10)
    freq = seen.double() / seen.sum()
    expected = torch.tensor([5, 5, 5, 1, 1, 1, 1, 1, 5, 5], dtype=torch.float64) / 30
    assert torch.allclose(freq, expected, atol=0.02)


# ------------------------------------------------------------ (5) state_dict, (6) dumps/loads


def _assert_same_future(a: PrioritizedSampler, b: PrioritizedSampler, n: int, seed: int) -> None:
    a._rng = torch.Generator().manual_seed(seed)
    b._rng = torch.Generator().manual_seed(seed)
    for step in range(5):
        ia, wa = a.sample(_Storage(n), 32)
        ib, wb = b.sample(_Storage(n), 32)
        assert torch.equal(ia, ib) and torch.equal(wa["_weight"], wb["_weight"])
        new_p = torch.rand(32, generator=torch.Generator().manual_seed(step))
        a.update_priority(ia, new_p)
        b.update_priority(ib, new_p)
    assert torch.equal(a._sum_tree, b._sum_tree) and torch.equal(a._min_tree, b._min_tree)


def test_state_dict_round_trip_weights_only(tmp_path):
    a = _sampler(300, alpha=0.7, beta=0.3, n_filled=250)
    a.update_priority(torch.arange(250), torch.rand(250, generator=torch.Generator().manual_seed(3)) * 5)
    a.beta = 0.65
    torch.save(a.state_dict(), tmp_path / "sd.pt")
    sd = torch.load(tmp_path / "sd.pt", weights_only=True)
    b = PrioritizedSampler(300, alpha=0.1, beta=0.9, eps=1e-3)  # hyper-parameters come from the state
    b.load_state_dict(sd)
    assert (b.alpha, b.beta, b.eps, b.default_priority) == (a.alpha, a.beta, a.eps, a.default_priority)
    assert torch.equal(a._sum_tree, b._sum_tree)
    _assert_same_future(a, b, 250, seed=11)
    # the loaded sampler does not share memory with the state dict
    sd["sum_tree"].zero_()
    assert b._sum_tree[1] > 0
    with pytest.raises(RuntimeError):
        PrioritizedSampler(301, alpha=0.7, beta=0.3).load_state_dict(sd)


def test_empty_resets():
    s = _sampler(16, alpha=1.0, beta=0.4)
    s.update_priority(3, 10.0)
    s._empty()
    assert s._sum_tree.sum() == 0 and torch.isinf(s._min_tree).all()
    assert s.default_priority == pytest.approx(1.0 - 1e-6)
    with pytest.raises(RuntimeError):
        s.sample(_Storage(4), 2)  # nothing written any more


def test_dumps_loads_round_trip(tmp_path):
    a = _sampler(100, alpha=0.6, beta=0.4, n_filled=60)
    a.update_priority(torch.arange(60), torch.linspace(0, 3, 60))
    a.dumps(tmp_path / "sampler")
    files = list((tmp_path / "sampler").iterdir())
    assert files and all(f.suffix == ".pt" for f in files)
    for f in files:  # pickle-free: loadable with weights_only=True
        torch.load(f, weights_only=True)
    b = PrioritizedSampler(100, alpha=0.6, beta=0.4)
    b.loads(tmp_path / "sampler")
    assert torch.equal(a._sum_tree, b._sum_tree) and torch.equal(a._min_tree, b._min_tree)
    assert b.default_priority == a.default_priority
    _assert_same_future(a, b, 60, seed=5)


def test_replay_buffer_dumps_loads(tmp_path):
    def make():
        return ReplayBuffer(
            storage=LazyTensorStorage(50), sampler=PrioritizedSampler(50, alpha=0.6, beta=0.4), batch_size=16
        )

    rb = make()
    rb.extend(TensorDict({"x": torch.arange(30.0)}, batch_size=[30]))
    rb.update_priority(torch.arange(30), torch.arange(30.0))
    rb.dumps(tmp_path / "rb")
    rb2 = make()
    rb2.loads(tmp_path / "rb")
    assert len(rb2) == 30 and torch.equal(rb.sampler._sum_tree, rb2.sampler._sum_tree)
    rb.set_rng(torch.Generator().manual_seed(2))
    rb2.set_rng(torch.Generator().manual_seed(2))
    (d1, i1), (d2, i2) = rb.sample(return_info=True), rb2.sample(return_info=True)
    assert torch.equal(d1["x"], d2["x"]) and torch.equal(i1["_weight"], i2["_weight"])


# ------------------------------------------------------------------- (7) torchrl integration


def test_replay_buffer_integration():
    g = torch.Generator().manual_seed(0)
    sampler = PrioritizedSampler(100, alpha=0.6, beta=0.4)
    rb = ReplayBuffer(storage=LazyTensorStorage(100), sampler=sampler, batch_size=8, generator=g)
    rb.extend(TensorDict({"x": torch.arange(50.0)}, batch_size=[50]))
    data, info = rb.sample(return_info=True)
    assert set(info) >= {"_weight", "index"}
    assert info["index"].shape == (8,) and info["_weight"].shape == (8,)
    assert torch.equal(data["x"], info["index"].float())
    assert torch.equal(info["_weight"], torch.ones(8))  # all items new: equal priority
    rb.update_priority(info["index"], torch.rand(8))
    # the ReplayBuffer hands its generator to the sampler: same seed, same draws
    assert sampler._rng is g

    rb.update_priority(torch.tensor([17]), torch.tensor([1e4]))
    data, info = rb.sample(return_info=True)
    assert (info["index"] == 17).sum() >= 7  # item 17 now holds > 99% of the mass
    w = info["_weight"]
    assert (w > 0).all() and (w <= 1).all()
    leaves = _leaves(sampler, 50)
    expected_w17 = (leaves[17] / leaves.min()).item() ** -0.4  # = (N P(17))^-beta / (N P_min)^-beta
    w17 = w[info["index"] == 17]
    assert torch.allclose(w17, torch.full_like(w17, expected_w17), rtol=1e-6, atol=0)
    assert expected_w17 < 0.1  # the over-sampled item is strongly down-weighted

    # reproducibility through the buffer's generator
    def draws(seed):
        rb.set_rng(torch.Generator().manual_seed(seed))
        return torch.cat([rb.sample(return_info=True)[1]["index"] for _ in range(5)])

    assert torch.equal(draws(4), draws(4))
    assert not torch.equal(draws(4), draws(5))

    rb.empty()
    assert sampler._sum_tree.sum() == 0


def test_tensordict_replay_buffer_priority_key():
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(20),
        sampler=PrioritizedSampler(20, alpha=1.0, beta=1.0, eps=0.5),
        priority_key="td_error",
        batch_size=4,
    )
    td_error = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5])
    td = TensorDict({"x": torch.arange(5.0), "td_error": td_error}, batch_size=[5])
    rb.extend(td)
    assert _leaves(rb.sampler, 5).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    sample = rb.sample()
    assert "index" in sample.keys() and "_weight" in sample.keys()
    # NB: rb.update_tensordict_priority() is a silent no-op here: torchrl checks
    # isinstance(sampler, torchrl's PrioritizedSampler). Pass index and priority explicitly instead.
    rb.update_priority(sample["index"], torch.zeros(4))
    assert (_leaves(rb.sampler, 5)[sample["index"]] == 0.5).all()


def test_repr_and_validation():
    s = PrioritizedSampler(100, alpha=0.6, beta=0.4)
    r = repr(s)
    assert r.startswith("PrioritizedSampler(") and "alpha=0.6" in r and "max_capacity=100" in r
    bad = ({"alpha": -1.0, "beta": 0.4}, {"alpha": 0.6, "beta": -0.1}, {"alpha": 0.6, "beta": 0.4, "eps": 0.0})
    for kwargs in bad:
        with pytest.raises(ValueError):
            PrioritizedSampler(10, **kwargs)
    assert s._capacity_pow2 == 128 and s._sum_tree.shape == (256,) and s._sum_tree.dtype == torch.float64


def test_beta_continues_monotonically_when_a_resumed_run_is_extended():
    """Extending a run (a larger total_env_steps on resume) used to drop β back (β = progress of the new
    length); it now continues from its value at the resume point to 1 at the new end."""
    from lightq.data.replay import ReplayConfig, ReplayIterable

    config = ReplayConfig(prioritized=True, beta_start=0.4, batches_per_sample=4)
    short = ReplayIterable(None, config, num_updates=104)
    short.served = 50
    assert short.beta() == pytest.approx(0.4 + 0.6 * 50 / 100)  # unchanged rule for a run of fixed length
    at_stop = short.beta()
    longer = ReplayIterable(None, config, num_updates=204)
    longer.load_state_dict(short.state_dict())
    assert longer.beta() == pytest.approx(at_stop)
    assert longer.beta(125) == pytest.approx(at_stop + (1 - at_stop) * 75 / 150)
    assert longer.beta(200) == pytest.approx(1.0)
    betas = [longer.beta(u) for u in range(50, 205)]
    assert all(b2 >= b1 for b1, b2 in zip(betas, betas[1:]))
    # Same length: the state round trip keeps the original anchor.
    same = ReplayIterable(None, config, num_updates=104)
    same.load_state_dict(short.state_dict())
    assert same.beta_anchor == (0, 0.4) and same.beta() == pytest.approx(at_stop)
