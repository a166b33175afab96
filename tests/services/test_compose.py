"""docker-compose.yml stays honest: real entry points, the right start order, no public ports.

No Docker engine runs on our machines, so the file is checked statically here and its
commands are run natively by tests/test_end_to_end.py.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from memtail.config import Settings
from memtail.specification import bundled_specs
from tests.processes import compose_command, compose_services

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"coordinator", "worker", "estimator", "beat", "flower"}


def test_services_are_the_documented_set() -> None:
    services = compose_services()
    assert {
        "postgres",
        "redis",
        "migrate",
        "coordinator",
        "worker",
        "estimator",
        "beat",
        "flower",
        "dashboard",
    } == set(services)
    assert services["flower"]["profiles"] == ["monitoring"]


def test_start_order_is_migrate_first() -> None:
    services = compose_services()
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    for name in ("postgres", "redis", "dashboard"):
        assert "healthcheck" in services[name]
    # The dashboard reads PostgreSQL only: it waits for the schema, not for Redis.
    assert services["dashboard"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"}
    }


def test_secrets_are_required_and_never_on_a_command_line() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    # Every password must come from .env: `${VAR:?...}`, never a silent `${VAR:-default}`.
    for name in (
        "POSTGRES_PASSWORD",
        "MEMTAIL_DB_PASSWORD",
        "REDIS_PASSWORD",
        "MEMTAIL_DASHBOARD_PASSWORD",
    ):
        uses = re.findall(r"\$\{" + name + r"(:[-?])", text)
        assert uses and set(uses) == {":?"}, name
    services = compose_services()
    redis = " ".join(services["redis"]["command"])
    assert "requirepass %s" in redis and "exec redis-server /tmp/redis.conf" in redis
    assert "appendonly yes" in redis
    # The config file's value comes from the environment; no argv carries a password.
    for service in services.values():
        assert "--requirepass" not in service.get("command", [])
        assert (
            "-a" not in " ".join(map(str, service.get("healthcheck", {}).get("test", []))).split()
        )
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {
        "POSTGRES_PASSWORD",
        "MEMTAIL_DB_PASSWORD",
        "REDIS_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "MEMTAIL_DASHBOARD_PASSWORD",
    } <= set(example)


def test_flower_refuses_to_start_without_a_password() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    command = compose_command("flower")
    assert command[:3] == [command[0], "-m", "services.flower"]
    for auth in (None, "", "admin", "admin:"):
        if auth is not None:
            env["FLOWER_BASIC_AUTH"] = auth
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("flower: error: FLOWER_BASIC_AUTH must be")


def test_no_port_is_published_on_all_interfaces() -> None:
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            text = str(port)
            assert text.startswith("127.0.0.1:"), f"{name} publishes {text} on all interfaces"


def test_worker_scales_and_beat_does_not() -> None:
    services = compose_services()
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    # Docker's grace outlasts the worker's own (MEMTAIL_STOP_GRACE_SECONDS, 60 s): a
    # stopped worker hands its trial back before Docker's SIGKILL.
    grace = worker["stop_grace_period"]
    assert grace.endswith("m") and 60 * int(grace[:-1]) > Settings().stop_grace_seconds
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "container_name" not in services["beat"]


def test_commands_use_exec_form() -> None:
    for name, service in compose_services().items():
        if "command" in service:
            assert isinstance(service["command"], list), f"{name}: shell-form command"


def _celery_app_module(command: list[str]) -> str:
    return command[command.index("-A") + 1]


@pytest.mark.parametrize(
    "service", ["migrate", "coordinator", "worker", "estimator", "beat", "dashboard"]
)
def test_every_command_is_a_real_entry_point(service: str) -> None:
    command = compose_command(service)
    exe = Path(command[0])
    assert exe.is_file() or shutil.which(command[0]), f"{command[0]} is not installed"
    if exe.name == "celery":
        module = importlib.import_module(_celery_app_module(command))
        app = module.app
        assert {"memtail.run_trial", "memtail.estimate", "memtail.reap"} <= set(app.tasks)
        queues = command[command.index("--queues") + 1] if "--queues" in command else None
        if service == "worker":
            assert queues == "memtail.trials"
        if service == "estimator":
            assert queues == "memtail.control"
    else:
        # `--help` parses the same argument vector shape without side effects.
        help_args = [command[0], *command[1:2], "--help"]
        result = subprocess.run(help_args, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stderr


def test_default_spec_ships_in_the_package() -> None:
    command = compose_command("coordinator")
    assert command[command.index("--create") + 1] in bundled_specs()


def test_dockerfile_runs_as_non_root_with_exec_form() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER memtail" in text and "ARG TORCH_VARIANT" in text
    assert 'CMD ["' in text


def test_end_to_end_test_runs_these_commands() -> None:
    text = (ROOT / "tests" / "end_to_end" / "test_service.py").read_text()
    for service in ("migrate", "coordinator", "worker", "estimator", "beat"):
        assert f'"{service}"' in text, f"the end-to-end test does not start {service}"


def test_the_dashboard_reads_as_the_analyst_login() -> None:
    dashboard = compose_services()["dashboard"]
    url = dashboard["environment"]["MEMTAIL_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg2://memtail_dashboard:")
    init = (ROOT / "services/postgres/init.sh").read_text()
    assert "CREATE ROLE memtail_dashboard LOGIN PASSWORD %L IN ROLE memtail_analyst" in init
    healthcheck = " ".join(dashboard["healthcheck"]["test"])
    assert "/healthz" in healthcheck
