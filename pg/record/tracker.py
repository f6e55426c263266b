"""A connection to one experiment of one store: where runs are created and edited.

One :class:`Tracker` per store and experiment per process (:func:`tracker_for`): a sweep
worker runs many trials, and connecting to the store costs up to a second each time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pg.record import names
from pg.record.provenance import base_tags
from pg.record.reader import Reader
from pg.record.store import (
    apply_http_client_defaults,
    check_reachable,
    file_lock,
    redact,
    resolve_store,
)
from pg.record.writer import MAX_TAG_VALUE, TrackedRun, clip

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from pg.core.config import TrackingConfig
    from pg.record.config_text import FileContent


class Tracker:
    """A connection to one MLflow store and experiment."""

    def __init__(self, cfg: TrackingConfig) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        # MLflow logs every database error with its traceback before raising it; pg reports
        # the error itself, in one line (and in the run when it can still be written).
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        self.cfg = cfg
        self.location = resolve_store(cfg)
        check_reachable(self.location, cfg.check_timeout)
        apply_http_client_defaults()
        if self.location.display != self.location.uri:
            # MLflow prints "View run at <tracking URI>/..." links, password included.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        db = self.location.sqlite_path
        lock = file_lock(db.with_suffix(".lock")) if db else contextlib.nullcontext()
        # Creating the client creates the tables of a new SQLite file; two processes doing
        # it at once fail with "table already exists", hence one process at a time.
        with lock:
            self.client: MlflowClient = MlflowClient(tracking_uri=self.location.uri)
            self.experiment_id = self._get_or_create_experiment()

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.cfg.experiment
        kind = {names.EXPERIMENT_KIND: names.EXPERIMENT_KIND_TRAINING}
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if names.EXPERIMENT_KIND not in found.tags:
                # Made by an older pg (or by hand): the UI would open it in its GenAI view.
                self.client.set_experiment_tag(found.experiment_id, *next(iter(kind.items())))
            return str(found.experiment_id)
        try:
            return str(
                self.client.create_experiment(
                    name, artifact_location=self.location.artifact_root, tags=kind
                )
            )
        except MlflowException:
            # Another machine created it between our look-up and create.
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def start_run(
        self,
        run_name: str | None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        background: bool = True,
    ) -> TrackedRun:
        all_tags = dict(base_tags())
        all_tags.update(tags or {})
        if parent_run_id:
            all_tags[names.PARENT_RUN] = parent_run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={k: clip(v, MAX_TAG_VALUE) for k, v in all_tags.items()},
        )
        return TrackedRun(self.client, run.info.run_id, self.location, background)

    # -- editing runs that exist (sweep parents, trials, reproductions) ---------------
    def reader(self) -> Reader:
        return Reader(self.location, self.client)

    def reopen(self, run_id: str, background: bool = True) -> TrackedRun | None:
        """An active run continued (a resumed sweep's parent); ``None`` if it is gone."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_run(run_id)
        except MlflowException:
            return None
        if found.info.lifecycle_stage != "active":
            return None
        self.client.update_run(run_id, status="RUNNING")
        return TrackedRun(self.client, run_id, self.location, background)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, clip(redact(value), MAX_TAG_VALUE))

    def attach(self, run_id: str, files: Mapping[str, FileContent]) -> None:
        """Upload ``{artifact path: content}`` to a run that may have ended already."""
        TrackedRun.upload(self.client, run_id, files)

    def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
        self.client.log_metric(run_id, key, value, step=step)

    def status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)

    def terminate(self, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        if tags:
            self.set_tags(run_id, tags)
        self.client.set_terminated(run_id, status)

    def trial_runs(self, study: str, number: int) -> list[tuple[str, str]]:
        """``(run_id, status)`` of every run recorded for trial ``number`` of ``study``."""
        query = f"tags.`{names.STUDY}` = '{study}' and tags.`{names.TRIAL_NUMBER}` = '{number}'"
        return [
            (r.info.run_id, r.info.status)
            for r in self.reader().search([self.experiment_id], query)
        ]

    # -- the best trial's model (the end of a sweep) ------------------------------------
    def best_model(self, run_id: str, maximize: bool) -> tuple[str, str] | None:
        from pg.record.models import best_model

        return best_model(self.client, run_id, maximize)

    def policy_files(self, model_id: str) -> dict[str, bytes]:
        """The policy files of a LoggedModel (weights and spec), as bytes."""
        import tempfile

        from pg.record.models import download_policy

        with tempfile.TemporaryDirectory(prefix="pg-best-") as tmp:
            folder = download_policy(self.client, model_id, Path(tmp))
            return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def run_tag(self, run_id: str, key: str) -> str | None:
        return self.client.get_run(run_id).data.tags.get(key)

    def register(self, name: str, model_id: str, run_id: str, tags: Mapping[str, str]) -> str:
        from pg.record.models import register

        return register(self.client, name, model_id, run_id, tags)


_trackers: dict[tuple[str | None, str], Tracker] = {}


def tracker_for(cfg: TrackingConfig) -> Tracker:
    """One MLflow connection per store and experiment, per process."""
    key = (cfg.uri, cfg.experiment)
    if key not in _trackers:
        _trackers[key] = Tracker(cfg)
    return _trackers[key]


def open_tracker() -> Tracker | None:
    """The tracker this process already opened, if any (a sweep worker's)."""
    return next(iter(_trackers.values()), None)


def attach_folder(reader: Reader, run_id: str, folder: Path, artifact_path: str) -> None:
    """Upload a folder of files (a report) to a run that already exists."""
    reader.client.log_artifacts(run_id, str(folder), artifact_path)
