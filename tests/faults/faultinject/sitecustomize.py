"""Test-only fault injection inside real memtail processes (never used in production).

A test puts ``tests/faults/faultinject`` first on a subprocess's ``PYTHONPATH``; Python then
imports this module at startup (``sitecustomize``). It does nothing unless one of the
variables below is set, and it changes no memtail source: it wraps functions right after
their module is first imported (an import hook), so lazily imported modules such as
``memtail.training.trainer`` (imported inside a Celery pool child) are patched too, and forked
children inherit the hook.

MEMTAIL_TEST_POISON_SEEDS=s1,s2
    ``Trainer.run`` raises ``RuntimeError("poison ...")`` for trials with these seeds.
MEMTAIL_TEST_SLOW_TRAINING=seconds
    ``Trainer.run`` sleeps this long before training, so a kill lands mid-training.
MEMTAIL_TEST_TRAINING_MARKS=folder
    While ``Trainer.run`` runs, the file ``folder/<pid>`` holds the trial's seed: the test
    knows which process is inside training, and with which trial.
MEMTAIL_TEST_EPOCH_PAUSE=seconds
    ``Trainer.run`` sleeps this long after each epoch (its ``on_epoch``), so that a kill
    lands between checkpoints, after the first one, without changing what is computed.
MEMTAIL_TEST_FEATURES_PAUSE=seconds, with MEMTAIL_TEST_FEATURES_MARKS=folder
    A probe's feature trial writes its features artifact in 4 KiB chunk rows, and halfway
    through (some chunks committed) creates ``folder/<pid>`` and sleeps this long, so a
    kill lands mid-write. Only once per folder: the retry writes straight through.
MEMTAIL_TEST_ESTIMATE_PAUSE=seconds
    ``memtail.store.estimate_runs._influence_rows`` (called inside the replacement transaction,
    after both deletes) sleeps this long; with MEMTAIL_TEST_PAUSE_FILE=path it first
    creates that file, so the test knows the transaction is open.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _patch_training(module: Any) -> None:
    poison = {int(s) for s in os.environ.get("MEMTAIL_TEST_POISON_SEEDS", "").split(",") if s}
    slow = float(os.environ.get("MEMTAIL_TEST_SLOW_TRAINING", "0") or 0)
    original = module.Trainer.run

    marks = os.environ.get("MEMTAIL_TEST_TRAINING_MARKS")

    pause = float(os.environ.get("MEMTAIL_TEST_EPOCH_PAUSE", "0") or 0)

    def run(self: Any, model_spec: Any, training: Any, subset: Any, seed: int, **kw: Any) -> Any:
        if pause > 0:
            report = kw.get("on_epoch")

            def on_epoch(epoch: int, loss: float) -> None:
                if report is not None:
                    report(epoch, loss)
                time.sleep(pause)

            kw["on_epoch"] = on_epoch
        if int(seed) in poison:
            raise RuntimeError(f"poison trial (seed {seed}) injected by tests/faults/faultinject")
        mark = Path(marks) / str(os.getpid()) if marks else None
        if mark is not None:
            mark.write_text(str(seed))
        try:
            if slow > 0:
                time.sleep(slow)
            return original(self, model_spec, training, subset, seed, **kw)
        finally:
            if mark is not None:
                mark.unlink(missing_ok=True)

    module.Trainer.run = run


def _patch_estimates(module: Any) -> None:
    pause = float(os.environ.get("MEMTAIL_TEST_ESTIMATE_PAUSE", "0") or 0)
    mark = os.environ.get("MEMTAIL_TEST_PAUSE_FILE")
    original = module._influence_rows

    def influence_rows(*args: Any, **kwargs: Any) -> Any:
        if mark:
            Path(mark).write_text(str(os.getpid()))
        time.sleep(pause)
        return original(*args, **kwargs)

    module._influence_rows = influence_rows


def _patch_features(module: Any) -> None:
    pause = float(os.environ["MEMTAIL_TEST_FEATURES_PAUSE"])
    marks = Path(os.environ["MEMTAIL_TEST_FEATURES_MARKS"])
    # Small chunks: the artifact's first rows commit before the pause.
    sys.modules["memtail.store.artifacts"].CHUNK_BYTES = 4096
    original = module.encode

    def encode(blocks: Any, rows: int) -> Any:
        for n, part in enumerate(original(blocks, rows)):
            yield part
            once = marks / "paused"
            if n == 1 and not once.exists():
                once.touch()
                (marks / str(os.getpid())).write_text("writing features")
                time.sleep(pause)

    module.encode = encode


_PATCHES: dict[str, Callable[[Any], None]] = {}
if any(
    os.environ.get(f"MEMTAIL_TEST_{what}")
    for what in ("POISON_SEEDS", "SLOW_TRAINING", "TRAINING_MARKS", "EPOCH_PAUSE")
):
    _PATCHES["memtail.training.trainer"] = _patch_training
if os.environ.get("MEMTAIL_TEST_FEATURES_PAUSE"):
    _PATCHES["memtail.work.features"] = _patch_features
if os.environ.get("MEMTAIL_TEST_ESTIMATE_PAUSE"):
    _PATCHES["memtail.store.estimate_runs"] = _patch_estimates


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a target module with the normal finders, then patches it after it executes."""

    def __init__(self) -> None:
        self._loaders: dict[str, Any] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        self._loaders[name] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loaders[spec.name].create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loaders[module.__name__].exec_module(module)
        _PATCHES[module.__name__](module)


if _PATCHES:
    sys.meta_path.insert(0, _PatchAfterImport())
