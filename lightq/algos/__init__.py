"""Algorithms: one LightningModule each over ``OffPolicyAlgorithm``."""

from lightq.algos.base import OffPolicyAlgorithm
from lightq.algos.dqn import DQN

__all__ = ["DQN", "OffPolicyAlgorithm"]
