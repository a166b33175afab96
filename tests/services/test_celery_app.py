"""Celery wiring: the settings long GPU tasks need, and one child per GPU."""

from __future__ import annotations

import dataclasses

import pytest

from memtail.config import Settings
from memtail.work.broker import (
    CONTROL_QUEUE,
    ESTIMATE,
    REAP,
    RUN_TRIAL,
    TRIALS_QUEUE,
    VISIBILITY_TIMEOUT,
    celery_config,
)
from services import celery_app


def test_settings_for_long_gpu_tasks() -> None:
    settings = Settings(broker_url="redis://example:6379/3", estimate_interval=42, lease_seconds=90)
    conf = celery_config(settings)
    assert conf["broker_url"] == "redis://example:6379/3"
    assert conf["task_acks_late"] is True and conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT >= 3600
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_ignore_result"] is True and conf["result_backend"] is None
    assert conf["task_routes"][RUN_TRIAL]["queue"] == TRIALS_QUEUE
    assert conf["task_routes"][ESTIMATE]["queue"] == CONTROL_QUEUE
    schedule = {entry["task"]: entry["schedule"] for entry in conf["beat_schedule"].values()}
    assert schedule == {ESTIMATE: 42, REAP: 45.0}


def test_tasks_have_explicit_names() -> None:
    assert {RUN_TRIAL, ESTIMATE, REAP} <= set(celery_app.app.tasks)


@pytest.mark.parametrize(
    ("index", "gpus", "device"), [(0, 2, "cuda:0"), (3, 2, "cuda:1"), (1, 0, "auto")]
)
def test_one_child_per_gpu(
    monkeypatch: pytest.MonkeyPatch, index: int, gpus: int, device: str
) -> None:
    import billiard.process
    import torch

    class Child:
        pass

    child = Child()
    child.index = index  # type: ignore[attr-defined]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(billiard.process, "current_process", lambda: child)
    assert celery_app._pin_device(Settings()).device == device
    # An explicit device is never overridden.
    explicit = dataclasses.replace(Settings(), device="cpu")
    assert celery_app._pin_device(explicit).device == "cpu"
