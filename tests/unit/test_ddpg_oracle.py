"""DDPG's losses against TorchRL 0.14's ``DDPGLoss`` (peer implementation), and the TD3 switches of
``lightq.algos.DDPG`` against hand computations.

Part 1 (oracle). lightq's ``Actor``/``Critic`` are wrapped for TorchRL; the networks handed to lightq are
*fresh* modules loaded from the loss module's ``*_network_params`` / ``target_*_network_params``, so any
mix-up of online and target parameters on either side shows up. lightq's side is computed exactly as
``DDPG.training_step`` does it:

    y       = td_target(r, γ·1, terminated, bootstrap_value(ContinuousQ(critic', actor=μ'), s'))
    critic  = critic_loss(critic(s, a), y, loss="mse")
    actor   = deterministic_actor_loss(critic(s, μ(s)))

Conventions (read from torchrl/objectives/ddpg.py, common.py and value/functional.py):
  * ``loss_function="l2"`` is ``F.mse_loss`` = (q − y)² reduced by mean: identical to lightq's ``"mse"``
    (no factor ½), so values and gradients are compared with factor 1.
  * The actor loss is −mean Q(s, μ(s)) with the critic's parameters detached: same as lightq's (whose
    optimizer only steps the actor's parameters).
  * TD(0) bootstraps through ``("next", "terminated")``: ``y = r + γ (1 − terminated) Q'(s', μ'(s'))``;
    a truncated-but-not-terminated sample keeps its bootstrap, as in lightq's ``td_target``.
  * TorchRL's priority (``td_error``) is (q − y)²; lightq's is |q − y|.
  * Importance weights: TorchRL's weighted mean is Σ wℓ / Σ w, lightq's is Σ wℓ / B.

Part 2 (TD3). ``bootstrap_value(model.target_action_value(), s')`` against
min_i Q_i'(s', clip(μ'(s') + clip(0.2·ε, −0.5, 0.5)·half_range, low, high)) with ε redrawn from an
identically seeded generator; and ``training_step`` driven directly (optimizers attached by hand) to
check the critic's SGD step, the delayed actor step and the delayed Polyak updates.
"""

from __future__ import annotations

import copy
import os
import types
import warnings

import pytest
import torch
from torch import nn

os.environ.setdefault("RL_WARNINGS", "False")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the torchrl C++ extension may not load; objectives do not need it
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule
    from torchrl.objectives import DDPGLoss, ValueEstimators

from lightq.data.replay import Batch
from lightq.nn.continuous import Actor, Critic
from lightq.objectives.action_value import ContinuousQ, bootstrap_value
from lightq.objectives.common import td_target
from lightq.objectives.continuous import critic_loss, deterministic_actor_loss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GAMMA = 0.99
B, OBS_DIM, ACT_DIM = 16, 3, 2
HIDDEN = (16, 16)
LOW, HIGH = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])  # asymmetric half-ranges


# ---------------------------------------------------------------------------------------------------
# Part 1: TorchRL's DDPGLoss as the oracle
# ---------------------------------------------------------------------------------------------------


class _QValue(nn.Module):
    """TorchRL wants state_action_value as [B, 1]; lightq's critic returns [B]."""

    def __init__(self, critic: Critic) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action).unsqueeze(-1)


def _param_items(params):
    """(dotted name relative to the lightq module, tensor) for the *parameters* in a TorchRL params TD
    (the Actor's box buffers ``mid``/``half_range`` are skipped: they are constants)."""
    out = {}
    for key in params.keys(include_nested=True, leaves_only=True):
        name = ".".join(k for k in key if k not in ("module", "critic"))
        if name.startswith("box."):
            continue
        out[name] = params.get(key)
    return out


def _load_from(module: nn.Module, params) -> None:
    src = _param_items(params)
    named = dict(module.named_parameters())
    assert set(src) == set(named), (sorted(src), sorted(named))
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(src[name])


def _write_into(params, module: nn.Module) -> None:
    named = dict(module.named_parameters())
    dst = _param_items(params)
    assert set(dst) == set(named)
    with torch.no_grad():
        for name, t in dst.items():
            t.copy_(named[name])


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    actor, critic = Actor(OBS_DIM, ACT_DIM, LOW, HIGH, HIDDEN), Critic(OBS_DIM, ACT_DIM, HIDDEN)
    actor_m = TensorDictModule(actor, in_keys=["observation"], out_keys=["action"])
    value_m = TensorDictModule(_QValue(critic), in_keys=["observation", "action"], out_keys=["state_action_value"])
    loss = DDPGLoss(actor_network=actor_m, value_network=value_m, delay_actor=True, delay_value=True, loss_function="l2")
    loss.make_value_estimator(ValueEstimators.TD0, gamma=GAMMA)

    # Targets != online: independently initialised nets written into TorchRL's target params.
    torch.manual_seed(seed + 1000)
    _write_into(loss.target_actor_network_params, Actor(OBS_DIM, ACT_DIM, LOW, HIGH, HIDDEN))
    _write_into(loss.target_value_network_params, Critic(OBS_DIM, ACT_DIM, HIDDEN))

    # lightq's four nets: fresh modules loaded from TorchRL's params.
    lq = {
        "actor": Actor(OBS_DIM, ACT_DIM, LOW, HIGH, HIDDEN),
        "critic": Critic(OBS_DIM, ACT_DIM, HIDDEN),
        "actor_target": Actor(OBS_DIM, ACT_DIM, LOW, HIGH, HIDDEN),
        "critic_target": Critic(OBS_DIM, ACT_DIM, HIDDEN),
    }
    _load_from(lq["actor"], loss.actor_network_params)
    _load_from(lq["critic"], loss.value_network_params)
    _load_from(lq["actor_target"], loss.target_actor_network_params)
    _load_from(lq["critic_target"], loss.target_value_network_params)
    for name in ("actor_target", "critic_target"):
        lq[name].requires_grad_(False)
    return loss, lq


def _batch(seed: int) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    terminated = (torch.arange(B) % 3 == 0).unsqueeze(-1)
    truncated = (torch.arange(B) % 4 == 1).unsqueeze(-1) & ~terminated  # truncated only: 1, 5, 13
    action = LOW + torch.rand(B, ACT_DIM, generator=g) * (HIGH - LOW)
    return TensorDict(
        {
            "observation": torch.randn(B, OBS_DIM, generator=g),
            "action": action,
            ("next", "observation"): torch.randn(B, OBS_DIM, generator=g),
            ("next", "reward"): torch.randn(B, 1, generator=g),
            ("next", "done"): terminated | truncated,
            ("next", "terminated"): terminated,
        },
        batch_size=[B],
    )


def _lightq_losses(lq, td, weights=None):
    """Exactly DDPG.training_step's computation (twin critics and smoothing off)."""
    obs, action = td["observation"], td["action"]
    target = ContinuousQ(lq["critic_target"], low=LOW, high=HIGH, actor=lq["actor_target"])
    v_t = bootstrap_value(target, td["next", "observation"])
    y = td_target(td["next", "reward"].squeeze(-1), torch.full((B,), GAMMA), td["next", "terminated"].squeeze(-1), v_t)
    c_out = critic_loss(lq["critic"](obs, action), y, loss="mse", weights=weights)
    a_out = deterministic_actor_loss(lq["critic"](obs, lq["actor"](obs)))
    return y, c_out, a_out


def _grads_by_name(loss_value, params) -> dict[str, torch.Tensor]:
    items = {n: t for n, t in _param_items(params).items() if t.requires_grad}
    grads = torch.autograd.grad(loss_value, list(items.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(t)) for (n, t), g in zip(items.items(), grads)}


def test_setup_targets_differ_from_online() -> None:
    loss, lq = _setup()
    td = _batch(1)
    with torch.no_grad():
        s2 = td["next", "observation"]
        assert (lq["actor"](s2) - lq["actor_target"](s2)).abs().max() > 1e-2
        a = lq["actor_target"](s2)
        assert (lq["critic"](s2, a) - lq["critic_target"](s2, a)).abs().max() > 1e-2
        # μ is in the (asymmetric) box
        mu = lq["actor"](td["observation"])
        assert ((mu > LOW) & (mu < HIGH)).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_critic_and_actor_losses_match_torchrl(seed: int) -> None:
    loss, lq = _setup(seed)
    td = _batch(seed + 10)

    out = loss(td)
    y, c_out, a_out = _lightq_losses(lq, td)

    # the TD target itself (TorchRL reports it as "target_value")
    torch.testing.assert_close(out["target_value"], y, rtol=1e-5, atol=1e-6)
    # terminated: y = r; truncated-only: the bootstrap is kept (y != r)
    r = td["next", "reward"].squeeze(-1)
    term = td["next", "terminated"].squeeze(-1)
    trunc_only = td["next", "done"].squeeze(-1) & ~term
    assert trunc_only.sum() == 3
    torch.testing.assert_close(y[term], r[term], rtol=0, atol=0)
    assert ((y[trunc_only] - r[trunc_only]).abs() > 1e-3).all()

    torch.testing.assert_close(out["loss_value"], c_out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss_actor"], a_out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["pred_value"], lq["critic"](td["observation"], td["action"]), rtol=1e-5, atol=1e-6)
    # priorities: TorchRL (q − y)², lightq |q − y|
    torch.testing.assert_close(td["td_error"].squeeze(-1), c_out.priorities.pow(2), rtol=1e-5, atol=1e-6)


def test_gradients_match_torchrl() -> None:
    loss, lq = _setup(2)
    td = _batch(12)
    out = loss(td)
    _, c_out, a_out = _lightq_losses(lq, td)

    # critic: d loss_value / d critic params
    tl_c = _grads_by_name(out["loss_value"], loss.value_network_params)
    lq_c = dict(zip([n for n, _ in lq["critic"].named_parameters()],
                    torch.autograd.grad(c_out.loss, list(lq["critic"].parameters()))))
    assert set(tl_c) == set(lq_c)
    for name in tl_c:
        torch.testing.assert_close(tl_c[name], lq_c[name], rtol=1e-4, atol=1e-6)
    assert max(g.abs().max() for g in lq_c.values()) > 1e-3

    # actor: d loss_actor / d actor params
    tl_a = _grads_by_name(out["loss_actor"], loss.actor_network_params)
    lq_a = dict(zip([n for n, _ in lq["actor"].named_parameters()],
                    torch.autograd.grad(a_out.loss, list(lq["actor"].parameters()))))
    assert set(tl_a) == set(lq_a)
    for name in tl_a:
        torch.testing.assert_close(tl_a[name], lq_a[name], rtol=1e-4, atol=1e-6)
    assert max(g.abs().max() for g in lq_a.values()) > 1e-4

    # TorchRL detaches the critic in the actor loss: no gradient reaches the critic params from it
    tl_a_on_c = _grads_by_name(out["loss_actor"], loss.value_network_params)
    assert all((g == 0).all() for g in tl_a_on_c.values())


def test_weighted_critic_loss_against_torchrl() -> None:
    """TorchRL: Σ w ℓ / Σ w ; lightq: Σ w ℓ / B  ->  lightq == torchrl · Σ w / B."""
    loss, lq = _setup(3)
    td = _batch(13)
    w = torch.rand(B, generator=torch.Generator().manual_seed(4)) + 0.1
    td["priority_weight"] = w
    out = loss(td)
    _, c_out, _ = _lightq_losses(lq, td, weights=w)
    torch.testing.assert_close(c_out.loss, out["loss_value"] * w.sum() / B, rtol=1e-5, atol=1e-6)
    # (TorchRL also weights the actor loss; lightq's DDPG actor loss is unweighted.)


# ---------------------------------------------------------------------------------------------------
# Part 2: TD3 switches of lightq.algos.DDPG
# ---------------------------------------------------------------------------------------------------


def _td3(**overrides):
    from lightq.algos import DDPG

    kwargs = dict(
        env={"id": "Pendulum-v1"}, hidden=[8, 8], twin_critics=True, target_policy_noise=0.2,
        target_noise_clip=0.5, policy_delay=2, learning_starts_env_steps=100, replay={"batch_size": 4},
    )
    kwargs.update(overrides)
    return DDPG(**kwargs)


@pytest.fixture(scope="module")
def td3():
    model = _td3()
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        # targets != online, and the two target critics clearly different
        for p in list(model.critic_target.parameters()) + list(model.critic2_target.parameters()):
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        # a saturating target actor: μ'(s') near ±2 for many s', so the box clip is exercised
        model.actor_target.net[-1].weight.mul_(20.0)
    return model


def _hand_td3_bootstrap(model, next_obs, noise_gen):
    with torch.no_grad():
        low, high = torch.tensor([-2.0]), torch.tensor([2.0])  # Pendulum-v1's torque box
        half = (high - low) / 2  # = 2
        mu = model.actor_target(next_obs)
        eps = torch.randn(mu.shape, generator=noise_gen)
        noise = (0.2 * eps).clamp(-0.5, 0.5)
        a = torch.max(torch.min(mu + noise * half, high), low)
        q1, q2 = model.critic_target(next_obs, a), model.critic2_target(next_obs, a)
        return torch.min(q1, q2), dict(mu=mu, eps=eps, pre=mu + noise * half, q1=q1, q2=q2)


def test_td3_target_is_min_of_twin_critics_at_smoothed_clipped_action(td3) -> None:
    model = td3
    assert model.act_dim == 1 and torch.equal(model.action_high, torch.tensor([2.0]))
    next_obs = torch.randn(512, 3, generator=torch.Generator().manual_seed(5)) * 3
    model._target_noise_gen = torch.Generator().manual_seed(42)

    got = bootstrap_value(model.target_action_value(), next_obs)
    expected, parts = _hand_td3_bootstrap(model, next_obs, torch.Generator().manual_seed(42))

    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # every branch of the hand computation was exercised
    assert ((0.2 * parts["eps"]).abs() > 0.5).any(), "noise clip never active"
    assert ((parts["pre"] > 2.0) | (parts["pre"] < -2.0)).any(), "box clip never active"
    assert ((parts["pre"] > -2.0) & (parts["pre"] < 2.0)).any()
    assert (parts["q1"] < parts["q2"]).any() and (parts["q2"] < parts["q1"]).any(), "min is trivial"
    # and the smoothing changes the value (vs. Q' at the unsmoothed μ'(s'))
    with torch.no_grad():
        mu = parts["mu"]
        plain = torch.min(model.critic_target(next_obs, mu), model.critic2_target(next_obs, mu))
    assert (plain - got).abs().max() > 1e-3

    # the generator advanced: a second call draws new noise
    again = bootstrap_value(model.target_action_value(), next_obs)
    assert not torch.allclose(again, got)


class _ReplayStub:
    def __init__(self) -> None:
        self.calls = []

    def update_priorities(self, index, priorities) -> None:
        self.calls.append((index.clone(), priorities.clone()))


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


def test_td3_training_step_critic_step_and_policy_delay() -> None:
    lr, tau = 0.05, 0.5
    model = _td3(tau=tau)
    critic_opt = torch.optim.SGD(list(model.critic.parameters()) + list(model.critic2.parameters()), lr=lr)
    actor_opt = torch.optim.SGD(model.actor.parameters(), lr=lr)
    model.optimizers = lambda use_pl_optimizer=True: [critic_opt, actor_opt]
    model._direct_opt_cached = True
    model.replay = _ReplayStub()
    model.log_metrics = lambda metrics: None
    model._target_noise_gen = torch.Generator().manual_seed(7)

    g = torch.Generator().manual_seed(8)
    n = 6
    terminated = torch.tensor([True, False, False, True, False, False])

    def make_batch():
        return Batch(
            obs=torch.randn(n, 3, generator=g), action=torch.rand(n, 1, generator=g) * 4 - 2,
            reward=torch.randn(n, generator=g), next_obs=torch.randn(n, 3, generator=g),
            terminated=terminated, discount=torch.full((n,), GAMMA), index=torch.arange(n),
        )

    actor_changed, targets_changed = [], []
    for call in range(4):
        batch = make_batch()
        before = {k: copy.deepcopy(getattr(model, k)) for k in
                  ("actor", "critic", "critic2", "actor_target", "critic_target", "critic2_target")}
        noise_gen = torch.Generator()
        noise_gen.set_state(model._target_noise_gen.get_state())

        model.training_step(batch, call)

        # --- critic: one SGD step on Σ_i mean (Q_i(s, a) − y)², y from the TD3 target (hand-computed)
        v_t, _ = _hand_td3_bootstrap(
            types.SimpleNamespace(actor_target=before["actor_target"], critic_target=before["critic_target"],
                                  critic2_target=before["critic2_target"]),
            batch.next_obs, noise_gen,
        )
        y = batch.reward + GAMMA * (~batch.terminated).float() * v_t
        c1, c2 = copy.deepcopy(before["critic"]), copy.deepcopy(before["critic2"])
        q1 = c1(batch.obs, batch.action)
        hand_loss = (q1 - y).pow(2).mean() + (c2(batch.obs, batch.action) - y).pow(2).mean()
        params = list(c1.parameters()) + list(c2.parameters())
        grads = torch.autograd.grad(hand_loss, params)
        expected_critic = torch.cat([(p - lr * gr).detach().reshape(-1) for p, gr in zip(params, grads)])
        got_critic = torch.cat([_flat(model.critic), _flat(model.critic2)])
        moved = got_critic - torch.cat([_flat(before["critic"]), _flat(before["critic2"])])
        assert moved.abs().max() > 1e-3  # the step is large enough for the comparison to mean something
        torch.testing.assert_close(got_critic, expected_critic, rtol=1e-5, atol=1e-6)
        # priorities handed to the replay: |Q1(s, a) − y| before the update
        idx, prio = model.replay.calls[-1]
        assert torch.equal(idx, torch.arange(n))
        torch.testing.assert_close(prio, (q1 - y).abs().detach(), rtol=1e-5, atol=1e-6)

        # --- actor: delayed; when it steps, it is one SGD step on −mean Q1_new(s, μ(s))
        actor_changed.append(not torch.equal(_flat(model.actor), _flat(before["actor"])))
        targets_changed.append(not torch.equal(_flat(model.actor_target), _flat(before["actor_target"])))
        if actor_changed[-1]:
            a_copy = copy.deepcopy(before["actor"])
            a_loss = -model.critic(batch.obs, a_copy(batch.obs)).mean()
            a_grads = torch.autograd.grad(a_loss, list(a_copy.parameters()))
            expected_actor = torch.cat([(p - lr * gr).detach().reshape(-1) for p, gr in zip(a_copy.parameters(), a_grads)])
            torch.testing.assert_close(_flat(model.actor), expected_actor, rtol=1e-5, atol=1e-6)
            # Polyak with the online nets after this update: φ' ← (1 − τ) φ' + τ φ
            for tgt, onl in (("actor_target", "actor"), ("critic_target", "critic"), ("critic2_target", "critic2")):
                want = (1 - tau) * _flat(before[tgt]) + tau * _flat(getattr(model, onl))
                torch.testing.assert_close(_flat(getattr(model, tgt)), want, rtol=1e-6, atol=1e-7)
        else:
            for tgt in ("actor_target", "critic_target", "critic2_target"):
                assert torch.equal(_flat(getattr(model, tgt)), _flat(before[tgt])), f"{tgt} moved on a critic-only call"

    assert actor_changed == [False, True, False, True]
    assert targets_changed == [False, True, False, True]
    assert model.updates == 4
