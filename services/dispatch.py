"""The coordinator's contact with the broker: send trial messages, count queued ones."""

from __future__ import annotations

from collections.abc import Callable

from amqp.exceptions import ChannelError
from celery import Celery

from memtail.config import Settings
from services.celery_config import RUN_TRIAL, TRIALS_QUEUE, celery_config


class Broker:
    """Publishes ``memtail.run_trial`` with memtail's routing and reads the queue depth."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("memtail-coordinator")
        self._app.conf.update(celery_config(settings))

    def send(self, trial_id: int) -> None:
        self._app.send_task(RUN_TRIAL, args=[int(trial_id)])

    def depth(self) -> int:
        """Messages waiting in the trials queue (not those a worker holds)."""
        with self._app.connection_for_read() as conn:
            try:
                declared = conn.default_channel.queue_declare(queue=TRIALS_QUEUE, passive=True)
            except ChannelError:
                # No such queue: a broker that lost its data (restart without persistence)
                # forgets the queue itself, and with it every message.
                return 0
            return int(declared.message_count)


def celery_sender(settings: Settings) -> Callable[[int], None]:
    return Broker(settings).send
