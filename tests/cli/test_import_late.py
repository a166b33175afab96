"""A user's mistake is told before the heavy libraries load: torch, matplotlib, numba,
scipy and Celery take seconds and hundreds of MB to import, and a one-line error must
not wait for them. Asserted on the modules loaded (``sys.modules``), never on time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "matplotlib", "numba", "scipy", "sklearn", "celery", "flask")

# Each mistake runs in one interpreter, in order; after each, the heavy modules loaded so
# far are recorded, so the first mistake that loads one is the one named.
SCRIPT = """
import contextlib, io, json, sys
from memtail.cli.main import main
seen = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
    seen.append({"argv": argv, "code": code, "stderr": err.getvalue(), "heavy": heavy})
print(json.dumps(seen))
"""


def _run(cases: list[list[str]], tmp_path: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases), json.dumps(HEAVY)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _assert_light(seen: list[dict]) -> None:
    for case in seen:
        lines = case["stderr"].strip().splitlines()
        assert case["code"] == 2, case
        assert len(lines) == 1 and lines[0].startswith("memtail: error: "), case
        assert case["heavy"] == [], f"{case['argv']} loaded {case['heavy']}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_spec_mistakes_are_told_before_torch_loads(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    db = ["--database-url", f"sqlite:///{tmp_path / 'none.db'}"]
    cases = [
        ["run", "--out", out, "--set", "training.epochs=-1"],
        ["run", "--out", out, "--trials", "0"],
        ["run", "--out", out, "--set", "nonsense.x=1"],
        ["run", str(tmp_path / "missing.toml"), "--out", out],
        [*db, "experiment", "create", "--name", "x", "--set", "estimate.confidence=2"],
        [*db, "experiment", "create", "--name", "x", "--subset-fraction", "1.5"],
    ]
    _assert_light(_run(cases, tmp_path))
    assert not (tmp_path / "out").exists() and not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_unknown_experiments_are_told_before_torch_loads(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    out = str(tmp_path / "out")
    names = [
        ["status", "nope"],
        ["top", "nope"],
        ["pairs", "nope"],
        ["export", "nope", "--out", str(tmp_path / "x.npz")],
        ["plot", "nope", "--out", out],
        ["report", "nope", "--out", str(tmp_path / "r.html")],
        ["compare", "nope", "nope2", "--out", out],
        ["stability", "nope", "--out", out],
        ["utility", "nope", "--out", out],
        ["depth", "nope", "--out", out],
        ["estimate", "nope"],
        ["experiment", "extend", "nope", "--trials", "5"],
        ["worker", "nope", "--idle-exit", "1"],
    ]
    seen = _run([["--database-url", url, *argv] for argv in names], tmp_path)
    _assert_light(seen)
    assert all("nope" in case["stderr"] for case in seen), seen
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.html").exists()


def test_missing_databases_are_told_before_torch_loads(tmp_path: Path) -> None:
    missing = [
        f"sqlite:///{tmp_path / 'absent.db'}",
        f"postgresql://postgres@127.0.0.1:{_closed_port()}/memtail",
    ]
    cases = [
        ["--database-url", url, *argv]
        for url in missing
        for argv in (
            ["status"],
            ["report", "x", "--out", str(tmp_path / "r.html")],
            ["dashboard", "--port", "0"],
        )
    ]
    _assert_light(_run(cases, tmp_path))
    assert not (tmp_path / "absent.db").exists()


def test_every_error_the_handler_names_exists() -> None:
    # The handler finds error classes by module and name, without importing them: a name
    # that drifted from its class would turn that mistake back into a traceback.
    import importlib

    from memtail.cli import main

    for module, name in (*main._USER_ERRORS, *main._FAILURES):
        error = getattr(importlib.import_module(module), name)
        assert isinstance(error, type) and issubclass(error, Exception), (module, name)
