"""The policy as an MLflow 3 LoggedModel, and the Model Registry.

Every finished training run logs its policy as a LoggedModel linked to the run (the UI's
"Models" column and the run's "Logged models" show it, with the run's objective as its
metric).  The model is a pyfunc logged from code (:mod:`pg.record.policy_model`), so
``mlflow.pyfunc.load_model(uri).predict(observations)`` returns actions and loading
executes no pickled code; ``pg``'s own loader reads the same files
(:func:`download_policy` + :func:`pg.core.policy.load_policy`).

Everything goes through an explicit ``MlflowClient``: MLflow's ``log_model`` would use the
process-global tracking URI and active experiment, which a sweep worker does not set.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pg.core.metrics import OBJECTIVE
from pg.record import names

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

CODE_FILE = Path(__file__).with_name("policy_model.py")


@functools.cache
def _requirements() -> tuple[str, ...]:
    """Pinned by hand: MLflow's inference would import the model in a subprocess (~10 s).
    Read once per process: each read walks the import path's distributions."""
    from importlib.metadata import version

    return tuple(f"{p}=={version(p)}" for p in ("mlflow", "torch", "numpy", "gymnasium"))


def _signature(obs_shape: tuple[int, ...], pixels: bool) -> object:
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema, TensorSpec

    dtype = np.dtype(np.uint8) if pixels else np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(dtype, (-1, *obs_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]),
    )


def log_policy_model(
    client: MlflowClient,
    run_id: str,
    files: Mapping[str, str | bytes],
    *,
    obs_shape: tuple[int, ...],
    pixels: bool,
    metrics: Mapping[str, float],
    step: int,
) -> str:
    """Log the policy ``files`` (weights + spec) as a LoggedModel of ``run_id``; its id."""
    import os

    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    # Copying the weights into the model would draw a progress bar per run.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    experiment_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(
        experiment_id,
        name=names.MODEL_NAME,
        source_run_id=run_id,
        model_type=names.MODEL_TYPE,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="pg-model-") as tmp:
            local = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=model.artifact_location,
                run_id=run_id,
                model_id=model.model_id,
                model_uuid=model.model_id,
            )
            _save(local, files, obs_shape, pixels, mlflow_model)
            client.log_model_artifacts(model.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    client.log_batch(run_id, metrics=_linked(client, run_id, metrics, step, model.model_id))
    return str(model.model_id)


def _save(
    local: Path,
    files: Mapping[str, str | bytes],
    obs_shape: tuple[int, ...],
    pixels: bool,
    mlflow_model: object | None,
) -> None:
    """The pyfunc model folder at ``local`` (``files`` as its policy artifact)."""
    import warnings

    import mlflow.pyfunc

    policy_dir = local.parent / names.MODEL_POLICY_ARTIFACT
    policy_dir.mkdir()
    for name, content in files.items():
        target = policy_dir / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    with warnings.catch_warnings():
        # The signature is given: MLflow's advice to add an input example is moot.
        warnings.filterwarnings("ignore", message=".*input example")
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=str(CODE_FILE),
            artifacts={names.MODEL_POLICY_ARTIFACT: str(policy_dir)},
            signature=_signature(obs_shape, pixels),  # type: ignore[arg-type]
            pip_requirements=list(_requirements()),
            mlflow_model=mlflow_model,  # type: ignore[arg-type]
        )


def skip_dependency_scan() -> None:
    """Spare the first model save its map of every installed distribution (~0.5 s).

    MLflow checks a model's pinned requirements against the installed packages with it;
    pg pins the installed versions themselves (``models._requirements``), so the check
    has nothing to find, and the map only serves requirement inference, which this
    record process never does.  For the same reason the check itself is skipped: it looks
    each pinned version up again on every save.  (If MLflow drops either, this does
    nothing.)"""
    import mlflow.utils.environment as environment
    import mlflow.utils.requirements_utils as requirements

    if getattr(requirements, "_MODULES_TO_PACKAGES", {}) is None:
        setattr(requirements, "_MODULES_TO_PACKAGES", {})  # noqa: B010 - typed None
    if hasattr(environment, "warn_dependency_requirement_mismatches"):
        environment.warn_dependency_requirement_mismatches = _no_check


def _no_check(model_requirements: list[str]) -> None:
    """In place of MLflow's check of a saved model's pins against the installed versions."""


def warm_up() -> None:
    """Save a model nobody logs: MLflow's first save in a process reads every installed
    distribution's metadata (~0.7 s), which a run's record process does while it waits
    for the training rather than after it."""
    with tempfile.TemporaryDirectory(prefix="pg-model-warm-") as tmp:
        _save(Path(tmp) / "model", {"spec.json": "{}"}, (1,), False, None)


def _linked(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int, model_id: str
) -> list[Metric]:
    """The run's own rows of ``metrics`` at ``step``, again, now naming the model.

    Same key, timestamp, step and value as the row already stored, so the run's history
    keeps one row (what MLflow's ``log_model`` does too); a new timestamp would add a
    second ``objective`` row and make a reproduction differ from its source.
    """
    from mlflow.entities import Metric

    rows = []
    for key, value in metrics.items():
        stored = [m for m in client.get_metric_history(run_id, key) if m.step == step]
        stamp = stored[-1].timestamp if stored else int(time.time() * 1000)
        rows.append(Metric(key, float(value), stamp, step, model_id=model_id))
    return rows


def model_uri(model_id: str) -> str:
    return f"models:/{model_id}"


def run_model_ids(client: MlflowClient, run_id: str) -> list[str]:
    """The LoggedModels a run produced (its outputs), oldest first."""
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    return [str(o.model_id) for o in outputs]


def download_policy(client: MlflowClient, model_id: str, dst: Path) -> Path:
    """The folder of pg's own policy files in a LoggedModel, for ``load_policy``."""
    from mlflow.artifacts import download_artifacts

    root = client.get_logged_model(model_id).artifact_location
    uri = f"{root}/artifacts/{names.MODEL_POLICY_ARTIFACT}"
    # The client's own store: an ``mlflow-artifacts:`` location (a tracking server's) is
    # resolved through it, not through the process-global tracking URI.
    return Path(
        download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=client.tracking_uri)
    )


MODEL_WAIT = 30.0  # seconds a trial's record may still be writing its model


def best_model(
    client: MlflowClient, run_id: str, maximize: bool, wait: float = MODEL_WAIT
) -> tuple[str, str] | None:
    """``(run id, model id)`` of the policy that stands for a trial run.

    A single-seed trial run trained the policy itself; a multi-seed trial run holds only
    the mean, so its seed run with the best ``objective`` stands for it.

    A trial is told COMPLETE before its record process has written its model (that is
    written while the next trial trains), so another machine's sweep can ask for the best
    trial's model in between: while the trial's run or one of its seed runs is still
    RUNNING, this asks again for up to ``wait`` seconds (a machine that died leaves its
    run RUNNING: then there is no model to wait for).
    """
    deadline = time.monotonic() + wait
    while True:
        found = _best_model(client, run_id, maximize)
        if found is not None or time.monotonic() >= deadline:
            return found
        if not _still_writing(client, run_id):
            return _best_model(client, run_id, maximize)  # it may have ended just now
        time.sleep(0.2)


def _still_writing(client: MlflowClient, run_id: str) -> bool:
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        return True
    children = client.search_runs(
        [run.info.experiment_id],
        f"tags.`{names.PARENT_RUN}` = '{run_id}' and attributes.status = 'RUNNING'",
        max_results=1,
    )
    return bool(children)


def _best_model(client: MlflowClient, run_id: str, maximize: bool) -> tuple[str, str] | None:
    own = run_model_ids(client, run_id)
    if own:
        return run_id, own[-1]
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`{names.PARENT_RUN}` = '{run_id}'", max_results=1000
    )
    scored = [
        (float(c.data.metrics[OBJECTIVE]), c.info.run_id)
        for c in children
        if OBJECTIVE in c.data.metrics and run_model_ids(client, c.info.run_id)
    ]
    if not scored:
        return None
    _, best = max(scored) if maximize else min(scored)
    return best, run_model_ids(client, best)[-1]


def register(
    client: MlflowClient, name: str, model_id: str, run_id: str, tags: Mapping[str, str]
) -> str:
    """A new version of registered model ``name`` pointing at LoggedModel ``model_id``."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # The model's own artifact location as source: a ``models:/`` source would be looked
    # up through the process-global tracking URI, not this client's store.
    source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags=dict(tags), model_id=model_id
    )
    return str(version.version)
