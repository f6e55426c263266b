"""``python -m pg.run``: one tracked training run (``-m``: an Optuna sweep).

Hydra composes ``conf/``; the schema in :mod:`pg.config` validates it before anything is
created.  :func:`execute` is the part that sweeps and ``pg.reproduce`` call directly.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pg.config import Config, ConfigError, register_configs, to_config

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from pg.train import Report, ReportHook, TrainResult

register_configs()


@dataclass
class Snapshot:
    """What reproduces a run: the resolved config, the overrides, Hydra's own config."""

    config_yaml: str
    overrides: list[str] = field(default_factory=list)
    hydra_yaml: str | None = None
    choices: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Config, overrides: list[str] | None = None) -> Snapshot:
        return cls(OmegaConf.to_yaml(OmegaConf.structured(cfg)), list(overrides or []))

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> Snapshot:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        choices = {str(k): str(v) for k, v in hc.runtime.choices.items() if v is not None}
        return cls(
            OmegaConf.to_yaml(cfg, resolve=True),
            [str(o) for o in hc.overrides.task],
            OmegaConf.to_yaml(hc),
            choices,
        )

    def files(self) -> dict[str, str | bytes]:
        from pg import tracking

        out: dict[str, str | bytes] = {
            tracking.SNAPSHOT_CONFIG: tracking.redact(self.config_yaml),
            tracking.SNAPSHOT_OVERRIDES: tracking.redact(
                OmegaConf.to_yaml(
                    OmegaConf.create({"overrides": self.overrides, "choices": self.choices})
                )
            ),
        }
        if self.hydra_yaml is not None:
            out[tracking.SNAPSHOT_HYDRA] = tracking.redact(self.hydra_yaml)
        return out


@dataclass
class Outcome:
    run_id: str | None
    objective: float
    result: TrainResult


def default_run_name(cfg: Config) -> str:
    return cfg.tracking.run_name or f"{cfg.env.name}-{cfg.algo.name}-s{cfg.seed}"


def execute(
    cfg: Config,
    snapshot: Snapshot,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_report: ReportHook | None = None,
) -> Outcome:
    """Train ``cfg`` as one MLflow run (or untracked when tracking is disabled).

    ``on_report(step, value)`` sees the objective every ``train.report_every`` env steps
    and may raise to stop the run (:class:`pg.tracking.Stopped` ends it KILLED, not FAILED).
    """
    from pg.train import drive

    return drive(execution(cfg, snapshot, parent_run_id=parent_run_id, tags=tags), on_report)


def execution(
    cfg: Config,
    snapshot: Snapshot,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Generator[Report, None, Outcome]:
    """:func:`execute` as a generator of ``(step, objective)`` reports.

    Throwing an exception into it ends the MLflow run accordingly (``Stopped`` ->
    its status, ``KeyboardInterrupt`` -> KILLED, anything else -> FAILED) and re-raises.
    """
    from pg.train import training

    if not cfg.tracking.enabled:
        result = yield from training(cfg)
        return Outcome(None, result.objective, result)

    from pg import tracking
    from pg.plots import learning_curve_png

    tracker = tracking.Tracker(cfg.tracking)
    run_tags = {
        "pg.kind": "run",
        "pg.env": cfg.env.id,
        "pg.algo": cfg.algo.name,
        "pg.seed": str(cfg.seed),
        "pg.objective": cfg.train.objective,
    }
    run_tags.update(tags or {})
    run = tracker.start_run(default_run_name(cfg), run_tags, parent_run_id)
    if on_start is not None:  # a sweep records the run id before training starts
        on_start(run.run_id)
    with run:
        reproduce = f"python -m pg.reproduce {run.run_id}"
        if tracker.location != tracking.default_location():
            # Only the embedded store is found without being named.
            reproduce += f" --tracking-uri {shlex.quote(tracker.location.display)}"
        run.set_tags(
            {
                tracking.TAG_REPRODUCE: reproduce,
                "mlflow.note.content": f"Reproduce this run with:\n\n    {reproduce}\n",
            }
        )
        run.log_params(tracking.flatten(OmegaConf.to_container(OmegaConf.structured(cfg))))  # type: ignore[arg-type]
        run.log_files(
            {
                **snapshot.files(),
                tracking.LOCK_FILE: tracking.package_lock(),
                tracking.SYSTEM_FILE: tracking.system_json(cfg.train.torch_threads),
            }
        )
        result = yield from training(cfg, sink=run)
        from pg import metrics as m

        run.log_metrics({m.OBJECTIVE: result.objective}, result.steps)
        run.set_tags({"pg.solved": str(result.solved).lower(), "pg.steps": str(result.steps)})
        from pg.policy import policy_files

        curve = learning_curve_png(
            result, f"{default_run_name(cfg)} ({run.run_id[:8]})", cfg.train.target_return
        )
        run.log_files(
            {
                **{
                    f"{tracking.MODEL_DIR}/{name}": content
                    for name, content in policy_files(result.policy, result.spec).items()
                },
                tracking.CURVE_FILE: curve,
            }
        )
    return Outcome(run.run_id, result.objective, result)


def report(outcome: Outcome, cfg: Config) -> None:
    """Tell the user what happened and where to look."""
    r = outcome.result
    solved = "solved" if r.solved else "not solved"
    print(
        f"pg: {cfg.env.id} {cfg.algo.name} seed {cfg.seed}: {solved}, "
        f"{cfg.train.objective} = {outcome.objective:.1f} after {r.steps:,} env steps, "
        f"{r.episodes} episodes, {r.seconds:.1f} s of training"
    )
    if outcome.run_id is None:
        return
    from pg.tracking import resolve_store

    loc = resolve_store(cfg.tracking)
    exp = cfg.tracking.experiment
    print(f"pg: MLflow run {outcome.run_id} in experiment '{exp}' at {loc.display}")
    if loc.sqlite_path is not None:
        print("pg: browse it with: python -m pg.ui   (then open http://127.0.0.1:5000)")


def _main(cfg: DictConfig) -> float:
    try:
        config = to_config(cfg)
    except ConfigError as exc:
        print(f"pg: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    from pg.tracking import StoreUnavailableError, check_reachable, resolve_store

    try:
        if config.tracking.enabled:
            # Before torch and matplotlib load: a dead store is reported in seconds.
            check_reachable(resolve_store(config.tracking), config.tracking.check_timeout)
        outcome = execute(config, Snapshot.from_hydra(cfg))
    except StoreUnavailableError as exc:
        print(f"pg: {exc}; nothing was trained", file=sys.stderr)
        sys.exit(3)
    report(outcome, config)
    return outcome.objective


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    return _main(cfg)


if __name__ == "__main__":
    main()
