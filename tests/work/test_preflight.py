"""An environment in which no trial can run is refused as its worker or run starts: one
line naming the variable and the fix, exit status 2, and no trial claimed (this machine
has no GPU, so ``cuda`` is a device that is not there)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from memtail.cli.main import main
from memtail.config import ConfigError, Settings
from memtail.work import preflight
from tests.processes import wait_for

MEMTAIL = str(Path(sys.executable).parent / "memtail")

SPEC = """
name = "env"
seed = 0
trials = 3

[dataset]
name = "synthetic-longtail"
n_train = 60
n_test = 30

[model]
name = "mlp"
width = 8

[training]
epochs = 1
batch_size = 32
lr = 0.05
"""

#: (environment, the start of the error that follows "memtail: error: ").
BAD = [
    ({"MEMTAIL_DEVICE": "cuda"}, "MEMTAIL_DEVICE=cuda: torch sees no CUDA GPU"),
    ({"MEMTAIL_DEVICE": "cuda:1"}, "MEMTAIL_DEVICE=cuda:1: torch sees no CUDA GPU"),
    ({"MEMTAIL_ARTIFACTS": "/proc/x"}, "MEMTAIL_ARTIFACTS=/proc/x: cannot write there"),
    ({"MEMTAIL_ARTIFACTS": "/dev/null/x"}, "MEMTAIL_ARTIFACTS=/dev/null/x: cannot write there"),
    ({"MEMTAIL_ESTIMATOR_DEVICE": "cudaXYZ"}, "MEMTAIL_ESTIMATOR_DEVICE='cudaXYZ' is not a"),
    ({"MEMTAIL_ESTIMATOR_DEVICE": "cuda"}, "MEMTAIL_ESTIMATOR_DEVICE=cuda: torch sees no"),
    ({"MEMTAIL_DATABASE_URL": "mysql://u:hunter2@db/x"}, "MEMTAIL_DATABASE_URL (or --data"),
]
#: What a trial worker is refused for; the estimator's device is not its concern.
BAD_FOR_WORKERS = [case for case in BAD if "MEMTAIL_ESTIMATOR_DEVICE" not in case[0]]


def _ids(cases: list[tuple[dict[str, str], str]]) -> list[str]:
    return [",".join(f"{k}={v}" for k, v in env.items()) for env, _ in cases]


@pytest.mark.parametrize(("env", "message"), BAD, ids=_ids(BAD))
def test_check_names_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        # Settings refuse what they can judge from the text; the rest is preflight's.
        preflight.check(Settings.from_env(env))
    assert str(raised.value).startswith(message)
    assert "hunter2" not in str(raised.value)
    assert "; " in str(raised.value)  # the fix follows


def test_a_flag_that_replaces_a_setting_is_checked_too() -> None:
    import dataclasses

    settings = dataclasses.replace(Settings(), database_url="mysql://h/db")
    with pytest.raises(ConfigError, match="'mysql' databases are not supported"):
        preflight.check(settings)


def test_a_trial_worker_is_not_refused_for_the_estimators_device() -> None:
    settings = Settings.from_env({"MEMTAIL_ESTIMATOR_DEVICE": "cuda"})
    preflight.check(settings, estimates=False)
    with pytest.raises(ConfigError, match="MEMTAIL_DEVICE=cuda"):
        preflight.check(Settings.from_env({"MEMTAIL_DEVICE": "cuda"}), estimates=False)


def test_a_writable_artifact_folder_is_made_and_left_clean(tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "artifacts"
    preflight.check(Settings(artifacts=str(folder)))
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_not_left_behind(tmp_path: Path) -> None:
    under_file = tmp_path / "file"
    under_file.write_text("")
    with pytest.raises(ConfigError, match="Not a directory"):
        preflight.check(Settings(artifacts=str(under_file / "x" / "y")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture
def pending(tmp_path: Path) -> Path:
    """An SQLite database holding an experiment of three pending trials."""
    db = tmp_path / "memtail.db"
    spec = tmp_path / "env.toml"
    spec.write_text(SPEC)
    url = f"sqlite:///{db}"
    assert main(["--database-url", url, "db", "upgrade"]) == 0
    assert main(["--database-url", url, "--data-root", str(tmp_path / "data"),
                 "experiment", "create", str(spec), "--no-dispatch"]) == 0  # fmt: skip
    assert _attempts(db) == [("pending", 0)] * 3
    return db


def _attempts(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, attempts FROM trials ORDER BY trial_index").fetchall()


def _memtail(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    full["MEMTAIL_DATA_ROOT"] = str(tmp_path / "data")
    return subprocess.run(
        [MEMTAIL, *args], cwd=tmp_path, env={**full, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"memtail: error: {message}"), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _url(db: Path, env: dict[str, str]) -> list[str]:
    # The bad URL case gives it by variable; the others name the database by flag.
    return [] if "MEMTAIL_DATABASE_URL" in env else ["--database-url", f"sqlite:///{db}"]


@pytest.mark.slow
@pytest.mark.parametrize(("env", "message"), BAD, ids=_ids(BAD))
def test_memtail_run_is_refused_before_it_claims(
    tmp_path: Path, pending: Path, env: dict[str, str], message: str
) -> None:
    out = tmp_path / "out"
    spec = tmp_path / "env.toml"
    result = _memtail(tmp_path, env, *_url(pending, env), "run", str(spec), "--out", str(out),
                      "--workers", "1")  # fmt: skip
    _refused(result, message)
    assert _attempts(pending) == [("pending", 0)] * 3
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("env", "message"), BAD_FOR_WORKERS, ids=_ids(BAD_FOR_WORKERS))
def test_memtail_worker_is_refused_before_it_claims(
    tmp_path: Path, pending: Path, env: dict[str, str], message: str
) -> None:
    result = _memtail(tmp_path, env, *_url(pending, env), "worker", "env", "--idle-exit", "1")
    _refused(result, message)
    assert _attempts(pending) == [("pending", 0)] * 3


@pytest.fixture
def estimated(sqlite_url: str) -> str:
    """An SQLite database holding one estimated experiment, "a", to analyse."""
    from memtail.store.engine import make_engine
    from tests.helpers import planted

    engine = make_engine(sqlite_url)
    try:
        planted(engine, "a")
    finally:
        engine.dispose()
    return sqlite_url


def _experiments(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM experiments ORDER BY name")]


#: The analyses that train their own trials here with --run: its arms, its probe.
TRAIN_HERE = [["removal", "a", "--trials-per-arm", "1"], ["probe", "a", "--trials", "2"]]


@pytest.mark.parametrize(("env", "message"), BAD, ids=_ids(BAD))
def test_removal_and_probe_run_are_refused_before_they_create(
    estimated: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    message: str,
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    url = [] if "MEMTAIL_DATABASE_URL" in env else ["--database-url", estimated]
    out = tmp_path / "out"
    capsys.readouterr()
    for command in TRAIN_HERE:
        code = main([*url, *command, "--run", "--workers", "1", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, (command, err[-2000:])
        assert err.startswith(f"memtail: error: {message}") and err.count("\n") == 1, err
        assert _experiments(estimated) == ["a"], command  # no arm, no probe
    assert not out.exists()


def test_without_run_this_hosts_devices_are_not_asked(
    estimated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's workers train what it creates, on their own hosts.
    monkeypatch.setenv("MEMTAIL_DEVICE", "cuda")
    assert main(["--database-url", estimated, *TRAIN_HERE[1]]) == 0
    assert _experiments(estimated) == ["a", "a-probe"]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEMTAIL_DEVICE": "cuda"}, "memtail: error: MEMTAIL_DEVICE=cuda: torch sees no CUDA"),
        ({"MEMTAIL_MAX_ATTEMPTS": "0"}, "memtail: error: MEMTAIL_MAX_ATTEMPTS must be >= 1"),
    ],
    ids=["no-gpu", "bad-setting"],
)
def test_a_celery_worker_that_cannot_train_does_not_start(
    pg_empty_url: str, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    from tests.faults.faultinject.faultcluster import cluster, spec_toml

    with cluster(pg_empty_url, tmp_path, "env-celery", spec_toml("env-celery", 4)) as c:
        c.start_coordinator()
        # Every trial has a message in the broker for the worker to take.
        wait_for(lambda: _dispatched(c.engine) == 4, 120, "the trials' messages", c.procs)
        worker = c.start_worker("worker", 1, **env)
        wait_for(lambda: not worker.alive(), 120, "the worker to refuse to start", c.procs)
        assert worker.popen.returncode == 2, worker.output()[-3000:]
        assert message in worker.output()
        assert "Traceback" not in worker.output()
        assert [(t.status, t.attempts) for t in c.trials()] == [("pending", 0)] * 4


def _dispatched(engine: sa.engine.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM trials WHERE dispatched_at IS NOT NULL")
        ).scalar_one()
