"""Networks: MLP torso, Q-network with plain or dueling head."""

from lightq.nn.cnn import NatureCNN, NatureQNetwork
from lightq.nn.mlp import MLP, DuelingHead, QNetwork

__all__ = ["MLP", "DuelingHead", "NatureCNN", "NatureQNetwork", "QNetwork"]
