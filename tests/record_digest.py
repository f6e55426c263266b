"""What a store holds, without what changes from one recording to the next.

``digest(store)`` lists every run of the store by what it is (kind, name, study, trial,
seed), with its status, params, tags, metric histories (``(step, value)``, wall-clock
metrics aside), artifact paths and logged models.  Run ids, timestamps, durations, the
store's own path and the machine's facts are left out, so two recordings of the same
commands with the same seeds give the same digest.

``python -m tests.record_digest`` re-records ``tests/data/reference-record.json`` (the
commands in :data:`COMMANDS`); it was recorded with the code *before* tracking moved to
the writer process, so ``tests/test_record_reference.py`` proves nothing was lost.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pg.core import metrics as m
from tests.conftest import FAST, Store, run_module

REFERENCE = Path(__file__).resolve().parent / "data" / "reference-record.json"

# A single run (model, GIF, evaluations, system metrics), a 1-seed sweep and a 2-seed sweep.
COMMANDS: list[list[str]] = [
    [*FAST, "seed=3", "train.eval_every=1000", "train.progress=false"],
    [
        "-m",
        *FAST,
        "train.max_steps=2000",
        "train.report_every=500",
        "hydra.sweeper.study_name=ref_one",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.seed=4",
        "hydra.sweeper.validate.top_k=0",  # recorded before sweeps had a validation stage
    ],
    [
        "-m",
        *FAST,
        "train.max_steps=1500",
        "train.report_every=500",
        "hydra.sweeper.study_name=ref_two",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.seeds=2",
        "hydra.sweeper.sampler.seed=5",
        "hydra.sweeper.validate.top_k=0",
    ],
]

# Tags whose values differ between two recordings of the same command.
VOLATILE_TAGS = {
    "mlflow.runName",  # kept as the run's name in the key instead
    "mlflow.parentRunId",
    "mlflow.source.git.commit",
    "mlflow.log-model.history",
    "mlflow.loggedModels",
    "pg.git_commit",
    "pg.git_dirty",
    "pg.command",
    "pg.version",
    "pg.reproduce",
    "pg.note",
    "pg.parent_run",
    "pg.video_seconds",
    "pg.best_run",
    "pg.best_model",
    "pg.model_id",
}
VOLATILE_PREFIXES = ("pg.sweep_", "mlflow.user")
RUN_ID = re.compile(r"[0-9a-f]{32}")  # a tag naming another run (pg.best_run_id)


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            out += artifact_paths(client, run_id, item.path)
        else:
            out.append(item.path)
    return sorted(out)


def _clean(value: str, home: Path) -> str:
    return value.replace(str(home), "<home>")


def _run_key(run: Any) -> str:
    tags = run.data.tags
    parts = [
        tags.get("pg.kind", "?"),
        tags.get("pg.study", ""),
        tags.get("pg.trial_number", ""),
        tags.get("pg.seed_index", ""),
        tags.get("mlflow.runName", ""),
    ]
    return "/".join(parts)


def digest(store: Store) -> dict[str, Any]:
    client = store.client()
    out: dict[str, Any] = {}
    for run in store.runs():
        rid = run.info.run_id
        tags = {
            k: _clean(v, store.home)
            for k, v in sorted(run.data.tags.items())
            if k not in VOLATILE_TAGS
            and not k.startswith(VOLATILE_PREFIXES)
            and not RUN_ID.search(v)
        }
        metrics: dict[str, object] = {}
        for name in sorted(run.data.metrics):
            if name.startswith(m.WALL_CLOCK_PREFIXES):
                metrics[name] = "wall-clock"
                continue
            history = client.get_metric_history(rid, name)
            metrics[name] = sorted([int(h.step), float(h.value)] for h in history)
        outputs = run.outputs.model_outputs if run.outputs is not None else []
        key = _run_key(run)
        assert key not in out, f"two runs are both {key}"
        out[key] = {
            "status": run.info.status,
            "params": {k: _clean(v, store.home) for k, v in sorted(run.data.params.items())},
            "tags": tags,
            "metrics": metrics,
            "artifacts": artifact_paths(client, rid),
            "models": len(outputs),
        }
    return dict(sorted(out.items()))


def record(store: Store) -> list[str]:
    """Run :data:`COMMANDS` into ``store``; the combined output, for failure messages."""
    logs = []
    for args in COMMANDS:
        proc = run_module("pg.run", args, store, timeout=600)
        logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, logs[-1][-3000:]
    return logs


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pg-reference-"))
    try:
        store = Store(tmp / "home")
        store.home.mkdir()
        record(store)
        REFERENCE.write_text(json.dumps(digest(store), indent=1, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
