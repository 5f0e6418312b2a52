"""Algorithms: one LightningModule each over ``OffPolicyAlgorithm``."""

from lightq.algos.base import OffPolicyAlgorithm
from lightq.algos.cemq import CEMQ
from lightq.algos.continuous import ContinuousAlgorithm
from lightq.algos.ddpg import DDPG
from lightq.algos.dqn import DQN
from lightq.algos.naf import NAF

__all__ = ["CEMQ", "DDPG", "DQN", "NAF", "ContinuousAlgorithm", "OffPolicyAlgorithm"]
