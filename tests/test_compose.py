"""docker-compose.yml and the Dockerfile: the production topology starts the service the one way it starts.

Every command in the compose file is compared element by element with `epochal.commands`, and what
each command names (the ASGI app, the Celery app, the Alembic revisions) is imported or loaded for
real. Settings, URLs, volumes, healthcheck and start-up order are checked against the code that reads
them. Nothing here needs Docker; `scripts/check-compose` validates the file against the Compose schema.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from celery import Celery
from fastapi import FastAPI
from kombu import Connection
from sqlalchemy.engine import make_url

from config import TRAIN_TASK_NAME, Settings
from epochal.commands import api_argv, flower_argv, migrate_argv, worker_argv

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The one definition of each start command, keyed by the compose service that runs it.
EXPECTED_COMMANDS: dict[str, list[str]] = {
    "migrate": migrate_argv(),
    "api": api_argv("0.0.0.0", 8000),
    "worker": worker_argv("gpu", concurrency=1),
    "worker-cpu": worker_argv("training", concurrency=1),
    "flower": flower_argv(5555),
}
PROJECT_SERVICES = sorted(EXPECTED_COMMANDS)
SERVICES = {"postgres", "redis", *EXPECTED_COMMANDS}
WORKERS = ("worker", "worker-cpu")
DATA_SERVICES = ("api", *WORKERS)

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))
SETTINGS_VARIABLES = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")
# What a test substitutes for a `${VAR:?message}` the deployer must set: a value of the required shape.
REQUIRED_STAND_INS = {
    "EPOCHAL_FLOWER_BASIC_AUTH": "deployer:chosen-password",
    # docker-compose.worker.yml: where the main host's database and broker are.
    "EPOCHAL_DATABASE_URL": "postgresql+psycopg://epochal:chosen-password@10.0.0.5:5432/epochal",
    "EPOCHAL_BROKER_URL": "redis://10.0.0.5:6379/0",
}
FLOWER_ONLY = {"EPOCHAL_FLOWER_BASIC_AUTH"}  # settings only Flower reads


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def resolve(value: str) -> str:
    """A compose value with `${VAR:-default}` replaced by the file's own default (not this shell's).

    A required `${VAR:?message}` has no default by design: a stand-in of the right shape is used.
    """

    def substitute(match: re.Match[str]) -> str:
        if (match.group("operator") or "").endswith("?"):
            return REQUIRED_STAND_INS[match.group("name")]
        return match.group("argument") or ""

    return INTERPOLATION.sub(substitute, value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either compose form (mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): resolve(str(value)) for key, value in env.items()}


def environment_blocks(node: object) -> Iterator[dict[str, Any] | list[str]]:
    """Every `environment` block anywhere in the document, extension fields included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "environment" and isinstance(value, dict | list):
                yield value
            yield from environment_blocks(value)
    elif isinstance(node, list):
        for item in node:
            yield from environment_blocks(item)


def option(argv: list[str], name: str) -> str:
    """The value after `name` in an argument list (`--name value` or `--name=value`)."""
    for index, arg in enumerate(argv):
        if arg == name:
            return argv[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port, from short `"host:container"` strings."""
    ports = {}
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 1)
        ports[int(container)] = int(host.rsplit(":", 1)[-1])
    return ports


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, from short `"source:target[:mode]"` strings."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target, *_mode = str(entry).split(":")
        mounts[target] = source
    return mounts


# --- the topology -------------------------------------------------------------------------------------


def test_services_are_the_production_topology(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    assert services["worker-cpu"].get("profiles") == ["cpu"]
    # Everything else starts with a plain `docker compose up`.
    assert [name for name, service in services.items() if "profiles" in service] == ["worker-cpu"]


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_command_is_the_one_start_command(services: dict[str, dict[str, Any]], name: str) -> None:
    command = services[name]["command"]
    # Exec (list) form, compared element by element: no shell, no second way to start anything.
    assert isinstance(command, list)
    assert all(isinstance(arg, str) for arg in command), command
    assert command == EXPECTED_COMMANDS[name]


def test_only_project_services_are_built_from_this_repository(services: dict[str, dict[str, Any]]) -> None:
    built = {name for name, service in services.items() if "build" in service}
    assert built == set(EXPECTED_COMMANDS)
    for name in built:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
        assert services[name]["image"].startswith("epochal:")


def test_only_the_gpu_worker_gets_gpu_tensorflow(services: dict[str, dict[str, Any]]) -> None:
    extras = {name: services[name]["build"].get("args", {}).get("TENSORFLOW_EXTRA", "") for name in EXPECTED_COMMANDS}
    assert extras.pop("worker") == "and-cuda"
    assert set(extras.values()) == {""}
    # Two flavours, two image names: a CPU build never overwrites the GPU image or the reverse.
    assert services["worker"]["image"] not in {services[name]["image"] for name in extras}


# --- what each command names is real ------------------------------------------------------------------


def test_api_launcher_serves_the_fastapi_app_on_the_published_port(services: dict[str, dict[str, Any]]) -> None:
    command = services["api"]["command"]
    assert command[:3] == ["python", "-m", "epochal.api_server"]
    launcher = importlib.import_module(command[2])
    module_name, attribute = launcher.APP_FACTORY.split(":")
    app = getattr(importlib.import_module(module_name), attribute)()
    assert isinstance(app, FastAPI)
    assert option(command, "--host") == "0.0.0.0"
    port = int(option(command, "--port"))
    assert published_ports(services["api"]) == {port: port}


@pytest.mark.parametrize("name", ["worker", "worker-cpu", "flower"])
def test_celery_target_is_the_celery_app_with_the_training_task(services: dict[str, dict[str, Any]], name: str) -> None:
    command = services[name]["command"]
    assert command[0] == "celery"
    module = importlib.import_module(option(command, "-A"))
    app = module.app
    assert isinstance(app, Celery)
    app.loader.import_default_modules()
    assert TRAIN_TASK_NAME in app.tasks


def test_flower_port_is_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    port = int(option(services["flower"]["command"], "--port"))
    assert published_ports(services["flower"]) == {port: port}
    # Flower can revoke jobs: reachable from this host (an SSH tunnel, a TLS proxy), never from the network.
    assert [str(entry) for entry in services["flower"]["ports"]] == [f"127.0.0.1:{port}:{port}"]


def test_flower_requires_a_login_and_ships_none(services: dict[str, dict[str, Any]]) -> None:
    command = services["flower"]["command"]
    assert (ROOT / option(command, "--conf")).is_file()
    raw = services["flower"]["environment"]["EPOCHAL_FLOWER_BASIC_AUTH"]
    # `${VAR:?message}`: compose refuses to start anything while it is unset; there is no default to leak.
    match = INTERPOLATION.fullmatch(raw)
    assert match is not None
    assert (match.group("name"), match.group("operator")) == ("EPOCHAL_FLOWER_BASIC_AUTH", ":?")
    assert "user:password" in match.group("argument")
    others = [name for name in PROJECT_SERVICES if name != "flower"]
    assert all(FLOWER_ONLY.isdisjoint(environment_of(services[name])) for name in others)


def test_alembic_upgrade_head_has_revisions_to_apply(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"][:2] == ["alembic", "upgrade"]
    script = ScriptDirectory.from_config(AlembicConfig(str(ROOT / "alembic.ini")))
    assert Path(script.dir) == ROOT / "migrations"
    assert list(script.walk_revisions())
    assert len(script.get_heads()) == 1, "several heads: `alembic upgrade head` would refuse to run"


# --- settings -----------------------------------------------------------------------------------------


def test_every_epochal_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    names: set[str] = set()
    for block in environment_blocks(compose):
        keys = block if isinstance(block, dict) else [item.split("=", 1)[0] for item in block]
        names |= {str(key) for key in keys if str(key).startswith(ENV_PREFIX)}
    # Interpolations such as ${EPOCHAL_X:-y} read the variable from the shell: those must be real too.
    names |= set(re.findall(rf"\b{ENV_PREFIX}\w+", COMPOSE_FILE.read_text()))
    assert {"EPOCHAL_DATABASE_URL", "EPOCHAL_BROKER_URL", "EPOCHAL_DATA_DIR"} <= names
    assert names <= SETTINGS_VARIABLES, f"not settings fields: {sorted(names - SETTINGS_VARIABLES)}"


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_settings_accept_the_service_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    env = environment_of(services[name])
    assert {"EPOCHAL_DATABASE_URL", "EPOCHAL_BROKER_URL"} <= set(env)
    fields = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in env.items() if key.startswith(ENV_PREFIX)}
    settings = Settings(**fields)  # type: ignore[arg-type]  # strings, as the environment gives them; runs the same validators as the service's get_settings()
    assert settings.database_url == env["EPOCHAL_DATABASE_URL"]
    assert settings.broker_url == env["EPOCHAL_BROKER_URL"]


def test_project_services_share_one_environment(services: dict[str, dict[str, Any]]) -> None:
    # The same settings everywhere, but for Flower's login, which only Flower is given.
    environments = [
        {key: value for key, value in environment_of(services[name]).items() if key not in FLOWER_ONLY}
        for name in PROJECT_SERVICES
    ]
    assert all(env == environments[0] for env in environments)


def test_database_url_is_psycopg_on_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    url = make_url(environment_of(services["api"])["EPOCHAL_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert url.get_dialect().driver == "psycopg"  # the installed driver SQLAlchemy will load
    postgres_env = environment_of(services["postgres"])
    assert url.host == "postgres"
    assert url.port == 5432
    assert (url.username, url.password, url.database) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        postgres_env["POSTGRES_DB"],
    )
    assert postgres_env["POSTGRES_USER"] in services["postgres"]["healthcheck"]["test"]


def test_broker_url_is_redis_on_the_redis_service(services: dict[str, dict[str, Any]]) -> None:
    url = environment_of(services["api"])["EPOCHAL_BROKER_URL"]
    parsed = urlparse(url)
    assert parsed.scheme == "redis"
    assert (parsed.hostname, parsed.port) == ("redis", 6379)
    assert Connection(url).transport.driver_type == "redis"  # kombu's Redis transport, as Celery will use


def test_default_queue_is_consumed_by_a_worker_that_starts_by_default(services: dict[str, dict[str, Any]]) -> None:
    queue = environment_of(services["api"])["EPOCHAL_DEFAULT_QUEUE"]
    consumed = {option(services[name]["command"], "--queues") for name in WORKERS if "profiles" not in services[name]}
    assert queue in consumed, f"experiments that name no queue go to {queue!r}, which no default worker consumes"


def test_cpu_worker_consumes_the_servers_own_default_queue(services: dict[str, dict[str, Any]]) -> None:
    assert option(services["worker-cpu"]["command"], "--queues") == Settings.model_fields["default_queue"].default


@pytest.mark.parametrize("name", DATA_SERVICES)
def test_data_dir_is_the_shared_named_volume(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    data_dir = environment_of(service)["EPOCHAL_DATA_DIR"]
    source = volume_mounts(service).get(data_dir)
    assert source is not None, f"{name} does not mount a volume at EPOCHAL_DATA_DIR={data_dir}"
    assert source in compose["volumes"]  # a named volume, not a bind mount of a host path


# --- GPU, durability, health and start-up order -------------------------------------------------------


def test_gpu_worker_reserves_one_nvidia_gpu_per_job(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    (device,) = devices
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device["count"] == int(option(worker["command"], "--concurrency")) == 1
    assert "deploy" not in services["worker-cpu"]


def test_redis_keeps_queued_jobs(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert isinstance(command, list)
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"
    assert volume_mounts(redis).get("/data") in compose["volumes"]  # the AOF outlives the container


def test_postgres_keeps_its_data(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].split(":")[1].startswith("16")
    assert volume_mounts(postgres).get("/var/lib/postgresql/data") in compose["volumes"]


@pytest.mark.parametrize("name", ["api", *WORKERS])
def test_role_takers_healthchecks_restart_them_when_reaping_stopped(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    # No reaper service: the API and the workers take its role, and a container whose passes stopped is stopped
    # by its own healthcheck (epochal/healthcheck.py), so that `restart` starts it again.
    test = services[name]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "epochal.healthcheck"]
    assert "--restart-on-stall" in test
    assert services[name]["restart"] == "unless-stopped"
    assert importlib.import_module(test[3]).main  # the module the check runs
    if name == "api":
        port = int(option(services["api"]["command"], "--port"))
        assert option(test, "--url") == f"http://127.0.0.1:{port}/health"
    assert not any("--beat" in (service.get("command") or []) for service in services.values())


@pytest.mark.parametrize(("name", "probe"), [("postgres", "pg_isready"), ("redis", "redis-cli ping")])
def test_servers_have_healthchecks(services: dict[str, dict[str, Any]], name: str, probe: str) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    assert probe in " ".join(test[1:])


def test_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    def condition(name: str, dependency: str) -> str:
        return services[name]["depends_on"][dependency]["condition"]

    assert condition("migrate", "postgres") == "service_healthy"
    for name in ("api", *WORKERS):
        assert condition(name, "migrate") == "service_completed_successfully"
        assert condition(name, "redis") == "service_healthy"
    assert condition("flower", "redis") == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"  # one shot: a restart loop would never "complete"


# --- the Dockerfile -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def arguments_of(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile_instructions() if instruction == keyword]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = arguments_of("USER")
    assert users, "no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_is_python_311_slim() -> None:
    bases = [arguments.split()[0] for arguments in arguments_of("FROM")]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_installs_the_pinned_requirements() -> None:
    installs = [run for run in arguments_of("RUN") if "pip install" in run]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("pip install", 1)[1])
    assert option(words, "-r") == "requirements/base.txt"
    assert option(words, "-c") == "requirements/constraints.txt"


def test_dockerfile_has_a_tensorflow_gpu_build_arg_tied_to_the_pinned_version() -> None:
    assert 'TENSORFLOW_EXTRA=""' in arguments_of("ARG")
    install = next(run for run in arguments_of("RUN") if "pip install" in run)
    assert "$TENSORFLOW_EXTRA" in install
    # The GPU build rewrites the base.txt pin `tensorflow==X` into `tensorflow[and-cuda]==X`: one pin, one version.
    assert "s/^tensorflow==/" in install
    pins = [
        line
        for line in (ROOT / "requirements" / "base.txt").read_text().splitlines()
        if line.startswith("tensorflow==")
    ]
    assert len(pins) == 1


def test_dockerfile_runs_from_the_repository_layout() -> None:
    workdir = arguments_of("WORKDIR")[-1]
    env = " ".join(arguments_of("ENV"))
    assert f"PYTHONPATH={workdir}" in env
    copied = set()
    for arguments in arguments_of("COPY"):
        if arguments.startswith("--from"):
            continue
        *sources, _target = arguments.split()
        copied |= {source.rstrip("/") for source in sources}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    first_party = set(pyproject["tool"]["ruff"]["lint"]["isort"]["known-first-party"]) - {"tests"}
    needed = {"alembic.ini", "migrations"} | {name if (ROOT / name).is_dir() else f"{name}.py" for name in first_party}
    assert needed <= copied, f"not in the image: {sorted(needed - copied)}"
    assert all((ROOT / source).exists() for source in copied)
    assert "tests" not in copied


def test_dockerfile_default_command_is_the_api() -> None:
    assert json.loads(arguments_of("CMD")[-1]) == api_argv("0.0.0.0", 8000)


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    ignored.discard("")
    assert {".venv", "var", "data", "tests", ".git", "bench", "docs"} <= ignored
    copied = {
        source.rstrip("/").split("/")[0]
        for arguments in arguments_of("COPY")
        if not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert not copied & ignored, f"copied but ignored: {sorted(copied & ignored)}"


# --- workers on other hosts -----------------------------------------------------------------------------

WORKER_HOST_FILE = ROOT / "docker-compose.worker.yml"
DATA_PORTS_FILE = ROOT / "docker-compose.data-ports.yml"
# The worker host's services, and the main file's service each one must run exactly as.
WORKER_HOST_SERVICES = {"worker-cpu": "worker-cpu", "worker-gpu": "worker"}
URLS = ("EPOCHAL_DATABASE_URL", "EPOCHAL_BROKER_URL")


@pytest.fixture(scope="module")
def worker_host() -> dict[str, Any]:
    document = yaml.safe_load(WORKER_HOST_FILE.read_text())
    assert isinstance(document, dict)
    return document


def required_variable(value: str) -> str | None:
    """The variable a compose value requires the deployer to set (`${VAR:?message}`), if it is one."""
    match = INTERPOLATION.fullmatch(value)
    return match.group("name") if match and (match.group("operator") or "").endswith("?") else None


def test_a_worker_host_runs_workers_and_nothing_else(worker_host: dict[str, Any]) -> None:
    services = worker_host["services"]
    assert set(services) == set(WORKER_HOST_SERVICES)
    # Nothing to wait for on this host: the database and the broker are the main host's.
    assert not any("depends_on" in service for service in services.values())
    assert services["worker-gpu"].get("profiles") == ["gpu"]
    assert "profiles" not in services["worker-cpu"]


def test_a_worker_host_needs_only_the_database_and_broker_urls(worker_host: dict[str, Any]) -> None:
    for service in worker_host["services"].values():
        raw = {str(key): str(value) for key, value in service["environment"].items()}
        assert {name: required_variable(raw[name]) for name in URLS} == {name: name for name in URLS}
        others = [name for name, value in raw.items() if name not in URLS and required_variable(value)]
        assert others == [], f"a worker host would also have to set {others}"
    # ...and the file interpolates nothing else it requires (the main file's Flower login is not needed here).
    text = WORKER_HOST_FILE.read_text()
    required = {m.group("name") for m in INTERPOLATION.finditer(text) if (m.group("operator") or "").endswith("?")}
    assert required == set(URLS)


@pytest.mark.parametrize("name", sorted(WORKER_HOST_SERVICES))
def test_a_worker_host_runs_its_worker_as_the_main_file_does(
    worker_host: dict[str, Any], services: dict[str, dict[str, Any]], name: str
) -> None:
    remote, local = worker_host["services"][name], services[WORKER_HOST_SERVICES[name]]
    for key in ("image", "build", "command", "healthcheck", "restart", "stop_grace_period", "deploy"):
        assert remote.get(key) == local.get(key), f"{name}.{key} differs from docker-compose.yml's"
    # The same settings as every process of the main host but the two URLs, so that queues, slots and the
    # dispatcher's order agree wherever the dispatcher's role is held.
    main_env = {k: v for k, v in environment_of(local).items() if k not in URLS}
    assert {k: v for k, v in environment_of(remote).items() if k not in URLS} == main_env
    data_dir = environment_of(remote)["EPOCHAL_DATA_DIR"]
    assert volume_mounts(remote).get(data_dir) in worker_host["volumes"]


def test_the_main_host_publishes_its_data_services_on_one_named_address_only() -> None:
    document = yaml.safe_load(DATA_PORTS_FILE.read_text())
    published = {name: service["ports"] for name, service in document["services"].items()}
    assert set(published) == {"postgres", "redis"}
    for name, port in (("postgres", 5432), ("redis", 6379)):
        (entry,) = published[name]
        address, host_port, container_port = str(entry).rsplit(":", 2)
        assert (int(host_port), int(container_port)) == (port, port)
        assert required_variable(address) == "DATA_HOST_ADDRESS"  # never 0.0.0.0 by default
