"""Interaction: the Lightning-free collector, the env-interaction callback, exploration schedules."""

from lightq.interaction.collector import Collector
from lightq.interaction.exploration import EpsilonSchedule

__all__ = ["Collector", "EpsilonSchedule"]
