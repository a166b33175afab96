"""Sending trial messages: the coordinator's only contact with the broker."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from memtail.config import Settings
from services.celery_config import RUN_TRIAL, celery_config


def celery_sender(settings: Settings) -> Callable[[int], None]:
    """A ``send(trial_id)`` that publishes ``memtail.run_trial`` with memtail's routing."""
    app = Celery("memtail-coordinator")
    app.conf.update(celery_config(settings))

    def send(trial_id: int) -> None:
        app.send_task(RUN_TRIAL, args=[int(trial_id)])

    return send
