"""Python's cyclic garbage collector paused while a command imports.

Importing torch, Hydra, MLflow or Optuna creates a few hundred thousand long-lived
objects; each time enough of them pile up the collector walks all of them again, and
finds nothing to free (measured here: three to six full collections of 35-120 ms each in
a `pg.run`, ~0.2 s untracked and ~0.35 s tracked, one of them at the clip's import of
Pillow, after training). A command entry point calls :func:`pause_collection` first;
once its imports are done (training starts, the sweep's loop or the record process's
service begins) :func:`resume_collection` moves every object alive into the collector's
permanent generation and turns it back on, so later collections walk only what was
created since. Reference counting frees objects as always: only garbage in reference
cycles that exists at the moment of freezing is kept (the imports make almost none).
Nothing numerical is touched.
"""

from __future__ import annotations

import gc

_paused = False


def pause_collection() -> None:
    """For the entry point of a command's process, before its imports."""
    global _paused
    _paused = True
    gc.disable()


def resume_collection() -> None:
    """Freeze what the imports made and collect again; a no-op unless paused (a library
    caller's process, pytest's included, keeps its collector as it was)."""
    global _paused
    if not _paused:
        return
    _paused = False
    gc.freeze()
    gc.enable()
