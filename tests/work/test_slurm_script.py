"""`memtail slurm submit` without a cluster: the job-array script it writes, and the
mistakes it refuses in one line before anything reaches SLURM."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from memtail.cli.main import main
from memtail.work.slurm import ArrayJob, SlurmError, render


def test_the_script_asks_for_what_was_given_and_holds_no_secret(tmp_path: Path) -> None:
    job = ArrayJob(
        experiment="cifar",
        workers=16,
        gpus_per_worker=4,
        time="1-00:00:00",
        partition="gpu",
        account="lab",
        sbatch_args=["--qos=long"],
        idle_exit=600,
        warning_seconds=120,
        logs=tmp_path / "logs",
    )
    job.check()
    script = render(job)
    for line in (
        "#SBATCH --job-name=memtail-cifar",
        "#SBATCH --array=0-15",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=long",
        f"#SBATCH --output={(tmp_path / 'logs').resolve()}/%x-%A_%a.out",
    ):
        assert line in script.splitlines(), line
    assert "for device in $(seq 0 3)" in script and "MEMTAIL_DEVICE=cuda:${device}" in script
    assert "worker cifar --idle-exit 600" in script and "postgresql" not in script
    # bash accepts it.
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    # CPU tasks: one worker each, on the default device.
    cpu = render(ArrayJob(experiment=None, workers=2, gpus_per_worker=0, logs=tmp_path))
    assert "--gres" not in cpu and "MEMTAIL_DEVICE" not in cpu and "seq 0 0" in cpu


def test_an_env_file_must_be_private(tmp_path: Path) -> None:
    secrets = tmp_path / "memtail.env"
    secrets.write_text("MEMTAIL_DATABASE_URL=postgresql+psycopg2://u:pw@h/db\n")
    secrets.chmod(0o644)
    job = ArrayJob(experiment=None, workers=1, env_file=secrets, logs=tmp_path)
    with pytest.raises(SlurmError, match="readable by others.*chmod 600"):
        job.check()
    secrets.chmod(0o600)
    job.check()
    script = render(job)
    assert f". {secrets.resolve()}" in script and "pw@" not in script


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: must be 1 or more"),
        (["--workers", "2", "--time", "soon"], "--time 'soon' is not a SLURM time"),
        (["--workers", "2", "--gpus-per-worker", "-1"], "--gpus-per-worker: must be 0 or more"),
    ],
)
def test_submit_mistakes_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("MEMTAIL_DATABASE_URL", "postgresql+psycopg2://u@127.0.0.1:1/none")
    try:
        code = main(["slurm", "submit", *args, "--dry-run"])
    except SystemExit as usage:  # counts are the parser's to refuse, times the job's
        code = usage.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("memtail: error: ") and message in err
    assert "\n" not in err


def test_sqlite_is_refused_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--database-url", f"sqlite:///{tmp_path / 'm.db'}", "slurm", "submit", "--workers", "1"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "need a PostgreSQL server they can reach" in err and "\n" not in err
