"""Results as rows for scripts and notebooks: JSON or CSV instead of text tables.

``render`` writes a list of flat records (one dict per row) as JSON (a list of objects;
NaN and infinities become null) or CSV (a header, then one line per row; missing values
are empty). ``progress_record`` and ``arm_record`` flatten what ``status`` and ``utility``
show; rows that are dataclasses already (top, pairs) go through ``dataclass_records``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from memtail.analyses.removal import ArmReport
from memtail.store.progress import Progress


def plain(value: Any) -> Any:
    """A value as JSON and CSV carry it: NaN and infinities None, datetimes ISO text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def dataclass_records(rows: Iterable[object]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows if is_dataclass(row) and not isinstance(row, type)]


def render(records: list[Mapping[str, Any]], fmt: str) -> str:
    """``records`` as ``fmt`` ("json" or "csv") text."""
    rows = [{key: plain(value) for key, value in record.items()} for record in records]
    if fmt == "json":
        return json.dumps(rows, indent=2, allow_nan=False)
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}; use json or csv")
    out = io.StringIO()
    names = list(rows[0]) if rows else []
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def progress_record(p: Progress) -> dict[str, Any]:
    e = p.experiment
    accuracy = p.test_accuracy or (None, None, None, None)
    return {
        "experiment": e.name,
        "status": str(e.status),
        "kind": str(e.kind),
        "dataset": e.spec.dataset.name,
        "model": e.spec.model.name,
        "n_train": e.n_train,
        "n_test": e.n_test,
        "subset_size": e.subset_size,
        "target_trials": e.target_trials,
        **{str(status): count for status, count in p.counts.items()},
        "trials_per_minute": p.trials_per_minute,
        "rate_is_average": p.rate_is_average,
        "eta_seconds": p.eta_seconds,
        "test_accuracy_mean": accuracy[0],
        "test_accuracy_std": accuracy[1],
        "test_accuracy_min": accuracy[2],
        "test_accuracy_max": accuracy[3],
        "last_estimate_at": p.last_estimate_at,
        "last_estimate_trials": p.last_estimate_trials,
        "memorized": p.memorized,
        "mem_threshold": e.spec.estimate.mem_threshold,
        "high_influence_pairs": p.pairs,
        "influence_rows": p.influence_rows,
        "expected_false_pairs": p.expected_false_pairs,
        "stop_reason": e.stop_reason,
        "resumed_trials": p.resumed,
        "resumed_seconds": p.resumed_seconds,
        "preemptions": p.preemptions,
        "lost_claims": p.lost,
    }


def arm_record(report: ArmReport, n_influenced: int) -> dict[str, Any]:
    return {
        "arm": report.arm,
        "experiment": report.experiment,
        "removed": report.removed,
        "trials": report.test.trials,
        "test_accuracy": report.test.mean,
        "test_accuracy_ci_low": report.test.low,
        "test_accuracy_ci_high": report.test.high,
        "influenced_test_examples": n_influenced,
        "influenced_accuracy": report.influenced.mean,
        "influenced_accuracy_ci_low": report.influenced.low,
        "influenced_accuracy_ci_high": report.influenced.high,
    }
