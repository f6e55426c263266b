"""``python -m pg.run``: one tracked training run (``-m``: a sweep).

Hydra composes ``conf/``; the schema in :mod:`pg.core.config` validates it before anything
is created; :mod:`pg.experiment` does the run.  Exit codes: 0 done, 1 the run (or sweep)
failed, 2 invalid configuration or sweep, 3 the tracking store does not answer (nothing
trained), 130 interrupted.  Every error is one line on stderr, never a traceback
(``HYDRA_FULL_ERROR=1`` brings the traceback back for debugging).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

EXIT_FAILED, EXIT_INVALID, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130

# Options that only print (help, the config, completion): no run, no record process.
_PRINT_ONLY = (
    "-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
    "--shell-completion", "--version", "-p", "--package", "--resolve",
)  # fmt: skip


def prestart_record(argv: list[str]) -> None:
    """Start the record process before Hydra and torch load, unless the command line
    says this command records nothing: its import of MLflow (~2 s) then overlaps theirs.

    A config that turns tracking off anyway (an overlay) leaves it unused; it is stopped
    at exit without having touched any store."""
    if any(a in _PRINT_ONLY for a in argv) or "tracking.enabled=false" in argv:
        return
    from pg.record.process import record_process

    server = any(a.startswith(("tracking=server", "tracking.uri=http")) for a in argv)
    server = server or os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http")
    record_process("" if server else "sql")


def _main(cfg: DictConfig) -> float:
    from pg.core.config import ConfigError, to_config
    from pg.record.store import StoreUnavailableError, resolve_store

    try:
        config = to_config(cfg)
        location = resolve_store(config.tracking) if config.tracking.enabled else None
    except ConfigError as exc:
        print(f"pg: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    from pg.experiment import Snapshot, execute, summary

    try:
        if location is not None:
            # Before torch loads: a dead store is reported in seconds, and the record
            # process connects to a live one while this process imports torch and trains.
            from pg.record.remote import remote_tracker

            remote_tracker(config.tracking)
        outcome = execute(config, Snapshot.from_hydra(cfg))
    except StoreUnavailableError as exc:
        print(f"pg: {exc}; nothing was trained", file=sys.stderr)
        sys.exit(EXIT_UNREACHABLE)
    except Exception as exc:
        # Leaving it to Hydra would print the overrides (a password in a URI included)
        # and a traceback; the MLflow run, FAILED, holds the traceback.
        print(explain(exc, sweep=False)[1], file=sys.stderr)
        sys.exit(EXIT_FAILED)
    for line in summary(outcome, config):
        print(f"pg: {line}")
    return outcome.objective


def _hydra_main() -> Any:
    import hydra

    return hydra.main(version_base="1.3", config_path="../conf", config_name="config")(_main)()


def main() -> Any:
    from pg.core.checks import check_group_overrides
    from pg.core.config import ConfigError, register_configs

    # The typed schema must be in Hydra's ConfigStore before Hydra composes.
    register_configs()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return _hydra_main()
    # With HYDRA_FULL_ERROR Hydra re-raises instead of printing its trimmed traceback and
    # exiting 1; the one line is then ours to print, with the right exit code.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sweep = any(a in ("-m", "--multirun") for a in sys.argv[1:])
    try:
        check_group_overrides([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])
    except ConfigError as exc:
        print(f"pg: invalid {'sweep' if sweep else 'configuration'}: {exc}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    try:
        return _hydra_main()
    except KeyboardInterrupt:  # the run, if one started, has ended KILLED
        print("pg: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        code, line = explain(exc, sweep=sweep)
        print(line, file=sys.stderr)
        sys.exit(code)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


_PACKAGE = str(Path(__file__).resolve().parent)


def _raised_in_pg(exc: BaseException) -> bool:
    """Whether the traceback went through pg's task or sweeper (not only this module)."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_main" and code.co_filename == __file__:
            return True
        if code.co_filename.startswith(_PACKAGE) and code.co_filename != __file__:
            return True
        if "pg_sweeper" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def explain(exc: BaseException, *, sweep: bool) -> tuple[int, str]:
    """The exit code and one line for an exception that reached the command.

    An error raised before pg's own code ran comes from parsing or composing the command
    line (grammar, unknown key, wrong type): bad input, exit 2.  One raised inside pg's
    code is a run or sweep that failed (its MLflow run holds the traceback): exit 1.
    """
    from hydra.errors import OverrideParseException

    from pg.record.store import redact

    text = ": ".join(m.rstrip(".") for m in _messages(exc)) or type(exc).__name__
    if isinstance(exc, OverrideParseException):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or ["cannot be parsed"]
        detail = lines[-1] if lines[0].startswith("Error parsing") else lines[0]
        text = f"{exc.override!r} is not valid override grammar: {detail}"
    if _raised_in_pg(exc):
        what = "sweep" if sweep else "run"
        return EXIT_FAILED, redact(f"pg: {what} failed: {type(exc).__name__}: {text}")
    kind = "invalid sweep" if sweep else "invalid configuration"
    return EXIT_INVALID, redact(f"pg: {kind}: {text}")


def _messages(exc: BaseException) -> list[str]:
    """First lines of an exception and its causes, without repeats, on one line."""
    out: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 2:
        lines = [ln.strip() for ln in str(seen).strip().splitlines() if ln.strip()]
        # OmegaConf chains a copy of its message template ('$VALUE') as the cause.
        if lines and "$VALUE" not in lines[0] and lines[0] not in out and lines[0] != "None":
            out.append(lines[0])
        key = getattr(seen, "full_key", None)
        if key and str(key) not in " ".join(out):
            out.append(f"key {key}")
        seen = seen.__cause__ or seen.__context__
    return out


if __name__ == "__main__":
    from pg.core.collection import pause_collection

    pause_collection()  # until training or the sweep's loop starts
    from pg.cli import exit_fast

    prestart_record(sys.argv[1:])
    exit_fast(main)
