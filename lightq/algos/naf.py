"""NAF: Q-learning with normalized advantage functions (Gu et al. 2016, "Continuous Deep Q-Learning with
Model-based Acceleration").

The lecture's second answer to max_a Q: make Q quadratic in the action,
``Q(s, a) = V(s) − ½ (a − μ(s))ᵀ L(s) L(s)ᵀ (a − μ(s))``, so argmax_a Q = μ(s) and max_a Q = V(s), and the
target is ``y = r + γ^k (1 − terminated) V'(s')``.

Deviations from the paper: Gaussian exploration noise by default (OU available); no model-based
imagination rollouts; Adam with the config's lr; updates per env step set by ``env_steps_per_update``
(the paper's 5 updates per step is ``env_steps_per_update: 0.2``).
"""

from __future__ import annotations

import copy

import torch

from lightq.algos.continuous import ContinuousAlgorithm
from lightq.algos.dqn import hard_update, polyak_update
from lightq.data.replay import Batch
from lightq.nn.continuous import NAFNetwork, naf_q
from lightq.objectives.action_value import bootstrap_value
from lightq.objectives.common import check_loss_name, td_target
from lightq.objectives.continuous import critic_loss
from lightq.seeding import seeded_init

__all__ = ["NAF", "NAFActionValue"]


class NAFActionValue:
    """Closed-form ActionValue: greedy μ(s), max V(s), evaluate the quadratic Q."""

    def __init__(self, net: NAFNetwork) -> None:
        self.net = net

    def greedy(self, obs):
        return self.net.heads(obs)[1]

    def max(self, obs):
        return self.net.heads(obs)[0]

    def evaluate(self, obs, action):
        return self.net(obs, action)


class NAF(ContinuousAlgorithm):
    """NAF on Box actions.

    Args:
        lr: Adam learning rate.
        tau: Polyak weight of the online net per update (paper: 0.001); ``None`` = hard copies.
        target_update_period_updates: Period of hard copies when ``tau`` is ``None``.
        loss: ``mse`` (``F.mse_loss``: mean (q − y)²), ``half_mse`` (½ of it) or ``huber``
            (δ = 1); one vocabulary for every algorithm.
        max_grad_norm: Clip the gradient norm (``None`` = off).
        mu_preactivation_penalty: Weight of ``mean(pre_tanh(μ)²)`` added to the loss. When P(s) is small
            the quadratic barely pulls μ, and a μ that drifts into tanh's flat tails stays there (its
            gradient vanishes): the policy sticks at a bound. A small penalty keeps μ in tanh's live
            range. Not in the paper (deviation; 0 = off).
        **kwargs: ``ContinuousAlgorithm`` settings (noise, hidden) and the shared ones.
    """

    algorithm_name = "NAF"

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        tau: float | None = 0.005,
        target_update_period_updates: int = 1000,
        loss: str = "mse",
        max_grad_norm: float | None = None,
        mu_preactivation_penalty: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mu_preactivation_penalty < 0:
            raise ValueError(f"mu_preactivation_penalty={mu_preactivation_penalty} must be >= 0.")
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0.")
        if tau is not None and not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau} must be in (0, 1].")
        check_loss_name(loss)
        self.save_hyperparameters_as_dicts()
        low, high = self.action_space.low, self.action_space.high
        with seeded_init(self.hparams.seed):
            self.naf = NAFNetwork(self.obs_dim, self.act_dim, low, high, self.hparams.hidden)
        self.naf_target = copy.deepcopy(self.naf).requires_grad_(False)

    def update(self, batch: Batch) -> None:
        hp = self.hparams
        with torch.no_grad():
            v_t = bootstrap_value(NAFActionValue(self.naf_target), batch.next_obs)  # V'(s')
            y = td_target(batch.reward, batch.discount, batch.terminated, v_t)
        v, mu, l_mat, mu_pre = self.naf.heads(batch.obs, with_preactivation=True)
        q = naf_q(v, mu, l_mat, batch.action)
        out = critic_loss(q, y, loss=hp.loss, weights=batch.weight)
        loss = out.loss
        if hp.mu_preactivation_penalty > 0:
            loss = loss + hp.mu_preactivation_penalty * mu_pre.pow(2).mean()
        self.gradient_step(loss, max_grad_norm=hp.max_grad_norm, q_values=q)
        self.after_update()
        if hp.tau is not None:
            polyak_update(self.naf_target, self.naf, hp.tau)
        elif self.updates % hp.target_update_period_updates == 0:
            hard_update(self.naf_target, self.naf)
        if batch.index is not None:
            self.replay.update_priorities(batch.index, out.priorities)
        if self.updates % hp.log_every_updates == 0:
            self.log_metrics({f"train/{k}": float(v) for k, v in out.metrics.items()})

    def configure_optimizers(self):
        return torch.optim.Adam(self.naf.parameters(), lr=self.hparams.lr)

    def greedy_policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.naf.heads(obs)[1]

    has_value_estimate = True

    def value_estimate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.naf(obs, action)  # Q(s, a) at the eval action (= V(s) at the greedy μ(s))
