"""``lightq`` command line: LightningCLI over lightq's algorithms.

    lightq fit --config configs/dqn/cartpole.yaml [--model.init_args.seed 3 ...]

The model section names an algorithm (``class_path: lightq.algos.DQN``) and its ``init_args``; the
trainer defaults are lightq's (one epoch = the whole run, MLflow logger on ``sqlite:///mlflow.db``).
"""

from __future__ import annotations

import importlib
import logging
import re
import signal
import sys
import traceback
import tempfile
from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightq.algos import OffPolicyAlgorithm
from lightq.commands import COMMANDS, run_command
from lightq.quiet import silence_irrelevant_output
from lightq.reliability import DivergenceError, EnvFaultError
from lightq.reliability.validation import CheckpointError, check_checkpoint, explain_parse_error
from lightq.tracking.mlflow import (BrokenTrackingStore, TrackingServerUnreachable, continue_run_from_checkpoint,
                                   git_sha, mlflow_ui_url, tag_run)

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


class LightqArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with errors that name the key, the bad value and the fix.

    ``allow_abbrev=False``: argparse would otherwise take ``--trainer.max_epoch`` for
    ``--trainer.max_epochs`` silently; a misspelling must be an error, not a guess.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        # Only the CLI's own parsers summarise (jsonargparse builds inner parsers of the same class for
        # nested class types; their messages end up inside the top-level one).
        summary = explain_parse_error(message) if getattr(self, "_lightq_cli_parser", False) else None
        if summary:
            message = f"invalid configuration:\n{summary}\n\nParser details:\n{message}"
        return super().error(message, ex)


class LightqCLI(LightningCLI):
    """LightningCLI with lightq's defaults and MLflow run tagging."""

    def __init__(self, args=None, run: bool = True) -> None:
        super().__init__(
            model_class=OffPolicyAlgorithm,
            subclass_mode_model=True,
            parser_class=LightqArgumentParser,
            save_config_callback=MLflowSaveConfig,
            save_config_kwargs={"save_to_log_dir": False},
            seed_everything_default=False,  # every seed derives from model.init_args.seed (no global seeding)
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

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        parser._lightq_cli_parser = True
        return parser

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters here, before anything is built: refuse a
        # missing, corrupted, foreign or other-algorithm checkpoint first, with a message that says so.
        if self.config.get("subcommand"):
            section = self.config[self.config.subcommand]
            ckpt_path = section.get("ckpt_path")
            if ckpt_path not in (None, "last", "best", "hpc", "registry"):
                class_path = section.get("model", {}).get("class_path", "")
                try:
                    algorithm = _import_class(class_path).algorithm_name
                except (ImportError, AttributeError, ValueError):
                    algorithm = None
                check_checkpoint(ckpt_path, algorithm)
                if class_path:
                    # The config given now is the run's settings, as with ``--ckpt_path last`` (which
                    # Lightning cannot read before the folder is known): a larger ``total_env_steps``
                    # extends the run. Lightning would instead overwrite it with the checkpoint's
                    # hyperparameters. Settings that differ are recorded in MLflow (``resumed.*`` tags).
                    return
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        model = self.model
        self._prepare_checkpoints_and_resume()
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

    def _prepare_checkpoints_and_resume(self) -> None:
        """Deterministic checkpoint folder, ``--ckpt_path last``, and continuing the checkpoint's MLflow run.

        Lightning puts checkpoints under the logger's run id (new for every invocation), so ``last`` could
        never be found. lightq's default is ``<default_root_dir>/<run name>/checkpoints`` with ``last.ckpt``.
        """
        trainer, model = self.trainer, self.model
        mlflow_loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        run_name = next((lg._run_name for lg in mlflow_loggers if lg._run_name), None) or (
            f"{model.algorithm_name}-{model.env_config.id}-seed{model.hparams.seed}"
        )
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                folder = re.sub(r"[^\w.+-]", "_", run_name)  # env ids like ALE/Pong-v5 hold '/'
                cb.dirpath = str(Path(trainer.default_root_dir) / folder / "checkpoints")
                if cb.save_last is None:
                    cb.save_last = True
        kwargs = self.config_init[self.subcommand]
        ckpt = kwargs.get("ckpt_path")
        if ckpt == "last":
            last = [Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
                    for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
            found = [p for p in last if p.is_file()]
            if not found:
                rank_zero_warn(f"--ckpt_path last: no checkpoint at {[str(p) for p in last]}; starting a new run.")
            ckpt = kwargs["ckpt_path"] = str(found[0]) if found else None
        if ckpt:
            check_checkpoint(ckpt, model.algorithm_name)  # corrupt / foreign / other algorithm: refuse now
            continue_run_from_checkpoint(ckpt, mlflow_loggers)
        elif trainer.is_global_zero:
            _move_aside_old_checkpoints(trainer)

    def after_fit(self) -> None:
        if self.trainer.global_rank != 0:
            return
        model = self.model
        lines = []
        if model.final_eval:
            ev = model.final_eval
            total = model.hparams.total_env_steps
            finished = model.updates >= model.num_updates
            # "final" only for an eval taken at the end of the configured run; a stop (max_steps, a signal)
            # or an eval older than the last env step is labelled as what it is.
            label = "final eval return" if finished and model.last_eval_env_steps == model.env_steps else (
                f"eval return at env step {model.last_eval_env_steps}")
            lines.append(
                f"{label}: {ev['eval/return_mean']:.1f} ± {ev['eval/return_std']:.1f} "
                f"over {model.evaluation.episodes} episodes "
                f"(env steps {model.env_steps}, updates {model.updates}, {model.env_config.id})"
            )
            if not finished:
                lines.append(f"stopped before the end (env steps {model.env_steps} of {total}): "
                             "continue with --ckpt_path last")
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                # MLflow calls a run FINISHED when the process ended well, also after a max_steps stop:
                # sweeps and reports read this tag to tell a complete run from one stopped before its end.
                try:
                    tag_run(logger, {"complete": str(model.updates >= model.num_updates).lower()})
                except Exception as exc:  # noqa: BLE001 - the server went away: the run's results still print
                    rank_zero_warn(f"Could not tag MLflow run {logger.run_id} complete=... ({type(exc).__name__}); "
                                   "sweeps and reports will treat it as complete.")
                lines.append(
                    f"MLflow run {logger.run_id} (experiment {logger.name}) in {logger._tracking_uri}; "
                    f"view with: mlflow ui --backend-store-uri {logger._tracking_uri}, then open "
                    f"{mlflow_ui_url('http://127.0.0.1:5000', logger.experiment_id, logger.run_id)}"
                )
        ckpt = self.trainer.checkpoint_callback
        path = ckpt and (ckpt.last_model_path or ckpt.best_model_path)
        if path:
            lines.append(f"checkpoint: {path}")
            lines.append(f"watch it: lightq evaluate --ckpt_path {path} --video")
        if getattr(model, "policy_model_uri", None):
            lines.append(f"policy model: {model.policy_model_uri}")
        print("\n".join(lines), flush=True)


def _move_aside_old_checkpoints(trainer) -> None:
    """A new run (no ``--ckpt_path``) whose checkpoint folder holds an earlier run's checkpoints would
    overwrite them (the folder is named after the run: same config, same seed, same folder). Move the
    folder aside, never delete it, and say where it went; ``--ckpt_path last`` then finds the new run's."""
    import time

    from lightq.callbacks.checkpoint import move_aside

    for cb in trainer.checkpoint_callbacks:
        folder = Path(cb.dirpath) if isinstance(cb, ModelCheckpoint) and cb.dirpath else None
        if folder is None or not folder.is_dir() or not any(folder.glob("*.ckpt")):
            continue
        aside = move_aside(folder, time.strftime("%Y%m%d-%H%M%S"))
        rank_zero_warn(f"{folder} held the checkpoints of an earlier run; moved them to {aside} (to continue "
                       "that run instead, pass --ckpt_path last or its path).")


def _import_class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# A negative number argparse would take for an option: it knows only -5 and -0.5, not -1e-3 or -inf.
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity|nan)", re.IGNORECASE)


def join_negative_values(argv: list[str]) -> list[str]:
    """``--key -1e-3`` → ``--key=-1e-3``: argparse reads a word such as ``-1e-3`` as an unknown option and
    answers "expected one argument"; the joined form is what it accepts. No lightq option looks like a number."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if (word.startswith("--") and "=" not in word and i + 1 < len(argv)
                and _NEGATIVE_NUMBER.fullmatch(argv[i + 1])):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def main(args=None) -> None:
    """Console entry point (``lightq``): lightq's own subcommands, else LightningCLI."""
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # one INFO line per storage otherwise
    silence_irrelevant_output()
    argv = join_negative_values(list(sys.argv[1:] if args is None else args))
    if args is None:
        sys.argv[1:] = argv  # LightningCLI reads sys.argv itself (and warns when given both)
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:])
        return
    try:
        LightqCLI(args=None if args is None else argv)
    except SIGTERMException as stop:  # GracefulShutdown has written last.ckpt and said so
        sys.exit(128 + (signal.SIGINT if getattr(stop, "lightq_signal", "") == "SIGINT" else signal.SIGTERM))
    except (CheckpointError, TrackingServerUnreachable) as error:
        print(f"lightq: invalid configuration:\n  {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except BrokenTrackingStore as error:
        print(f"lightq: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except ValueError as error:  # a setting refused when the classes are built (lightq's own checks)
        cause = error  # jsonargparse wraps what the logger's constructor raised
        while cause is not None and not isinstance(cause, BrokenTrackingStore):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # the tracking store is broken: not a setting
            print(f"lightq: {cause}", file=sys.stderr, flush=True)
            sys.exit(1)
        summary = explain_parse_error(str(error))
        if summary is None:
            raise
        print(f"lightq: invalid configuration:\n{summary}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (DivergenceError, EnvFaultError) as error:  # the report is the message; the cause stays visible
        if error.__cause__ is not None:
            traceback.print_exception(error.__cause__)
        print(f"lightq: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
