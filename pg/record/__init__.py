"""The run record: the only code that imports ``mlflow``.

Everything pg does reads or writes the same MLflow record, so its names, where it lives,
how it is written and how it is read are kept here, once:

- :mod:`pg.record.names` — every tag, artifact path, run kind and study attribute;
- :mod:`pg.record.store` — where a store is, whether it answers, redaction, file locks;
- :mod:`pg.record.provenance` — git, packages, system and command facts of a run;
- :mod:`pg.record.tracker` — a connection to one experiment: create and edit runs;
- :mod:`pg.record.writer` — one run being written (metrics off the training's hot path);
- :mod:`pg.record.service` — the record process, where a training process's runs are
  written (:mod:`pg.record.remote` and :mod:`pg.record.process` are the training
  process's side: it imports no MLflow);
- :mod:`pg.record.reader` — runs, histories, artifacts and snapshots read back.

Submodules are imported on demand: ``python -m pg.run --help`` must not pay for MLflow.
"""

from __future__ import annotations

import os

# MLflow 3 reports usage telemetry from every process that imports it: a thread fetches a
# config over the network, then events of every client call are queued and posted (~0.13 s
# of CPU per pg.run, ~0.3 s per sweep, all in the record process). Every import of MLflow
# by pg goes through this package (tests/test_architecture.py), so this runs before any of
# them. pg opts out, as it does for Ray's usage stats, unless the variable is already set:
# MLFLOW_DISABLE_TELEMETRY=false turns it back on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
