"""Whether the compiled kernels can run here: ``compiled()`` loads them when numba is installed.

The kernels themselves (``memtail.stats.numba_kernels``) import numba at import time and
compile on first use; every caller has a numpy path with identical results, so numba
stays optional and this module is the one place that decides.
"""

from __future__ import annotations

from types import ModuleType


def compiled(required: bool = False) -> ModuleType | None:
    """``memtail.stats.numba_kernels``, or None without numba (ImportError if ``required``)."""
    try:
        from memtail.stats import numba_kernels
    except ImportError:
        if required:
            raise
        return None
    return numba_kernels
