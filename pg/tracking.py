"""The only module that writes to MLflow.

A run's record (what sweeps, reproduction and analysis read back):

- params: the resolved config flattened to dotted keys (``algo.lr``), secrets redacted;
- metrics: names from :mod:`pg.metrics`, step = environment steps, buffered and written
  with ``log_batch`` from a background thread (a per-call ``log_metric`` costs ~5 ms);
- tags: ``pg.*`` (version, git commit/dirty, command, env, algo, seed, reproduce command,
  error) plus MLflow's own source tags, and the reproduce command in the description;
- artifacts: ``config/`` (snapshot), ``environment/`` (package lock, system facts),
  ``model/`` (state dict + spec), ``plots/`` (learning curve), ``error/`` on failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pg.config import TrackingConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow's limits (mlflow.utils.validation); values are truncated rather than rejected.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_TAG_VALUE = 8000

SNAPSHOT_DIR = "config"
SNAPSHOT_CONFIG = "config/config.yaml"
SNAPSHOT_OVERRIDES = "config/overrides.yaml"
SNAPSHOT_HYDRA = "config/hydra.yaml"
LOCK_FILE = "environment/requirements.txt"
SYSTEM_FILE = "environment/system.json"
MODEL_DIR = "model"
CURVE_FILE = "plots/learning_curve.png"

TAG_PREFIX = "pg."
TAG_REPRODUCE = "pg.reproduce"
TAG_ERROR = "pg.error"
TAG_SOURCE_RUN = "pg.source_run"

_URI_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?=@)"
)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|api_key)=)[^&\s]+", re.I
)


def redact(text: str) -> str:
    """Hide passwords in URIs (``user:***@host``) and secret query parameters."""
    text = _URI_PASSWORD.sub(r"\g<head>***", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)


def project_home() -> Path:
    """Where the embedded store lives: ``$PG_HOME``, else the project checkout."""
    env = os.environ.get("PG_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StoreLocation:
    uri: str
    artifact_root: str | None  # None: leave it to the server

    @property
    def sqlite_path(self) -> Path | None:
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri[len("sqlite:///") :])
        return None

    @property
    def display(self) -> str:
        return redact(self.uri)


def resolve_store(cfg: TrackingConfig) -> StoreLocation:
    """Decide the tracking URI and artifact root for ``cfg``.

    With no URI configured, MLflow's own ``MLFLOW_TRACKING_URI`` wins, then the project's
    embedded store.  Artifacts of a SQLite store sit beside the database file, never in
    whatever directory the command happened to run from.
    """
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        uri = f"sqlite:///{project_home() / 'mlruns' / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :]).expanduser().resolve()
        uri = f"sqlite:///{db}"
        root = cfg.artifact_root or str(db.parent / "artifacts")
        return StoreLocation(uri, Path(root).expanduser().resolve().as_uri())
    return StoreLocation(uri, cfg.artifact_root)


class StoreUnavailableError(RuntimeError):
    """A database (tracking store or study storage) does not answer."""


def default_location() -> StoreLocation:
    """The store ``pg.reproduce`` falls back to when given no URI."""
    from pg.config import TrackingConfig

    return resolve_store(TrackingConfig())


class TrackingUnavailableError(StoreUnavailableError):
    """The tracking store cannot be reached; nothing was trained."""


# URI schemes MLflow and Optuna hand to SQLAlchemy; these are checked by connecting.
DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql")


def is_database_url(url: str) -> bool:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    return scheme in DATABASE_SCHEMES


def check_database_url(url: str, timeout: float = 10.0) -> None:
    """Connect once to a SQLAlchemy database URL, giving up after ``timeout`` seconds.

    Both the tracking store (``postgresql://...`` used directly) and an Optuna study
    storage go through here, so a wrong host or a stopped server is one short message
    instead of a driver's minutes-long connect loop.  SQLite URLs pass unchecked: the
    file is created on first use.  The password never appears in the message.
    """
    if not is_database_url(url):
        return
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            connect_args: dict[str, Any] = {}
            if url.startswith(("postgresql", "postgres")):
                # libpq counts whole seconds and treats values below 2 as 2.
                connect_args["connect_timeout"] = max(2, int(timeout))
            elif url.startswith("mysql"):
                connect_args["connect_timeout"] = max(1, int(timeout))
            engine = sqlalchemy.create_engine(
                url.replace("postgres://", "postgresql://", 1),
                poolclass=NullPool,
                connect_args=connect_args,
            )
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
            finally:
                engine.dispose()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    # A thread bounds the wait even where the driver's own timeout does not apply
    # (name resolution, a server that accepts but never answers).
    worker = threading.Thread(target=attempt, name="pg-db-check", daemon=True)
    worker.start()
    worker.join(timeout)
    shown = redact(url)
    if not outcome:
        raise StoreUnavailableError(f"database {shown} did not answer within {timeout:g} s")
    error = outcome[0]
    if error is not None:
        detail = redact(str(error).strip().splitlines()[0] if str(error).strip() else repr(error))
        raise StoreUnavailableError(f"database {shown} is not reachable: {detail}") from None


def check_reachable(location: StoreLocation, timeout: float) -> None:
    """Fail fast (within ``timeout`` seconds) when the tracking server or database is down."""
    if is_database_url(location.uri):
        try:
            check_database_url(location.uri, timeout)
        except StoreUnavailableError as exc:
            raise TrackingUnavailableError(f"tracking store: {exc}") from None
        return
    if location.uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(_health_request(location.uri), timeout=timeout) as resp:
                if resp.status != 200:
                    raise TrackingUnavailableError(f"{location.display} answered {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingUnavailableError(
                f"tracking server {location.display} is not reachable: {exc}"
            ) from None


def _health_request(uri: str) -> Any:
    """``GET /health`` with the credentials MLflow itself would send.

    urllib rejects ``user:password@`` in a URL, while MLflow (through requests) turns it
    into basic authentication; ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``TOKEN`` from
    the environment are honoured the same way, so a server behind a login checks out too.
    """
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri.rstrip("/") + "/health")
    user = urllib.parse.unquote(parts.username or "") or os.environ.get(
        "MLFLOW_TRACKING_USERNAME", ""
    )
    password = urllib.parse.unquote(parts.password or "") or os.environ.get(
        "MLFLOW_TRACKING_PASSWORD", ""
    )
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user or password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    return request


# MLflow's own HTTP retries (7 tries, back-off factor 2, 120 s per request) make one failed
# call block for minutes.  TrackedRun already keeps failed batches and retries them with
# its own back-off, so each HTTP call should fail fast and leave the waiting to it.
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def apply_http_client_defaults() -> None:
    """Set :data:`HTTP_CLIENT_DEFAULTS` where the user has not set the variable."""
    for name, value in HTTP_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine, held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to string values, the form MLflow params take."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def git_state(cwd: Path) -> tuple[str | None, bool | None]:
    """Commit and dirty flag of the checkout holding the code, when there is one."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_lock() -> str:
    """``pip freeze``-style list of installed distributions, read without running pip."""
    from importlib.metadata import distributions

    seen: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(seen[k] for k in sorted(seen)) + "\n"


def system_facts(torch_threads: int) -> dict[str, Any]:
    """Facts about the machine that can change a run's numbers.

    ``torch_threads`` is the count the training sets, passed in because the process may
    not have set it yet when the facts are recorded.
    """
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch_threads,
    }


def command_line() -> str:
    return redact(" ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]))


class Tracker:
    """A connection to one MLflow store and experiment."""

    def __init__(self, cfg: TrackingConfig) -> None:
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.location = resolve_store(cfg)
        check_reachable(self.location, cfg.check_timeout)
        apply_http_client_defaults()
        if self.location.display != self.location.uri:
            # MLflow prints "View run at <tracking URI>/..." links, password included.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        db = self.location.sqlite_path
        lock = file_lock(db.with_suffix(".lock")) if db else contextlib.nullcontext()
        # Creating the client creates the tables of a new SQLite file; two processes doing
        # it at once fail with "table already exists", hence one process at a time.
        with lock:
            self.client: MlflowClient = MlflowClient(tracking_uri=self.location.uri)
            self.experiment_id = self._get_or_create_experiment()

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.cfg.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        try:
            return str(
                self.client.create_experiment(name, artifact_location=self.location.artifact_root)
            )
        except MlflowException:
            # Another machine created it between our look-up and create.
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def start_run(
        self,
        run_name: str | None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> TrackedRun:
        all_tags = dict(base_tags())
        all_tags.update(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={k: _clip(v, MAX_TAG_VALUE) for k, v in all_tags.items()},
        )
        return TrackedRun(self.client, run.info.run_id, self.location)


def base_tags() -> dict[str, str]:
    from pg import __version__

    commit, dirty = git_state(Path(__file__).resolve().parent)
    tags = {
        "pg.version": __version__,
        "pg.command": command_line(),
        "pg.python": platform.python_version(),
        "mlflow.source.name": "pg.run",
        "mlflow.source.type": "LOCAL",
    }
    if commit:
        tags["pg.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
        tags["pg.git_dirty"] = str(dirty).lower()
    return tags


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


class TrackedRun:
    """One MLflow run: a metric sink with a background writer, plus artifact helpers.

    Used as a context manager it ends the run FINISHED, KILLED on Ctrl-C (or a
    :class:`Stopped` exception) and FAILED with the error on any other exception.
    """

    flush_interval = 2.0  # seconds between background writes
    retry_limit = 120.0  # seconds a final flush keeps retrying a failing store

    def __init__(self, client: MlflowClient, run_id: str, location: StoreLocation) -> None:
        self.client = client
        self.run_id = run_id
        self.location = location
        self._pending: list[tuple[str, float, int, int]] = []
        self._stamp_step: int | None = None
        self._last_stamp = 0
        self._stamps: dict[tuple[str, float | None], int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="mlflow-writer", daemon=True)
        self._writer.start()
        self.status: str | None = None

    # -- metrics ---------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # Plain tuples here; MLflow entities are built by the writer, off the hot path.
        with self._lock:
            # Never earlier than the last stamp: MLflow orders a history by timestamp
            # first, so a stamp bumped by _distinct_stamp must not overtake later steps.
            now = max(int(time.time() * 1000), self._last_stamp)
            now = self._distinct_stamp(metrics, now, step)
            self._last_stamp = now
            self._pending.extend((k, float(v), now, step) for k, v in metrics.items())
            full = len(self._pending) >= 10 * MAX_METRICS_PER_BATCH
        if full:
            self._wake.set()

    def _distinct_stamp(self, metrics: Mapping[str, float], now: int, step: int) -> int:
        """A timestamp that no equal (key, value) at this step already carries.

        MLflow keys a metric row by (key, timestamp, step, value) and silently drops
        repeats, so two episodes ending at the same step with the same return within one
        millisecond would be stored once (or twice, if the clock ticked in between):
        lost data, and a history that differs between two identical runs.
        """
        if step != self._stamp_step:
            self._stamp_step, self._stamps = step, {}
        keys = [(k, v if v == v else None) for k, v in metrics.items()]  # NaN != NaN
        for key in keys:
            last = self._stamps.get(key)
            if last is not None and last >= now:
                now = last + 1
        for key in keys:
            self._stamps[key] = now
        return now

    def _take(self) -> list[tuple[str, float, int, int]]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _put_back(self, batch: list[tuple[str, float, int, int]]) -> None:
        with self._lock:
            self._pending = batch + self._pending

    def _write(self) -> bool:
        """Write what is pending; on failure keep it for the next attempt."""
        from mlflow.entities import Metric

        batch = self._take()
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            chunk = [Metric(k, v, ts, s) for k, v, ts, s in batch[i : i + MAX_METRICS_PER_BATCH]]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                self._put_back(batch[i:])
                self.last_error = exc
                return False
        return True

    def _write_loop(self) -> None:
        backoff = self.flush_interval
        while not self._closing:
            self._wake.wait(backoff)
            self._wake.clear()
            if self._closing:
                break
            backoff = self.flush_interval if self._write() else min(backoff * 2, 10.0)

    def flush(self) -> None:
        """Write every pending metric, retrying with back-off while the store is down."""

        def write_all() -> None:
            if not self._write():
                raise RuntimeError(
                    f"could not write metrics to {self.location.display}: {self.last_error}"
                )

        self._retry(write_all)

    # -- params, tags, artifacts ----------------------------------------------
    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [
            Param(_clip(k, MAX_KEY), _clip(redact(v), MAX_PARAM_VALUE)) for k, v in params.items()
        ]
        for i in range(0, len(items), MAX_PER_BATCH):
            self._retry(
                lambda chunk=items[i : i + MAX_PER_BATCH]: self.client.log_batch(
                    self.run_id, params=chunk
                )
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _clip(redact(v), MAX_TAG_VALUE)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PER_BATCH):
            self._retry(
                lambda chunk=items[i : i + MAX_PER_BATCH]: self.client.log_batch(
                    self.run_id, tags=chunk
                )
            )

    def log_files(self, files: Mapping[str, str | bytes]) -> None:
        """Upload ``{artifact path: content}`` in one call (one round trip on a server)."""
        with tempfile.TemporaryDirectory(prefix="pg-artifacts-") as tmp:
            root = Path(tmp)
            for rel, content in files.items():
                target = root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content)
            self._retry(lambda: self.client.log_artifacts(self.run_id, str(root)))

    def log_dir(self, local_dir: Path, artifact_path: str) -> None:
        self._retry(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path))

    def _retry(self, call: Any) -> None:
        """Call until it succeeds, backing off up to 10 s, for at most ``retry_limit`` s."""
        deadline = time.monotonic() + self.retry_limit
        delay = 0.5
        while True:
            try:
                call()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- lifecycle -------------------------------------------------------------
    def end(self, status: str) -> None:
        self._closing = True
        self._wake.set()
        self._writer.join()
        try:
            self.flush()
        finally:
            self._retry(lambda: self.client.set_terminated(self.run_id, status))
            self.status = status

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("FINISHED")
            return
        if isinstance(exc, Stopped):
            self.set_tags({"pg.stopped": exc.reason})
            self.end(exc.status)
            return
        if isinstance(exc, KeyboardInterrupt | GeneratorExit):
            reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "abandoned"
            self.set_tags({"pg.stopped": reason})
            self.end("KILLED")
            return
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            self.set_tags({TAG_ERROR: message})
            self.log_files(
                {"error/traceback.txt": "".join(traceback.format_exception(exc_type, exc, tb))}
            )
        self.end("FAILED")


class Stopped(Exception):  # noqa: N818 - a stop request, not an error
    """Raised to end training early on purpose (e.g. a pruned trial).

    The run ends with ``status`` instead of FAILED and records ``reason``.
    """

    def __init__(self, reason: str, status: str = "KILLED") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def system_json(torch_threads: int) -> str:
    return json.dumps(system_facts(torch_threads), indent=2)
