"""Process configuration, read once from ``MEMTAIL_*`` environment variables.

Entry points call :func:`Settings.from_env` exactly once and pass the result down; no
module reads the environment at import time, so tests and workers can build settings
for another database without touching ``os.environ``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

# Where `memtail run` keeps its SQLite file, and so where every command looks by default.
DEFAULT_DATABASE_URL = "sqlite:///runs/memtail.db"
# The broker of the service's processes (Celery, the coordinator) when none is configured.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# torch.compile modes for training ("none": eager); memtail.training.trainer uses the same tuple.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


# Training devices: torch's names for the CPU, a CUDA GPU (by number) or Apple's GPU.
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
# Where the estimator may scan: the CPU kernels or a CUDA GPU (its kernels are CUDA's).
ESTIMATOR_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# The databases memtail's SQL is written and tested for (an optional driver after "+").
DATABASE_SCHEME = re.compile(r"(sqlite|postgresql)(\+\w+)?://")
# A name the dashboard may be opened by: a DNS name, an IPv4 or [IPv6] address, and
# optionally a port (ignored: the name is what DNS rebinding forges).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)(?::\d{{1,5}})?"
)


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    """Everything a memtail process needs to know about its surroundings."""

    #: SQLAlchemy URL of the results database (PostgreSQL for the service, SQLite embedded).
    database_url: str = DEFAULT_DATABASE_URL
    #: Celery broker URL (Redis); empty: not configured. The service's processes then use
    #: DEFAULT_BROKER_URL, and `memtail experiment create` sends no messages.
    broker_url: str = ""
    #: Seconds a claimed trial stays leased without a heartbeat before the reaper frees it.
    lease_seconds: float = 120.0
    #: Seconds between heartbeats of a running trial (well under lease_seconds).
    heartbeat_seconds: float = 20.0
    #: Attempts before a trial is marked failed for good.
    max_attempts: int = 3
    #: Preemptions (a worker told to stop hands its trial back) before a trial is marked
    #: failed: a trial that never gets to finish is reported, not retried forever.
    max_preemptions: int = 20
    #: Claims lost (the worker died, was killed or its lease expired, no error recorded)
    #: before a trial is marked failed: not the trial's fault, so far more than
    #: max_attempts, yet bounded so that a trial that kills every worker is reported.
    max_lost: int = 20
    #: Seconds a worker told to stop (SIGTERM) has to checkpoint its trial and hand it
    #: back before it exits regardless; within compose's stop_grace_period (and SLURM's
    #: --signal lead time) so that the platform does not kill it first.
    stop_grace_seconds: float = 60.0
    #: Seconds between periodic estimator runs (Celery beat).
    estimate_interval: float = 60.0
    #: Trials the coordinator keeps queued in the broker per experiment.
    dispatch_window: int = 64
    #: Seconds between coordinator passes (dispatch, re-dispatch, reap).
    coordinator_interval: float = 5.0
    #: Seconds a dispatched trial may sit unclaimed before it is re-dispatched (lost message).
    redispatch_after: float = 600.0
    #: Root folder of torchvision / ImageFolder / npz datasets.
    data_root: str = "data"
    #: torch device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: torch intra-op threads per worker process on CPU (1: processes scale better).
    torch_threads: int = 1
    #: Seconds a worker keeps claiming further undispatched trials of the same experiment
    #: straight from the database after its message's trial (0: one trial per message).
    chain_seconds: float = 30.0
    #: torch.compile mode for training: "none" (eager), "default", "reduce-overhead" (CUDA
    #: graphs), "max-autotune-no-cudagraphs". Each worker compiles once per network (tens
    #: of seconds), then every trial reuses it; see README, Performance.
    compile_mode: str = "none"
    #: Where the estimator scans influence pairs: "auto" (the first GPU when torch sees
    #: one, else the CPU kernels), "cpu", "cuda", "cuda:1", ...
    estimator_device: str = "auto"
    #: A folder every worker mounts (a shared volume) for artifacts (features,
    #: checkpoints), or "" to keep them in the database, which needs no setup.
    artifacts: str = ""
    #: Further host names the dashboard answers to, separated by commas (it always
    #: answers to 127.0.0.1, localhost, [::1] and its --host): the names users open it
    #: by, e.g. the machine's when it listens on 0.0.0.0. Any other Host header is refused.
    dashboard_hosts: str = ""

    @property
    def artifact_folder(self) -> Path | None:
        """MEMTAIL_ARTIFACTS as a folder, or None: artifacts live in the database."""
        return Path(self.artifacts) if self.artifacts else None

    @property
    def dashboard_host_names(self) -> tuple[str, ...]:
        """MEMTAIL_DASHBOARD_HOSTS as a tuple of names."""
        return tuple(n.strip() for n in self.dashboard_hosts.split(",") if n.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``MEMTAIL_<FIELD>`` variables; unknown ones are ignored."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            key = f"MEMTAIL_{field.name.upper()}"
            if key not in env:
                continue
            raw = env[key]
            kind = type(getattr(cls, field.name))
            try:
                if kind is not str and not raw.isascii():
                    # int() also reads other scripts' digits ("٥" is 5): numbers in 0-9 only.
                    raise ValueError(raw)
                values[field.name] = kind(raw)
            except ValueError:
                raise ConfigError(
                    f"{key}={raw!r} is not a valid {kind.__name__}; set it to a number"
                ) from None
            if kind is float and not math.isfinite(values[field.name]):  # type: ignore[arg-type]
                raise ConfigError(f"{key}={raw!r} must be a finite number")
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    @property
    def service_broker_url(self) -> str:
        """The broker the service's processes use: the configured one, or the default."""
        return self.broker_url or DEFAULT_BROKER_URL

    def validate(self) -> None:
        if self.lease_seconds <= 0:
            raise ConfigError("MEMTAIL_LEASE_SECONDS must be > 0")
        if not 0 < self.heartbeat_seconds < self.lease_seconds:
            raise ConfigError(
                "MEMTAIL_HEARTBEAT_SECONDS must be > 0 and below MEMTAIL_LEASE_SECONDS "
                "(a lease must survive at least one missed heartbeat)"
            )
        if self.max_attempts < 1:
            raise ConfigError("MEMTAIL_MAX_ATTEMPTS must be >= 1")
        if self.max_preemptions < 1:
            raise ConfigError("MEMTAIL_MAX_PREEMPTIONS must be >= 1")
        if self.max_lost < 1:
            raise ConfigError("MEMTAIL_MAX_LOST must be >= 1")
        if self.stop_grace_seconds <= 0:
            raise ConfigError("MEMTAIL_STOP_GRACE_SECONDS must be > 0")
        if self.dispatch_window < 1:
            raise ConfigError("MEMTAIL_DISPATCH_WINDOW must be >= 1")
        if self.torch_threads < 1:
            raise ConfigError("MEMTAIL_TORCH_THREADS must be >= 1")
        if self.chain_seconds < 0:
            raise ConfigError("MEMTAIL_CHAIN_SECONDS must be >= 0 (0 turns chaining off)")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"MEMTAIL_COMPILE_MODE={self.compile_mode!r} is not a torch.compile mode; "
                f"use one of {', '.join(COMPILE_MODES)}"
            )
        if not DEVICE.fullmatch(self.device):
            raise ConfigError(
                f"MEMTAIL_DEVICE={self.device!r} is not a device memtail can train on; use auto, "
                "cpu, cuda, cuda:N or mps"
            )
        if not ESTIMATOR_DEVICE.fullmatch(self.estimator_device):
            raise ConfigError(
                f"MEMTAIL_ESTIMATOR_DEVICE={self.estimator_device!r} is not a device; "
                "use auto, cpu, cuda or cuda:N"
            )
        for name in self.dashboard_host_names:
            if not HOST_NAME.fullmatch(name):
                raise ConfigError(
                    f"MEMTAIL_DASHBOARD_HOSTS: {name[:60]!r} is not a host name; give names "
                    "separated by commas, e.g. memtail.example.org,10.0.0.5"
                )
        if not DATABASE_SCHEME.match(self.database_url):
            # Only the scheme is shown: the rest of a URL may hold a password.
            scheme = self.database_url.partition(":")[0][:40] or "(empty)"
            raise ConfigError(
                f"MEMTAIL_DATABASE_URL (or --database-url): {scheme!r} databases are not "
                "supported; use postgresql+psycopg2://USER@HOST/DB or sqlite:///PATH"
            )
