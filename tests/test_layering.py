"""The architecture's rules, checked: imports flow one way, and no TensorFlow where a fork follows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

# package -> top-level modules it must never import. `epochal/` (CLI, client, launcher) stands above everything, so
# nothing below it imports it; `infra/` (events, task publisher, redaction) stands below everything but the settings.
SERVICE = {"api", "worker", "models", "upkeep", "infra", "epochal"}
FORBIDDEN = {
    "training": SERVICE | {"config", "fastapi", "starlette", "sqlalchemy", "alembic", "celery", "kombu", "redis"},
    "infra": SERVICE - {"infra"} | {"training", "fastapi", "starlette", "sqlalchemy", "alembic"},
    "models": {"api", "worker", "upkeep", "epochal", "fastapi", "celery"},
    # The roles both api and worker run (the reaper): it is handed how to publish, and knows neither of them.
    "upkeep": {"api", "worker", "epochal", "fastapi", "starlette", "celery", "kombu"},
    "api": {"worker", "epochal"},
    "worker": {"api", "epochal", "fastapi"},
}
# Single modules with the same rule as a package: the settings import only the leaf that hides URL passwords.
FORBIDDEN_FOR_MODULE = {"config.py": SERVICE - {"infra"} | {"training", "fastapi", "sqlalchemy", "celery", "redis"}}


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


@pytest.mark.parametrize("module", sorted(FORBIDDEN_FOR_MODULE))
def test_the_settings_import_nothing_of_the_service(module: str) -> None:
    assert sorted(imported_modules(ROOT / module) & FORBIDDEN_FOR_MODULE[module]) == []
    # config may reach into infra only for the leaf that finds a URL's password, never for the redaction itself
    # (which reads the settings: a cycle).
    tree = ast.parse((ROOT / module).read_text())
    infra_modules = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("infra")
    }
    assert infra_modules <= {"infra.url_passwords"}


def test_no_router_imports_another_router() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted((ROOT / "api" / "routers").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                # A relative import from inside api/routers reaches a sibling router.
                names = [f"{'.' * node.level}{node.module or ''}"] if node.level else [node.module or ""]
            else:
                continue
            found = [name for name in names if name.startswith(("api.routers", "."))]
            if found:
                offenders.setdefault(path.name, []).extend(found)
    assert offenders == {}


@pytest.mark.parametrize("module", ["worker.tasks", "api.main", "upkeep.reaper"])
def test_loading_the_worker_or_the_api_does_not_import_tensorflow(module: str) -> None:
    # The prefork parent must stay free of TensorFlow (not fork-safe), and the API only loads it on a prediction.
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
