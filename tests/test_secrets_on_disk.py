"""A password typed in a URI on the command line is written nowhere.

PostgreSQL's trust authentication ignores the password, so the commands really run with
it; then every file they leave behind (the store, the artifacts, the study database, any
folder Hydra might have made, the console output) is searched for it byte by byte.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FAST, Store, run_module, temporary_database

SECRET = "Pa55-w0rd-17"


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{SECRET}@", 1)


def files_holding_the_secret(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]


def test_run_and_sweep_leave_no_password_on_disk(store: Store, postgres_url: str) -> None:
    artifacts = store.home / "pg-artifacts"
    tracking = with_password(postgres_url)
    common = [*FAST, f"tracking.uri={tracking}", f"tracking.artifact_root={artifacts}"]
    runs = [
        run_module("pg.run", common, store),
        run_module("pg.run", [*common, "debug.fail_at_step=1000"], store),  # the error path
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 1 and len(runs[1].stderr.strip().splitlines()) == 1
    with temporary_database("pg_secret") as study_url:
        sweep = run_module(
            "pg.run",
            [
                "-m",
                *FAST,
                "hydra.sweeper.n_trials=2",
                "hydra.sweeper.pruner.name=none",
                f"hydra.sweeper.storage={with_password(study_url)}",
                "hydra.sweeper.study_name=secret",
            ],
            store,
        )
        assert sweep.returncode == 0, sweep.stderr
    for proc in (*runs, sweep):
        assert SECRET not in proc.stdout + proc.stderr
    # Hydra wrote nothing of its own: no outputs/, multirun/, .hydra/ or run.log.
    made = {p.name for p in store.home.rglob("*")}
    assert not made & {"outputs", "multirun", ".hydra", "run.log"}
    assert any(artifacts.rglob("config.yaml"))  # pg's own redacted snapshot is there
    assert any((store.home / "mlruns" / "artifacts").rglob("config.yaml"))  # the sweep's
    assert files_holding_the_secret(store.home) == []
