"""Real subprocesses for integration tests: the compose commands, run natively.

Commands come from docker-compose.yml itself, so the end-to-end tests exercise exactly
what `docker compose up` runs. Every process is stopped by its own pid when the test
ends, also when it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _expand(arg: str, env: dict[str, str]) -> str:
    """Expand compose's ${VAR:-default} in one argument, like compose does."""
    import re

    def sub(match: re.Match[str]) -> str:
        name, _, default = match.group(1).partition(":-")
        return env.get(name, default)

    return re.sub(r"\$\{([^}]+)\}", sub, arg)


def compose_command(service: str, env: dict[str, str] | None = None) -> list[str]:
    """The service's command with variables expanded; executables from this venv."""
    command = [_expand(a, env or {}) for a in compose_services()[service]["command"]]
    exe = Path(sys.executable).parent / command[0]
    if exe.exists():
        command[0] = str(exe)
    return command


def migrate(env: dict[str, str]) -> None:
    """The compose `migrate` service, run natively: one shot that must succeed."""
    result = subprocess.run(
        compose_command("migrate", env),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A started subprocess with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own process group: stopping it also stops Celery's pool children.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(10)
        else:
            # The leader exited; make sure no orphaned pool child is left in its group.
            self.kill(signal.SIGKILL)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Procs:
    """Starts processes and guarantees they are all stopped."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, command: list[str], **extra_env: str) -> Proc:
        proc = Proc(name, command, {**self.env, **extra_env}, self.log_dir)
        self.started.append(proc)
        return proc

    def start_service(self, service: str, name: str | None = None, **extra_env: str) -> Proc:
        env = {**self.env, **extra_env}
        return self.start(name or service, compose_command(service, env), **extra_env)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.output()[-4000:]}" for p in self.started)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, procs: Procs | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    logs = procs.logs() if procs else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


@contextmanager
def private_redis() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A private Redis server on a free port: (url, stop, start). Nothing persisted."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="memtail-redis-")
    proc: list[subprocess.Popen] = []

    def start() -> None:
        proc.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    folder,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop() -> None:
        while proc:
            p = proc.pop()
            p.kill()
            p.wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", stop, start
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)


def base_env(database_url: str, broker_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env.update(
        MEMTAIL_DATABASE_URL=database_url,
        MEMTAIL_BROKER_URL=broker_url,
        PYTHONUNBUFFERED="1",
        # Keep test workers to one torch thread and off any GPU the machine may have.
        MEMTAIL_DEVICE="cpu",
        OMP_NUM_THREADS="1",
    )
    env.update({f"MEMTAIL_{k.upper()}": str(v) for k, v in settings.items()})
    return env
