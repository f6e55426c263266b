"""Provenance: what a run was made with (code, packages, machine, command line)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pg.record import names
from pg.record.store import redact


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


@cache
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


@cache
def package_lock() -> str:
    """``pip freeze``-style list of installed distributions, read without running pip.

    Cached in the process (a sweep worker would otherwise read every distribution's
    metadata once per trial) and on disk, keyed by what is installed: reading ~300
    distributions' metadata costs ~0.3 s of every tracked command's record process."""
    fingerprint = _installed_fingerprint()
    cached = _lock_cache_dir() / f"packages-{fingerprint}.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return cached.read_text(encoding="utf-8")
    lock = _read_package_lock()
    with contextlib.suppress(OSError):  # no cache where it cannot be written
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        partial.write_text(lock, encoding="utf-8")
        partial.replace(cached)  # atomic: a concurrent reader sees all of it or nothing
        _forget_old_locks(cached.parent)
    return lock


KEPT_LOCKS = 16  # cached package lists kept (one per environment and install state)


def _forget_old_locks(folder: Path) -> None:
    """Only the newest :data:`KEPT_LOCKS` lists stay: each install or environment adds one."""
    files = sorted(folder.glob("packages-*.txt"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[KEPT_LOCKS:]:
        with contextlib.suppress(OSError):
            old.unlink()


def _read_package_lock() -> str:
    from importlib.metadata import distributions

    seen: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(seen[k] for k in sorted(seen)) + "\n"


def _installed_fingerprint() -> str:
    """What changes whenever a distribution is installed, removed or reinstalled: each
    folder of the import path that holds distributions, their entries and modification
    times.  Folders without any (the working directory of a run in a scratch folder) do
    not count, or every new working directory would miss the cache and add a file."""
    import hashlib

    digest = hashlib.sha256(sys.executable.encode())
    for entry in sys.path:
        folder = entry or os.getcwd()
        try:
            with os.scandir(folder) as found:
                dists = sorted(
                    (e.name, e.stat().st_mtime_ns)
                    for e in found
                    if e.name.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))
                )
        except OSError:
            continue
        if dists:
            digest.update(f"{folder}\0{dists!r}\0".encode())
    return digest.hexdigest()[:20]


def _lock_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pg"


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
        "cpu": cpu_model(),
        # The vector instructions PyTorch's CPU kernels were picked for: runs on AVX2 and
        # AVX-512 machines can differ in the last bits (pg.reproduce: EQUIVALENT).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch_threads,
    }


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; else what platform knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


_command: str | None = None


def set_command(line: str) -> None:
    """Record ``line`` as this process's command: a sweep worker (a Ray task's process,
    say) runs the user's sweep, not the command that started its process."""
    global _command
    _command = line


def command_line() -> str:
    """The command as typed (``python -m pg.run -m …``), password redacted.

    ``sys.orig_argv`` keeps ``-m pg.run`` where ``sys.argv`` has the path of the module's
    file; the interpreter is shown by its name only.
    """
    if _command is not None:
        return _command
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    return redact(" ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]]))


def base_tags() -> dict[str, str]:
    """Tags every run carries: what made it, so it can be found and re-made."""
    from pg import __version__

    commit, dirty = git_state(Path(__file__).resolve().parent)
    tags = {
        names.VERSION: __version__,
        names.COMMAND: command_line(),
        names.PYTHON: platform.python_version(),
        names.SOURCE_NAME: "pg.run",
        names.SOURCE_TYPE: "LOCAL",
    }
    if commit:
        tags[names.GIT_COMMIT] = commit
        tags[names.SOURCE_GIT_COMMIT] = commit
        tags[names.GIT_DIRTY] = str(dirty).lower()
    return tags


def system_json(torch_threads: int) -> str:
    return json.dumps(system_facts(torch_threads), indent=2)
