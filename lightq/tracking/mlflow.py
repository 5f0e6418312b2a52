"""MLflow helpers.

MLflow 3.7+ defaults to ``sqlite:///mlflow.db`` but Lightning's ``MLFlowLogger`` still defaults to
``file:./mlruns``; lightq's logger uses ``$MLFLOW_TRACKING_URI`` when set and ``sqlite:///mlflow.db``
(in the working directory) otherwise, so ``mlflow ui`` in the same folder shows the runs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from pytorch_lightning.loggers import MLFlowLogger

__all__ = [
    "DEFAULT_TRACKING_URI",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "BrokenTrackingStore",
    "LightqMLFlowLogger",
    "TrackingServerUnreachable",
    "sync_spool",
    "absolute_sqlite_uri",
    "check_sqlite_store",
    "continue_run_from_checkpoint",
    "git_sha",
    "mark_model_training",
    "mlflow_ui_url",
    "mlflow_run_record",
    "tag_run",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# MLflow 3's UI reads this experiment tag to pick its view; without it, it may infer a GenAI experiment
# and show lightq's runs under "Evaluation runs" instead of the model-training runs table and charts.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

log = logging.getLogger(__name__)

# A dead tracking server must not stall training: MLflow's defaults (7 retries, backoff factor 2,
# 120 s timeout) make one failed call block for minutes. lightq's logger lowers them for its process
# unless the user set them; it then spools what it cannot send (see LightqMLFlowLogger).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingServerUnreachable(RuntimeError):
    """The MLflow tracking server does not answer at the start of a run."""


class BrokenTrackingStore(RuntimeError):
    """A local SQLite MLflow store whose creation or schema migration was interrupted, holding runs."""


class LightqMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` with lightq's defaults (tracking URI, experiment name).

    Args:
        experiment_name: MLflow experiment.
        run_name: Run name; lightq sets ``<algorithm>-<env>-seed<seed>`` when ``None``.
        tracking_uri: ``None`` = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        tags: Extra run tags.
        run_id: Resume logging into this existing run.
        artifact_location: Artifact root for a newly created experiment.
        on_unreachable: For an ``http(s)://`` tracking URI that does not answer at start: ``error``
            (default: stop before any env step, saying how to fix it) or ``local`` (log to
            ``sqlite:///mlflow.db`` in the working directory instead, and say so).
        retry_every_s: While the server is away mid-run, how often to try it again.

    If the server goes away mid-run, training goes on: metrics that cannot be sent are kept in memory
    and appended to a spool file (``mlflow-spool-<run id>.jsonl`` in the working directory), and sent
    when the server answers again (tried every ``retry_every_s`` and at the end). If it is still away
    at the end, the spool file stays and ``lightq sync-mlflow FILE`` uploads it (metrics, then the run's
    final status) later. Nothing is dropped silently: the end of the run prints what was spooled.
    """

    def __init__(
        self,
        experiment_name: str = "lightq",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
        artifact_location: str | None = None,
        on_unreachable: str = "error",
        retry_every_s: float = 30.0,
    ) -> None:
        if on_unreachable not in ("error", "local"):
            raise ValueError(f"logger on_unreachable={on_unreachable!r} must be 'error' or 'local'.")
        uri = absolute_sqlite_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
        if uri.startswith(("http://", "https://")):
            for key, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            problem = _server_problem(uri)
            if problem is not None:
                if on_unreachable == "error":
                    raise TrackingServerUnreachable(
                        f"MLflow tracking server {uri} is unreachable ({problem}). Nothing was started. Start it "
                        f"(e.g. `mlflow server --host 127.0.0.1 --port {uri.rsplit(':', 1)[-1].strip('/')}`), fix "
                        "--trainer.logger.init_args.tracking_uri / $MLFLOW_TRACKING_URI, or pass "
                        "--trainer.logger.init_args.on_unreachable local to log to the local store instead."
                    )
                local = absolute_sqlite_uri(DEFAULT_TRACKING_URI)
                log.warning("MLflow server %s is unreachable (%s): logging to %s instead (on_unreachable=local).",
                            uri, problem, local)
                print(f"lightq: MLflow server {uri} unreachable ({problem}); logging to {local}", flush=True)
                uri = local
        check_sqlite_store(uri)
        self.retry_every_s = retry_every_s
        self._pending: list[dict] = []  # metric batches not yet accepted by the server
        self._last_failure: float | None = None
        self._spool_path: Path | None = None
        self.spooled = 0
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=uri,
            tags=tags,
            run_id=run_id,
            artifact_location=artifact_location,
            log_model=False,
        )

    def log_hyperparams(self, params) -> None:
        """Log params; on a resumed run, keep the ones already there (MLflow params are write-once).

        A param whose value changed on resume (e.g. a longer ``total_env_steps`` that extends a finished
        run) keeps its first value; its value now is recorded in the tag ``resumed.<param>`` (tags can be
        overwritten: the latest invocation's value) and listed in a warning. The full resolved config of
        every invocation is in ``config.yaml``.
        """
        if self._run_id is None or not self._resumed:
            return super().log_hyperparams(params)
        from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
        from pytorch_lightning.utilities import rank_zero_warn

        flat = _flatten_dict(_convert_params(params))
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k, v in flat.items() if k in logged and logged[k] != str(v)[:250])
        if changed:
            for key in changed:
                self.experiment.set_tag(self.run_id, f"resumed.{key}", str(flat[key])[:5000])
            rank_zero_warn(f"Resumed MLflow run {self.run_id} keeps its first values of params {changed}; "
                           f"their values in this invocation are in the tags resumed.<param>.")
        new = {k: v for k, v in flat.items() if k not in logged}
        if new:
            super().log_hyperparams(new)

    _resumed = False
    _kind_checked = False

    @property
    def experiment(self):
        client = super().experiment
        if not self._kind_checked and self._experiment_id is not None:
            self._kind_checked = True  # once per logger: one get_experiment, not one per metric call
            mark_model_training(client, self._experiment_id)
        return client

    # -- resilience to a tracking server that goes away ---------------------------------------------
    def log_metrics(self, metrics, step=None) -> None:
        if not self._pending and self._last_failure is None:
            try:
                return super().log_metrics(metrics, step)
            except Exception as exc:  # MlflowException, requests' ConnectionError, ...
                self._went_away(exc)
        self._spool({"kind": "metrics", "step": int(step or 0), "time_ms": int(time.time() * 1000),
                     "metrics": {k: float(v) for k, v in metrics.items() if not isinstance(v, str)}})
        if time.monotonic() - self._last_failure >= self.retry_every_s:
            self.flush_pending()

    def flush_pending(self) -> bool:
        """Send the spooled metrics; ``True`` when nothing is left."""
        from mlflow.entities import Metric

        while self._pending:
            entry = self._pending[0]
            batch = [Metric(key=k, value=v, timestamp=entry["time_ms"], step=entry["step"])
                     for k, v in entry["metrics"].items()]
            try:
                self.experiment.log_batch(run_id=self.run_id, metrics=batch)
            except Exception:
                self._last_failure = time.monotonic()
                return False
            self._pending.pop(0)
        if self._last_failure is not None:
            log.warning("MLflow server is back: %d spooled metric batches sent.", self.spooled)
            self._last_failure = None
            if self._spool_path is not None:
                self._spool_path.unlink(missing_ok=True)
                self._spool_path = None
        return True

    def _went_away(self, exc: BaseException) -> None:
        self._last_failure = time.monotonic()
        log.warning("MLflow server %s did not accept metrics (%s: %s); training goes on, metrics are spooled to "
                    "%s and retried every %.0f s.", self._tracking_uri, type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "", self._spool_file(), self.retry_every_s)

    def _spool_file(self) -> Path:
        if self._spool_path is None:
            self._spool_path = Path.cwd() / f"mlflow-spool-{self.run_id}.jsonl"
            header = {"kind": "run", "tracking_uri": self._tracking_uri, "run_id": self.run_id}
            with open(self._spool_path, "a") as f:
                f.write(json.dumps(header) + "\n")
        return self._spool_path

    def _spool(self, entry: dict) -> None:
        self._pending.append(entry)
        self.spooled += 1
        with open(self._spool_file(), "a") as f:  # on disk at once: a crash loses nothing spooled
            f.write(json.dumps(entry) + "\n")

    def finalize(self, status: str = "success") -> None:
        if self._pending and not self.flush_pending():
            final = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}.get(status, status)
            with open(self._spool_file(), "a") as f:
                f.write(json.dumps({"kind": "status", "status": final}) + "\n")
            message = (f"lightq: MLflow server {self._tracking_uri} is unreachable: {len(self._pending)} metric "
                       f"batches of run {self.run_id} are in {self._spool_path}; upload them when it is back with "
                       f"`lightq sync-mlflow {self._spool_path}`.")
            log.warning(message)
            print(message, flush=True)
            return
        try:
            super().finalize(status)
        except Exception as exc:
            log.warning("Could not mark MLflow run %s as %s (%s).", self.run_id, status, exc)


def mark_model_training(client, experiment_id: str) -> bool:
    """Tag the experiment ``mlflow.experimentKind=custom_model_development`` unless it has a kind already.

    An experiment the user (or MLflow) already gave a kind keeps it; no other tag is touched. Returns
    whether the tag was set. A store that refuses (read-only, server away) is not a reason to stop a run.
    """
    try:
        if EXPERIMENT_KIND_TAG in client.get_experiment(experiment_id).tags:
            return False
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return True
    except Exception as exc:  # noqa: BLE001 - MlflowException or a connection error
        log.warning("Could not tag MLflow experiment %s as model training (%s).", experiment_id, exc)
        return False


def check_sqlite_store(uri: str) -> Path | None:
    """Make sure MLflow can open the SQLite store ``uri``; move a half-created one aside.

    A process killed while MLflow creates (or migrates) a store's tables leaves a file with some tables
    made and alembic's version behind them; every later open re-runs the migrations and fails with
    "table ... already exists" or "duplicate column name". This opens the store the way MLflow does
    (its table creation and migrations, on an engine of its own that is closed afterwards) and, on that
    failure: a store holding no runs is renamed to ``<file>.broken-<UTC time>`` (kept, never deleted)
    and the path returned, so MLflow creates a new one; a store holding runs is left as it is and
    ``BrokenTrackingStore`` says what happened and how to recover. Other URIs, a missing file and
    stores that open are left alone (``None``).
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return None
    path = Path(uri[len(prefix):].split("?", 1)[0])
    if not path.is_file() or path.stat().st_size == 0:
        return None
    import hashlib
    import tempfile

    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    lock = None
    if os.name != "nt":  # ranks or sweep workers opening the same store: one probes, one moves it
        from mlflow.utils.file_utils import ExclusiveFileLock

        digest = hashlib.md5(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()
        lock = ExclusiveFileLock(f"{tempfile.gettempdir()}/lightq-store-check-{digest}")
        lock.__enter__()
    try:
        engine = sqlalchemy.create_engine(uri)
        try:
            if not db_utils._all_tables_exist(engine):
                db_utils._initialize_tables(engine)
            return None
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig) if exc.orig is not None else str(exc).splitlines()[0]
            if "already exists" not in reason and "duplicate column" not in reason:
                raise
        finally:
            engine.dispose()
        return _move_aside_or_explain(path, uri, reason)
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)


def _move_aside_or_explain(path: Path, uri: str, reason: str) -> Path:
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        version = (conn.execute("SELECT version_num FROM alembic_version").fetchone()
                   if "alembic_version" in tables else None)
    conn.close()
    what = (f"MLflow store {path} is half-created: the creation or migration of its tables was interrupted "
            f"(e.g. a process killed while MLflow set it up), so MLflow cannot open it ({reason}; schema "
            f"version {version[0] if version else 'not recorded'}).")
    if runs:
        raise BrokenTrackingStore(
            f"{what} It holds {runs} runs, so lightq leaves it as it is. To go on with a new store, move it "
            f"aside: `mv {path} {path}.broken` (its runs stay readable with sqlite3), or restore a copy taken "
            f"before the interruption; or log elsewhere with MLFLOW_TRACKING_URI.")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    from lightq.callbacks.checkpoint import move_aside

    aside = move_aside(path, f"broken-{stamp}")
    try:  # a cached engine would still write to the renamed file through its open connections
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
    except (ImportError, AttributeError):
        pass
    message = (f"lightq: {what} It held no runs: moved it aside to {aside}; MLflow creates a new store at "
               f"{path}.")
    log.warning(message)
    print(message, flush=True)
    return aside


def mlflow_ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment's runs (or of one run) in its model-training view.

    MLflow 3.17's UI opens in its GenAI view unless the page asks for ``workflowType=machine_learning``
    (it then keeps that choice in the browser); the GenAI view files runs under "Evaluation runs".
    """
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{page}?workflowType=machine_learning"


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///relative.db`` → ``sqlite:////abs/path/relative.db``.

    MLflow caches one store per URI string in a process, so a relative SQLite URI keeps pointing at
    the first working directory's file after a ``chdir``; the absolute path also tells the user where
    the runs are.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str((Path.cwd() / uri[len(prefix):]).resolve())
    return uri


def git_sha(path: str | Path | None = None) -> str:
    """The commit of the code being run (``unknown`` outside a git checkout); ``-dirty`` if modified."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tag_run(logger: MLFlowLogger, tags: dict[str, str]) -> None:
    """Set tags on the logger's run (creating the run if needed)."""
    client, run_id = logger.experiment, logger.run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def mlflow_run_record(trainer) -> dict[str, str] | None:
    """Where the trainer's MLflow run lives: ``{"tracking_uri", "experiment_name", "experiment_id", "run_id"}``.

    Stored in every lightq checkpoint (``checkpoint["lightq"]["mlflow_run"]``) so that resuming and
    ``lightq evaluate`` find the run the checkpoint belongs to; ``None`` without an MLflow logger.
    """
    if trainer is None:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
            return {
                "tracking_uri": str(logger._tracking_uri),
                "experiment_name": str(logger._experiment_name),
                "experiment_id": str(logger.experiment_id),
                "run_id": str(logger.run_id),
            }
    return None


def continue_run_from_checkpoint(ckpt_path: str | Path, loggers) -> str | None:
    """Point lightq's MLflow loggers at the run recorded in a checkpoint (``checkpoint["lightq"]["mlflow_run"]``).

    Must run before the logger creates a run (``LightqCLI.before_fit`` does it). Loggers given an explicit
    ``run_id`` are left alone; if the recorded run is not in the logger's tracking store, a new run is
    started and a warning says so. Returns the run id continued, or ``None``.
    """
    import torch
    from pytorch_lightning.utilities import rank_zero_warn

    state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    record = (state.get("lightq") or {}).get("mlflow_run")
    if not record:
        return None
    continued = None
    for logger in loggers:
        if not isinstance(logger, MLFlowLogger) or logger._run_id is not None:
            continue
        try:
            logger._mlflow_client.get_run(record["run_id"])
        except Exception:  # noqa: BLE001 - MlflowException (not found) or a store error: start a new run
            rank_zero_warn(
                f"The checkpoint's MLflow run {record['run_id']} (tracking URI {record['tracking_uri']}) is not in "
                f"{logger._tracking_uri}; logging the resumed training to a new run. Set MLFLOW_TRACKING_URI "
                "to the original store to continue the same run."
            )
            continue
        logger._run_id = record["run_id"]
        logger._resumed = True
        continued = record["run_id"]
    return continued


def _server_problem(uri: str, attempts: int = 3) -> str | None:
    """``None`` if the MLflow server at ``uri`` answers its health check, else what went wrong."""
    problem = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as response:
                if response.status == 200:
                    return None
                problem = f"health check answered HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        time.sleep(0.5 * (attempt + 1))
    return problem


def sync_spool(path: str | Path) -> int:
    """Upload a spool file written while the tracking server was away; returns the metric batches sent.

    The file is JSON lines (no code): a ``run`` header (tracking URI, run id), ``metrics`` entries, and
    optionally the run's final ``status``. It is deleted once everything is uploaded.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    path = Path(path)
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header = next(e for e in entries if e["kind"] == "run")
    client = MlflowClient(header["tracking_uri"])
    sent = 0
    for entry in entries:
        if entry["kind"] == "metrics":
            client.log_batch(header["run_id"], metrics=[
                Metric(key=k, value=v, timestamp=entry["time_ms"], step=entry["step"])
                for k, v in entry["metrics"].items()])
            sent += 1
        elif entry["kind"] == "status":
            client.set_terminated(header["run_id"], entry["status"])
    path.unlink()
    return sent


def main(argv: list[str]) -> None:
    """``lightq sync-mlflow FILE...``: upload spooled metrics to the run they belong to."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lightq sync-mlflow SPOOL_FILE [SPOOL_FILE ...]")
        return
    for name in argv:
        sent = sync_spool(name)
        print(f"{name}: {sent} metric batches uploaded")
