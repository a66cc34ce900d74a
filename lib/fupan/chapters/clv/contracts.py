"""Contractual CLV: a shifted-beta-geometric (sBG) renewal model on contract renewal chains."""

from __future__ import annotations

import math
import warnings
from typing import Any

import ibis
import numpy as np
import pandas as pd
from scipy.special import betaln

from fupan.chapters.clv.valuation import CONTRACTS, POOLED, YEAR_DAYS, Valuation, _ts
from fupan.core.chapter_params import LtvParams
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.models.ltv import (
    ShiftedBetaGeometric,
)

# ---- contractual: sBG on renewal chains ------------------------------------------------


def contract_chains(ds: Dataset, snapshot: Any) -> pd.DataFrame:
    """One row per contract renewal chain, from contracts that started before ``snapshot``.

    A chain starts at a contract that renews nothing (``renewal_of`` empty or naming a
    contract not in the data) and runs through the contracts that renew it, in start-date
    order. Without a ``renewal_of`` column a contract renews the customer's previous one when
    it starts within ``churn_definition.grace_days`` of that one's end. Chains are numbered
    per customer by a running count in the engine.

    Returns
    -------
    DataFrame with ``customer_id, chain, contracts, first_start, last_end, annual_value``
    (of the latest contract), ``renewals`` (contracts - 1) and ``ended``: the latest contract
    ended more than ``grace_days`` before the snapshot with no renewal, the same rule as
    :func:`fupan.measures.outcomes.churn_status`.
    """
    snap = _ts(snapshot).date()
    grace = ds.params.churn_definition.grace_days
    c = ds["contracts"]
    c = c.filter(c.start_date < ibis.literal(snap))
    if "renewal_of" in c.columns:
        ids = c.select(parent_id=c.contract_id)
        c = c.left_join(ids, c.renewal_of == ids.parent_id)
        is_root = c.parent_id.isnull()
    else:
        prev_end = c.end_date.lag().over(
            ibis.window(group_by=c.customer_id, order_by=[c.start_date, c.contract_id])
        )
        is_root = prev_end.isnull() | (c.start_date > prev_end + ibis.interval(days=grace))
    c = c.mutate(root=is_root.cast("int64"))
    window = ibis.cumulative_window(group_by=c.customer_id, order_by=[c.start_date, c.contract_id])
    c = c.mutate(chain=c.root.sum().over(window))
    per = c.group_by(["customer_id", "chain"]).aggregate(
        contracts=c.count(),
        first_start=c.start_date.min(),
        last_end=c.end_date.max(),
        annual_value=c.annual_value.argmax(c.start_date),
    )
    df = engine.to_pandas(per.order_by(["customer_id", "chain"]))
    for col in ("first_start", "last_end"):
        df[col] = pd.to_datetime(df[col])
    df["annual_value"] = df["annual_value"].astype(float)
    df["contracts"] = df["contracts"].astype(int)
    df["renewals"] = df["contracts"] - 1
    df["ended"] = (df["last_end"] + pd.Timedelta(days=grace)) < _ts(snapshot)
    return df


def contract_period_years(ds: Dataset) -> float:
    """Typical contract length in years (median, rounded to whole months; 1 if unknown)."""
    c = ds["contracts"]
    days = (c.end_date.delta(c.start_date, unit="day") + 1).median().to_pandas()
    if days is None or not np.isfinite(days) or days <= 0:
        return 1.0
    months = max(1, int(round(float(days) / YEAR_DAYS * 12)))
    return months / 12.0


def sbg_cohorts(chains: pd.DataFrame) -> tuple[list[list[int]], list[int]]:
    """Survivor series for :meth:`ShiftedBetaGeometric.fit` from chains.

    A chain that ended after ``k`` contracts contributes ``P(T = k)``; a running chain with
    ``k`` contracts has survived ``k - 1`` renewal decisions (the next is pending) and
    contributes ``S(k - 1)``. Chains are grouped by (outcome, length) into cohorts with the
    same likelihood, so the fit is exact and compact.
    """
    survivors: list[list[int]] = []
    initial: list[int] = []
    ended = chains[chains.ended].groupby("contracts").size()
    for k, n in ended.items():
        survivors.append([int(n)] * (int(k) - 1) + [0])
        initial.append(int(n))
    running = chains[~chains.ended & (chains.contracts > 1)].groupby("contracts").size()
    for k, n in running.items():
        survivors.append([int(n)] * (int(k) - 1))
        initial.append(int(n))
    return survivors, initial


def segment_of(chains: pd.DataFrame, tiers: pd.Series | None, by: str) -> pd.Series:
    """The sBG segment of each chain: the customer's tier, the chain's start year, or pooled."""
    if by == "tier" and tiers is not None:
        return chains.customer_id.map(tiers).fillna(POOLED).astype(str)
    if by == "cohort":
        return chains.first_start.dt.year.astype(str)
    return pd.Series(POOLED, index=chains.index)


def fit_sbg(
    chains: pd.DataFrame, segments: pd.Series, min_chains: int, min_churned: int
) -> tuple[dict[str, ShiftedBetaGeometric], dict[str, str]]:
    """Fit one sBG per segment with enough data, and a pooled one for the rest.

    A segment whose renewals show no heterogeneity has its maximum at the boundary
    (``alpha, beta`` growing together, a plain geometric model); its estimates are then
    large and imprecise but its retention ``beta / (alpha + beta)`` is well determined.

    Returns
    -------
    (models by segment name incl. ``POOLED``, the model each segment uses)

    Raises
    ------
    ValueError
        When no chain has ended unrenewed (retention cannot be estimated yet).
    """
    if not bool(chains.ended.any()):
        raise ValueError(
            "no contract has ended without renewal before the snapshot: renewal rates cannot "
            "be estimated yet"
        )

    def one(rows: pd.DataFrame) -> ShiftedBetaGeometric:
        surv, init = sbg_cohorts(rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # boundary fits, see above
            return ShiftedBetaGeometric().fit(surv, init, time_unit="Y")

    models = {POOLED: one(chains)}
    uses: dict[str, str] = {}
    for seg in sorted(segments.unique()):
        rows = chains[segments == seg]
        if seg != POOLED and len(rows) >= min_chains and int(rows.ended.sum()) >= min_churned:
            models[seg] = one(rows)
            uses[seg] = seg
        else:
            uses[seg] = POOLED
    return models, uses


def renewal_value(
    alpha: float,
    beta: float,
    renewals: Any,
    years_to_decision: Any,
    value_per_period: Any,
    period_years: float,
    discount_rate_annual: float,
    horizon_years: float,
) -> np.ndarray:
    """Discounted expected value of future renewals under sBG(alpha, beta).

    ``sum_k S(n+k)/S(n) * m / (1+d)^t_k`` over the renewals ``k = 1, 2, ...`` that fall within
    the horizon, ``t_k = tau + (k-1) * period`` years from now, where ``n`` renewals have been
    made, the next decision is ``tau`` years away and ``m`` is paid at each renewal's start.
    With ``tau = 0`` and a one-year period this is the finite-horizon DERL of Fader & Hardie
    (2010) (:meth:`ShiftedBetaGeometric.expected_lifetime_value` with ``renewals=n``).
    """
    n = np.atleast_1d(np.asarray(renewals, dtype=float))
    tau = np.broadcast_to(np.asarray(years_to_decision, dtype=float), n.shape)
    m = np.broadcast_to(np.asarray(value_per_period, dtype=float), n.shape)
    if (n < 0).any() or (tau < 0).any():
        raise ValueError("renewals and years_to_decision must be >= 0")
    count = int(math.ceil(horizon_years / period_years)) + 1
    k = np.arange(1, count + 1, dtype=float)
    t_k = tau[:, None] + (k[None, :] - 1) * period_years
    survive = np.exp(
        betaln(alpha, beta + n[:, None] + k[None, :]) - betaln(alpha, beta + n[:, None])
    )
    discount = (1.0 + discount_rate_annual) ** (-t_k)
    inside = t_k < horizon_years - 1e-9
    return m * np.sum(survive * discount * inside, axis=1)


def value_contracts(
    ds: Dataset,
    snapshot: Any,
    ltv: LtvParams,
    chains: pd.DataFrame | None = None,
    period_years: float | None = None,
) -> Valuation:
    """Residual CLV of every customer with a running contract chain at ``snapshot``.

    sBG models are fitted per ``ltv.sbg_segment`` on all chains started before the snapshot.
    A customer with several running chains is worth their sum; ``p_churn`` is that of her
    largest chain.
    """
    snap = _ts(snapshot)
    if chains is None:
        chains = contract_chains(ds, snap)
    if period_years is None:
        period_years = contract_period_years(ds)
    tiers = engine.to_pandas(ds["customers"].select("customer_id", "tier")).set_index(
        "customer_id"
    )["tier"]
    seg = segment_of(chains, tiers, ltv.sbg_segment)
    models, uses = fit_sbg(chains, seg, ltv.sbg_min_chains, ltv.sbg_min_churned)
    running = chains[~chains.ended].copy()
    running["segment"] = seg[~chains.ended].map(uses)
    next_decision = running.last_end + pd.Timedelta(days=1)
    running["years_to_decision"] = ((next_decision - snap).dt.days.clip(lower=0)) / YEAR_DAYS
    missing_value = running.annual_value.isna()
    running["annual_value"] = running.annual_value.fillna(0.0)
    running["clv"] = 0.0
    running["p_churn"] = np.nan
    for name, model in models.items():
        rows = running.segment == name
        if not rows.any():
            continue
        a, b = model.params_["alpha"], model.params_["beta"]
        n = running.loc[rows, "renewals"].to_numpy(dtype=float)
        running.loc[rows, "clv"] = renewal_value(
            a,
            b,
            n,
            running.loc[rows, "years_to_decision"].to_numpy(),
            ltv.margin * period_years * running.loc[rows, "annual_value"].to_numpy(),
            period_years,
            ltv.discount_rate_annual,
            ltv.horizon_years,
        )
        running.loc[rows, "p_churn"] = a / (a + b + n)  # 1 - (b + n)/(a + b + n)
    running = running.sort_values(["customer_id", "annual_value"], ascending=[True, False])
    values = running.groupby("customer_id", sort=True).agg(
        clv=("clv", "sum"),
        p_churn=("p_churn", "first"),
        renewals=("renewals", "first"),
        years_to_decision=("years_to_decision", "min"),
        annual_value=("annual_value", "sum"),
        segment=("segment", "first"),
        chains=("chain", "size"),
    )
    info = {
        "customers": int(len(values)),
        "chains": int(len(chains)),
        "chains_ended": int(chains.ended.sum()),
        "period_years": period_years,
        "segments": {k: v for k, v in uses.items()},
        "missing_annual_value": int(missing_value.sum()),
        "converged": {k: bool(m.converged_) for k, m in models.items()},
    }
    return Valuation(snap, CONTRACTS, values, {"sbg": models}, info, chains=running)
