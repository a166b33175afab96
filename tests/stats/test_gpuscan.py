"""The GPU pair scan (memtail.stats.gpuscan) gives exactly the CPU kernels' pairs.

On machines without a GPU the same Triton kernel runs under Triton's interpreter
(TRITON_INTERPRET=1, read when the kernel is defined, hence a subprocess), counting bits
with shifts and masks; on a GPU the hardware popcount runs (marked ``gpu``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from memtail.stats.bits import TrialBits
from memtail.stats.influence import PairRule, influence_pairs

ROOT = Path(__file__).resolve().parents[2]
FIELDS = (
    "train_index",
    "test_index",
    "infl",
    "std_err",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "n_in",
)

# Shapes that are not multiples of a tile or a word, several blocks, same-class groups,
# and a planted column that copies a train row (so that some pairs pass).
_INTERPRETED = textwrap.dedent(
    """
    import sys
    import numpy as np
    from memtail.stats.influence import PairRule, influence_pairs

    rng = np.random.default_rng(7)
    cases = [(70, 130, 97, 0.1, None, False), (200, 150, 70, 0.15, 17, False),
             (33, 65, 70, 0.05, None, True)]
    for k, n_train, n_test, threshold, block_rows, same_class in cases:
        m = rng.random((k, n_train)) < 0.7
        t = rng.random((k, n_test)) < rng.uniform(0.2, 0.9, n_test)
        t[:, :5] = m[:, 10:15]
        y_tr, y_te = rng.integers(0, 3, n_train), rng.integers(0, 3, n_test)
        rule = PairRule(threshold=threshold, same_class=same_class)
        kw = dict(train_labels=y_tr, test_labels=y_te, block_rows=block_rows)
        a = influence_pairs(m, t, rule, backend="numpy", **kw)
        b = influence_pairs(m, t, rule, backend="cuda", device="cpu", **kw)
        fields = ("train_index", "test_index", "infl", "ci_low", "p_value", "q_value", "n_in")
        assert len(a) > 0, "the planted pairs must pass"
        for f in fields:
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), (k, f)
        print(k, len(a), "equal")
    """
)


def test_interpreted_kernel_gives_the_numpy_pairs() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _INTERPRETED], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("equal") == 3, done.stdout


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="this test checks the non-interpreted error"
)
def test_cuda_backend_on_the_cpu_says_what_to_use_instead() -> None:
    from memtail.stats.gpuscan import GpuScanUnavailable

    m = np.random.default_rng(0).random((40, 20)) < 0.5
    with pytest.raises(GpuScanUnavailable, match="use backend='numba'"):
        influence_pairs(m, m, backend="cuda", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GpuScanUnavailable, match="torch sees no CUDA device"):
            influence_pairs(m, m, backend="cuda", device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_kernel_gives_the_numba_pairs() -> None:
    rng = np.random.default_rng(3)
    for k, n_train, n_test in ((1000, 3001, 1999), (4000, 700, 300)):
        m = TrialBits.from_bool(rng.random((k, n_train)) < 0.7)
        t_bool = rng.random((k, n_test)) < rng.uniform(0.2, 0.95, n_test)
        t_bool[:, :50] = m.take(np.arange(50)).to_bool()
        t = TrialBits.from_bool(t_bool)
        a = influence_pairs(m, t, PairRule(threshold=0.15), backend="numba")
        b = influence_pairs(m, t, PairRule(threshold=0.15), backend="cuda", block_rows=1000)
        assert len(a) >= 50
        for f in FIELDS:
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), (k, f)
