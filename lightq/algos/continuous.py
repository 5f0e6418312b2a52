"""Shared base of the continuous-action Q-learners (CEM-Q, NAF, DDPG): Box actions, noise, clipping."""

from __future__ import annotations

import numpy as np
import torch

from lightq.algos.base import OffPolicyAlgorithm, _as
from lightq.interaction.noise import ActionNoise, NoiseConfig
from lightq.seeding import numpy_rng

__all__ = ["ContinuousAlgorithm"]


class ContinuousAlgorithm(OffPolicyAlgorithm):
    """Box actions: behaviour = clip(greedy(s) + noise, low, high); eval = greedy(s).

    Args:
        noise: Exploration noise (Gaussian or Ornstein–Uhlenbeck), scaled by half the action range.
        hidden: Hidden widths of every MLP (critics, actor, NAF torso).
        **kwargs: Shared settings of ``OffPolicyAlgorithm``.
    """

    action_kind = "Box"

    def __init__(self, *, noise: NoiseConfig | None = None, hidden: list[int] = [256, 256], **kwargs) -> None:  # noqa: B006
        super().__init__(**kwargs)
        self.noise_config = _as(NoiseConfig, noise)
        self._base_hparams.update(noise=self.noise_config, hidden=list(hidden))
        space = self.action_space
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.act_dim = int(np.prod(space.shape))
        self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32), persistent=False)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and not hasattr(self, "noise"):
            space = self.action_space
            self.noise = ActionNoise(
                self.noise_config, num_envs=self.env_config.num_envs, low=space.low, high=space.high,
                rng=numpy_rng(self.hparams.seed, "action_noise", self.trainer.global_rank),
            )

    def explore_policy(self, obs: np.ndarray) -> np.ndarray:
        self.noise.reset(self.collector._ep_length == 0)  # OU restarts with each episode
        action = self.greedy_actions(obs) + self.noise()
        return np.clip(action, self.action_space.low, self.action_space.high).astype(np.float32)

    def exploration_metrics(self) -> dict[str, float]:
        return {"noise_sigma": self.noise_config.sigma}
