"""What users look at, in a real browser (headless Chromium, no driver): videos, the MLflow UI, the report.

Each page is loaded with ``--dump-dom`` after a virtual-time budget, so the DOM read back is what the page's
scripts made of it; screenshots are saved under the test's tmp dir. Without Chromium the tests skip,
except under CI=true, where ``.ci/run`` installs it and a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from lightq.callbacks.video import record_episodes
from tests.helpers import rendered_env

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                  if p and os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but no chromium: .ci/run installs Debian's `chromium`; the browser tests must run.")
        pytest.skip("no chromium found (Debian: apt-get install -y chromium); CI runs these tests.")
    return found


def _browse(chromium: str, url: str, *, screenshot: Path | None = None, budget_ms: int = 10_000,
            height: int = 900) -> str:
    """The page's DOM after ``budget_ms`` of virtual time (and a screenshot, from a second load)."""
    with tempfile.TemporaryDirectory() as profile:
        base = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                f"--window-size=1280,{height}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
            assert screenshot.stat().st_size > 0
    return dom


_PLAYER = """<!doctype html><html><body>
<video id="v" src="{src}" muted playsinline width="600"></video><p id="verdict">waiting</p>
<script>
const v = document.getElementById("v"), out = document.getElementById("verdict");
v.addEventListener("loadeddata", () => {{
  out.textContent = `decoded ${{v.videoWidth}}x${{v.videoHeight}} duration ${{v.duration.toFixed(2)}}`; }});
v.addEventListener("error", () => {{ out.textContent = `error ${{v.error ? v.error.code : "?"}}`; }});
</script></body></html>"""


def _verdict(dom: str) -> str:
    match = re.search(r'<p id="verdict">([^<]*)</p>', dom)
    assert match, dom[-2000:]
    return match.group(1)


def test_recorded_video_decodes_in_chromium(chromium, tmp_path):
    env = gym.make(rendered_env.register(), render_mode="rgb_array")
    always_right = lambda obs: torch.ones(obs.shape[0], dtype=torch.int64)  # noqa: E731
    _, lengths, (video,), _ = record_episodes(env, always_right, seeds=[3], directory=tmp_path, name="walk")
    height, width = env.render().shape[:2]
    page = tmp_path / "player.html"
    page.write_text(_PLAYER.format(src=video.name))
    verdict = _verdict(_browse(chromium, page.as_uri(), screenshot=tmp_path / "player.png"))
    assert verdict.startswith(f"decoded {width}x{height} duration"), verdict
    assert float(verdict.rsplit(" ", 1)[1]) > 0
    # The control: the former codec (MPEG-4 Part 2) does not decode, so the page's verdict is a real check.
    import cv2
    import numpy as np

    old = tmp_path / "old.mp4"
    writer = cv2.VideoWriter(str(old), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
    for _ in range(10):
        writer.write(np.zeros((height, width, 3), np.uint8))
    writer.release()
    page.write_text(_PLAYER.format(src=old.name))
    assert _verdict(_browse(chromium, page.as_uri())).startswith("error"), "mp4v decoded: the check is not real"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_shows_the_run_and_its_eval_return(chromium, tmp_path):
    from mlflow import MlflowClient

    from lightq.tracking.mlflow import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, LightqMLFlowLogger, mlflow_ui_url

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = LightqMLFlowLogger(experiment_name="lightq", run_name="DQN-CartPole-v1-seed0", tracking_uri=uri)
    for i, step in enumerate((2_500, 5_000, 7_500)):
        logger.log_metrics({"eval/return_mean": 100.0 * (i + 1) + 0.25}, step=step)
    logger.finalize("success")
    tags = MlflowClient(uri).get_experiment(logger.experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", uri, "--default-artifact-root", str(tmp_path / "artifacts")],
        stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        run_page = mlflow_ui_url(base, logger.experiment_id, logger.run_id)
        dom = _browse(chromium, run_page, screenshot=tmp_path / "mlflow_run.png", budget_ms=15_000,
                      height=1400)  # tall enough to show the metrics table
        assert "DQN-CartPole-v1-seed0" in dom and "eval/return_mean" in dom
        assert ">300.25<" in dom  # the latest value, in the run's metrics table
        assert ">Model training<" in dom and ">Evaluation runs<" not in dom  # the model-training view
        runs_page = mlflow_ui_url(base, logger.experiment_id)
        dom = _browse(chromium, runs_page, screenshot=tmp_path / "mlflow_runs.png", budget_ms=15_000)
        assert "DQN-CartPole-v1-seed0" in dom
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_report_html_shows_its_figures_and_table(chromium, tmp_path):
    from lightq.commands.report import main as report
    from lightq.tracking.mlflow import LightqMLFlowLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for seed in range(3):
        logger = LightqMLFlowLogger(experiment_name="lectures", run_name=f"DQN-seed{seed}", tracking_uri=uri,
                                    tags={"variant": "dqn", "seed": str(seed), "algorithm": "DQN"})
        for step in (1_000, 2_000, 3_000):
            logger.log_metrics({"eval/return_mean": step / 10 + seed}, step=step)
        logger.finalize("success")
    out = tmp_path / "report"
    report(["--experiment", "lectures", "--tracking-uri", uri, "--out", str(out), "--html", "--reps", "200"])
    page = out / "report_check.html"
    # The report itself, plus a script that writes whether each image loaded (complete, non-zero size).
    page.write_text((out / "report.html").read_text() + """<p id="verdict"></p><script>
window.addEventListener("load", () => { document.getElementById("verdict").textContent = [...document.images]
  .map(i => `${i.getAttribute("src")}:${i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0}`).join(" "); });
</script>""")
    dom = _browse(chromium, page.as_uri(), screenshot=tmp_path / "report.png")
    images = dict(item.split(":") for item in _verdict(dom).split())
    assert list(images) == ["curves.png"] and int(images["curves.png"]) > 0, images
    assert "<td>dqn</td>" in dom and "IQM" in dom
