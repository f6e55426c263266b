"""Where a store is, whether it answers, and what may be shown of its address.

One rule for every command: an explicit URI, else ``MLFLOW_TRACKING_URI``, else the
embedded SQLite store at ``$PG_HOME/mlruns/mlflow.db`` with artifacts beside it; a sweep's
study storage defaults to ``optuna.db`` in the same folder.  Passwords never leave this
module unredacted in anything meant for people.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.record.home import project_home

if TYPE_CHECKING:
    from pg.core.config import ConfigError, TrackingConfig

SQLITE_PREFIX = "sqlite:///"

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


def warn(message: str) -> None:
    """Something went wrong that the work goes on without: one redacted console line."""
    print(f"pg: warning: {redact(message)}", file=sys.stderr, flush=True)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (the only place such a URI is parsed)."""
    if uri.startswith(SQLITE_PREFIX):
        return Path(uri[len(SQLITE_PREFIX) :])
    return None


@dataclass(frozen=True)
class StoreLocation:
    uri: str
    artifact_root: str | None  # None: leave it to the server

    @property
    def sqlite_path(self) -> Path | None:
        return sqlite_path(self.uri)

    @property
    def display(self) -> str:
        return redact(self.uri)


TRACKING_FORMS = (
    "null (the embedded store), sqlite:///PATH/mlflow.db, http(s)://HOST:PORT "
    "(a tracking server) or postgresql://USER@HOST:PORT/DB (also mysql://, mssql://)"
)
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)://")
# Where MLflow can put artifacts besides a local folder.
ARTIFACT_SCHEMES = (
    "file", "s3", "gs", "wasbs", "hdfs", "viewfs", "sftp", "ftp", "http", "https",
    "mlflow-artifacts", "dbfs", "runs", "models",
)  # fmt: skip


def tracking_uri_problem(uri: str) -> str | None:
    """Why MLflow cannot use ``uri`` as a tracking URI, or ``None`` when it can.

    Checked on the text alone, before anything connects: MLflow itself only fails when a
    run is being created, with an exception that names no setting.
    """
    match = _SCHEME.match(uri)
    if match is None:
        if re.fullmatch(r"[\w.\-]+:\d+/?", uri):
            return f"a host:port needs a scheme: http://{uri.rstrip('/')}"
        if uri.startswith("file:"):
            return "file: URIs need three slashes: file:///PATH"
        if not uri.strip():
            return "the URI is empty"
        return _file_store(uri)
    scheme = match.group("scheme").lower()
    rest = uri[match.end() :]
    base = scheme.split("+", 1)[0]
    if scheme == "sqlite":
        if not uri.startswith(SQLITE_PREFIX) or not uri[len(SQLITE_PREFIX) :].strip():
            return "a SQLite store is sqlite:///PATH (three slashes, then the file)"
        if Path(uri[len(SQLITE_PREFIX) :]).expanduser().is_dir():
            return "sqlite:/// needs the database file, not a folder"
        return None
    if scheme == "file":
        return _file_store(rest)
    if scheme in ("http", "https") or base in DATABASE_SCHEMES:
        import urllib.parse

        parts = urllib.parse.urlsplit(uri)
        try:
            parts.port  # noqa: B018 - raises on a port that is no number in range
        except ValueError:
            return "the port must be a number in 1-65535"
        if scheme in ("http", "https") and not parts.hostname:
            return f"{scheme}:// needs a host: {scheme}://HOST:PORT"
        return None
    return f"the scheme {scheme}:// is not supported"


def study_storage_problem(url: str) -> str | None:
    """Why Optuna cannot keep a study at ``url`` (a SQLAlchemy database URL), or ``None``."""
    match = _SCHEME.match(url)
    if match is not None and match.group("scheme").lower() in ("http", "https"):
        return "a study needs a database, not a tracking server"
    if match is None or match.group("scheme").lower() == "file":
        if re.fullmatch(r"[\w.\-]+:\d+/?", url):
            return "a host:port is no database URL"
        return "a study needs a database URL, not a folder or file path"
    return tracking_uri_problem(url)


def _file_store(path: str) -> str | None:
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() == "true":
        return None
    return "a folder is MLflow's old file store (./mlruns), which MLflow refuses"


def artifact_root_problem(root: str) -> str | None:
    """Why ``root`` cannot hold artifacts: a folder or a URI MLflow knows, not empty."""
    if not root.strip():
        return "an empty path; use null for the folder beside the store"
    match = _SCHEME.match(root)
    if match is not None and match.group("scheme").lower() not in ARTIFACT_SCHEMES:
        return f"the scheme {match.group('scheme')}:// is not supported"
    return None


def _invalid(key: str, value: str, problem: str, allowed: str) -> ConfigError:
    from pg.core.config import ConfigError

    return ConfigError(f"{key}={redact(value)!r} is not allowed: {problem}; use {allowed}")


def resolve_store(cfg: TrackingConfig) -> StoreLocation:
    """Decide the tracking URI and artifact root for ``cfg``, or raise ``ConfigError``.

    With no URI configured, MLflow's own ``MLFLOW_TRACKING_URI`` wins, then the project's
    embedded store.  Artifacts of a SQLite store sit beside the database file, never in
    whatever directory the command happened to run from.  A URI MLflow cannot use is
    refused here, naming the setting it came from and the forms that work.
    """
    key, uri = "tracking.uri", cfg.uri
    if uri is None:
        # An exported but empty variable means "not set", as it does for MLflow.
        key, uri = (
            "MLFLOW_TRACKING_URI (environment)",
            os.environ.get("MLFLOW_TRACKING_URI") or None,
        )
    if uri is not None:
        problem = tracking_uri_problem(uri)
        if problem is not None:
            raise _invalid(key, uri, problem, TRACKING_FORMS)
    root = cfg.artifact_root
    if root is not None and (problem := artifact_root_problem(root)) is not None:
        raise _invalid("tracking.artifact_root", root, problem, "null, a folder or file:///PATH")
    if not uri:
        uri = f"{SQLITE_PREFIX}{project_home() / 'mlruns' / 'mlflow.db'}"
    db = sqlite_path(uri)
    if db is not None:
        db = db.expanduser().resolve()
        if root is not None and _SCHEME.match(root):
            return StoreLocation(f"{SQLITE_PREFIX}{db}", root)
        folder = Path(root) if root is not None else db.parent / "artifacts"
        return StoreLocation(f"{SQLITE_PREFIX}{db}", folder.expanduser().resolve().as_uri())
    return StoreLocation(uri, root)


def location_for(uri: str | None) -> StoreLocation:
    """The store a command reads when given ``uri`` (``None``: the default store)."""
    from pg.core.config import TrackingConfig

    return resolve_store(TrackingConfig(uri=uri))


def default_location() -> StoreLocation:
    """The store ``pg.reproduce`` falls back to when given no URI."""
    return location_for(None)


def default_study_storage(tracking_uri: str) -> str:
    """A sweep's study storage when none is given: ``optuna.db`` beside the SQLite store
    (or in ``$PG_HOME/mlruns`` when tracking goes to a server)."""
    db = sqlite_path(tracking_uri)
    folder = db.parent if db is not None else project_home() / "mlruns"
    return f"{SQLITE_PREFIX}{folder / 'optuna.db'}"


class StoreUnavailableError(RuntimeError):
    """A database (tracking store or study storage) does not answer."""


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
