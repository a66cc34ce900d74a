"""Chapter 3: what a customer is worth, what churn cost, and what is at risk now.

The business model in params chooses the CLV model:

``non_contractual``
    BG/NBD (or Pareto/NBD) for how often a customer buys and whether she is still active,
    times Gamma-Gamma for how much she spends per purchase (:mod:`fupan.models.ltv`), summed month
    by month over ``ltv.horizon_years``, discounted at ``ltv.discount_rate_annual`` and
    multiplied by ``ltv.margin``. Time in the transaction model is in ``ltv.time_unit``.
``contractual``
    a shifted-beta-geometric (sBG) renewal model per tier (or start-year cohort), fitted on
    contract renewal chains (``renewal_of``): a customer's value is the discounted expected
    margin of her future renewals, ``margin x annual_value x period x sum_k S(n+k)/S(n) /
    (1+d)^t_k``, where ``n`` is the renewals she has made and ``t_k`` the years until her
    ``k``-th next renewal (within the horizon). The running contract is already booked and is
    not counted: it cannot be lost to churn. Without a ``contracts`` table the chapter falls
    back to the non-contractual model and says so.

Every valuation is strictly as of a snapshot date ``s``: models are fitted on, and customers
described by, data dated before ``s`` only. LTV lost to churn values each customer who
churned in the review period at the last monthly snapshot before her churn date; the loss
rate divides it by the value of every customer in the period's base, taken when she entered
it (the period start, or the first snapshot after her first purchase or contract).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
from scipy.special import betaln
from threadpoolctl import threadpool_limits

from fupan.core.chapter_params import LtvParams
from fupan.core.params import Params
from fupan.io import cache, engine
from fupan.io.dataset import Dataset
from fupan.models.ltv import (
    UNIT_DAYS,
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    ShiftedBetaGeometric,
    holdout_by_frequency,
    summary_from_orders,
)
from fupan.models.ltv._core import unique_rows
from fupan.models.ltv.data import OrderHistory

TRANSACTIONS = "transactions"
CONTRACTS = "contracts"
#: ``ltv.model`` as recorded in results.json, by kind and transaction model.
MODEL_NAMES = {
    ("transactions", "bgnbd"): "bgnbd+gamma_gamma",
    ("transactions", "pareto_nbd"): "pareto_nbd+gamma_gamma",
    ("contracts", None): "sbg",
}
POOLED = "(all)"
UNRECORDED = "(unrecorded)"
#: Columns a churn-score frame may carry its churn probability in (churn chapter).
PROBABILITY_COLUMNS = ("churn_probability", "p_churn", "probability")
YEAR_DAYS = UNIT_DAYS["Y"]


def _ts(value: Any) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def choose_model(params: Params, ds: Dataset) -> tuple[str, str | None]:
    """The CLV model for this run: ``(kind, fallback)``.

    ``kind`` is ``"contracts"`` (sBG) or ``"transactions"`` (BG/NBD x Gamma-Gamma);
    ``fallback`` is ``"no_contracts"`` when the params say contractual but the data has no
    ``contracts`` table (the transaction model is used instead), else ``None``.
    """
    if params.business_model == "contractual":
        if ds.has("contracts"):
            return CONTRACTS, None
        return TRANSACTIONS, "no_contracts"
    return TRANSACTIONS, None


def model_name(kind: str, ltv: LtvParams) -> str:
    """The model's name as recorded under ``ltv.model``."""
    return MODEL_NAMES[(kind, ltv.transaction_model if kind == TRANSACTIONS else None)]


def snapshot_dates(period_start: Any, as_of: Any, months: int = 1) -> list[pd.Timestamp]:
    """Valuation snapshots of a review period, each exclusive (data strictly before it).

    The period start, then the first day of every ``months``-th month after it, then "now"
    (the day after ``as_of``, so ``as_of`` itself is in the data). A churn dated in
    ``(s_k, s_k+1]`` is valued at ``s_k``.
    """
    start, end = _ts(period_start), _ts(as_of) + pd.Timedelta(days=1)
    if start >= end:
        raise ValueError(
            f"period start {start.date()} must be on or before as_of {_ts(as_of).date()}"
        )
    out = [start]
    nxt = (start + pd.offsets.MonthBegin(1)).normalize()
    # step from the first month start after the period start, every ``months`` months
    while nxt < end:
        out.append(nxt)
        nxt = (nxt + pd.offsets.MonthBegin(months)).normalize()
    out.append(end)
    return out


def horizon_months(ltv: LtvParams) -> int:
    """The CLV horizon in whole months (at least one)."""
    return max(1, int(round(ltv.horizon_years * 12)))


# --------------------------------------------------------------------------------------
# A valuation at one snapshot


@dataclass
class Valuation:
    """Customer values at one snapshot.

    Attributes
    ----------
    snapshot : exclusive as-of date: nothing dated on or after it was used.
    kind : ``"transactions"`` or ``"contracts"``.
    values : one row per valued customer (index ``customer_id``): ``clv`` (currency), and
        ``p_churn`` (transactions: 1 - P(alive); contracts: P(not renewing at the next
        decision)), plus the model inputs (``frequency, recency, T, monetary, spend`` or
        ``renewals, years_to_decision, annual_value, segment``).
    models : the fitted models (``transactions``, ``spend``; or ``sbg`` by segment).
    info : counts a slide may need to state (e.g. ``spend_imputed``).
    chains : contracts only: the running renewal chains behind ``values`` (one row per
        chain, with ``segment, years_to_decision, p_churn, clv``).
    """

    snapshot: pd.Timestamp
    kind: str
    values: pd.DataFrame
    models: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    chains: pd.DataFrame | None = None

    @property
    def total(self) -> float:
        return float(self.values["clv"].sum())


# ---- non-contractual: BG/NBD (or Pareto/NBD) x Gamma-Gamma ---------------------------


def transaction_summary(
    ds: Dataset, snapshot: Any, ltv: LtvParams, holdout_end: Any = None
) -> pd.DataFrame:
    """Per-customer frequency / recency / T / monetary from orders dated before ``snapshot``.

    With ``holdout_end`` the calibration ends at ``snapshot`` and ``frequency_holdout`` counts
    purchase days in ``[snapshot, holdout_end)``. Aggregated in the engine.
    """
    orders = ds["orders"].select("customer_id", "order_date", "amount")
    snap = _ts(snapshot).date()
    if holdout_end is None:
        return summary_from_orders(orders, snap, freq=ltv.time_unit)
    return summary_from_orders(
        orders, _ts(holdout_end).date(), freq=ltv.time_unit, calibration_end=snap
    )


@dataclass
class TransactionModels:
    """The fitted purchase and spend models of one snapshot."""

    purchases: BetaGeo | ParetoNBD
    spend: GammaGamma
    n_fit: int
    population_spend: float


def fit_transactions(summary: pd.DataFrame, ltv: LtvParams) -> TransactionModels:
    """Fit the purchase model on every customer and Gamma-Gamma on repeat buyers with
    positive spend.

    Customers first seen on the last observed day (``T = 0``) carry no information about
    their purchase rate and are left out of the fit. Every snapshot is fitted from the same
    starting values, so its estimates do not depend on the order snapshots are valued in.

    Raises
    ------
    ValueError
        When no customer has a repeat purchase with positive spend, or the fitted spend
        model has no finite mean (``q <= 1``).
    """
    cls = BetaGeo if ltv.transaction_model == "bgnbd" else ParetoNBD
    # boolean arrays, not Series: a Series mask makes pandas hash the customer ids
    fit_rows = summary[(summary["T"] > 0).to_numpy()]
    if fit_rows.empty:
        raise ValueError("no customer has an order before the snapshot: nothing to fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # convergence is recorded in info
        purchases = cls().fit(fit_rows, time_unit=ltv.time_unit)
    repeat = fit_rows[((fit_rows.frequency > 0) & (fit_rows.monetary > 0)).to_numpy()]
    if repeat.empty:
        raise ValueError(
            "no customer has a repeat purchase with positive net spend: the spend model "
            "(Gamma-Gamma) cannot be fitted"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spend = GammaGamma().fit(repeat.frequency, repeat.monetary)
    pop = spend.population_mean_spend()
    if not math.isfinite(pop):
        raise ValueError(
            f"the spend model has no finite mean (q = {spend.params_['q']:.3g} <= 1): spend is "
            "too heavy-tailed for Gamma-Gamma; check for extreme orders"
        )
    return TransactionModels(purchases, spend, int(len(fit_rows)), float(pop))


def discounted_purchases(
    model: BetaGeo | ParetoNBD,
    frequency: Any,
    recency: Any,
    T: Any,
    horizon: int,
    discount_rate_annual: float,
) -> np.ndarray:
    """Expected purchases month by month over ``horizon`` months, discounted to now.

    ``sum_k (E[X(k)] - E[X(k-1)]) / (1+d)^(k/12)`` with ``E[X(k)]`` the model's expected
    purchases in the next ``k`` months given the customer's history: the purchase factor of
    :meth:`GammaGamma.clv` (``period="M"``, rate quoted a year), with every month of every
    customer evaluated in one call. ``recency`` and ``T`` are in ``model.time_unit_``.
    Customers with the same history (one-time buyers of the same age, say) are computed once.
    """
    f, r, t = (np.asarray(v, dtype=float).ravel() for v in (frequency, recency, T))
    if f.size == 0:
        return np.zeros(0)
    first, back = unique_rows(f, r, t)
    x, tx, T_ = f[first], r[first], t[first]
    n = x.size
    step = UNIT_DAYS["M"] / UNIT_DAYS[model.time_unit_]  # one month in the model's unit
    k = np.arange(1, int(horizon) + 1, dtype=float)
    if isinstance(model, BetaGeo):  # the same values, its bracket once per (frequency, T)
        cum = model.expected_purchases_grid(k * step, x, tx, T_)
    else:
        cum = np.asarray(
            model.expected_purchases(
                np.tile(k * step, n),
                np.repeat(x, k.size),
                np.repeat(tx, k.size),
                np.repeat(T_, k.size),
            ),
            dtype=float,
        ).reshape(n, k.size)
    monthly = np.diff(cum, axis=1, prepend=0.0)
    discount = (1.0 + discount_rate_annual) ** (-k / 12.0)
    return np.sum(monthly * discount[None, :], axis=1)[back]


def value_transactions(
    models: TransactionModels, summary: pd.DataFrame, ltv: LtvParams, snapshot: Any
) -> Valuation:
    """Discounted residual CLV of every customer in ``summary``.

    Repeat buyers whose refunds net their repeat spend to zero or less are valued at the
    population mean spend (their count is ``info['spend_imputed']``): Gamma-Gamma needs
    positive spend, and the conditional expected spend of a customer whose observed mean is
    the population mean is exactly that mean. Customers first seen on the last observed day
    (``T = 0``) are valued as one day old (``info['first_seen_last_day']``).
    """
    unit = ltv.time_unit
    s = summary[["frequency", "recency", "T", "monetary"]].copy()
    first_day = (s["T"] <= 0).to_numpy()
    s.loc[first_day, "T"] = 1.0 / UNIT_DAYS[unit]
    nonpos = (s.frequency > 0) & (s.monetary <= 0)
    monetary = s.monetary.where(~nonpos, models.population_spend)
    spend = np.asarray(models.spend.expected_spend(s.frequency, monetary), dtype=float)
    purchases = discounted_purchases(
        models.purchases,
        s.frequency,
        s.recency,
        s["T"],
        horizon_months(ltv),
        ltv.discount_rate_annual,
    )
    clv = purchases * spend * ltv.margin
    bad = ~np.isfinite(clv)
    if bad.any():  # a wrong total is worse than none: name the customers and the model
        raise ValueError(
            f"CLV is not finite for {int(bad.sum())} customers (e.g. {list(s.index[bad][:5])}) "
            f"with purchase model {models.purchases.params_} and spend model {models.spend.params_}"
        )
    alive = models.purchases.probability_alive(s.frequency, s.recency, s["T"])
    values = s.assign(
        purchases=purchases,
        spend=spend,
        spend_imputed=nonpos,
        p_alive=np.asarray(alive, dtype=float),
        clv=np.asarray(clv, dtype=float),
    )
    values["p_churn"] = 1.0 - values["p_alive"]
    info = {
        "customers": int(len(values)),
        "spend_imputed": int(nonpos.sum()),
        "spend_imputed_negative": int(((s.frequency > 0) & (s.monetary < 0)).sum()),
        "first_seen_last_day": int(first_day.sum()),
        "one_time_buyers": int((s.frequency == 0).sum()),
        "converged": bool(
            getattr(models.purchases, "converged_", True)
            and getattr(models.spend, "converged_", True)
        ),
        "population_spend": models.population_spend,
        "fit_customers": models.n_fit,
        "time_unit": unit,
    }
    return Valuation(
        _ts(snapshot),
        TRANSACTIONS,
        values,
        {"transactions": models.purchases, "spend": models.spend},
        info,
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


# --------------------------------------------------------------------------------------
# Model checks


def holdout_check(
    models: TransactionModels, summary: pd.DataFrame, max_freq: int = 7
) -> pd.DataFrame:
    """Predicted vs actual purchases in the holdout by calibration frequency.

    ``summary`` comes from :func:`transaction_summary` with ``holdout_end``; ``models`` were
    fitted on its calibration columns. Metrics are in ``attrs`` (see
    :func:`fupan.models.ltv.holdout_by_frequency`).
    """
    rows = summary[(summary["T"] > 0).to_numpy()]
    return holdout_by_frequency(models.purchases, rows, max_freq=max_freq)


def renewal_check(
    start: Valuation, chains_now: pd.DataFrame, as_of: Any, grace_days: int, max_renewals: int = 4
) -> pd.DataFrame:
    """Predicted vs actual renewal rate of the decisions taken in the review period.

    Chains running at the period-start valuation whose next renewal decision is known by
    ``as_of`` (renewed, or ended at least ``grace_days`` before with no renewal) are compared
    with the renewal probability the start's sBG models gave them, by renewals made before
    (pooled from ``max_renewals``). Chains are matched by customer and chain number.

    Returns
    -------
    DataFrame ``renewals, n_decisions, actual, predicted, error`` with ``attrs`` ``mae``,
    ``weighted_mae``, ``decisions``, ``total_actual``, ``total_predicted``.
    """
    cols = ["renewals", "n_decisions", "actual", "predicted", "error"]
    if start.chains is None or start.chains.empty:
        return pd.DataFrame(columns=cols)
    before = start.chains[["customer_id", "chain", "contracts", "last_end", "p_churn"]]
    after = chains_now[["customer_id", "chain", "contracts"]].rename(
        columns={"contracts": "contracts_now"}
    )
    rows = before.merge(after, on=["customer_id", "chain"], how="left")
    rows["renewed"] = rows.contracts_now.fillna(0) > rows.contracts
    lapsed = rows.last_end + pd.Timedelta(days=grace_days) < _ts(as_of)
    rows = rows[rows.renewed | lapsed].copy()
    rows["bucket"] = (rows.contracts - 1).clip(upper=max_renewals).astype(int)
    rows["p_renew"] = 1.0 - rows.p_churn
    table = rows.groupby("bucket").agg(
        n_decisions=("renewed", "size"), actual=("renewed", "mean"), predicted=("p_renew", "mean")
    )
    table = table.reset_index().rename(columns={"bucket": "renewals"})
    table["error"] = table.predicted - table.actual
    n = table.n_decisions.to_numpy(dtype=float)
    err = np.abs(table.error.to_numpy(dtype=float))
    table.attrs.update(
        mae=float(err.mean()) if len(err) else float("nan"),
        weighted_mae=float(np.sum(err * n) / n.sum()) if n.sum() else float("nan"),
        decisions=int(len(rows)),
        total_actual=float(rows.renewed.sum()),
        total_predicted=float(rows.p_renew.sum()),
    )
    return table[cols]


# --------------------------------------------------------------------------------------
# LTV lost to churn


def period_ledger(
    status: pd.DataFrame,
    snapshots: Sequence[pd.Timestamp],
    value: Callable[[pd.Timestamp, list[str]], pd.Series],
) -> pd.DataFrame:
    """Who was in the period's base, what they were worth on entry, and what churn took.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of`` (the shared churn definition).
    snapshots : :func:`snapshot_dates`: the period start, month starts, and "now" (as_of + 1).
    value : ``value(snapshot, customer_ids) -> Series`` of CLV for the customers it can value
        at that snapshot from data strictly before it (others are left out).

    Returns
    -------
    One row per customer in the base: ``customer_id, entry_snapshot, entry_clv, churned``
    (in the period), ``churned_at, loss_snapshot`` (the last snapshot before the churn) and
    ``lost_ltv`` (her CLV there; NaN if no snapshot before the churn could value her).
    Customers who churned on or before the period start are not in the base.
    """
    start, now = snapshots[0], snapshots[-1]
    end = now - pd.Timedelta(days=1)
    st = status[(status.acquired_at <= end) & ~(status.churned_at <= start)]
    st = st.set_index("customer_id")
    churned_at = st.churned_at
    in_period = churned_at.notna() & (churned_at > start) & (churned_at <= end)
    # customers are tracked by position in ``st``: a value's ids are matched to positions
    # once per snapshot, instead of membership tests of string lists per customer
    n = len(st)
    acquired = st.acquired_at
    entry_k = np.full(n, -1)
    entry_val = np.full(n, np.nan)
    loss_k = np.full(n, -1)
    loss_val = np.full(n, np.nan)
    for k, s in enumerate(snapshots):
        nxt = snapshots[k + 1] if k + 1 < len(snapshots) else None
        alive = (churned_at.isna() | (churned_at > s)).to_numpy(dtype=bool)
        need_entry = alive & (entry_k < 0) & (acquired < s).to_numpy(dtype=bool)
        if nxt is None:  # "now": only customers who entered during the last month
            need_loss = np.zeros(n, dtype=bool)
        else:
            need_loss = (
                in_period & (churned_at > s) & (churned_at <= nxt) & (acquired < s)
            ).to_numpy(dtype=bool)
        need = need_entry | need_loss
        if not need.any():
            continue
        ids = st.index[need].tolist()
        # sorted and distinct, as promised to ``value``: status usually comes sorted, and
        # checking that costs a tenth of sorting a million ids
        if not all(a < b for a, b in zip(ids, ids[1:], strict=False)):
            ids = sorted(set(ids))
        v = value(s, ids)
        pos = st.index.get_indexer(v.index)
        asked = pos >= 0
        asked[asked] = need[pos[asked]]  # values of customers not asked for are ignored
        pos = pos[asked]
        val = v.to_numpy(dtype=float)[asked]
        first = entry_k[pos] < 0
        entry_k[pos[first]] = k
        entry_val[pos[first]] = val[first]
        lost = need_loss[pos]
        loss_k[pos[lost]] = k
        loss_val[pos[lost]] = val[lost]
    out = pd.DataFrame({"customer_id": st.index})
    out["entry_snapshot"] = _snapshot_column(entry_k, snapshots)
    out["entry_clv"] = entry_val
    out["churned"] = in_period.to_numpy()
    out["churned_at"] = churned_at.to_numpy()
    out["loss_snapshot"] = _snapshot_column(loss_k, snapshots)
    out["lost_ltv"] = loss_val
    out.loc[~out.churned, "lost_ltv"] = np.nan
    return out


def _snapshot_column(k: np.ndarray, snapshots: Sequence[pd.Timestamp]) -> np.ndarray:
    """The snapshot at each position ``k`` (``-1``: NaT) as a datetime64 array.

    Its unit is the one pandas infers from the snapshots that occur (the period start is
    in seconds, "now" in microseconds): the unit a per-customer map of Timestamps through
    ``pd.to_datetime`` gives, inferred here from the distinct values only.
    """
    used = np.unique(k)
    col = pd.to_datetime(
        pd.Series(used).map({i: snapshots[i] for i in used.tolist() if i >= 0})
    ).to_numpy()
    return col[np.searchsorted(used, k)]


@dataclass
class LostSummary:
    """The period's loss in one place (every figure goes to results.json)."""

    lost: float
    base: float
    rate: float
    churned: int
    churned_not_valued: int
    base_customers: int


def summarise_loss(ledger: pd.DataFrame) -> LostSummary:
    """Total lost, the base's value on entry, their ratio, and the counts behind them."""
    churned = ledger[ledger.churned]
    lost = float(churned.lost_ltv.fillna(0.0).sum())
    base = float(ledger.entry_clv.fillna(0.0).sum())
    return LostSummary(
        lost=lost,
        base=base,
        rate=lost / base if base > 0 else float("nan"),
        churned=int(len(churned)),
        churned_not_valued=int(churned.lost_ltv.isna().sum()),
        base_customers=int(ledger.entry_clv.notna().sum()),
    )


def loss_by(
    ledger: pd.DataFrame, attrs: pd.DataFrame, by: str, order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Lost LTV by a customer attribute, with the group's share of the loss and loss rate.

    Parameters
    ----------
    ledger : :func:`period_ledger`.
    attrs : one row per customer with ``customer_id`` and the ``by`` column (``tier``,
        ``industry``, ``cohort``, ``reason``...); a missing value is its own group
        (``UNRECORDED``).
    order : groups in this order first (e.g. the tier order), the rest by loss.

    Returns
    -------
    ``group, churned, lost_ltv, share`` (of the total loss), ``base_clv`` (the group's value
    on entry) and ``rate`` (lost / base; NaN for ``reason``, which only churners have).
    """
    df = ledger.merge(attrs[["customer_id", by]], on="customer_id", how="left")
    df[by] = df[by].astype(object).where(df[by].notna(), UNRECORDED)
    lost = (
        df[df.churned]
        .groupby(by)
        .agg(churned=("customer_id", "size"), lost_ltv=("lost_ltv", "sum"))
    )
    base = df.groupby(by).entry_clv.sum().rename("base_clv")
    out = lost.join(base, how="outer") if by != "reason" else lost.assign(base_clv=np.nan)
    out = out.fillna({"churned": 0, "lost_ltv": 0.0})
    out["churned"] = out.churned.astype(int)
    total = float(out.lost_ltv.sum())
    out["share"] = out.lost_ltv / total if total > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rate"] = np.where(out.base_clv > 0, out.lost_ltv / out.base_clv, np.nan)
    out = out.reset_index().rename(columns={by: "group"})
    out = out.sort_values("lost_ltv", ascending=False, kind="stable")
    if order is not None:
        rank = {g: i for i, g in enumerate(order)}
        out["_o"] = out.group.map(lambda g: rank.get(g, len(rank)))
        out = out.sort_values("_o", kind="stable").drop(columns="_o")
    return out[["group", "churned", "lost_ltv", "share", "base_clv", "rate"]].reset_index(drop=True)


def material(lost: float, base: float) -> bool:
    """Whether a loss is worth a slide: at least one currency unit and 0.01% of the base.

    Customers whose dormancy is declared long after they stopped buying are valued near zero
    at the last snapshot before the churn date; sums of such crumbs would otherwise become
    "the largest share" of a loss that rounds to nothing.
    """
    lost = float(lost) if lost is not None else 0.0
    base = float(base) if base is not None and np.isfinite(base) else 0.0
    return bool(np.isfinite(lost) and lost >= max(1.0, 1e-4 * base))


def top_lost(ledger: pd.DataFrame, details: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` churned customers with the largest lost LTV, with their details.

    ``details`` is one row per customer (e.g. ``customer_id, customer_name, tier, industry,
    reason, competitor, lost_value``); ties are broken by customer id for a stable order.
    """
    lost = ledger[ledger.churned & ledger.lost_ltv.notna()]
    lost = lost.sort_values(["lost_ltv", "customer_id"], ascending=[False, True]).head(n)
    cols = ["customer_id", "churned_at", "loss_snapshot", "lost_ltv"]
    return lost[cols].merge(details, on="customer_id", how="left").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# LTV at risk now


def churn_scores(
    ds: Dataset, as_of: Any, run_dir: str | Path | None = None
) -> tuple[pd.DataFrame | None, str]:
    """The churn chapter's at-risk list at ``as_of``, with its churn probabilities.

    First the list chapter 2 exported in this run (``<run_dir>/exports/at_risk.csv``, read
    back when ``results.json`` says chapter 2 recorded that many customers), so both chapters
    show the same customers and the health model is not trained twice; then
    ``fupan.chapters.atrisk.at_risk_list(ds, as_of)`` when that module exists. Every listed customer is
    at risk unless the frame says otherwise (``at_risk`` flag, or ``band`` red/amber).

    Returns
    -------
    (frame ``customer_id, p_churn, at_risk`` or None, status: ``"churn_export"`` or
    ``"churn_scores"`` when used, else why not: ``"not_available"``, ``"no_probability"``,
    ``"failed: ..."``)
    """
    if run_dir:
        frame = _chapter2_export(Path(run_dir))
        if frame is not None:
            scores, why = normalise_scores(frame)
            if scores is not None:
                return scores, "churn_export"
    try:
        from fupan.chapters import atrisk  # built by the churn chapter
    except ImportError:
        return None, "not_available"
    fn = getattr(atrisk, "at_risk_list", None)
    if fn is None:
        return None, "not_available"
    try:
        frame = fn(ds, _ts(as_of).date())
    except Exception as exc:  # noqa: BLE001 - an optional integration must not stop the chapter
        return None, f"failed: {type(exc).__name__}: {exc}"
    return normalise_scores(frame)


def _chapter2_export(run_dir: Path) -> pd.DataFrame | None:
    """Chapter 2's exported at-risk list of this run, headers mapped back to column names."""
    from fupan.core import i18n
    from fupan.report.results import Recorder

    path = run_dir / "exports" / "at_risk.csv"
    count = Recorder(run_dir).get("churn.at_risk_count")
    if not path.exists() or count is None:
        return None
    back: dict[str, str] = {}
    for col in ("customer_id", "churn_probability"):
        for lang in i18n.LANGS:
            try:
                back[i18n.t(f"churn.acol.{col}", lang)] = col
            except i18n.MissingLabelError:
                return None
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str).rename(columns=back)
    if len(frame) != int(count) or not {"customer_id", "churn_probability"} <= set(frame.columns):
        return None  # not the list this run recorded
    return frame[["customer_id", "churn_probability"]]


def normalise_scores(frame: Any) -> tuple[pd.DataFrame | None, str]:
    """``customer_id, p_churn, at_risk`` from a churn-score frame, or None and why not."""
    if not isinstance(frame, pd.DataFrame) or "customer_id" not in frame.columns:
        return None, "no_probability"
    prob = next((c for c in PROBABILITY_COLUMNS if c in frame.columns), None)
    if prob is None:
        return None, "no_probability"
    p = pd.to_numeric(frame[prob], errors="coerce")
    if (p.notna().sum() == 0 and len(frame)) or (p.dropna() < 0).any() or (p.dropna() > 1).any():
        return None, "no_probability"
    if "at_risk" in frame.columns:
        flag = frame["at_risk"].astype(bool)
    elif "band" in frame.columns:
        flag = frame["band"].astype(str).str.lower().isin(["red", "amber"])
    else:
        flag = pd.Series(True, index=frame.index)  # a list of at-risk customers
    out = pd.DataFrame(
        {"customer_id": frame.customer_id.astype(str), "p_churn": p, "at_risk": flag.astype(bool)}
    )
    return out.dropna(subset=["p_churn"]).drop_duplicates("customer_id"), "churn_scores"


def at_risk(
    now: Valuation,
    active: Iterable[str],
    ltv: LtvParams,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Customers at risk now, with ``ltv_at_risk = p_churn x clv``.

    With ``scores`` (the churn chapter's, see :func:`churn_scores`): its flagged customers and
    probabilities. Without: the CLV model's own view: transactions, P(alive) below
    ``ltv.at_risk_p_alive`` (probability 1 - P(alive)); contracts, a renewal decision within
    ``ltv.at_risk_renewal_days`` (probability of not renewing). Only customers still active
    under the churn definition count.

    Returns
    -------
    One row per at-risk customer: ``customer_id, clv, p_churn, ltv_at_risk``, largest first.
    """
    v = now.values
    active_ids = active if isinstance(active, pd.Index | pd.Series | np.ndarray) else list(active)
    v = v[engine.isin(v.index, active_ids)]
    if scores is not None:
        s = scores[scores.at_risk.astype(bool)].set_index("customer_id")
        s = s[engine.isin(s.index, active_ids)]
        frame = pd.DataFrame({"p_churn": s.p_churn.astype(float)})
        frame["clv"] = v.clv.reindex(frame.index).fillna(0.0)
    else:
        if now.kind == TRANSACTIONS:
            flag = v.p_alive < ltv.at_risk_p_alive
        else:
            flag = v.years_to_decision * YEAR_DAYS <= ltv.at_risk_renewal_days
        frame = v.loc[flag, ["p_churn", "clv"]].copy()
    frame["ltv_at_risk"] = frame.p_churn * frame.clv
    frame = frame.rename_axis("customer_id").reset_index()
    return frame.sort_values(["ltv_at_risk", "customer_id"], ascending=[False, True]).reset_index(
        drop=True
    )


# --------------------------------------------------------------------------------------
# The whole chapter


@dataclass
class Review:
    """Everything chapter 3 computes, for the notebook to show and record.

    ``start`` and ``now`` value everyone the model can at the period start and now (the day
    after ``as_of``); ``current`` is ``now.values`` cut to the customers still active under
    the churn definition (churned customers' residual value was counted as lost);
    ``not_valued`` lists active customers the model cannot value (no purchase, or no running
    contract, before now). ``check`` is the model check on the review period.
    """

    kind: str
    fallback: str | None
    model: str
    snapshots: list[pd.Timestamp]
    start: Valuation
    now: Valuation
    current: pd.DataFrame
    ledger: pd.DataFrame
    loss: LostSummary
    check: pd.DataFrame
    valuations: int
    not_valued: list[str] = field(default_factory=list)


class Valuer:
    """Values customers at snapshots, fitting each snapshot's models once (cached).

    Between the full valuations (period start, now) only the customers asked for are valued:
    the model is fitted on everyone, the 36-month CLV sum is the costly part.
    ``Valuer(ds, kind)(snapshot, ids)`` is the ``value`` callable :func:`period_ledger` wants.
    Given the review's ``snapshots``, the transaction summaries at all of them come from one
    pass over the orders (:class:`fupan.models.ltv.data.OrderHistory`, equal to
    :func:`transaction_summary` at each date); other dates are summarised one by one.
    """

    def __init__(self, ds: Dataset, kind: str, snapshots: Sequence[pd.Timestamp] = ()):
        self.ds = ds
        self.kind = kind
        self.ltv = ds.params.ltv
        self._fits: dict[pd.Timestamp, Any] = {}
        self._period = contract_period_years(ds) if kind == CONTRACTS else None
        self.full: dict[pd.Timestamp, Valuation] = {}
        self.summaries: dict[pd.Timestamp, pd.DataFrame] = {}
        self._dates = {_ts(s).date() for s in snapshots}
        self._history: OrderHistory | None = None

    def summary(self, snapshot: Any, holdout_end: Any = None) -> pd.DataFrame:
        """:func:`transaction_summary` ``(ds, snapshot, ltv, holdout_end)``."""
        dates = {_ts(snapshot).date()} | (
            set() if holdout_end is None else {_ts(holdout_end).date()}
        )
        if not dates <= self._dates:
            return transaction_summary(self.ds, snapshot, self.ltv, holdout_end)
        if self._history is None:
            orders = self.ds["orders"].select("customer_id", "order_date", "amount")
            self._history = OrderHistory(orders, sorted(self._dates), freq=self.ltv.time_unit)
        if holdout_end is None:
            return self._history.summary(_ts(snapshot).date())
        return self._history.summary(_ts(holdout_end).date(), calibration_end=_ts(snapshot).date())

    def fit(self, snapshot: pd.Timestamp, summary: pd.DataFrame | None = None) -> Any:
        if snapshot not in self._fits:
            if self.kind == TRANSACTIONS:
                if summary is None:
                    summary = self.summary(snapshot)
                self.summaries[snapshot] = summary
                self._fits[snapshot] = fit_transactions(summary, self.ltv)
            else:
                self._fits[snapshot] = value_contracts(
                    self.ds, snapshot, self.ltv, period_years=self._period
                )
        return self._fits[snapshot]

    def valuation(self, snapshot: pd.Timestamp) -> Valuation:
        """Every customer the model can value at ``snapshot``.

        Computed once per run (:mod:`fupan.io.cache`): chapters 4 and 5 quote chapter 3's CLV.
        """

        def compute() -> Valuation:
            fitted = self.fit(snapshot)
            if self.kind == TRANSACTIONS:
                return value_transactions(fitted, self.summaries[snapshot], self.ltv, snapshot)
            return fitted

        if snapshot not in self.full:
            self.full[snapshot] = cache.memo(
                self.ds, "clv.valuation", [self.kind, pd.Timestamp(snapshot).isoformat()], compute
            )
        return self.full[snapshot]

    def __call__(self, snapshot: pd.Timestamp, ids: list[str]) -> pd.Series:
        if snapshot in self.full or self.kind == CONTRACTS:
            return self.valuation(snapshot).values.clv
        fitted = self.fit(snapshot)
        summary = self.summaries[snapshot]
        part = summary[engine.isin(summary.index, ids)]
        if part.empty:
            return pd.Series(dtype=float)
        return value_transactions(fitted, part, self.ltv, snapshot).values.clv


def review(ds: Dataset, status: pd.DataFrame) -> Review:
    """Value the base at the period start and now, and the loss to churn in between.

    Parameters
    ----------
    ds : the run's dataset (``ds.params`` gives the period, business model and ``ltv``).
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of``.
    """
    # Hundreds of small optimiser runs: BLAS threads only add contention on a busy machine.
    with threadpool_limits(limits=1):
        return _review(ds, status)


def _review(ds: Dataset, status: pd.DataFrame) -> Review:
    params = ds.params
    ltv = params.ltv
    kind, fallback = choose_model(params, ds)
    snaps = snapshot_dates(params.period_start, params.as_of, ltv.snapshot_months)
    start, now = snaps[0], snaps[-1]
    valuer = Valuer(ds, kind, snaps)
    if kind == TRANSACTIONS:
        # the period-start summary with the review period as holdout
        cal = valuer.summary(start, holdout_end=now)
        models = valuer.fit(start, cal[["frequency", "recency", "T", "monetary"]])
        check = holdout_check(models, cal, ltv.holdout_max_freq)
    start_val = valuer.valuation(start)
    now_val = valuer.valuation(now)
    if kind == CONTRACTS:
        check = renewal_check(
            start_val, contract_chains(ds, now), params.as_of, params.churn_definition.grace_days
        )
    ledger = period_ledger(status, snaps, valuer)
    active = pd.Index(status.customer_id[~status.churned])
    values = now_val.values
    return Review(
        kind=kind,
        fallback=fallback,
        model=model_name(kind, ltv),
        snapshots=snaps,
        start=start_val,
        now=now_val,
        current=values[engine.isin(values.index, active)],
        ledger=ledger,
        loss=summarise_loss(ledger),
        check=check,
        valuations=len(valuer._fits),
        not_valued=sorted(set(active[~engine.isin(active, values.index)])),
    )


def model_parameters(val: Valuation) -> pd.DataFrame:
    """The fitted parameters of a valuation's models: ``model, segment, param, estimate, se,
    ci_low, ci_high``."""
    rows = []
    if val.kind == TRANSACTIONS:
        for name in ("transactions", "spend"):
            m = val.models[name]
            label = {"BetaGeo": "bgnbd", "ParetoNBD": "pareto_nbd", "GammaGamma": "gamma_gamma"}[
                type(m).__name__
            ]
            rows.append(m.summary_.assign(model=label, segment=POOLED))
    else:
        for seg, m in val.models["sbg"].items():
            rows.append(m.summary_.assign(model="sbg", segment=seg))
    out = pd.concat(rows, ignore_index=True)
    return out[["model", "segment", "param", "estimate", "se", "ci_low", "ci_high"]]


def params_record(val: Valuation) -> dict[str, Any]:
    """``ltv.params``: estimates (and standard errors) by model and segment."""
    table = model_parameters(val)
    out: dict[str, Any] = {}
    for (model, seg), g in table.groupby(["model", "segment"], sort=False):
        entry = {r.param: float(r.estimate) for r in g.itertuples()}
        entry["se"] = {r.param: float(r.se) for r in g.itertuples()}
        if model == "sbg":
            out.setdefault("sbg", {})[seg] = entry
        else:
            out[model] = entry
    return out


def clv_by_group(
    values: pd.DataFrame, attrs: pd.DataFrame, by: str, order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Customers, total, mean, median and share of CLV by a customer attribute."""
    df = (
        values[["clv"]]
        .rename_axis("customer_id")
        .reset_index()
        .merge(attrs[["customer_id", by]], on="customer_id", how="left")
    )
    df[by] = df[by].astype(object).where(df[by].notna(), UNRECORDED)
    g = df.groupby(by).clv.agg(customers="size", total="sum", mean="mean", median="median")
    total = float(df.clv.sum())
    g["share"] = g.total / total if total > 0 else np.nan
    g = g.reset_index().rename(columns={by: "group"})
    g = g.sort_values("total", ascending=False, kind="stable")
    if order is not None:
        rank = {x: i for i, x in enumerate(order)}
        g = g.assign(_o=g.group.map(lambda x: rank.get(x, len(rank)))).sort_values(
            "_o", kind="stable"
        )
        g = g.drop(columns="_o")
    return g.reset_index(drop=True)


#: Cohort units, coarsest first: the first that splits the customers into two or more
#: cohorts is used (a base acquired within one year is compared by quarter, then month).
COHORT_UNITS = ("year", "quarter", "month")


def cohort_unit(acquired: pd.Series) -> str | None:
    """The coarsest unit of :data:`COHORT_UNITS` giving two or more acquisition cohorts, or
    None when every customer was acquired in the same month (no cohort to compare)."""
    when = pd.to_datetime(acquired).dropna()
    for unit in COHORT_UNITS:
        if _cohort_labels(when, unit).nunique() > 1:
            return unit
    return None


def _cohort_labels(when: pd.Series, unit: str) -> pd.Series:
    if unit == "year":
        return when.dt.year.astype(str)
    if unit == "quarter":
        return when.dt.year.astype(str) + "-Q" + when.dt.quarter.astype(str)
    return when.dt.strftime("%Y-%m")


def customer_attributes(ds: Dataset, status: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: name, tier, industry, acquisition cohort and churn details.

    The cohort is the acquisition year, or quarter or month when a year holds everyone
    (:func:`cohort_unit`, kept in ``attrs["cohort_unit"]``; None when all customers were
    acquired in one month). Columns the contract allows but the data lacks are None here;
    tables shown or exported drop them (:func:`fupan.io.exports.drop_unsupplied`).
    """
    cust = ds["customers"]
    cols = [c for c in ("customer_id", "customer_name", "tier", "industry") if c in cust.columns]
    df = engine.to_pandas(cust.select(cols))
    st = status[["customer_id", "acquired_at", "reason", "competitor", "lost_value"]]
    df = df.merge(st, on="customer_id", how="left")
    when = pd.to_datetime(df.acquired_at)
    unit = cohort_unit(when)
    df["cohort"] = None
    if unit is not None:
        df.loc[when.notna(), "cohort"] = _cohort_labels(when[when.notna()], unit)
    if "customer_name" not in df.columns:
        df["customer_name"] = None
    if "industry" not in df.columns:
        df["industry"] = None
    out = df.drop(columns="acquired_at")
    out.attrs["cohort_unit"] = unit
    return out


def breakdown_gap(ds: Dataset, table: pd.DataFrame, column: str | None = None) -> str | None:
    """Why a breakdown of value by groups cannot be shown, or None when it can.

    ``not_supplied``: the customers column was not in the data (:func:`fupan.io.exports.supplied`);
    ``one_group``: every valued customer is in one group, so a comparison across groups (and
    any "highest" or "largest") would be over a single group; ``no_loss``: nothing was lost.
    ``table`` is :func:`loss_by` or :func:`clv_by_group` output.
    """
    from fupan.io import exports

    if column is not None and not exports.supplied(ds, "customers", column):
        return "not_supplied"
    base = "base_clv" if "base_clv" in table.columns else "total"
    groups = table[(table[base] > 0) & (table.group != UNRECORDED)]
    if len(groups) < 2:
        return "one_group"
    if "lost_ltv" in table.columns and not table.lost_ltv.sum() > 0:
        return "no_loss"
    return None
