"""The metric catalogue: one definition and one function per headline metric.

A headline metric is a figure a board reads on more than one slide: annual churn, revenue
retention, top-N renewal, service levels, touch coverage. Each has one entry here (id,
unit, direction, where its target comes from, the results.json keys that quote it) and its
words in ``locale/metrics.yaml`` (``metric.<id>.name``, ``.formula``, ``.population``,
``.window``). The diagnosis (chapter 1), the KPI tracking (chapter 5), the executive
summary and the simulation's baselines quote the same function, so two slides showing the
same metric at the same date show the same number; :mod:`fupan.report.gate` checks it before the
deck is written.

Where two definitions are really needed they have two ids whose names say what differs:
service levels over the review period (the diagnosis) and over the report month (the
scorecard); top-N renewal of contracts (contractual data) and its repurchase stand-in
(orders only).

The KPI chapter computes a trend of some 30 month ends at once in the query engine; its
revenue-retention and touch-coverage series apply this module's population rules and
formula (:func:`retention_base_start`, :func:`retention_sums`, :func:`touch_window`) to
per-customer sums it gets in one pass, and a test holds them equal to the point functions
here at several dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd

from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes
from fupan.measures.segments import (
    as_date,
    customer_features_as_of,
    trailing_start,
    years_before,
)

Unit = Literal["pct", "days"]
Direction = Literal["higher", "lower"]
# The windows a quote can be taken over (see :func:`fupan.report.gate.quotes`).
Window = Literal["review", "trailing_year", "report_month", "coverage"]


@dataclass(frozen=True)
class Metric:
    """One headline metric of the catalogue.

    Attributes
    ----------
    id : identifier; its words are ``metric.<id>.name / .formula / .population / .window``
        in ``locale/metrics.yaml``.
    unit : ``pct`` (a share 0-1) or ``days``.
    direction : ``higher`` or ``lower`` is good.
    target : where its target or benchmark comes from (a params path).
    function : the function of this module (or of the package) that computes it for a date.
    quotes : the results.json keys that hold it, each with the window it is taken over.
    """

    id: str
    unit: Unit
    direction: Direction
    target: str
    function: str
    quotes: tuple[tuple[str, Window], ...] = ()


CATALOGUE: dict[str, Metric] = {
    m.id: m
    for m in (
        Metric(
            "annual_churn",
            "pct",
            "lower",
            "benchmarks.churn_rate",
            "fupan.measures.metrics.annual_churn",
            (
                ("diagnosis.churn_rate", "review"),
                ("kpi.values.churn_rate_t12", "trailing_year"),
                ("simulation.model.observed_annual_churn", "trailing_year"),
            ),
        ),
        Metric(
            "core_churn",
            "pct",
            "lower",
            "benchmarks.core_churn_rate",
            "fupan.chapters.diagnosis.headline_churn",
            (("diagnosis.core_churn_rate", "review"),),
        ),
        Metric(
            "nrr",
            "pct",
            "higher",
            "benchmarks.net_revenue_retention",
            "fupan.measures.metrics.revenue_retention",
            (
                ("diagnosis.net_revenue_retention", "trailing_year"),
                ("kpi.values.nrr", "trailing_year"),
            ),
        ),
        Metric(
            "grr",
            "pct",
            "higher",
            "benchmarks.kpi_targets.grr",
            "fupan.measures.metrics.revenue_retention",
            (
                ("diagnosis.gross_revenue_retention", "trailing_year"),
                ("kpi.values.grr", "trailing_year"),
            ),
        ),
        Metric(
            "top_n_renewal",
            "pct",
            "higher",
            "benchmarks.top_n_renewal_target",
            "fupan.measures.metrics.top_n_renewal",
            (
                ("diagnosis.top_n_renewal_rate", "review"),
                ("kpi.values.renewal_rate_top_n", "trailing_year"),
            ),
        ),
        Metric(
            "top_n_repurchase",
            "pct",
            "higher",
            "benchmarks.top_n_renewal_target",
            "fupan.measures.metrics.top_n_renewal",
            (("diagnosis.top_n_renewal_rate", "review"),),
        ),
        Metric(
            "sla_compliance_period",
            "pct",
            "higher",
            "benchmarks.sla_first_response_days",
            "fupan.chapters.service.service_levels",
            (("diagnosis.sla_compliance", "review"),),
        ),
        Metric(
            "sla_compliance_month",
            "pct",
            "higher",
            "benchmarks.kpi_targets.sla_compliance",
            "fupan.chapters.kpi.ticket_kpis",
            (("kpi.values.sla_compliance", "report_month"),),
        ),
        Metric(
            "first_response_period",
            "days",
            "lower",
            "benchmarks.first_response_days",
            "fupan.chapters.service.service_levels",
            (("diagnosis.median_first_response_days", "review"),),
        ),
        Metric(
            "first_response_month",
            "days",
            "lower",
            "benchmarks.kpi_targets.first_response_median",
            "fupan.chapters.kpi.ticket_kpis",
            (("kpi.values.first_response_median", "report_month"),),
        ),
        Metric(
            "touch_coverage",
            "pct",
            "higher",
            "benchmarks.kpi_targets.touch_coverage",
            "fupan.measures.metrics.touch_coverage",
            (
                ("diagnosis.touch_coverage", "coverage"),
                ("kpi.values.touch_coverage", "coverage"),
            ),
        ),
    )
}

# The populations different slides count, for the glossary (``metric.population.<key>``).
POPULATIONS = (
    "churned_in_period",
    "churned_by_as_of",
    "new_churned_in_period",
    "at_start",
    "active",
    "at_risk_list",
    "retention_cohort",
)


# --------------------------------------------------------------------------------------
# Churn


def churn(status: pd.DataFrame, start: dt.date, end: dt.date) -> dict[str, float]:
    """Churn in ``(start, end]`` among customers at risk at ``start`` (with a Wilson interval).

    ``status`` is :func:`fupan.measures.outcomes.churn_status` at ``end`` or later. Returns ``rate,
    at_risk, churned, ci_low, ci_high`` (rate NaN when nobody was at risk).
    """
    row = outcomes.churn_rate(status, start, end).iloc[0]
    return {
        "rate": float(row.rate),
        "at_risk": int(row.at_risk),
        "churned": int(row.churned),
        "ci_low": float(row.ci_low),
        "ci_high": float(row.ci_high),
    }


def annual_churn(status: pd.DataFrame, end: str | dt.date | pd.Timestamp) -> dict[str, float]:
    """Annual churn at ``end``: churn in the year ``(end - 1 year, end]`` (:func:`churn`).

    The diagnosis's review period is this year when ``period_start`` is left at its
    default; the KPI's trailing-12-month churn and the simulation's observed baseline are
    this year at their date.
    """
    end = as_date(end)
    return churn(status, years_before(end, 1), end)


# --------------------------------------------------------------------------------------
# Revenue retention


def retention_base_start(as_of: str | dt.date) -> dt.date:
    """First day of the base year of revenue retention at ``as_of``: two years before it.

    The base year is ``[retention_base_start, trailing_start(as_of))``; only customers
    acquired before it began count, so every base year is complete.
    """
    return trailing_start(trailing_start(as_date(as_of)) - dt.timedelta(days=1))


def in_retention_cohort(acquired_at: Any, as_of: str | dt.date) -> np.ndarray:
    """Whether each acquisition date (datetime64 values) falls before the base year began."""
    start = np.datetime64(retention_base_start(as_of), "D")
    return np.asarray(acquired_at).astype("datetime64[D]") < start


def retention_history_ok(first_order: Any, as_of: str | dt.date) -> bool:
    """Whether the orders reach back to the base year (within a month of its start).

    Without it the base year's revenue is understated and retention cannot be judged.
    """
    if first_order is None or pd.isna(first_order):
        return False
    start = retention_base_start(as_of)
    return pd.Timestamp(first_order) <= pd.Timestamp(start) + pd.Timedelta(days=30)


def retention_sums(now: np.ndarray, then: np.ndarray) -> dict[str, Any]:
    """The sums revenue retention rests on, over the cohort's customers.

    ``now`` is each customer's net revenue in the trailing year, ``then`` in the base year
    (floats or exact integer units). Customers without base revenue are left out (their
    revenue is new, not retained); negative revenue (refunds) counts as 0.

    Returns
    -------
    ``customers`` (with base revenue), ``base`` (sum of then), ``net`` (sum of now),
    ``kept`` (sum of min(now, then)): NRR = net / base, GRR = kept / base.
    """
    now, then = np.asarray(now), np.asarray(then)
    has = then > 0
    then_b = then[has]
    now_b = np.maximum(now[has], 0)
    return {
        "customers": int(has.sum()),
        "base": then_b.sum(),
        "net": now_b.sum(),
        "kept": np.minimum(now_b, then_b).sum(),
    }


def retention_ratios(sums: dict[str, Any]) -> tuple[float | None, float | None]:
    """(GRR, NRR) from :func:`retention_sums` (None without base revenue)."""
    base = float(sums["base"])
    if not base > 0:
        return None, None
    return float(sums["kept"]) / base, float(sums["net"]) / base


def revenue_retention(ds: Dataset, as_of: str | dt.date | None = None) -> dict[str, Any]:
    """Gross and net revenue retention at ``as_of``, trailing year vs the year before.

    Population: customers acquired before the base year began (a full base year) with
    base-year revenue. NRR = Σ max(now, 0) / Σ then; GRR = Σ min(max(now, 0), then) / Σ then.

    Returns
    -------
    ``grr, nrr`` (None when it cannot be judged), ``customers, base, net, kept`` and
    ``reason`` (``history`` when the orders do not reach the base year, ``no_base`` when
    no cohort customer had base revenue, else None).
    """
    cut = as_date(as_of if as_of is not None else ds.params.as_of)
    feat = customer_features_as_of(ds, cut, engagement=False)
    return retention_from_features(feat, cut)


def retention_from_features(features: pd.DataFrame, as_of: str | dt.date) -> dict[str, Any]:
    """:func:`revenue_retention` from :func:`fupan.measures.segments.customer_features_as_of` at ``as_of``."""
    cohort = features[in_retention_cohort(features.acquired_at.to_numpy(), as_of)]
    sums = retention_sums(
        cohort.spend_12m.fillna(0).to_numpy(float), cohort.spend_prior_12m.fillna(0).to_numpy(float)
    )
    first = features.first_order.min() if "first_order" in features else None
    out: dict[str, Any] = {k: (float(v) if k != "customers" else v) for k, v in sums.items()} | {
        "grr": None,
        "nrr": None,
        "reason": None,
    }
    if not retention_history_ok(first, as_of):
        out["reason"] = "history"
    elif sums["customers"] == 0 or not sums["base"] > 0:
        out["reason"] = "no_base"
    else:
        out["grr"], out["nrr"] = retention_ratios(sums)
    return out


# --------------------------------------------------------------------------------------
# Top-N renewal


def top_n_customers(ds: Dataset, status: pd.DataFrame, start: dt.date, n: int) -> pd.DataFrame:
    """The top-N customers when a window begins on ``start``.

    Customers acquired and not churned by the day before ``start``, ranked by net revenue in
    the year up to that day (ties by customer id); only positive revenue ranks.
    """
    cut = as_date(start) - dt.timedelta(days=1)
    lo = trailing_start(cut)
    o = ds["orders"]
    o = o.filter((o.order_date >= ibis.literal(lo)) & (o.order_date <= ibis.literal(cut)))
    rev = o.group_by("customer_id").aggregate(revenue=o.amount.sum())
    rev = rev.filter(rev.revenue > 0).order_by([ibis.desc("revenue"), "customer_id"])
    ts = pd.Timestamp(cut)
    alive = status[(status.acquired_at <= ts) & ~(status.churned_at <= ts)]
    cols = ["customer_id", *(["tier"] if "tier" in alive.columns else [])]
    # The ranking is a total order, so the first n alive customers of its head are the first
    # n of the whole: fetch a head a few times n long (growing it when too many in it were
    # lost) instead of every customer's revenue, once per month of a KPI trend.
    limit = max(4 * n, 16)
    while True:
        head = engine.to_pandas(rev.limit(limit))
        top = alive[cols].merge(head, on="customer_id")
        if len(top) >= n or len(head) < limit:
            break
        limit *= 4
    top = top.sort_values(["revenue", "customer_id"], ascending=[False, True]).head(n)
    return top.reset_index(drop=True).assign(rank=lambda d: np.arange(1, len(d) + 1))


def _contract_renewals(
    ds: Dataset, ids: list[str], start: dt.date, end: dt.date, grace: int
) -> pd.DataFrame:
    """Per customer of ``ids``: whether their latest contract ending in ``[start, end]`` and
    decided by ``end`` was renewed. Only contracts started by ``end`` are seen (as of ``end``).

    A contract is renewed when a contract started by ``end`` names it in ``renewal_of``, or
    a new contract of the customer started after it and no later than ``grace`` days after
    its end. It is decided when renewed or when its grace ran out by ``end``; an undecided
    contract is pending and left out.
    """
    k = ds["contracts"]
    has_link = "renewal_of" in k.columns
    cols = ["contract_id", "customer_id", "start_date", "end_date"] + (
        ["renewal_of"] if has_link else []
    )
    k = k.filter(k.customer_id.isin(ids) & (k.start_date <= ibis.literal(end))).select(cols)
    k = engine.to_pandas(k)
    if not has_link:
        k["renewal_of"] = None
    for col in ("start_date", "end_date"):
        k[col] = pd.to_datetime(k[col])
    linked = set(k.renewal_of.dropna())
    s, e, g = pd.Timestamp(start), pd.Timestamp(end), pd.Timedelta(days=grace)
    due = k[(k.end_date >= s) & (k.end_date <= e)].copy()
    if due.empty:
        return pd.DataFrame({"customer_id": pd.Series(dtype=object), "renewed": []})
    by_customer = dict(tuple(k.groupby("customer_id")))

    def renewed(row: pd.Series) -> bool:
        if row.contract_id in linked:
            return True
        own = by_customer[row.customer_id]
        own = own[own.contract_id != row.contract_id]
        later = (own.start_date > row.start_date) & (own.start_date <= row.end_date + g)
        return bool(later.any())

    due["renewed"] = due.apply(renewed, axis=1)
    due = due[due.renewed | (due.end_date + g <= e)]
    latest = due.sort_values(["customer_id", "end_date"]).groupby("customer_id").tail(1)
    return latest[["customer_id", "renewed"]]


def top_n_renewal(
    ds: Dataset,
    status: pd.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
    n: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Renewal of the top-N customers over the window ``[start, end]``, per customer.

    Top-N: :func:`top_n_customers` at ``start``. With ``contracts`` (metric
    ``top_n_renewal``): a top-N customer is due when a contract of theirs ended in the
    window and was decided by ``end``; their latest such contract decides whether they
    renewed (:func:`_contract_renewals`). Without ``contracts`` (``top_n_repurchase``): a
    renewal is a repeat purchase, an order in the window.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status` at ``end`` (or later).
    start, end : the window's first and last day.
    n : how many customers (default ``diagnosis.top_n``).

    Returns
    -------
    (summary ``metric, basis, n, due, renewed, rate, ci_low, ci_high``, one row per top-N
    customer with ``rank, revenue, due, renewed``)
    """
    params = ds.params
    n = int(n or params.diagnosis.top_n)
    start, end = as_date(start), as_date(end)
    top = top_n_customers(ds, status, start, n)
    if ds.has("contracts"):
        basis, metric = "contract", "top_n_renewal"
        got = _contract_renewals(
            ds, list(top.customer_id), start, end, params.churn_definition.grace_days
        )
        per = top.merge(got, on="customer_id", how="left")
        per["due"] = per.renewed.notna()
        per["renewed"] = per.renewed.fillna(False).astype(bool)
    else:
        basis, metric = "repurchase", "top_n_repurchase"
        o = ds["orders"]
        o = o.filter((o.order_date >= ibis.literal(start)) & (o.order_date <= ibis.literal(end)))
        o = o.filter(o.customer_id.isin(list(top.customer_id)))
        bought = set(engine.to_pandas(o.select("customer_id").distinct()).customer_id)
        per = top.assign(due=True, renewed=top.customer_id.isin(bought))
    n_due, n_ren = int(per.due.sum()), int((per.due & per.renewed).sum())
    rate, lo, hi = outcomes.rate_with_ci(n_ren, n_due)
    summary = {
        "metric": metric,
        "basis": basis,
        "n": len(per),
        "due": n_due,
        "renewed": n_ren,
        "rate": rate,
        "ci_low": lo,
        "ci_high": hi,
    }
    return summary, per


# --------------------------------------------------------------------------------------
# Touch coverage


def touch_window(end: str | dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The coverage window ``(lo, end]`` of ``days`` days ending on ``end``."""
    end = as_date(end)
    return end - dt.timedelta(days=int(days)), end


def touch_coverage(
    ds: Dataset, status: pd.DataFrame, end: str | dt.date, days: int | None = None
) -> dict[str, Any]:
    """Share of active customers touched in the ``days`` days up to ``end``.

    Population: customers acquired by ``end`` and not churned by then (``status`` is
    :func:`fupan.measures.outcomes.churn_status` at ``end``). Touched: a touch dated in
    ``(end - days, end]`` and not before the customer's acquisition.

    Returns ``customers, touched, coverage`` (coverage None without active customers).
    """
    days = int(days if days is not None else ds.params.diagnosis.coverage_days)
    lo, hi = touch_window(end, days)
    e = pd.Timestamp(hi)
    active = status[(status.acquired_at <= e) & ~(status.churned_at <= e)]
    t = ds["touches"]
    c = ds["customers"].select(cid="customer_id", acq="acquired_at")
    day = t.touched_at.date()
    t = t.filter((day > ibis.literal(lo)) & (day <= ibis.literal(hi)))
    j = t.join(c, t.customer_id == c.cid)
    j = j.filter(j.touched_at.date() >= j.acq)
    touched = engine.to_pandas(j.select("customer_id").distinct()).customer_id
    hit = int(engine.isin(active.customer_id, touched).sum())
    n = len(active)
    return {"customers": n, "touched": hit, "coverage": hit / n if n else None}
