"""Service response against the SLA: first response and resolution by tier and priority.

Definitions (all tickets opened in a window, by default the review period):

* first-response time = ``first_response_at - opened_at`` in days, for answered tickets;
* resolution time = ``resolved_at - opened_at`` in days, for resolved tickets;
* the SLA of a ticket is the first-response target of its customer's assigned tier
  (``benchmarks.sla_first_response_days``; tiers without one use
  ``benchmarks.first_response_days``);
* a ticket is *due* once it is answered or its SLA deadline has passed by ``as_of``
  without an answer; SLA compliance = tickets answered within the SLA / tickets due. A
  ticket never answered counts against compliance once its deadline has passed;
* unanswered = no ``first_response_at`` by ``as_of``.

Every figure is aggregated in the query engine; pandas receives one row per group.
"""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from fupan.core.params import Params
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures.segments import as_date

DAY = 86_400.0


def _days(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    return (later.epoch_seconds() - earlier.epoch_seconds()) / DAY


def sla_days(params: Params) -> dict[str, float]:
    """First-response SLA in days for every tier of ``params.tiers.order``."""
    b = params.benchmarks
    return {
        t: float(b.sla_first_response_days.get(t, b.first_response_days))
        for t in params.tiers.order
    }


def ticket_table(
    ds: Dataset, start: str | dt.date | None = None, end: str | dt.date | None = None
) -> ir.Table:
    """Tickets opened in [start, end] with tier, priority, times in days and SLA status (Ibis)."""
    params = ds.params
    s = as_date(start if start is not None else params.period_start)
    e = as_date(end if end is not None else params.as_of)
    cut = ibis.literal(pd.Timestamp(params.as_of) + pd.Timedelta(days=1))  # end of the as_of day
    t = ds["tickets"]
    t = t.filter((t.opened_at.date() >= ibis.literal(s)) & (t.opened_at.date() <= ibis.literal(e)))
    c = ds["customers"].select("customer_id", "tier")
    t = t.inner_join(c, "customer_id")
    sla_map = sla_days(params)
    default = float(params.benchmarks.first_response_days)
    sla = t.tier.substitute(sla_map, else_=ibis.literal(default)).cast("float64")
    fr = _days(t.first_response_at, t.opened_at)
    res = _days(t.resolved_at, t.opened_at)
    answered = t.first_response_at.notnull()
    deadline_passed = (t.opened_at.epoch_seconds() + sla * DAY) <= cut.epoch_seconds()
    return t.mutate(
        sla_days=sla,
        first_response_days=fr,
        resolution_days=res,
        answered=answered,
        resolved=t.resolved_at.notnull(),
        due=answered | deadline_passed,
        within_sla=answered & (fr <= sla),
    )


def _aggregate(t: ir.Table, by: list[str]) -> pd.DataFrame:
    metrics = dict(
        tickets=t.count(),
        answered=t.answered.sum(),
        unanswered=(~t.answered).sum(),
        resolved=t.resolved.sum(),
        due=t.due.sum(),
        within_sla=t.within_sla.sum(),
        sla_days=t.sla_days.max(),
        median_first_response_days=t.first_response_days.median(),
        p90_first_response_days=t.first_response_days.quantile(0.9),
        mean_first_response_days=t.first_response_days.mean(),
        median_resolution_days=t.resolution_days.median(),
        p90_resolution_days=t.resolution_days.quantile(0.9),
    )
    df = engine.to_pandas(t.group_by(by).aggregate(**metrics) if by else t.aggregate(**metrics))
    for col in ("tickets", "answered", "unanswered", "resolved", "due", "within_sla"):
        df[col] = df[col].fillna(0).astype(int)
    df["sla_compliance"] = np.where(df.due > 0, df.within_sla / df.due.where(df.due > 0, 1), np.nan)
    df["unanswered_share"] = np.where(
        df.tickets > 0, df.unanswered / df.tickets.where(df.tickets > 0, 1), np.nan
    )
    return df


def service_levels(
    ds: Dataset,
    by: list[str] | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
) -> pd.DataFrame:
    """First response and resolution vs SLA, overall (``by=None``) or by columns.

    ``by`` may name ``tier``, ``priority`` or ``category``. Rows follow the tier order of the
    params and the contract's priority order.

    Returns
    -------
    DataFrame with ``tickets, answered, unanswered, unanswered_share, resolved, due,
    within_sla, sla_compliance, sla_days`` (the largest SLA in the group),
    ``median_/p90_/mean_first_response_days, median_/p90_resolution_days``.
    """
    t = ticket_table(ds, start, end)
    df = _aggregate(t, by or [])
    if by:
        order = {"tier": ds.params.tiers.order, "priority": ["urgent", "high", "normal", "low"]}
        keys = []
        for col in by:
            ranks = {v: i for i, v in enumerate(order.get(col, []))}
            key = f"_{col}_rank"
            df[key] = df[col].map(ranks).fillna(len(ranks))
            keys += [key, col]
        df = (
            df.sort_values(keys)
            .drop(columns=[k for k in keys if k.startswith("_")])
            .reset_index(drop=True)
        )
    return df


def customer_service(
    ds: Dataset, start: str | dt.date | None = None, end: str | dt.date | None = None
) -> pd.DataFrame:
    """One row per customer with tickets in the window: tickets, breaches (due and not within SLA)."""
    t = ticket_table(ds, start, end)
    agg = t.group_by("customer_id").aggregate(
        tickets=t.count(),
        breaches=(t.due & ~t.within_sla).sum(),
        unanswered=(~t.answered).sum(),
        median_first_response_days=t.first_response_days.median(),
    )
    df = engine.to_pandas(agg.order_by("customer_id"))
    for col in ("tickets", "breaches", "unanswered"):
        df[col] = df[col].fillna(0).astype(int)
    return df


def backlog_trend(ds: Dataset, months: int = 12) -> pd.DataFrame:
    """Open and unanswered tickets at each month end over the last ``months`` months and as_of.

    A ticket is open at a date when it was opened by then and not yet resolved; unanswered
    when it has no first response by then.
    """
    as_of = pd.Timestamp(ds.params.as_of)
    ends = sorted({*(as_of - pd.offsets.MonthEnd(i) for i in range(1, months + 1)), as_of})
    cal = ibis.memtable({"date": [e.date() for e in ends]}).mutate(
        cut=lambda c: c["date"].cast("timestamp") + ibis.interval(days=1)
    )
    t = ds["tickets"].select("ticket_id", "opened_at", "first_response_at", "resolved_at")
    j = t.cross_join(cal)
    j = j.filter(j.opened_at < j.cut)
    out = engine.to_pandas(
        j.group_by("date")
        .aggregate(
            open=(j.resolved_at.isnull() | (j.resolved_at >= j.cut)).sum(),
            unanswered=(j.first_response_at.isnull() | (j.first_response_at >= j.cut)).sum(),
        )
        .order_by("date")
    )
    out["date"] = pd.to_datetime(out["date"])
    out = pd.DataFrame({"date": pd.to_datetime(ends)}).merge(out, on="date", how="left").fillna(0)
    out[["open", "unanswered"]] = out[["open", "unanswered"]].astype(int)
    return out
