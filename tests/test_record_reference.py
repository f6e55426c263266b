"""Nothing lost, nothing changed: the same commands record what they recorded before.

``tests/data/reference-record.json`` was recorded by ``python -m tests.record_digest`` with
the code before tracking moved off the training's critical path (a metric writer thread,
then every record call in the writer process).  A single run, a 1-seed and a 2-seed sweep
recorded now must hold the same runs with the same status, params, tags, metric histories
(every (step, value) point, wall-clock metrics aside), artifacts and logged models.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Store
from tests.record_digest import REFERENCE, digest, record

# Sweep settings added after the reference was recorded (issue 14): a sweep's parent run
# records every setting as a param, so these are new keys there, and only there.
ADDED_SETTINGS = {"max_retries", "validate.seeds", "validate.top_k"}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [f"run {k} missing" for k in old if k not in new]
    out += [f"run {k} is new" for k in new if k not in old]
    for key in sorted(set(old) & set(new)):
        a, b = old[key], dict(new[key])
        if key.startswith("sweep/"):
            b["params"] = {k: v for k, v in b["params"].items() if k not in ADDED_SETTINGS}
        for part in ("status", "params", "tags", "artifacts", "models"):
            if a[part] != b[part]:
                out.append(f"{key}: {part} {a[part]!r} -> {b[part]!r}")
        for name in sorted(set(a["metrics"]) | set(b["metrics"])):
            if a["metrics"].get(name) != b["metrics"].get(name):
                out.append(f"{key}: metric {name} differs")
    return out


def test_same_commands_record_the_same_as_before(store: Store) -> None:
    record(store)
    reference = json.loads(REFERENCE.read_text())
    assert differences(reference, json.loads(json.dumps(digest(store)))) == []
