"""A private single-node SLURM cluster on this machine, for tests (Debian's slurm-wlm).

A munge daemon with its own key and socket, ``slurmctld`` and ``slurmd`` on free ports,
with their state, spool and logs in a temporary folder, and a ``slurm.conf`` whose node
line is what ``slurmd -C`` reports of this machine (CPU only). Nothing of a system SLURM
or munge is touched. On leaving, every job is cancelled and the three daemons stopped by
their pid files, also when the test fails. slurmd must run as root to start jobs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import free_port

REQUIRE = os.environ.get("MEMTAIL_REQUIRE_SERVICES") == "1"
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"{why}; MEMTAIL_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(f"{why}; install slurm-wlm and munge (as .ci/run does) and run as root")


def _conf(folder: Path) -> str:
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    node_line = next(line for line in node.splitlines() if line.startswith("NodeName="))
    name = node_line.split()[0].split("=", 1)[1]
    return f"""
ClusterName=memtail-test
SlurmctldHost={name}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=30
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmdSpoolDir={folder}/spool
StateSaveLocation={folder}/state
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
{node_line}
PartitionName=test Nodes={name} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start the cluster; yields the environment its commands need (SLURM_CONF)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        _unavailable(f"SLURM commands missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        _unavailable("a private slurmd must run as root to start jobs")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "munge").mkdir(mode=0o700)
    for sub in ("spool", "state"):
        (folder / sub).mkdir()
    key = folder / "munge" / "key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = [folder / "munge" / "pid", folder / "slurmctld.pid", folder / "slurmd.pid"]
    try:
        subprocess.run(
            ["munged", "--force", f"--key-file={key}", f"--socket={folder}/munge/socket",
             f"--pid-file={pids[0]}", f"--log-file={folder}/munge/log",
             f"--seed-file={folder}/munge/seed"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True)
        deadline = time.monotonic() + 60
        while True:
            state = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                logs = "".join(p.read_text()[-2000:] for p in folder.glob("*.log") if p.exists())
                raise AssertionError(f"the SLURM node never became idle ({state!r})\n{logs}")
            time.sleep(0.5)
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        time.sleep(1)
        for pid_file in reversed(pids):
            _stop(pid_file)
