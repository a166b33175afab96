"""Export: Feldman & Zhang's released layout (.npz), or the tables as CSV or Parquet.

``export_npz`` writes ``tr_labels``, ``tt_labels``, ``tr_mem`` as in
``cifar100_infl_matrix.npz`` and the pairs ``tr_idx``, ``tt_idx``, ``infl``, ``mem`` as in
``cifar100_high_infl_pairs_infl0.15_mem0.25.npz``, in one file, plus the intervals and
counts the released files lack (``memtail.store.results.estimate_arrays``). Undefined
estimates are NaN. ``export_tables`` writes the same as two tables, ``memorization`` (one
row per train example) and ``pairs`` (the high-influence pairs), as CSV (empty cells
where undefined) or Parquet (nulls; needs pyarrow: ``pip install 'memtail[parquet]'``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memtail.records import Experiment
from memtail.store.engine import Engine
from memtail.store.results import estimate_arrays

TABLE_FORMATS = ("csv", "parquet")


class ExportError(ValueError):
    """The export cannot be written as asked; the message says what to do."""


def npz_file(out: str | Path, name: str, *, folder: bool) -> Path:
    """The file ``export --out OUT`` writes: ``NAME.npz`` inside OUT when it is a folder,
    else OUT, with the ``.npz`` numpy would add anyway, so that what is said is what is
    written."""
    out = Path(out)
    if folder:
        from memtail.views.plots import file_stem  # an older database's name may hold a "/"

        return out / f"{file_stem(name)}.npz"
    return out if out.suffix == ".npz" else out.with_name(f"{out.name}.npz")


def export_npz(engine: Engine, experiment: Experiment, out: str | Path) -> dict[str, np.ndarray]:
    """Write the experiment's estimates to ``out`` (.npz, its folder made as for the
    tables) and return the arrays."""
    arrays = estimate_arrays(engine, experiment)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return arrays


def export_tables(
    engine: Engine, experiment: Experiment, folder: str | Path, fmt: str
) -> list[Path]:
    """Write ``memorization.<fmt>`` and ``pairs.<fmt>`` into ``folder``; their paths."""
    if fmt not in TABLE_FORMATS:
        raise ExportError(f"unknown table format {fmt!r}; use {' or '.join(TABLE_FORMATS)}")
    write = _parquet_writer() if fmt == "parquet" else _csv
    a = estimate_arrays(engine, experiment)
    tables = {
        "memorization": {
            "example_index": np.arange(experiment.n_train),
            "label": a["tr_labels"],
            "mem": a["tr_mem"],
            "ci_low": a["tr_mem_ci_low"],
            "ci_high": a["tr_mem_ci_high"],
            "n_in": a["tr_n_in"],
            "n_out": a["tr_n_out"],
        },
        "pairs": {
            "train_index": a["tr_idx"],
            "test_index": a["tt_idx"],
            "infl": a["infl"],
            "mem": a["mem"],
            "infl_ci_low": a["infl_ci_low"],
            "infl_ci_high": a["infl_ci_high"],
            "p_value": a["infl_p_value"],
            "q_value": a["infl_q_value"],
        },
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, columns in tables.items():
        path = folder / f"{name}.{fmt}"
        write(columns, path)
        written.append(path)
    return written


def _csv(columns: dict[str, np.ndarray], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        cells = [
            ["" if isinstance(v, float) and np.isnan(v) else v for v in values.tolist()]
            for values in columns.values()
        ]
        writer.writerows(zip(*cells, strict=True))


def _parquet_writer() -> Callable[[dict[str, np.ndarray], Path], None]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(
            "Parquet needs pyarrow: pip install 'memtail[parquet]' (or use --format csv)"
        ) from None

    def write(columns: dict[str, np.ndarray], path: Path) -> None:
        arrays = {
            name: pa.array(values, from_pandas=values.dtype.kind == "f")
            for name, values in columns.items()
        }
        pq.write_table(pa.table(arrays), path)

    return write
