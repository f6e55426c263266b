"""``python -m pg.ui``: the MLflow UI on the project's own store.

Runs ``mlflow ui`` against the embedded store (``$PG_HOME/mlruns/mlflow.db``, or
``MLFLOW_TRACKING_URI``) rather than whatever ``mlflow.db`` sits in the current directory,
with one worker and background jobs off: it answers in ~6 s instead of ~24 s and starts 3
processes instead of 15.  It listens on 127.0.0.1 only unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from pg.cli import Parser
from pg.core.config import ConfigError, TrackingConfig
from pg.record.names import UI_TRAINING_VIEW
from pg.record.store import redact, resolve_store

LOOPBACK = ("127.", "localhost", "::1")


def ui_command(host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line; the store URI goes through :func:`ui_environment`."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ui_environment(uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # Through the environment rather than argv, so a password in the URI stays out of `ps`.
    env["MLFLOW_BACKEND_STORE_URI"] = uri
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m pg.ui", description="Open the MLflow UI on pg's tracking store."
    )
    parser.add_argument("--port", type=_port, default=5000, help="port to listen on (5000)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (127.0.0.1); others need --allow-remote",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="really listen on a non-loopback --host (anyone reaching it can edit runs)",
    )
    parser.add_argument(
        "--uri", default=None, help="store URI instead of the embedded store (sqlite:///…)"
    )
    return parser.parse_args(argv)


def _port(text: str) -> int:
    """argparse type: a TCP port (argparse turns the ValueError into one line, exit 2)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a number in 1-65535")
    return int(text)


def refuse(message: str) -> NoReturn:
    print(f"pg.ui: {message}", file=sys.stderr)
    sys.exit(EXIT_INVALID)


EXIT_INVALID = 2


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.host.strip() or not args.host.isprintable() or " " in args.host:
        refuse(f"--host {args.host!r} is not an address: e.g. 127.0.0.1")
    if not args.host.startswith(LOOPBACK) and not args.allow_remote:
        refuse(f"refusing to listen on {args.host} without --allow-remote")
    if args.uri and args.uri.startswith(("http://", "https://")):
        refuse(f"{redact(args.uri)} is a tracking server: open it in a browser instead")
    try:
        location = resolve_store(TrackingConfig(uri=args.uri))
    except ConfigError as exc:
        refuse(str(exc).replace("tracking.uri=", "--uri ", 1))
    if location.sqlite_path is not None:
        location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"pg.ui: store {location.display}", flush=True)
    print(
        f"pg.ui: open http://{shown}:{args.port}/#/experiments{UI_TRAINING_VIEW} "
        "(ready in a few seconds; Ctrl-C stops)",
        flush=True,
    )
    command = ui_command(args.host, args.port)
    env = ui_environment(location.uri)
    cwd = location.sqlite_path.parent if location.sqlite_path is not None else Path.cwd()
    os.chdir(cwd)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
