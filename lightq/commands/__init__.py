"""lightq's own subcommands beside LightningCLI's ``fit``/``validate``/...

``lightq <name> ...`` runs ``lightq.commands.<name>.main(argv)`` for each name in ``COMMANDS``;
every other first argument goes to ``LightqCLI`` (``lightq fit --config ...``). The modules are
imported lazily so ``lightq fit`` does not pay for them.
"""

from __future__ import annotations

import importlib

__all__ = ["COMMANDS", "run_command"]

COMMANDS: dict[str, str] = {
    "evaluate": "lightq.commands.evaluate",  # evaluate a checkpoint / MLflow model (issue 8)
    "sweep": "lightq.commands.sweep",  # configs x seeds as parallel runs (issue 6)
    "report": "lightq.commands.report",  # curves and score tables from MLflow (issue 6)
    "sync-mlflow": "lightq.tracking.mlflow",  # upload metrics spooled while the server was away (issue 7)
}


def run_command(name: str, argv: list[str]) -> None:
    """Import ``COMMANDS[name]`` and call its ``main(argv)``."""
    module = importlib.import_module(COMMANDS[name])
    module.main(argv)
