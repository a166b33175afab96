"""The ``memtail`` command line."""
