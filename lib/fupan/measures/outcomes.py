"""Who churned, when, and why: the churn definition every chapter shares.

The business model in params decides what churn means:

``non_contractual``
    a customer is lost once ``dormancy_days`` pass without an order; the churn date is the
    day the dormancy completed (last order + dormancy), the day the business could know.
``contractual``
    a customer is lost when their last contract ended and no new one started within
    ``grace_days``; the churn date is that contract's ``end_date``.

Recorded ``churn_events`` take precedence where present, unless the customer ordered again
after the recorded date (a win-back). Everything is computed in the query engine from data
on or before ``as_of``; pandas receives one row per customer.
"""

from __future__ import annotations

import datetime as dt
import weakref
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from fupan.io import cache, engine
from fupan.io.dataset import Dataset


def _as_date(value: str | dt.date | pd.Timestamp) -> dt.date:
    return pd.Timestamp(value).date()


def churn_status(ds: Dataset, as_of: str | dt.date | pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per customer acquired by ``as_of``: churned or not, when, and the recorded reason.

    Parameters
    ----------
    ds : the dataset.
    as_of : the cut date (default: the params' ``as_of``); only data on or before it is used.

    Returns
    -------
    DataFrame with ``customer_id, acquired_at, tier, first_order, last_order, orders, churned,
    churned_at, source`` (recorded | dormancy | contract | None), ``reason, competitor,
    lost_value, won_back``.
    """
    cut = _as_date(as_of if as_of is not None else ds.params.as_of)
    # Chapters 2, 4 and 5 each ask for the status at the same month ends: once per run.
    return cache.memo(ds, "outcomes.churn_status", [cut.isoformat()], lambda: _status(ds, cut))


def _status(ds: Dataset, cut: dt.date) -> pd.DataFrame:
    """:func:`churn_status` at one date: a dormancy date for every customer, a contract's
    end where the business is contractual, a recorded churn where the data records one."""
    prepared = _prepared(ds)
    if prepared is not None:
        return _status_frame(prepared.run(cut))
    return _status_frame(engine.to_pandas(_status_query(ds, ibis.literal(cut))))


def _status_query(ds: Dataset, lit: ir.Value) -> ir.Table:
    """The status query at the date ``lit``, one row per customer by id."""
    base = _dormancy(ds, lit)
    if ds.params.business_model == "contractual" and ds.has("contracts"):
        base = _contract_ends(ds, base, lit)
    out = _churn_dates(_recorded_churn(ds, base, lit))
    # a customer without orders has a count of 0, not null: keeps the column off Ibis' slow
    # per-value path for nullable integers
    out = out.mutate(orders=out.orders.fill_null(0))
    return out.select(_STATUS_COLUMNS).order_by("customer_id")


#: The status query is compiled once with this date as the cut, and each of its occurrences
#: in the SQL becomes the date parameter: a date the query names nowhere else (its other
#: literals are intervals, and data values never appear in SQL).
SENTINEL = dt.date(1001, 1, 1)


def _cut_uses(ds: Dataset) -> int:
    """How often the status query's SQL compares with the cut date: customers acquired,
    orders placed and the dormancy come by it (3); contracts started by it and a contract
    ended with its grace by it, the latter rendered twice (in "ended" and in "running",
    3); churn events recorded by it (1)."""
    uses = 3
    if ds.params.business_model == "contractual" and ds.has("contracts"):
        uses += 3
    return uses + (1 if ds.has("churn_events") else 0)


@dataclass(frozen=True)
class _Prepared:
    """The status query compiled once, run per date as a DuckDB prepared statement."""

    backend: Any
    sql: str
    expr: ir.Table

    def run(self, cut: dt.date) -> pd.DataFrame:
        con = self.backend.con
        table = engine.fetch_arrow(
            self.backend, lambda: con.execute(self.sql, [cut]).fetch_arrow_table()
        )
        return engine.arrow_to_pandas(table, self.expr)


# One compiled query per dataset (Ibis building and compiling it was ~45 ms a date,
# snapshots ask for ~45 dates); by id, as a Dataset is not hashable, dropped with it.
_PREPARED: dict[int, _Prepared | None] = {}


def _prepared(ds: Dataset) -> _Prepared | None:
    """``ds``'s compiled status query, or ``None`` where the Ibis path must run: another
    engine than DuckDB, or SQL that does not hold the cut date exactly where expected."""
    key = id(ds)
    if key not in _PREPARED:
        _PREPARED[key] = _compile(ds)
        weakref.finalize(ds, _PREPARED.pop, key, None)
    return _PREPARED[key]


def _compile(ds: Dataset) -> _Prepared | None:
    if getattr(ds.con, "name", None) != "duckdb":
        return None
    import sqlglot

    expr = _status_query(ds, ibis.literal(SENTINEL))
    sql = str(ibis.to_sql(expr, dialect="duckdb"))
    # the sentinel as this Ibis renders a date literal (MAKE_DATE(1001, 1, 1) in Ibis 12)
    alone = sqlglot.parse_one(
        str(ibis.to_sql(ibis.literal(SENTINEL), dialect="duckdb")), read="duckdb"
    )
    token = alone.expressions[0].this.sql(dialect="duckdb")
    # a count other than the comparisons the query makes means Ibis folded, repeated or
    # moved one of them: the parameter could then stand where the date does not
    if sql.count(token) != _cut_uses(ds):
        return None
    return _Prepared(ds.con, sql.replace(token, "$1"), expr)


_STATUS_COLUMNS = [
    "customer_id",
    "acquired_at",
    "tier",
    "first_order",
    "last_order",
    "orders",
    "churned_at",
    "source",
    "reason",
    "competitor",
    "lost_value",
    "won_back",
]


def _dormancy(ds: Dataset, lit: ir.Value) -> ir.Table:
    """Customers acquired by the cut, their orders and the day their dormancy makes them
    lost (``derived_at``, when it has come by the cut)."""
    params = ds.params
    customers = ds["customers"].filter(lambda t: t.acquired_at <= lit)
    orders = ds["orders"].filter(lambda t: t.order_date <= lit)
    per = orders.group_by("customer_id").aggregate(
        first_order=orders.order_date.min(),
        last_order=orders.order_date.max(),
        orders=orders.count(),
    )
    base = (
        customers.select("customer_id", "acquired_at", "tier")
        .left_join(per, "customer_id")
        .drop("customer_id_right")
    )
    last_active = ibis.coalesce(base.last_order, base.acquired_at)
    dormancy = params.churn_definition.dormancy_days
    dormant_at = last_active + ibis.interval(days=dormancy)
    return base.mutate(
        derived_at=ibis.ifelse(
            dormant_at <= lit, dormant_at.cast("date"), ibis.null().cast("date")
        ),
        derived_source=ibis.literal("dormancy"),
    )


def _contract_ends(ds: Dataset, base: ir.Table, lit: ir.Value) -> ir.Table:
    """A contractual customer's churn is her last contract's end, once the grace days have
    passed; while a contract runs she is not lost, however dormant."""
    c = ds["contracts"].filter(lambda t: t.start_date <= lit)
    last = c.group_by("customer_id").aggregate(last_end=c.end_date.max())
    grace = ds.params.churn_definition.grace_days
    base = base.left_join(last, "customer_id").drop("customer_id_right")
    ended = base.last_end.notnull() & ((base.last_end + ibis.interval(days=grace)) <= lit)
    running = base.last_end.notnull() & ~ended
    return base.mutate(
        derived_at=ibis.ifelse(
            ended,
            base.last_end,
            ibis.ifelse(running, ibis.null().cast("date"), base.derived_at),
        ),
        derived_source=ibis.ifelse(
            base.last_end.notnull(), ibis.literal("contract"), ibis.literal("dormancy")
        ),
    ).drop("last_end")


def _recorded_churn(ds: Dataset, base: ir.Table, lit: ir.Value) -> ir.Table:
    """Each customer's latest recorded churn by the cut (``rec_at``) with its reason,
    competitor and lost value; nulls without a ``churn_events`` table."""
    if not ds.has("churn_events"):
        return base.mutate(
            rec_at=ibis.null().cast("date"),
            reason=ibis.null().cast("string"),
            competitor=ibis.null().cast("string"),
            lost_value=ibis.null().cast("float64"),
        )
    ev = ds["churn_events"].filter(lambda t: t.churned_at <= lit)
    latest = ev.group_by("customer_id").aggregate(rec_at=ev.churned_at.max())
    ev = ev.inner_join(
        latest, [ev.customer_id == latest.customer_id, ev.churned_at == latest.rec_at]
    )
    ev = ev.group_by("customer_id").aggregate(
        rec_at=ev.rec_at.max(),
        reason=ev.reason.max(),
        competitor=ev.competitor.max()
        if "competitor" in ev.columns
        else ibis.null().cast("string"),
        lost_value=ev.lost_value.max()
        if "lost_value" in ev.columns
        else ibis.null().cast("float64"),
    )
    return base.left_join(ev, "customer_id").drop("customer_id_right")


def _churn_dates(base: ir.Table) -> ir.Table:
    """The churn date and its source: a recorded churn, unless won back, else the rule's."""
    won_back = base.rec_at.notnull() & base.last_order.notnull() & (base.last_order > base.rec_at)
    recorded = base.rec_at.notnull() & ~won_back
    # A win-back (an order after the recorded churn) reopens the relationship: from then on the
    # business model's own rule decides, so a won-back customer who goes dormant again is lost.
    return base.mutate(
        churned_at=ibis.ifelse(recorded, base.rec_at, base.derived_at),
        source=ibis.ifelse(
            recorded,
            ibis.literal("recorded"),
            ibis.ifelse(base.derived_at.notnull(), base.derived_source, ibis.null().cast("string")),
        ),
        won_back=won_back,
    )


def _status_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The status in pandas from the query's result; a customer not lost has no churn
    details."""
    df["orders"] = df["orders"].fillna(0).astype(int)
    for col in ("acquired_at", "first_order", "last_order", "churned_at"):
        df[col] = pd.to_datetime(df[col])
    df["churned"] = df["churned_at"].notna()
    df.loc[~df.churned, ["reason", "competitor", "lost_value"]] = None
    return df


def period_churn(status: pd.DataFrame, start: str | dt.date, end: str | dt.date) -> pd.DataFrame:
    """Customers at risk at ``start`` with a flag for churn in ``(start, end]``.

    ``status`` is :func:`churn_status` at ``end`` (or later). A customer is at risk if acquired
    on or before ``start`` and not churned by then.
    """
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    at_risk = status[(status.acquired_at <= s) & ~(status.churned_at <= s)].copy()
    at_risk["churned_in_period"] = (at_risk.churned_at > s) & (at_risk.churned_at <= e)
    return at_risk


def rate_with_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """A proportion with its Wilson score interval (well-behaved for small n and rates near 0).

    The one rate-with-interval of the package: every chapter's rates, bands and bootstrap
    tables call it. The limits always hold the estimate (``low <= rate <= high``, within
    [0, 1]): at a rate of 0 or 1 rounding can put a Wilson limit a hair beyond it, and a
    chart's error bar drawn from the difference must never be negative. ``n == 0`` gives
    NaN for all three.
    """
    if n == 0:
        return (float("nan"),) * 3
    p = successes / n
    # imported here: scipy.stats costs ~0.6 CPU s in a kernel that never asks for an interval
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # at p = 0 or 1 the Wilson bound equals p only up to rounding; clamp so the interval
    # always holds the estimate (a chart's error bar must never be negative)
    return p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def churn_rate(
    status: pd.DataFrame,
    start: str | dt.date,
    end: str | dt.date,
    by: str | list[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Churn rate over ``(start, end]`` with a Wilson interval, overall or by group.

    An interval longer or shorter than a year is not annualised: pass a one-year window for
    an annual rate.
    """
    at_risk = period_churn(status, start, end)
    groups = [("all", at_risk)] if by is None else list(at_risk.groupby(by, observed=True))
    rows = []
    for key, g in groups:
        n, k = len(g), int(g.churned_in_period.sum())
        p, lo, hi = rate_with_ci(k, n, level)
        rows.append(
            {"group": key, "at_risk": n, "churned": k, "rate": p, "ci_low": lo, "ci_high": hi}
        )
    return pd.DataFrame(rows)
