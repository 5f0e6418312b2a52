"""Pure TD-target and loss functions: tensors in, a ``LossOutput`` out; no env, no logging."""

from lightq.objectives.common import LossOutput, td_error_loss, td_target
from lightq.objectives.dqn import double_q_bootstrap, dqn_loss, max_q_bootstrap

__all__ = ["LossOutput", "td_error_loss", "double_q_bootstrap", "dqn_loss", "max_q_bootstrap", "td_target"]
