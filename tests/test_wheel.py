"""memtail works installed from its wheel, not only from a checkout.

The wheel is built from a copy of the sources (nothing is written into the checkout),
installed into a fresh virtual environment that sees this environment's packages
(torch is gigabytes; a ``.pth`` file points at them) but not this checkout, and its
``memtail`` command then migrates a database and runs a 3-trial experiment from an
unrelated working directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_the_wheel_migrates_and_runs_from_anywhere(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("memtail", "services", "migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."], source, env)
    (wheel,) = dist.glob("memtail-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "memtail/migrations/env.py",
        "memtail/migrations/script.py.mako",
        "memtail/migrations/versions/0001_initial_schema.py",
        "memtail/specification/bundled/digits-mlp.toml",
        "memtail/stats/numba_kernels.py",
        "memtail/views/templates/report.html",
        "memtail/views/templates/sections.html",
        "memtail/views/templates/static/live.js",
        "memtail/views/templates/static/memtail.css",
        "services/celery_app.py",
    ):
        assert name in shipped, f"{name} is not in the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
             tmp_path, env).strip()
    )  # fmt: skip
    # This environment's dependencies, but not its editable memtail: an editable install
    # is a finder that only a site folder's own .pth files load, and this is a plain path.
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         tmp_path, env)  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import memtail.migrations as m; print(m.__file__)"],
                 elsewhere, env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where
    memtail = str(venv / "bin" / "memtail")
    url = f"sqlite:///{elsewhere / 'upgraded.db'}"
    assert "database at head" in _run(
        [memtail, "--database-url", url, "db", "upgrade"], elsewhere, env
    )
    out = _run(
        [memtail, "run", "--trials", "3", "--epochs", "2", "--workers", "1"], elsewhere, env, 600
    )
    assert "created experiment 'digits-mlp'" in out
    with sqlite3.connect(elsewhere / "runs" / "memtail.db") as db:
        statuses = db.execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall()
    assert statuses == [("succeeded", 3)]
