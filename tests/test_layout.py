"""The package's layout keeps its rules: layers, no cycles, SQL in store, one home per status.

The import rules are import-linter contracts in pyproject.toml (``lint-imports`` checks
them); the rules import-linter cannot express (private names, SQL text, status literals,
the wheel's package list) are checked here on the source's syntax trees.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from memtail.status import EstimateRunStatus, ExperimentStatus, TrialStatus

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "memtail"
CODE = [LIBRARY, ROOT / "services"]


def _sources(*folders: Path) -> Iterator[tuple[Path, ast.Module]]:
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)
    assert kept and int(kept.group(1)) == len(contracts["contracts"]), result.stdout[-2000:]


def test_views_load_without_torch() -> None:
    # The import contract sees the imports written down; this sees what loading runs.
    views = sorted(_module_name(p) for p in (LIBRARY / "views").glob("*.py"))
    code = f"import sys; import {', '.join(views)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_no_private_name_is_imported_from_another_module() -> None:
    found = []
    for path, tree in _sources(*CODE, ROOT / "benchmarks"):
        modules: set[str] = set()  # local names bound to memtail or services modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                ours = node.module.split(".")[0] in ("memtail", "services")
                for alias in node.names:
                    if ours and _is_private(alias.name):
                        found.append(f"{path}:{node.lineno} imports {alias.name}")
                    full = f"{node.module}.{alias.name}"
                    if ours and importlib.util.find_spec(node.module) and _is_module(full):
                        modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("memtail", "services") and alias.asname:
                        modules.add(alias.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and _is_private(node.attr)
            ):
                found.append(f"{path}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert found == []


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.S)


def test_sql_text_lives_in_store() -> None:
    # SQLAlchemy itself is kept out of the other layers by an import contract; this
    # catches SQL written as text. Docstrings may describe SQL; code may not run it.
    found = []
    for path, tree in _sources(*CODE):
        if _module_name(path).startswith("memtail.store"):
            continue
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and SQL.search(node.value.upper())
            ):
                found.append(f"{path}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


def test_status_values_are_spelled_only_in_memtail_status() -> None:
    values = {str(v) for enum in (ExperimentStatus, TrialStatus, EstimateRunStatus) for v in enum}
    found = [
        f"{path}:{node.lineno}: {node.value!r}"
        for path, tree in _sources(*CODE, ROOT / "migrations")
        if path != LIBRARY / "status.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in values
    ]
    assert found == []


def test_every_package_ships_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        _module_name(init)
        for folder in CODE
        for init in folder.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    mapped = {"memtail.migrations", "memtail.migrations.versions"}
    assert set(config["packages"]) == folders | mapped
    assert config["package-dir"] == {"memtail.migrations": "migrations"}


def test_code_names_no_issue_numbers() -> None:
    # Code says what a thing is and guarantees, not which ticket asked for it.
    # "target 99%" is a rule's coverage, not a tracker's number.
    pattern = re.compile(r"\b(issue|target)s? #?\d+(?![\d.%])", re.I)
    found = []
    for folder in (*CODE, ROOT / "tests", ROOT / "benchmarks", ROOT / "migrations"):
        for path in folder.rglob("*"):
            if path.suffix in (".py", ".sh", ".toml") and path != Path(__file__):
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if pattern.search(line):
                        found.append(f"{path}:{number}: {line.strip()}")
    assert found == []
