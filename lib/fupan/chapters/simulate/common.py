"""What every step of the simulation shares: constants, the error, seeded streams, percentile
intervals, the money arithmetic, a priced row and its sensitivity, and the run's state
(:class:`_Run`, read by every step; :class:`_Priced`, what the steps gather)."""

from __future__ import annotations

import math
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import optimize

from fupan.chapters.simulate.result import ModelInfo
from fupan.core.chapter_params import SimulationParams
from fupan.core.params import Params
from fupan.core.scenarios import (
    Scenario,
)
from fupan.io.dataset import Dataset

T = TypeVar("T")
MONTHS_PER_YEAR = 12
QUARTERS_PER_YEAR = 365.0 / 90.0  # touches_90d counts touches in 90 days
MIN_EVENTS = 20
_ID = ["customer_id", "snapshot_date"]


class SimulationError(ValueError):
    """The data cannot support a simulation (too few churn events, no live customers...)."""


METRICS = (
    "churn_before",
    "churn_after",
    "churn_change",
    "customers_kept",
    "ltv_retained",
    "cost",
    "roi",
    "payback_months",
)


def _q(values: np.ndarray, level: float, nan_high: bool = False) -> tuple[float, float]:
    """Percentile interval; with ``nan_high`` a NaN counts as +infinity (never pays back)."""
    v = np.asarray(values, dtype=float)
    v = np.where(np.isnan(v), np.inf, v) if nan_high else v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    # no interpolation next to infinity (inf - inf is undefined): take order statistics
    method = "inverted_cdf" if np.isinf(v).any() else "linear"
    lo, hi = np.quantile(v, [a, 1.0 - a], method=method)
    return float(lo), float(hi)


def _seed(seed: int, *keys: Any) -> np.random.Generator:
    """A random stream per purpose and scenario: adding a scenario changes no other's draws."""
    words = [int(seed)] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _mean_by(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    sums = np.bincount(codes, weights=values, minlength=n)
    counts = np.bincount(codes, minlength=n)
    return sums / np.maximum(counts, 1)


def _in_order(fn: Callable[..., T], items: Iterable[tuple]) -> Iterator[T]:
    """``fn(*item)`` for each item, in the items' order, on up to two threads.

    A bootstrap refit spends its time in numpy, which releases the GIL, so two cores refit
    two replicates at once. Each result depends on its item alone and they come back in
    order, so the numbers are those of a plain loop; at most four items are in flight (a
    replicate's row weights are not all held at once).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(2, cpus or 1)
    if workers < 2:
        for item in items:
            yield fn(*item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _money(
    kept: np.ndarray,
    kept1: np.ndarray,
    clv: np.ndarray,
    margin: np.ndarray,
    cost: float,
    value_scale: float = 1.0,
) -> dict[str, float]:
    ltv = float(np.sum(kept * clv)) * value_scale
    monthly = float(np.sum(kept1 * margin)) * value_scale / MONTHS_PER_YEAR
    return {
        "customers_kept": float(np.sum(kept)),
        "ltv_retained": ltv,
        "cost": cost,
        "roi": (ltv - cost) / cost if cost > 0 else float("nan"),
        "payback_months": cost / monthly if monthly > 0 else float("nan"),
    }


# ---- the simulation ---------------------------------------------------------------------


def _row(
    s: Scenario,
    source: str,
    n: int,
    m0: Mapping[str, float],
    realised: pd.DataFrame,
    expected: pd.DataFrame,
    level: float,
    years: float,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": s.name,
        "kind": s.kind,
        "effect_source": source,
        "target_customers": int(n),
        "horizon_years": years,
    }
    for k in METRICS:
        v = float(m0[k])
        row[k] = None if math.isnan(v) else v
        if k in ("cost",):
            continue
        row[f"{k}_low"], row[f"{k}_high"] = _q(realised[k], level, k == "payback_months")
    for k in ("churn_change", "roi"):
        row[f"{k}_model_low"], row[f"{k}_model_high"] = _q(expected[k], level)
    return row


def _sensitivity(name: str, roi_at: Any, base: float, lo: float, hi: float) -> dict[str, Any]:
    """ROI as the effect size, the cost and the customer value move; break-even effect."""
    out = {
        "name": name,
        "roi": base,
        "effect_low": lo,
        "effect_high": hi,
        "roi_effect_low": roi_at(lo),
        "roi_effect_high": roi_at(hi),
        "roi_cost_high": roi_at(1.0, cost_scale=1.25),
        "roi_cost_low": roi_at(1.0, cost_scale=0.75),
        "roi_value_low": roi_at(1.0, value_scale=0.75),
        "roi_value_high": roi_at(1.0, value_scale=1.25),
    }
    # The effect multiplier at which the scenario breaks even (ROI = 0), if within 0..20;
    # ROI rises with the effect, so one sign change brackets the root.
    f0, f1 = roi_at(0.0), roi_at(20.0)
    ok = bool(np.isfinite(f0) and np.isfinite(f1) and f0 < 0 < f1)
    out["break_even_effect"] = (
        float(optimize.brentq(roi_at, 0.0, 20.0, xtol=1e-6)) if ok else float("nan")
    )
    return out


# ---- simulate: the steps ------------------------------------------------------------------


@dataclass
class _Run:
    """What every step of :func:`simulate` reads: the dataset, the dates, the customers."""

    ds: Dataset
    B: int  # bootstrap replicates
    now: pd.Timestamp  # the projection starts here (:func:`now_date`)
    as_of: pd.Timestamp
    status: pd.DataFrame  # churn status at as_of, sorted by customer id
    cust: pd.DataFrame  # customers acquired by as_of
    live: pd.DataFrame  # those not churned; steps add the ``band``/``recommended`` columns
    avail: set[str]  # the catalogue features the data supports
    ref: float  # reference spend, the base of default costs

    @property
    def P(self) -> Params:
        return self.ds.params

    @property
    def sp(self) -> SimulationParams:
        return self.ds.params.simulation

    @property
    def effect_range(self) -> tuple[float, float]:
        lo, hi = (float(x) for x in self.sp.sensitivity)
        return lo, hi


@dataclass
class _Priced:
    """What :func:`simulate` gathers, in the order the scenarios are priced or skipped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    draws: dict[str, pd.DataFrame] = field(default_factory=dict)
    per_customer: dict[str, pd.DataFrame] = field(default_factory=dict)
    sens: list[dict[str, Any]] = field(default_factory=list)
    pilots: list[dict[str, Any]] = field(default_factory=list)
    winback: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    model: ModelInfo | None = None
    value_model: str | None = None

    def skip(self, s: Scenario, reason: str, **detail: Any) -> None:
        self.skipped.append({"name": s.name, "reason": reason, **detail})
