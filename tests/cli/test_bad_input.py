"""Specs and arguments that can never succeed are refused before anything is written:
one line naming the field and the fix, exit status 2, no row, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from memtail.cli.main import main
from memtail.store.database import upgrade
from memtail.store.engine import make_engine

BASE = {
    "name": "bad",
    "trials": 4,
    "dataset": {"name": "synthetic-longtail", "n_train": 60, "n_test": 20},
    "model": {"name": "mlp", "width": 16},
    "training": {"epochs": 1},
    "estimate": {"confidence": 0.95},
}


def _toml(value: object) -> str:
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and abs(value) == float("inf"):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value)  # strings, ints, floats and booleans read the same in TOML


def _spec_text(spec: dict) -> str:
    top = [f"{key} = {_toml(value)}" for key, value in spec.items() if not isinstance(value, dict)]
    tables = [
        f"[{key}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in value.items())
        for key, value in spec.items()
        if isinstance(value, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def _with(dotted: str, value: object) -> dict:
    spec = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    section, _, key = dotted.rpartition(".")
    (spec[section] if section else spec)[key] = value
    return spec


def _rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sum(
                conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("experiments", "examples", "trials")
            )
    finally:
        engine.dispose()


def _refused(capsys: pytest.CaptureFixture[str], code: int, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("memtail: error: ") and "\n" not in err, err
    for part in parts:
        assert part in err, err
    return err


NPZ = "labels.npz"
FIELDS = [
    ("training.lr", float("nan"), "spec field 'training.lr'"),
    ("training.lr", float("inf"), "spec field 'training.lr'"),
    ("training.momentum", float("nan"), "spec field 'training.momentum'"),
    ("training.momentum", 50, "spec field 'training.momentum': must be in [0, 0.999]"),
    ("training.weight_decay", float("nan"), "spec field 'training.weight_decay'"),
    ("training.weight_decay", float("inf"), "spec field 'training.weight_decay'"),
    ("model.depht", 3, "spec field 'model.depht': unknown option for model 'mlp'"),
    ("model.width", 1_000_000_000, "spec field 'model.width': must be in [0, 65536]"),
    ("model.width", 65_536, "spec field 'model.width': gives mlp 4,"),
    ("dataset.num_classes", 1_000_000_000, "spec field 'dataset.num_classes'"),
    ("dataset.noise", float("nan"), "spec field 'dataset.noise': must be a finite number"),
    ("seed", -1, "spec field 'seed': must be in [0, 9223372036854775807]"),
    # Integers too large for a float: compared as integers, shown shortened.
    pytest.param("seed", 2**1024, "spec field 'seed': must be in [0, ", id="seed-2**1024"),
    pytest.param("model.width", 2**1024, "must be in [0, 65536] (got 1797", id="width-2**1024"),
    ("name", "a\u0000b", "spec field 'name'"),
    ("name", "a/b", "spec field 'name': 'a/b' is not a valid name: use 1-200 letters"),
    ("name", "../../escape", "spec field 'name'"),
    ("name", "with space", "spec field 'name'"),
    ("trials", 10_000_000, "spec field 'trials': must be at most 100,000"),
    ("subset_fraction", float("nan"), "spec field 'subset_fraction'"),
    ("estimate.confidence", float("nan"), "spec field 'estimate.confidence'"),
    ("estimate.infl_threshold", float("inf"), "spec field 'estimate.infl_threshold'"),
    ("estimate.fdr", float("nan"), "spec field 'estimate.fdr': must be in [0, 1)"),
    ("estimate.fdr_method", "holm", "spec field 'estimate.fdr_method': choose one of bh, by"),
]


@pytest.mark.parametrize(("field", "value", "message"), FIELDS)
def test_a_bad_field_is_refused_before_anything_is_written(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    message: str,
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(_with(field, value)))
    code = main(["--database-url", db_url, "experiment", "create", str(spec)])
    _refused(capsys, code, message)
    assert _rows(db_url) == 0


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        (10**9, 0, "labels go up to 1000000000"),
        (2**40, 0, "labels go up to 1099511627776"),
        (2, 1_000_000_000, "spec field 'dataset.num_classes': is 1000000000"),
    ],
)
def test_npz_labels_are_class_indexes(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    labels: int,
    num_classes: int,
    message: str,
) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    y[0] = labels
    np.savez(tmp_path / NPZ, x_train=rng.normal(size=(40, 4)), y_train=y,
             x_test=rng.normal(size=(10, 4)), y_test=rng.integers(0, 3, 10))  # fmt: skip
    dataset = {"name": "npz", "path": str(tmp_path / NPZ)}
    if num_classes:
        dataset["num_classes"] = num_classes
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text({**BASE, "dataset": dataset}))
    code = main(["--database-url", db_url, "experiment", "create", str(spec)])
    _refused(capsys, code, message)
    assert _rows(db_url) == 0


def test_settings_and_arguments_that_cannot_work(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    assert main(["--database-url", sqlite_url, "db", "upgrade"]) == 0
    capsys.readouterr()
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE))
    create = ["--database-url", sqlite_url, "experiment", "create"]
    monkeypatch.setenv("MEMTAIL_DEVICE", "tpu")
    _refused(capsys, main([*create, str(spec)]), "MEMTAIL_DEVICE='tpu'", "cuda:N")
    monkeypatch.delenv("MEMTAIL_DEVICE")
    _refused(capsys, main([*create, str(tmp_path)]), "is a folder")
    binary = tmp_path / "spec.bin"
    binary.write_bytes(bytes(range(256)))
    _refused(capsys, main([*create, str(binary)]), "is not a text file")
    with pytest.raises(SystemExit) as usage:  # argparse's own way out, in one line too
        main(["run", "--workers", "-1"])
    _refused(capsys, usage.value.code, "--workers: must be 0 or more", "memtail run --help")
    _refused(capsys, main(["--database-url", "not a url", "status"]), "is not a database URL")
    err = _refused(
        capsys, main(["--database-url", "nosuch://u:secret@x/y", "status"]), "cannot use"
    )
    assert "secret" not in err
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}"
    _refused(capsys, main(["--database-url", missing, "status"]), "no memtail database at")
    assert not (tmp_path / "no").exists()
    afile = tmp_path / "afile"
    afile.write_text("")
    _refused(capsys, main(["--database-url", sqlite_url, "run", "--out", str(afile)]),
             f"--out {afile} is a file")  # fmt: skip
    assert _rows(sqlite_url) == 0
    with pytest.raises(SystemExit) as usage:
        main(["dashboard", "--port", "70000"])
    _refused(capsys, usage.value.code, "--port: must be a TCP port, 1-65535")
    with socket.socket() as taken:  # a port something else listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _refused(capsys, main(["--database-url", sqlite_url, "dashboard", "--port", port]),
                 f"cannot listen on 127.0.0.1:{port}", "choose another with --port")  # fmt: skip
    # --fdr is estimate.fdr: checked like the spec field, stored on the experiment.
    _refused(capsys, main([*create, str(spec), "--fdr", "1.5"]), "spec field 'estimate.fdr'")
    assert _rows(sqlite_url) == 0
    assert main([*create, str(spec), "--fdr", "0.2"]) == 0
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT fdr FROM experiments")).scalar_one() == 0.2
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_mistakes_name_the_database(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sa.engine.make_url(pg_url)
    for wrong in (url.set(username="no_such_user"), url.set(database="no_such_database")):
        text = wrong.render_as_string(hide_password=False)
        err = _refused(capsys, main(["--database-url", text, "status"]), "cannot use the database")
        assert wrong.host in err


@pytest.mark.redis
def test_only_the_service_sends_broker_messages(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import redis

    from memtail.work.broker import TRIALS_QUEUE
    from tests.processes import private_redis

    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE))
    with private_redis() as (broker, _stop, _start):
        queue = redis.Redis.from_url(broker)
        create = ["--database-url", db_url, "experiment", "create", str(spec)]
        # No broker configured: nothing is sent, wherever a Redis may listen.
        assert main(create) == 0
        told = capsys.readouterr().out
        if db_url.startswith("sqlite"):
            assert "train its trials here with `memtail run`" in told
        else:
            assert "`memtail coordinator` sends its trials" in told
        # A broker configured: only the service's database sends to it.
        monkeypatch.setenv("MEMTAIL_BROKER_URL", broker)
        more = ["--database-url", db_url, "experiment", "create", str(spec), "--trials", "6"]
        assert main(more) == 0
        sent = queue.llen(TRIALS_QUEUE)
        assert sent == (0 if db_url.startswith("sqlite") else 6), capsys.readouterr().out


def test_the_coordinator_without_its_broker_says_so(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from tests.processes import free_port

    monkeypatch.setenv("MEMTAIL_BROKER_URL", f"redis://:secret@127.0.0.1:{free_port()}/0")
    err = _refused(
        capsys, main(["--database-url", sqlite_url, "coordinator", "--once"]),
        "cannot reach the broker at redis://:***@127.0.0.1:", "MEMTAIL_BROKER_URL",
    )  # fmt: skip
    assert "secret" not in err


def _planted_db(sqlite_url: str, *names: str) -> None:
    """A migrated SQLite database with estimated experiments of these names."""
    from tests.helpers import planted

    assert main(["--database-url", sqlite_url, "db", "upgrade"]) == 0
    engine = make_engine(sqlite_url)
    try:
        for name in names:
            planted(engine, name)
    finally:
        engine.dispose()


UNWRITABLE = ["/dev/null/x", "/sys/x", "/proc/x"]  # under a file; read-only filesystems
OUT_COMMANDS = [
    ["export", "a", "--out", "{}/a.npz"],
    ["export", "a", "--out", "{}", "--format", "csv"],
    ["report", "a", "--out", "{}/r.html"],
    ["plot", "a", "--out", "{}", "--no-images"],
    ["stability", "a", "--out", "{}"],
    ["compare", "a", "b", "--out", "{}"],
    ["removal", "a", "--run", "--out", "{}"],
    ["utility", "a", "--out", "{}"],
    ["probe", "a", "--run", "--out", "{}"],
    ["depth", "a", "--out", "{}"],
    ["slurm", "submit", "--workers", "1", "--logs", "{}"],
]


@pytest.mark.parametrize("where", UNWRITABLE)
def test_an_out_that_cannot_be_written_is_refused_before_any_work(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    _planted_db(sqlite_url, "a", "b")
    rows = _rows(sqlite_url)
    capsys.readouterr()
    for argv in OUT_COMMANDS:
        argv = [part.format(where) for part in argv]
        flag = argv[argv.index(where if where in argv else argv[-1]) - 1]
        _refused(capsys, main(["--database-url", sqlite_url, *argv]), f"{flag} {where}")
        assert _rows(sqlite_url) == rows, argv  # no removal arm, no probe
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(BASE))
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    _refused(capsys, main(["--database-url", fresh, "run", str(spec), "--out", where]), where)
    assert not (tmp_path / "fresh.db").exists()


def test_the_out_check_leaves_no_folder_behind(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The check makes the folders to try them; a command refused afterwards keeps none.
    _planted_db(sqlite_url, "a")
    capsys.readouterr()
    deep = tmp_path / "new" / "deeper"
    _refused(capsys, main(["--database-url", sqlite_url, "stability", "nope", "--out", str(deep)]),
             "no experiment 'nope'")  # fmt: skip
    assert not (tmp_path / "new").exists()
    assert main(["--database-url", sqlite_url, "stability", "a", "--out", str(deep)]) == 0
    assert [p.name for p in deep.iterdir()] == ["a-split-half.png"]


def test_export_writes_where_it_says(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _planted_db(sqlite_url, "a")
    export = ["--database-url", sqlite_url, "export", "a", "--out"]
    capsys.readouterr()
    folder = tmp_path / "existing"
    folder.mkdir()
    for out, written in (
        (folder, folder / "a.npz"),  # a folder: inside it, not beside it
        (tmp_path / "missing" / "x.npz", tmp_path / "missing" / "x.npz"),  # made, as CSV's is
        (tmp_path / "plain", tmp_path / "plain.npz"),  # numpy adds .npz: so does what is said
    ):
        assert main([*export, str(out)]) == 0
        assert capsys.readouterr().out.startswith(f"wrote {written}: 40 memorization values")
        assert np.load(written)["tr_mem"].shape == (40,)
    assert not (tmp_path / "existing.npz").exists()
    assert main([*export, str(tmp_path / "tables" / "csv"), "--format", "csv"]) == 0
    assert (tmp_path / "tables" / "csv" / "memorization.csv").exists()


@pytest.mark.parametrize(
    "item", [".trials=5", "trials.=5", "training..epochs=1", "train ing.epochs=1",
             "training.épochs=1", "=5", "training/epochs=1"],
)  # fmt: skip
def test_set_refuses_malformed_field_names(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], item: str
) -> None:
    assert main(["--database-url", sqlite_url, "db", "upgrade"]) == 0
    capsys.readouterr()
    create = ["--database-url", sqlite_url, "experiment", "create", "--name", "x", "--set", item]
    key = item.partition("=")[0].strip()
    _refused(capsys, main(create), f"--set {item!r}: {key!r} is not a spec field")
    assert _rows(sqlite_url) == 0


def test_an_experiment_is_not_compared_with_itself(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _planted_db(sqlite_url, "a")
    capsys.readouterr()
    code = main(["--database-url", sqlite_url, "compare", "a", "a", "--out", str(tmp_path / "o")])
    _refused(capsys, code, "compare a a: both arguments name the same experiment")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["removal", "a", "--trials-per-arm", str(10**9)], "--trials-per-arm: must be at most"),
        (["probe", "a", "--trials", "100001"], "--trials: must be at most 100,000"),
        (["top", "a", "-n", "99999999999"], "--limit: must be at most 10,000,000"),
        (["pairs", "a", "-n", "0"], "--limit: must be 1 or more"),
        (["stability", "a", "--seed", str(2**63)], "--seed: must be at most 9,223,"),
        (["removal", "a", "--seed", "-1"], "--seed: must be 0 or more"),
        (["run", "--workers", "5000"], "--workers: must be at most 1,024"),
        (["removal", "a", "--run", "--workers", "5000"], "--workers: must be at most 1,024"),
        (["slurm", "submit", "--workers", "1000000"], "--workers: must be at most 100,000"),
        (["slurm", "submit", "--workers", "2", "--gpus-per-worker", "65"], "must be at most 64"),
        (["experiment", "extend", "a", "--trials", str(2**31)], "--trials: must be at most"),
        (["experiment", "extend", "a", "--trials", "1" * 40], "is not a whole number"),
        (["status", "--interval", "1e300"], "--interval: must be a positive number of seconds"),
        (["status", "--interval", "nan"], "--interval: must be a positive number of seconds"),
        (["dashboard", "--refresh", "0"], "--refresh: must be a positive number of seconds"),
        (["dashboard", "--refresh", "1e-300"], "--refresh: must be a positive number of se"),
        (["status", "--interval", "0.01"], "--interval: must be a positive number of seconds, at"),
        (["worker", "--idle-exit", "1e12"], "--idle-exit: must be a positive number of seconds"),
        (["worker", "--idle-exit=-inf"], "--idle-exit: must be a positive number of seconds"),
        (["run", "--trials", "\u0665"], "--trials: '\u0665' is not a whole number"),  # Arabic 5
        (["run", "--epochs", "\u00b2"], "--epochs: '\u00b2' is not a whole number"),
        (["run", "--subset-fraction", "\u0660.\u0665"], "--subset-fraction: '"),
        (["run", "--seed", "1_000"], "--seed: '1_000' is not a whole number"),
        (["compare", "a", "b", "--mem-threshold", "nan"], "--mem-threshold: must be in [-1, 1]"),
        (["removal", "a", "--mem-threshold", "2"], "--mem-threshold: must be in [-1, 1]"),
    ],
)  # fmt: skip
def test_count_and_number_arguments_are_bounded(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(argv)
    _refused(capsys, usage.value.code, message)


def test_a_worker_for_an_unknown_experiment_exits(sqlite_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    assert main(["--database-url", sqlite_url, "db", "upgrade"]) == 0
    command = [sys.executable, "-m", "memtail.cli", "--database-url", sqlite_url, "worker", "nope",
               "--idle-exit", "1"]  # fmt: skip
    # A timeout: a worker that never exits fails the test instead of hanging it.
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("memtail: error: no experiment 'nope'"), done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_delete_without_a_terminal_names_yes(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _planted_db(sqlite_url, "a")
    rows = _rows(sqlite_url)
    capsys.readouterr()  # pytest's standard input is no terminal, as a pipe is not
    _refused(capsys, main(["--database-url", sqlite_url, "experiment", "delete", "a"]), "--yes")
    assert _rows(sqlite_url) == rows


def test_a_run_refused_by_its_model_leaves_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model's size is checked against the dataset's shapes, after the run's database
    # was made: a new one (and its folders) goes again, an existing one stays.
    deep = tmp_path / "new" / "deeper"
    too_deep = ["run", "--set", "model.depth=1000000", "--out"]
    _refused(capsys, main([*too_deep, str(deep)]), "spec field 'model.depth'")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    upgrade(f"sqlite:///{kept / 'memtail.db'}")
    _refused(capsys, main([*too_deep, str(kept)]), "spec field 'model.depth'")
    assert [p.name for p in kept.iterdir()] == ["memtail.db"]
