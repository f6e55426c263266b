"""``python -m pg.reproduce RUN_ID``: re-run a past run from its config snapshot and judge it.

The snapshot (``config/config.yaml``) is the fully resolved config, so it already holds
the env/algo/model choices, a sweep trial's sampled hyper-parameters and the seed; only
where the new run is stored is decided here.  Everything that can be wrong with the input
is checked before a new MLflow run exists, so a bad request leaves nothing behind.

Exit codes: 0 identical (or re-run without a verdict), 1 different, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig

    from pg.compare import MetricDiff
    from pg.config import Config
    from pg.run import Snapshot
    from pg.tracking import StoreLocation

PROG = "pg.reproduce"
PROBE_TIMEOUT = 5.0  # seconds; with imports the answer stays within ~10 s
GROUPS = ("env", "algo", "model")  # config groups whose choice can be swapped by name
_OVERRIDE = re.compile(r"^\+{0,2}(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$", re.S)


class BadInput(Exception):  # noqa: N818 - an answer for the user, not a crash
    """The request cannot be carried out; nothing was created."""


@dataclass
class Override:
    key: str
    value: str
    old: Any = None

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


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


# -- command line ---------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pg.reproduce",
        description=(
            "Re-run a past run (or every seed of a sweep trial) from its stored config "
            "snapshot as a new run in the same experiment, then compare every metric at "
            "every step. Exit 0: identical; 1: different; 2: bad input (nothing created)."
        ),
    )
    parser.add_argument("run_id", help="MLflow run id of a training run or sweep trial")
    parser.add_argument(
        "--tracking-uri",
        help="store holding the run and receiving the new one "
        "(default: MLFLOW_TRACKING_URI, else $PG_HOME/mlruns/mlflow.db)",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="only re-run; no comparison, no verdict"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="applied on top of the snapshot (e.g. algo.lr=0.02 seed=3 algo=pg); "
        "the run is then reported without a verdict",
    )
    return parser.parse_args(argv)


def parse_overrides(items: list[str]) -> list[Override]:
    out = []
    for item in items:
        match = _OVERRIDE.match(item)
        if match is None:
            raise BadInput(f"override {item!r} is not of the form key=value")
        key = match["key"]
        if key in ("tracking.uri", "tracking.enabled", "tracking.artifact_root"):
            raise BadInput(f"override {key} is not allowed here; use --tracking-uri")
        out.append(Override(key, match["value"]))
    return out


# -- the store ---------------------------------------------------------------------


def open_store(uri: str | None) -> tuple[StoreLocation, MlflowClient]:
    """Resolve the store like ``pg.run`` does and make sure it answers, quickly."""
    from pg.config import TrackingConfig
    from pg.tracking import (
        TrackingUnavailableError,
        apply_http_client_defaults,
        check_reachable,
        resolve_store,
    )

    location = resolve_store(TrackingConfig(uri=uri))
    path = location.sqlite_path
    if path is not None and not path.is_file():
        raise BadInput(f"no MLflow store at {location.display} (give --tracking-uri or PG_HOME)")
    apply_http_client_defaults()
    try:
        check_reachable(location, PROBE_TIMEOUT)
    except TrackingUnavailableError as exc:
        raise BadInput(str(exc)) from None
    from mlflow.tracking import MlflowClient

    return location, MlflowClient(tracking_uri=location.uri)


def get_run(client: MlflowClient, run_id: str, location: StoreLocation) -> Run:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise BadInput(f"no run with id {run_id!r} in {location.display}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"cannot read run {run_id!r} from {location.display}: {first}") from None


def source_runs(client: MlflowClient, run: Run) -> list[Run]:
    """The training runs to re-run: the run itself, or the seed runs of a multi-seed trial."""
    from pg.compare import read_text_artifact
    from pg.tracking import SNAPSHOT_CONFIG

    tags = run.data.tags
    kind = tags.get("pg.kind", "")
    rid = run.info.run_id
    if kind == "sweep":
        raise BadInput(
            f"run {rid} is a sweep (study {tags.get('pg.study', '?')}); "
            "reproduce one of its trial runs instead"
        )
    if kind == "trial":
        # A multi-seed trial keeps the sweep's view (mean curve, a seedless snapshot);
        # the training runs are its seed children.
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{rid}'",
            max_results=1000,
        )
        seeds = [c for c in children if c.data.tags.get("pg.kind") == "seed"]
        if seeds:
            return sorted(seeds, key=lambda r: int(r.data.tags.get("pg.seed", "0") or 0))
    if read_text_artifact(client, rid, SNAPSHOT_CONFIG) is not None:
        return [run]
    raise BadInput(f"run {rid} has no config snapshot ({SNAPSHOT_CONFIG})")


# -- the plan ----------------------------------------------------------------------


def load_snapshot(client: MlflowClient, run_id: str) -> DictConfig:
    import yaml
    from omegaconf import DictConfig, OmegaConf

    from pg.compare import read_text_artifact
    from pg.tracking import SNAPSHOT_CONFIG

    text = read_text_artifact(client, run_id, SNAPSHOT_CONFIG)
    if text is None:
        raise BadInput(f"run {run_id} has no config snapshot ({SNAPSHOT_CONFIG})")
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


def load_overrides_doc(client: MlflowClient, run_id: str) -> tuple[list[str], dict[str, str]]:
    import yaml

    from pg.compare import read_text_artifact
    from pg.tracking import SNAPSHOT_OVERRIDES

    text = read_text_artifact(client, run_id, SNAPSHOT_OVERRIDES)
    try:
        doc = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        return [], {}
    overrides = [str(o) for o in doc.get("overrides") or []]
    choices = {str(k): str(v) for k, v in (doc.get("choices") or {}).items()}
    return overrides, choices


def group_node(group: str, choice: str) -> Any:
    """The resolved subtree that ``group=choice`` gives in a fresh composition."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from pg.config import register_configs

    conf = Path(__file__).resolve().parent.parent / "conf"
    if not (conf / group / f"{choice}.yaml").is_file():
        raise BadInput(f"override {group}={choice}: no config conf/{group}/{choice}.yaml")
    register_configs()
    try:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("config", overrides=[f"{group}={choice}"])
    except HydraException as exc:
        raise BadInput(f"override {group}={choice}: {exc}") from None
    return OmegaConf.to_container(cfg[group], resolve=True)


def apply_overrides(node: DictConfig, overrides: list[Override]) -> DictConfig:
    """Group choices first (``algo=pg`` swaps the subtree), then dotted keys, like Hydra."""
    from omegaconf import DictConfig, OmegaConf

    out = node.copy()
    dotted = []
    for ov in overrides:
        ov.old = OmegaConf.select(node, ov.key, default=None)
        if ov.key in GROUPS and isinstance(node.get(ov.key), DictConfig):
            ov.old = node[ov.key].get("name", ov.old)
            out[ov.key] = group_node(ov.key, ov.value)
        else:
            dotted.append(str(ov))
    if dotted:
        try:
            merged = OmegaConf.merge(out, OmegaConf.from_dotlist(dotted))
        except Exception as exc:
            raise BadInput(f"overrides {' '.join(dotted)} do not apply: {exc}") from None
        assert isinstance(merged, DictConfig)
        out = merged
    return out


def make_plan(
    client: MlflowClient,
    run: Run,
    overrides: list[Override],
    location: StoreLocation,
    experiment: str,
) -> Plan:
    from omegaconf import OmegaConf

    from pg.compare import read_json_artifact, read_text_artifact
    from pg.config import ConfigError, to_config
    from pg.run import Snapshot
    from pg.tracking import LOCK_FILE, SYSTEM_FILE

    rid = run.info.run_id
    node = load_snapshot(client, rid)
    try:
        to_config(node)
    except ConfigError as exc:
        raise BadInput(
            f"config snapshot of run {rid} no longer validates with the current schema: {exc}"
        ) from None
    node = apply_overrides(node, overrides)
    # Where the new run goes is not part of what is reproduced (the stored URI may
    # even be redacted): same store as the source, same experiment.
    node.tracking.uri = location.uri
    node.tracking.artifact_root = None
    node.tracking.enabled = True
    node.tracking.experiment = experiment
    if not any(ov.key == "tracking.run_name" for ov in overrides):
        node.tracking.run_name = f"{run.info.run_name or rid[:8]}-repro"
    try:
        config = to_config(node)
    except ConfigError as exc:
        raise BadInput(f"overrides {' '.join(map(str, overrides))}: {exc}") from None
    old_overrides, choices = load_overrides_doc(client, rid)
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
        stop_at=stopped_at(client, run),
        source_lock=read_text_artifact(client, rid, LOCK_FILE),
        source_system=read_json_artifact(client, rid, SYSTEM_FILE),
    )


def stopped_at(client: MlflowClient, run: Run) -> int | None:
    """The last env step of a run that was stopped early (a pruned trial), else None."""
    if run.info.status == "FINISHED" or "pg.stopped" not in run.data.tags:
        return None
    last = [client.get_metric_history(run.info.run_id, key)[-1:] for key in run.data.metrics]
    steps = [m[0].step for m in last if m]
    return max(steps) if steps else None


# -- running -----------------------------------------------------------------------


def warn_packages(plan: Plan) -> None:
    from pg.compare import lock_diff
    from pg.tracking import package_lock

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


def run_plan(
    client: MlflowClient, plan: Plan, overrides: list[Override], trial_id: str | None
) -> Result:
    from pg.run import execute, report
    from pg.tracking import TAG_SOURCE_RUN, Stopped

    src = plan.run
    rid = src.info.run_id
    tags = {TAG_SOURCE_RUN: rid}
    if trial_id:
        tags["pg.source_trial"] = trial_id
    stop_at = plan.stop_at

    def hook(step: int, value: float) -> None:
        if stop_at is not None and step >= stop_at:
            raise Stopped(f"source run {rid} was stopped at step {stop_at}")

    started = int(time.time() * 1000)
    error = None
    new_id: str | None = None
    try:
        outcome = execute(plan.config, plan.snapshot, tags=tags, on_report=hook)
        new_id = outcome.run_id
        report(outcome, plan.config)
    except Stopped as exc:
        print(f"{PROG}: stopped like the source: {exc.reason}")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: the new run failed: {error}", file=sys.stderr)
    if new_id is None:
        new_id = find_new_run(client, src.info.experiment_id, rid, started)
    new_run = client.get_run(new_id) if new_id else None
    if new_run is not None:
        describe(client, new_run, src, overrides)
        new_run = client.get_run(new_run.info.run_id)
    return Result(plan, new_run, error)


def find_new_run(
    client: MlflowClient, experiment_id: str, source_id: str, since: int
) -> str | None:
    """The run just created for ``source_id`` when training raised before returning it."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`pg.source_run` = '{source_id}' and attributes.start_time >= {since}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def describe(client: MlflowClient, new_run: Run, source: Run, overrides: list[Override]) -> None:
    """Link the new run back to its source in the MLflow description."""
    sid = source.info.run_id
    note = new_run.data.tags.get("mlflow.note.content", "")
    link = f"[{source.info.run_name or sid}](#/experiments/{source.info.experiment_id}/runs/{sid})"
    note += f"\nReproduction of run {link} (`{sid}`)"
    if overrides:
        note += " with overrides: " + " ".join(f"`{ov}`" for ov in overrides)
    client.set_tag(new_run.info.run_id, "mlflow.note.content", note.strip() + "\n")


# -- comparing ---------------------------------------------------------------------


def compare(client: MlflowClient, result: Result) -> None:
    from pg.compare import (
        compare_histories,
        compared_keys,
        environment_diff,
        read_histories,
        read_json_artifact,
        read_text_artifact,
    )
    from pg.tracking import LOCK_FILE, SYSTEM_FILE

    src, new = result.plan.run, result.new_run
    assert new is not None
    keys, ignored = compared_keys([*src.data.metrics, *new.data.metrics])
    result.ignored = ignored
    a = read_histories(client, src.info.run_id, [k for k in keys if k in src.data.metrics])
    b = read_histories(client, new.info.run_id, [k for k in keys if k in new.data.metrics])
    result.compared = len(keys)
    result.points = sum(len(v) for v in a.values())
    result.diffs = compare_histories(a, b)
    nid = new.info.run_id
    result.environment = environment_diff(
        src.data.tags,
        new.data.tags,
        result.plan.source_lock,
        read_text_artifact(client, nid, LOCK_FILE),
        result.plan.source_system,
        read_json_artifact(client, nid, SYSTEM_FILE),
    )
    if src.info.status != new.info.status:
        result.environment.insert(0, f"run status: {src.info.status} -> {new.info.status}")


def status_differs(result: Result) -> bool:
    new = result.new_run
    return new is None or new.info.status != result.plan.run.info.status


def print_verdict(results: list[Result], overridden: bool) -> int:
    from pg.compare import format_table

    ignored = sorted({k for r in results for k in r.ignored})
    compared = max(r.compared for r in results)
    points = sum(r.points for r in results)
    many = len(results) > 1
    label = f"{len(results)} seed runs" if many else "the source run"
    print(
        f"{PROG}: compared {compared} metrics ({points:,} source points) with {label}, "
        f"step by step and exactly; ignored wall-clock metrics: {', '.join(ignored) or 'none'}"
    )
    differing = [r for r in results if r.diffs or status_differs(r)]
    for r in differing:
        prefix = f"seed {r.plan.config.seed}: " if many else ""
        if r.diffs:
            print(f"{PROG}: {prefix}{len(r.diffs)} of {r.compared} metrics differ:")
            print("\n".join(format_table(r.diffs)))
    if overridden:
        state = "differ as shown above" if differing else "happen to be equal"
        print(f"{PROG}: no verdict: the config was changed by overrides; the histories {state}")
        return 0
    if not differing:
        print(f"{PROG}: verdict: IDENTICAL (every metric equal at every step)")
        return 0
    print(f"{PROG}: verdict: DIFFERENT")
    for r in differing:
        prefix = f"seed {r.plan.config.seed} " if many else ""
        lines = r.environment or ["nothing recorded differs (same commit, packages, system)"]
        print(f"{PROG}: {prefix}environment, source -> now:")
        print("\n".join(f"  {line}" for line in lines))
    return 1


# -- main ----------------------------------------------------------------------------


def reproduce(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    location, client = open_store(args.tracking_uri)
    run = get_run(client, args.run_id, location)
    experiment = client.get_experiment(run.info.experiment_id).name
    sources = source_runs(client, run)
    # Every plan is built (and so every snapshot validated) before the first new run.
    plans = [make_plan(client, s, overrides, location, experiment) for s in sources]
    trial_id = run.info.run_id if sources[0] is not run else None

    kind = run.data.tags.get("pg.kind", "run")
    what = f"{'run' if kind == 'run' else kind + ' run'} {run.info.run_id} ({run.info.run_name})"
    if trial_id:
        what += f" with {len(plans)} seed runs"
    print(f"{PROG}: reproducing {what} in experiment '{experiment}' at {location.display}")
    if overrides:
        changes = ", ".join(f"{ov} (snapshot: {ov.old})" for ov in overrides)
        print(f"{PROG}: overrides applied on top of the snapshot: {changes}")
    for plan in plans:
        if plan.stop_at is not None:
            print(
                f"{PROG}: run {plan.run.info.run_id} was stopped early "
                f"({plan.run.data.tags.get('pg.stopped')}); re-running up to step {plan.stop_at:,}"
            )
    warn_packages(plans[0])

    results = []
    for plan in plans:
        result = run_plan(client, plan, overrides, trial_id)
        if result.new_run is not None:
            print(
                f"{PROG}: new run {result.new_run.info.run_id} "
                f"(tag pg.source_run={plan.run.info.run_id})"
            )
        results.append(result)
    if any(r.new_run is None for r in results):
        return 1
    if args.no_compare:
        return 1 if any(r.error for r in results) else 0
    for result in results:
        compare(client, result)
    if overrides:
        print_verdict(results, overridden=True)
        return 0 if all(r.new_run and r.new_run.info.status == "FINISHED" for r in results) else 1
    return print_verdict(results, overridden=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Progress bars for each small artifact download would drown the report.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return reproduce(args)
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
