"""The architecture's rules, checked: imports flow one way, no TensorFlow where a fork follows, and one module
(domain/lifecycle.py) changes a job's status."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

# package -> top-level modules it must never import. `epochal/` (CLI, client, launcher) stands above everything, so
# nothing below it imports it; `infra/` (events, task publisher, redaction) stands below everything but the settings.
SERVICE = {"api", "worker", "models", "domain", "upkeep", "infra", "epochal"}
FORBIDDEN = {
    "training": SERVICE | {"config", "fastapi", "starlette", "sqlalchemy", "alembic", "celery", "kombu", "redis"},
    "infra": SERVICE - {"infra"} | {"training", "fastapi", "starlette", "sqlalchemy", "alembic"},
    "models": {"api", "worker", "upkeep", "domain", "epochal", "fastapi", "celery"},
    # The services (lifecycle, submission, quotas, access, accounts) answer with domain errors, never with HTTP.
    "domain": {"api", "worker", "upkeep", "epochal", "fastapi", "starlette", "celery"},
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


# api/'s rooms, and the rooms each may import: bodies (schemas) stand on nothing of the API; HTTP plumbing (auth,
# errors, request and rate limits, metrics, OpenAPI) on nothing but itself; serving, reports and streams on those
# two at most; only the routers reach every room, and only main.py (with ui.py and roles.py) stays at the top.
API_ROOMS = {
    "schemas": {"schemas"},
    "http": {"http"},
    "reports": {"reports", "schemas"},
    "serving": {"serving", "http", "schemas"},
    "streams": {"streams", "http"},
    "routers": {"http", "schemas", "serving", "reports", "streams"},
}
API_TOP = {"__init__.py", "main.py", "roles.py", "ui.py"}


def api_rooms_imported(path: Path) -> set[str]:
    """The rooms of api/ that a module imports (`api.http.auth` -> "http")."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    modules += [
        f"{node.module}.{alias.name}" if node.module == "api" else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        for alias in node.names
    ]
    return {module.split(".")[1] for module in modules if module.startswith("api.")}


@pytest.mark.parametrize("room", sorted(API_ROOMS))
def test_each_room_of_the_api_imports_only_the_rooms_below_it(room: str) -> None:
    paths = sorted((ROOT / "api" / room).rglob("*.py"))
    assert paths, f"api/{room}/ is gone: update API_ROOMS"
    offenders = {
        path.name: sorted(api_rooms_imported(path) - API_ROOMS[room])
        for path in paths
        if api_rooms_imported(path) - API_ROOMS[room]
    }
    assert offenders == {}


def test_the_api_folder_is_its_rooms() -> None:
    top = {path.name for path in (ROOT / "api").iterdir() if path.suffix == ".py"}
    rooms = {path.name for path in (ROOT / "api").iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert top == API_TOP
    assert rooms == set(API_ROOMS)


def test_the_room_rule_sees_an_offender(tmp_path: Path) -> None:
    offender = tmp_path / "plots.py"
    offender.write_text("from api.serving.pipeline import predict\nfrom api import routers\nimport api.http.auth\n")
    assert api_rooms_imported(offender) == {"serving", "routers", "http"}


@pytest.mark.parametrize("module", ["worker.tasks", "api.main", "upkeep.reaper"])
def test_loading_the_worker_or_the_api_does_not_import_tensorflow(module: str) -> None:
    # The prefork parent must stay free of TensorFlow (not fork-safe), and the API only loads it on a prediction.
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


# Where a job's status may be written: the lifecycle alone (migrations, which are not scanned, rewrite columns).
STATUS_SCANNED = ("api", "worker", "upkeep", "models", "domain", "infra", "epochal")
STATUS_WRITER = "domain/lifecycle.py"


def _names_status(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == "status"


def _dict_with_status(node: ast.expr) -> bool:
    return isinstance(node, ast.Dict) and any(_names_status(key) for key in node.keys)


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _is_a_status(node: ast.expr) -> bool:
    # `Status.FAILED`: a job's status as a value, whatever it is handed to.
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Status"


def status_writes(source: str, filename: str = "<source>") -> list[str]:
    """Every place in `source` that writes a job's status, as "line: what"; empty when there is none.

    A write is: `status=`, or a dict with a "status" key (written in the call, or built in a name of the module
    first), given to `.values(...)` or `update(...)`; a new `Experiment(status=...)`; `status=Status.X` handed
    to any call (a helper that writes it); `setattr(x, "status", ...)`; or an assignment to `x.status` for any
    `x` but `self` (an object's own attribute, such as the client's HTTP status of an error, is no job's).
    """
    tree = ast.parse(source, filename=filename)
    status_dicts = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and _dict_with_status(node.value)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }

    def carries_status(node: ast.expr) -> bool:
        return _dict_with_status(node) or (isinstance(node, ast.Name) and node.id in status_dicts)

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if name in ("values", "update", "Experiment"):
                named = any(k.arg == "status" or (k.arg is None and carries_status(k.value)) for k in node.keywords)
                in_dict = name != "Experiment" and any(carries_status(a) for a in node.args)
                if named or in_dict:
                    found.append(f"{node.lineno}: status given to {name}(...)")
            elif any(k.arg == "status" and _is_a_status(k.value) for k in node.keywords):
                found.append(f"{node.lineno}: a job's status handed to {name}(...)")
            elif name == "setattr" and len(node.args) > 1 and _names_status(node.args[1]):
                found.append(f"{node.lineno}: setattr of status")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        while targets:
            target = targets.pop()
            if isinstance(target, ast.Tuple | ast.List):
                targets.extend(target.elts)
            elif isinstance(target, ast.Starred):
                targets.append(target.value)
            elif (
                isinstance(target, ast.Attribute)
                and target.attr == "status"
                and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            ):
                found.append(f"{target.lineno}: assignment to {ast.unparse(target)}")
    return found


def status_writers(root: Path, packages: tuple[str, ...] = STATUS_SCANNED) -> dict[str, list[str]]:
    """The modules under `root` (in `packages`) that write a job's status outside the lifecycle, with where."""
    writers = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name != STATUS_WRITER and (writes := status_writes(path.read_text(), name)):
                writers[name] = writes
    return writers


def test_the_lifecycle_is_the_only_writer_of_a_jobs_status() -> None:
    assert status_writers(ROOT) == {}
    # The scan reads the lifecycle's own writes: a checker that found nothing anywhere would pass above.
    assert len(status_writes((ROOT / STATUS_WRITER).read_text())) >= 5


@pytest.mark.parametrize(
    "offender",
    [
        "session.execute(update(Experiment).where(Experiment.id == 1).values(status=Status.FAILED))",
        "statement = update(Experiment).values({'status': 'failed', 'error': 'x'})",
        "statement = update(Experiment).values(**{'status': 'failed'})",
        "session.query(Experiment).update({'status': 'failed'})",
        "experiment.status = Status.CANCELLED",
        "row.status, row.error = Status.FAILED, 'broker down'",
        "(first, *rest)[0].status = 'queued'",
        "session.add(Experiment(name='x', status=Status.RUNNING))",
        "setattr(experiment, 'status', 'failed')",
        "_fence(session, job, status=Status.QUEUED, lease_expires_at=None)",
        "values = {'status': status, 'lease_expires_at': None}\nupdate(Experiment).values(**values)",
        "changes: dict[str, object] = {'status': 'failed'}\nsession.execute(update(Experiment).values(changes))",
        "def f(e: Experiment) -> None:\n    e.status: Status = Status.QUEUED",
    ],
)
def test_the_status_check_finds_a_planted_writer(offender: str, tmp_path: Path) -> None:
    assert status_writes(offender), offender
    planted = tmp_path / "api" / "routers" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"from models import Experiment\n\n\n{offender}\n")
    assert list(status_writers(tmp_path)) == ["api/routers/planted.py"]


@pytest.mark.parametrize(
    "innocent",
    [
        "update(Experiment).where(Experiment.status == Status.RUNNING).values(cancel_requested=True)",
        "select(Experiment).where(Experiment.status.in_(ACTIVE))",
        "events.status(1, None, 'failed', error='x')",
        "payload = {'experiment_id': 1, 'status': 'running'}",
        "class ApiError(Exception):\n    def __init__(self, status: int) -> None:\n        self.status = status",
        "HealthRead(status='ok', database='ok')",
        "ExperimentRead(id=row.id, status=row.status)",
    ],
)
def test_the_status_check_leaves_reads_and_other_statuses_alone(innocent: str) -> None:
    assert status_writes(innocent) == []
