"""lightq's DQN loss against TorchRL's ``DQNLoss`` (peer implementation, TorchRL 0.14.x).

Both see the very same parameters: a ``lightq.nn.QNetwork`` is wrapped as TorchRL's ``QValueActor``;
the nets handed to lightq are loaded *from* the loss module's ``value_network_params`` and
``target_value_network_params``, so any mismatch in which params each side uses would show up.

Conventions that differ between the two (and are accounted for below):
  * TorchRL ``loss_function="l2"`` is ``F.mse_loss(q, y)`` = (q - y)² (``distance_loss``), the same as
    lightq's ``"mse"``; lightq's ``"half_mse"`` is ½ of it:  torchrl_l2 == lightq_mse == 2 * lightq_half_mse.
  * TorchRL ``"smooth_l1"`` (β = 1) is exactly Huber with δ = 1, i.e. lightq's ``"huber"``.
  * TorchRL writes ``td_error`` = (q - y)² as priority; lightq returns |q - y|.
  * TorchRL's weighted mean is Σ wℓ / Σ w; lightq's is Σ wℓ / B.
  * TorchRL bootstraps through ``("next", "terminated")`` only (``done`` = terminated | truncated is
    ignored when ``terminated`` is present), which is the same rule as lightq's ``td_target``.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("RL_WARNINGS", "False")

with warnings.catch_warnings():
    # the torchrl C++ extension does not load against this torch build; objectives do not need it
    warnings.simplefilter("ignore")
    from tensordict import TensorDict
    from torchrl.modules import QValueActor
    from torchrl.objectives import DQNLoss, ValueEstimators

from lightq.nn import QNetwork
from lightq.objectives import dqn_loss

GAMMA = 0.99
B, OBS_DIM, N_ACT = 16, 4, 3
HIDDEN = (32, 32)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _load_from(module: torch.nn.Module, params) -> None:
    """Copy a TorchRL params TensorDict (keys prefixed by the actor's wrapping) into ``module``."""
    keys = list(params.keys(include_nested=True, leaves_only=True))
    named = dict(module.named_parameters())
    assert len(keys) == len(named)
    with torch.no_grad():
        for key in keys:
            # unique match of the module's dotted name on the tail of the TorchRL key
            full = [n for n in named if ".".join(key).endswith(n)]
            assert len(full) == 1, key
            named[full[0]].copy_(params.get(key))


def _write_into(params, module: torch.nn.Module) -> None:
    """Overwrite TorchRL params (e.g. the target params) with ``module``'s values."""
    named = dict(module.named_parameters())
    with torch.no_grad():
        for key in params.keys(include_nested=True, leaves_only=True):
            (name,) = [n for n in named if ".".join(key).endswith(n)]
            params.get(key).copy_(named[name])


def _batch(seed: int, n_step: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    terminated = (torch.arange(B) % 3 == 0).unsqueeze(-1)  # a fixed mix of True / False
    truncated = (torch.arange(B) % 5 == 1).unsqueeze(-1) & ~terminated  # some truncated-only
    data = {
        "observation": torch.randn(B, OBS_DIM, generator=g),
        "action": torch.randint(N_ACT, (B,), generator=g),
        ("next", "observation"): torch.randn(B, OBS_DIM, generator=g),
        ("next", "reward"): torch.randn(B, 1, generator=g),
        ("next", "done"): terminated | truncated,
        ("next", "terminated"): terminated,
    }
    if n_step:
        data["steps_to_next_obs"] = torch.randint(1, 4, (B, 1), generator=g)
    return TensorDict(data, batch_size=[B])


def _setup(double: bool, loss_function: str, perturb_target: bool, seed: int = 0):
    torch.manual_seed(seed)
    net = QNetwork(OBS_DIM, N_ACT, hidden=HIDDEN)
    actor = QValueActor(net, in_keys=["observation"], action_space="categorical")
    tl_loss = DQNLoss(
        actor, loss_function=loss_function, delay_value=True, double_dqn=double, action_space="categorical"
    )
    tl_loss.make_value_estimator(ValueEstimators.TD0, gamma=GAMMA)

    if perturb_target:
        # an independently initialised target network, written into TorchRL's target params
        torch.manual_seed(seed + 1000)
        _write_into(tl_loss.target_value_network_params, QNetwork(OBS_DIM, N_ACT, hidden=HIDDEN))

    online = QNetwork(OBS_DIM, N_ACT, hidden=HIDDEN)
    target = QNetwork(OBS_DIM, N_ACT, hidden=HIDDEN)
    _load_from(online, tl_loss.value_network_params)
    _load_from(target, tl_loss.target_value_network_params)
    for p in target.parameters():
        p.requires_grad_(False)
    return tl_loss, online, target


def _lightq(online, target, td: TensorDict, double: bool, loss: str, weights=None):
    with torch.no_grad():
        q_t_target = target(td["next", "observation"])
        q_t_online = online(td["next", "observation"]) if double else None
    if "steps_to_next_obs" in td.keys():
        discount = GAMMA ** td["steps_to_next_obs"].squeeze(-1).double()
    else:
        discount = torch.full((B,), GAMMA)
    return dqn_loss(
        online(td["observation"]),
        td["action"],
        td["next", "reward"].squeeze(-1),
        discount.float(),
        td["next", "terminated"].squeeze(-1),
        q_t_target,
        q_t_online,
        loss=loss,
        weights=weights,
    )


LOSS_PAIRS = [("l2", "mse", 1.0), ("l2", "half_mse", 2.0), ("smooth_l1", "huber", 1.0)]  # torchrl == scale * lightq


@pytest.mark.parametrize("perturb_target", [False, True], ids=["target=online", "target!=online"])
@pytest.mark.parametrize("double", [False, True], ids=["dqn", "double"])
@pytest.mark.parametrize(("tl_fn", "lq_fn", "scale"), LOSS_PAIRS, ids=["l2-mse", "l2-half_mse", "smoothl1-huber"])
def test_matches_torchrl_dqn_loss(tl_fn: str, lq_fn: str, scale: float, double: bool, perturb_target: bool) -> None:
    tl_loss, online, target = _setup(double, tl_fn, perturb_target)
    td = _batch(seed=1)

    # Preconditions that make the comparison meaningful.
    online_params = list(tl_loss.value_network_params.values(True, True))
    target_params = list(tl_loss.target_value_network_params.values(True, True))
    same = all(torch.equal(a, b) for a, b in zip(online_params, target_params))
    assert same is (not perturb_target)
    if perturb_target and double:
        with torch.no_grad():
            nxt = td["next", "observation"]
            assert (online(nxt).argmax(-1) != target(nxt).argmax(-1)).any(), "double-Q case would be trivial"

    tl_value = tl_loss(td)["loss"]
    out = _lightq(online, target, td, double, lq_fn)

    torch.testing.assert_close(tl_value, scale * out.loss, rtol=1e-5, atol=1e-6)
    # TorchRL's priority is the squared TD error
    torch.testing.assert_close(td["td_error"].squeeze(-1), out.priorities.pow(2), rtol=1e-5, atol=1e-6)

    # Same gradient w.r.t. the online parameters (up to the ½ of half_mse).
    tl_grads = torch.autograd.grad(tl_value, online_params)
    lq_grads = torch.autograd.grad(out.loss, list(online.parameters()))
    keys = list(tl_loss.value_network_params.keys(True, True))
    names = [n for n, _ in online.named_parameters()]
    for key, g_tl in zip(keys, tl_grads):
        (i,) = [j for j, n in enumerate(names) if ".".join(key).endswith(n)]
        torch.testing.assert_close(g_tl, scale * lq_grads[i], rtol=1e-4, atol=1e-6)


def test_double_and_plain_targets_differ_when_target_differs() -> None:
    """Sanity of the oracle setup: with online != target, double and plain TorchRL losses differ,
    and lightq reproduces both."""
    td = _batch(seed=2)
    values = {}
    for double in (False, True):
        tl_loss, online, target = _setup(double, "l2", perturb_target=True, seed=3)
        tl_value = tl_loss(td.clone())["loss"]
        lq_value = _lightq(online, target, td, double, "mse").loss
        torch.testing.assert_close(tl_value, lq_value, rtol=1e-5, atol=1e-6)
        values[double] = lq_value.item()
    assert values[False] != pytest.approx(values[True], rel=1e-3)


@pytest.mark.parametrize("double", [False, True], ids=["dqn", "double"])
def test_matches_torchrl_nstep_discount(double: bool) -> None:
    """TorchRL's ``steps_to_next_obs`` makes the discount γ^k, lightq takes discount_t = γ^k directly."""
    tl_loss, online, target = _setup(double, "smooth_l1", perturb_target=True, seed=4)
    td = _batch(seed=5, n_step=True)
    assert set(td["steps_to_next_obs"].unique().tolist()) == {1, 2, 3}
    tl_value = tl_loss(td)["loss"]
    out = _lightq(online, target, td, double, "huber")
    torch.testing.assert_close(tl_value, out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(td["td_error"].squeeze(-1), out.priorities.pow(2), rtol=1e-5, atol=1e-6)


def test_importance_weights_against_torchrl() -> None:
    """TorchRL: Σ w ℓ / Σ w ; lightq: Σ w ℓ / B  ->  lightq == torchrl * Σ w / B."""
    tl_loss, online, target = _setup(False, "smooth_l1", perturb_target=True, seed=6)
    td = _batch(seed=7)
    w = torch.rand(B, generator=torch.Generator().manual_seed(8)) + 0.1
    td["priority_weight"] = w
    tl_value = tl_loss(td)["loss"]
    out = _lightq(online, target, td, False, "huber", weights=w)
    torch.testing.assert_close(out.loss, tl_value * w.sum() / B, rtol=1e-5, atol=1e-6)
