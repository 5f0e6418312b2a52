"""Reliability: the divergence watchdog, env-fault and signal handling, input validation helpers."""

from lightq.reliability.faults import EnvFaultError, GracefulShutdown
from lightq.reliability.watchdog import DivergenceError, Watchdog, WatchdogConfig

__all__ = ["DivergenceError", "EnvFaultError", "GracefulShutdown", "Watchdog", "WatchdogConfig"]
