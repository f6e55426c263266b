"""Reading the record back: runs, children, histories, artifacts and config snapshots.

``pg.reproduce``, ``analysis`` and the sweep's end-of-study steps all read through one
:class:`Reader`, so a store that answers slowly, a missing run or an artifact that is not
there is handled one way everywhere.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg.compare import Histories, Point
from pg.record import names
from pg.record.store import (
    StoreLocation,
    TrackingUnavailableError,
    apply_http_client_defaults,
    check_reachable,
    location_for,
)

if TYPE_CHECKING:
    from mlflow.entities import Experiment as Experiment
    from mlflow.entities import Run as Run
    from mlflow.tracking import MlflowClient

PAGE = 1000  # MLflow's largest search page on every backend
PROBE_TIMEOUT = 5.0  # seconds to decide that a store does not answer


def ran_to_end(status: str, tags: dict[str, str]) -> bool:
    """Training ran its whole budget: FINISHED and not stopped early.

    A pruned trial ends FINISHED too (KILLED in older stores) but carries
    ``pg.stopped``: its final metrics describe a run cut short, not a configuration.
    """
    return status == "FINISHED" and names.STOPPED not in tags


class RecordError(Exception):
    """The record cannot answer what was asked (no such store, run or experiment)."""


class Reader:
    """Read access to one store; creates nothing."""

    def __init__(self, location: StoreLocation, client: MlflowClient | None = None) -> None:
        self.location = location
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=location.uri)
        self.client = client

    @classmethod
    def open(cls, uri: str | None = None, *, probe: bool = True, must_exist: bool = True) -> Reader:
        """The store at ``uri`` (default: the one ``pg.run`` writes to), checked quickly.

        An embedded store that does not exist is an error rather than a new empty file:
        a reader never creates a store as a side effect of a typo.
        """
        from pg.core.config import ConfigError

        try:
            location = location_for(uri)
        except ConfigError as exc:  # a URI MLflow cannot use: the option is --tracking-uri
            raise RecordError(str(exc).replace("tracking.uri=", "--tracking-uri ", 1)) from None
        path = location.sqlite_path
        if must_exist and path is not None and not path.is_file():
            raise RecordError(
                f"no MLflow store at {location.display} (give --tracking-uri or PG_HOME)"
            )
        apply_http_client_defaults()
        if probe:
            try:
                check_reachable(location, PROBE_TIMEOUT)
            except TrackingUnavailableError as exc:
                raise RecordError(str(exc)) from None
        return cls(location)

    @property
    def display(self) -> str:
        return self.location.display

    # -- runs and experiments -------------------------------------------------------
    def run(self, run_id: str) -> Run:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
                raise RecordError(f"no run with id {run_id!r} in {self.display}") from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecordError(f"cannot read run {run_id!r} from {self.display}: {first}") from None

    def experiment(self, name: str) -> Experiment:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            known = sorted(e.name for e in self.client.search_experiments())
            raise RecordError(
                f"no experiment named {name!r} in {self.display}"
                + (f" (known: {', '.join(known)})" if known else " (the store is empty)")
            )
        return exp

    def experiment_ids(self) -> list[str]:
        return [str(e.experiment_id) for e in self.client.search_experiments()]

    def experiment_name(self, experiment_id: str) -> str:
        return str(self.client.get_experiment(experiment_id).name)

    def search(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        *,
        order_by: list[str] | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Every matching active run, page by page (one call stops at ``max_results``)."""
        from mlflow.entities import ViewType

        runs: list[Run] = []
        token: str | None = None
        while True:
            page = self.client.search_runs(
                list(experiment_ids),
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE if limit is None else min(PAGE, limit - len(runs)),
                order_by=order_by,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token or (limit is not None and len(runs) >= limit):
                return runs

    def children(self, run: Run) -> list[Run]:
        return self.search(
            [run.info.experiment_id], f"tags.`{names.PARENT_RUN}` = '{run.info.run_id}'"
        )

    # -- metrics --------------------------------------------------------------------
    def history(self, run_id: str, key: str) -> list[Point]:
        return [(int(m.step), float(m.value)) for m in self.client.get_metric_history(run_id, key)]

    def histories(self, run_id: str, keys: Iterable[str]) -> Histories:
        """Every (step, value) of each metric: one ``get_metric_history`` call per key.

        MLflow 3.17's client has no batch history call (``get_metric_history_bulk`` exists
        only as a store method and an ajax endpoint), and a run has a few dozen keys.
        """
        return {key: self.history(run_id, key) for key in keys}

    def last_step(self, run: Run) -> int | None:
        """The largest env step any metric of ``run`` reached."""
        steps = [
            h[-1][0] for h in (self.history(run.info.run_id, k) for k in run.data.metrics) if h
        ]
        return max(steps) if steps else None

    # -- artifacts ------------------------------------------------------------------
    def text(self, run_id: str, path: str) -> str | None:
        """The artifact's text, or ``None`` when the run has no such artifact."""
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        try:
            listed = {f.path for f in self.client.list_artifacts(run_id, parent or None)}
        except Exception:
            return None
        if path not in listed:
            return None
        with tempfile.TemporaryDirectory(prefix="pg-read-") as tmp:
            local = self.client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text(errors="replace")

    def json(self, run_id: str, path: str) -> dict[str, Any] | None:
        text = self.text(run_id, path)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(dst)))

    def artifact_paths(self, run_id: str, folder: str | None = None) -> list[str]:
        return [f.path for f in self.client.list_artifacts(run_id, folder)]
