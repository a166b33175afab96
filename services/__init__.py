"""Processes: thin wiring of the memtail library into Celery workers, beat and the CLI."""
