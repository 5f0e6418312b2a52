"""``lightq`` command line: LightningCLI over lightq's algorithms.

    lightq fit --config configs/dqn/cartpole.yaml [--model.init_args.seed 3 ...]

The model section names an algorithm (``class_path: lightq.algos.DQN``) and its ``init_args``; the
trainer defaults are lightq's (one epoch = the whole run, MLflow logger on ``sqlite:///mlflow.db``).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import MLFlowLogger

from lightq.algos import OffPolicyAlgorithm
from lightq.commands import COMMANDS, run_command
from lightq.tracking.mlflow import git_sha, tag_run

__all__ = ["LightqCLI", "main"]


class MLflowSaveConfig(SaveConfigCallback):
    """Logs the fully resolved config (every default included) as ``config.yaml`` in the MLflow run."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "config.yaml"
                    path.write_text(text)
                    logger.experiment.log_artifact(logger.run_id, str(path))


class LightqCLI(LightningCLI):
    """LightningCLI with lightq's defaults and MLflow run tagging."""

    def __init__(self, args=None, run: bool = True) -> None:
        super().__init__(
            model_class=OffPolicyAlgorithm,
            subclass_mode_model=True,
            save_config_callback=MLflowSaveConfig,
            save_config_kwargs={"save_to_log_dir": False},
            seed_everything_default=False,  # seeds come from model.init_args.seed (DESIGN.md §5.7)
            auto_configure_optimizers=False,
            trainer_defaults={
                "max_epochs": 1,  # one epoch = the whole run; its length is total_env_steps
                "accelerator": "auto",
                "devices": 1,
                "enable_model_summary": False,
                "num_sanity_val_steps": 0,
                "default_root_dir": "runs",
                "logger": {"class_path": "lightq.tracking.LightqMLFlowLogger"},
            },
            args=args,
            run=run,
        )

    def before_fit(self) -> None:
        model = self.model
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                tags = {
                    "algorithm": model.algorithm_name,
                    "env": model.env_config.id,
                    "seed": model.hparams.seed,
                    "git_sha": git_sha(),
                }
                if model.env_config.id.startswith("ALE/"):  # the Atari protocol (lightq.envs.atari)
                    tags["protocol"] = model.env_config.atari_protocol
                if logger._run_name is None:
                    tags["mlflow.runName"] = f"{model.algorithm_name}-{model.env_config.id}-seed{model.hparams.seed}"
                tag_run(logger, tags)

    def after_fit(self) -> None:
        if self.trainer.global_rank != 0:
            return
        model = self.model
        lines = []
        if model.final_eval:
            ev = model.final_eval
            lines.append(
                f"final eval return: {ev['eval/return_mean']:.1f} ± {ev['eval/return_std']:.1f} "
                f"over {model.evaluation.episodes} episodes "
                f"(env steps {model.env_steps}, updates {model.updates}, {model.env_config.id})"
            )
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                lines.append(
                    f"MLflow run {logger.run_id} (experiment {logger.name}) in {logger._tracking_uri}; "
                    f"view with: mlflow ui --backend-store-uri {logger._tracking_uri}"
                )
        ckpt = self.trainer.checkpoint_callback
        path = ckpt and (ckpt.last_model_path or ckpt.best_model_path)
        if path:
            lines.append(f"checkpoint: {path}")
        print("\n".join(lines), flush=True)


def main(args=None) -> None:
    """Console entry point (``lightq``): lightq's own subcommands, else LightningCLI."""
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # one INFO line per storage otherwise
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:])
        return
    LightqCLI(args=args)


if __name__ == "__main__":
    main()
