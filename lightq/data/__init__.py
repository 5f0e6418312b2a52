"""Replay: the TorchRL buffer factory, n-step transitions, and the replay iterable."""

from lightq.data.nstep import NStepAccumulator
from lightq.data.replay import Batch, ReplayConfig, ReplayIterable, make_replay_buffer

__all__ = ["Batch", "NStepAccumulator", "ReplayConfig", "ReplayIterable", "make_replay_buffer"]
