"""``python -m memtail.cli``: the same as the ``memtail`` command."""

import sys

from memtail.cli.main import main

sys.exit(main())
