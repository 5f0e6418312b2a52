"""Callbacks: evaluation, progress bar."""

from lightq.callbacks.evaluation import EvalConfig, Evaluation, evaluate_policy
from lightq.callbacks.progress import LightqProgressBar

__all__ = ["EvalConfig", "Evaluation", "LightqProgressBar", "evaluate_policy"]
