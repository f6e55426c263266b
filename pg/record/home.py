"""Where the embedded store lives when no URI names one: ``$PG_HOME``, else the checkout."""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # pg/record/home.py -> the checkout


def project_home() -> Path:
    """Where the embedded store lives: ``$PG_HOME``, else the project checkout."""
    env = os.environ.get("PG_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return checkout_home(CHECKOUT)


def checkout_home(checkout: Path) -> Path:
    """``checkout``, or ``checkout/pg`` for a checkout whose only store is there.

    Versions of pg from the run-record layer to this fix put the embedded store one
    level too deep, in ``pg/mlruns``.  Such a store keeps being used, not moved: its runs'
    artifact locations are absolute paths into it.
    """
    misplaced = checkout / "pg"
    if (
        not (checkout / "mlruns" / "mlflow.db").exists()
        and (misplaced / "mlruns" / "mlflow.db").exists()
    ):
        return misplaced
    return checkout
