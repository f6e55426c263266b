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
    # Through the server too: the best trial's clip and its logged model.
    best = client.get_run(parent.data.tags["pg.best_run_id"])
    assert [f.path for f in client.list_artifacts(best.info.run_id, "media")] == [
        "media/policy.gif"
    ]
    assert len(best.outputs.model_outputs) == 1
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


# -- the story a sweep tells (issue: named trials, pruned is not failed, model, clip) -----
@pytest.fixture
def ui_of(store: Store) -> Iterator[Any]:
    """``python -m pg.ui`` on the store, stopped (with its server worker) afterwards."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from tests.test_server import free_port

    def start() -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pg.ui", "--port", str(port)],
            cwd=store.home,
            env=store.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return url
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None, "pg.ui exited early"
            assert time.monotonic() < deadline, "pg.ui did not answer in 120 s"
            time.sleep(0.5)

    started: list[Any] = []
    try:
        yield start
    finally:
        for proc in started:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_the_sweep_tells_its_story_in_the_ui(store: Store, ui_of: Any, browser: Any) -> None:
    from tests.conftest import run_module
    from tests.test_ui_story import PRUNING, TINY

    done = run_module("pg.run", ["-m", *TINY, *PRUNING], store)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = store.client()
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["pg.kind"] == "sweep"]
    trials = [r for r in runs if r.data.tags["pg.kind"] == "trial"]
    pruned = [r for r in trials if r.data.tags["pg.trial_state"] == "PRUNED"]
    best_id = parent.data.tags["pg.best_run_id"]
    assert len(trials) == 5 and len(pruned) == 3
    url = ui_of()
    view = "?workflowType=machine_learning"  # what the links pg prints carry
    base = f"{url}/#/experiments/{exp.experiment_id}"
    page = browser.new_page()

    # The model-training view: runs, models and the registry; no GenAI judges or sessions.
    page.goto(f"{base}{view}")
    page.get_by_role("link", name="Model registry").first.wait_for(state="visible")
    assert page.get_by_text("Judges", exact=True).count() == 0
    close_assistant(page)

    # Distinct trial names with their numbers, under the parent "sweep cartpole_reinforce".
    page.goto(f"{base}/runs{view}")
    parent_link = page.locator(f'a[href*="/runs/{parent.info.run_id}"]')
    parent_link.wait_for(state="visible")
    assert parent_link.inner_text().strip() == "sweep cartpole_reinforce"
    parent_row = page.locator('[role="row"]', has=parent_link)
    parent_row.locator('button[data-component-id*="runnamecellrenderer"]').click()
    shown = []
    for trial in trials:
        link = page.locator(f'a[href*="/runs/{trial.info.run_id}"]')
        link.wait_for(state="visible")
        shown.append(link.inner_text().strip())
    assert len(set(shown)) == 5, shown
    numbers = sorted(int(name.split()[0][1:]) for name in shown)
    assert numbers == [0, 1, 2, 3, 4], shown
    close_assistant(page)
    widen_run_names(page)
    shot(page, "04-sweep-run-table")

    # A pruned trial: status Finished, not the red Killed.
    page.goto(f"{base}/runs/{pruned[0].info.run_id}{view}")
    close_assistant(page)
    status = page.get_by_text("Status", exact=True).first
    status.wait_for(state="visible")
    row_text = status.locator("xpath=ancestor::*[2]").inner_text()
    assert "Finished" in row_text and "Killed" not in row_text and "Failed" not in row_text
    shot(page, "05-pruned-trial-finished")

    # The best trial: its logged model, named "policy", in the run's "Logged models".
    page.goto(f"{base}/runs/{best_id}{view}")
    close_assistant(page)
    page.get_by_text("Logged models (1)").first.wait_for(state="visible")
    assert page.get_by_role("link", name="policy").count() >= 1
    shot(page, "06-best-trial-logged-model")

    # ... and the clip of its policy in the artifact viewer.
    page.goto(f"{base}/runs/{best_id}/artifacts{view}")
    close_assistant(page)
    page.get_by_text("media", exact=True).first.click()
    page.get_by_text("policy.gif", exact=True).first.click()
    image = page.locator('img[src^="blob:"]').first
    image.wait_for(state="visible")
    width = image.evaluate("img => img.naturalWidth")
    assert width > 100, f"the GIF did not render (naturalWidth={width})"
    close_assistant(page)
    shot(page, "07-best-trial-policy-gif")


def close_assistant(page: Any) -> None:
    """The MLflow Assistant side panel covers a third of every screenshot."""
    close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():
        close.first.click()
        close.first.wait_for(state="hidden")


def widen_run_names(page: Any) -> None:
    """Drag the Run Name column wider so the trial names show whole in the screenshot."""
    header = page.locator('[role="columnheader"][col-id*="Run Name"]').first
    handle = header.locator(".ag-header-cell-resize")
    box = handle.bounding_box()
    if box is None:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 260, y, steps=5)
    page.mouse.up()
