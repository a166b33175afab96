"""Flower, Celery's dashboard, only behind a password: ``python -m services.flower [ARGS]``.

The dashboard can revoke tasks and shut workers down, so it refuses to start without
``FLOWER_BASIC_AUTH`` (``user:password``), which Flower itself reads from the environment
(never from a command line, which ``ps`` shows to everyone on the host).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    user, _, password = auth.partition(":")
    if not (user and password):
        print(
            "flower: error: FLOWER_BASIC_AUTH must be user:password (set it in .env); the "
            "dashboard does not start without it",
            file=sys.stderr,
        )
        return 2
    os.execvp("celery", ["celery", "-A", "services.celery_app", "flower", *argv])
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
