"""Nothing lost, nothing changed: the same commands record what they recorded before.

``tests/data/reference-record.json`` was recorded by ``python -m tests.record_digest`` with
the code before tracking moved off the training's critical path (a metric writer thread,
then every record call in the writer process).  A single run, a 1-seed and a 2-seed sweep
recorded now must hold the same runs with the same status, params, tags, metric histories
(every (step, value) point, wall-clock metrics aside), artifacts and logged models.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pg.core import metrics as m
from tests.conftest import Store
from tests.record_digest import REFERENCE, digest, record

# Sweep settings added after the reference was recorded (issue 14): a sweep's parent run
# records every setting as a param, so these are new keys there, and only there.
ADDED_SETTINGS = {"max_retries", "validate.seeds", "validate.top_k"}

# What torch's float32 kernels compute from a batch: their last bits follow the CPU's
# instruction set (MKL and ATen pick AVX2, AVX-512 or AMX code paths with other sums), so
# on another machine than the reference's they may differ by a few ULPs (seen: 7e-7
# relative, 2e-8 absolute on KLs near 0). Everything else is compared exactly: steps,
# episodes and their returns and lengths, evaluations, objectives, the scales and
# baselines (NumPy float64), params, tags, artifacts, models. A change that alters what
# the policy does changes those.
KERNEL_METRICS = {
    m.LOSS_POLICY, m.LOSS_ENTROPY, m.LOSS_TOTAL, m.ENTROPY, m.KL,
    m.GRAD_L2, m.GRAD_MAX, m.GRAD_VAR,
}  # fmt: skip


def same_history(name: str, old: Any, new: Any) -> bool:
    if old == new:
        return True
    if name not in KERNEL_METRICS or not isinstance(old, list) or not isinstance(new, list):
        return False
    return len(old) == len(new) and all(
        s == t and math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7)
        for (s, x), (t, y) in zip(old, new, strict=True)
    )


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
            if not same_history(name, a["metrics"].get(name), b["metrics"].get(name)):
                out.append(f"{key}: metric {name} differs")
    return out


def test_same_commands_record_the_same_as_before(store: Store) -> None:
    record(store)
    reference = json.loads(REFERENCE.read_text())
    assert differences(reference, json.loads(json.dumps(digest(store)))) == []


def test_only_kernel_bits_are_forgiven() -> None:
    """The comparison above still sees a change: a step, a count, a return, or a
    diagnostic off by more than a few ULPs."""
    loss = [[100, 6.666114330291748], [200, 8.998330116271973]]
    ulps = [[100, 6.666114807128906], [200, 8.998330116271973]]  # 1 float32 ULP
    assert same_history(m.LOSS_POLICY, loss, ulps)
    assert same_history(m.KL, [[100, 0.0011761847]], [[100, 0.0011761922]])
    assert not same_history(m.LOSS_POLICY, loss, [[100, 6.6662], [200, 8.998330116271973]])
    assert not same_history(m.LOSS_POLICY, loss, [[101, 6.666114330291748], loss[1]])
    assert not same_history(m.LOSS_POLICY, loss, loss[:1])
    assert not same_history(m.EP_RETURN, [[100, 12.0]], [[100, 12.000000001]])
    assert not same_history(m.BATCH_SCALE, [[100, 5.5]], [[100, 5.5000001]])
    run = {"status": "FINISHED", "params": {}, "tags": {}, "artifacts": [], "models": 1}
    old = {"r": {**run, "metrics": {m.LOSS_POLICY: loss, m.EP_RETURN: [[100, 12.0]]}}}
    new = {"r": {**run, "metrics": {m.LOSS_POLICY: ulps, m.EP_RETURN: [[100, 13.0]]}}}
    assert differences(old, new) == [f"r: metric {m.EP_RETURN} differs"]
