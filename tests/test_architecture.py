"""The layout's rules, checked on the source: who may import MLflow, who may touch
Optuna's storage, and how long a module may grow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pg", "analysis", "hydra_plugins")
RECORD = ROOT / "pg" / "record"
STUDY_OWNER = ROOT / "pg" / "sweep" / "study.py"
MAX_LINES = 360  # "about 350": a module past this is doing two jobs


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_only_the_record_layer_imports_mlflow() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources()
        if RECORD not in p.parents
        and any(m == "mlflow" or m.startswith("mlflow.") for m in imported_modules(p))
    ]
    assert offenders == []
    # The rule has something to hold: the record layer does import it.
    assert any("mlflow.tracking" in imported_modules(p) for p in RECORD.glob("*.py"))


def test_the_training_core_imports_neither_mlflow_nor_optuna() -> None:
    for path in (ROOT / "pg" / "core").rglob("*.py"):
        for module in imported_modules(path):
            root = module.split(".")[0]
            assert root not in ("mlflow", "optuna"), f"{path.name} imports {module}"
            assert not module.startswith(("pg.record", "pg.sweep", "pg.experiment")), (
                f"{path.name} imports {module}"
            )


def test_one_module_touches_optuna_storage() -> None:
    offenders = []
    for path in sources():
        if path == STUDY_OWNER:
            continue
        text = path.read_text()
        tree = ast.parse(text)
        private = [
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("_storage", "_trial_id", "_study_id")
        ]
        storages = [m for m in imported_modules(path) if m.startswith("optuna.storages")]
        if private or storages:
            offenders.append((str(path.relative_to(ROOT)), private, storages))
    assert offenders == []


def test_no_module_is_too_long() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_record_names_are_defined_once() -> None:
    """Tag and artifact names are spelled in pg/record/names.py, not as literals elsewhere."""
    import re

    from pg.record import names

    spelled = {
        v
        for k, v in vars(names).items()
        if k.isupper()
        and isinstance(v, str)
        and v.startswith(("pg.", "config/", "sweep/"))
        and v not in ("pg.",)
    }
    offenders = []
    for path in sources():
        if path.parent == RECORD and path.name == "names.py":
            continue
        for literal in re.findall(
            r"[\"']((?:pg\.|config/|sweep/)[a-z_./]+)[\"']", path.read_text()
        ):
            command = (ROOT / (literal.replace(".", "/") + ".py")).is_file()  # pg.reproduce
            if literal in spelled and not command:
                offenders.append((str(path.relative_to(ROOT)), literal))
    assert offenders == []
