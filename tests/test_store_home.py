"""Where the embedded store lives without ``PG_HOME``: ``mlruns/`` in the checkout, as the
README says, and a store that earlier versions put in ``pg/mlruns`` keeps being found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def default_store(checkout: Path) -> str:
    """The default store's URI as a pg imported from ``checkout`` resolves it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PG_HOME", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(checkout)
    done = subprocess.run(
        [sys.executable, "-c", "from pg.record.store import default_location as d; "
         "import pg; print(pg.__file__); print(d().uri)"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    imported, uri = done.stdout.split()
    assert imported == str(checkout / "pg" / "__init__.py")  # this copy, not the checkout's
    return uri


def test_default_store_is_in_the_checkout_and_a_misplaced_one_is_kept(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "pg", checkout / "pg", ignore=shutil.ignore_patterns("mlruns", "__pycache__")
    )
    assert default_store(checkout) == f"sqlite:///{checkout}/mlruns/mlflow.db"

    # Only a store where earlier versions put it: that one, with its absolute artifact paths.
    (checkout / "pg" / "mlruns").mkdir()
    (checkout / "pg" / "mlruns" / "mlflow.db").touch()
    assert default_store(checkout) == f"sqlite:///{checkout}/pg/mlruns/mlflow.db"

    # Both: the checkout's own wins.
    (checkout / "mlruns").mkdir()
    (checkout / "mlruns" / "mlflow.db").touch()
    assert default_store(checkout) == f"sqlite:///{checkout}/mlruns/mlflow.db"
