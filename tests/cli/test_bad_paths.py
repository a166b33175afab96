"""Paths and names that cannot be what was meant are refused before anything is written:
empty ones (a shell variable left unset), ones with a control character, ones that cannot
be read or made; one line naming the argument, exit status 2, no row and no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtail.cli.main import main
from tests.cli.test_bad_input import BASE, OUT_COMMANDS, _planted_db, _refused, _rows, _spec_text


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("", "is empty; give a path (. for the current folder)"),
        (" ", "is empty; give a path"),
        ("{}/new\nline", "contains a control character (e.g. a newline)"),
        ("{}/tab\tx", "contains a control character"),
    ],
)
def test_an_out_that_names_no_path_is_refused(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    message: str,
) -> None:
    _planted_db(sqlite_url, "a", "b")
    rows = _rows(sqlite_url)
    capsys.readouterr()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # Path("") is the current folder: nothing may land there
    where = where.format(tmp_path)
    for argv in OUT_COMMANDS:
        argv = [where if "{}" in part else part for part in argv]  # the path itself
        flag = "--logs" if "--logs" in argv else "--out"
        _refused(capsys, main(["--database-url", sqlite_url, *argv]), flag, message)
        assert _rows(sqlite_url) == rows, argv
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE))
    _refused(capsys, main(["run", str(spec), "--out", where, "--workers", "1"]), message)
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "memtail.db", "spec.toml"]


@pytest.mark.parametrize("flag", ["--database-url", "--broker-url", "--data-root"])
def test_an_empty_global_flag_is_not_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    # `--database-url "$URL"` with URL unset: silently the default runs/memtail.db before.
    monkeypatch.chdir(tmp_path)
    _refused(capsys, main([flag, "", "db", "upgrade"]), f"{flag} is empty; give a value")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_name_is_no_experiment(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, "" meant "every experiment": `memtail estimate ""` estimated them all.
    _planted_db(sqlite_url, "a")
    capsys.readouterr()
    for command in ("status", "estimate"):
        _refused(capsys, main(["--database-url", sqlite_url, command, ""]), "no experiment ''")


@pytest.mark.parametrize("name", ["", "  ", "node\n7"])
def test_a_worker_name_that_names_no_one_is_refused(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # Before, an empty --name fell back to HOST:PID without a word.
    _planted_db(sqlite_url, "a")
    rows = _rows(sqlite_url)
    capsys.readouterr()
    argv = ["--database-url", sqlite_url, "worker", "a", "--name", name, "--idle-exit", "1"]
    _refused(capsys, main(argv), "--name is empty or contains a control character")
    assert _rows(sqlite_url) == rows  # nothing claimed


def test_database_urls_that_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for url, message in (
        ("sqlite:////dev/null/x.db", "cannot create the database at /dev/null/x.db"),
        (f"sqlite:///{tmp_path}/new\nline.db", "contains a control character (e.g. a newline)"),
    ):
        _refused(capsys, main(["--database-url", url, "db", "upgrade"]), message)
        _refused(capsys, main(["--database-url", url, "status"]))
    assert list(tmp_path.iterdir()) == []


def test_spec_paths_that_cannot_be_read(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create = ["--database-url", sqlite_url, "experiment", "create"]
    _refused(capsys, main([*create, f"{tmp_path}/new\nline.toml"]),
             "spec field 'file': ", "contains a control character")  # fmt: skip
    _refused(capsys, main([*create, "/proc/self/mem"]),
             "spec field 'file': /proc/self/mem cannot be read (")  # fmt: skip
    assert _rows(sqlite_url) == 0
    # A byte-order mark, as some editors write UTF-8, is no syntax error.
    spec = tmp_path / "spec.toml"
    spec.write_text("\ufeff" + _spec_text(BASE), encoding="utf-8")
    assert main([*create, str(spec)]) == 0


def test_an_env_file_that_is_no_file(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submit = ["--database-url", sqlite_url, "slurm", "submit", "--workers", "1", "--dry-run"]
    for given, message in (
        ("", "--env-file is empty"),  # before: no env file at all, without a word
        (str(tmp_path), f"--env-file {tmp_path} is a folder; give the file"),  # not "chmod"
        (f"{tmp_path}/a\nb", "--env-file '"),
    ):
        _refused(capsys, main([*submit, "--env-file", given]), message)
