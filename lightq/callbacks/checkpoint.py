"""Crash-safe checkpoints and the replay sidecar (issue 6).

A lightq checkpoint is two things:

- the Lightning ``.ckpt`` (networks, optimizers, clocks, RNG/env/exploration state: small), and
- a **replay sidecar** per rank, ``<ckpt dir>/replay/u<updates>/rank<r>.pt``: the replay buffer's
  ``state_dict`` (TorchRL storage contents, write cursor, length, sampler trees, generator) plus the
  batches and transitions in flight. It is a ``torch.save`` of tensors and plain containers, read back
  with ``weights_only=True`` (nothing is unpickled into code). Per rank, because under DDP each rank
  has its own buffer.

Order of writes, so that a crash (SIGKILL) at any moment leaves the previous checkpoint loadable:

1. every rank writes its sidecar for update u to a temp file, fsyncs, renames it into place;
2. ``AtomicCheckpointIO`` records in ``replay/index.json`` that the ``.ckpt`` about to be written may
   reference both its old and its new sidecar;
3. the ``.ckpt`` is written to a temp file, fsynced, and ``os.replace``d over the old one;
4. the index is narrowed to the new sidecar, and sidecar folders no ``.ckpt`` references are removed.

A kill between any two steps leaves every ``.ckpt`` on disk pointing at a complete sidecar.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "read_sidecar", "sidecar_name", "write_sidecar"]

SIDECAR_DIR = "replay"
_INDEX = "index.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temp file beside ``path``, fsync, ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def move_aside(path: Path, suffix: str) -> Path:
    """Rename ``path`` to ``<name>.<suffix>`` (``-1``, ``-2``... if taken): kept, never deleted; returns it."""
    aside = path.with_name(f"{path.name}.{suffix}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.{suffix}-{n}")
        n += 1
    path.rename(aside)
    return aside


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def sidecar_name(updates: int) -> str:
    return f"u{updates:010d}"


def write_sidecar(root: str | Path, name: str, rank: int, state: dict) -> Path:
    """Write rank ``rank``'s replay sidecar ``root/replay/name/rank<rank>.pt`` atomically; return its folder."""
    folder = Path(root) / SIDECAR_DIR / name
    atomic_torch_save(state, folder / f"rank{rank}.pt")
    return folder


def read_sidecar(folder: str | Path, rank: int) -> dict | None:
    """Load a sidecar with ``weights_only=True``; ``None`` if it is missing."""
    path = Path(folder) / f"rank{rank}.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with fsync + ``os.replace`` writes and replay-sidecar bookkeeping.

    Lightning's own save goes through an fsspec transaction (temp file + move) without fsync, and knows
    nothing of the sidecars. lightq installs this plugin in ``OffPolicyAlgorithm.setup`` when the
    strategy still has the default ``TorchCheckpointIO``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        state = checkpoint.get("lightq") or {}
        sidecar = state.get("replay_sidecar")
        if sidecar is None:
            atomic_torch_save(checkpoint, path)
            return
        root = path.parent / SIDECAR_DIR
        source = Path(sidecar["path"])
        target = root / sidecar["name"]
        if source.resolve() != target.resolve():
            # Saved outside the folder the sidecar went to (e.g. trainer.save_checkpoint("x/y.ckpt")): copy
            # it beside this .ckpt, so each folder's sidecars are governed by its own index.
            if not target.exists():
                root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root)) / "copy"
                shutil.copytree(source, tmp)
                os.replace(tmp, target)
                shutil.rmtree(tmp.parent, ignore_errors=True)
            sidecar["path"] = str(target.resolve())
        index = self._read_index(root)
        index[path.name] = sorted(set(index.get(path.name, [])) | {sidecar["name"]})  # step 2
        self._write_index(root, index)
        atomic_torch_save(checkpoint, path)  # step 3
        index[path.name] = [sidecar["name"]]  # step 4
        self._write_index(root, index)
        self._collect(root, index)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        path = Path(path)
        root = path.parent / SIDECAR_DIR
        index = self._read_index(root)
        if index.pop(path.name, None) is not None:
            self._write_index(root, index)
            self._collect(root, index)

    @staticmethod
    def _read_index(root: Path) -> dict[str, list[str]]:
        try:
            return json.loads((root / _INDEX).read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _write_index(root: Path, index: dict) -> None:
        _atomic_write(root / _INDEX, lambda f: f.write(json.dumps(index, indent=1, sort_keys=True).encode()))

    @staticmethod
    def _collect(root: Path, index: dict) -> None:
        keep = {name for names in index.values() for name in names}
        for folder in root.iterdir():
            if folder.is_dir() and folder.name.startswith("u") and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
