"""The Celery broker as memtail uses it: queue and task names, every setting, the client.

``celery_config`` builds every Celery setting memtail relies on in one place, into a
plain dict, for the worker and beat processes (``services/celery_app.py``) and for the
coordinator's :class:`Broker`, which publishes trial messages and reads the queue depth.
Trials run for minutes to hours on a GPU; the settings make delivery at-least-once and
leave exactly-once to the database (claims fenced by attempt number).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.utils.url
from amqp.exceptions import ChannelError
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from memtail.config import Settings
from memtail.store.urls import display_url, without_secrets

TRIALS_QUEUE = "memtail.trials"
CONTROL_QUEUE = "memtail.control"

RUN_TRIAL = "memtail.run_trial"
ESTIMATE = "memtail.estimate"
REAP = "memtail.reap"

# Redis redelivers an unacknowledged message after this long. It must exceed the longest
# trial, or a healthy long trial gets a duplicate (harmless, but wasted) message.
VISIBILITY_TIMEOUT = 12 * 3600


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.service_broker_url,
        # Results live in PostgreSQL; Celery's own result store would be a second truth.
        "result_backend": None,
        "task_ignore_result": True,
        # JSON only: a message carries a trial id, never a pickled object.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Ack after the task body ran, so a worker killed mid-trial leaves the message for
        # another worker; reject (requeue) when the child process dies (OOM killer).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A GPU worker takes one trial at a time; prefetching would strand messages behind
        # a long trial while other GPUs idle.
        "worker_prefetch_multiplier": 1,
        # Keep training through a broker blip: the trial's lease lives in PostgreSQL, and a
        # redelivered duplicate of its message is dropped by the claim.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_routes": {
            RUN_TRIAL: {"queue": TRIALS_QUEUE},
            ESTIMATE: {"queue": CONTROL_QUEUE},
            REAP: {"queue": CONTROL_QUEUE},
        },
        "task_default_queue": TRIALS_QUEUE,
        "beat_schedule": {
            "estimate": {"task": ESTIMATE, "schedule": settings.estimate_interval},
            # Reaping twice per lease bounds how long a dead worker's trial sits idle.
            "reap": {"task": REAP, "schedule": max(1.0, settings.lease_seconds / 2)},
        },
        # Periodic tasks must not pile up when the estimator falls behind: a late estimate
        # is replaced by the next one anyway.
        "task_time_limit": None,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
    }


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached; the message names it (without its password)."""


class Broker:
    """Publishes ``memtail.run_trial`` with memtail's routing and reads the queue depth.

    Both raise ``BrokerUnavailable`` when the broker cannot be reached (after Celery's own
    connection retries), so that callers can tell a missing broker from their own bugs.
    """

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("memtail-coordinator")
        self._app.conf.update(celery_config(settings))
        self._url = settings.service_broker_url
        try:
            # kombu parses the URL on first use, where a malformed one (a ?password= as
            # well as the user:pass@ it always reads) is a TypeError deep inside Celery.
            kombu.utils.url.parse_url(self._url)
        except (TypeError, ValueError) as error:
            raise BrokerUnavailable(
                f"MEMTAIL_BROKER_URL (--broker-url) {display_url(self._url)} is not a URL the "
                f"broker client can use ({without_secrets(str(error), self._url)}); give its "
                "password as redis://:PASSWORD@HOST:PORT/0"
            ) from None

    def send(self, trial_id: int) -> None:
        with self._reachable():
            self._app.send_task(RUN_TRIAL, args=[int(trial_id)])

    def depth(self) -> int:
        """Messages waiting in the trials queue (not those a worker holds)."""
        with self._reachable(), self._app.connection_for_read() as conn:
            try:
                declared = conn.default_channel.queue_declare(queue=TRIALS_QUEUE, passive=True)
            except ChannelError:
                # No such queue: a broker that lost its data (restart without persistence)
                # forgets the queue itself, and with it every message.
                return 0
            return int(declared.message_count)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (KombuOperationalError, OSError) as error:
            # kombu's sanitizer masks user:pass@ only, not ?password= and the like.
            where = display_url(self._url)
            raise BrokerUnavailable(
                f"cannot reach the broker at {where} ({without_secrets(str(error), self._url)}); "
                "check that it runs and "
                "MEMTAIL_BROKER_URL (--broker-url)"
            ) from None
