"""DDPG (Lillicrap et al. 2016, "Continuous control with deep RL"), with TD3's three fixes as switches
(Fujimoto et al. 2018: twin critics with the min in the target, target policy smoothing, delayed actor
updates), off by default.

The lecture's third answer to max_a Q: learn an approximate maximizer μ_θ(s) by ascending Q_φ(s, μ_θ(s));
target ``y = r + γ^k (1 − terminated) Q_φ'(s', μ_θ'(s'))``; actor and critic targets by Polyak averaging.

Deviations from the paper: Gaussian exploration noise by default (OU available: ``noise.kind: ou``;
Fujimoto et al. found no benefit from OU); no batch norm; no L2 weight decay on the critic; uniform random
actions during the warm-up (as in TD3 and SB3); layer sizes from the config (paper: 400-300).
"""

from __future__ import annotations

import copy

import torch

from lightq.algos.continuous import ContinuousAlgorithm
from lightq.algos.dqn import polyak_update
from lightq.data.replay import Batch
from lightq.nn.continuous import Actor, Critic
from lightq.objectives.action_value import ContinuousQ, MinOfQ, bootstrap_value
from lightq.objectives.common import check_loss_name, td_target
from lightq.objectives.continuous import critic_loss, deterministic_actor_loss
from lightq.seeding import generator, seeded_init

__all__ = ["DDPG"]


class DDPG(ContinuousAlgorithm):
    """DDPG / TD3 on Box actions. Two optimizers, manual optimization; ``updates`` counts critic updates.

    Args:
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critic(s).
        tau: Polyak weight of the online nets, every update (actor targets: every actor update).
        twin_critics: TD3: two critics, ``min`` of their targets in y.
        target_policy_noise: TD3: std of the Gaussian added to μ'(s') in the target (0 = off), in units
            of half the action range.
        target_noise_clip: TD3: clip of that noise, same units.
        policy_delay: TD3: update the actor (and the targets) every this many critic updates (1 = DDPG).
        loss: Critic regression: ``mse`` (``F.mse_loss``: mean (q − y)²), ``half_mse`` (½ of it) or ``huber``
            (δ = 1); one vocabulary for every algorithm.
        max_grad_norm: Clip each network's gradient norm (``None`` = off).
        **kwargs: ``ContinuousAlgorithm`` settings (noise, hidden) and the shared ones.
    """

    algorithm_name = "DDPG"
    ddp_find_unused_parameters = True  # the critic's backward does not reach the actor

    def __init__(
        self,
        *,
        actor_lr: float = 1e-3,
        critic_lr: float = 1e-3,
        tau: float = 0.005,
        twin_critics: bool = False,
        target_policy_noise: float = 0.0,
        target_noise_clip: float = 0.5,
        policy_delay: int = 1,
        loss: str = "mse",
        max_grad_norm: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not actor_lr > 0:
            raise ValueError(f"actor_lr={actor_lr} must be > 0.")
        if not critic_lr > 0:
            raise ValueError(f"critic_lr={critic_lr} must be > 0.")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau} must be in (0, 1].")
        if policy_delay < 1:
            raise ValueError(f"policy_delay={policy_delay} must be >= 1.")
        check_loss_name(loss)
        self.save_hyperparameters_as_dicts()
        hidden = self.hparams.hidden
        low, high = self.action_space.low, self.action_space.high
        with seeded_init(self.hparams.seed):
            self.actor = Actor(self.obs_dim, self.act_dim, low, high, hidden)
            self.critic = Critic(self.obs_dim, self.act_dim, hidden)
            self.critic2 = Critic(self.obs_dim, self.act_dim, hidden) if twin_critics else None
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic2_target = copy.deepcopy(self.critic2).requires_grad_(False) if twin_critics else None

    def _smoothed_target_actor(self, obs: torch.Tensor) -> torch.Tensor:
        """μ'(s'), plus TD3's clipped Gaussian smoothing noise when enabled."""
        action = self.actor_target(obs)
        hp = self.hparams
        if hp.target_policy_noise > 0:
            half = (self.action_high - self.action_low) / 2
            noise = torch.randn(action.shape, generator=self._target_noise_gen, device=action.device)
            noise = (noise * hp.target_policy_noise).clamp(-hp.target_noise_clip, hp.target_noise_clip)
            action = torch.max(torch.min(action + noise * half, self.action_high), self.action_low)
        return action

    def target_action_value(self):
        """The ActionValue whose ``max`` is the bootstrap: Q'(s', μ'(s')) (min over twin critics)."""
        first = ContinuousQ(self.critic_target, low=self.action_low, high=self.action_high,
                            actor=self._smoothed_target_actor)
        return MinOfQ(first, self.critic2_target) if self.critic2_target is not None else first

    def setup(self, stage: str) -> None:
        super().setup(stage)
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self._target_noise_gen = generator(self.hparams.seed, "target_noise", self._rank(), device=device)

    def update(self, batch: Batch) -> None:
        hp = self.hparams
        with torch.no_grad():
            v_t = bootstrap_value(self.target_action_value(), batch.next_obs)  # Q'(s', μ'(s'))
            y = td_target(batch.reward, batch.discount, batch.terminated, v_t)
        q1 = self.critic(batch.obs, batch.action)
        qs = (q1, self.critic2(batch.obs, batch.action)) if self.critic2 is not None else q1
        out = critic_loss(qs, y, loss=hp.loss, weights=batch.weight)
        self.gradient_step(out.loss, 0, max_grad_norm=hp.max_grad_norm, q_values=q1)  # critic: φ ← φ − α ∇ (Q − y)²
        metrics = dict(out.metrics)
        if (self.updates + 1) % hp.policy_delay == 0:
            actor_out = deterministic_actor_loss(self.critic(batch.obs, self.actor(batch.obs)))
            self.gradient_step(actor_out.loss, 1, max_grad_norm=hp.max_grad_norm)  # actor: θ ← θ + β ∇ Q(s, μ(s))
            metrics.update(actor_out.metrics)
            polyak_update(self.actor_target, self.actor, hp.tau)
            polyak_update(self.critic_target, self.critic, hp.tau)
            if self.critic2 is not None:
                polyak_update(self.critic2_target, self.critic2, hp.tau)
        self.after_update()
        if batch.index is not None:
            self.replay.update_priorities(batch.index, out.priorities)
        if self.updates % hp.log_every_updates == 0:
            self.log_metrics({f"train/{k}": float(v) for k, v in metrics.items()})

    def configure_optimizers(self):
        critic_params = list(self.critic.parameters()) + (list(self.critic2.parameters()) if self.critic2 else [])
        return [
            torch.optim.Adam(critic_params, lr=self.hparams.critic_lr),
            torch.optim.Adam(self.actor.parameters(), lr=self.hparams.actor_lr),
        ]

    def greedy_policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    has_value_estimate = True

    def value_estimate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action)  # Q_φ(s, a) at the eval action (first critic)
