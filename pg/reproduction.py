"""Re-running a past run from its config snapshot, and judging the result.

The snapshot (``config/config.yaml``) is the fully resolved config, so it already holds
the env/algo/model choices, a sweep trial's sampled hyper-parameters and the seed; only
where the new run is stored is decided here.  Everything that can be wrong with the input
is checked before a new MLflow run exists, so a bad request leaves nothing behind.
:mod:`pg.reproduce` is the command around it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pg.overrides import GROUPS, BadInput, Override, apply_overrides
from pg.record import names

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from pg.compare import MetricDiff
    from pg.core.config import Config
    from pg.experiment import Snapshot
    from pg.record.reader import Reader, Run

PROG = "pg.reproduce"


@dataclass
class Plan:
    """One source run and the exact config that re-runs it."""

    run: Run
    config: Config
    snapshot: Snapshot
    stop_at: int | None = None  # the source was stopped early at this env step
    source_lock: str | None = None
    source_system: dict[str, Any] | None = None


@dataclass
class Result:
    plan: Plan
    new_run: Run | None
    error: str | None = None
    diffs: list[MetricDiff] = field(default_factory=list)
    compared: int = 0
    points: int = 0
    ignored: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)


# -- the request ------------------------------------------------------------------


def open_reader(uri: str | None) -> Reader:
    """The store holding the source run, checked quickly; a bad address is bad input."""
    from pg.record.reader import Reader, RecordError

    try:
        return Reader.open(uri)
    except RecordError as exc:
        raise BadInput(str(exc)) from None


def get_run(reader: Reader, run_id: str) -> Run:
    from pg.record.reader import RecordError

    try:
        return reader.run(run_id)
    except RecordError as exc:
        raise BadInput(str(exc)) from None


def source_runs(reader: Reader, run: Run) -> list[Run]:
    """The training runs to re-run: the run itself, or the seed runs of a multi-seed trial."""
    tags = run.data.tags
    kind = tags.get(names.KIND, "")
    rid = run.info.run_id
    if kind == names.KIND_SWEEP:
        raise BadInput(
            f"run {rid} is a sweep (study {tags.get(names.STUDY, '?')}); "
            "reproduce one of its trial runs instead"
        )
    if kind == names.KIND_TRIAL:
        # A multi-seed trial keeps the sweep's view (mean curve, a seedless snapshot);
        # the training runs are its seed children.
        seeds = [c for c in reader.children(run) if c.data.tags.get(names.KIND) == names.KIND_SEED]
        if seeds:
            return sorted(seeds, key=lambda r: int(r.data.tags.get(names.SEED, "0") or 0))
    if reader.text(rid, names.SNAPSHOT_CONFIG) is not None:
        return [run]
    raise BadInput(f"run {rid} has no config snapshot ({names.SNAPSHOT_CONFIG})")


# -- the plan ----------------------------------------------------------------------


def load_snapshot(reader: Reader, run_id: str) -> DictConfig:
    import yaml
    from omegaconf import DictConfig, OmegaConf

    text = reader.text(run_id, names.SNAPSHOT_CONFIG)
    if text is None:
        raise BadInput(f"run {run_id} has no config snapshot ({names.SNAPSHOT_CONFIG})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise BadInput(
            f"config snapshot of run {run_id} is corrupted (not YAML: {first})"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(f"config snapshot of run {run_id} is corrupted (not a YAML mapping)")
    node = OmegaConf.create(data)
    assert isinstance(node, DictConfig)
    return node


def load_overrides_doc(reader: Reader, run_id: str) -> tuple[list[str], dict[str, str]]:
    import yaml

    text = reader.text(run_id, names.SNAPSHOT_OVERRIDES)
    try:
        doc = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        return [], {}
    overrides = [str(o) for o in doc.get("overrides") or []]
    choices = {str(k): str(v) for k, v in (doc.get("choices") or {}).items()}
    return overrides, choices


def make_plan(reader: Reader, run: Run, overrides: list[Override], experiment: str) -> Plan:
    from omegaconf import OmegaConf

    from pg.core.config import ConfigError, to_config
    from pg.experiment import Snapshot

    rid = run.info.run_id
    node = load_snapshot(reader, rid)
    try:
        to_config(node)
    except ConfigError as exc:
        raise BadInput(
            f"config snapshot of run {rid} no longer validates with the current schema: {exc}"
        ) from None
    node = apply_overrides(node, overrides)
    # Where the new run goes is not part of what is reproduced (the stored URI may
    # even be redacted): same store as the source, same experiment.
    node.tracking.uri = reader.location.uri
    node.tracking.artifact_root = None
    node.tracking.enabled = True
    node.tracking.experiment = experiment
    if not any(ov.key == "tracking.run_name" for ov in overrides):
        node.tracking.run_name = f"{run.info.run_name or rid[:8]}-repro"
    try:
        config = to_config(node)
    except ConfigError as exc:
        raise BadInput(f"overrides {' '.join(map(str, overrides))}: {exc}") from None
    old_overrides, choices = load_overrides_doc(reader, rid)
    for ov in overrides:
        if ov.key in GROUPS:
            choices[ov.key] = ov.value
    snapshot = Snapshot(
        OmegaConf.to_yaml(OmegaConf.structured(config)),
        old_overrides + [str(ov) for ov in overrides],
        None,
        choices,
    )
    return Plan(
        run,
        config,
        snapshot,
        stop_at=stopped_at(reader, run),
        source_lock=reader.text(rid, names.LOCK_FILE),
        source_system=reader.json(rid, names.SYSTEM_FILE),
    )


def stopped_at(reader: Reader, run: Run) -> int | None:
    """The last env step of a run that was stopped early (a pruned trial), else None."""
    if names.STOPPED not in run.data.tags:  # pruned runs end FINISHED (KILLED in older stores)
        return None
    return reader.last_step(run)


# -- running -----------------------------------------------------------------------


def warn_packages(plan: Plan) -> None:
    from pg.compare import lock_diff
    from pg.record.provenance import package_lock

    rid = plan.run.info.run_id
    if plan.source_lock is None:
        print(f"{PROG}: warning: run {rid} has no package lock to check", file=sys.stderr)
        return
    changes = lock_diff(plan.source_lock, package_lock())
    if changes:
        shown = ", ".join(changes[:15]) + (
            f", and {len(changes) - 15} more" if len(changes) > 15 else ""
        )
        print(
            f"{PROG}: warning: installed packages differ from the lock of run {rid}: {shown}",
            file=sys.stderr,
        )


def run_plan(reader: Reader, plan: Plan, overrides: list[Override], trial_id: str | None) -> Result:
    from pg.experiment import execute, summary
    from pg.record.writer import Stopped

    src = plan.run
    rid = src.info.run_id
    tags = {names.SOURCE_RUN: rid}
    if trial_id:
        tags[names.SOURCE_TRIAL] = trial_id
    stop_at = plan.stop_at

    def hook(step: int, value: float) -> None:
        if stop_at is not None and step >= stop_at:
            raise Stopped(f"source run {rid} was stopped at step {stop_at}", src.info.status)

    started = int(time.time() * 1000)
    error = None
    new_id: str | None = None
    try:
        outcome = execute(plan.config, plan.snapshot, tags=tags, on_report=hook)
        new_id = outcome.run_id
        for line in summary(outcome, plan.config):
            print(f"pg: {line}")
    except Stopped as exc:
        print(f"{PROG}: stopped like the source: {exc.reason}")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: the new run failed: {error}", file=sys.stderr)
    if new_id is None:
        new_id = find_new_run(reader, src.info.experiment_id, rid, started)
    new_run = reader.run(new_id) if new_id else None
    if new_run is not None:
        describe(plan, new_run, overrides)
        new_run = reader.run(new_run.info.run_id)
    return Result(plan, new_run, error)


def find_new_run(reader: Reader, experiment_id: str, source_id: str, since: int) -> str | None:
    """The run just created for ``source_id`` when training raised before returning it."""
    runs = reader.search(
        [experiment_id],
        f"tags.`{names.SOURCE_RUN}` = '{source_id}' and attributes.start_time >= {since}",
        order_by=["attributes.start_time DESC"],
        limit=1,
    )
    return runs[0].info.run_id if runs else None


def describe(plan: Plan, new_run: Run, overrides: list[Override]) -> None:
    """Link the new run back to its source in the MLflow description."""
    from pg.record.tracker import tracker_for

    source = plan.run
    sid = source.info.run_id
    note = new_run.data.tags.get(names.NOTE, "")
    link = f"[{source.info.run_name or sid}](#/experiments/{source.info.experiment_id}/runs/{sid})"
    note += f"\nReproduction of run {link} (`{sid}`)"
    if overrides:
        note += " with overrides: " + " ".join(f"`{ov}`" for ov in overrides)
    tracker_for(plan.config.tracking).set_tags(
        new_run.info.run_id, {names.NOTE: note.strip() + "\n"}
    )


# -- comparing ---------------------------------------------------------------------


def compare(reader: Reader, result: Result) -> None:
    from pg.compare import compare_histories, compared_keys, environment_diff

    src, new = result.plan.run, result.new_run
    assert new is not None
    keys, ignored = compared_keys([*src.data.metrics, *new.data.metrics])
    result.ignored = ignored
    a = reader.histories(src.info.run_id, [k for k in keys if k in src.data.metrics])
    b = reader.histories(new.info.run_id, [k for k in keys if k in new.data.metrics])
    result.compared = len(keys)
    result.points = sum(len(v) for v in a.values())
    result.diffs = compare_histories(a, b)
    nid = new.info.run_id
    result.environment = environment_diff(
        src.data.tags,
        new.data.tags,
        result.plan.source_lock,
        reader.text(nid, names.LOCK_FILE),
        result.plan.source_system,
        reader.json(nid, names.SYSTEM_FILE),
    )
    if src.info.status != new.info.status:
        result.environment.insert(0, f"run status: {src.info.status} -> {new.info.status}")
