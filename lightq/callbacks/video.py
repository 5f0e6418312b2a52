"""Evaluation videos: episodes rendered as ``rgb_array`` frames and written as WebM (VP8).

VP8 in WebM because browsers decode it (Chromium, Firefox, Safari), so the MLflow UI plays the
``videos/`` artifacts; MPEG-4 Part 2 (``mp4v``) plays in no mainstream browser, and the OpenCV wheel has
no H.264 encoder. VP8 rather than VP9: it is the cheaper encoder, and eval videos are made inside
training. Written with OpenCV's ``VideoWriter``, not gymnasium's ``RecordVideo``: ``RecordVideo``
needs moviepy, which lightq does not depend on, while ``opencv-python-headless`` already is a
dependency (Atari preprocessing); ``cv2.VideoCapture`` reads the frame count back. Frames come from
``env.render()`` through ``evaluate_policy``'s ``on_step`` hook, so a video shows exactly an episode of
the declared evaluation protocol: T steps give T + 1 frames (the reset state, then one per step), as
``RecordVideo`` does.

Classic-control envs (CartPole, Pendulum, ...) render with pygame: ``pip install "gymnasium[classic-control]"``
(or lightq's ``video`` extra).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger

from lightq.callbacks.evaluation import evaluate_policy
from lightq.seeding import eval_episode_seeds

__all__ = ["CODEC", "EXTENSION", "EpisodeRecorder", "VideoRecording", "record_episodes"]

CODEC = "VP80"
EXTENSION = ".webm"


class EpisodeRecorder:
    """``on_step`` hook for ``evaluate_policy``: renders the env after each call, one WebM per recorded episode.

    Args:
        env: A single env made with ``render_mode="rgb_array"``.
        directory: Where the video files go.
        name: File stem; episode i is written to ``{name}-episode{i}.webm``.
        episodes: Record episodes ``0 .. episodes - 1`` (the rest run without rendering).
        fps: Frames per second of the file (default: the env's ``render_fps``, else 30).
    """

    def __init__(self, env, directory: str | Path, *, name: str, episodes: int = 1, fps: int | None = None) -> None:
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(
                f"Recording needs an env made with render_mode='rgb_array', got {getattr(env, 'render_mode', None)!r}."
            )
        self.env, self.directory, self.name, self.episodes = env, Path(directory), name, episodes
        self.fps = int(fps or env.metadata.get("render_fps") or 30)
        self.paths: list[Path] = []
        self.frames: list[int] = []
        self._writer = None
        self._episode = -1

    def __call__(self, episode: int) -> None:
        if episode >= self.episodes:
            self.close()
            return
        if episode != self._episode:
            self.close()
            self._episode = episode
        frame = self._render()
        if self._writer is None:
            self._open(frame.shape)
        self._writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
        self.frames[-1] += 1

    def _render(self) -> np.ndarray:
        try:
            frame = self.env.render()
        except Exception as exc:  # gymnasium's DependencyNotInstalled names the extra to install
            raise RuntimeError(f"Rendering {self.env.spec.id if self.env.spec else self.env} failed: {exc}") from exc
        frame = np.asarray(frame)
        if frame.ndim == 2:  # grayscale renders
            frame = np.repeat(frame[..., None], 3, axis=-1)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"env.render() gave an array of shape {frame.shape}; a video needs [H, W, 3] RGB frames.")
        return frame.astype(np.uint8, copy=False)

    def _open(self, shape: tuple[int, ...]) -> None:
        import cv2

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.name}-episode{self._episode}{EXTENSION}"
        height, width = shape[:2]
        with _stderr_captured() as captured:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODEC), self.fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open a WebM writer for {path} (codec {CODEC}): {captured.text}")
        self._writer = writer
        self.paths.append(path)
        self.frames.append(0)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class _stderr_captured:
    """Capture file descriptor 2 (C code's stderr) while opening a writer.

    OpenCV's FFmpeg backend prints "tag ... is not supported with codec id ..." for every WebM it opens
    (WebM has no codec tags) and then writes the file correctly; the line would read like an error to
    users. What was printed is kept in ``text`` for the error message when the writer does not open.
    """

    text = ""

    def __enter__(self):
        import os
        import sys

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace").strip()
        self._file.close()


def record_episodes(
    env, policy: Callable[[torch.Tensor], torch.Tensor], *, seeds: list[int], directory: str | Path, name: str,
    episodes: int = 1, device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, list[Path], list[int]]:
    """``evaluate_policy`` with the first ``episodes`` episodes recorded.

    Returns (returns, lengths, video paths, frame counts).
    """
    recorder = EpisodeRecorder(env, directory, name=name, episodes=episodes)
    try:
        returns, lengths = evaluate_policy(env, policy, seeds=seeds, device=device, on_step=recorder)
    finally:
        recorder.close()
    return returns, lengths, recorder.paths, recorder.frames


class VideoRecording(pl.Callback):
    """Every ``evaluation.video_every_env_steps``: one eval episode as WebM, logged under ``videos/`` in MLflow.

    The episode uses the eval protocol (``module.eval_policy``, the first eval episode's seed) on its own
    rendering env. Files are named ``eval-env_steps{N:09d}-episode0.webm``; without an MLflow logger they
    stay in ``{default_root_dir}/videos/``.
    """

    def __init__(self) -> None:
        self._next: int | None = None
        self._env = None

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        every = module.evaluation.video_every_env_steps
        self._next = (module.env_steps // every + 1) * every if every else None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._next is not None and module.env_steps >= self._next:
            every = module.evaluation.video_every_env_steps
            self._next = (module.env_steps // every + 1) * every
            if trainer.is_global_zero:
                self.record(trainer, module)

    def record(self, trainer: pl.Trainer, module) -> Path | None:
        if self._env is None:
            self._env = module.make_eval_env(render_mode="rgb_array")
        mlflow_loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) if mlflow_loggers else Path(trainer.default_root_dir) / "videos"
            was_training = module.training
            module.eval()
            seeds = eval_episode_seeds(module.hparams.seed, module.evaluation.seed_offset, 1)
            _, lengths, paths, frames = record_episodes(
                self._env, module.eval_policy, seeds=seeds, directory=directory,
                name=f"eval-env_steps{module.env_steps:09d}", device=module.device,
            )
            module.train(was_training)
            for logger in mlflow_loggers:
                logger.experiment.log_artifact(logger.run_id, str(paths[0]), "videos")
            module.log_metrics({"eval/video_episode_length": float(lengths[0])})
            return None if mlflow_loggers else paths[0]

    def on_train_end(self, trainer, module) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
