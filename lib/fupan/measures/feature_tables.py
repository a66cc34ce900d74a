"""The feature catalogue's engine expressions, by source table.

For each source table: one aggregate per (customer, snapshot day) pair over the events
strictly before the snapshot (``_<table>_block``), and the catalogue's feature columns
computed from those aggregates once they are joined (``_<table>_columns``).
:func:`fupan.measures.features.feature_expr` joins the blocks the requested features need.

Day arithmetic uses integer day numbers (days since 1970-01-01) so that the same
expressions run on DuckDB, Spark or a warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from fupan.io import cache
from fupan.io.dataset import Dataset

# Window lengths are part of the definitions (and of the names), so they are constants.
QUARTER = 90
YEAR = 365
RESPONSE_WINDOW = 180
LOGIN_WINDOW = 28


def _day(v: ir.Value) -> ir.IntegerValue:
    """Integer day number of a date (days since 1970-01-01)."""
    return v.epoch_days()


def _ts_days(v: ir.Value) -> ir.FloatingValue:
    """Fractional day number of a timestamp."""
    return v.epoch_seconds().cast("float64") / 86400.0


def _rel_change(now: ir.NumericValue, before: ir.NumericValue) -> ir.FloatingValue:
    now, before = now.cast("float64"), before.cast("float64")
    raw = (now - before) / before
    clipped = ibis.greatest(ibis.least(raw, 1.0), -1.0)
    return ibis.ifelse(before > 0, clipped, 0.0)


# --------------------------------------------------------------------------------------
# orders


def _order_block(ds: Dataset, base: ir.Table) -> ir.Table:
    o = ds["orders"]
    o = o.select("customer_id", od=_day(o.order_date), amount=o.amount)
    j = base.join(o, [base.customer_id == o.customer_id, o.od < base.sd]).select(
        base.customer_id, base.sd, o.od, o.amount
    )
    pos = j.amount > 0
    age = j.sd - j.od
    agg = j.group_by(["customer_id", "sd"]).aggregate(
        x_last=j.od.max(where=pos),
        x_first=j.od.min(where=pos),
        x_n=j.od.count(where=pos),
        orders_90d=j.od.count(where=pos & (age <= QUARTER)),
        orders_365d=j.od.count(where=pos & (age <= YEAR)),
        spend_90d=j.amount.sum(where=age <= QUARTER),
        spend_365d=j.amount.sum(where=age <= YEAR),
        x_spend_prev=j.amount.sum(where=(age > QUARTER) & (age <= 2 * QUARTER)),
    )
    return agg


def _order_columns(x: ir.Table, tenure: ir.Value) -> dict[str, ir.Value]:
    mean_gap = (x.x_last - x.x_first).cast("float64") / (x.x_n - 1).cast("float64")
    return dict(
        recency_days=ibis.coalesce(x.sd - x.x_last, tenure),
        orders_90d=ibis.coalesce(x.orders_90d, 0),
        orders_365d=ibis.coalesce(x.orders_365d, 0),
        spend_90d=ibis.coalesce(x.spend_90d, 0.0),
        spend_365d=ibis.coalesce(x.spend_365d, 0.0),
        spend_change_qoq=_rel_change(
            ibis.coalesce(x.spend_90d, 0.0), ibis.coalesce(x.x_spend_prev, 0.0)
        ),
        order_gap_ratio=ibis.ifelse(
            (x.x_n >= 2) & (mean_gap > 0),
            (x.sd - x.x_last).cast("float64") / mean_gap,
            ibis.null().cast("float64"),
        ),
    )


# --------------------------------------------------------------------------------------
# touches (and the first repeat order they follow)


def _touch_blocks(ds: Dataset, base: ir.Table) -> ir.Table:
    t = ds["touches"]
    t = t.select("customer_id", td=_ts_days(t.touched_at))
    j = base.join(t, [base.customer_id == t.customer_id, t.td < base.sd]).select(
        base.customer_id, base.sd, t.td
    )
    age = j.sd.cast("float64") - j.td
    return j.group_by(["customer_id", "sd"]).aggregate(
        touches_30d=j.td.count(where=age <= 30),
        touches_90d=j.td.count(where=age <= QUARTER),
        x_last_touch=j.td.max(),
    )


def _first_repeat(ds: Dataset) -> ir.Table:
    """Per customer: the day of the first repeat purchase and whether a touch followed it.

    Computed once per customer (not per snapshot); a snapshot uses it only once the N-day
    window has fully passed before the snapshot, so nothing after a snapshot is read.
    """
    n_days = ds.params.churn.first_repeat_touch_days
    o = ds["orders"].filter(lambda t: t.amount > 0)
    o = o.select("customer_id", "order_id", od=_day(o.order_date))
    w = ibis.window(group_by=o.customer_id, order_by=[o.od, o.order_id])
    ranked = o.mutate(rn=ibis.row_number().over(w))
    second = ranked.filter(ranked.rn == 1).select("customer_id", repeat_day=ranked.od)
    t = ds["touches"]
    t = t.select(tid=t.customer_id, td=_ts_days(t.touched_at))
    j = second.left_join(
        t,
        [
            second.customer_id == t.tid,
            t.td >= second.repeat_day,
            t.td < second.repeat_day + n_days + 1,
        ],
    )
    return j.group_by(["customer_id", "repeat_day"]).aggregate(x_followed=j.td.count() > 0)


def _touch_columns(
    ds: Dataset, x: ir.Table, tenure: ir.Value, want: set[str]
) -> dict[str, ir.Value]:
    cols = dict(
        touches_30d=ibis.coalesce(x.touches_30d, 0),
        touches_90d=ibis.coalesce(x.touches_90d, 0),
        days_since_touch=ibis.coalesce(
            (x.sd.cast("float64") - x.x_last_touch).floor().cast("int64"), tenure
        ),
    )
    if "no_touch_after_first_repeat" in want:
        window_passed = x.repeat_day.notnull() & (
            x.repeat_day + ds.params.churn.first_repeat_touch_days < x.sd
        )
        cols["no_touch_after_first_repeat"] = ibis.ifelse(
            window_passed & ~x.x_followed.fill_null(False), 1, 0
        )
    return cols


# --------------------------------------------------------------------------------------
# tickets


def _ticket_block(ds: Dataset, base: ir.Table) -> ir.Table:
    k = ds["tickets"]
    c = ds["customers"]
    sla = ds.params.benchmarks.sla_first_response_days
    default_sla = max(sla.values()) if sla else float("inf")
    tier_sla = (
        ibis.cases(*((c.tier == tier, float(v)) for tier, v in sla.items()), else_=default_sla)
        if sla
        else ibis.literal(default_sla)
    )
    tiers = c.select(cid=c.customer_id, sla=tier_sla)
    k = k.select(
        "customer_id",
        t_open=_ts_days(k.opened_at),
        fr=_ts_days(k.first_response_at),
        rs=_ts_days(k.resolved_at),
    )
    k = k.join(tiers, k.customer_id == tiers.cid).drop("cid")
    j = base.join(k, [base.customer_id == k.customer_id, k.t_open < base.sd]).select(
        base.customer_id, base.sd, k.t_open, k.fr, k.rs, k.sla
    )
    sd = j.sd.cast("float64")
    # What was known at the snapshot: an answer after it is not known yet, so the ticket
    # counts with the time it had waited by then.
    known_fr = ibis.ifelse(j.fr.notnull() & (j.fr < sd), j.fr, sd)
    wait = known_fr - j.t_open
    age = sd - j.t_open
    # The window goes into the value (median skips nulls): Spark's percentile rejects the
    # filtered percentage that ``median(where=...)`` compiles to.
    recent_wait = ibis.ifelse(age <= RESPONSE_WINDOW, wait, ibis.null().cast("float64"))
    return j.group_by(["customer_id", "sd"]).aggregate(
        tickets_90d=j.t_open.count(where=age <= QUARTER),
        x_tickets_prev=j.t_open.count(where=(age > QUARTER) & (age <= 2 * QUARTER)),
        median_first_response_days=recent_wait.median(),
        open_tickets=j.t_open.count(where=j.rs.isnull() | (j.rs >= sd)),
        sla_breaches_90d=j.t_open.count(where=(age <= QUARTER) & (wait > j.sla)),
    )


def _ticket_columns(x: ir.Table) -> dict[str, ir.Value]:
    return dict(
        tickets_90d=ibis.coalesce(x.tickets_90d, 0),
        tickets_change_qoq=_rel_change(
            ibis.coalesce(x.tickets_90d, 0), ibis.coalesce(x.x_tickets_prev, 0)
        ),
        median_first_response_days=ibis.coalesce(x.median_first_response_days, 0.0),
        open_tickets=ibis.coalesce(x.open_tickets, 0),
        sla_breaches_90d=ibis.coalesce(x.sla_breaches_90d, 0),
    )


# --------------------------------------------------------------------------------------
# surveys


def _survey_block(ds: Dataset, base: ir.Table, dims: Sequence[str]) -> ir.Table:
    s = ds["surveys"]
    w = ibis.window(group_by=s.customer_id, order_by=[s.surveyed_at, s.survey_id])
    s = s.mutate(prev_nps=s.nps.lag().over(w))
    csat = s.csat if "csat" in s.columns else ibis.null().cast("int64")
    s = s.select(
        "customer_id",
        "nps",
        "prev_nps",
        *dims,
        csat=csat,
        vd=_day(s.surveyed_at),
        # ties on a day are broken by survey_id so the latest survey is well defined
        key=_day(s.surveyed_at).cast("string").lpad(8, "0").concat("|", s.survey_id),
    )
    j = base.join(s, [base.customer_id == s.customer_id, s.vd < base.sd]).select(
        base.customer_id, base.sd, s.nps, s.prev_nps, s.csat, s.key, *(s[d] for d in dims)
    )
    aggs = {
        "nps_latest": j.nps.argmax(j.key),
        "x_prev_nps": j.prev_nps.argmax(j.key),
        "csat_latest": j.csat.argmax(j.key, where=j.csat.notnull()),
    }
    for d in dims:
        aggs[d] = j[d].argmax(j.key, where=j[d].notnull())
    return j.group_by(["customer_id", "sd"]).aggregate(**aggs)


def _survey_columns(x: ir.Table, dims: Sequence[str]) -> dict[str, ir.Value]:
    cols = dict(
        nps_latest=x.nps_latest,
        nps_change=x.nps_latest - x.x_prev_nps,
        detractor=ibis.ifelse(x.nps_latest.notnull() & (x.nps_latest <= 6), 1, 0),
        csat_latest=x.csat_latest,
    )
    cols.update({d: x[d] for d in dims})
    return cols


# --------------------------------------------------------------------------------------
# activity


def activity_period_days(ds: Dataset) -> int:
    """Length of one activity period (1 = daily rows, 7 = weekly), from the data itself.

    The most common gap between a customer's consecutive periods; 7 when undecidable.
    Read from the rows of at most :data:`PERIOD_SAMPLE_CUSTOMERS` customers (every k-th by
    id), once per run (:mod:`fupan.io.cache`): every feature query needs it.
    """
    return cache.memo(ds, "features.activity_period_days", [], lambda: _period_days(ds))


#: Customers whose activity rows decide the period length. The period is a property of the
#: export (every customer's rows are daily, or weekly), and each gap between a customer's
#: periods is a vote: 2,000 customers cast tens of thousands. More customers add no
#: information, while the window over their rows is most of the cost of a feature query on
#: a small base (0.2 s of ~0.7 s at 10k customers, 685k rows) and cost ~37 CPU s over every
#: row at 1M customers (68M rows).
PERIOD_SAMPLE_CUSTOMERS = 2_000


def _period_days(ds: Dataset) -> int:
    a = ds["activity"]
    c = ds["customers"].select("customer_id")
    n = int(c.count().to_pyarrow().as_py())
    if n > PERIOD_SAMPLE_CUSTOMERS:
        # every k-th customer in id order: deterministic, and spread over the whole base
        k = -(-n // PERIOD_SAMPLE_CUSTOMERS)
        c = c.mutate(i=ibis.row_number().over(order_by=c.customer_id))
        a = a.semi_join(c.filter(c.i % k == 0), "customer_id")
    a = a.select("customer_id", d=_day(a.period_start)).distinct()
    w = ibis.window(group_by=a.customer_id, order_by=a.d)
    gaps = a.mutate(gap=a.d - a.d.lag().over(w))
    gaps = gaps.filter(gaps.gap.notnull() & (gaps.gap > 0))
    top = gaps.group_by("gap").aggregate(n=gaps.count()).order_by([ibis.desc("n"), "gap"]).limit(1)
    rows = top.to_pyarrow().to_pylist()
    return int(rows[0]["gap"]) if rows else 7


def _activity_block(ds: Dataset, base: ir.Table, period: int) -> ir.Table:
    a = ds["activity"]
    a = a.select("customer_id", pe=_day(a.period_start) + period, logins=a.logins)
    # A period counts only once it has ended before the snapshot; only the last
    # (cap + 1) weeks matter for the gap, so the join reads a bounded window.
    cap = ds.params.churn.login_gap_cap_weeks
    horizon = max(LOGIN_WINDOW, 7 * (cap + 1)) + period
    j = base.join(
        a, [base.customer_id == a.customer_id, a.pe <= base.sd, a.pe > base.sd - horizon]
    ).select(base.customer_id, base.sd, a.pe, a.logins)
    agg = j.group_by(["customer_id", "sd"]).aggregate(
        logins_28d=j.logins.sum(where=j.pe > j.sd - LOGIN_WINDOW),
        x_last_login_end=j.pe.max(where=j.logins > 0),
    )
    return agg


def _activity_columns(ds: Dataset, x: ir.Table, act_first: ir.Value) -> dict[str, ir.Value]:
    # No login within the window read: count from the start of tracking or acquisition
    # (the cap makes anything older irrelevant).
    since = ibis.coalesce(x.x_last_login_end, ibis.greatest(x.ad, act_first))
    weeks = ((x.sd - since).cast("float64") / 7).floor().cast("int64")
    return dict(
        logins_28d=ibis.coalesce(x.logins_28d, 0),
        weeks_without_login=ibis.greatest(
            ibis.least(weeks, ds.params.churn.login_gap_cap_weeks), 0
        ),
    )


# --------------------------------------------------------------------------------------
# contracts


def _contract_block(ds: Dataset, base: ir.Table) -> ir.Table:
    c = ds["contracts"]
    c = c.select("customer_id", st=_day(c.start_date), en=_day(c.end_date))
    j = base.join(c, [base.customer_id == c.customer_id, c.st < base.sd]).select(
        base.customer_id, base.sd, c.en
    )
    running = j.en >= j.sd
    return j.group_by(["customer_id", "sd"]).aggregate(
        days_to_renewal=j.en.max(where=running) - j.sd.max(),
        x_running=j.en.count(where=running),
    )


def _contract_columns(x: ir.Table) -> dict[str, ir.Value]:
    return {
        "days_to_renewal": x.days_to_renewal,
        # a row in the block means a contract started before the snapshot
        "no_running_contract": ibis.ifelse(x.x_running.notnull() & (x.x_running == 0), 1, 0),
    }
