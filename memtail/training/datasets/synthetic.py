"""``synthetic-longtail``: Feldman's long-tail mixture model, small enough for CPU trials.

Feldman (STOC 2020, "Does learning require memorization?") models each class as a mixture
of subpopulations whose frequencies are long-tailed. A subpopulation seen once in training
(a singleton) can only be classified correctly if its label is memorized, because nothing
else in the training set says anything about it. This generator makes that literal:

* ``subpopulations`` clusters with Zipf frequencies ``p_k ~ (k + 1) ** -exponent``;
* each cluster gets a class (balanced: every block of ``num_classes`` consecutive ranks
  is a random permutation of the classes, so every class has head and tail clusters);
* each cluster's center is an independent standard normal vector in ``dim`` dimensions,
  so clusters of the same class are unrelated and a held-out singleton is classified at
  roughly chance level;
* examples are the center plus isotropic Gaussian ``noise``, tight relative to the
  typical distance between centers (``sqrt(2 dim)``), so an example of a large cluster is
  predicted from its neighbours whether or not it was trained on.

Train and test examples are drawn i.i.d. from the same mixture, so a cluster with train
count c gets test examples in proportion to its frequency: a singleton cluster (p ~ 1/n)
has at least one test example with probability about ``1 - exp(-n_test / n_train)``,
which is what lets singleton -> test influence show up. ``label_noise`` flips that fraction
of train labels to a uniformly random other class (test labels stay clean).

Attributes per train example: ``subpopulation``, ``subpopulation_size`` (train count of
its cluster), ``singleton`` and ``noisy``; test examples carry ``subpopulation`` and
``subpopulation_size`` (the train count, 0 for clusters unseen in training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memtail.specification import DatasetSpec
from memtail.training.datasets.base import (
    MAX_CLASSES,
    Dataset,
    DatasetError,
    check_bound,
    check_seed,
    labels,
    parse_options,
)

# Generated examples per split at most: 10 million 32-dimensional ones are 1.3 GB.
MAX_EXAMPLES = 10_000_000

NAME = "synthetic-longtail"

DEFAULTS = {
    "seed": 0,
    "num_classes": 10,
    "n_train": 1000,
    "n_test": 500,
    "dim": 32,
    # 0: n_train // 2, which keeps roughly an eighth of the train set in singleton
    # clusters at any n_train (with the default exponent).
    "subpopulations": 0,
    # Zipf exponent 1.0: about half the examples sit in clusters of >= 10 train examples
    # and about 13% are singletons; larger exponents shorten the tail.
    "exponent": 1.0,
    # Per-coordinate noise; between-center distance is ~sqrt(2 * dim) = 8 at dim 32, a
    # cluster's radius ~noise * sqrt(dim) = 2.8, so clusters rarely overlap.
    "noise": 0.5,
    "label_noise": 0.0,
}


def load_synthetic_longtail(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    """Generate the dataset; a pure function of the options (nothing is read or written)."""
    opts = parse_options(spec, DEFAULTS)
    num_classes, n_train, n_test, dim = (
        opts["num_classes"],
        opts["n_train"],
        opts["n_test"],
        opts["dim"],
    )
    seed = check_seed(opts)
    k = opts["subpopulations"] or max(n_train // 2, num_classes)
    values = MAX_EXAMPLES * 32
    # In order, each bound resting on the fields checked before it.
    bounds = [
        ("n_train", n_train, 2, MAX_EXAMPLES, "examples are generated in memory"),
        ("n_test", n_test, 1, MAX_EXAMPLES, "examples are generated in memory"),
        ("num_classes", num_classes, 2, min(MAX_CLASSES, n_train),
         f"every class needs a train example, and at most {MAX_CLASSES:,} output units"),
        ("dim", dim, 1, min(100_000, values // max(n_train + n_test, 1)),
         f"the (n_train + n_test) x dim values are generated in memory, at most {values:,}"),
        ("subpopulations", k, num_classes, min(MAX_EXAMPLES, values // max(dim, 1)),
         "every class needs one, and their centers (subpopulations x dim values) are held "
         f"in memory, at most {values:,}"),
        ("exponent", opts["exponent"], 0, 100, "a Zipf exponent; 1 is the default"),
        ("noise", opts["noise"], 0, 1_000, "per coordinate; centers are ~sqrt(2 x dim) apart"),
    ]  # fmt: skip
    for key, value, low, high, why in bounds:
        check_bound(f"dataset.{key}", value, low, high, why)
    if not 0 <= opts["label_noise"] < 1:
        raise DatasetError(
            "dataset.label_noise", f"must be in [0, 1) (got {opts['label_noise']!r})"
        )

    # Independent streams, so that e.g. changing n_test leaves the train set unchanged.
    structure, train_rng, test_rng, flip_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    freq = np.arange(1, k + 1, dtype=np.float64) ** -opts["exponent"]
    freq /= freq.sum()
    blocks = -(-k // num_classes)
    cluster_class = np.concatenate([structure.permutation(num_classes) for _ in range(blocks)])[:k]
    centers = structure.standard_normal((k, dim))

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        cluster = rng.choice(k, size=n, p=freq)
        x = centers[cluster] + opts["noise"] * rng.standard_normal((n, dim))
        return cluster, x.astype(np.float32)

    train_cluster, x_train = draw(train_rng, n_train)
    test_cluster, x_test = draw(test_rng, n_test)
    y_train = cluster_class[train_cluster].copy()
    y_test = cluster_class[test_cluster]

    noisy = np.zeros(n_train, dtype=bool)
    flipped = flip_rng.choice(
        n_train, size=int(round(opts["label_noise"] * n_train)), replace=False
    )
    noisy[flipped] = True
    # Adding 1..C-1 modulo C gives a uniformly random *other* class.
    y_train[flipped] = (y_train[flipped] + flip_rng.integers(1, num_classes, len(flipped))) % (
        num_classes
    )

    size = np.bincount(train_cluster, minlength=k)
    train_attributes = [
        {
            "subpopulation": int(c),
            "subpopulation_size": int(size[c]),
            "singleton": bool(size[c] == 1),
            "noisy": bool(flag),
        }
        for c, flag in zip(train_cluster, noisy, strict=True)
    ]
    test_attributes = [
        {"subpopulation": int(c), "subpopulation_size": int(size[c])} for c in test_cluster
    ]
    return Dataset(
        name=NAME,
        x_train=torch.from_numpy(x_train),
        y_train=labels(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=labels(y_test),
        num_classes=num_classes,
        train_sources=None,
        test_sources=None,
        train_attributes=train_attributes,
        test_attributes=test_attributes,
    )
