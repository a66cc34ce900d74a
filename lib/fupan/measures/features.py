"""The feature catalogue and as-of snapshots: what we knew about each customer on a date.

Every feature is computed in the query engine (Ibis) from events strictly *before* its
snapshot date; nothing on or after the snapshot day is read. Snapshot labels come from the
shared churn definition (:mod:`fupan.measures.outcomes`), evaluated as of the day before the snapshot
(who is still a customer) and as of the end of the horizon (who churned within it).

Public API
----------
``CATALOGUE``
    feature name -> :class:`Feature` (definition, unit, source table, kind).
``available(ds)``
    the catalogue names computable from the tables present (``dim_*`` expanded).
``feature_expr(ds, pairs, names)``
    an Ibis expression: one row per (customer, snapshot date) pair, the features as columns.
``customer_features(ds, as_of, names)``
    one row per customer acquired before ``as_of``, as a pandas DataFrame.
``snapshot_dates(as_of, months, horizon_days)``
    monthly snapshot dates whose labels are fully observed by ``as_of``.
``dormancy_snapshot_dates(first_day, as_of, dormancy_days)``
    dates one dormancy apart, for churn learned from orders alone.
``snapshots(ds, dates, horizon_days, names)``
    features + label per live customer per snapshot.
``split(snap, test_months, horizon_days)``
    earlier snapshots to fit on, later ones to judge on, no outcome overlapping the later.

Day arithmetic uses integer day numbers (days since 1970-01-01) so that the same
expressions run on DuckDB, Spark or a warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from fupan.core import progress
from fupan.io import cache, engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

Kind = Literal["numeric", "binary", "categorical"]


@dataclass(frozen=True)
class Feature:
    """One catalogue entry.

    Parameters
    ----------
    name : the column name everywhere (results.json, params, labels ``feat.<name>``).
    definition : what it measures, precisely enough to recompute it by hand.
    unit : days, weeks, count, currency, ratio, score, flag or category.
    source : the contract table(s) it is computed from.
    kind : numeric, binary (0/1) or categorical (text).
    """

    name: str
    definition: str
    unit: str
    source: str
    kind: Kind = "numeric"


_F = Feature
# Window lengths are part of the definitions (and of the names), so they are constants.
QUARTER = 90
YEAR = 365
RESPONSE_WINDOW = 180
LOGIN_WINDOW = 28


CATALOGUE: dict[str, Feature] = {
    f.name: f
    for f in (
        _F(
            "recency_days",
            "days from the last order with amount > 0 to the snapshot; days since "
            "acquisition when there is none",
            "days",
            "orders",
        ),
        _F(
            "orders_90d",
            "orders with amount > 0 in the 90 days before the snapshot",
            "count",
            "orders",
        ),
        _F(
            "orders_365d",
            "orders with amount > 0 in the 365 days before the snapshot",
            "count",
            "orders",
        ),
        _F(
            "spend_90d",
            "net order amount (refunds subtracted) in the 90 days before the snapshot",
            "currency",
            "orders",
        ),
        _F(
            "spend_365d",
            "net order amount (refunds subtracted) in the 365 days before the snapshot",
            "currency",
            "orders",
        ),
        _F(
            "spend_change_qoq",
            "(spend in the 90 days before the snapshot - spend in the 90 days "
            "before those) / the latter, clipped to [-1, 1]; 0 when the earlier window has no "
            "positive spend",
            "ratio",
            "orders",
        ),
        _F(
            "order_gap_ratio",
            "recency_days / the customer's mean gap between orders with amount "
            "> 0 ((last - first) / (orders - 1)); empty with fewer than two orders",
            "ratio",
            "orders",
        ),
        _F("tenure_days", "days from acquired_at to the snapshot", "days", "customers"),
        _F(
            "tier",
            "the tier the business assigns today (the data holds no tier history, so it "
            "may reflect what happened after the snapshot)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "region",
            "the customer's region (customers.region)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "industry",
            "the customer's industry (customers.industry)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "acquisition_channel",
            "channel the customer was acquired through",
            "category",
            "customers",
            "categorical",
        ),
        _F("touches_30d", "touches in the 30 days before the snapshot", "count", "touches"),
        _F("touches_90d", "touches in the 90 days before the snapshot", "count", "touches"),
        _F(
            "days_since_touch",
            "days from the last touch to the snapshot; days since acquisition when never touched",
            "days",
            "touches",
        ),
        _F(
            "no_touch_after_first_repeat",
            "1 once N days have passed after the first repeat "
            "purchase (the second order with amount > 0) with no touch on that day or the N days "
            "after it; else 0 (N = churn.first_repeat_touch_days, default 7)",
            "flag",
            "orders, touches",
            "binary",
        ),
        _F("tickets_90d", "tickets opened in the 90 days before the snapshot", "count", "tickets"),
        _F(
            "tickets_change_qoq",
            "(tickets opened in the 90 days before the snapshot - tickets in "
            "the 90 days before those) / the latter, clipped to [-1, 1]; 0 when the earlier window "
            "has none",
            "ratio",
            "tickets",
        ),
        _F(
            "median_first_response_days",
            "median days from opened_at to first_response_at over "
            "tickets opened in the 180 days before the snapshot; a ticket still unanswered at the "
            "snapshot counts with the days it has waited so far; 0 when there is no ticket",
            "days",
            "tickets",
        ),
        _F(
            "open_tickets",
            "tickets opened before the snapshot and not resolved before it",
            "count",
            "tickets",
        ),
        _F(
            "sla_breaches_90d",
            "tickets opened in the 90 days before the snapshot whose first "
            "response took (or, unanswered, has waited) longer than the SLA of the customer's "
            "tier (benchmarks.sla_first_response_days; today's tier, as the data holds no "
            "tier history)",
            "count",
            "tickets",
        ),
        _F("nps_latest", "NPS (0-10) of the latest survey before the snapshot", "score", "surveys"),
        _F("nps_change", "latest NPS minus the NPS of the survey before it", "score", "surveys"),
        _F(
            "detractor",
            "1 if the latest survey before the snapshot has NPS <= 6; 0 otherwise "
            "(also never surveyed)",
            "flag",
            "surveys",
            "binary",
        ),
        _F("csat_latest", "the latest CSAT (1-5) recorded before the snapshot", "score", "surveys"),
        _F(
            "logins_28d",
            "logins in activity periods that ended in the 28 days before the snapshot",
            "count",
            "activity",
        ),
        _F(
            "weeks_without_login",
            "consecutive whole weeks with zero logins immediately before "
            "the snapshot (only activity periods that ended before it), capped at "
            "churn.login_gap_cap_weeks (default 12)",
            "weeks",
            "activity",
        ),
        _F(
            "days_to_renewal",
            "days from the snapshot to the end_date of the latest contract "
            "started before it and still running; empty without one",
            "days",
            "contracts",
        ),
        _F(
            "no_running_contract",
            "1 when the customer has had a contract that started before the snapshot but none "
            "is running at it (the last one ended unrenewed); 0 otherwise, also for customers "
            "who never had a contract",
            "flag",
            "contracts",
            "binary",
        ),
    )
}

DIM_PREFIX = "dim_"
# Surveys carry any number of dim_* scores; each becomes a feature named after its column.
DIM_DEFINITION = "the latest {name} score recorded before the snapshot"

_BLOCKS: dict[str, tuple[str, ...]] = {
    "customers": ("tenure_days", "tier", "region", "industry", "acquisition_channel"),
    "orders": (
        "recency_days",
        "orders_90d",
        "orders_365d",
        "spend_90d",
        "spend_365d",
        "spend_change_qoq",
        "order_gap_ratio",
    ),
    "touches": ("touches_30d", "touches_90d", "days_since_touch", "no_touch_after_first_repeat"),
    "tickets": (
        "tickets_90d",
        "tickets_change_qoq",
        "median_first_response_days",
        "open_tickets",
        "sla_breaches_90d",
    ),
    "surveys": ("nps_latest", "nps_change", "detractor", "csat_latest"),
    "activity": ("logins_28d", "weeks_without_login"),
    "contracts": ("days_to_renewal", "no_running_contract"),
}
_BLOCK_OF = {name: block for block, names in _BLOCKS.items() for name in names}
# Optional customer columns: present only when the source has them.
_OPTIONAL_CUSTOMER_COLS = ("acquisition_channel",)


def feature(name: str) -> Feature:
    """The catalogue entry for ``name`` (``dim_*`` survey dimensions included)."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith(DIM_PREFIX):
        return Feature(name, DIM_DEFINITION.format(name=name), "score", "surveys")
    raise KeyError(f"'{name}' is not in the feature catalogue; known: {sorted(CATALOGUE)}")


def _dims(ds: Dataset) -> list[str]:
    if not ds.has("surveys"):
        return []
    return sorted(c for c in ds["surveys"].columns if c.startswith(DIM_PREFIX))


def available(ds: Dataset) -> list[str]:
    """Catalogue names computable from the tables present in ``ds``, in catalogue order."""
    customer_cols = set(ds["customers"].columns)
    out = []
    for name in CATALOGUE:
        block = _BLOCK_OF[name]
        if block == "customers" and name not in ("tenure_days",) and name not in customer_cols:
            continue
        if block not in ("customers", "orders") and not ds.has(block):
            continue
        out.append(name)
    return out + _dims(ds)


def kinds(names: Iterable[str]) -> dict[str, Kind]:
    """numeric / binary / categorical for each feature name."""
    return {n: feature(n).kind for n in names}


# --------------------------------------------------------------------------------------
# Engine expressions


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


def _pairs_table(ds: Dataset, pairs: pd.DataFrame | ir.Table) -> ir.Table:
    if isinstance(pairs, pd.DataFrame):
        frame = pd.DataFrame(
            {
                "customer_id": pairs["customer_id"].astype(str).to_numpy(),
                "snapshot_date": pd.to_datetime(pairs["snapshot_date"]).dt.date.to_numpy(),
            }
        )
        pairs = ibis.memtable(frame)
    return pairs.select("customer_id", sd=_day(pairs.snapshot_date.cast("date")))


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


def _left(x: ir.Table, block: ir.Table, tag: str) -> ir.Table:
    # Keys renamed apart rather than dropped after the join: every block then extends one
    # join chain instead of wrapping the last join in a projection. Ibis emits half the SQL
    # (18k characters, not 33k) and compiles it faster: a fixed cost that dominated the
    # feature query at 10k customers.
    b = block.rename({f"{tag}_cid": "customer_id", f"{tag}_sd": "sd"})
    return x.left_join(b, [x.customer_id == b[f"{tag}_cid"], x.sd == b[f"{tag}_sd"]])


def feature_expr(
    ds: Dataset, pairs: pd.DataFrame | ir.Table, names: Sequence[str] | None = None
) -> ir.Table:
    """Features for (customer, snapshot date) pairs, as an Ibis expression.

    Parameters
    ----------
    ds : the dataset.
    pairs : ``customer_id, snapshot_date`` rows (a DataFrame or an Ibis table).
    names : catalogue names to compute (default: every available one).

    Returns
    -------
    Ibis table with ``customer_id, snapshot_date`` and one column per feature. Every value
    uses only events dated strictly before the row's snapshot date.
    """
    names = _computable(ds, names)
    want = set(names)
    blocks = _blocks_for(names)
    cust_cols = [n for n in ("tier", "region", "industry", "acquisition_channel") if n in want]
    # All joins first, then every column from the final relation.
    x, act_first = _joined(ds, _pairs_table(ds, pairs), blocks, want, cust_cols)
    tenure = x.sd - x.ad
    cols: dict[str, ir.Value] = {"tenure_days": tenure}
    if "orders" in blocks:
        cols.update(_order_columns(x, tenure))
    if "touches" in blocks:
        cols.update(_touch_columns(ds, x, tenure, want))
    if "tickets" in blocks:
        cols.update(_ticket_columns(x))
    if "surveys" in blocks:
        cols.update(_survey_columns(x, names))
    if "activity" in blocks:
        cols.update(_activity_columns(ds, x, act_first))
    if "contracts" in blocks:
        cols.update(_contract_columns(x))
    for n in cust_cols:
        cols[n] = x[n]
    return x.select(
        "customer_id",
        snapshot_date=(ibis.date("1970-01-01") + x.sd.as_interval("D")).cast("date"),
        **{n: cols[n] for n in names},
    )


def _computable(ds: Dataset, names: Sequence[str] | None) -> list[str]:
    """The names asked for (default: every available one); a name the tables present
    cannot give is an error naming what can be given."""
    names = list(available(ds) if names is None else names)
    avail = set(available(ds))
    bad = [n for n in names if n not in avail]
    if bad:
        raise KeyError(
            f"features {bad} cannot be computed from the tables present "
            f"(available: {sorted(avail)})"
        )
    return names


def _blocks_for(names: Sequence[str]) -> set[str]:
    """The source tables' blocks the names read (the first-repeat flag also reads orders)."""
    blocks = {_BLOCK_OF.get(n, "surveys") for n in names}
    if "no_touch_after_first_repeat" in names:
        blocks.add("orders")
    return blocks


def _joined(
    ds: Dataset, base0: ir.Table, blocks: set[str], want: set[str], cust_cols: list[str]
) -> tuple[ir.Table, ir.Value | None]:
    """The pairs joined to the customers and to each block's aggregates, one join chain;
    with activity, also the day tracking began (``act_first``, else None)."""
    c = ds["customers"]
    cust = c.select("customer_id", *cust_cols, ad=_day(c.acquired_at))
    x = base0.join(cust, "customer_id")
    act_first = None
    if "orders" in blocks:
        x = _left(x, _order_block(ds, base0), "o")
    if "touches" in blocks:
        x = _left(x, _touch_blocks(ds, base0), "t")
        if "no_touch_after_first_repeat" in want:
            rep = _first_repeat(ds).rename(r_cid="customer_id")
            x = x.left_join(rep, x.customer_id == rep.r_cid)
    if "tickets" in blocks:
        x = _left(x, _ticket_block(ds, base0), "k")
    if "surveys" in blocks:
        x = _left(x, _survey_block(ds, base0, _dims(ds)), "s")
    if "activity" in blocks:
        x = _left(x, _activity_block(ds, base0, activity_period_days(ds.root)), "a")
        if ds.parent is None:
            act = ds["activity"]
            x = x.cross_join(act.aggregate(x_act_first=_day(act.period_start).min()))
            act_first = x.x_act_first
        else:
            # when tracking began is a fact of the whole table, not of a sample's rows
            act = ds.root["activity"]
            first = act.aggregate(f=_day(act.period_start).min()).to_pyarrow()["f"][0].as_py()
            act_first = ibis.literal(first, type="int64")
    if "contracts" in blocks:
        x = _left(x, _contract_block(ds, base0), "c")
    return x, act_first


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


def _survey_columns(x: ir.Table, names: Sequence[str]) -> dict[str, ir.Value]:
    cols = dict(
        nps_latest=x.nps_latest,
        nps_change=x.nps_latest - x.x_prev_nps,
        detractor=ibis.ifelse(x.nps_latest.notnull() & (x.nps_latest <= 6), 1, 0),
        csat_latest=x.csat_latest,
    )
    cols.update({d: x[d] for d in names if d.startswith(DIM_PREFIX)})
    return cols


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


def _contract_columns(x: ir.Table) -> dict[str, ir.Value]:
    return {
        "days_to_renewal": x.days_to_renewal,
        # a row in the block means a contract started before the snapshot
        "no_running_contract": ibis.ifelse(x.x_running.notnull() & (x.x_running == 0), 1, 0),
    }


def to_frame(expr: ir.Table, names: Sequence[str]) -> pd.DataFrame:
    """A :func:`feature_expr` result in pandas: dates as datetimes, categorical features as
    objects with ``None`` for missing, every other feature as float64."""
    df = engine.to_pandas(expr)
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    for n in names:
        k = feature(n).kind
        if k == "categorical":
            df[n] = df[n].astype(object).where(df[n].notna(), None)
        else:
            df[n] = pd.to_numeric(df[n], errors="coerce").astype("float64")
    return df


def customer_features(
    ds: Dataset, as_of: str | dt.date | pd.Timestamp, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Features of every customer acquired before ``as_of``, from events before ``as_of``.

    Returns
    -------
    DataFrame, one row per customer: ``customer_id, snapshot_date`` and the features.
    """
    names = list(available(ds) if names is None else names)
    day = pd.Timestamp(as_of).date()
    c = ds["customers"]
    pairs = c.filter(c.acquired_at < ibis.literal(day)).select(
        "customer_id", snapshot_date=ibis.literal(day)
    )
    df = to_frame(feature_expr(ds, pairs, names), names)
    return df.sort_values("customer_id").reset_index(drop=True)


def snapshot_dates(
    as_of: str | dt.date | pd.Timestamp, months: int, horizon_days: int
) -> list[pd.Timestamp]:
    """``months`` month-start dates, the last one the latest whose horizon ends by ``as_of``."""
    end = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=horizon_days - 1)
    last = end.to_period("M").to_timestamp()
    return [last - pd.DateOffset(months=k) for k in range(months - 1, -1, -1)]


def dormancy_snapshot_dates(
    first_day: str | dt.date | pd.Timestamp,
    as_of: str | dt.date | pd.Timestamp,
    dormancy_days: int,
    min_history_days: int = QUARTER,
) -> list[pd.Timestamp]:
    """Snapshot dates ``dormancy_days`` apart whose dormancy-length outcome is seen by ``as_of``.

    Under a dormancy rule a live customer can churn within ``dormancy_days`` of any date
    (their clock is already running), but within a shorter horizon only if their last order
    is old already: the label would be the rule itself. Dates spaced by the dormancy make
    each interval ``[s, next s)`` a window in which every live customer's churn is possible
    and observed, with no customer's outcome counted twice.

    Parameters
    ----------
    first_day : the first day of data (earliest order or acquisition).
    as_of : the last day of data.
    dormancy_days : the dormancy of the churn definition.
    min_history_days : the first date leaves at least this much history for the features.

    Returns
    -------
    Dates in ascending order, the last the latest whose window ``[s, s + dormancy)`` ends by
    ``as_of``; empty when the history is too short for one.
    """
    last = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=dormancy_days - 1)
    first = pd.Timestamp(first_day).normalize() + pd.Timedelta(days=min_history_days)
    out = []
    s = last
    while s >= first:
        out.append(s)
        s = s - pd.Timedelta(days=dormancy_days)
    return out[::-1]


def _status_at(ds: Dataset, day: pd.Timestamp, cache: dict[pd.Timestamp, pd.DataFrame]):
    if day not in cache:
        st = outcomes.churn_status(ds, day.date())
        cache[day] = st[["customer_id", "acquired_at", "churned_at"]]
    return cache[day]


def snapshots(
    ds: Dataset,
    dates: Sequence[str | dt.date | pd.Timestamp],
    horizon_days: int,
    names: Sequence[str] | None = None,
    max_customers: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Features and churn label per live customer per snapshot date.

    A customer is in snapshot ``s`` when acquired before ``s`` and not churned by the day
    before ``s`` (the churn definition evaluated on what was known then). The label says
    whether the customer churned on a day in ``[s, s + horizon_days)``, by the churn
    definition evaluated on the last day of that horizon.

    Parameters
    ----------
    ds : the dataset.
    dates : snapshot dates.
    horizon_days : H, the label window.
    names : features to compute (default: all available).
    max_customers : keep a random subset of at most this many customers (seeded), for
        models that need not see every customer.
    seed : random seed for that subset.

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date``, the features, ``label`` (bool),
    ``label_churned_at`` (the churn date within the horizon, else NaT) and
    ``label_complete`` (the horizon ends on or before the dataset's ``as_of``).
    """
    names = list(available(ds) if names is None else names)
    as_of = pd.Timestamp(ds.params.as_of)
    cache: dict[pd.Timestamp, pd.DataFrame] = {}
    work = ds
    if max_customers is not None:
        ids = np.sort(ds["customers"].select("customer_id").to_pandas()["customer_id"].to_numpy())
        if len(ids) > max_customers:
            rng = np.random.default_rng(seed)
            # the sample's rows only: ~45 churn-status and one feature query read 2% of the
            # events at 1M customers, not all of them
            work = ds.subset(rng.choice(ids, size=max_customers, replace=False))
    parts = []
    one = pd.Timedelta(days=1)
    for raw in progress.bar(dates, "snapshot queries", unit="date"):
        s = pd.Timestamp(raw).normalize()
        before = _status_at(work, s - one, cache)
        live = before[(before.acquired_at < s) & before.churned_at.isna()]
        end = min(s + pd.Timedelta(days=horizon_days) - one, as_of)
        after = _status_at(work, end, cache).set_index("customer_id").churned_at
        frame = pd.DataFrame({"customer_id": live.customer_id.to_numpy(), "snapshot_date": s})
        churned_at = after.reindex(frame.customer_id).to_numpy()
        in_window = pd.Series(churned_at).between(s, end).to_numpy()
        frame["label_churned_at"] = pd.to_datetime(np.where(in_window, churned_at, pd.NaT))
        frame["label"] = in_window
        frame["label_complete"] = s + pd.Timedelta(days=horizon_days) - one <= as_of
        parts.append(frame)
    pairs = pd.concat(parts, ignore_index=True)
    if pairs.empty:
        cols = [
            "customer_id",
            "snapshot_date",
            *names,
            "label",
            "label_churned_at",
            "label_complete",
        ]
        return pd.DataFrame(columns=cols)
    feats = to_frame(feature_expr(work, pairs[["customer_id", "snapshot_date"]], names), names)
    if work is not ds:
        work.close()
    out = pairs.merge(feats, on=["customer_id", "snapshot_date"], how="left", validate="1:1")
    out = out[
        ["customer_id", "snapshot_date", *names, "label", "label_churned_at", "label_complete"]
    ]
    return out.sort_values(["snapshot_date", "customer_id"]).reset_index(drop=True)


def split(
    snap: pd.DataFrame, test_months: int, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Earlier snapshots to fit on, later ones to judge on, with no overlap in outcomes.

    The test period is the last ``test_months`` snapshot dates. A training snapshot is kept
    only if its label window ``[s, s + horizon)`` ends before the test period starts, so
    nothing a model learns from happened during the period it is judged on.

    Returns
    -------
    (train, test, first test date)
    """
    dates = np.sort(snap.snapshot_date.unique())
    if len(dates) < 2:
        raise ValueError(
            "need at least two snapshot dates to fit on one period and judge on a later one"
        )
    k = min(test_months, len(dates) - 1)
    start = pd.Timestamp(dates[-k])
    train = snap[snap.snapshot_date + pd.Timedelta(days=horizon_days) <= start]
    test = snap[snap.snapshot_date >= start]
    return train, test, start
