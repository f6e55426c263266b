"""The MLflow UI, looked at in a real (headless) Chromium: what a person sees of a sweep.

Everything here is read from the rendered page, never from the REST API: the sweep's parent
run with its trials nested under it, a trial's chart of the mean return, and the config
snapshot in the trial's artifact tree.  Screenshots land in ``test-artifacts/ui/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Store
from tests.test_server import (  # noqa: F401 - fixtures used by name
    MlflowServer,
    server,
    study_url,
    sweep_through_server,
)

SHOTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # a loaded 2-core machine renders the React app slowly

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str) -> None:
    """Skip on a laptop without the browser; in CI the browser test must really run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test: .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        unavailable("no chromium binary (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    profile = tempfile.mkdtemp(prefix="pg-chromium-")
    try:
        with sync_playwright() as pw:
            # A persistent context on a fresh directory: an explicit, throw-away profile.
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=binary,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 900},
            )
            context.set_default_timeout(TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_sweep_in_the_mlflow_ui(
    server: MlflowServer,  # noqa: F811
    study_url: str,  # noqa: F811
    fresh_store: Store,
    browser: Any,
) -> None:
    done = sweep_through_server(server, study_url, fresh_store, trials=3, study="ui")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Ids only, to build the addresses a person would click through to.
    client = server.client()
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("pg.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("pg.kind") == "trial"]
    assert len(trials) == 3
    base = f"{server.url}/#/experiments/{exp.experiment_id}"
    page = browser.new_page()

    # The runs table: only the sweep at the top level, its trials behind the expander.
    page.goto(f"{base}/runs")
    parent_link = page.locator(f'a[href$="/runs/{parent.info.run_id}"]')
    parent_link.wait_for(state="visible")
    assert parent_link.inner_text().strip() == parent.info.run_name
    trial_links = [page.locator(f'a[href$="/runs/{t.info.run_id}"]') for t in trials]
    assert all(link.count() == 0 for link in trial_links), "trials must be nested, not top-level"
    parent_row = page.locator('[role="row"]', has=parent_link)
    # The expand/collapse button MLflow draws in the run-name cell of a parent run.
    parent_row.locator('button[data-component-id*="runnamecellrenderer"]').click()
    for link in trial_links:
        link.wait_for(state="visible")
    shot(page, "01-sweep-with-nested-trials")

    # A trial's mean-return chart is drawn (a plotted line, not an empty frame).
    trial = max(trials, key=lambda r: int(r.data.tags["pg.trial_number"]))
    page.goto(f"{base}/runs/{trial.info.run_id}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("ep_return_100")
    card = page.locator(
        '[data-testid="experiment-view-compare-runs-card"]',
        has=page.locator('[title="rollout/ep_return_100"]'),
    )
    card.wait_for(state="visible")
    line = card.locator(".js-plotly-plot g.scatterlayer path.js-line")
    line.first.wait_for(state="attached")
    drawn = line.first.get_attribute("d") or ""
    assert drawn.count("L") >= 2, f"the chart has no line: d={drawn!r}"
    shot(page, "02-trial-mean-return-chart")

    # The config snapshot in the trial's artifact tree, and its content in the preview.
    page.goto(f"{base}/runs/{trial.info.run_id}/artifacts")
    page.get_by_text("config", exact=True).first.click()
    page.get_by_text("config.yaml", exact=True).first.wait_for(state="visible")
    page.get_by_text("config.yaml", exact=True).first.click()
    page.get_by_text("max_steps", exact=False).first.wait_for(state="visible")
    shot(page, "03-trial-config-artifact")
