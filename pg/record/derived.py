"""Work a record needs and the training does not wait for, done by the record process.

A training process that computes something only to write it (a sweep's trials table,
history and importances: ~4 s of pandas, matplotlib and scikit-learn imports the first
time) names a function of pg instead, and the record process calls it with the run when
the message's turn comes, on the other core, while the sweep goes on.  The same function
names what to import ahead of time (:func:`resolve` of a warm-up), so even that turn is
short.  Only functions of pg are called: the names come from pg's own processes over a
private socket, but a typo should fail loudly rather than import anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def resolve(name: str) -> Callable[..., Any]:
    """The function ``pg.module:function`` names."""
    module, _, attr = name.partition(":")
    if not module.startswith("pg.") or not attr.isidentifier():
        raise ValueError(f"not a function of pg: {name!r}")
    found: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return found


# What every record process imports ahead of time (pg.record.service queues them once
# its store is open; each runs when no message waits).
def warm_plots() -> None:
    """Pillow's import and font, while the training runs rather than at its end."""
    from pg.curve import Curve, learning_curve_png

    learning_curve_png(Curve([1, 2], [1.0, 2.0], [2], [2.0]), "warm-up", 1.0)


def warm_models() -> None:
    """MLflow's model code and the package list, ready before the first model is logged."""
    from pg.record.models import warm_up
    from pg.record.provenance import package_lock

    package_lock()
    warm_up()
