"""Group-sequential boundaries: the error rate spent over pre-planned looks, using how
strongly the looks' estimates are correlated.

Looks l = 1..L come at trial counts k_1 < ... < k_L, fixed before any trial runs, with
information fractions t_l = k_l / k_L. The trials of look l are among those of look l + 1,
so under the normal approximation the standardized errors Z_l = (estimate_l - truth) /
se_l are jointly normal with Corr(Z_l, Z_m) = sqrt(t_l / t_m) for l <= m: S_l = sqrt(t_l)
Z_l is a Brownian motion seen at the times t_l. Repeated confidence intervals (Jennison &
Turnbull, *Group Sequential Methods*, 2000, ch. 9) are estimate_l +- c_l se_l with
c_1..c_L chosen so that P(|Z_l| <= c_l at every look) = 1 - alpha: they cover the truth at
every look at once, so also at whichever look a rule stops at. A spending function
alpha(t), alpha(1) = alpha, says how much of the error the first looks may use:
P(the first miss is at look l) = alpha(t_l) - alpha(t_{l-1}).

* ``"obrien_fleming"`` (Lan & DeMets 1983, with alpha / 2 spent on each side as
  tabulated by Jennison & Turnbull and gsDesign): alpha(t) = 4 - 4 Phi(z_{1 - alpha/4} /
  sqrt(t)). Almost nothing early, so the last look is only a few percent wider than a
  single fixed look.
* ``"pocock"`` (Lan & DeMets' Pocock-type): alpha(t) = alpha ln(1 + (e - 1) t): about
  even over the looks, for designs that expect to stop early.
* ``"bonferroni"``: look l at 1 - alpha k_l / (k_1 + ... + k_L). No correlation used;
  valid by the union bound alone, wider at the end.

The boundaries are computed look by look, by numerical integration: the sub-density of
S_l on the region where no look has missed yet is carried on a grid (Simpson's rule) and
convolved with the Gaussian increment to the next look; c_l solves P(first miss at l) =
alpha(t_l) - alpha(t_{l-1}) by bisection (Brent's method), the miss probability a sum of
normal tails, so that no cancellation limits the tiny early spends. The first look's
boundary is the normal quantile itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_LOOK_CONFIDENCE", "SPENDINGS", "boundaries", "look_confidences", "spent"]

SPENDINGS = ("bonferroni", "obrien_fleming", "pocock")

# A look's interval confidence at most (z = 7.13): an O'Brien-Fleming first look's spend
# can underflow to 0 (confidence 1, no finite interval); capped, each such look spends at
# most 1e-12 more than the design, so the total stays within alpha + L 1e-12.
MAX_LOOK_CONFIDENCE = 1.0 - 1e-12

# The grid of S_l covers +-_SPAN standard deviations of S_l (mass outside: ~1e-19) or the
# boundary, whichever is narrower, with _POINTS points (odd, for Simpson's rule).
_SPAN = 9.0
_POINTS = 1201
# No boundary is sought beyond this z: P(|Z| > 38) is below the smallest float64.
_Z_MAX = 38.0


def spent(kind: str, alpha: float, t: float) -> float:
    """The error spent by information fraction ``t`` (0 < t <= 1): alpha(t)."""
    from scipy.stats import norm

    if kind == "obrien_fleming":
        return float(4.0 * norm.sf(norm.isf(alpha / 4.0) / math.sqrt(t)))
    if kind == "pocock":
        return float(alpha * math.log(1.0 + (math.e - 1.0) * t))
    raise ValueError(f"spending must be one of {', '.join(SPENDINGS)}; got {kind!r}")


def _check(sizes: Sequence[int], alpha: float, kind: str) -> np.ndarray:
    k = np.asarray(sizes, dtype=np.float64)
    if k.ndim != 1 or k.size == 0 or not np.all(k > 0) or not np.all(np.diff(k) > 0):
        raise ValueError(f"look sizes must be positive and increasing; got {list(sizes)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1; got {alpha!r}")
    if kind not in SPENDINGS:
        raise ValueError(f"spending must be one of {', '.join(SPENDINGS)}; got {kind!r}")
    return k


def boundaries(
    sizes: Sequence[int], alpha: float = 0.05, kind: str = "obrien_fleming"
) -> np.ndarray:
    """c_1..c_L (two-sided, on the z scale) for looks at trial counts ``sizes``: with
    Z_l jointly normal as above, P(|Z_l| <= c_l at every look) = 1 - alpha. A look whose
    spend underflows to zero gets an infinite boundary (it cannot miss)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    k = _check(sizes, alpha, kind)
    if kind == "bonferroni":
        return norm.isf(alpha * k / k.sum() / 2.0)
    t = k / k[-1]
    cumulative = np.array([spent(kind, alpha, x) for x in t])
    cumulative[-1] = alpha  # exactly, whatever the rounding of alpha(1)
    c = np.empty(t.size)
    c[0] = norm.isf(cumulative[0] / 2.0) if cumulative[0] > 0 else np.inf
    grid, density = _first(t[0], c[0])
    for look in range(1, t.size):
        target = cumulative[look] - cumulative[look - 1]
        step = math.sqrt(t[look] - t[look - 1])
        weighted = density * _simpson(grid)
        scale = math.sqrt(t[look])
        if target <= 0:
            c[look] = np.inf
        elif _miss(_Z_MAX * scale, grid, weighted, step) >= target:
            c[look] = _Z_MAX
        else:
            c[look] = brentq(
                _excess, 0.0, _Z_MAX, args=(scale, grid, weighted, step, target),
                xtol=1e-10, rtol=1e-12,
            )  # fmt: skip
        grid, density = _carry(grid, weighted, t[look], c[look], step)
    return c


def look_confidences(
    sizes: Sequence[int], confidence: float = 0.95, kind: str = "obrien_fleming"
) -> list[float]:
    """Each look's interval confidence, 1 - 2 P(Z > c_l): the level at which a look's
    interval is computed so that all of them cover at once with ``confidence``. (Early
    looks of an O'Brien-Fleming design would round to 1.0: they get MAX_LOOK_CONFIDENCE,
    intervals nearly all of [-1, 1].)"""
    from scipy.stats import norm

    if kind == "bonferroni":  # the same floats the stopping rules have always used
        k = _check(sizes, 1.0 - confidence, kind)
        levels = [1.0 - (1.0 - confidence) * x / k.sum() for x in k]
    else:
        levels = [float(1.0 - 2.0 * norm.sf(z)) for z in boundaries(sizes, 1.0 - confidence, kind)]
    return [min(level, MAX_LOOK_CONFIDENCE) for level in levels]


def _miss(bound: float, grid: np.ndarray, weighted: np.ndarray, step: float) -> float:
    """P(no miss before, |S| > bound now): the previous look's sub-density (times its
    quadrature weights, ``weighted``) moved by an N(0, step^2) increment, past +-bound."""
    from scipy.stats import norm

    return float(weighted @ (norm.sf((bound - grid) / step) + norm.sf((bound + grid) / step)))


def _excess(
    z: float, scale: float, grid: np.ndarray, weighted: np.ndarray, step: float, target: float
) -> float:
    """How far a boundary z (on the z scale; times ``scale`` on S's) misses more than the
    spend ``target``: the root is the look's boundary."""
    return _miss(z * scale, grid, weighted, step) - target


def _simpson(grid: np.ndarray) -> np.ndarray:
    """Simpson's weights on an evenly spaced grid of an odd number of points."""
    w = np.ones(grid.size)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * (grid[1] - grid[0]) / 3.0 if grid.size > 1 else w


def _span(t: float, c: float) -> np.ndarray:
    half = min(_SPAN * math.sqrt(t), c * math.sqrt(t))
    return np.linspace(-half, half, _POINTS)


def _first(t: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """S_1 ~ N(0, t_1) on its continuation region |S_1| <= c_1 sqrt(t_1)."""
    grid = _span(t, c)
    sd = math.sqrt(t)
    return grid, np.exp(-0.5 * (grid / sd) ** 2) / (sd * math.sqrt(2.0 * math.pi))


def _carry(
    grid: np.ndarray, weighted: np.ndarray, t: float, c: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """The sub-density of S at time ``t`` on its continuation region, from the previous
    look's (``weighted``: density times quadrature weights on ``grid``) and the
    N(0, step^2) increment between them."""
    new = _span(t, c)
    kernel = np.exp(-0.5 * ((new[:, None] - grid[None, :]) / step) ** 2)
    return new, kernel @ weighted / (step * math.sqrt(2.0 * math.pi))
