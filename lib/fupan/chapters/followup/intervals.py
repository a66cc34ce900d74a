"""Bootstrap intervals the grades share: a percentile interval of draws, a customer bootstrap
of a statistic, of a total or a ratio, and a difference of two rates with its interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fupan.measures import outcomes

N_BOOT = 2000


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if not len(d):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(d, [a, 1 - a])
    return float(lo), float(hi)


def diff_with_ci(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """Difference of two proportions ``k1/n1 - k2/n2`` with Newcombe's hybrid Wilson 95%
    interval (good coverage for small arms and rates near 0)."""
    p1, l1, u1 = outcomes.rate_with_ci(k1, n1)
    p2, l2, u2 = outcomes.rate_with_ci(k2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, lo, hi


def bootstrap_interval(
    stat: Any, columns: list[np.ndarray], seed: int, n_boot: int = N_BOOT
) -> tuple[float, float]:
    """95% percentile interval of ``stat(*columns)`` over customers resampled with
    replacement (in chunks, so a large base never holds ``n_boot x n`` indices at once)."""
    n = len(columns[0])
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:  # every resample is the one customer
        v = float(stat(*(c[None, :] for c in columns))[0])
        return v, v
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // n))
    draws = []
    for k in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - k), n))
        draws.append(stat(*(c[idx] for c in columns)))
    return percentile_interval(np.concatenate(draws))


def total_interval(x: np.ndarray, seed: int, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% interval of a population's total (customer bootstrap of ``sum(x)``)."""
    return bootstrap_interval(lambda a: a.sum(axis=1), [np.asarray(x, float)], seed, n_boot)


def ratio_interval(
    num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = N_BOOT
) -> tuple[float, float]:
    """95% interval of ``sum(num) / sum(den)`` (customer bootstrap of the pairs)."""
    cols = [np.asarray(num, float), np.asarray(den, float)]
    return bootstrap_interval(lambda a, b: a.sum(axis=1) / b.sum(axis=1), cols, seed, n_boot)
