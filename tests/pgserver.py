"""A private PostgreSQL server for tests that stop and restart it (fault injection).

``initdb`` into a temporary folder, ``pg_ctl start`` on a free port with trust auth and a
private socket folder; the shared server on 5432 is never touched. ``initdb`` refuses to
run as root, so as root the server runs as the ``postgres`` OS user (``runuser``) in a
folder that user owns. The server is always stopped (immediate mode) and its folder
removed at the end, also when the test fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from tests.processes import free_port


class PgServerUnavailable(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on this machine."""


def _bindir() -> Path:
    override = os.environ.get("MEMTAIL_TEST_PG_BINDIR")
    if override:
        return Path(override)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    # Debian/Ubuntu keep server binaries off PATH; take the newest installed version.
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise PgServerUnavailable("initdb not found (apt-get install postgresql)")
    return Path(candidates[-1]).parent


class PgServer:
    """A running private server: ``url(dbname)``, ``stop()``, ``start()``, ``restart()``."""

    def __init__(self, folder: Path, port: int, bindir: Path, run_as: str | None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.sockets = folder / "sockets"
        self.log = folder / "server.log"
        self.port = port
        self.bindir = bindir
        self.run_as = run_as
        self.superuser = run_as or pwd.getpwuid(os.getuid()).pw_name

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        result = subprocess.run(
            [*prefix, str(self.bindir / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[:2])} failed ({result.returncode}): {result.stderr}\n{log}"
            )

    def initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.superuser,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` disconnects every client (what a restart does)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"postgresql+psycopg2://{user or self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create a database owned by the superuser; returns its URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        engine = sa.create_engine(self.url())
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT 1"))
                    return
                except sa.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            engine.dispose()


@contextmanager
def private_postgres() -> Iterator[PgServer]:
    """Start a private PostgreSQL server; stop it and delete its files at the end."""
    bindir = _bindir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgServerUnavailable("running as root and no 'postgres' OS user") from None
        run_as = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="memtail-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    server = PgServer(folder, free_port(), bindir, run_as)
    (server.sockets).mkdir()
    if run_as:
        os.chown(server.sockets, entry.pw_uid, entry.pw_gid)
    try:
        server.initdb()
        server.start()
        server.wait_ready()
        yield server
    finally:
        if server.running():
            try:
                server.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(folder, ignore_errors=True)
