"""Input validation that LightningCLI/jsonargparse and torch leave vague.

- ``explain_parse_error``: turns jsonargparse's nested error dump into one line per problem that
  names the key, the bad value and the fix (close matches for misspelled keys).
- ``check_checkpoint``: reads a checkpoint with ``weights_only=True`` (no code runs) and refuses a
  missing, corrupted, non-lightq or other-algorithm checkpoint before anything is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "accepted_options", "check_checkpoint", "explain_parse_error"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why and what to do."""


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def accepted_options(class_path: str) -> list[str]:
    """The keyword options ``class_path`` accepts: dataclass fields, or ``__init__`` parameters
    including those its ``**kwargs`` forwards to base classes."""
    try:
        cls = _import(class_path)
    except (ImportError, AttributeError, ValueError):
        return []
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


# Names users bring from Stable-Baselines3 / CleanRL configs, and lightq's key for each.
ALIASES = {
    "learning_rate": "lr",
    "buffer_size": "replay.capacity",
    "batch_size": "replay.batch_size",
    "learning_starts": "learning_starts_env_steps",
    "train_freq": "env_steps_per_update",
    "gradient_steps": "env_steps_per_update",
    "target_update_interval": "target_update_period_updates",
    "target_network_frequency": "target_update_period_updates",
    "exploration_fraction": "exploration.duration_env_steps",
    "exploration_final_eps": "exploration.end",
    "end_e": "exploration.end",
    "total_timesteps": "total_env_steps",
    "discount": "gamma",
    "env_id": "env.id",
    "num_envs": "env.num_envs",
    "n_steps": "n_step",
}


def _suggest(bad: str, options: list[str]) -> str:
    if bad in ALIASES:
        return f"lightq calls it {ALIASES[bad]!r}."
    close = difflib.get_close_matches(bad, options, n=3, cutoff=0.5)
    if close:
        return "Did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "Accepted: " + ", ".join(options) + "." if options else ""


_NOT_ACCEPTED = re.compile(r"class_path '([\w.]+)':\s*\n\s*Option '(\w+)' is not accepted")
_NESTED_KEY = re.compile(r"NestedArg\(key='([\w.]+)', val='((?:[^'\\]|\\.)*)'\)")
_WRONG_TYPE = re.compile(r"Parser key \"([\w.]+)\":\s*\n\s*Expected a <class '(\w+)'>\. Got value: (.*)")
# The items of jsonargparse's "Errors:" list that are lightq's own ValueError messages.
_ERROR_ITEM = re.compile(r"^\s*- (?!Problem with given class_path|Expected a <class)(\S.*)$", re.M)
_UNKNOWN_KEY = re.compile(r"(?:Key|Option) '([\w.]+)' is not (?:expected|accepted)")
_UNRECOGNIZED = re.compile(r"[Uu]nrecognized arguments: (.*)")


def explain_parse_error(message: str) -> str | None:
    """One line per problem found in a jsonargparse error message, or ``None`` if none is recognised."""
    lines: list[str] = []
    nested = [m.group(1) for m in _NESTED_KEY.finditer(message)]
    full_key = max(nested, key=len) if nested else None  # the longest: the full dotted path under init_args
    seen: set[str] = set()
    for class_path, option in _NOT_ACCEPTED.findall(message):
        if option in seen:
            continue
        seen.add(option)
        if full_key and full_key.endswith(option):
            where = f"model.init_args.{full_key}"
        elif class_path.startswith("lightq.algos."):
            where = f"model.init_args.{option}"
        else:  # a key inside a nested section of a config file
            where = f"{option} (a key of a {class_path.rpartition('.')[2]} section)"
        lines.append(f"{where}: unknown option of {class_path}. {_suggest(option, accepted_options(class_path))}")
    for key, expected, value in _WRONG_TYPE.findall(message):
        lines.append(f"model.init_args.{key}={value.strip()}: expected a value of type {expected}.")
    for text in _ERROR_ITEM.findall(message):
        if re.match(r"[\w.]+=", text):  # "gamma=1.5 must be ...": name the full key
            text = f"model.init_args.{text}"
        if text not in lines:
            lines.append(text)
    if not lines:
        for key in _UNKNOWN_KEY.findall(message):
            section, _, option = key.rpartition(".")
            options = accepted_options("pytorch_lightning.Trainer") if section.endswith("trainer") else []
            lines.append(f"{key}: unknown key. {_suggest(option, options)}".rstrip())
        for args in _UNRECOGNIZED.findall(message):
            for flag in re.findall(r"--([\w.]+)", args):
                section, _, option = flag.rpartition(".")
                options = accepted_options("pytorch_lightning.Trainer") if section == "trainer" else []
                hint = _suggest(option, options) if options else "`lightq fit --help` lists the accepted keys."
                lines.append(f"--{flag}: unknown key. {hint}")
    return "\n".join(f"  {line}" for line in lines) if lines else None


def not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot be a torch checkpoint at all, or ``None``. torch.save writes a zip archive
    (``PK``); its legacy format is a pickle (protocol ≥ 2 starts with byte 0x80). Anything else, a text
    file say, would otherwise reach the unpickler and be reported as unsafe objects."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    if not head:
        return "it is empty"
    kind = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "not a torch file"
    return f"it is {kind} (a checkpoint is a zip archive written by torch.save; its first bytes are {head!r})"


def check_checkpoint(path: str | Path, algorithm: str | None) -> dict[str, Any]:
    """Load ``path`` safely and check it is a lightq checkpoint of ``algorithm``; returns it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r} does not exist. Pass an existing .ckpt file or 'last'.")
    why = not_a_torch_file(path)
    if why is not None:
        raise CheckpointError(f"ckpt_path={str(path)!r} is not a checkpoint: {why}. Pass a .ckpt file written "
                              "by `lightq fit` (the path it printed), or 'last'.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is corrupted or truncated and cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Nothing was changed; resume from an earlier "
            "checkpoint in the same folder."
        ) from exc
    except Exception as exc:  # weights_only refuses pickled code: UnpicklingError and friends
        raise CheckpointError(
            f"ckpt_path={str(path)!r} holds objects that cannot be loaded safely (weights_only=True refused "
            f"them: {type(exc).__name__}). lightq never unpickles code from a checkpoint; use a checkpoint "
            "written by lightq."
        ) from exc
    state = ckpt.get("lightq") if isinstance(ckpt, dict) else None
    if state is None:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} was not written by lightq (no 'lightq' section). Pass a checkpoint from a "
            "`lightq fit` run."
        )
    if algorithm is not None and state.get("algorithm") != algorithm:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is from algorithm {state.get('algorithm')!r}, but the model is {algorithm!r}; "
            f"resume it with the {state.get('algorithm')} config it was trained with."
        )
    return ckpt
