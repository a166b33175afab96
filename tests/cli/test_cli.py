"""The command line as users run it: bad input, the embedded runner, reports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memtail.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
MEMTAIL = str(Path(sys.executable).parent / "memtail")

TINY = """
name = "tiny-longtail"
seed = 0
trials = 10

[dataset]
name = "synthetic-longtail"
n_train = 120
n_test = 60

[model]
name = "mlp"
width = 32

[training]
epochs = 5
batch_size = 32
lr = 0.05
"""


def _experiments(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM experiments").fetchone()[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    assert main(["--database-url", f"sqlite:///{path}", "db", "upgrade"]) == 0
    return path


def _create(db: Path, tmp_path: Path, spec: str, *flags: str) -> int:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(spec)
    return main(
        [
            "--database-url",
            f"sqlite:///{db}",
            "--data-root",
            str(tmp_path / "data"),
            "experiment",
            "create",
            str(spec_path),
            "--no-dispatch",
            *flags,
        ]
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trials", "0"], "spec field 'trials': must be > 0"),
        (["--set", "subset_size=120"], "spec field 'subset_size': gives m=120 for n_train=120"),
        (["--set", "subset_size=0", "--subset-fraction", "1.5"], "spec field 'subset_fraction'"),
        (["--dataset", "nope"], "spec field 'dataset.name': unknown dataset 'nope'"),
        (["--model", "nope"], "spec field 'model.name': unknown model 'nope'"),
        (["--set", "dataset.bogus=1"], "dataset.bogus"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert _create(db, tmp_path, TINY, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memtail: error: ") and message in err, err
    assert "\n" not in err
    assert _experiments(db) == 0


def test_missing_dataset_files_name_the_path_and_the_flag(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = 'name = "m"\ntrials = 3\n[dataset]\nname = "mnist"\n'
    assert _create(db, tmp_path, spec) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memtail: error: spec field 'dataset.name'") and "\n" not in err
    assert str(tmp_path / "data" / "mnist") in err and "--download" in err
    assert _experiments(db) == 0


def test_malformed_toml_and_name_clash(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(db, tmp_path, TINY + "\n[[[broken") == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert _experiments(db) == 0

    assert _create(db, tmp_path, TINY) == 0
    assert "created experiment 'tiny-longtail'" in capsys.readouterr().out
    assert _create(db, tmp_path, TINY) == 0
    assert "already exists with this spec" in capsys.readouterr().out
    assert _create(db, tmp_path, TINY, "--epochs", "6") == 2
    assert "spec field 'name': experiment 'tiny-longtail' already exists with a different" in (
        capsys.readouterr().err
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM trials").fetchone()[0] == 10
    # Only more trials is no other spec: the experiment grows.
    assert _create(db, tmp_path, TINY, "--trials", "11") == 0
    assert "extended experiment 'tiny-longtail' (id 1): 11 trials" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM trials").fetchone()[0] == 11


def test_unknown_experiment(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", f"sqlite:///{db}", "top", "ghost"]) == 2
    assert "no experiment 'ghost'" in capsys.readouterr().err


def test_exit_status_of_the_real_process(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.replace("trials = 10", "trials = 0"))
    result = subprocess.run(
        [
            MEMTAIL,
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
            "run",
            str(spec),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "memtail: error: spec field 'trials': must be > 0 (got 0); "
        "the paper uses 2000-4000"
    )


def test_memtail_run_embedded(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    result = subprocess.run(
        [MEMTAIL, "run", str(spec), "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("MEMTAIL_")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Most memorized training examples" in result.stdout
    assert "High-influence pairs" in result.stdout
    db = out / "memtail.db"
    assert f"Results database: {db}" in result.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM experiments").fetchone() == ("complete",)
        # 10 trials: every example has n_in + n_out = 10; a few may be in all or none.
        rows, trials_seen = conn.execute(
            "SELECT count(*), min(n_in + n_out) FROM memorization"
        ).fetchone()
        assert (rows, trials_seen) == (120, 10)
        assert (
            conn.execute("SELECT count(*) FROM memorization WHERE mem IS NOT NULL").fetchone()[0]
            >= 100
        )
        progress = conn.execute("SELECT succeeded, failed FROM experiment_progress").fetchone()
        assert progress == (10, 0)
        assert conn.execute("SELECT count(*) FROM trial_outcomes").fetchone() == (10,)
    plot = out / "tiny-longtail-memorization.png"
    assert f"plot: {plot}" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Running it again resumes: nothing left to do, same results.
    again = subprocess.run(
        [MEMTAIL, "run", str(spec), "--out", str(out), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert again.returncode == 0 and "resuming experiment 'tiny-longtail'" in again.stdout
    # The marginal utility analysis on it: three removal arms trained here, then reported.
    removal = subprocess.run(
        [MEMTAIL, "--database-url", f"sqlite:///{db}", "removal", "tiny-longtail",
         "--mem-threshold", "0.2", "--trials-per-arm", "2", "--run", "--workers", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert removal.returncode == 0, removal.stderr[-3000:]
    assert "minus-memorized" in removal.stdout and "influenced" in removal.stdout
    assert (out / "tiny-longtail-utility.png").exists()
    with sqlite3.connect(db) as conn:
        arms = conn.execute(
            "SELECT name, e.kind, e.status, p.succeeded FROM experiment_progress p "
            "JOIN experiments e USING (name) WHERE e.kind = 'removal' ORDER BY name"
        ).fetchall()
    assert [(a[1], a[2], a[3]) for a in arms] == [("removal", "complete", 2)] * 3
    # Memorization by a linear probe on the network's features, next to the network's.
    probe = subprocess.run(
        [MEMTAIL, "--database-url", f"sqlite:///{db}", "probe", "tiny-longtail",
         "--trials", "8", "--run", "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "a feature trial (the mlp on all 120 train examples) and 8 probe trials" in probe.stdout
    assert "memorized (mem >= 0.25)" in probe.stdout and "Jaccard" in probe.stdout
    assert (out / "tiny-longtail-depth.png").read_bytes()[:4] == b"\x89PNG"
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT e.kind, e.status, p.succeeded FROM experiment_progress p "
            "JOIN experiments e USING (name) WHERE name = 'tiny-longtail-probe'"
        ).fetchone()
        assert row == ("probe", "complete", 9)
        assert conn.execute(
            "SELECT count(*) FROM memorization m JOIN experiments e ON e.id = m.experiment_id "
            "WHERE e.name = 'tiny-longtail-probe' AND m.n_in + m.n_out = 8"
        ).fetchone() == (120,)
    top = subprocess.run(
        [MEMTAIL, "--database-url", f"sqlite:///{db}", "top", "tiny-longtail-probe"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert top.returncode == 0 and "95% interval" in top.stdout, top.stderr
