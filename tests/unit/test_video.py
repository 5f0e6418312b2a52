"""EpisodeRecorder: one WebM (VP8) per recorded episode, T + 1 frames for T steps, through evaluate_policy's hook."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from lightq.callbacks.evaluation import EvalConfig
from lightq.callbacks.video import EpisodeRecorder, record_episodes
from tests.helpers import rendered_env


def _frames(path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def codec_of(path) -> tuple[str, str]:
    """(container, video codec) read from the file's bytes, not from its name.

    A WebM is an EBML file (magic 1A 45 DF A3) with DocType "webm"; its track's CodecID is "V_VP8" or
    "V_VP9". An MP4 has an "ftyp" box at offset 4 and names its codec in the sample entry ("mp4v", "avc1").
    """
    data = open(path, "rb").read()
    if data[:4] == b"\x1a\x45\xdf\xa3":
        container = "webm" if b"webm" in data[:64] else "matroska"
        codec = next((c for c in ("V_VP8", "V_VP9", "V_AV1", "V_MPEG4/ISO/AVC") if c.encode() in data[:4096]), "?")
        return container, codec
    if data[4:8] == b"ftyp":
        codec = next((c for c in ("avc1", "hvc1", "mp4v", "vp09", "av01") if c.encode() in data), "?")
        return "mp4", codec
    return "?", "?"


def test_recorder_writes_the_first_episodes_with_one_frame_per_step(tmp_path):
    env = gym.make(rendered_env.register(), render_mode="rgb_array")
    always_right = lambda obs: torch.ones(obs.shape[0], dtype=torch.int64)  # noqa: E731
    returns, lengths, paths, frames = record_episodes(
        env, always_right, seeds=[3, 4, 5], directory=tmp_path, name="walk", episodes=2
    )
    # Start cell drawn from the seed, then straight to the right end (cell 11): 11 - start steps.
    starts = [int(np.random.default_rng(s).integers(0, 6)) for s in (3, 4, 5)]  # gymnasium's np_random(seed)
    assert list(lengths) == [11 - s for s in starts]
    assert [p.name for p in paths] == ["walk-episode0.webm", "walk-episode1.webm"]
    assert frames == [int(lengths[0]) + 1, int(lengths[1]) + 1]
    assert [_frames(p) for p in paths] == frames
    assert len(list(tmp_path.iterdir())) == 2  # the third episode ran without rendering
    # VP8 in WebM: a codec browsers decode (the MLflow UI plays the artifact); mp4v plays in none.
    assert [codec_of(p) for p in paths] == [("webm", "V_VP8")] * 2


def test_writer_prints_nothing_on_stderr(tmp_path, capfd):
    """OpenCV's "tag ... is not supported" line for WebM is not shown to users."""
    env = gym.make(rendered_env.register(), render_mode="rgb_array")
    always_right = lambda obs: torch.ones(obs.shape[0], dtype=torch.int64)  # noqa: E731
    capfd.readouterr()
    record_episodes(env, always_right, seeds=[3], directory=tmp_path, name="quiet")
    assert "not supported" not in capfd.readouterr().err


def test_recording_needs_an_rgb_array_env_and_video_period_is_validated(tmp_path):
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        EpisodeRecorder(gym.make(rendered_env.register()), tmp_path, name="x")
    with pytest.raises(ValueError, match="video_every_env_steps=0 must be >= 1"):
        EvalConfig(video_every_env_steps=0)
