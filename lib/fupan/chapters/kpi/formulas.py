"""KPI formulas. Each takes the context and the month windows and returns rows
(month, kpi, value, n, reason); ``n`` is the denominator the value rests on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from fupan.chapters.kpi.context import _by_month, _codes, _Ctx, _na, _val
from fupan.chapters.kpi.months import Window, _grid
from fupan.io import engine
from fupan.measures import metrics


def churn_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Monthly and trailing-12-month churn (the catalogue's :func:`fupan.measures.metrics.churn`).

    monthly: customers active at the previous month end who churned in the month / those
    customers. trailing-12: :func:`fupan.measures.metrics.annual_churn` at the month end.
    """
    rows = []
    for w in windows:
        # the two columns the rate reads: its at-risk subset is then a small copy
        status = ctx.status(w.end)[["acquired_at", "churned_at"]]
        m = metrics.churn(status, w.prev_end, w.end)
        y = metrics.annual_churn(status, w.end)
        rows.append(_val(w.month, "churn_rate_monthly", m["rate"], m["at_risk"]))
        rows.append(_val(w.month, "churn_rate_t12", y["rate"], y["at_risk"]))
    return rows


def winback_kpi(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Customers lost as of twelve months before the month end who ordered again since / the lost."""
    rows = []
    for w in windows:
        before = ctx.status(w.y1)
        lost = before.customer_id[before.churned.to_numpy()]
        now = ctx.status(w.end)
        ordered = now.customer_id[(now.last_order > pd.Timestamp(w.y1)).to_numpy()]
        back = int(engine.isin(lost, ordered).sum())
        rows.append(
            _val(w.month, "winback_rate", back / len(lost) if len(lost) else None, len(lost))
        )
    return rows


_EXACT = "decimal(38, 4)"


def _customer_revenue(ctx: _Ctx, grid: ir.Table) -> ir.Table:
    """Per (month, customer): purchase days and net revenue in the trailing and prior 12 months."""
    o = ctx.events("orders")
    j = o.join(grid, [o.order_date > grid.m_y2, o.order_date <= grid.m_end, o.acq <= grid.m_end])
    cur = j.order_date > j.m_y1
    day = ibis.ifelse(cur & (j.amount >= 0), j.order_date, ibis.null().cast("date"))
    # Exact decimal sums: float sums vary in their last bits with thread scheduling, and a
    # KPI history must be identical when a month is re-run.
    amt, zero = j.amount.cast(_EXACT), ibis.literal(0).cast(_EXACT)
    return j.group_by(["m_month", "customer_id"]).aggregate(
        full=(j.acq <= j.m_y2).any(),  # acquired before the base year began
        days_cur=day.nunique(),
        rev_cur=ibis.ifelse(cur, amt, zero).sum(),
        rev_prev=ibis.ifelse(cur, zero, amt).sum(),
    )


def _revenue_by_query(ctx: _Ctx, windows: list[Window]) -> dict[str, dict[str, Any]]:
    """The revenue KPIs' per-month totals from one engine query over (month, customer).

    Each order meets every month whose two years contain it (24 rows per order): the
    reference :func:`_revenue_by_segment` is checked against, and its fallback when
    amounts are too large for exact 64-bit sums.
    """
    grid = _grid(windows)
    per = _customer_revenue(ctx, grid)
    base = (per.rev_prev > 0) & per.full  # the catalogue's retention cohort
    zero = ibis.literal(0).cast(_EXACT)
    cur_pos = ibis.greatest(per.rev_cur, zero)
    agg = per.group_by("m_month").aggregate(
        buyers=(per.days_cur >= 1).cast("int64").sum(),
        repeaters=(per.days_cur >= 2).cast("int64").sum(),
        cohort=base.cast("int64").sum(),
        prev=ibis.ifelse(base, per.rev_prev, zero).sum().cast("float64"),
        kept=ibis.ifelse(base, ibis.least(cur_pos, per.rev_prev), zero).sum().cast("float64"),
        net=ibis.ifelse(base, cur_pos, zero).sum().cast("float64"),
    )
    return _by_month(agg)


# Unscaled units of _EXACT (4 decimals): sums of amount x 10^4 as integers are exact.
_UNITS = 10_000
# Cells per block of the dense customer x segment arrays (bounds their memory at 1M
# customers or many months: 8M int64 cells, 64 MB, per array).
_BLOCK_CELLS = 1 << 23


def _exact_float(units: int) -> float:
    """``units / 10^4`` rounded once to float64: what DuckDB's cast of the exact decimal
    sum gives (it rounds correctly)."""
    return float(Decimal(units).scaleb(-4))


def _segment(day: ir.DateValue, bounds: list[dt.date], lo: int, hi: int) -> ir.IntegerValue:
    """Index ``k`` in ``[lo, hi)`` of the segment ``(bounds[k], bounds[k + 1]]`` holding
    ``day`` (a day inside ``(bounds[lo], bounds[hi]]``), by bisection: a few comparisons
    per row instead of one per segment."""
    if hi - lo == 1:
        return ibis.literal(lo, "int16")
    mid = (lo + hi) // 2
    return ibis.ifelse(
        day <= bounds[mid], _segment(day, bounds, lo, mid), _segment(day, bounds, mid, hi)
    )


@dataclass
class _OrderSegments:
    """Each customer's orders summed per segment ``(bounds[k], bounds[k + 1]]``.

    One row per (customer, segment) with orders: ``code`` indexes ``ids`` (and ``acq``,
    the customer's acquisition day), ``seg`` the segment, ``days`` the distinct purchase
    days (amount >= 0), ``units`` the exact net amount in 10^-4 and ``amount`` its float
    sum.
    """

    bounds: list[dt.date]
    ids: pa.Array
    acq: np.ndarray
    code: np.ndarray
    seg: np.ndarray
    days: np.ndarray
    units: np.ndarray
    amount: np.ndarray


def _order_segments(ctx: _Ctx, bounds: list[dt.date]) -> _OrderSegments | None:
    """One pass over the orders (of customers in the customers table), summed per
    customer and segment of ``bounds``; None when an exact sum does not fit in 64 bits."""
    o = ctx.events("orders")
    o = o.filter(o.order_date > bounds[0], o.order_date <= bounds[-1])
    seg = _segment(o.order_date, bounds, 0, len(bounds) - 1)
    day = ibis.ifelse(o.amount >= 0, o.order_date, ibis.null().cast("date"))
    units = (o.amount.cast(_EXACT).sum() * _UNITS).try_cast("int64")
    per = o.group_by(cid=o.customer_id, acq=o.acq, seg=seg).aggregate(
        days=day.nunique(), units=units, amount=o.amount.sum()
    )
    t = per.to_pyarrow()
    if t["units"].null_count:
        return None  # a customer's segment sum does not fit in 64 bits
    units_arr = t["units"].to_numpy(zero_copy_only=False)
    # every partial sum of the revenue KPIs is bounded by the sum of absolute values
    if float(np.abs(units_arr.astype(np.float64)).sum()) >= 2.0**62:
        return None
    code, ids = _codes(t["cid"])
    acq = np.empty(len(ids), dtype="datetime64[D]")
    acq[code] = t["acq"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    # narrow types: the report holds these for every (customer, segment) with orders
    return _OrderSegments(
        bounds=bounds,
        ids=ids,
        acq=acq,
        code=code.astype(np.int32),
        seg=t["seg"].to_numpy(zero_copy_only=False).astype(np.int32),
        days=t["days"].to_numpy(zero_copy_only=False).astype(np.int32),
        units=units_arr,
        amount=t["amount"].to_numpy(zero_copy_only=False).astype(np.float64),
    )


def _segments_of(ctx: _Ctx, bounds: tuple[dt.date, ...]) -> _OrderSegments | None:
    """:func:`_order_segments` for these bounds, computed once per context."""
    if bounds not in ctx._orders:
        ctx._orders[bounds] = _order_segments(ctx, list(bounds))
    return ctx._orders[bounds]


def _revenue_by_segment(ctx: _Ctx, windows: list[Window]) -> dict[str, dict[str, Any]] | None:
    """The revenue KPIs' per-month totals, equal to :func:`_revenue_by_query`'s.

    The windows' bounds (``y2 < y1 <= end``) cut time into segments; one query sums each
    customer's orders per segment (exact decimals, as integer units of 10^-4) and counts
    purchase days, so each order is read once instead of once per month. A window's
    trailing and prior year are then runs of segments: prefix sums over a customer x
    segment array give every month's per-customer values, and the totals are exact integer
    sums. Segments are disjoint, so distinct purchase days add up across them.

    Returns None when the amounts could overflow 64-bit integer sums (the caller then runs
    the per-month query).
    """
    bounds = sorted({d for w in windows for d in (w.y2, w.y1, w.end)})
    segs_of = _segments_of(ctx, tuple(bounds))
    if segs_of is None:
        return None
    n_seg = len(bounds) - 1
    code, segs, days, units_arr, acq = (
        segs_of.code,
        segs_of.seg,
        segs_of.days,
        segs_of.units,
        segs_of.acq,
    )
    n_cust = len(segs_of.ids)
    pos = {b: k for k, b in enumerate(bounds)}
    spans = [(w, pos[w.y2], pos[w.y1], pos[w.end]) for w in windows]
    ends = np.array([np.datetime64(w.end, "D") for w in windows])
    # Months without a customer row total zero, which the KPIs read as "no value", as
    # they read a month the query returns no row for.
    tot = {
        w.month: dict.fromkeys(("buyers", "repeaters", "cohort", "prev", "kept", "net"), 0)
        for w in windows
    }
    block = max(1, _BLOCK_CELLS // (n_seg + 1))
    for lo in range(0, n_cust, block):
        hi = min(lo + block, n_cust)
        rows = (code >= lo) & (code < hi)
        r = code[rows] - lo
        # prefix sums with a leading zero column: column k = segments before k
        cu = np.zeros((hi - lo, n_seg + 1), dtype=np.int64)
        cd = np.zeros((hi - lo, n_seg + 1), dtype=np.int64)
        cu[r, segs[rows] + 1] = units_arr[rows]
        cd[r, segs[rows] + 1] = days[rows]
        np.cumsum(cu, axis=1, out=cu)
        np.cumsum(cd, axis=1, out=cd)
        for (w, a, b, e), end in zip(spans, ends, strict=True):
            seen = acq[lo:hi] <= end  # the customer was acquired by the month end
            d = cd[seen, e] - cd[seen, b]
            acc = tot[w.month]
            acc["buyers"] += int((d >= 1).sum())
            acc["repeaters"] += int((d >= 2).sum())
            # revenue retention: the catalogue's cohort (a full base year) and sums
            full = metrics.in_retention_cohort(acq[lo:hi], w.end)
            got = metrics.retention_sums(cu[full, e] - cu[full, b], cu[full, b] - cu[full, a])
            acc["cohort"] += got["customers"]
            acc["prev"] += int(got["base"])
            acc["kept"] += int(got["kept"])
            acc["net"] += int(got["net"])
    return {
        month: {
            "m_month": month,
            **{k: acc[k] for k in ("buyers", "repeaters", "cohort")},
            **{k: _exact_float(acc[k]) for k in ("prev", "kept", "net")},
        }
        for month, acc in tot.items()
    }


def revenue_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Gross and net revenue retention, repurchase rate, from net order revenue.

    GRR = sum(min(max(R12, 0), P12)) / sum(P12) and NRR = sum(max(R12, 0)) / sum(P12), over
    the catalogue's cohort (:func:`fupan.measures.metrics.revenue_retention`): customers acquired
    before the base year began with base-year revenue P12 > 0 (R12: the trailing 12
    months). Repurchase rate
    = customers with two or more purchase days in the trailing 12 months / customers with one
    or more (a purchase day has an order with amount >= 0).
    """
    got = _revenue_by_segment(ctx, windows)
    if got is None:
        got = _revenue_by_query(ctx, windows)
    first = ctx.ds["orders"].order_date.min().to_pyarrow().as_py()
    rows = []
    for w in windows:
        r = got.get(w.month, {})
        buyers = r.get("buyers") or 0
        rows.append(
            _val(
                w.month,
                "repurchase_rate",
                (r.get("repeaters") or 0) / buyers if buyers else None,
                buyers,
            )
        )
        # Without the whole prior year in the data, the base year's revenue is understated.
        if not metrics.retention_history_ok(first, w.end):
            rows += [_val(w.month, k, None, None, "history") for k in ("grr", "nrr")]
        else:
            n = r.get("cohort") or 0
            sums = {"base": r.get("prev") or 0.0, "kept": r.get("kept"), "net": r.get("net")}
            grr, nrr = metrics.retention_ratios(sums)
            rows.append(_val(w.month, "grr", grr, n))
            rows.append(_val(w.month, "nrr", nrr, n))
    return rows


def _renewed_contracts(ctx: _Ctx) -> ir.Table:
    """Each contract with its decision date (end + grace) and whether it was renewed in time.

    Renewed: another contract of the same customer started after it started and no later
    than its end date plus ``grace_days``, unless that contract says it renews a different
    one (``renewal_of``). The decision is known on end + grace, so it never looks past the
    month it is counted in.
    """
    grace = ctx.params.churn_definition.grace_days
    c = ctx.events("contracts")
    c = c.mutate(decided=(c.end_date + ibis.interval(days=grace)).cast("date"))
    r = ctx.ds["contracts"]
    cols = ["contract_id", "customer_id", "start_date"] + (
        ["renewal_of"] if "renewal_of" in r.columns else []
    )
    r = r.select(*cols).rename(r_id="contract_id", r_cid="customer_id", r_start="start_date")
    preds = [
        c.customer_id == r.r_cid,
        c.contract_id != r.r_id,
        r.r_start > c.start_date,
        r.r_start <= c.decided,
    ]
    if "renewal_of" in r.columns:
        preds.append(r.renewal_of.isnull() | (r.renewal_of == c.contract_id))
    hits = c.join(r, preds).select("contract_id").distinct().mutate(renewed=ibis.literal(True))
    out = c.left_join(hits, c.contract_id == hits.contract_id)
    return out.select(
        "contract_id", "customer_id", "acq", "decided", renewed=out.renewed.fill_null(False)
    )


def renewal_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Renewal rate: contracts decided (end + grace) in the trailing 12 months that were renewed.

    Top-N: the catalogue's :func:`fupan.measures.metrics.top_n_renewal` over the trailing year to the
    month end (per customer: the top ``diagnosis.top_n`` customers when the year began, each
    judged by their latest contract that ended in the year and was decided by the month end),
    the figure the diagnosis quotes over its review period.
    """
    if not ctx.ds.has("contracts"):
        return _na(windows, "renewal_rate", "missing:contracts") + _na(
            windows, "renewal_rate_top_n", "missing:contracts"
        )
    grid = _grid(windows)
    c = _renewed_contracts(ctx)
    j = c.join(grid, [c.decided > grid.m_y1, c.decided <= grid.m_end, c.acq <= grid.m_end])
    agg = j.group_by("m_month").aggregate(due=j.count(), renewed=j.renewed.cast("int64").sum())
    got = _by_month(agg)
    rows = []
    for w in windows:
        r = got.get(w.month, {})
        due = r.get("due") or 0
        rows.append(_val(w.month, "renewal_rate", r.get("renewed", 0) / due if due else None, due))
        top, _ = metrics.top_n_renewal(
            ctx.ds, ctx.status(w.end), w.y1 + dt.timedelta(days=1), w.end
        )
        rows.append(
            _val(
                w.month,
                "renewal_rate_top_n",
                top["rate"] if top["due"] else None,
                top["due"],
            )
        )
    return rows


def survey_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """NPS and CSAT over responses in the trailing ``kpi.survey_window_months``.

    NPS = 100 x (promoters 9-10 - detractors 0-6) / responses; CSAT = mean score (1-5) of
    the responses that gave one.
    """
    if not ctx.ds.has("surveys"):
        return _na(windows, "nps", "missing:surveys") + _na(windows, "csat", "missing:surveys")
    grid = _grid(windows)
    s = ctx.events("surveys")
    j = s.join(
        grid, [s.surveyed_at > grid.m_survey, s.surveyed_at <= grid.m_end, s.acq <= grid.m_end]
    )
    has_csat = "csat" in j.columns
    aggs = {
        "n": j.count(),
        "prom": (j.nps >= 9).cast("int64").sum(),
        "det": (j.nps <= 6).cast("int64").sum(),
    }
    if has_csat:
        aggs["n_csat"] = j.csat.count()
        aggs["csat"] = j.csat.cast("float64").mean()
    got = _by_month(j.group_by("m_month").aggregate(**aggs))
    rows = []
    for w in windows:
        r = got.get(w.month, {})
        n = r.get("n") or 0
        rows.append(_val(w.month, "nps", 100.0 * (r["prom"] - r["det"]) / n if n else None, n))
        if has_csat:
            rows.append(
                _val(
                    w.month,
                    "csat",
                    r.get("csat") if r.get("n_csat") else None,
                    r.get("n_csat") or 0,
                )
            )
        else:
            rows.append(_val(w.month, "csat", None, None, "missing:csat"))
    return rows


def ticket_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Median first response and SLA compliance.

    Median first response: days from opening to first response, over tickets first answered
    in the month (known at the month end; never-answered tickets count against SLA
    compliance instead). SLA compliance: tickets whose deadline (opened + the SLA days of the
    customer's tier, ``benchmarks.sla_first_response_days``) fell in the month, answered by
    the deadline / those tickets.
    """
    if not ctx.ds.has("tickets"):
        return _na(windows, "first_response_median", "missing:tickets") + _na(
            windows, "sla_compliance", "missing:tickets"
        )
    grid = _grid(windows)
    t = ctx.events("tickets")
    opened = t.opened_at.epoch_seconds()
    answered = t.first_response_at.epoch_seconds()
    t = t.mutate(o_s=opened, a_s=answered, d_s=opened + ctx.sla_days(t.ctier) * 86400.0)
    resp = t.join(grid, [t.a_s >= grid.m_lo_s, t.a_s < grid.m_hi_s, t.acq <= grid.m_end])
    resp = resp.group_by("m_month").aggregate(
        n_resp=resp.count(), median=((resp.a_s - resp.o_s).cast("float64") / 86400.0).median()
    )
    due = t.join(grid, [t.d_s >= grid.m_lo_s, t.d_s < grid.m_hi_s, t.acq <= grid.m_end])
    ok = due.a_s.notnull() & (due.a_s <= due.d_s)
    due = due.group_by("m_month").aggregate(n_due=due.count(), n_ok=ok.cast("int64").sum())
    got_r, got_d = _by_month(resp), _by_month(due)
    rows = []
    for w in windows:
        r, d = got_r.get(w.month, {}), got_d.get(w.month, {})
        rows.append(
            _val(
                w.month,
                "first_response_median",
                r.get("median") if r.get("n_resp") else None,
                r.get("n_resp") or 0,
            )
        )
        n_due = d.get("n_due") or 0
        rows.append(_val(w.month, "sla_compliance", d["n_ok"] / n_due if n_due else None, n_due))
    return rows


def touch_kpi(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Touch coverage (the catalogue's :func:`fupan.measures.metrics.touch_coverage`) per month end.

    Active customers touched (on or after their acquisition) in the ``diagnosis.coverage_days``
    days up to the month end / active customers.
    """
    if not ctx.ds.has("touches"):
        return _na(windows, "touch_coverage", "missing:touches")
    # The windows' bounds cut time into segments (as for revenue): one query lists each
    # customer's segments with a touch, and a month's touched customers are those with a
    # touch in the segments between its bounds. Only active customers are counted, and
    # they were acquired by the month end, so the acquisition date needs no check here.
    bounds = sorted({d for w in windows for d in (w.touch_lo, w.end)})
    t = ctx.events("touches")
    day = t.touched_at.date()
    t = t.filter(day > bounds[0], day <= bounds[-1], day >= t.acq)
    seg = _segment(day, bounds, 0, len(bounds) - 1)
    pairs = t.select(cid=t.customer_id, seg=seg).distinct().to_pyarrow()
    code, ids = _codes(pairs["cid"])
    # had[c, k]: segments before k with a touch of customer c
    had = np.zeros((len(ids), len(bounds)), dtype=np.int16)
    had[code, pairs["seg"].to_numpy().astype(np.int64) + 1] = 1
    np.cumsum(had, axis=1, out=had)
    pos = {b: k for k, b in enumerate(bounds)}
    rows = []
    for w in windows:
        active = ctx.active_ids(w.end)
        touched = ids.filter(pa.array(had[:, pos[w.end]] > had[:, pos[w.touch_lo]]))
        hit = int(engine.isin(active, touched).sum())
        rows.append(
            _val(w.month, "touch_coverage", hit / len(active) if len(active) else None, len(active))
        )
    return rows
