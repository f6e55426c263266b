"""The garbage collector paused during a command's imports (pg.core.collection)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FAST, Store, run_module, run_python

# Loaded by every Python process of the command (PYTHONPATH): logs each full collection
# with the number of objects it had to walk, and the process's collector state at exit.
HOOK = """
import atexit, gc, os, sys
_log = os.path.join(os.environ["PG_GC_LOG"], str(os.getpid()))
def _note(line):
    with open(_log, "a") as f:
        f.write(line + "\\n")
_note("argv " + " ".join(sys.orig_argv))
def _full(phase, info):
    if phase == "start" and info["generation"] == 2:
        _note(f"full {len(gc.get_objects())}")
gc.callbacks.append(_full)
atexit.register(lambda: _note(f"exit enabled={gc.isenabled()} frozen={gc.get_freeze_count()}"))
"""


def test_pause_then_resume_freezes_what_the_imports_made(store: Store) -> None:
    script = (
        "import gc\n"
        "from pg.core.collection import pause_collection, resume_collection\n"
        "resume_collection()\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0, 'not paused: untouched'\n"
        "pause_collection()\n"
        "assert not gc.isenabled()\n"
        "import torch\n"
        "resume_collection()\n"
        "assert gc.isenabled() and gc.get_freeze_count() > 100_000, gc.get_freeze_count()\n"
        "frozen = gc.get_freeze_count()\n"
        "resume_collection()\n"
        "assert gc.get_freeze_count() == frozen, 'once per pause'\n"
    )
    proc = run_python(["-c", script], store)
    assert proc.returncode == 0, proc.stderr


def test_a_tracked_run_never_walks_its_imports(store: Store, tmp_path: Path) -> None:
    """Before the pause, a tracked `pg.run` made three full collections (49 k to 163 k
    objects walked; ~0.35 s with its record process's five): now none walks the imports."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = run_module(
        "pg.run", [*FAST, "train.video=true"], store, PYTHONPATH=str(hook), PG_GC_LOG=str(logs)
    )
    assert proc.returncode == 0, proc.stderr
    commands = {}
    for log in logs.iterdir():
        lines = log.read_text().splitlines()
        commands[lines[0].split(" -m ", 1)[1].split()[0]] = lines
    assert set(commands) == {"pg.run", "pg.record.service"}, list(commands)
    # Before: the run walked 49 k, 108 k and 163 k objects, its record process 54 k to 273 k
    # five times. Now the run walks none of its imports, the record process only what its
    # later imports (the model's, in idle time) made.
    limits = {"pg.run": 20_000, "pg.record.service": 100_000}
    for module, lines in commands.items():
        walked = [int(line.split()[1]) for line in lines if line.startswith("full ")]
        assert all(n < limits[module] for n in walked), (module, walked)
    run = commands["pg.run"]
    assert run[-1].startswith("exit enabled=True frozen="), run
    assert int(run[-1].rsplit("=", 1)[1]) > 100_000, run
