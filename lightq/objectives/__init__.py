"""Pure TD-target and loss functions: tensors in, a ``LossOutput`` out; no env, no logging.

``td_target`` is the one TD target; ``action_value`` is the seam where algorithms differ (how
``max_a' Q(s', a')`` and the greedy action are computed).
"""

from lightq.objectives.action_value import (
    ActionValue,
    CEMConfig,
    ContinuousQ,
    DiscreteQ,
    MinOfQ,
    bootstrap_value,
    cem_maximize,
)
from lightq.objectives.common import LOSS_NAMES, LossOutput, check_loss_name, td_error_loss, td_target
from lightq.objectives.continuous import critic_loss, deterministic_actor_loss
from lightq.objectives.dqn import double_q_bootstrap, dqn_loss, max_q_bootstrap

__all__ = [
    "LOSS_NAMES", "ActionValue", "CEMConfig", "ContinuousQ", "DiscreteQ", "LossOutput", "MinOfQ", "bootstrap_value",
    "cem_maximize", "check_loss_name", "critic_loss", "deterministic_actor_loss", "double_q_bootstrap", "dqn_loss",
    "max_q_bootstrap", "td_error_loss", "td_target",
]
