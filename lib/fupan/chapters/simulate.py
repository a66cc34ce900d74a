"""Chapter 4: what a change would buy. Scenarios priced with a churn model refitted here.

Method
------
**Churn model.** A discrete-time proportional-hazards model (binomial regression with the
complementary log-log link) of *churn before the next monthly snapshot* on catalogue
features (``simulation.features``) at monthly as-of snapshots. Its coefficients are log
hazard ratios, the scale :mod:`fupan.demo` plants its truth on. It is fitted inside this
module from the dataset, never from notebook state.

* Churn is the shared definition (:func:`fupan.measures.outcomes.churn_status`), dated where the
  relationship ended: a recorded churn or a contract end on its date; a churn inferred from
  dormancy on the customer's last order (the dormancy date is a year later, when the
  business could know, which is not when the customer decided).
* Only snapshots whose outcome month is fully known are used: the month must end before
  ``as_of - dormancy_days`` (``grace_days`` for contracts), so a customer who quietly left
  is never counted as a stayer. The latest ``simulation.fit_months`` such months are used.
* When the data records churn (``churn_events``), the slopes are estimated on customers
  whose churn is dated exactly (recorded, or still customers), as chapter 2 does; the
  level (intercept) is then calibrated on every customer, inferred churners included.

**Projection.** Each targeted customer's coming year is projected from her own last
``simulation.projection_months`` monthly snapshots: every month of the coming year is
assumed to look like an average month of the last year, so a customer whose response times
or touches vary keeps varying. A scenario rewrites the lever features of the targeted
customers in every one of those months (response capped at N days, touches raised to N a
quarter), everything else unchanged. Annual churn probability
is ``1 - exp(-12 x mean monthly cumulative hazard)``, with and without the change.

**Money.** Customers kept over the horizon are the change in survival summed over the
targeted customers; each kept customer is worth her CLV (:mod:`fupan.chapters.clv`, chapter 3's
model, which already discounts her future churn: a conservative value). ROI = (LTV retained
- cost) / cost; payback = cost / the monthly margin of the customers kept in the first year.

**Uncertainty.** ``simulation.bootstrap`` refits on customers resampled with replacement
(every snapshot of a drawn customer comes along), each replicate recalibrated and
re-projected. Each replicate also draws what the change would realise: every targeted
customer's fate with and without the change is decided by one uniform number (common
random numbers), so the interval of customers kept, churn change, ROI and payback covers
both the model's uncertainty and the chance of which customers stay; intervals are
percentiles (``simulation.interval``, 90%). The expected churn change and ROI also get an
interval from the refits alone (``*_model_low``/``_high``). An effect supplied from a pilot
replaces the model's hazard ratio, drawn from the arms' Beta posteriors. A win-back rests
on its reactivation prior (a Beta worth ``prior_customers``) or its pilot.

**What the projection cannot see.** Holding each customer's future to her own past, a
customer with no tickets last year gains nothing from a faster response, although some of
them will open tickets next year; and a model fitted on snapshots cannot credit effects that
run through other features (better service -> fewer detractors). On :mod:`fupan.demo`'s
counterfactual worlds the realised effect of the SLA change is larger than the projection:
treat model-based estimates as conservative and confirm them with a pilot.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from fupan.core import progress
from fupan.core.chapter_params import SimulationParams
from fupan.core.params import Params
from fupan.core.scenarios import (
    DEFAULT_COST_SHARES,
    LEVER_TABLES,
    PilotEvidence,
    Scenario,
    absent_tiers,
)
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import metrics, outcomes
from fupan.models import drivers

__all__ = [
    "SimulationError",
    "HazardModel",
    "effective_churn_dates",
    "outcomes_known_until",
    "fit_dates",
    "fit_frame",
    "fit_hazard",
    "trajectories",
    "apply_change",
    "customer_values",
    "pilot_design",
    "readout",
    "roadmap",
    "simulate",
    "SimulationResult",
    "reference_spend",
    "natural_return",
    "funded_totals",
    "skip_reason",
]

T = TypeVar("T")
MONTHS_PER_YEAR = 12
QUARTERS_PER_YEAR = 365.0 / 90.0  # touches_90d counts touches in 90 days
MIN_EVENTS = 20
_ID = ["customer_id", "snapshot_date"]


class SimulationError(ValueError):
    """The data cannot support a simulation (too few churn events, no live customers...)."""


# --------------------------------------------------------------------------------------
# Churn dates and the fitting snapshots


def effective_churn_dates(status: pd.DataFrame) -> pd.Series:
    """The day each churned customer's relationship ended (NaT for customers not churned).

    Recorded churn and contract ends keep their date; churn inferred from dormancy is dated
    on the last order (or acquisition when there was none), not a dormancy period later.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status`.

    Returns
    -------
    Series indexed by ``customer_id``.
    """
    eff = pd.to_datetime(status["churned_at"]).copy()
    dorm = (status["source"] == "dormancy").to_numpy()
    fallback = pd.to_datetime(status["last_order"]).fillna(pd.to_datetime(status["acquired_at"]))
    eff[dorm] = fallback[dorm]
    return pd.Series(eff.to_numpy(), index=status["customer_id"].to_numpy(), name="churn_date")


def outcomes_known_until(params: Params, ds: Dataset) -> pd.Timestamp:
    """The last day on which every churn is known by ``as_of``.

    A customer who stopped buying on day d is known to have churned only ``dormancy_days``
    later; a contract that ended is known to be lost ``grace_days`` later.
    """
    as_of = pd.Timestamp(params.as_of).normalize()
    if params.business_model == "contractual" and ds.has("contracts"):
        lag = params.churn_definition.grace_days
    else:
        lag = params.churn_definition.dormancy_days
    return as_of - pd.Timedelta(days=lag)


def fit_dates(known_until: pd.Timestamp, months: int) -> list[pd.Timestamp]:
    """``months`` month starts whose following month ends on or before ``known_until``."""
    last = (known_until + pd.Timedelta(days=1) - pd.DateOffset(months=1)).to_period("M")
    last_ts = last.to_timestamp()
    return [last_ts - pd.DateOffset(months=k) for k in range(months - 1, -1, -1)]


def _ns(day: pd.Timestamp, n: int) -> np.ndarray:
    """``day`` repeated ``n`` times in the unit the feature tables use (pandas would keep a
    Timestamp's microseconds, and every join would convert them again)."""
    return np.full(n, pd.Timestamp(day).to_datetime64(), dtype="datetime64[ns]")


def _coerce(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    kinds = F.kinds(names)
    for n in names:
        if kinds[n] == "categorical":
            df[n] = df[n].astype(object).where(df[n].notna(), None)
        else:
            df[n] = pd.to_numeric(df[n], errors="coerce").astype("float64")
    return df


def _feature_table(ds: Dataset, pairs: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The catalogue features of the distinct ``(customer_id, snapshot_date)`` in ``pairs``.

    One query serves several sets of pairs (the fit's snapshots, the projected customers'
    months): each feature query re-reads every event table and recompiles a large
    expression, and a pair's features do not depend on the other pairs asked with it.
    """
    ids = pairs[_ID].copy()
    ids["snapshot_date"] = pd.to_datetime(ids["snapshot_date"]).astype("datetime64[ns]")
    ids = ids.drop_duplicates().reset_index(drop=True)
    if ids.empty:
        out = ids
        for n in names:
            out[n] = pd.Series(dtype=object if F.kinds([n])[n] == "categorical" else float)
        return out
    out = engine.to_pandas(F.feature_expr(ds, ids, list(names)))
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).astype("datetime64[ns]")
    return _coerce(out[[*_ID, *names]], names)


def _with_features(pairs: pd.DataFrame, table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``pairs`` (customer_id, snapshot_date, ...) with ``names`` from ``table`` joined on,
    sorted by customer and snapshot."""
    pairs = pairs.copy()
    pairs["snapshot_date"] = pd.to_datetime(pairs["snapshot_date"]).astype("datetime64[ns]")
    if pairs.empty:
        for n in names:
            pairs[n] = pd.Series(dtype=object if F.kinds([n])[n] == "categorical" else float)
        return pairs
    out = pairs.merge(table[[*_ID, *names]], on=_ID, how="left", validate="1:1")
    return out.sort_values(_ID, kind="stable").reset_index(drop=True)


def _more_features(
    ds: Dataset, table: pd.DataFrame | None, pairs: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """``table`` (``names`` of some pairs, or None) extended to hold every pair in ``pairs``:
    only the pairs it lacks are asked for (:func:`_feature_table`)."""
    if table is None:
        return _feature_table(ds, pairs, names)
    ids = pairs[_ID].copy()
    ids["snapshot_date"] = pd.to_datetime(ids["snapshot_date"]).astype("datetime64[ns]")
    ids = ids[~pd.MultiIndex.from_frame(ids).isin(pd.MultiIndex.from_frame(table[_ID]))]
    table = table[[*_ID, *names]]
    if ids.empty:
        return table
    return pd.concat([table, _feature_table(ds, ids, names)], ignore_index=True)


def fit_frame(
    ds: Dataset,
    status: pd.DataFrame,
    dates: Sequence[pd.Timestamp],
    names: Sequence[str],
    max_customers: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per customer still a customer at each snapshot, with its monthly churn label.

    A customer is at risk at snapshot ``s`` when acquired before ``s`` and not churned before
    ``s`` (:func:`effective_churn_dates`); the label says she churned before the next month's
    snapshot. ``exact`` marks customers whose churn date is exact (not inferred from
    dormancy).

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date, label, exact`` and the features.
    """
    pairs = _fit_pairs(status, dates, max_customers, seed)
    return _with_features(pairs, _feature_table(ds, pairs, names), names)


def _fit_pairs(
    status: pd.DataFrame,
    dates: Sequence[pd.Timestamp],
    max_customers: int | None,
    seed: int,
) -> pd.DataFrame:
    """:func:`fit_frame`'s rows before the features are joined on."""
    eff = effective_churn_dates(status)
    ids = status["customer_id"].to_numpy()
    acquired = pd.to_datetime(status["acquired_at"]).to_numpy()
    churn = eff.to_numpy()
    exact = (status["source"] != "dormancy").to_numpy()
    keep = np.ones(len(ids), bool)
    if max_customers is not None and len(ids) > max_customers:
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(np.sort(ids), size=max_customers, replace=False).tolist())
        # hash lookup: np.isin compares object arrays element by element (minutes at 100k)
        keep = engine.isin(ids, chosen)
    parts = []
    for s in dates:
        s = pd.Timestamp(s)
        nxt = (s + pd.DateOffset(months=1)).to_datetime64()
        s64 = s.to_datetime64()
        live = keep & (acquired < s64) & ~(churn < s64)
        if not live.any():
            continue
        c = churn[live]
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids[live],
                    "snapshot_date": _ns(s, int(live.sum())),
                    "label": (c >= s64) & (c < nxt),
                    "exact": exact[live],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["customer_id", "snapshot_date", "label", "exact"])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------
# The hazard model


def _cloglog_mu(eta: np.ndarray) -> np.ndarray:
    return -np.expm1(-np.exp(np.clip(eta, -40.0, 5.0)))


def _cloglog_weights(
    e: np.ndarray, y: np.ndarray, w: np.ndarray, ev: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row d loglik / d eta and minus its derivative, at ``e = exp(eta)``.

    d loglik / d eta = e (y - mu) / mu; minus its derivative is e on rows without an event
    and e - y r + y r^2 (1 - mu) (r = e / mu) on the rows in ``ev`` (y > 0). Churn is rare,
    so the churn probability is computed on the event rows only.
    """
    ee, yv, wv = e[ev], y[ev], w[ev]
    mu = np.clip(-np.expm1(-ee), 1e-12, 1.0 - 1e-12)
    r = ee / mu
    g = -w * e
    g[ev] = wv * r * (yv - mu)
    h = w * e
    h[ev] = wv * (ee - yv * r + yv * r * r * (1.0 - mu))
    return g, h


def _newton_cloglog(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    start: np.ndarray | None = None,
    ridge: float = 1.0,
    max_iter: int = 60,
    tol: float = 1e-9,
) -> np.ndarray:
    """Weighted binomial regression with the cloglog link by Newton's method.

    The first column of ``X`` is the intercept (not penalised). A weak ridge (``ridge``
    on standardised slopes, i.e. a normal prior with SD 1/sqrt(ridge) per SD of a feature)
    keeps small or separated samples finite without moving large-sample estimates.

    Steps use the observed information, not Fisher's expected one: cloglog is not the
    binomial's canonical link, so Fisher scoring converges only linearly, while the
    observed information is positive definite everywhere (the log-likelihood is concave
    in the linear predictor) and converges quadratically to the same maximum.
    """
    n, p = X.shape
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    pen = np.full(p, float(ridge))
    pen[0] = 0.0
    if start is None:
        ybar = float(np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6))
        beta = np.zeros(p)
        beta[0] = math.log(-math.log1p(-ybar))
    else:
        beta = np.asarray(start, dtype=float).copy()
    ev = y > 0
    wy = w[ev] * y[ev]

    def state(b: np.ndarray) -> tuple[float, np.ndarray]:
        e = np.exp(np.clip(X @ b, -40.0, 5.0))
        mu = np.clip(-np.expm1(-e[ev]), 1e-300, 1.0)
        # sum of w (y log mu - (1 - y) e), split so the log is taken on event rows only
        ll = float(np.dot(wy, np.log(mu)) - np.dot(w, e) + np.dot(wy, e[ev]))
        return ll - 0.5 * float(np.sum(pen * b * b)), e

    ll, e = state(beta)
    for _ in range(max_iter):
        g, h = _cloglog_weights(e, y, w, ev)
        score = X.T @ g - pen * beta
        # h >= 0 (rounding aside), and Xh.T @ Xh runs as a symmetric rank-k update
        Xh = X * np.sqrt(np.maximum(h, 0.0))[:, None]
        info = Xh.T @ Xh + np.diag(pen)
        step = np.linalg.solve(info, score)
        t = 1.0
        while True:
            cand = beta + t * step
            ll_new, e_new = state(cand)
            if ll_new >= ll - 1e-10 or t < 1e-8:
                break
            t /= 2.0
        beta, ll, e = cand, ll_new, e_new
        if np.max(np.abs(t * step)) < tol:
            break
    return beta


@dataclass
class HazardModel:
    """A fitted monthly cloglog hazard model on a standardised design.

    Attributes
    ----------
    design : the feature design (imputation, winsorising, standardising, dummies).
    beta : slopes on ``design.columns_`` (log hazard ratio per SD).
    intercept : calibrated intercept.
    """

    design: drivers.Design
    beta: np.ndarray
    intercept: float

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        return self.design.transform(df).to_numpy(dtype=float)

    def hazard(self, Z: np.ndarray) -> np.ndarray:
        """Monthly cumulative hazard ``exp(eta)`` per row (churn probability = 1 - exp(-it))."""
        return np.exp(np.clip(self.intercept + Z @ self.beta, -40.0, 5.0))

    def per_unit(self) -> pd.Series:
        """Log hazard ratio per unit of each numeric feature (per level for dummies)."""
        sd = self.design.sd_[self.design.columns_].to_numpy(dtype=float)
        return pd.Series(self.beta / sd, index=self.design.columns_)


def _calibrate(
    offset: np.ndarray, y: np.ndarray, w: np.ndarray, start: float | None = None
) -> float:
    """The intercept at which the expected number of monthly churns equals the observed.

    The expected count rises with the intercept, so Newton's method from ``start`` (the
    slope fit's own intercept, close by) is kept inside a bracket that every evaluation
    narrows; bisection takes over when a step leaves it, Brent's method after 60 steps.
    """
    target = float(np.sum(w * y))
    if target <= 0:
        return -40.0

    def gap(b0: float) -> float:
        return float(np.sum(w * _cloglog_mu(b0 + offset))) - target

    lo, hi = -40.0, 5.0
    if start is not None and lo < start < hi:
        b = float(start)
        for _ in range(60):
            eta = b + offset
            inside = (eta > -40.0) & (eta < 5.0)  # the clipped rows do not move with b
            e = np.exp(np.clip(eta, -40.0, 5.0))
            mu = -np.expm1(-e)
            f = float(np.dot(w, mu)) - target
            if f == 0.0:
                return b
            if f > 0:
                hi = b
            else:
                lo = b
            slope = float(np.dot(w[inside], (e * (1.0 - mu))[inside]))
            nxt = b - f / slope if slope > 0 else math.nan
            if not lo < nxt < hi:
                nxt = 0.5 * (lo + hi)
            if abs(nxt - b) < 1e-12:
                return nxt
            b = nxt
    return float(optimize.brentq(gap, lo, hi, xtol=1e-10))


def fit_hazard(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    weights: np.ndarray | None = None,
    design: drivers.Design | None = None,
    start: np.ndarray | None = None,
    Z: np.ndarray | None = None,
) -> HazardModel:
    """Fit the monthly hazard: slopes on ``exact`` rows, intercept calibrated on all rows.

    Parameters
    ----------
    frame : :func:`fit_frame` output.
    numeric, categorical : model features.
    weights : row weights (a bootstrap replicate); default 1.
    design : a fitted design to reuse (bootstrap replicates keep the full-data design).
    start : starting values ``[intercept, *slopes]``.
    Z : ``design.transform(frame)`` as an array, when already computed.
    """
    return _fit_hazard(frame, numeric, categorical, weights, design, start, Z)[0]


def _fit_hazard(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    weights: np.ndarray | None = None,
    design: drivers.Design | None = None,
    start: np.ndarray | None = None,
    Z: np.ndarray | None = None,
) -> tuple[HazardModel, np.ndarray]:
    """:func:`fit_hazard` and the slope fit's own ``[intercept, *slopes]`` (before the
    intercept is calibrated), where a bootstrap refit starts."""
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    if design is None:
        design = drivers.Design(numeric, categorical).fit(frame)
    if Z is None:
        Z = design.transform(frame).to_numpy(dtype=float)
    y = frame["label"].to_numpy(dtype=float)
    # rows a bootstrap replicate did not draw carry no information: leave them out
    drawn = w > 0
    use = frame["exact"].to_numpy(dtype=bool) & drawn
    X = np.column_stack([np.ones(int(use.sum())), Z[use]])
    with threadpool_limits(limits=1):
        coef = _newton_cloglog(X, y[use], w[use], start=start)
    beta = coef[1:]
    intercept = _calibrate(Z[drawn] @ beta, y[drawn], w[drawn], coef[0])
    return HazardModel(design=design, beta=beta, intercept=intercept), coef


class _Refit:
    """Bootstrap refits of the fitted model (:func:`fit_hazard` with row weights and the
    full-data design), with what every replicate repeats done once: the design matrix of
    the slope rows, the labels, the starting values (the full-data slope fit).

    Call :meth:`fit` inside ``threadpool_limits(limits=1)``: entering that context finds
    the BLAS libraries anew each time (about 15 ms), more than a refit's own arithmetic.
    """

    def __init__(self, frame: pd.DataFrame, model: HazardModel, coef: np.ndarray, Z: np.ndarray):
        self.design = model.design
        self.Z = Z
        self.y = frame["label"].to_numpy(dtype=float)
        self.exact = frame["exact"].to_numpy(dtype=bool)
        self.X = np.column_stack([np.ones(int(self.exact.sum())), Z[self.exact]])
        self.y_exact = self.y[self.exact]
        self.start = np.asarray(coef, dtype=float)

    def fit(self, weights: np.ndarray) -> HazardModel:
        w = np.asarray(weights, dtype=float)
        drawn = w > 0
        w_exact = w[self.exact]
        use = w_exact > 0
        coef = _newton_cloglog(self.X[use], self.y_exact[use], w_exact[use], self.start)
        beta = coef[1:]
        intercept = _calibrate((self.Z @ beta)[drawn], self.y[drawn], w[drawn], coef[0])
        return HazardModel(design=self.design, beta=beta, intercept=intercept)


# --------------------------------------------------------------------------------------
# Projection frames and scenario changes


def now_date(params: Params) -> pd.Timestamp:
    """The projection snapshot: the day after ``as_of`` (features include ``as_of`` itself)."""
    return pd.Timestamp(params.as_of).normalize() + pd.Timedelta(days=1)


def trajectories(
    ds: Dataset,
    customers: pd.DataFrame,
    now: pd.Timestamp,
    months: int,
    names: Sequence[str],
) -> pd.DataFrame:
    """Each customer's features at her last ``months`` monthly snapshots up to ``now``.

    Parameters
    ----------
    customers : ``customer_id, acquired_at`` of the customers to project.
    now : the latest snapshot (exclusive as-of date).

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date`` and ``names``; months before a customer's
    acquisition are left out.
    """
    pairs = _trajectory_pairs(customers, now, months)
    return _with_features(pairs, _feature_table(ds, pairs, names), names)


def _trajectory_pairs(customers: pd.DataFrame, now: pd.Timestamp, months: int) -> pd.DataFrame:
    """:func:`trajectories`' rows before the features are joined on."""
    acq = pd.to_datetime(customers["acquired_at"]).to_numpy()
    ids = customers["customer_id"].to_numpy()
    parts = []
    for k in range(months - 1, -1, -1):
        s = pd.Timestamp(now) - pd.DateOffset(months=k)
        ok = acq < s.to_datetime64()
        if ok.any():
            parts.append(
                pd.DataFrame({"customer_id": ids[ok], "snapshot_date": _ns(s, int(ok.sum()))})
            )
    if not parts:
        return pd.DataFrame(columns=_ID)
    return pd.concat(parts, ignore_index=True)


@dataclass
class Policy:
    """Service policy by tier (from benchmarks) and each customer's recommended tier."""

    order: list[str]
    sla: dict[str, float]
    touches: dict[str, float]
    recommended: pd.Series | None = None  # customer_id -> tier code


def apply_change(
    traj: pd.DataFrame, scenario: Scenario, tiers: pd.Series, policy: Policy
) -> tuple[pd.DataFrame, np.ndarray]:
    """The trajectory rows with the scenario's change applied, and extra touches per row.

    Parameters
    ----------
    traj : trajectory rows of the targeted customers (:func:`trajectories`).
    tiers : customer_id -> assigned tier.
    policy : the tiers' SLA and touch policy; ``recommended`` tiers for re-tiering.

    Returns
    -------
    (changed copy, extra touches a quarter per row). A missing value stays missing: the
    model imputes it as it did before the change, so the change does not move it.
    """
    ch = scenario.change
    out = traj.copy()
    tier = traj["customer_id"].map(tiers).to_numpy(dtype=object)
    n = len(out)
    before_touch = (
        out["touches_90d"].to_numpy(dtype=float).copy() if "touches_90d" in out else np.zeros(n)
    )

    def lookup(values: dict[str, float], codes: np.ndarray) -> np.ndarray:
        return np.array([values.get(c, np.nan) for c in codes], dtype=float)

    if ch.first_response_days is not None:
        cap = (
            lookup(policy.sla, tier)
            if ch.first_response_days == "tier_sla"
            else np.full(n, float(ch.first_response_days))
        )
        x = out["median_first_response_days"].to_numpy(dtype=float)
        out["median_first_response_days"] = np.where(np.isnan(cap), x, np.minimum(x, cap))
    if ch.touches_per_quarter is not None:
        floor = (
            lookup(policy.touches, tier)
            if ch.touches_per_quarter == "tier_policy"
            else np.full(n, float(ch.touches_per_quarter))
        )
        x = out["touches_90d"].to_numpy(dtype=float)
        out["touches_90d"] = np.where(np.isnan(floor), x, np.maximum(x, floor))
    if ch.extra_touches_per_quarter is not None:
        out["touches_90d"] = out["touches_90d"] + float(ch.extra_touches_per_quarter)
    if ch.retier:
        if policy.recommended is None:
            raise ValueError("re-tiering needs each customer's recommended tier")
        rec = traj["customer_id"].map(policy.recommended).to_numpy(dtype=object)
        rank = {t: i for i, t in enumerate(policy.order)}
        better = np.array(
            [r in rank and t in rank and rank[r] < rank[t] for r, t in zip(rec, tier, strict=True)]
        )
        cap = np.where(better, lookup(policy.sla, rec), np.nan)
        x = out["median_first_response_days"].to_numpy(dtype=float)
        out["median_first_response_days"] = np.where(np.isnan(cap), x, np.minimum(x, cap))
        floor = np.where(better, lookup(policy.touches, rec), np.nan)
        x = out["touches_90d"].to_numpy(dtype=float)
        out["touches_90d"] = np.where(np.isnan(floor), x, np.maximum(x, floor))
    after_touch = out["touches_90d"].to_numpy(dtype=float) if "touches_90d" in out else np.zeros(n)
    extra = np.nan_to_num(after_touch - before_touch, nan=0.0)
    return out, np.maximum(extra, 0.0)


# --------------------------------------------------------------------------------------
# Customer values


def annuity(years: float, churn: float, discount: float) -> float:
    """Expected discounted years of margin over ``years`` with annual ``churn``."""
    total, t = 0.0, 0
    keep = (1.0 - churn) / (1.0 + discount)
    while t < years:
        total += min(1.0, years - t) * keep**t
        t += 1
    return total


def customer_values(ds: Dataset, now: pd.Timestamp) -> tuple[pd.Series, str]:
    """Each customer's CLV at ``now`` from chapter 3's model (:mod:`fupan.chapters.clv`).

    Returns
    -------
    (Series customer_id -> CLV in currency, the model's name)
    """
    from fupan.chapters import clv

    kind, _ = clv.choose_model(ds.params, ds)
    with threadpool_limits(limits=1):
        val = clv.Valuer(ds, kind).valuation(now)
    return val.values["clv"].astype(float), clv.model_name(kind, ds.params.ltv)


def spend_before(ds: Dataset, ends: pd.Series) -> pd.Series:
    """Net spend in the 365 days up to and including each customer's date in ``ends``."""
    import ibis

    if ends.empty:
        return pd.Series(dtype=float)
    frame = pd.DataFrame(
        {
            "cid": ends.index.astype(str).to_numpy(),
            "end_day": (pd.to_datetime(ends.to_numpy()) - pd.Timestamp("1970-01-01")).days,
        }
    )
    t = ibis.memtable(frame)
    o = ds["orders"]
    o = o.select("customer_id", "amount", od=o.order_date.epoch_days())
    j = o.join(t, o.customer_id == t.cid)
    j = j.filter((j.od <= j.end_day) & (j.od > j.end_day - 365))
    agg = engine.to_pandas(j.group_by("cid").aggregate(spend=j.amount.sum()))
    return agg.set_index("cid")["spend"].reindex(ends.index.astype(str)).fillna(0.0).astype(float)


# --------------------------------------------------------------------------------------
# Pilot design and readout


def _n_per_arm(p_control: float, p_treated: float, alpha: float, power: float) -> float | None:
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = abs(float(proportion_effectsize(p_treated, p_control)))
    if not np.isfinite(h) or h < 1e-6:
        return None
    n = NormalIndPower().solve_power(
        effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return float(math.ceil(n))


def pilot_design(
    outcome: str,
    eligible: int,
    sp: SimulationParams,
    hazard0: np.ndarray | None = None,
    hazard1: np.ndarray | None = None,
    p_control: float | None = None,
    p_treated: float | None = None,
) -> dict[str, Any]:
    """Customers per arm to detect the predicted effect, and how long the pilot runs.

    Churn pilots: the rates over an ``m``-month window follow from each targeted customer's
    monthly hazard without (``hazard0``) and with (``hazard1``) the change; the pilot runs
    the shortest ``m`` (3 to ``pilot_max_months``) at which two arms fit in the ``eligible``
    customers. Win-back pilots compare the reactivation prior (``p_treated``) with the
    natural return rate (``p_control``) over ``winback_pilot_months``.

    Returns
    -------
    dict ``outcome, n_per_arm, months, feasible, eligible, p_control, p_treated,
    predicted_uplift, go_uplift, alpha, power``.
    """
    alpha, power = sp.alpha, sp.power
    out: dict[str, Any] = {
        "outcome": outcome,
        "eligible": int(eligible),
        "alpha": alpha,
        "power": power,
        "go_uplift": sp.go_uplift,
    }
    if outcome == "churn":
        assert hazard0 is not None and hazard1 is not None
        best = None
        for m in range(min(3, sp.pilot_max_months), sp.pilot_max_months + 1):
            p0 = float(np.mean(-np.expm1(-m * hazard0)))
            p1 = float(np.mean(-np.expm1(-m * hazard1)))
            n = _n_per_arm(p0, p1, alpha, power)
            best = (m, p0, p1, n)
            if n is not None and 2 * n <= eligible:
                break
        assert best is not None
        m, p0, p1, n = best
        uplift = (p0 - p1) / p0 if p0 > 0 else None
    else:
        m = sp.winback_pilot_months
        p0, p1 = float(p_control or 0.0), float(p_treated or 0.0)
        n = _n_per_arm(p0, p1, alpha, power)
        uplift = (p1 - p0) / p0 if p0 > 0 else None
    out.update(
        n_per_arm=None if n is None else int(n),
        months=int(m),
        feasible=bool(n is not None and 2 * n <= eligible),
        p_control=p0,
        p_treated=p1,
        predicted_uplift=uplift,
    )
    return out


def readout(
    pilot: PilotEvidence | Mapping[str, Any],
    outcome: str = "churn",
    go_uplift: float = 0.20,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Test a pilot against the go/no-go rule.

    Parameters
    ----------
    pilot : ``treated, treated_events, control, control_events`` (churned customers for a
        churn pilot, reactivated ones for a win-back).
    outcome : ``churn`` (lower is better) or ``reactivation`` (higher is better).
    go_uplift : roll out when the relative improvement is at least this (0.20 = 20%).
    alpha : two-sided significance level; the uplift interval has coverage 1 - alpha.

    Returns
    -------
    dict ``treated_rate, control_rate, uplift, uplift_low, uplift_high, p_value, decision``
    with decision ``go`` (improvement >= the rule and significant), ``no_go`` (the whole
    interval below the rule) or ``extend`` (inconclusive: run longer or larger).
    """
    from scipy import stats
    from statsmodels.stats.proportion import proportions_ztest

    p = pilot if isinstance(pilot, PilotEvidence) else PilotEvidence.model_validate(dict(pilot))
    if outcome not in ("churn", "reactivation"):
        raise ValueError("outcome must be 'churn' or 'reactivation'")
    nt, kt, nc, kc = p.treated, p.treated_events, p.control, p.control_events
    pt, pc = kt / nt, kc / nc
    if kt + kc == 0 or kt + kc == nt + nc:
        p_value = 1.0
    else:
        p_value = float(proportions_ztest([kt, kc], [nt, nc], alternative="two-sided")[1])
    # Katz interval for the risk ratio (0.5 added to every cell when one is empty).
    add = 0.5 if min(kt, kc, nt - kt, nc - kc) == 0 else 0.0
    a, b = kt + add, kc + add
    n1, n2 = nt + 2 * add, nc + 2 * add
    rr = (a / n1) / (b / n2)
    se = math.sqrt(max(1 / a - 1 / n1 + 1 / b - 1 / n2, 0.0))
    z = float(stats.norm.ppf(1 - alpha / 2))
    lo, hi = rr * math.exp(-z * se), rr * math.exp(z * se)
    if outcome == "churn":
        uplift, u_lo, u_hi = 1 - rr, 1 - hi, 1 - lo
        better = pt < pc
    else:
        uplift, u_lo, u_hi = rr - 1, lo - 1, hi - 1
        better = pt > pc
    if better and uplift >= go_uplift and p_value < alpha:
        decision = "go"
    elif u_hi < go_uplift:
        decision = "no_go"
    else:
        decision = "extend"
    return {
        "outcome": outcome,
        "treated_rate": pt,
        "control_rate": pc,
        "uplift": uplift,
        "uplift_low": u_lo,
        "uplift_high": u_hi,
        "p_value": p_value,
        "decision": decision,
        "go_uplift": go_uplift,
        "alpha": alpha,
    }


def _pilot_hr_draws(
    p: PilotEvidence, rng: np.random.Generator, size: int
) -> tuple[float, np.ndarray]:
    """Point and drawn hazard ratios of a churn pilot (Jeffreys Beta posteriors per arm)."""

    def hr(pt: np.ndarray | float, pc: np.ndarray | float) -> np.ndarray:
        return np.log1p(-np.asarray(pt)) / np.log1p(-np.asarray(pc))

    jt = (p.treated_events + 0.5) / (p.treated + 1.0)
    jc = (p.control_events + 0.5) / (p.control + 1.0)
    dt_ = rng.beta(p.treated_events + 0.5, p.treated - p.treated_events + 0.5, size)
    dc = rng.beta(p.control_events + 0.5, p.control - p.control_events + 0.5, size)
    return float(hr(jt, jc)), hr(dt_, dc)


# --------------------------------------------------------------------------------------
# Roadmap


def roadmap(table: pd.DataFrame, sp: SimulationParams) -> pd.DataFrame:
    """Phase each scenario: pilot -> rollout -> standardise, in waves by evidence and ROI.

    * ``hold``: even the upper end of the ROI interval is at or below zero: not funded.
    * ``rollout``: the effect rests on a pilot and the whole ROI interval is above zero.
    * ``pilot``: the ROI interval is above zero but the effect rests on the observational
      model (or a prior): confirm it in a pilot first (wave 1).
    * ``evaluate``: the ROI interval includes zero: pilot after wave 1, when its results
      are known.

    Returns
    -------
    DataFrame per scenario (ranked order kept): ``name, phase, wave, pilot_start, pilot_end,
    rollout_start, standardise_start`` in months from the start of the programme (NaN when a
    step does not apply).
    """
    rows = []
    for r in table.itertuples():
        roi, lo, hi = r.roi, r.roi_low, r.roi_high
        if roi is None or (isinstance(roi, float) and math.isnan(roi)) or not (hi > 0):
            phase = "hold"
        elif r.effect_source == "pilot" and lo > 0:
            phase = "rollout"
        elif lo > 0:
            phase = "pilot"
        else:
            phase = "evaluate"
        months = r.pilot_months if r.pilot_months == r.pilot_months else sp.pilot_max_months
        rows.append({"name": r.name, "phase": phase, "pilot_months": float(months)})
    df = pd.DataFrame(rows, columns=["name", "phase", "pilot_months"])
    wave1_end = (
        float(df.loc[df.phase == "pilot", "pilot_months"].max())
        if (df.phase == "pilot").any()
        else 0.0
    )
    out = []
    for r in df.itertuples():
        nan = float("nan")
        if r.phase == "hold":
            out.append((r.name, r.phase, nan, nan, nan, nan, nan))
        elif r.phase == "rollout":
            out.append((r.name, r.phase, 0.0, nan, nan, 0.0, float(sp.rollout_months)))
        else:
            start = 0.0 if r.phase == "pilot" else wave1_end
            wave = 1.0 if r.phase == "pilot" else 2.0
            end = start + r.pilot_months
            out.append((r.name, r.phase, wave, start, end, end, end + sp.rollout_months))
    return pd.DataFrame(out, columns=_ROADMAP_COLUMNS)


# --------------------------------------------------------------------------------------
# The simulation


@dataclass
class ModelInfo:
    """What the churn model rests on, for the method slide and results.json."""

    fit_start: pd.Timestamp
    fit_end: pd.Timestamp
    known_until: pd.Timestamp
    rows: int
    customers: int
    events: int
    slope_rows: int
    inferred_left_out: int
    features: list[str]
    effects: pd.DataFrame  # column, feature, log_hr_per_unit, low, high
    predicted_annual_churn: float  # live customers now, as projected
    observed_annual_churn: float  # the shared definition, the year to as_of


@dataclass
class SimulationResult:
    """Everything chapter 4 shows and records.

    Attributes
    ----------
    table : one row per priced scenario, ranked by ROI (results.json ``simulation.scenarios``).
        ``*_low``/``*_high`` bound the interval (``simulation.interval``) of what the change
        would realise: model uncertainty and chance together; ``*_model_low``/``_high``
        bound the expected value (model uncertainty only).
    draws : scenario name -> replicate metrics (realised).
    sensitivity : ROI when the effect size, the cost or the customer value moves.
    pilots : pilot design per scenario.
    roadmap : phases per scenario (:func:`roadmap`).
    winback : scenario name -> per-customer win-back economics.
    per_customer : scenario name -> per-customer churn before/after and value.
    skipped : scenarios that could not be priced, with the reason.
    model : what the churn model rests on (None when no retention scenario was priced).
    info : bootstrap count, interval, dates, the value model.
    """

    table: pd.DataFrame
    draws: dict[str, pd.DataFrame]
    sensitivity: pd.DataFrame
    pilots: pd.DataFrame
    roadmap: pd.DataFrame
    winback: dict[str, pd.DataFrame]
    per_customer: dict[str, pd.DataFrame]
    skipped: list[dict[str, str]]
    model: ModelInfo | None
    info: dict[str, Any] = field(default_factory=dict)

    RECORD = (
        "name",
        "kind",
        "effect_source",
        "target_customers",
        "churn_before",
        "churn_after",
        "churn_change",
        "churn_change_low",
        "churn_change_high",
        "churn_change_model_low",
        "churn_change_model_high",
        "customers_kept",
        "customers_kept_low",
        "customers_kept_high",
        "ltv_retained",
        "ltv_retained_low",
        "ltv_retained_high",
        "cost",
        "roi",
        "roi_low",
        "roi_high",
        "roi_model_low",
        "roi_model_high",
        "payback_months",
        "payback_months_low",
        "payback_months_high",
        "horizon_years",
        "pilot_n_per_arm",
        "pilot_months",
        "phase",
        "rank",
    )

    def records(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """``simulation.scenarios`` for results.json; ``labels`` maps names to display names."""
        out = []
        for r in self.table.to_dict(orient="records"):
            row = {k: r.get(k) for k in self.RECORD}
            if labels is not None:
                row = {"label": labels.get(r["name"], r["name"]), **row}
            out.append(row)
        return out


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


# ---- retention scenarios ---------------------------------------------------------------


@dataclass
class _Retention:
    """One retention scenario's projection inputs (fixed across replicates)."""

    scenario: Scenario
    ids: np.ndarray  # targeted customers, sorted
    codes: np.ndarray  # trajectory row -> position in ids
    rows: np.ndarray  # the rows' positions in the baseline matrix
    moved: np.ndarray  # the rows (positions in ``rows``) the change moves
    Z1: np.ndarray  # their changed design rows
    clv: np.ndarray
    margin: np.ndarray  # annual margin per customer
    cost: float
    years: float
    extra_touches: float  # a year, all targeted customers

    def hazards(
        self, model: HazardModel, h0: np.ndarray, hr: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's mean monthly hazard without and with the change.

        ``h0`` is ``model.hazard`` of every baseline row (computed once for all scenarios);
        rows the change leaves as they were keep their hazard.
        """
        n = len(self.ids)
        h = h0[self.rows]
        lam0 = _mean_by(self.codes, h, n)
        if hr is not None:  # the effect rests on a pilot's hazard ratio
            return lam0, lam0 * hr
        h[self.moved] = model.hazard(self.Z1)
        return lam0, _mean_by(self.codes, h, n)


def _expected(
    r: _Retention,
    lam0: np.ndarray,
    lam1: np.ndarray,
    value_scale: float = 1.0,
    cost_scale: float = 1.0,
) -> dict[str, float]:
    """Expected metrics: churn a year, survival over the horizon, money."""
    p0 = -np.expm1(-MONTHS_PER_YEAR * lam0)
    p1 = -np.expm1(-MONTHS_PER_YEAR * lam1)
    h = MONTHS_PER_YEAR * r.years
    kept = np.exp(-h * lam1) - np.exp(-h * lam0)
    out = {"churn_before": float(p0.mean()), "churn_after": float(p1.mean())}
    out["churn_change"] = out["churn_after"] - out["churn_before"]
    out.update(_money(kept, p0 - p1, r.clv, r.margin, r.cost * cost_scale, value_scale))
    return out


def _realised(r: _Retention, lam0: np.ndarray, lam1: np.ndarray, u: np.ndarray) -> dict:
    """One draw of what the change would realise: each customer's fate with and without it
    decided by the same uniform ``u`` (common random numbers)."""
    h = MONTHS_PER_YEAR * r.years
    c0 = u < -np.expm1(-MONTHS_PER_YEAR * lam0)
    c1 = u < -np.expm1(-MONTHS_PER_YEAR * lam1)
    kept = (u < -np.expm1(-h * lam0)).astype(float) - (u < -np.expm1(-h * lam1))
    out = {"churn_before": float(c0.mean()), "churn_after": float(c1.mean())}
    out["churn_change"] = out["churn_after"] - out["churn_before"]
    out.update(_money(kept, c0.astype(float) - c1, r.clv, r.margin, r.cost))
    return out


@dataclass
class _Fit:
    model: HazardModel
    frame: pd.DataFrame
    dates: list[pd.Timestamp]
    known: pd.Timestamp
    numeric: list[str]
    categorical: list[str]
    coef: np.ndarray  # the slope fit's [intercept, *slopes], before calibration


def _fit(
    ds: Dataset,
    status: pd.DataFrame,
    names: list[str],
    pairs: pd.DataFrame | None = None,
    table: pd.DataFrame | None = None,
) -> _Fit:
    """The churn model; ``pairs`` (:func:`_fit_pairs`) and a feature ``table`` holding
    them when the caller already has them."""
    P = ds.params
    sp = P.simulation
    kinds = F.kinds(names)
    numeric = [n for n in names if kinds[n] != "categorical"]
    categorical = [n for n in names if kinds[n] == "categorical"]
    known = outcomes_known_until(P, ds)
    dates = fit_dates(known, sp.fit_months)
    if pairs is None:
        pairs = _fit_pairs(status, dates, sp.max_fit_customers, P.seed)
    if table is None:
        table = _feature_table(ds, pairs, names)
    frame = _with_features(pairs, table, names)
    if not (status.source == "recorded").any():
        frame["exact"] = True  # no recorded churn: every churn is dated by the same rule
    events = int(frame["label"].sum()) if len(frame) else 0
    if events < MIN_EVENTS:
        end = (dates[-1] + pd.DateOffset(months=1)).date()
        raise SimulationError(
            f"only {events} churns in the {len(dates)} months whose outcomes are fully known "
            f"({dates[0].date()} to {end}); at least {MIN_EVENTS} are needed to fit the churn "
            "model: use a longer history or fewer fit months (simulation.fit_months)"
        )
    model, coef = _fit_hazard(frame, numeric, categorical)
    return _Fit(model, frame, dates, known, numeric, categorical, coef)


def _sample_ids(ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(ids) <= n:
        return ids
    return np.sort(_seed(seed, "sample").choice(np.sort(ids), size=n, replace=False))


def _check_sample(live: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The live customers whose projection checks the model's level (a seeded sample)."""
    ids = _sample_ids(live.customer_id.to_numpy(), 20_000, seed)
    return live[engine.isin(live.customer_id, ids)][["customer_id", "acquired_at"]]


def _model_info(
    ds: Dataset,
    fit: _Fit,
    status: pd.DataFrame,
    tl: pd.DataFrame,
    eff_reps: list[np.ndarray],
    level: float,
) -> ModelInfo:
    """``tl``: trajectories (:func:`trajectories`) of the check sample (:func:`_check_sample`)."""
    P = ds.params
    m = fit.model
    per_unit = m.per_unit()
    arr = np.vstack(eff_reps) if eff_reps else np.full((1, len(per_unit)), np.nan)
    bounds = [_q(arr[:, j], level) for j in range(len(per_unit))]
    effects = pd.DataFrame(
        {
            "column": per_unit.index,
            "feature": [m.design.feature_of_[c] for c in per_unit.index],
            "log_hr_per_unit": per_unit.to_numpy(),
            "low": [b[0] for b in bounds],
            "high": [b[1] for b in bounds],
        }
    )
    as_of = pd.Timestamp(P.as_of).normalize()
    obs = metrics.annual_churn(status, as_of)  # the catalogue's annual churn
    # The projection of the whole live base (a seeded sample of a large one), beside what
    # the shared definition measured over the last year: a check of the model's level.
    pred = float("nan")
    if len(tl):
        codes, uniq = pd.factorize(tl.customer_id)
        lam = _mean_by(codes, m.hazard(m.matrix(tl)), len(uniq))
        pred = float(np.mean(-np.expm1(-MONTHS_PER_YEAR * lam)))
    fr = fit.frame
    return ModelInfo(
        fit_start=fit.dates[0],
        fit_end=fit.dates[-1] + pd.DateOffset(months=1),
        known_until=fit.known,
        rows=len(fr),
        customers=int(fr.customer_id.nunique()),
        events=int(fr.label.sum()),
        slope_rows=int(fr.exact.sum()),
        inferred_left_out=int(fr.loc[~fr.exact, "customer_id"].nunique()),
        features=list(m.design.features()),
        effects=effects,
        predicted_annual_churn=pred,
        observed_annual_churn=obs["rate"],
    )


# ---- win-back ----------------------------------------------------------------------------


@dataclass
class _WinBack:
    scenario: Scenario
    frame: pd.DataFrame  # per targeted lost customer
    rate: float  # reactivation with the offer (prior or pilot)
    natural: float  # without it (observed natural return rate, or the pilot's control)
    cost: float
    years: float
    costs: _Costs | None = None

    @property
    def contacted(self) -> pd.DataFrame:
        return self.frame[self.frame.contacted]


def _wb_expected(
    w: _WinBack, rate: float, natural: float, value_scale: float = 1.0, cost_scale: float = 1.0
) -> dict[str, float]:
    c = w.contacted
    inc = rate - natural
    share = inc * len(c) / max(len(w.frame), 1)
    out = {"churn_before": 1.0, "churn_after": 1.0 - share, "churn_change": -share}
    kept = np.full(len(c), inc)
    out.update(
        _money(
            kept,
            kept,
            c.value_if_back.to_numpy(),
            c.margin.to_numpy(),
            w.cost * cost_scale,
            value_scale,
        )
    )
    return out


def _wb_realised(w: _WinBack, rate: float, natural: float, u: np.ndarray) -> dict[str, float]:
    c = w.contacted
    kept = (u < rate).astype(float) - (u < natural)  # back with the offer, minus back anyway
    share = float(kept.sum()) / max(len(w.frame), 1)
    out = {"churn_before": 1.0, "churn_after": 1.0 - share, "churn_change": -share}
    out.update(_money(kept, kept, c.value_if_back.to_numpy(), c.margin.to_numpy(), w.cost))
    return out


def _winback_pack(
    ds: Dataset,
    s: Scenario,
    pool: pd.DataFrame,
    eff: pd.Series,
    natural: float,
    annuity_years: float,
) -> _WinBack | None:
    """Value each targeted lost customer, drop those worth less than their cost."""
    P = ds.params
    wbp = s.change.winback
    assert wbp is not None
    tgt = pool[_select(pool, s, P.tiers.order)].reset_index(drop=True) if len(pool) else pool
    if tgt.empty:
        return None
    if s.pilot is not None:
        # the pilot's arms replace both the prior and the natural return rate
        rate = (s.pilot.treated_events + 0.5) / (s.pilot.treated + 1.0)
        nat = (s.pilot.control_events + 0.5) / (s.pilot.control + 1.0)
    else:
        rate, nat = wbp.reactivation_rate, natural
    ends = pd.Series(eff.reindex(tgt.customer_id).to_numpy(), index=tgt.customer_id.to_numpy())
    spend = spend_before(ds, ends).clip(lower=0.0).to_numpy(dtype=float)
    margin = P.ltv.margin * spend
    years = float(s.horizon_years or P.simulation.horizon_years)
    # Amounts left out of the file scale with these customers' own spend (their last year as
    # customers): an offer is a share of the median; no yearly service cost for the lost.
    basis: dict[str, str] = {}
    offer = _amount(
        wbp.offer_cost, DEFAULT_COST_SHARES["offer_cost"] * float(np.median(spend)), "offer", basis
    )
    per_customer = _amount(s.cost.per_customer, 0.0, "per_customer", basis)
    frame = pd.DataFrame(
        {
            "customer_id": tgt.customer_id.to_numpy(),
            "tier": tgt.tier.to_numpy(),
            "churned_at": pd.to_datetime(tgt.churned_at).to_numpy(),
            "annual_spend": spend,
            "margin": margin,
            "value_if_back": margin * annuity_years,
        }
    )
    frame["expected_value"] = max(rate - nat, 0.0) * frame.value_if_back
    frame["cost"] = offer + years * per_customer
    # a customer worth nothing is never contacted, even by a free offer
    frame["contacted"] = (frame.expected_value >= frame.cost) & (frame.expected_value > 0)
    n = int(frame.contacted.sum())
    contacted_spend = float(frame.loc[frame.contacted, "annual_spend"].sum())
    fixed = _amount(s.cost.fixed, DEFAULT_COST_SHARES["fixed"] * contacted_spend, "fixed", basis)
    costs = _Costs(per_customer=per_customer, per_touch=0.0, fixed=fixed, offer=offer, basis=basis)
    cost = fixed + n * (offer + years * per_customer)
    return _WinBack(s, frame, float(rate), float(nat), float(cost), years, costs)


# ---- money in the data's scale -----------------------------------------------------------


def reference_spend(ds: Dataset, as_of: pd.Timestamp) -> float:
    """The median customer's annual value: the median net spend over the 365 days to
    ``as_of`` (inclusive) of the customers with an order in that year (refunds netted, a
    negative total counted as 0). NaN when nobody bought in that year.

    Default scenario costs are shares of it (:data:`fupan.core.scenarios.DEFAULT_COST_SHARES`),
    so they follow the data's currency and scale.
    """
    import ibis

    day = pd.Timestamp(as_of).normalize()
    o = ds["orders"]
    o = o.filter(
        (o.order_date.cast("date") <= ibis.literal(day.date()))
        & (o.order_date.cast("date") > ibis.literal((day - pd.Timedelta(days=365)).date()))
    )
    agg = engine.to_pandas(o.group_by("customer_id").aggregate(spend=o.amount.sum()))
    if agg.empty:
        return float("nan")
    return float(np.median(agg["spend"].astype(float).clip(lower=0.0)))


@dataclass
class _Costs:
    """A scenario's unit costs after the defaults are filled in, and where each came from."""

    per_customer: float
    per_touch: float
    fixed: float
    offer: float = 0.0
    basis: dict[str, str] = field(default_factory=dict)  # amount -> "file" | "data"

    def record(self) -> dict[str, Any]:
        return {
            "cost_per_customer": self.per_customer,
            "cost_per_touch": self.per_touch,
            "cost_fixed": self.fixed,
            "cost_basis": "file"
            if all(v == "file" for v in self.basis.values())
            else ("data" if all(v == "data" for v in self.basis.values()) else "mixed"),
        }


def _amount(given: float | None, default: float, name: str, basis: dict[str, str]) -> float:
    basis[name] = "file" if given is not None else "data"
    return float(given) if given is not None else float(default)


def _retention_costs(s: Scenario, ref: float, target_spend: float) -> _Costs:
    """Unit costs of a retention scenario: the file's amounts, else shares of the data."""
    sh, c, basis = DEFAULT_COST_SHARES, s.cost, {}
    ref = ref if np.isfinite(ref) else 0.0
    return _Costs(
        per_customer=_amount(c.per_customer, sh["per_customer"] * ref, "per_customer", basis),
        per_touch=_amount(c.per_touch, sh["per_touch"] * ref, "per_touch", basis),
        fixed=_amount(c.fixed, sh["fixed"] * target_spend, "fixed", basis),
        basis=basis,
    )


def natural_return(
    ds: Dataset, status: pd.DataFrame, as_of: pd.Timestamp, within_days: int
) -> tuple[float, int, str]:
    """How many lost customers come back without an offer: (rate, customers, basis).

    With recorded churn, the share of recorded churners who ordered again (``won_back``).
    Without it (churn inferred from dormancy), the customers already lost a year before
    ``as_of`` (churned in the ``within_days`` before that date) and the share of them who
    ordered again in the year since; ``basis`` says which (``recorded`` or ``dormancy``),
    and a rate resting on no customer is 0 with ``customers`` 0.
    """
    won = int(status.won_back.sum())
    recorded = int((status.source == "recorded").sum())
    if won + recorded:
        return won / (won + recorded), won + recorded, "recorded"
    d0 = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=365)
    before = outcomes.churn_status(ds, d0.date())
    at = pd.to_datetime(before.churned_at)
    lost = before[before.churned.astype(bool) & (at > d0 - pd.Timedelta(days=within_days))]
    if lost.empty:
        return 0.0, 0, "dormancy"
    last_now = pd.to_datetime(status.set_index("customer_id").last_order)
    back = last_now.reindex(lost.customer_id).to_numpy() > np.datetime64(d0)
    return float(np.mean(back)), len(lost), "dormancy"


def funded_totals(table: pd.DataFrame) -> dict[str, Any]:
    """What the funded scenarios (roadmap phase other than ``hold``) add up to.

    The overview's tiles quote these sums and its table lists every scenario with its
    phase, so a tile equals the table's figures for the scenarios it names.

    Returns
    -------
    dict ``n, names, customers_kept, ltv_retained, cost`` (sums over the funded scenarios).
    """
    funded = table[table.phase != "hold"] if len(table) else table
    return {
        "n": len(funded),
        "names": list(funded.name) if len(funded) else [],
        "customers_kept": float(funded.customers_kept.sum()) if len(funded) else 0.0,
        "ltv_retained": float(funded.ltv_retained.sum()) if len(funded) else 0.0,
        "cost": float(funded.cost.sum()) if len(funded) else 0.0,
    }


def skip_reason(skip: Mapping[str, Any], lang: str, label: str, fmt: Any) -> str:
    """The sentence that says why a scenario was not priced (``SimulationResult.skipped``).

    Parameters
    ----------
    skip : one entry of ``skipped`` (``name, reason`` and the reason's details).
    lang : zh or en.
    label : the scenario's display name.
    fmt : a :class:`fupan.core.i18n.Fmt` for money and percentages.
    """
    from fupan.chapters.atrisk import feature_label
    from fupan.core import i18n

    why = skip["reason"]
    sep = "、" if lang == "zh" else ", "
    kw: dict[str, Any] = {"name": label}
    if why == "missing_table":
        kw["table"] = i18n.t(f"table.{skip.get('table', 'tickets')}", lang)
    elif why == "tiers_absent":
        kw["tiers"] = sep.join(skip["tiers"])
        kw["present"] = sep.join(skip["present"]) or i18n.t("sim.no_tiers", lang)
    elif why == "no_effect":
        kw["levers"] = sep.join(feature_label(f, lang) for f in skip["levers"])
    elif why == "no_uplift":
        kw.update(rate=fmt.pct(skip["rate"]), natural=fmt.pct(skip["natural"]))
    elif why == "none_worth":
        kw.update(
            offer=fmt.money(skip["offer"]),
            targets=fmt.int(skip["targets"]),
            best=fmt.money(skip["best_value"]),
        )
    elif why == "model":
        kw["detail"] = skip["detail"]
    elif why == "no_health_model":
        kw["events"] = skip["events"]
    return i18n.t(f"sim.skip.{why}", lang, **kw)


# ---- targets -----------------------------------------------------------------------------


def _customer_frame(ds: Dataset) -> pd.DataFrame:
    c = ds["customers"]
    out = engine.to_pandas(c).sort_values("customer_id", kind="stable").reset_index(drop=True)
    if "tier" not in out:  # a transaction log assigns no tier
        out["tier"] = None
    return out


def _select(base: pd.DataFrame, scenario: Scenario, order: Sequence[str]) -> np.ndarray:
    """Which rows of ``base`` a scenario targets (re-tiering: only customers whose spend
    earns a better tier than the one assigned)."""
    t = scenario.target
    keep = np.ones(len(base), bool)
    if t.tiers:
        keep &= base["tier"].isin(t.tiers).to_numpy()
    if t.health_bands:
        keep &= base["band"].isin(t.health_bands).to_numpy()
    for col, values in t.segments.items():
        if col not in base.columns:
            raise SimulationError(
                f"scenario '{scenario.name}': segment column '{col}' is not in the customers table"
            )
        keep &= base[col].astype(str).isin([str(v) for v in values]).to_numpy()
    if scenario.change.retier:
        rank = {x: i for i, x in enumerate(order)}
        better = [
            r in rank and a in rank and rank[r] < rank[a]
            for r, a in zip(base["recommended"], base["tier"], strict=True)
        ]
        keep &= np.asarray(better, bool)
    return keep


def _health_bands(model: Any, feats: pd.DataFrame) -> pd.Series:
    """Chapter 2's learned health band (``model``: :func:`fupan.chapters.atrisk.train`) of each
    customer in ``feats`` (one row per customer, features as of the projection date)."""
    return pd.Series(model.band(feats), index=feats.customer_id.to_numpy())


def _recommended(ds: Dataset, now: pd.Timestamp) -> pd.Series:
    """The tier each customer's trailing-12-month spend earns (chapter 1's re-tiering rule)."""
    from fupan.measures import segments

    feats = segments.customer_features(ds, (now - pd.Timedelta(days=1)).date(), engagement=False)
    rt = segments.retier(feats, ds.params)
    return pd.Series(rt.recommended.to_numpy(), index=rt.customer_id.to_numpy())


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


def simulate(
    ds: Dataset,
    scenarios: Sequence[Scenario],
    status: pd.DataFrame | None = None,
    bootstrap: int | None = None,
) -> SimulationResult:
    """Price every scenario: churn change, customers kept, LTV retained, cost, ROI, payback.

    Parameters
    ----------
    ds : the run's dataset (``ds.params.simulation`` sets the method's knobs).
    scenarios : from :func:`fupan.core.scenarios.load`.
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of`` (computed when omitted).
    bootstrap : replicates (default ``simulation.bootstrap``).

    Returns
    -------
    :class:`SimulationResult`. Scenarios that cannot be priced (an optional table missing,
    no targeted customers) are listed in ``skipped`` with the reason.

    Raises
    ------
    SimulationError
        when retention scenarios are asked for and the history holds too few churns to fit
        the churn model.
    """
    run = _start(ds, status, bootstrap)
    out = _Priced()
    applicable = _applicable(run, scenarios, out)
    _price_retention(run, [s for s in applicable if s.kind == "retention"], out)
    _price_winback(run, [s for s in applicable if s.kind == "winback"], out)
    return _result(run, scenarios, out)


def _start(ds: Dataset, status: pd.DataFrame | None, bootstrap: int | None) -> _Run:
    """The run's dates and customers; status sorted so that every step sees one order."""
    P = ds.params
    sp = P.simulation
    B = int(sp.bootstrap if bootstrap is None else bootstrap)
    now = now_date(P)
    as_of = pd.Timestamp(P.as_of).normalize()
    status = outcomes.churn_status(ds) if status is None else status
    status = status.sort_values("customer_id", kind="stable").reset_index(drop=True)
    cust = _customer_frame(ds)
    cust = cust[pd.to_datetime(cust.acquired_at) <= as_of].reset_index(drop=True)
    churned_at = status.set_index("customer_id").churned_at
    live = cust[cust.customer_id.map(churned_at).isna().to_numpy()].reset_index(drop=True)
    avail = set(F.available(ds))
    ref = reference_spend(ds, as_of)
    return _Run(ds, B, now, as_of, status, cust, live, avail, ref)


def _applicable(run: _Run, scenarios: Sequence[Scenario], out: _Priced) -> list[Scenario]:
    """A scenario aimed only at tiers no customer holds is not applicable; the rest run."""
    present = sorted(str(t) for t in run.cust.tier.dropna().unique())
    applicable = []
    for s in scenarios:
        absent = absent_tiers(s, present)
        if s.target.tiers and len(absent) == len(s.target.tiers):
            out.skip(s, "tiers_absent", tiers=absent, present=present)
        else:
            applicable.append(s)
    return applicable


# ---- retention: who, the model, the projection, the bootstrap ----------------------------


@dataclass
class _Frames:
    """The retention pricing's feature queries, as few as possible (see _feature_table):
    the fit's snapshots, the model check's sample, the health model's features now and,
    once the targets are known, the targeted customers' months."""

    wide: list[str]  # every feature any query asks for
    fit_pairs: pd.DataFrame
    check: pd.DataFrame  # the check sample's customers (customer_id, acquired_at)
    check_pairs: pd.DataFrame
    table: pd.DataFrame | None = None
    traj_pairs: pd.DataFrame | None = None


@dataclass
class _Projection:
    """The targets' coming year as their own last months (fixed across replicates)."""

    traj: pd.DataFrame  # the targets' monthly snapshots
    check_traj: pd.DataFrame  # the check sample's snapshots, for the model's level
    Z0: np.ndarray  # the model's design rows of ``traj``
    values: pd.Series  # CLV per customer
    spend: pd.Series | None  # trailing-year spend per customer, when the data has it
    policy: Policy


@dataclass
class _Replicates:
    """The bootstrap's answers: point hazards, then per replicate and scenario the
    expected and the realised metrics, and the model's per-unit effects."""

    point: dict[str, tuple[np.ndarray, np.ndarray]]
    expected: dict[str, list[dict]]
    realised: dict[str, list[dict]]
    effects: list[np.ndarray]


def _price_retention(run: _Run, scenarios: list[Scenario], out: _Priced) -> None:
    """Price the retention scenarios with the churn model refitted on this dataset."""
    retention = _with_tables(run, scenarios, out)
    if not retention:
        return
    frames = _frames(run, retention)
    retention = _health_bands_now(run, retention, frames, out)
    if any(s.change.retier for s in retention):
        live = run.live
        live["recommended"] = live.customer_id.map(_recommended(run.ds, run.now)).to_numpy()
    targets, retention = _targets(run, retention, out)
    if not retention:
        return
    names, proj_names = _model_features(run, retention)
    fit = _fit_churn_model(run, retention, targets, frames, names, out)
    if fit is None:
        return
    retention = _movable(retention, fit.model, out)
    if not retention:
        return
    proj = _projection(run, retention, targets, frames, proj_names, fit.model, out)
    tiers = run.cust.set_index("customer_id")["tier"]
    packs = []
    for s in retention:
        pack = _pack(run, s, targets[s.name], proj, tiers, fit.model, out)
        if pack is not None:
            packs.append(pack)
    reps = _bootstrap(run, fit, [p for p, _ in packs], proj.Z0)
    check_traj = proj.check_traj
    # At scale the targets' months run to ten million rows: the rows below need none.
    del proj
    out.model = _model_info(run.ds, fit, run.status, check_traj, reps.effects, run.sp.interval)
    for p, costs in packs:
        _retention_row(run, p, costs, reps, tiers, out)


def _with_tables(run: _Run, scenarios: list[Scenario], out: _Priced) -> list[Scenario]:
    """The scenarios whose levers the data can measure (the levers' tables present)."""
    kept = []
    for s in scenarios:
        missing = [LEVER_TABLES[f] for f in s.change.levers() if f not in run.avail]
        if missing:
            out.skip(s, "missing_table", table=missing[0])
        else:
            kept.append(s)
    return kept


def _frames(run: _Run, retention: list[Scenario]) -> _Frames:
    """The fit's snapshots and the check sample, and every feature any scenario needs."""
    sp, P = run.sp, run.P
    every_lever = sorted({f for s in retention for f in s.change.levers()})
    wide = [n for n in sp.features if n in run.avail]
    wide += [n for n in every_lever if n not in wide]
    wide = [n for n in dict.fromkeys([*wide, "spend_365d"]) if n in run.avail]
    fit_pairs = _fit_pairs(
        run.status,
        fit_dates(outcomes_known_until(P, run.ds), sp.fit_months),
        sp.max_fit_customers,
        P.seed,
    )
    check = _check_sample(run.live, P.seed)
    check_pairs = _trajectory_pairs(check, run.now, sp.projection_months)
    return _Frames(wide, fit_pairs, check, check_pairs)


def _health_bands_now(
    run: _Run, retention: list[Scenario], frames: _Frames, out: _Priced
) -> list[Scenario]:
    """Every live customer's health band now, when a scenario targets bands."""
    if not any(s.target.health_bands for s in retention):
        return retention
    from fupan.chapters import atrisk

    try:
        hmodel = atrisk.train(run.ds)
    except ValueError:
        # too little churn to learn a health score: scenarios aimed at its bands have no one
        # to target, the others still run
        for s in [s for s in retention if s.target.health_bands]:
            out.skip(s, "no_health_model", events=atrisk.MIN_EVENTS)
        return [s for s in retention if not s.target.health_bands]
    live = run.live
    band_names = list(dict.fromkeys([*hmodel.numeric, *hmodel.categorical]))
    band_pairs = pd.DataFrame(
        {"customer_id": live.customer_id.to_numpy(), "snapshot_date": _ns(run.now, len(live))}
    )
    # the health model's extra features are asked for the band pairs' query only
    frames.table = _feature_table(
        run.ds,
        pd.concat([frames.fit_pairs[_ID], frames.check_pairs, band_pairs]),
        list(dict.fromkeys([*frames.wide, *band_names])),
    )
    feats = _with_features(band_pairs, frames.table, band_names)
    live["band"] = live.customer_id.map(_health_bands(hmodel, feats)).to_numpy()
    return retention


def _targets(
    run: _Run, retention: list[Scenario], out: _Priced
) -> tuple[dict[str, np.ndarray], list[Scenario]]:
    """Each scenario's targeted live customers (sorted ids); one with none is skipped."""
    targets: dict[str, np.ndarray] = {}
    kept = []
    for s in retention:
        keep = _select(run.live, s, run.P.tiers.order)
        if keep.any():
            targets[s.name] = np.sort(run.live.customer_id.to_numpy()[keep])
            kept.append(s)
        else:
            out.skip(s, "no_targets")
    return targets, kept


def _model_features(run: _Run, retention: list[Scenario]) -> tuple[list[str], list[str]]:
    """The churn model's features (the configured ones, then the levers), and those plus
    trailing spend that the projection reads."""
    levers = sorted({f for s in retention for f in s.change.levers()})
    names = [n for n in run.sp.features if n in run.avail]
    names += [n for n in levers if n not in names]
    proj_names = [n for n in dict.fromkeys([*names, "spend_365d"]) if n in run.avail]
    return names, proj_names


def _fit_churn_model(
    run: _Run,
    retention: list[Scenario],
    targets: dict[str, np.ndarray],
    frames: _Frames,
    names: list[str],
    out: _Priced,
) -> _Fit | None:
    """The churn model, its features queried together with the targets' months."""
    cust, sp = run.cust, run.sp
    wanted = np.unique(np.concatenate([targets[s.name] for s in retention]))
    projected = cust[
        engine.isin(cust.customer_id, wanted)
        & ~engine.isin(cust.customer_id, frames.check.customer_id)
    ]
    frames.traj_pairs = pd.concat(
        [
            frames.check_pairs,
            _trajectory_pairs(
                projected[["customer_id", "acquired_at"]], run.now, sp.projection_months
            ),
        ],
        ignore_index=True,
    )
    frames.table = _more_features(
        run.ds, frames.table, pd.concat([frames.fit_pairs[_ID], frames.traj_pairs]), frames.wide
    )
    try:
        return _fit(run.ds, run.status, names, frames.fit_pairs, frames.table)
    except SimulationError as exc:
        # the retention scenarios cannot be priced; a win-back rests on its prior and runs
        for s in retention:
            out.skip(s, "model", detail=str(exc))
        return None


def _movable(retention: list[Scenario], model: HazardModel, out: _Priced) -> list[Scenario]:
    """The scenarios whose levers the model kept (a lever constant in the fit has none)."""
    kept = []
    for s in retention:
        if any(f not in model.design.columns_ for f in s.change.levers()):
            out.skip(s, "constant_feature")
        else:
            kept.append(s)
    return kept


def _projection(
    run: _Run,
    retention: list[Scenario],
    targets: dict[str, np.ndarray],
    frames: _Frames,
    proj_names: list[str],
    model: HazardModel,
    out: _Priced,
) -> _Projection:
    """The targets' and the check sample's months, their design rows, value and spend."""
    P = run.P
    traj_all = _with_features(frames.traj_pairs, frames.table, proj_names)
    # At a million customers the feature table, the pairs and the trajectories each hold
    # some ten million rows (every target's twelve months): keep one of them.
    frames.table = frames.traj_pairs = None
    tl = traj_all[engine.isin(traj_all.customer_id, frames.check.customer_id)]
    tl = tl.reset_index(drop=True)
    union = np.unique(np.concatenate([targets[s.name] for s in retention]))
    keep = engine.isin(traj_all.customer_id, union)
    traj = traj_all if keep.all() else traj_all[keep].reset_index(drop=True)
    del traj_all, keep
    Z0 = model.matrix(traj)
    values, out.value_model = customer_values(run.ds, run.now)
    last = traj.groupby("customer_id", sort=True).tail(1).set_index("customer_id")
    spend = last["spend_365d"].clip(lower=0.0) if "spend_365d" in last else None
    policy = Policy(
        order=list(P.tiers.order),
        sla=dict(P.benchmarks.sla_first_response_days),
        touches=dict(P.benchmarks.touch_policy_per_quarter),
        recommended=run.live.set_index("customer_id")["recommended"]
        if "recommended" in run.live
        else None,
    )
    return _Projection(traj, tl, Z0, values, spend, policy)


def _pack(
    run: _Run,
    s: Scenario,
    ids: np.ndarray,
    proj: _Projection,
    tiers: pd.Series,
    model: HazardModel,
    out: _Priced,
) -> tuple[_Retention, _Costs] | None:
    """One scenario's changed design rows, value, margin and cost; None (skipped) when the
    change moves no row and no pilot supplies the effect, or when it costs nothing."""
    P, sp = run.P, run.sp
    pos = pd.Series(np.arange(len(ids)), index=ids)
    sel = np.flatnonzero(engine.isin(proj.traj.customer_id, ids))
    sub = proj.traj.iloc[sel]
    changed, extra = apply_change(sub, s, tiers, proj.policy)
    codes = pos.reindex(sub.customer_id).to_numpy(dtype=np.int64)
    years = float(s.horizon_years or sp.horizon_years)
    extra_year = float(np.sum(_mean_by(codes, extra, len(ids)))) * QUARTERS_PER_YEAR
    own = proj.spend.reindex(ids).fillna(0.0) if proj.spend is not None else None
    costs = _retention_costs(
        s, run.ref, float(own.sum()) if own is not None else run.ref * len(ids)
    )
    cost = costs.fixed + years * (costs.per_customer * len(ids) + costs.per_touch * extra_year)
    margin = (P.ltv.margin * own).to_numpy(dtype=float) if own is not None else np.zeros(len(ids))
    Z1 = model.matrix(changed)
    moved = np.flatnonzero((Z1 != proj.Z0[sel]).any(axis=1))
    if not len(moved) and s.pilot is None:
        out.skip(s, "no_effect", levers=s.change.levers())
        return None
    if not cost > 0:
        out.skip(s, "zero_cost")
        return None
    pack = _Retention(
        scenario=s,
        ids=ids,
        codes=codes,
        rows=sel,
        moved=moved,
        Z1=Z1[moved],
        clv=proj.values.reindex(ids).fillna(0.0).to_numpy(dtype=float),
        margin=margin,
        cost=float(cost),
        years=years,
        extra_touches=extra_year,
    )
    return pack, costs


def _bootstrap(run: _Run, fit: _Fit, packs: list[_Retention], Z0: np.ndarray) -> _Replicates:
    """Customers resampled (all their snapshots), the model refitted and recalibrated, the
    targets re-projected; each replicate also draws every targeted customer's fate with and
    without the change from one uniform (chance)."""
    P, B, model = run.P, run.B, fit.model
    hr_draws: dict[str, tuple[float, np.ndarray]] = {
        p.scenario.name: _pilot_hr_draws(
            p.scenario.pilot, _seed(P.seed, "pilot", p.scenario.name), B
        )
        for p in packs
        if p.scenario.pilot is not None
    }
    h0 = model.hazard(Z0)
    point = {
        p.scenario.name: p.hazards(
            model, h0, hr_draws[p.scenario.name][0] if p.scenario.name in hr_draws else None
        )
        for p in packs
    }
    from fupan.models.health import cluster_bootstrap_weights

    realised: dict[str, list[dict]] = {p.scenario.name: [] for p in packs}
    expected: dict[str, list[dict]] = {p.scenario.name: [] for p in packs}
    fates = {p.scenario.name: _seed(P.seed, "fate", p.scenario.name) for p in packs}
    eff_reps: list[np.ndarray] = []
    sd = model.design.sd_[model.design.columns_].to_numpy(dtype=float)
    refit = _Refit(fit.frame, model, fit.coef, model.matrix(fit.frame))
    weights = cluster_bootstrap_weights(fit.frame.customer_id.to_numpy(), B, P.seed)

    def replicate(b: int, w: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
        mb = refit.fit(w)
        hb = mb.hazard(Z0)
        lams = []
        for p in packs:
            name = p.scenario.name
            lams.append(p.hazards(mb, hb, hr_draws[name][1][b] if name in hr_draws else None))
        return mb.beta / sd, lams  # per unit, as HazardModel.per_unit

    with threadpool_limits(limits=1):  # once: entering it costs ~15 ms
        refits = _in_order(replicate, enumerate(weights))
        for eff, lams in progress.bar(refits, "bootstrap refits", total=B, unit="refit"):
            eff_reps.append(eff)
            for p, (lam0, lam1) in zip(packs, lams, strict=True):
                name = p.scenario.name
                u = fates[name].random(len(p.ids))  # drawn in replicate order
                expected[name].append(_expected(p, lam0, lam1))
                realised[name].append(_realised(p, lam0, lam1, u))
    return _Replicates(point, expected, realised, eff_reps)


def _retention_row(
    run: _Run, p: _Retention, costs: _Costs, reps: _Replicates, tiers: pd.Series, out: _Priced
) -> None:
    """A priced retention scenario's row, pilot design, per-customer table, sensitivity."""
    s, sp = p.scenario, run.sp
    lam0, lam1 = reps.point[s.name]
    m0 = _expected(p, lam0, lam1)
    rep, exp_ = pd.DataFrame(reps.realised[s.name]), pd.DataFrame(reps.expected[s.name])
    out.draws[s.name] = rep
    source = "pilot" if s.pilot is not None else "model"
    row = _row(s, source, len(p.ids), m0, rep, exp_, sp.interval, p.years)
    design = pilot_design("churn", len(p.ids), sp, lam0, lam1)
    out.pilots.append({"name": s.name, **design})
    row.update(
        pilot_n_per_arm=design["n_per_arm"],
        pilot_months=design["months"],
        extra_touches_per_year=p.extra_touches,
        **costs.record(),
    )
    out.rows.append(row)
    out.per_customer[s.name] = pd.DataFrame(
        {
            "customer_id": p.ids,
            "tier": tiers.reindex(p.ids).to_numpy(),
            "churn_before": -np.expm1(-MONTHS_PER_YEAR * lam0),
            "churn_after": -np.expm1(-MONTHS_PER_YEAR * lam1),
            "clv": p.clv,
            "annual_margin": p.margin,
        }
    )

    def roi_at(mult: float, cost_scale: float = 1.0, value_scale: float = 1.0) -> float:
        lam = lam0 + mult * (lam1 - lam0)
        return _expected(p, lam0, lam, value_scale, cost_scale)["roi"]

    out.sens.append(_sensitivity(s.name, roi_at, m0["roi"], *run.effect_range))


# ---- win-back ----------------------------------------------------------------------------


@dataclass
class _Lost:
    """What every win-back scenario shares: the lost customers, their natural return and
    how many years a customer won back is worth."""

    eff: pd.Series  # effective churn dates
    natural: float
    natural_n: int
    natural_basis: str
    years_value: float
    lost: pd.DataFrame  # churned customers with ``churned_at``


def _price_winback(run: _Run, scenarios: list[Scenario], out: _Priced) -> None:
    """Price the win-back scenarios: offer against natural return, on the prior or a pilot."""
    if not scenarios:
        return
    lost = _lost(run, scenarios)
    for s in scenarios:
        w = _winback_offer(run, s, lost, out)
        if w is not None:
            _winback_row(run, s, w, lost, out)


def _lost(run: _Run, scenarios: list[Scenario]) -> _Lost:
    P, status, as_of = run.P, run.status, run.as_of
    eff = effective_churn_dates(status)
    within = max(s.target.lost_within_days for s in scenarios)
    natural, natural_n, natural_basis = natural_return(run.ds, status, as_of, within)
    base_churn = metrics.annual_churn(status, as_of)["rate"]  # the catalogue's
    base_churn = base_churn if np.isfinite(base_churn) else 0.0
    years_value = annuity(P.ltv.horizon_years, base_churn, P.ltv.discount_rate_annual)
    lost = run.cust.merge(
        status.loc[status.churned, ["customer_id", "churned_at"]], on="customer_id"
    )
    return _Lost(eff, natural, natural_n, natural_basis, years_value, lost)


def _winback_offer(run: _Run, s: Scenario, lost: _Lost, out: _Priced) -> _WinBack | None:
    """The scenario's targets and economics; None (skipped) when there is no one to win
    back, no uplift over the natural return, no one worth the offer, or no cost."""
    since = run.as_of - pd.Timedelta(days=s.target.lost_within_days)
    pool = lost.lost[pd.to_datetime(lost.lost.churned_at) > since].reset_index(drop=True)
    w = _winback_pack(run.ds, s, pool, lost.eff, lost.natural, lost.years_value)
    if w is None:
        out.skip(s, "no_targets")
        return None
    if not w.rate > w.natural:
        out.skip(s, "no_uplift", rate=w.rate, natural=w.natural)
        return None
    if not w.frame.contacted.any():
        assert w.costs is not None
        out.skip(
            s,
            "none_worth",
            targets=len(w.frame),
            best_value=float(w.frame.expected_value.max()),
            offer=w.costs.offer,
        )
        return None
    if not w.cost > 0:
        out.skip(s, "zero_cost")
        return None
    return w


def _winback_rates(run: _Run, s: Scenario, w: _WinBack) -> tuple[np.ndarray, np.ndarray]:
    """Replicates of the reactivation rate with and without the offer: the pilot's arms'
    Beta posteriors, else the prior (a Beta worth ``prior_customers``) against the
    observed natural return."""
    B = run.B
    rng = _seed(run.P.seed, "winback", s.name)
    if s.pilot is not None:
        pv = s.pilot
        rates = rng.beta(pv.treated_events + 0.5, pv.treated - pv.treated_events + 0.5, B)
        nats = rng.beta(pv.control_events + 0.5, pv.control - pv.control_events + 0.5, B)
    else:
        wbp = s.change.winback
        assert wbp is not None
        a = wbp.reactivation_rate * wbp.prior_customers
        rates = rng.beta(a, wbp.prior_customers - a, B)
        nats = np.full(B, w.natural)
    return rates, nats


def _winback_row(run: _Run, s: Scenario, w: _WinBack, lost: _Lost, out: _Priced) -> None:
    """A priced win-back's row, draws, pilot design, per-customer table, sensitivity."""
    sp = run.sp
    m0 = _wb_expected(w, w.rate, w.natural)
    rates, nats = _winback_rates(run, s, w)
    fate = _seed(run.P.seed, "fate", s.name)
    n_c = len(w.contacted)
    rep = pd.DataFrame(
        [
            _wb_realised(w, float(r), float(n), fate.random(n_c))
            for r, n in zip(rates, nats, strict=True)
        ]
    )
    exp_ = pd.DataFrame(
        [_wb_expected(w, float(r), float(n)) for r, n in zip(rates, nats, strict=True)]
    )
    out.draws[s.name] = rep
    source = "pilot" if s.pilot is not None else "prior"
    row = _row(s, source, len(w.frame), m0, rep, exp_, sp.interval, w.years)
    design = pilot_design("reactivation", n_c, sp, p_control=w.natural, p_treated=w.rate)
    out.pilots.append({"name": s.name, **design})
    row.update(
        pilot_n_per_arm=design["n_per_arm"],
        pilot_months=design["months"],
        extra_touches_per_year=0.0,
        contacted=n_c,
        excluded=int(len(w.frame) - n_c),
        natural_return_rate=w.natural,
        natural_return_customers=lost.natural_n,
        natural_return_basis=lost.natural_basis,
        reactivation_rate=w.rate,
        value_years=lost.years_value,
        offer_cost=w.costs.offer if w.costs is not None else float("nan"),
        **(w.costs.record() if w.costs is not None else {}),
    )
    out.rows.append(row)
    out.winback[s.name] = w.frame
    out.per_customer[s.name] = w.frame

    def roi_wb(mult: float, cost_scale: float = 1.0, value_scale: float = 1.0) -> float:
        rate = w.natural + mult * (w.rate - w.natural)
        return _wb_expected(w, rate, w.natural, value_scale, cost_scale)["roi"]

    out.sens.append(_sensitivity(s.name, roi_wb, m0["roi"], *run.effect_range))


# ---- ranking and roadmap -----------------------------------------------------------------

_ROADMAP_COLUMNS = [
    "name",
    "phase",
    "wave",
    "pilot_start",
    "pilot_end",
    "rollout_start",
    "standardise_start",
]


def _result(run: _Run, scenarios: Sequence[Scenario], out: _Priced) -> SimulationResult:
    """The priced scenarios ranked by ROI, with their roadmap, pilots and sensitivity."""
    table = pd.DataFrame(out.rows)
    if len(table):
        # ties (or undefined ROI) keep the scenarios file's order
        order = {s.name: i for i, s in enumerate(scenarios)}
        table["_o"] = table.name.map(order)
        table = (
            table.sort_values(
                ["roi", "_o"], ascending=[False, True], na_position="last", kind="stable"
            )
            .drop(columns="_o")
            .reset_index(drop=True)
        )
        table["rank"] = np.arange(1, len(table) + 1)
        rm = roadmap(table, run.sp)
        table = table.merge(rm[["name", "phase"]], on="name", how="left")
        pilot_df = pd.DataFrame(out.pilots).set_index("name").loc[table.name].reset_index()
        sens_df = pd.DataFrame(out.sens).set_index("name").loc[table.name].reset_index()
    else:
        rm = pd.DataFrame(columns=_ROADMAP_COLUMNS)
        pilot_df, sens_df = pd.DataFrame(), pd.DataFrame()
    return SimulationResult(
        table=table,
        draws=out.draws,
        sensitivity=sens_df,
        pilots=pilot_df,
        roadmap=rm,
        winback=out.winback,
        per_customer=out.per_customer,
        skipped=out.skipped,
        model=out.model,
        info={
            "bootstrap": run.B,
            "interval": run.sp.interval,
            "now": run.now,
            "as_of": run.as_of,
            "value_model": out.value_model,
            "projection_months": run.sp.projection_months,
            "reference_spend": run.ref,
        },
    )
