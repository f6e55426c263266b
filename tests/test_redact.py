"""Secrets in tracking URIs never reach the run record."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pg.core.config import Config, TrackingConfig
from pg.experiment import Snapshot
from pg.record.config_text import ConfigText, written_files
from pg.record.provenance import command_line
from pg.record.store import redact
from pg.record.tracker import Tracker

SECRET = "s3cr3tPw"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
        (
            "mysql+pymysql://u:p@h/db?password=x",
            "mysql+pymysql://u:***@h/db?password=***",
        ),
        ("https://u:tok@mlflow.example.com", "https://u:***@mlflow.example.com"),
        ("http://h:5000/?token=abc&x=1", "http://h:5000/?token=***&x=1"),
        ("postgresql://user:p%40ss@host/db", "postgresql://user:***@host/db"),
    ],
)
def test_redact_hides_passwords(uri: str, expected: str) -> None:
    assert redact(uri) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://user@host/db",
        "sqlite:////tmp/x/mlflow.db",
        "http://127.0.0.1:5000",
        "algo.lr=0.01 seed=3",
    ],
)
def test_redact_leaves_secret_free_text_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_inside_longer_text() -> None:
    text = f"uri: postgresql://me:{SECRET}@db.internal/runs\nexperiment: pg\n"
    out = redact(text)
    assert SECRET not in out
    assert "postgresql://me:***@db.internal/runs" in out and "experiment: pg" in out


def test_snapshot_files_redact_the_tracking_uri() -> None:
    uri = f"postgresql://me:{SECRET}@db.internal:5432/mlflow"
    cfg = Config(tracking=TrackingConfig(uri=uri))
    snap = Snapshot.from_config(cfg, [f"tracking.uri={uri}", "seed=0"])
    for hydra in (
        f"hydra:\n  overrides:\n    task:\n    - tracking.uri={uri}\n",  # read from a store
        ConfigText.of(OmegaConf.create({"overrides": {"task": [f"tracking.uri={uri}"]}})),
    ):
        snap.hydra_yaml = hydra
        files = written_files(snap.files())  # as the record process writes them
        assert set(files) == {"config/config.yaml", "config/overrides.yaml", "config/hydra.yaml"}
        for name, content in files.items():
            text = content.decode() if isinstance(content, bytes) else content
            assert SECRET not in text, name
            assert "me:***@db.internal" in text, name


def test_params_and_tags_written_to_a_real_store_are_redacted(tmp_path: Path) -> None:
    uri = f"postgresql://me:{SECRET}@db.internal/mlflow"
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    run = tracker.start_run("redact", {"pg.kind": "run"})
    with run:
        run.log_params({"tracking.uri": uri, "seed": "0"})
        run.set_tags({"pg.note": f"trained against {uri}"})
    stored = tracker.client.get_run(run.run_id)
    assert stored.data.params["tracking.uri"] == "postgresql://me:***@db.internal/mlflow"
    assert SECRET not in stored.data.tags["pg.note"]
    assert stored.info.status == "FINISHED"


def test_command_line_tag_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [f"tracking.uri=postgresql://me:{SECRET}@h/db", "seed=1"]
    monkeypatch.setattr("sys.argv", ["pg/run.py", *argv])
    monkeypatch.setattr("sys.orig_argv", ["python", "-m", "pg.run", *argv])
    line = command_line()
    assert SECRET not in line and "seed=1" in line
    assert line.startswith("python -m pg.run ")
