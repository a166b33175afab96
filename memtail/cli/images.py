"""The image loader that reports, plots and the dashboard draw their grids with.

Loading a dataset needs torch, and ``memtail.views`` may not import it (an import
contract), so the command line, which may load anything, hands the views this loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memtail.records import Experiment
    from memtail.views.report import ImageLoader


def dataset_images(data_root: str | Path) -> ImageLoader:
    """Loads an experiment's dataset from ``data_root``, or None where its files are not
    there: the pages then show tables only (a page never downloads a dataset)."""

    def load(experiment: Experiment) -> object | None:
        # Imported when a page first needs images: torch takes seconds to load.
        from memtail.training.datasets import DatasetError, load_dataset

        try:
            return load_dataset(experiment.spec.dataset, data_root)
        except (DatasetError, OSError):
            return None

    return load
