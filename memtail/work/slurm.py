"""Trial workers on a SLURM cluster: the job-array script, ``sbatch``, ``squeue``.

``memtail slurm submit`` turns "N workers with G GPUs each for 12 hours" into one job
array of N tasks; each task starts one ``memtail worker`` per GPU (pinned to it), which
claims trials from the database, exits on its own once no trial of its experiment has
been claimable for the idle grace period (the allocation is given back instead of
idling to its time limit), and on SLURM's warning signal (``--signal=B:TERM@...``, sent
before the time limit) or ``scancel`` saves its trial and hands it back. Compute nodes
need to reach the database only: the workers pull, no broker is involved.

Secrets never enter the script: the database URL reaches the tasks through the
environment ``sbatch`` exports from the submitting shell (its default, ``--export=ALL``),
or from an ``--env-file`` only its owner may read, which the script sources.
"""

from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ArrayJob", "SlurmError", "queue", "render", "submit"]

#: What ``memtail slurm status`` asks ``squeue`` for, "|"-separated.
QUEUE_FORMAT = "%i|%j|%T|%M|%l|%R"
#: Job names memtail gives its arrays: "memtail-<experiment or all>".
JOB_PREFIX = "memtail-"
_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+")


class SlurmError(RuntimeError):
    """A SLURM command is missing or refused the job; the message says which and why."""


@dataclass(frozen=True)
class ArrayJob:
    """One ``memtail slurm submit``: what the job-array script asks SLURM for."""

    experiment: str | None  # None: every active experiment
    workers: int
    gpus_per_worker: int = 1
    time: str = "12:00:00"
    partition: str | None = None
    account: str | None = None
    sbatch_args: list[str] = field(default_factory=list)
    idle_exit: float = 300.0
    #: Seconds before the time limit at which SLURM sends the warning SIGTERM: the
    #: workers' own grace (MEMTAIL_STOP_GRACE_SECONDS) plus a margin.
    warning_seconds: int = 120
    logs: Path = Path("slurm-logs")
    env_file: Path | None = None

    def check(self) -> None:
        if self.workers < 1:
            raise SlurmError(f"--workers must be 1 or more (got {self.workers})")
        if self.gpus_per_worker < 0:
            raise SlurmError(f"--gpus-per-worker must be 0 or more (got {self.gpus_per_worker})")
        if not _TIME.fullmatch(self.time):
            raise SlurmError(
                f"--time {self.time!r} is not a SLURM time; use e.g. 12:00:00 or 1-00:00:00"
            )
        if self.idle_exit <= 0:
            raise SlurmError(f"--idle-exit must be > 0 seconds (got {self.idle_exit:g})")
        if self.env_file is not None:
            mode = self.env_file.stat().st_mode if self.env_file.exists() else None
            if mode is None:
                raise SlurmError(f"--env-file {self.env_file} does not exist")
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SlurmError(
                    f"--env-file {self.env_file} is readable by others; it holds secrets: "
                    f"chmod 600 {self.env_file}"
                )


def render(job: ArrayJob) -> str:
    """The job-array script: one ``memtail worker`` per GPU of each task."""
    name = JOB_PREFIX + (job.experiment or "all")
    directives = [
        f"--job-name={name}",
        f"--array=0-{job.workers - 1}",
        f"--output={job.logs.resolve()}/%x-%A_%a.out",
        f"--time={job.time}",
        f"--signal=B:TERM@{job.warning_seconds}",
        "--ntasks=1",
    ]
    if job.gpus_per_worker:
        directives.append(f"--gres=gpu:{job.gpus_per_worker}")
    if job.partition:
        directives.append(f"--partition={job.partition}")
    if job.account:
        directives.append(f"--account={job.account}")
    directives += job.sbatch_args
    worker = [
        sys.executable,
        "-m",
        "memtail.cli",
        "worker",
        *([job.experiment] if job.experiment else []),
        "--idle-exit",
        f"{job.idle_exit:g}",
    ]
    devices = job.gpus_per_worker or 1
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {d}" for d in directives),
        f"# memtail trial workers ({devices} per task): each claims trials from the database,",
        f"# exits once none was claimable for {job.idle_exit:g} s, and on SIGTERM (the time",
        "# limit's warning, scancel) saves its trial and hands it back.",
        "set -u",
    ]
    if job.env_file is not None:
        lines += [
            "# The database URL (and other secrets) from a file only its owner reads.",
            f"set -a; . {shlex.quote(str(job.env_file.resolve()))}; set +a",
        ]
    else:
        lines.append("# The database URL comes from the environment sbatch exported.")
    lines += [
        ': "${MEMTAIL_DATABASE_URL:?set MEMTAIL_DATABASE_URL (PostgreSQL) before sbatch}"',
        "pids=()",
        f"for device in $(seq 0 {devices - 1}); do",
        "  name=slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}-${device}",
        *(["  MEMTAIL_DEVICE=cuda:${device} \\"] if job.gpus_per_worker else []),
        f'  {shlex.join(worker)} --name "$name" &',
        "  pids+=($!)",
        "done",
        "# SLURM signals this shell: pass it on, then wait for every worker to hand back.",
        "trap 'kill -TERM \"${pids[@]}\" 2>/dev/null' TERM INT",
        'for pid in "${pids[@]}"; do',
        '  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done',
        "done",
        "",
    ]
    return "\n".join(lines)


def submit(job: ArrayJob, script: str) -> tuple[str, Path]:
    """Save ``script`` next to the logs and submit it; (job id, script path)."""
    sbatch = _command("sbatch")
    job.logs.mkdir(parents=True, exist_ok=True)
    path = job.logs / f"{JOB_PREFIX}{job.experiment or 'all'}.sbatch"
    path.write_text(script)
    done = subprocess.run(
        [sbatch, "--parsable", str(path)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise SlurmError(f"sbatch refused the job: {message[-1] if message else done.returncode}")
    job_id = done.stdout.strip().split(";")[0]
    final = job.logs / f"{JOB_PREFIX}{job.experiment or 'all'}-{job_id}.sbatch"
    path.rename(final)
    return job_id, final


@dataclass(frozen=True)
class QueuedTask:
    """One array task as ``squeue`` sees it."""

    job_id: str
    name: str
    state: str
    elapsed: str
    limit: str
    where: str  # the node, or why it waits


def queue() -> list[QueuedTask]:
    """memtail's array tasks that SLURM still knows (pending, running, completing)."""
    squeue = _command("squeue")
    done = subprocess.run(
        [squeue, "--noheader", "--array", f"--format={QUEUE_FORMAT}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {(done.stderr or done.stdout).strip()[:300]}")
    tasks = []
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 6 and parts[1].startswith(JOB_PREFIX):
            tasks.append(QueuedTask(*parts))
    return tasks


def _command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlurmError(
            f"{name} not found: run this on a SLURM login node (or put SLURM's commands on PATH)"
        )
    return path
