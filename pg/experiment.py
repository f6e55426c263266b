"""A validated config and its snapshot, turned into a tracked execution.

``pg.run``, every sweep trial and seed, and ``pg.reproduce`` call :func:`execution` (or
:func:`execute`), so a run is recorded the same way whoever started it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from pg.core.config import Config
from pg.record.config_text import ConfigText

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from omegaconf import DictConfig
    from torch import nn

    from pg.core.train import Report, ReportHook, TrainResult
    from pg.record.config_text import FileContent
    from pg.record.remote import RemoteRun


@dataclass
class Snapshot:
    """What reproduces a run: the resolved config, the overrides, Hydra's own config.

    The configs are text (read back from a store) or :class:`ConfigText`, rendered by the
    record process when it writes them (a run that is not tracked never renders them).
    """

    config_yaml: str | ConfigText
    overrides: list[str] = field(default_factory=list)
    hydra_yaml: str | ConfigText | None = None
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
            ConfigText.of(cfg, resolve=True),
            [str(o) for o in hc.overrides.task],
            ConfigText.of(hc),
            choices,
        )

    def files(self) -> dict[str, FileContent]:
        """The snapshot's files; text is redacted here, a :class:`ConfigText` when written."""
        from pg.record import names
        from pg.record.store import redact

        def hidden(text: str | ConfigText) -> FileContent:
            return redact(text) if isinstance(text, str) else text

        overrides = {"overrides": list(self.overrides), "choices": dict(self.choices)}
        out: dict[str, FileContent] = {
            names.SNAPSHOT_CONFIG: hidden(self.config_yaml),
            # OmegaConf.to_yaml(OmegaConf.create(overrides)): the same plain containers
            names.SNAPSHOT_OVERRIDES: ConfigText(overrides),
        }
        if self.hydra_yaml is not None:
            out[names.SNAPSHOT_HYDRA] = hidden(self.hydra_yaml)
        return out


@dataclass
class Outcome:
    run_id: str | None
    objective: float
    result: TrainResult


def default_run_name(cfg: Config) -> str:
    return cfg.tracking.run_name or f"{cfg.env.name}-{cfg.algo.name}-s{cfg.seed}"


def config_params(cfg: Config) -> dict[str, str]:
    """The resolved config as MLflow params (dotted keys).

    From the dataclasses directly: the same values OmegaConf's container of them gives
    (tests/test_experiment_params.py), 100x cheaper, and every trial and seed needs it.
    """
    from pg.record.provenance import flatten

    return flatten(dataclasses.asdict(cfg))


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
    and may raise to stop the run (:class:`pg.record.writer.Stopped` ends it KILLED, not
    FAILED).
    """
    from pg.core.train import drive

    return drive(execution(cfg, snapshot, parent_run_id=parent_run_id, tags=tags), on_report)


def execution(
    cfg: Config,
    snapshot: Snapshot,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
    run_name: str | None = None,
    wait_at_end: bool = True,
) -> Generator[Report, None, Outcome]:
    """:func:`execute` as a generator of ``(step, objective)`` reports.

    Throwing an exception into it ends the MLflow run accordingly (``Stopped`` ->
    its status, ``KeyboardInterrupt`` -> KILLED, anything else -> FAILED) and re-raises.

    The run is recorded by the record process (:mod:`pg.record.remote`): this process
    trains while the run is created, and draws the clip while the curve and the model
    are written.  ``on_start`` gets the run's id once the run exists (at the latest when
    the generator ends); ``wait_at_end=False`` does not wait for the run's end, its
    curve or its model to be written (a sweep trains its next trial meanwhile), only for
    the calls its outcome rests on (:meth:`~pg.record.remote.RemoteRun.checkpoint`).
    """
    from pg.core.train import training

    if not cfg.tracking.enabled:
        result = yield from training(cfg)
        return Outcome(None, result.objective, result)

    from pg.core import metrics as m
    from pg.core.policy import policy_files
    from pg.curve import Curve
    from pg.record import names
    from pg.record.provenance import system_json
    from pg.record.remote import remote_tracker
    from pg.record.store import default_location

    tracker = remote_tracker(cfg.tracking)
    run_tags = {
        names.KIND: names.KIND_RUN,
        names.ENV: cfg.env.id,
        names.ALGO: cfg.algo.name,
        names.SEED: str(cfg.seed),
        names.OBJECTIVE: cfg.train.objective,
    }
    run_tags.update(tags or {})
    run = tracker.start_run(
        run_name or default_run_name(cfg), run_tags, parent_run_id, wait_at_end=wait_at_end
    )
    if on_start is not None:  # a sweep records the run id as soon as the run exists
        run.on_start(on_start)
    if cfg.tracking.system_metrics:
        run.monitor_system()
    with run:
        # Only the embedded store is found without being named.
        shown = tracker.location.display if tracker.location != default_location() else None
        run.set_reproduce_tags(shown)
        run.log_params(config_params(cfg))
        files = {**snapshot.files(), names.SYSTEM_FILE: system_json(cfg.train.torch_threads)}
        run.log_files(files, package_lock=True)
        result = yield from training(cfg, sink=run)
        run.log_metrics({m.OBJECTIVE: result.objective}, result.steps)
        run.set_tags({names.SOLVED: str(result.solved).lower(), names.STEPS: str(result.steps)})
        run.checkpoint()  # wait_at_end=False: what follows is written as the next one trains
        curve = Curve(
            result.episode_steps, result.episode_returns, result.eval_steps, result.eval_returns
        )
        run.log_learning_curve(curve, default_run_name(cfg), cfg.train.target_return)
        weights = policy_files(result.policy, result.spec)
        run.log_files({f"{names.MODEL_DIR}/{name}": data for name, data in weights.items()})
        pixels = result.spec.model == "conv"
        objective = {m.OBJECTIVE: result.objective}
        run.log_policy_model(weights, result.spec.obs_shape, pixels, objective, result.steps)
        if cfg.train.video:  # drawn here while the record process writes the above
            log_clip(run, cfg, result.policy)
    return Outcome(run.run_id, result.objective, result)


def log_clip(run: RemoteRun, cfg: Config, policy: nn.Module) -> None:
    """One greedy episode as ``media/policy.gif``, rendered after training has ended."""
    from pg.core.video import greedy_clip
    from pg.record import names

    clip = greedy_clip(cfg.env, policy, seed=cfg.seed)
    run.log_files({names.POLICY_GIF: clip.gif})
    run.set_tags(
        {
            names.VIDEO_STEPS: str(clip.steps),
            names.VIDEO_RETURN: f"{clip.episode_return:g}",
            names.VIDEO_SECONDS: f"{clip.seconds:.2f}",
        }
    )


def summary(outcome: Outcome, cfg: Config) -> list[str]:
    """What happened and where to look, for the user."""
    r = outcome.result
    solved = "solved" if r.solved else "not solved"
    lines = [
        f"{cfg.env.id} {cfg.algo.name} seed {cfg.seed}: {solved}, "
        f"{cfg.train.objective} = {outcome.objective:.1f} after {r.steps:,} env steps, "
        f"{r.episodes} episodes, {r.seconds:.1f} s of training"
    ]
    if outcome.run_id is None:
        return lines
    from pg.record.store import resolve_store

    loc = resolve_store(cfg.tracking)
    exp = cfg.tracking.experiment
    lines.append(f"MLflow run {outcome.run_id} in experiment '{exp}' at {loc.display}")
    if loc.sqlite_path is not None:
        from pg.record.names import UI_TRAINING_VIEW
        from pg.record.remote import remote_tracker

        page = f"#/experiments/{remote_tracker(cfg.tracking).experiment_id}/runs/{outcome.run_id}"
        lines.append(
            "browse it with: python -m pg.ui   (then open "
            f"http://127.0.0.1:5000/{page}{UI_TRAINING_VIEW})"
        )
    return lines
