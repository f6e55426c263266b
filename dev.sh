#!/usr/bin/env bash
# One entry point that sets everything up, then does the job:
#   ./dev.sh train [hydra overrides...]  default CartPole training, tracked in mlruns/
#   ./dev.sh test  [pytest args...]      lint, format check, type check and the test suite
#                                        (PG_TEST_WORKERS pytest workers, default 2)
#   ./dev.sh setup                       only create/refresh .venv
# The virtual environment is rebuilt only when pyproject.toml or requirements.lock change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
      echo "$candidate"
      return
    fi
  done
  echo "pg: Python >= 3.11 is required" >&2
  exit 1
}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
  fi
  local stamp
  stamp=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
  if [ "$(cat .venv/.pg-stamp 2>/dev/null)" != "$stamp" ]; then
    # torch first and exactly: a range, or a dependency asking for torch, would otherwise
    # pull the newest CUDA build (gigabytes).
    .venv/bin/python -m pip install --quiet --no-compile "torch==2.13.0"
    .venv/bin/python -m pip install --quiet --no-compile -c requirements.lock -e ".[dev]"
    # Byte-compiled here on every core (pip does it on one: half of the setup's time).
    # Some packages ship files that are not Python 3 (test data); pip skips them too.
    .venv/bin/python -m compileall -q -j 0 \
      "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
      >/dev/null 2>&1 || true
    echo "$stamp" >.venv/.pg-stamp
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup
    ;;
  train)
    setup
    exec .venv/bin/python -m pg.run "$@"
    ;;
  test)
    setup
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    # Two pytest workers, a test module each at a time: most tests wait on a command they
    # started (a run, a sweep, a server), so two keep both cores busy (~1.4x faster than
    # one). PG_TEST_WORKERS=0 runs them in this process, one after the other.
    exec .venv/bin/python -m pytest -n "${PG_TEST_WORKERS:-2}" --dist loadfile "$@"
    ;;
  *)
    echo "usage: ./dev.sh {train|test|setup} [args...]" >&2
    exit 64
    ;;
esac
