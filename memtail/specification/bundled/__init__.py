"""Experiment specs that ship with memtail: `memtail run NAME` and `--create NAME` find them."""
