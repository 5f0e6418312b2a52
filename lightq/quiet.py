"""Silence the lines of Lightning and torch that say nothing about a lightq run.

A user should see the run, not advertising or warnings that do not apply. Each filter is narrow (one
message, matched at its start) and says why it is safe to drop; everything else still shows.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["silence_irrelevant_output"]

# Lightning's rank_zero_info goes to this logger (lightning_utilities' shared rank-zero module).
_RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"
_CHECKPOINT_LOGGER = "pytorch_lightning.trainer.connectors.checkpoint_connector"

_DROPPED_INFO = (
    # Advertising for Lightning's hosted services, printed at every fit.
    "💡 Tip:",
    # Said on every ModelCheckpoint save; lightq checkpoints are read with weights_only=True regardless.
    "`weights_only` was not set",
)

_DROPPED_WARNINGS = (
    # Lightning's ModelCheckpoint wants the state *before* the optimizer step of the iteration that
    # triggers a periodic save. lightq saves between updates: the checkpoint holds the parameters after
    # update u together with the clocks, optimizer, replay and RNG state after update u, which is the
    # consistent state that exact resume restores (tests/integration/test_exact_resume.py).
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    # With lightq's CLI the folder is the run's own: on resume it holds the run's checkpoints, and a new run
    # moves an earlier run's checkpoints aside first (lightq.cli).
    r"Checkpoint directory .* exists and is not empty",
    # Lightning 2.6's own pytree helper uses a torch API deprecated in torch 2.13; nothing to act on here.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_installed = False


def silence_irrelevant_output() -> None:
    """Install the filters once per process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name in (_RANK_ZERO_LOGGER, _CHECKPOINT_LOGGER):
        logging.getLogger(name).addFilter(_DropMessages(_DROPPED_INFO))
    for message in _DROPPED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
