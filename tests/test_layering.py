"""The architecture's rules, checked: imports flow one way, and no TensorFlow where a fork follows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

# package -> top-level modules it must never import
FORBIDDEN = {
    "training": {
        "api",
        "worker",
        "models",
        "upkeep",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "alembic",
        "celery",
        "kombu",
    },
    "models": {"api", "worker", "upkeep", "fastapi", "celery"},
    # The roles both api and worker run (the reaper): it is handed how to publish, and knows neither of them.
    "upkeep": {"api", "worker", "fastapi", "starlette", "celery", "kombu"},
    "api": {"worker"},
    "worker": {"api", "fastapi"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize("module", ["worker.tasks", "api.main", "upkeep.reaper"])
def test_loading_the_worker_or_the_api_does_not_import_tensorflow(module: str) -> None:
    # The prefork parent must stay free of TensorFlow (not fork-safe), and the API only loads it on a prediction.
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
