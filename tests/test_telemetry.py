"""pg's processes that import MLflow (the record process, the readers) report none of
MLflow's usage telemetry unless the user asks for it (pg/record/__init__.py).

MLflow turns its telemetry off by itself under CI and pytest, so each check runs in a
fresh interpreter without those markers; a dead local proxy keeps its attempts on this
machine."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# The variables by which MLflow 3 recognises CI or a test run (mlflow/telemetry/utils.py),
# and the two by which a user turns telemetry off.
MARKERS = (
    "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
    "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
    "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK",
)  # fmt: skip


def telemetry_client(imports: str, **env: str) -> str:
    """The type of MLflow's telemetry client after ``import <imports>``, outside CI."""
    environ = {k: v for k, v in os.environ.items() if k not in MARKERS}
    dead = "http://127.0.0.1:9"  # nothing listens: no request leaves the machine
    environ.update(HTTPS_PROXY=dead, HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead)
    environ.update(env)
    code = (
        f"import {imports}\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "print(type(get_telemetry_client()).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()[-1]


def test_the_record_process_imports_mlflow_with_its_telemetry_off() -> None:
    # Outside CI, MLflow alone would report: the check below is not vacuous.
    assert telemetry_client("mlflow") == "TelemetryClient"
    # The record process (python -m pg.record.service) and every reader import MLflow
    # through pg.record.
    assert telemetry_client("pg.record.service, mlflow") == "NoneType"
    assert telemetry_client("pg.record.reader, mlflow") == "NoneType"


def test_a_user_who_sets_the_variable_keeps_the_choice() -> None:
    on = telemetry_client("pg.record.service, mlflow", MLFLOW_DISABLE_TELEMETRY="false")
    assert on == "TelemetryClient"
