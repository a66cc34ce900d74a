"""KPI catalogue, formulas, red/amber/green status and the monthly KPI history (chapter 5).

Every KPI has a definition, a formula, a unit, the direction that is good, and a target and
alert threshold from params (``benchmarks.kpi_targets``, defaults below). A month's value
uses only data on or before that month's end (the as-of rule), so a month computed today
from the full data equals what a run at that month end would have said: every query
filters events, customers (acquired by then) and ticket responses (known by then) to the
month end. Per-event work runs in the query engine over a grid of months (one row per
month, or per customer and month); pandas sees at most one row per customer and month.

Status
    ``green`` at or better than target, ``amber`` between target and alert threshold,
    ``red`` across the alert threshold (an alert), ``grey`` when there is no value (an
    optional table or a chapter model is missing, too little history) or the month's data
    is incomplete.
History
    ``<reports>/kpi_history.parquet``: one row per (month, kpi) with the value, status and
    the fingerprint of the inputs that produced it, replaced month by month atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fupan.core.params import Benchmarks, Params
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import metrics, outcomes
from fupan.measures.segments import years_before

Unit = Literal["pct", "nps", "score", "days", "money"]
Direction = Literal["higher", "lower"]
STATUSES = ("green", "amber", "red", "grey")
# Event tables whose arrival is checked month by month, with their main date column.
EVENT_DATES = {
    "orders": "order_date",
    "contracts": "start_date",
    "touches": "touched_at",
    "tickets": "opened_at",
    "surveys": "surveyed_at",
    "activity": "period_start",
}
RECENT_DAYS = 14  # the volume check compares a month's last two weeks ...
BASELINE_DAYS = 84  # ... with the twelve weeks before them
QUARTER_DAYS = 90


@dataclass(frozen=True)
class Kpi:
    """One KPI of the catalogue.

    Attributes
    ----------
    key : identifier (results.json, history, label keys ``kpi.name.<key>``, ``kpi.def.<key>``,
        ``kpi.formula.<key>``).
    group : which trend chart it belongs to.
    unit : ``pct`` (a share 0-1), ``nps`` (-100..100), ``score`` (1-5), ``days``, ``money``.
    direction : ``higher`` or ``lower`` is good.
    sources : tables whose completeness in the month the value depends on.
    needs : optional tables without which it cannot be computed.
    model : the chapter model it needs (``ltv`` or ``health``), if any.
    decimals : decimals for rates too small for the default (monthly churn: 1.06%).
    """

    key: str
    group: str
    unit: Unit
    direction: Direction
    sources: tuple[str, ...]
    needs: tuple[str, ...] = ()
    model: str | None = None
    decimals: int | None = None  # shown with more decimals than the run's default


CATALOGUE: dict[str, Kpi] = {
    k.key: k
    for k in (
        Kpi("churn_rate_monthly", "retention", "pct", "lower", ("orders",), decimals=2),
        Kpi("churn_rate_t12", "retention", "pct", "lower", ("orders",)),
        Kpi(
            "renewal_rate_top_n", "retention", "pct", "higher", ("contracts",), needs=("contracts",)
        ),
        Kpi("renewal_rate", "retention", "pct", "higher", ("contracts",), needs=("contracts",)),
        Kpi("grr", "revenue", "pct", "higher", ("orders",)),
        Kpi("nrr", "revenue", "pct", "higher", ("orders",)),
        Kpi("repurchase_rate", "revenue", "pct", "higher", ("orders",)),
        Kpi("winback_rate", "revenue", "pct", "higher", ("orders",)),
        Kpi("nps", "experience", "nps", "higher", ("surveys",), needs=("surveys",)),
        Kpi("csat", "experience", "score", "higher", ("surveys",), needs=("surveys",)),
        Kpi(
            "first_response_median", "experience", "days", "lower", ("tickets",), needs=("tickets",)
        ),
        Kpi("sla_compliance", "experience", "pct", "higher", ("tickets",), needs=("tickets",)),
        Kpi(
            "touch_coverage",
            "experience",
            "pct",
            "higher",
            ("touches", "orders"),
            needs=("touches",),
        ),
        Kpi("avg_clv", "value", "money", "higher", ("orders",), model="ltv"),
        Kpi("red_band_share", "value", "pct", "lower", ("orders",), model="health"),
        Kpi("ltv_at_risk", "value", "money", "lower", ("orders",), model="ltv"),
    )
}
GROUPS = ("retention", "revenue", "experience", "value")
TARGET_FIELDS = ("target", "alert", "target_yoy", "alert_yoy")


# --------------------------------------------------------------------------------------
# Months


def parse_month(value: str | dt.date | pd.Timestamp) -> str:
    """``YYYY-MM`` for a month given as ``2026-10``, ``2026-10-31`` or a date.

    Raises
    ------
    ValueError
        for anything that is not a month.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 7:
                return pd.Period(text, freq="M").strftime("%Y-%m")
            return pd.Timestamp(text).strftime("%Y-%m")
        except (ValueError, TypeError):
            raise ValueError(f"'{value}' is not a month; use YYYY-MM, e.g. 2026-10") from None
    return pd.Timestamp(value).strftime("%Y-%m")


def month_end(month: str) -> dt.date:
    """The last day of a ``YYYY-MM`` month."""
    return pd.Period(parse_month(month), freq="M").end_time.date()


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, inclusive."""
    a, b = pd.Period(parse_month(first), freq="M"), pd.Period(parse_month(last), freq="M")
    if b < a:
        raise ValueError(f"month range is empty: {first} is after {last}")
    return [p.strftime("%Y-%m") for p in pd.period_range(a, b, freq="M")]


def shift_month(month: str, k: int) -> str:
    return (pd.Period(parse_month(month), freq="M") + k).strftime("%Y-%m")


def _minus_months(end: dt.date, k: int) -> dt.date:
    """``end`` moved back ``k`` months; a month end maps to a month end (Feb 28/29 safe)."""
    ts = pd.Timestamp(end)
    if ts.is_month_end:
        return (pd.Period(ts, freq="M") - k).end_time.date()
    return (ts - pd.DateOffset(months=k)).date()


@dataclass(frozen=True)
class Window:
    """The dates one month's KPIs are computed over (all bounds: ``(lo, hi]``)."""

    month: str
    end: dt.date  # the month end, or as_of when the month is not over
    prev_end: dt.date  # the previous month's end
    y1: dt.date  # twelve months before end
    y2: dt.date  # twenty-four months before end
    survey_lo: dt.date
    touch_lo: dt.date
    partial: bool  # the month was not over at as_of

    @classmethod
    def of(cls, month: str, params: Params) -> Window:
        month = parse_month(month)
        full_end = month_end(month)
        end = min(full_end, params.as_of)
        first = pd.Period(month, freq="M").start_time.date()
        if end < first:
            raise ValueError(f"month {month} starts after as_of {params.as_of}")
        return cls(
            month=month,
            end=end,
            prev_end=first - dt.timedelta(days=1),
            # the catalogue's year (fupan.measures.metrics): the same calendar day a year earlier
            y1=years_before(end, 1),
            y2=years_before(end, 2),
            survey_lo=_minus_months(end, params.kpi.survey_window_months),
            touch_lo=metrics.touch_window(end, params.diagnosis.coverage_days)[0],
            partial=end < full_end,
        )


def report_month(params: Params) -> str:
    """The month a run reports on: the month of ``as_of``."""
    return parse_month(params.as_of)


def _grid(windows: list[Window]) -> ir.Table:
    rows = []
    for w in windows:
        rows.append(
            {
                "m_month": w.month,
                "m_end": w.end,
                "m_prev": w.prev_end,
                "m_y1": w.y1,
                "m_y2": w.y2,
                "m_survey": w.survey_lo,
                "m_touch": w.touch_lo,
                # epoch seconds of the month's first instant and of the instant after it ends
                "m_lo_s": _epoch(w.prev_end + dt.timedelta(days=1)),
                "m_hi_s": _epoch(w.end + dt.timedelta(days=1)),
            }
        )
    frame = pd.DataFrame(rows)
    for col in ("m_end", "m_prev", "m_y1", "m_y2", "m_survey", "m_touch"):
        frame[col] = pd.to_datetime(frame[col]).dt.date
    schema = {
        "m_month": "string",
        "m_end": "date",
        "m_prev": "date",
        "m_y1": "date",
        "m_y2": "date",
        "m_survey": "date",
        "m_touch": "date",
        "m_lo_s": "int64",
        "m_hi_s": "int64",
    }
    return ibis.memtable(frame, schema=schema)


def _epoch(day: dt.date) -> int:
    return int((pd.Timestamp(day) - pd.Timestamp("1970-01-01")).total_seconds())


# --------------------------------------------------------------------------------------
# Targets and status


def default_targets(b: Benchmarks) -> dict[str, dict[str, float]]:
    """Targets when ``benchmarks.kpi_targets`` does not set them, derived from the benchmarks.

    Money KPIs have no absolute default (it depends on the business): their default is
    relative to the same month a year earlier (``target_yoy`` / ``alert_yoy``).
    """
    monthly = lambda annual: round(1 - (1 - annual) ** (1 / 12), 4)  # noqa: E731
    return {
        "churn_rate_monthly": {
            "target": monthly(b.churn_rate),
            "alert": monthly(1.5 * b.churn_rate),
        },
        "churn_rate_t12": {"target": b.churn_rate, "alert": round(1.5 * b.churn_rate, 4)},
        "renewal_rate_top_n": {
            "target": b.top_n_renewal_target,
            "alert": round(b.top_n_renewal_target - 0.10, 4),
        },
        "renewal_rate": {"target": b.renewal_rate, "alert": round(b.renewal_rate - 0.10, 4)},
        "grr": {"target": 0.90, "alert": 0.80},
        "nrr": {
            "target": b.net_revenue_retention,
            "alert": round(b.net_revenue_retention - 0.10, 4),
        },
        "repurchase_rate": {"target": 0.32, "alert": 0.15},
        "winback_rate": {"target": 0.12, "alert": 0.05},
        "nps": {"target": b.nps_target, "alert": b.nps_alert_below},
        "csat": {"target": 4.2, "alert": 3.8},
        "first_response_median": {
            "target": b.first_response_days,
            "alert": round(1.5 * b.first_response_days, 2),
        },
        "sla_compliance": {"target": 0.90, "alert": 0.80},
        "touch_coverage": {"target": 0.80, "alert": 0.60},
        "avg_clv": {"target_yoy": 0.0, "alert_yoy": -0.10},
        "red_band_share": {"target": 0.10, "alert": 0.15},
        "ltv_at_risk": {"target_yoy": 0.0, "alert_yoy": 0.20},
    }


def targets(params: Params) -> dict[str, dict[str, float | None]]:
    """Target and alert threshold of every KPI: defaults overlaid with ``benchmarks.kpi_targets``.

    Each KPI gets ``target``, ``alert`` (absolute) and ``target_yoy``, ``alert_yoy`` (change
    vs the same month a year earlier); a KPI uses the absolute pair when it has one.

    Raises
    ------
    ValueError
        for an unknown KPI or field in ``kpi_targets``, or thresholds in the wrong order.
    """
    out: dict[str, dict[str, float | None]] = {}
    defaults = default_targets(params.benchmarks)
    given = params.benchmarks.kpi_targets
    problems = []
    for key, spec in given.items():
        if key not in CATALOGUE:
            near = difflib.get_close_matches(key, list(CATALOGUE), n=1)
            hint = f" - did you mean '{near[0]}'?" if near else f"; known: {', '.join(CATALOGUE)}"
            problems.append(f"benchmarks.kpi_targets: unknown KPI '{key}'{hint}")
        for f in spec:
            if f not in TARGET_FIELDS:
                problems.append(
                    f"benchmarks.kpi_targets.{key}: unknown field '{f}' (use {', '.join(TARGET_FIELDS)})"
                )
    for key, kpi in CATALOGUE.items():
        spec = dict(given.get(key) or defaults[key])
        row = {f: (float(spec[f]) if spec.get(f) is not None else None) for f in TARGET_FIELDS}
        for t, a in ((row["target"], row["alert"]), (row["target_yoy"], row["alert_yoy"])):
            if t is not None and a is not None and not _better_or_equal(t, a, kpi.direction):
                word = "below" if kpi.direction == "higher" else "above"
                problems.append(
                    f"benchmarks.kpi_targets.{key}: the alert threshold {a} must be {word} "
                    f"the target {t} ({kpi.direction} is better)"
                )
        out[key] = row
    if problems:
        raise ValueError("\n".join(problems))
    return out


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a >= b if direction == "higher" else a <= b


def status_of(
    value: float | None, target: float | None, alert: float | None, direction: str
) -> str:
    """``green`` at or better than target, ``amber`` up to the alert threshold, ``red`` past it.

    ``grey`` when the value or the target is missing. The threshold itself counts as amber
    (NPS exactly 40 with "alert below 40" is not an alert).
    """
    if value is None or target is None or (isinstance(value, float) and math.isnan(value)):
        return "grey"
    if _better_or_equal(value, target, direction):
        return "green"
    if alert is None or _better_or_equal(value, alert, direction):
        return "amber"
    return "red"


# --------------------------------------------------------------------------------------
# Computation context


# What the KPIs read of a churn status (churn rates, win-back, active customers, facts).
_STATUS_COLUMNS = ("customer_id", "acquired_at", "churned_at", "churned", "last_order")


class _Ctx:
    """One dataset, with per-date caches (churn status, CLV, at-risk lists)."""

    def __init__(
        self,
        ds: Dataset,
        model_months: set[str] | None = None,
        health_months: set[str] | None = None,
    ):
        self.ds = ds
        self.params = ds.params
        self.model_months = model_months
        self.health_months = health_months
        self._status: dict[dt.date, pd.DataFrame] = {}
        self._active: dict[dt.date, pd.Series] = {}
        self._orders: dict[tuple[dt.date, ...], _OrderSegments | None] = {}
        self._clv: dict[dt.date, tuple[pd.Series | None, str | None]] = {}
        self._risk: dict[dt.date, pd.DataFrame] = {}
        self._health: dict[tuple[dt.date, dt.date | None], tuple[Any, str | None]] = {}

    def status(self, day: dt.date) -> pd.DataFrame:
        """:func:`fupan.measures.outcomes.churn_status` at ``day``, with the columns the KPIs read.

        A report holds the status at some 36 month ends; at a million customers the full
        frames (reasons, competitors, sources) took 5 GB together.
        """
        if day not in self._status:
            full = outcomes.churn_status(self.ds, day)
            self._status[day] = full[list(_STATUS_COLUMNS)].copy()
        return self._status[day]

    def release(self, days: set[dt.date]) -> None:
        """Forget what was kept for dates other than ``days``, and the order segments.

        Once the trend's months are computed only the report month's dates are read again;
        at a million customers the month-end statuses, their active ids and the order
        segments held some 2 GB that the at-risk scoring would otherwise sit on top of.
        """
        for cache in (self._status, self._active, self._risk, self._clv):
            for day in [d for d in cache if d not in days]:
                del cache[day]
        self._orders.clear()

    def active(self, day: dt.date) -> pd.DataFrame:
        """Customers acquired by ``day`` and not churned by then."""
        s = self.status(day)
        return s[~s.churned]

    def order_segments(self, bounds: tuple[dt.date, ...]) -> _OrderSegments | None:
        """:func:`_order_segments` for these bounds, once (revenue and top-N share it)."""
        if bounds not in self._orders:
            self._orders[bounds] = _order_segments(self, list(bounds))
        return self._orders[bounds]

    def active_ids(self, day: dt.date) -> pd.Series:
        """The ids of :meth:`active`, kept per day (several KPIs count them)."""
        if day not in self._active:
            s = self.status(day)
            self._active[day] = s.customer_id[~s.churned.to_numpy()]
        return self._active[day]

    def customers(self) -> ir.Table:
        return self.ds["customers"].select(cid="customer_id", acq="acquired_at", ctier="tier")

    def events(self, table: str) -> ir.Table:
        """An event table with its customer's acquisition date and tier joined on."""
        t = self.ds[table]
        c = self.customers()
        return t.join(c, t.customer_id == c.cid)

    def sla_days(self, tier: ir.StringValue) -> ir.FloatingValue:
        b = self.params.benchmarks
        cases = [(tier == k, float(v)) for k, v in b.sla_first_response_days.items()]
        fallback = float(b.first_response_days)
        return ibis.cases(*cases, else_=fallback) if cases else ibis.literal(fallback)


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of an Arrow column's values and the distinct values they index."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    enc = pc.dictionary_encode(column)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["month", "kpi", "value", "n", "reason"])


def _na(windows: list[Window], key: str, reason: str) -> list[dict[str, Any]]:
    return [
        {"month": w.month, "kpi": key, "value": None, "n": None, "reason": reason} for w in windows
    ]


def _val(
    month: str, key: str, value: float | None, n: float | None, reason: str | None = None
) -> dict[str, Any]:
    bad = value is None or (isinstance(value, float) and not math.isfinite(value))
    return {
        "month": month,
        "kpi": key,
        "value": None if bad else float(value),
        "n": None if n is None else float(n),
        "reason": (reason or "no_data") if bad else None,
    }


def _by_month(expr: ir.Table) -> dict[str, dict[str, Any]]:
    df = engine.to_pandas(expr)
    return {r["m_month"]: r for r in df.to_dict(orient="records")}


# --------------------------------------------------------------------------------------
# KPI formulas. Each takes the context and the month windows and returns rows
# (month, kpi, value, n, reason); ``n`` is the denominator the value rests on.


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
    segs_of = ctx.order_segments(tuple(bounds))
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


# --------------------------------------------------------------------------------------
# Customer value and risk


def clv_valuation(ds: Dataset, as_of: dt.date) -> Any:
    """Chapter 3's valuation (:mod:`fupan.chapters.clv`) from data on or before ``as_of``.

    Its snapshot is exclusive, so it is taken on the day after ``as_of``: the same valuation
    chapter 3 calls "now" for a run as of the month end.

    Raises
    ------
    ImportError
        when chapter 3's module is not installed.
    ValueError
        when the models cannot be fitted or did not converge (too little data).
    """
    from fupan.chapters import clv as chapter3

    kind, _ = chapter3.choose_model(ds.params, ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported through info['converged']
        val = chapter3.Valuer(ds, kind).valuation(pd.Timestamp(as_of) + pd.Timedelta(days=1))
    if not val.info.get("converged", True):
        raise ValueError("the CLV models did not converge")
    return val


def customer_clv(ds: Dataset, as_of: dt.date) -> pd.Series:
    """Discounted CLV per customer, from data on or before ``as_of``.

    Chapter 3's valuation when :mod:`fupan.chapters.clv` is installed (so both chapters quote the
    same CLV); otherwise BG/NBD for purchases and Gamma-Gamma for spend (:mod:`fupan.models.ltv`)
    over ``ltv.horizon_years`` with ``ltv.margin`` and ``ltv.discount_rate_annual``
    (customers whose refunds outweigh their repeat purchases have their repeat spend counted
    as zero; customers whose first purchase is on ``as_of`` have no CLV yet).

    Raises
    ------
    ValueError
        when the models cannot be fitted or their fit does not converge (e.g. too few
        customers with a repeat purchase).
    """
    try:
        return clv_valuation(ds, as_of).values["clv"].astype(float).rename("clv")
    except ImportError:
        pass
    from fupan.models.ltv import BetaGeo, GammaGamma, summary_from_orders

    p = ds.params.ltv
    o = ds["orders"]
    c = (
        ds["customers"]
        .filter(lambda t: t.acquired_at <= ibis.literal(as_of))
        .select(cid="customer_id")
    )
    o = o.join(c, o.customer_id == c.cid).select("customer_id", "order_date", "amount")
    summ = summary_from_orders(o, as_of + dt.timedelta(days=1), freq=p.time_unit)
    summ = summ[summ["T"] > 0]
    if summ.empty:
        raise ValueError("no customer has an order")
    monetary = summ.monetary.clip(lower=0.0)
    fit_rows = summ[(summ.frequency > 0) & (summ.monetary > 0)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bg = BetaGeo().fit(summ)
        gg = GammaGamma().fit(fit_rows.frequency, fit_rows.monetary)
    # A fit that did not converge gives no number worth reporting (too little data).
    failed = [str(w.message) for w in caught if "did not converge" in str(w.message)]
    if failed:
        raise ValueError(failed[0])
    horizon = max(1, int(round(p.horizon_years * 12)))
    value = gg.clv(
        bg,
        summ.frequency,
        summ.recency,
        summ["T"],
        monetary,
        time_unit=p.time_unit,
        horizon=horizon,
        period="M",
        discount_rate=p.discount_rate_annual,
        discount_period="Y",
        margin=p.margin,
    )
    return pd.Series(np.asarray(value, dtype=float), index=summ.index, name="clv")


# Optional chapter models must never stop the monthly report: a failure makes their KPIs
# "not available" with the reason.
_MODEL_ERRORS = (
    ValueError,
    RuntimeError,
    ArithmeticError,
    KeyError,
    IndexError,
    np.linalg.LinAlgError,
)


def _clv(ctx: _Ctx, day: dt.date) -> tuple[pd.Series | None, str | None]:
    if day not in ctx._clv:
        try:
            ctx._clv[day] = (customer_clv(ctx.ds, day), None)
        except ImportError:
            ctx._clv[day] = (None, "model:ltv")
        except _MODEL_ERRORS:
            # too little data to fit (early months, tiny data): the KPI is not available
            ctx._clv[day] = (None, "model_failed:ltv")
    return ctx._clv[day]


def _as_of_view(ds: Dataset, day: dt.date) -> Dataset:
    """The dataset with ``params.as_of`` moved back to ``day`` (same tables), for chapter
    models that read the run's date from the params."""
    if ds.params.as_of == day:
        return ds
    return dataclasses.replace(ds, params=ds.params.model_copy(update={"as_of": day}))


def health_bands(
    ds: Dataset, as_of: dt.date, before: dt.date | None = None
) -> tuple[Any, str | None]:
    """Health scores and bands from the churn chapter (:mod:`fupan.chapters.atrisk`), if installed.

    The health model is trained as of ``as_of`` (only snapshots whose labels are known by
    then) and scores every live customer at ``as_of``, and, with ``before``, at that earlier
    date with the same model and thresholds (to find customers newly in the red band).

    Returns
    -------
    ``({date: frame}, None)`` with frames ``customer_id, customer_name, account_manager, tier,
    score, band, churn_probability, reasons`` (reasons in words for the red band at
    ``as_of``, empty otherwise), or ``(None, why)``:
    ``disabled:health`` when ``kpi.at_risk_source`` is ``rules``, ``model:health`` when the
    module is missing, ``model_failed:health`` when it fails (for example too little data
    to train).

    Raises
    ------
    RuntimeError
        when ``kpi.at_risk_source`` is ``health`` and the health score is not available.
    """
    source = ds.params.kpi.at_risk_source
    if source == "rules":
        return None, "disabled:health"
    try:
        from fupan.chapters import atrisk  # built by the churn chapter
    except ImportError:
        atrisk = None
    if atrisk is None or not (hasattr(atrisk, "train") and hasattr(atrisk, "at_risk_lists")):
        if source == "health":
            raise RuntimeError(
                "kpi.at_risk_source is 'health' but fupan.chapters.atrisk is not installed"
            )
        return None, "model:health"
    view = _as_of_view(ds, as_of)
    everyone = ("red", "amber", "green")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = atrisk.train(view)
            # Only the red band's reasons are shown (the at-risk list); the earlier date
            # only says who was red then. Both dates are scored with one feature query.
            days: dict[dt.date, tuple[str, ...]] = {as_of: ("red",)}
            if before is not None and before != as_of:
                days[before] = ()
            lists = atrisk.at_risk_lists(view, days, model=model, bands=everyone)
            out = {d: lists[pd.Timestamp(d).normalize()] for d in days}
            if before is not None and before == as_of:
                out[before] = out[as_of]
    except _MODEL_ERRORS as exc:
        if source == "health":
            raise RuntimeError(
                f"kpi.at_risk_source is 'health' but the health model failed: {exc}"
            ) from exc
        return None, "model_failed:health"
    return out, None


def _health(ctx: _Ctx, day: dt.date, before: dt.date | None = None) -> tuple[Any, str | None]:
    key = (day, before)
    if key not in ctx._health:
        ctx._health[key] = health_bands(ctx.ds, day, before)
    return ctx._health[key]


REASON_CODES = ("overdue", "spend_drop", "detractor", "sla_breach")


def customer_facts(ds: Dataset, as_of: dt.date, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per active customer at ``as_of``: who, and their order rhythm (one engine query).

    Returns
    -------
    DataFrame ``customer_id, account_manager, tier, customer_name`` (if present), ``n_days``
    (purchase days), ``first_buy, last_order, days_since_order, usual_interval_days``,
    ``q_cur, q_prev`` (net spend in the last 90 days and the 90 before), ``spend_12m``.
    """
    day = pd.Timestamp(as_of).date()
    lit = ibis.literal(day)
    if status is None:
        status = outcomes.churn_status(ds, day)
    active = status.loc[~status.churned, ["customer_id"]]
    cust = ds["customers"].filter(lambda t: t.acquired_at <= lit)
    o = ds["orders"].filter(lambda t: t.order_date <= lit)
    ids = cust.select(cid="customer_id")
    o = o.join(ids, o.customer_id == ids.cid)
    age = lit.delta(o.order_date, unit="day")
    buy_day = ibis.ifelse(o.amount >= 0, o.order_date, ibis.null().cast("date"))
    per = engine.to_pandas(
        o.group_by("customer_id").aggregate(
            n_days=buy_day.nunique(),
            first_buy=buy_day.min(),
            last_order=buy_day.max(),
            q_cur=ibis.ifelse(age < QUARTER_DAYS, o.amount, 0.0).sum(),
            q_prev=ibis.ifelse(
                (age >= QUARTER_DAYS) & (age < 2 * QUARTER_DAYS), o.amount, 0.0
            ).sum(),
            spend_12m=ibis.ifelse(
                o.order_date > ibis.literal(_minus_months(day, 12)), o.amount, 0.0
            ).sum(),
        )
    )
    cols = ["customer_id", "account_manager", "tier"] + (
        ["customer_name"] if "customer_name" in cust.columns else []
    )
    info = engine.to_pandas(cust.select(*cols))
    df = active.merge(info, on="customer_id", how="left").merge(per, on="customer_id", how="left")
    df["n_days"] = df.n_days.fillna(0).astype(int)
    for col in ("first_buy", "last_order"):
        df[col] = pd.to_datetime(df[col])
    for col in ("q_cur", "q_prev", "spend_12m"):
        df[col] = df[col].fillna(0.0).astype(float)
    df["days_since_order"] = (pd.Timestamp(day) - df.last_order).dt.days
    span = (df.last_order - df.first_buy).dt.days
    df["usual_interval_days"] = np.where(
        df.n_days >= 2, span / (df.n_days - 1).clip(lower=1), np.nan
    )
    return df


def at_risk_list(ds: Dataset, as_of: dt.date, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Active customers showing warning signals at ``as_of`` (the rule-based interim list,
    used when the churn chapter's health score is not available).

    A customer is at risk when ``overdue``, or when two or more of the other signals fire.
    Signals (thresholds in ``params.kpi``), each a reason code:

    ``overdue``
        no purchase for more than ``at_risk_cadence_multiple`` times the customer's own
        usual interval (first to last purchase day / (purchase days - 1)), and for at least
        ``at_risk_min_days``; customers with a single purchase day are measured against the
        median interval of all repeat customers.
    ``spend_drop``
        net spend in the last 90 days below ``1 - at_risk_spend_drop`` times the 90 days
        before (which had spend).
    ``detractor``
        the latest survey answer in the last 12 months gave NPS 0-6.
    ``sla_breach``
        a ticket still unanswered at ``as_of`` past its tier's first-response SLA.

    Returns
    -------
    DataFrame, one row per customer at risk: ``customer_id, customer_name, account_manager,
    tier, last_order, days_since_order, usual_interval_days, spend_12m, reasons`` (codes
    joined by ``;``), sorted by account manager then 12-month spend (largest first).
    """
    k = ds.params.kpi
    day = pd.Timestamp(as_of).date()
    lit = ibis.literal(day)
    df = customer_facts(ds, day, status)
    repeat = df.loc[df.n_days >= 2, "usual_interval_days"]
    typical = float(repeat.median()) if len(repeat) else np.nan
    interval = df.usual_interval_days.fillna(typical)
    limit = np.maximum(k.at_risk_cadence_multiple * interval, k.at_risk_min_days)
    flags = pd.DataFrame(index=df.index)
    flags["overdue"] = (
        df.days_since_order.notna() & interval.notna() & (df.days_since_order > limit)
    )
    flags["spend_drop"] = (df.q_prev > 0) & (df.q_cur < (1 - k.at_risk_spend_drop) * df.q_prev)
    flags["detractor"] = False
    flags["sla_breach"] = False
    if ds.has("surveys"):
        s = ds["surveys"].filter(
            lambda t: (
                (t.surveyed_at <= lit) & (t.surveyed_at > ibis.literal(_minus_months(day, 12)))
            )
        )
        last = s.group_by("customer_id").aggregate(at=s.surveyed_at.max())
        s = s.join(last, [s.customer_id == last.customer_id, s.surveyed_at == last.at])
        det = engine.to_pandas(
            s.group_by(s.customer_id).aggregate(nps=s.nps.min()).filter(lambda t: t.nps <= 6)
        )
        flags["detractor"] = df.customer_id.isin(det.customer_id).to_numpy()
    if ds.has("tickets"):
        tk = ds["tickets"]
        ct = ds["customers"].select(cid="customer_id", ctier="tier")
        t = tk.join(ct, tk.customer_id == ct.cid)
        now_s = _epoch(day + dt.timedelta(days=1))
        opened = t.opened_at.epoch_seconds()
        unanswered = t.first_response_at.isnull() | (t.first_response_at.epoch_seconds() >= now_s)
        late = t.filter(
            (opened < now_s) & unanswered & (opened + _Ctx(ds).sla_days(t.ctier) * 86400.0 < now_s)
        )
        late = engine.to_pandas(late.select("customer_id").distinct())
        flags["sla_breach"] = df.customer_id.isin(late.customer_id).to_numpy()
    # Overdue alone is a strong signal; the others are common on their own (a detractor, one
    # slow quarter) and only flag a customer together.
    others = flags[["spend_drop", "detractor", "sla_breach"]].sum(axis=1)
    hit = flags.overdue | (others >= 2)
    reasons = (
        flags.apply(lambda r: ";".join(c for c in REASON_CODES if r[c]), axis=1)
        if len(flags)
        else ""
    )
    df["reasons"] = reasons
    out = df[hit.to_numpy()].copy()
    keep = [
        "customer_id",
        "customer_name",
        "account_manager",
        "tier",
        "last_order",
        "days_since_order",
        "usual_interval_days",
        "spend_12m",
        "reasons",
    ]
    out = out[[c for c in keep if c in out.columns]]
    out = out.sort_values(
        ["account_manager", "spend_12m", "customer_id"],
        ascending=[True, False, True],
        na_position="last",
    )
    return out.reset_index(drop=True)


def _risk(ctx: _Ctx, day: dt.date) -> pd.DataFrame:
    if day not in ctx._risk:
        ctx._risk[day] = at_risk_list(ctx.ds, day, status=ctx.status(day))
    return ctx._risk[day]


def health_at_risk(ctx: _Ctx, w: Window) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The month's at-risk list and the customers new on it since the previous month end.

    With the churn chapter's health score: customers in the red band (riskiest first, reasons
    in words), new = red now and scored but not red at the previous month end (same model
    and thresholds). Otherwise the interim rules of :func:`at_risk_list`, new = at risk now
    and active but not at risk at the previous month end.

    Returns
    -------
    (at_risk, new, source) with source ``health`` or ``rules``.
    """
    scored, _ = _health(ctx, w.end, w.prev_end)
    if scored is None:
        now = _risk(ctx, w.end)
        before = _risk(ctx, w.prev_end)
        active_before = ctx.active_ids(w.prev_end)
        fresh = now[
            ~engine.isin(now.customer_id, before.customer_id)
            & engine.isin(now.customer_id, active_before)
        ]
        return now, fresh.reset_index(drop=True), "rules"
    frame, prev = scored[w.end], scored[w.prev_end]
    facts = customer_facts(ctx.ds, w.end, ctx.status(w.end))
    facts = facts[
        ["customer_id", "last_order", "days_since_order", "usual_interval_days", "spend_12m"]
    ]
    red = frame[frame.band == "red"].merge(facts, on="customer_id", how="left")
    red["spend_12m"] = red.spend_12m.fillna(0.0)
    red = red.sort_values(["account_manager", "score", "customer_id"], na_position="last")
    red = red.reset_index(drop=True)
    was = prev.customer_id[(prev.band == "red").to_numpy()]
    fresh = red[~engine.isin(red.customer_id, was) & engine.isin(red.customer_id, prev.customer_id)]
    fresh = fresh.reset_index(drop=True)
    return red, fresh, "health"


MODEL_KPIS = tuple(k for k, v in CATALOGUE.items() if v.model)
HEALTH_KPIS = ("red_band_share", "ltv_at_risk")


def ltv_at_risk(ctx: _Ctx, w: Window) -> tuple[float | None, int | None, str | None]:
    """Chapter 3's LTV at risk (:func:`fupan.chapters.clv.at_risk`): the sum of churn probability x CLV
    over the customers at risk, with the churn chapter's red band and probabilities when the
    health score is available, else the CLV model's own view (P(alive) or renewal due)."""
    try:
        from fupan.chapters import clv as chapter3
    except ImportError:
        return None, None, "model:ltv"
    try:
        val = clv_valuation(ctx.ds, w.end)
    except _MODEL_ERRORS:
        return None, None, "model_failed:ltv"
    scored, _ = _health(ctx, w.end, w.prev_end)
    scores = None
    if scored is not None:
        frame = scored[w.end]
        scores, _ = chapter3.normalise_scores(frame[frame.band == "red"])
    try:
        risk = chapter3.at_risk(val, ctx.active_ids(w.end), ctx.params.ltv, scores)
    except _MODEL_ERRORS:
        return None, None, "model_failed:ltv"
    return float(risk.ltv_at_risk.sum()), len(risk), None


def value_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Average CLV of active customers, the share of live customers in the red health band,
    and LTV at risk (chapter 3's definition, :func:`ltv_at_risk`).

    The health model is trained per month, so the two health KPIs are computed only for
    ``ctx.health_months`` (a month's own run, or the months a backfill writes); other months
    take them from the history."""
    rows = []
    for w in windows:
        if ctx.model_months is not None and w.month not in ctx.model_months:
            rows += [_val(w.month, k, None, None, "not_computed") for k in MODEL_KPIS]
            continue
        active = ctx.active_ids(w.end)
        clv, why = _clv(ctx, w.end)
        if clv is None:
            rows.append(_val(w.month, "avg_clv", None, None, why))
        else:
            values = clv.reindex(active).dropna()
            rows.append(
                _val(w.month, "avg_clv", values.mean() if len(values) else None, len(values))
            )
        if ctx.health_months is not None and w.month not in ctx.health_months:
            rows += [_val(w.month, k, None, None, "not_computed") for k in HEALTH_KPIS]
            continue
        scored, why = _health(ctx, w.end, w.prev_end)
        if scored is None:
            rows.append(_val(w.month, "red_band_share", None, None, why))
        else:
            b = scored[w.end]
            share = (b.band == "red").mean() if len(b) else None
            rows.append(_val(w.month, "red_band_share", share, len(b)))
        value, n, why = ltv_at_risk(ctx, w)
        rows.append(_val(w.month, "ltv_at_risk", value, n, why))
    return rows


# --------------------------------------------------------------------------------------
# Completeness


def _arrival_counts(
    ev: pa.Table, windows: list[Window]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per month, from an event table's rows per ``(day, acq)`` (``n`` rows; ``acq`` is the
    day, or the acquisition date when it is later): the latest day and the rows in the
    recent and baseline spans of the year up to the month end, counting rows whose customer
    was acquired by then; and the rows in the 90 days up to that latest day.

    Returns
    -------
    ``({month: {latest, recent, base}}, {month: {n90}})``, months without rows left out.
    """
    day = ev["day"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    acq = ev["acq"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    n = ev["n"].to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(day, kind="stable")
    days, first = np.unique(day[order], return_index=True)
    per_day = np.add.reduceat(n[order], first) if len(n) else n
    got: dict[str, dict[str, Any]] = {}
    rates: dict[str, dict[str, Any]] = {}
    for w in windows:
        end = np.datetime64(w.end, "D")
        m = (day <= end) & (day > end - np.timedelta64(365, "D")) & (acq <= end)
        if not m.any():
            continue
        gap = (end - day[m]).astype(np.int64)
        nm = n[m]
        latest = day[m].max()
        got[w.month] = {
            "latest": latest.astype(dt.date),
            "recent": int(nm[gap < RECENT_DAYS].sum()),
            "base": int(nm[(gap >= RECENT_DAYS) & (gap < RECENT_DAYS + BASELINE_DAYS)].sum()),
        }
        near = (days <= latest) & (days > latest - np.timedelta64(QUARTER_DAYS, "D"))
        rates[w.month] = {"n90": int(per_day[near].sum())}
    return got, rates


def completeness(ds: Dataset, windows: list[Window]) -> pd.DataFrame:
    """Whether each event table's data for each month looks complete.

    A table is incomplete in a month when (a) its latest row is more than
    ``kpi.complete_lag_days`` before the month end *and* so long a silence had less than
    ``kpi.complete_silence_p`` chance at the table's daily rate over the 90 days before its
    latest row (a Poisson gap test), or (b) the rows in the month's last 14 days are below
    ``kpi.complete_min_share`` of the volume the 12 weeks before them predict (when at least
    ``kpi.complete_min_expected`` rows were expected). A month not over at ``as_of`` is
    flagged as partial.

    Returns
    -------
    DataFrame with ``month, table, latest, lag_days, rate_per_day, recent, expected, complete,
    why`` (``lag``, ``volume`` or ``partial``; empty when complete).
    """
    k = ds.params.kpi
    rows: list[dict[str, Any]] = []
    cols = [
        "month",
        "table",
        "latest",
        "lag_days",
        "rate_per_day",
        "recent",
        "expected",
        "complete",
        "why",
    ]
    if not windows:
        return pd.DataFrame(rows, columns=cols)
    for table, col in EVENT_DATES.items():
        if not ds.has(table):
            continue
        t = ds[table]
        c = ds["customers"].select(cid="customer_id", acq="acquired_at")
        t = t.join(c, t.customer_id == c.cid)
        day = t[col].date() if col in ("touched_at", "opened_at") else t[col]
        # Rows per day first: each month then sums a few thousand days, not every event
        # (joining 7M activity rows to 25 overlapping 365-day windows took ~20 s at 100k
        # customers). A row counts for a month only if its customer was acquired by the
        # month end; that is implied by the row's own day unless the row predates the
        # acquisition, so only such rows keep their acquisition date as a key.
        raw = t.select(day=day, acq=t.acq)
        ev = (
            raw.group_by(day=raw.day, acq=ibis.ifelse(raw.acq > raw.day, raw.acq, raw.day))
            .aggregate(n=raw.count())
            .to_pyarrow()
        )
        # The per-day rows are few (one per day, more only for rows predating an
        # acquisition): each month's counts are array sums over them, and the table is
        # read once instead of once per aggregate.
        got, rates = _arrival_counts(ev, windows)
        for w in windows:
            g = got.get(w.month, {})
            latest = g.get("latest")
            latest = (
                pd.Timestamp(latest).date() if latest is not None and not pd.isna(latest) else None
            )
            lag = (w.end - latest).days if latest else None
            rate = (rates.get(w.month, {}).get("n90") or 0) / QUARTER_DAYS
            expected = (g.get("base") or 0) * RECENT_DAYS / BASELINE_DAYS
            recent = int(g.get("recent") or 0)
            why = ""
            if (
                lag is not None
                and lag > k.complete_lag_days
                and math.exp(-rate * lag) < k.complete_silence_p
            ):
                why = "lag"
            elif expected >= k.complete_min_expected and recent < k.complete_min_share * expected:
                why = "volume"
            elif w.partial:
                why = "partial"
            rows.append(
                {
                    "month": w.month,
                    "table": table,
                    "latest": latest,
                    "lag_days": lag,
                    "rate_per_day": rate,
                    "recent": recent,
                    "expected": expected,
                    "complete": not why,
                    "why": why,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def kpi_sources(key: str, params: Params) -> tuple[str, ...]:
    """Tables whose completeness a KPI's value depends on (churn also on contracts when contractual)."""
    src = CATALOGUE[key].sources
    if key.startswith("churn_rate") and params.business_model == "contractual":
        src = (*src, "contracts")
    return src


# --------------------------------------------------------------------------------------
# Series, evaluation, report


FORMULAS = (
    churn_kpis,
    renewal_kpis,
    revenue_kpis,
    winback_kpi,
    survey_kpis,
    ticket_kpis,
    touch_kpi,
    value_kpis,
)


def compute_series(
    ds: Dataset,
    months: list[str],
    model_months: set[str] | list[str] | None = None,
    health_months: set[str] | list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every KPI for every month, each from data up to that month's end.

    ``model_months`` limits the KPIs that need a chapter model refit per month (average CLV,
    LTV at risk, red band share) to those months, and ``health_months`` the two that need
    the health model trained per month (red band share, LTV at risk); the others get reason
    ``not_computed``. ``None`` computes them for every month.

    Returns
    -------
    (values, completeness): ``values`` has one row per (month, kpi) with ``value, n, reason``
    (``reason`` says why a value is missing: ``missing:<table>``, ``model:<model>``,
    ``model_failed:<model>``, ``history``, ``no_data``); ``completeness`` is
    :func:`completeness` for the same months.
    """
    ctx = _Ctx(
        ds,
        None if model_months is None else set(model_months),
        None if health_months is None else set(health_months),
    )
    return _compute(ctx, months)


def _compute(ctx: _Ctx, months: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    windows = [Window.of(m, ctx.params) for m in sorted(set(months))]
    rows: list[dict[str, Any]] = []
    if windows:
        for formula in FORMULAS:
            rows += formula(ctx, windows)
    values = _frame(rows)
    order = {k: i for i, k in enumerate(CATALOGUE)}
    values = values.sort_values(
        ["month", "kpi"], key=lambda s: s.map(order) if s.name == "kpi" else s
    )
    return values.reset_index(drop=True), completeness(ctx.ds, windows)


def evaluate(values: pd.DataFrame, comp: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Add targets, status, month-on-month and year-on-year change to computed values.

    ``values`` must hold the months the changes need (the month before, a year before).
    A KPI whose source tables are incomplete in a month gets status ``grey`` and reason
    ``incomplete`` (its value is kept for the record but not judged). Changes are
    differences (points for rates) except for money KPIs, whose changes are relative.
    """
    tg = targets(params)
    v = values.copy()
    lookup = {(r.month, r.kpi): r.value for r in v.itertuples()}
    incomplete = comp[~comp.complete.astype(bool)] if len(comp) else comp
    bad_tables = incomplete.groupby("month").table.apply(set).to_dict() if len(incomplete) else {}
    out = []
    for r in v.itertuples():
        kpi = CATALOGUE[r.kpi]
        t = tg[r.kpi]
        prev = lookup.get((shift_month(r.month, -1), r.kpi))
        year = lookup.get((shift_month(r.month, -12), r.kpi))
        mom, yoy = _change(r.value, prev, kpi.unit), _change(r.value, year, kpi.unit)
        reason = r.reason if isinstance(r.reason, str) else None
        if t["target"] is not None:
            st = status_of(r.value, t["target"], t["alert"], kpi.direction)
        elif t["target_yoy"] is not None:
            rel = _change(r.value, year, "money")
            st = status_of(rel, t["target_yoy"], t["alert_yoy"], kpi.direction)
            if st == "grey" and reason is None:
                reason = "no_baseline"
        else:
            st = "grey"
            reason = reason or "no_target"
        missing_src = sorted(set(kpi_sources(r.kpi, params)) & bad_tables.get(r.month, set()))
        if missing_src and r.value is not None and not _isnan(r.value):
            st, reason = "grey", "incomplete:" + ",".join(missing_src)
        out.append(
            {
                **r._asdict(),
                "status": st,
                "reason": reason,
                "target": t["target"],
                "alert": t["alert"],
                "target_yoy": t["target_yoy"],
                "alert_yoy": t["alert_yoy"],
                "mom": mom,
                "yoy": yoy,
            }
        )
    cols = [
        "month",
        "kpi",
        "value",
        "n",
        "status",
        "reason",
        "target",
        "alert",
        "target_yoy",
        "alert_yoy",
        "mom",
        "yoy",
    ]
    return pd.DataFrame(out, columns=cols).drop(columns=[], errors="ignore")


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _change(now: float | None, before: float | None, unit: str) -> float | None:
    if _isnan(now) or _isnan(before):
        return None
    if unit == "money":
        return (now / before - 1.0) if before else None
    return now - before


@dataclass
class KpiReport:
    """Everything the KPI chapter shows for one month.

    Attributes
    ----------
    month : ``YYYY-MM``.
    table : the month's KPIs: value, n, status, reason, targets, mom, yoy (one row per KPI).
    trend : the trend window's KPIs (same columns, plus ``source``: ``history`` or ``computed``).
    completeness : the month's completeness per event table.
    at_risk : the month's at-risk list.
    new_red : customers newly at risk (red band when ``fupan.models.health`` exists) this month.
    red_source : ``health`` when bands come from the health score, ``rules`` for the interim list.
    alerts : what needs attention: KPIs in red, incomplete data, newly red customers.
    fingerprint : hash of the inputs the values were computed from.
    """

    month: str
    table: pd.DataFrame
    trend: pd.DataFrame
    completeness: pd.DataFrame
    at_risk: pd.DataFrame
    new_red: pd.DataFrame
    red_source: str
    alerts: list[dict[str, Any]]
    fingerprint: str
    from_history: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.completeness.complete.all()) if len(self.completeness) else True

    def values(self) -> dict[str, float | None]:
        return {
            r.kpi: (None if _isnan(r.value) else float(r.value)) for r in self.table.itertuples()
        }

    def status(self) -> dict[str, str]:
        return {r.kpi: r.status for r in self.table.itertuples()}

    def history_rows(self, run: str = "", computed_at: str | None = None) -> pd.DataFrame:
        """The month's rows for ``kpi_history.parquet``."""
        return history_rows(self.table, self.completeness, self.fingerprint, run, computed_at)


def history_rows(
    evaluated: pd.DataFrame,
    comp: pd.DataFrame,
    fingerprint: str,
    run: str = "",
    computed_at: str | None = None,
) -> pd.DataFrame:
    """Rows for ``kpi_history.parquet`` from evaluated KPIs (one per month and KPI).

    ``complete`` is False for a month in which any event table looked incomplete.
    """
    stamp = computed_at or dt.datetime.now().isoformat(timespec="seconds")
    t = evaluated
    bad = set(comp.loc[~comp.complete.astype(bool), "month"]) if len(comp) else set()
    out = pd.DataFrame(
        {
            "month": t.month.astype(str),
            "kpi": t.kpi.astype(str),
            "value": pd.to_numeric(t.value, errors="coerce").astype(float),
            "n": pd.to_numeric(t.n, errors="coerce").astype(float),
            "status": t.status.astype(str),
            "reason": t.reason.astype(object).where(t.reason.notna(), None),
            "target": pd.to_numeric(t.target, errors="coerce").astype(float),
            "alert": pd.to_numeric(t.alert, errors="coerce").astype(float),
            "complete": ~t.month.isin(bad),
            "fingerprint": fingerprint,
            "run": run,
            "computed_at": stamp,
        }
    )
    return out[HISTORY_COLUMNS].reset_index(drop=True)


def backfill_rows(
    ds: Dataset,
    months: list[str],
    history: pd.DataFrame | None = None,
    run: str = "backfill",
    computed_at: str | None = None,
) -> pd.DataFrame:
    """History rows for ``months``, every KPI computed from data up to each month's end.

    The months before them that month-on-month and year-on-year changes (and relative
    targets) need are taken from ``history`` when it holds them, else computed too; only the
    rows of ``months`` are returned. The rows equal what :func:`month_report` gives for each
    month on the same data.
    """
    months = sorted({parse_month(m) for m in months})
    context = {shift_month(m, k) for m in months for k in (-1, -12)} - set(months)
    hist = history if history is not None and len(history) else None
    recorded = (set(hist.month) & context) if hist is not None else set()
    to_compute = sorted((set(months) | context) - recorded)
    first = ds["orders"].order_date.min().to_pyarrow().as_py()
    if first is not None:
        to_compute = [m for m in to_compute if m >= parse_month(first) or m in months]
    # the health model is trained per month: only for the months written (context months
    # come from the history, as in a month's own run)
    values, comp = compute_series(ds, to_compute, health_months=set(months))
    if recorded:
        h = hist[hist.month.isin(recorded)][["month", "kpi", "value", "n", "reason"]]
        values = pd.concat([h, values], ignore_index=True)
    evaluated = evaluate(values, comp, ds.params)
    evaluated = evaluated[evaluated.month.isin(months)]
    return history_rows(evaluated, comp[comp.month.isin(months)], fingerprint(ds), run, computed_at)


def fingerprint(ds: Dataset) -> str:
    """A short hash of the input files' fingerprints (what produced a month's values)."""
    text = json.dumps(sorted(ds.fingerprints.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def month_report(
    ds: Dataset,
    month: str | None = None,
    history: pd.DataFrame | None = None,
    trend_months: int | None = None,
) -> KpiReport:
    """Compute one month's KPI report, its trend window and its alerts.

    Parameters
    ----------
    ds : the dataset (loaded as of the month end or later; only data up to each month's end
        is used).
    month : ``YYYY-MM``; default the month of ``params.as_of``.
    history : earlier months from ``kpi_history.parquet``; trend months found there are taken
        as recorded, the others (and always ``month`` itself) are computed from the data.
    trend_months : length of the trend window (default ``params.kpi.trend_months``).
    """
    params = ds.params
    month = parse_month(month) if month else report_month(params)
    n = trend_months or params.kpi.trend_months
    trend_window = month_range(shift_month(month, -(n - 1)), month)
    changes = [shift_month(month, -1), shift_month(month, -12)]  # for MoM and YoY
    needed = sorted(set(trend_window) | set(changes))
    hist = history if history is not None and len(history) else None
    recorded = set(hist.month) & set(needed) - {month} if hist is not None else set()
    to_compute = [m for m in needed if m not in recorded]
    # Months before any order are empty: skip the work, they have no values.
    first = ds["orders"].order_date.min().to_pyarrow().as_py()
    if first is not None:
        start = parse_month(first)
        to_compute = [m for m in to_compute if m >= start or m == month]
    # Model KPIs refit a model per month: only for the month and its MoM / YoY months here
    # (the trend shows them where the history holds them; a backfill computes them all).
    ctx = _Ctx(ds, model_months={month, *changes}, health_months={month})
    values, comp = _compute(ctx, to_compute)
    w = Window.of(month, params)
    ctx.release({w.end, w.prev_end})
    values["source"] = "computed"
    if recorded:
        h = hist[hist.month.isin(recorded)][["month", "kpi", "value", "n", "reason"]].copy()
        h["source"] = "history"
        values = pd.concat([h, values], ignore_index=True)
    evaluated = evaluate(values.drop(columns=["source"]), comp, params)
    evaluated["source"] = values["source"].to_numpy()
    if recorded:
        # a recorded month keeps the status it was reported with
        stored = hist.set_index(["month", "kpi"]).status
        mask = evaluated.source == "history"
        keys = list(zip(evaluated.loc[mask, "month"], evaluated.loc[mask, "kpi"], strict=True))
        evaluated.loc[mask, "status"] = [stored.get(k, "grey") for k in keys]
    trend = evaluated[evaluated.month.isin(trend_window)].reset_index(drop=True)
    table = evaluated[evaluated.month == month].reset_index(drop=True)
    risk, fresh, red_source = health_at_risk(ctx, w)
    clv, _ = _clv(ctx, w.end)
    risk = risk.assign(clv=risk.customer_id.map(clv) if clv is not None else np.nan)
    fresh = fresh.assign(clv=fresh.customer_id.map(clv) if clv is not None else np.nan)
    comp_month = comp[comp.month == month].reset_index(drop=True)
    alerts = build_alerts(table, comp_month, fresh, params, red_source)
    return KpiReport(
        month=month,
        table=table,
        trend=trend,
        completeness=comp_month,
        at_risk=risk,
        new_red=fresh,
        red_source=red_source,
        alerts=alerts,
        fingerprint=fingerprint(ds),
        from_history=sorted(recorded & set(trend_window)),
    )


def build_alerts(
    table: pd.DataFrame,
    comp: pd.DataFrame,
    fresh: pd.DataFrame,
    params: Params,
    red_source: str = "rules",
) -> list[dict[str, Any]]:
    """The month's alerts as plain records (kinds: ``incomplete``, ``kpi``, ``new_red``)."""
    alerts: list[dict[str, Any]] = []
    bad = comp[~comp.complete.astype(bool)] if len(comp) else comp
    for r in bad.itertuples():
        alerts.append(
            {
                "kind": "incomplete",
                "table": r.table,
                "why": r.why,
                "latest": None if r.latest is None else str(r.latest),
                "lag_days": r.lag_days,
                "recent": int(r.recent),
                "expected": round(float(r.expected), 1),
            }
        )
    for r in table[table.status == "red"].itertuples():
        threshold = r.alert if r.alert is not None and not _isnan(r.alert) else r.alert_yoy
        alerts.append(
            {
                "kind": "kpi",
                "kpi": r.kpi,
                "value": r.value,
                "threshold": threshold,
                "change": r.yoy,
                "relative": _isnan(r.alert),
                "direction": CATALOGUE[r.kpi].direction,
            }
        )
    # With data missing, "newly at risk" mostly measures the gap: the incomplete alert says so.
    if len(fresh) and not len(bad):
        alerts.append(
            {
                "kind": "new_red",
                "count": int(len(fresh)),
                "source": red_source,
                "customers": fresh.customer_id.head(50).tolist(),
            }
        )
    for a in alerts:
        a["notify"] = a["kind"] in params.kpi.alert_on
    return alerts


# --------------------------------------------------------------------------------------
# Formatting helpers for the deck


def _words(key: str, fmt: Any) -> str:
    from fupan.core import i18n

    return i18n.t(key, getattr(fmt, "lang", "en"))


def _value_text(key: str, value: float, fmt: Any, decimals: int | None = None) -> str:
    """A finite KPI value in its unit, with ``decimals`` places (None: the unit's default)."""
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return fmt.pct(value, CATALOGUE[key].decimals if decimals is None else decimals)
    if unit == "nps":
        return fmt.num(value, 1 if decimals is None else decimals)
    if unit == "score":
        return fmt.num(value, 2 if decimals is None else decimals)
    if unit == "days":
        return fmt.days(value, 1 if decimals is None else decimals)
    return fmt.money(value)


def _default_decimals(key: str, fmt: Any) -> int | None:
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return CATALOGUE[key].decimals if CATALOGUE[key].decimals is not None else fmt.decimals
    return {"nps": 1, "score": 2, "days": 1}.get(unit)


def format_value(key: str, value: float | None, fmt: Any) -> str:
    """A KPI value in its unit (``fmt`` is a :class:`fupan.core.i18n.Fmt`); a missing value in
    words (the reason goes beside it), never a placeholder sign."""
    if _isnan(value) or not math.isfinite(float(value)):
        return _words("kpi.value.na", fmt)
    return _value_text(key, float(value), fmt)


def format_against(
    key: str, value: float | None, levels: Iterable[float | None], fmt: Any
) -> tuple[str, list[str]]:
    """``value`` and the ``levels`` it is judged against (target, alert), written with
    enough decimals that a value unequal to a level never reads equal to it.

    "18.0%, above the alert threshold 18.0%" is false on its face; this writes "18.04%"
    and "18.00%" instead. Money keeps its compact form (its thresholds are relative).
    """
    levels = list(levels)
    d = _default_decimals(key, fmt)
    finite = [float(x) for x in levels if not _isnan(x) and math.isfinite(float(x))]
    if _isnan(value) or not math.isfinite(float(value)) or d is None or not finite:
        return format_value(key, value, fmt), [
            format_value(key, x, fmt) if not _isnan(x) else _words("kpi.value.na", fmt)
            for x in levels
        ]
    v = float(value)
    for extra in range(4):
        shown = _value_text(key, v, fmt, d + extra)
        if all(x == v or _value_text(key, x, fmt, d + extra) != shown for x in finite):
            break
    out = [
        _value_text(key, float(x), fmt, d + extra) if not _isnan(x) else _words("kpi.value.na", fmt)
        for x in levels
    ]
    if extra == 0:  # thresholds keep their usual form when nothing needed more digits
        out = [format_value(key, x, fmt) for x in levels]
    return shown, out


def format_change(key: str, change: float | None, fmt: Any) -> str:
    """A change in the KPI's terms: points for rates, relative for money; without an
    earlier value to compare with, words."""
    if _isnan(change) or not math.isfinite(float(change)):
        return _words("kpi.change.na", fmt)
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return fmt.pts(change, CATALOGUE[key].decimals)
    if unit == "money":
        return fmt.rel(change)
    if unit == "days":
        return fmt.fixed(change, 1, "+") + (" 天" if fmt.lang == "zh" else " days")
    return fmt.fixed(change, 1 if unit == "nps" else 2, "+")


def format_threshold(key: str, t: dict[str, Any] | pd.Series, which: str, fmt: Any) -> str:
    """Target or alert (``which``) as text; relative thresholds as ``YoY +x%``."""
    absolute = t.get(which)
    if not _isnan(absolute):
        return format_value(key, absolute, fmt)
    rel = t.get(f"{which}_yoy")
    if _isnan(rel):
        return _words("kpi.threshold.none", fmt)
    return ("同比 " if fmt.lang == "zh" else "YoY ") + fmt.rel(rel, 0)


def value_and_threshold(key: str, row: Any, which: str, fmt: Any) -> tuple[str, str]:
    """A KPI's value and its ``target`` or ``alert`` (``which``) for a sentence: written
    with enough digits to differ when they do (:func:`format_against`); a relative
    threshold reads "YoY -10%"."""
    t = row if isinstance(row, dict) else (row._asdict() if hasattr(row, "_asdict") else dict(row))
    if _isnan(t.get(which)):
        return format_value(key, t.get("value"), fmt), format_threshold(key, t, which, fmt)
    value, (level,) = format_against(key, t.get("value"), [t[which]], fmt)
    return value, level


#: Status as a shape as well as a colour, so the scorecard survives black-and-white print.
STATUS_MARKS = {"green": "●", "amber": "▲", "red": "■", "grey": "○"}
SCORECARD_COLUMNS = ("kpi", "value", "status", "target", "alert", "mom", "yoy", "note")


def status_html(status: str, lang: str) -> str:
    """A status as colour, shape and word: ``<span class="fupan-status status-red">■ alert``."""
    import html as _html

    from fupan.core import i18n

    s = status if status in STATUS_MARKS else "grey"
    word = _html.escape(i18n.t(f"kpi.status.{s}", lang))
    return (
        f'<span class="fupan-status status-{s}"><span class="mark" aria-hidden="true">'
        f"{STATUS_MARKS[s]}</span> {word}</span>"
    )


def status_legend_html(lang: str, statuses: Iterable[str] = STATUSES) -> str:
    """The legend under a scorecard: each status's shape, word and meaning."""
    import html as _html

    from fupan.core import i18n

    items = "".join(
        f"<li>{status_html(s, lang)} <span>{_html.escape(i18n.t(f'kpi.legend.{s}', lang))}</span></li>"
        for s in statuses
    )
    title = _html.escape(i18n.t("kpi.legend.title", lang))
    return f'<ul class="fupan-status-legend" aria-label="{title}">{items}</ul>'


def scorecard_rows(
    table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str
) -> list[dict[str, str]]:
    """The scorecard's cells as text, one dict per KPI (keys :data:`SCORECARD_COLUMNS`).

    The value is written with enough digits that it never reads equal to a target or
    alert threshold it differs from (:func:`format_against`).
    """
    rows = []
    for r in table.itertuples():
        t = r._asdict()
        value, (target, alert) = format_against(r.kpi, r.value, [t["target"], t["alert"]], fmt)
        rel = _isnan(t["target"])
        rows.append(
            {
                "kpi": names[r.kpi],
                "value": value,
                "status": r.status,
                "target": format_threshold(r.kpi, t, "target", fmt) if rel else target,
                "alert": format_threshold(r.kpi, t, "alert", fmt) if _isnan(t["alert"]) else alert,
                "mom": format_change(r.kpi, r.mom, fmt),
                "yoy": format_change(r.kpi, r.yoy, fmt),
                "note": reason_text(r.reason, lang),
            }
        )
    return rows


def scorecard_html(table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str) -> str:
    """The KPI scorecard as an HTML table with coloured, shaped and worded status cells,
    and its legend. The monthly deck and the annual review's KPI chapter both show this."""
    import html as _html

    from fupan.core import i18n

    rows = scorecard_rows(table, names, fmt, lang)
    cols = [c for c in SCORECARD_COLUMNS if c != "note" or any(r["note"] for r in rows)]
    head = "".join(f"<th>{_html.escape(i18n.t(f'kpi.col.{c}', lang))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            if c == "status":
                cells.append(f'<td class="status-cell">{status_html(r[c], lang)}</td>')
            else:
                cells.append(f"<td>{_html.escape(r[c])}</td>")
        body.append(f'<tr class="row-{r["status"]}">{"".join(cells)}</tr>')
    used = [s for s in STATUSES if any(r["status"] == s for r in rows)]
    return (
        f'<table class="fupan-table fupan-scorecard"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>" + status_legend_html(lang, used or STATUSES)
    )


def show_scorecard(table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str) -> None:
    """Display :func:`scorecard_html` on the current slide (a notebook cell's output)."""
    from fupan.core import i18n
    from fupan.report import show

    rows = scorecard_rows(table, names, fmt, lang)
    text = "\n".join(
        " | ".join([r["kpi"], r["value"], i18n.t(f"kpi.status.{r['status']}", lang), r["target"]])
        for r in rows
    )
    show.check_text(text)
    show.html_block(scorecard_html(table, names, fmt, lang), text, kind="table")


# --------------------------------------------------------------------------------------
# History


HISTORY_COLUMNS = [
    "month",
    "kpi",
    "value",
    "n",
    "status",
    "reason",
    "target",
    "alert",
    "complete",
    "fingerprint",
    "run",
    "computed_at",
]


def history_path(
    params: Params, run_dir: str | Path | None = None, reports_dir: str | Path | None = None
) -> Path | None:
    """Where the KPI history lives: ``kpi.history_file`` in the reports folder.

    The reports folder is ``reports_dir`` or, inside a run, the folder holding the run
    folder. ``None`` when neither is known (a notebook opened on its own).
    """
    f = Path(params.kpi.history_file)
    if f.is_absolute():
        return f
    if reports_dir:
        return Path(reports_dir) / f
    if run_dir:
        return Path(run_dir).resolve().parent / f
    return None


def empty_history() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})


def read_history(path: str | Path | None) -> pd.DataFrame:
    """The KPI history table (empty when there is none yet)."""
    if path is None or not Path(path).exists():
        return empty_history()
    df = pd.read_parquet(path)
    missing = [c for c in HISTORY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a KPI history (missing columns {missing})")
    return df[HISTORY_COLUMNS]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two runs finishing together must not lose each other's months.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_history(path: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace the months in ``rows`` in the history, atomically, and return the new history.

    The other months are untouched; the file is written to a temporary file beside it and
    moved into place, under a lock, so a reader never sees half a table.
    """
    path = Path(path)
    rows = rows[HISTORY_COLUMNS].copy()
    dup = rows.duplicated(["month", "kpi"])
    if dup.any():
        raise ValueError(
            f"history rows repeat (month, kpi): {rows[dup][['month', 'kpi']].values.tolist()[:5]}"
        )
    with _locked(path):
        old = read_history(path)
        keep = old[~old.month.isin(set(rows.month))]
        new = pd.concat([keep, rows], ignore_index=True) if len(keep) else rows
        order = {k: i for i, k in enumerate(CATALOGUE)}
        new = new.assign(_o=new.kpi.map(order).fillna(len(order))).sort_values(
            ["month", "_o", "kpi"]
        )
        new = new.drop(columns="_o").reset_index(drop=True)
        for col in ("value", "n", "target", "alert"):
            new[col] = pd.to_numeric(new[col], errors="coerce").astype(float)
        new["complete"] = new.complete.astype(bool)
        for col in ("month", "kpi", "status", "fingerprint", "run", "computed_at"):
            new[col] = new[col].astype(str)
        new["reason"] = new.reason.astype(object).where(new.reason.notna(), None)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            new.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return new


# --------------------------------------------------------------------------------------
# What the notebook shows and writes


def reason_text(reason: str | None, lang: str) -> str:
    """A missing value's reason code in words (``missing:surveys`` -> "table 'surveys' is missing")."""
    from fupan.core import i18n

    if not reason or (isinstance(reason, float) and math.isnan(reason)):
        return ""
    code, _, arg = str(reason).partition(":")
    if code == "missing":
        if arg in EVENT_DATES or arg in ("churn_events", "customers"):
            return i18n.t("kpi.reason.missing", lang, table=i18n.t(f"table.{arg}", lang))
        return i18n.t("kpi.reason.missing_column", lang, column=arg)
    if code == "model":
        return i18n.t(f"kpi.reason.model.{arg}", lang)
    if code == "disabled":
        return i18n.t("kpi.reason.disabled", lang)
    if code == "incomplete":
        tables = ", ".join(i18n.t(f"table.{x}", lang) for x in arg.split(","))
        return i18n.t("kpi.reason.incomplete", lang, tables=tables)
    return i18n.t(f"kpi.reason.{code}", lang)


def alert_messages(alerts: list[dict[str, Any]], lang: str, fmt: Any) -> list[str]:
    """Each alert as one sentence in ``lang``."""
    from fupan.core import i18n

    out = []
    for a in alerts:
        if a["kind"] == "incomplete":
            table = i18n.t(f"table.{a['table']}", lang)
            key = {"lag": "kpi.alert.incomplete_lag", "volume": "kpi.alert.incomplete_volume"}.get(
                a["why"], "kpi.alert.incomplete_partial"
            )
            out.append(
                i18n.t(
                    key,
                    lang,
                    table=table,
                    latest=a.get("latest") or "–",
                    lag=a.get("lag_days"),
                    recent=fmt.int(a.get("recent")),
                    expected=fmt.int(a.get("expected")),
                )
            )
        elif a["kind"] == "kpi":
            name = i18n.t(f"kpi.name.{a['kpi']}", lang)
            value, (line,) = format_against(a["kpi"], a["value"], [a["threshold"]], fmt)
            if a["relative"]:
                out.append(
                    i18n.t(
                        "kpi.alert.kpi_relative",
                        lang,
                        kpi=name,
                        value=value,
                        change=format_change(a["kpi"], a.get("change"), fmt),
                        threshold=fmt.rel(a["threshold"], 0),
                    )
                )
            else:
                out.append(
                    i18n.t(
                        f"kpi.alert.kpi_{a['direction']}",
                        lang,
                        kpi=name,
                        value=value,
                        threshold=line,
                    )
                )
        elif a["kind"] == "new_red":
            key = "kpi.alert.new_red" if a.get("source") == "health" else "kpi.alert.new_risk"
            out.append(i18n.t(key, lang, n=fmt.int(a["count"])))
    return out


def risk_reasons_text(codes: str, lang: str) -> str:
    """``overdue;detractor`` in words."""
    from fupan.core import i18n

    if not isinstance(codes, str) or not codes:
        return ""
    sep = "；" if lang == "zh" else "; "
    return sep.join(i18n.t(f"kpi.risk.{c}", lang) for c in codes.split(";") if c)


AT_RISK_COLUMNS = [
    "account_manager",
    "customer_id",
    "customer_name",
    "tier",
    "score",
    "churn_probability",
    "last_order",
    "days_since_order",
    "usual_interval_days",
    "spend_12m",
    "clv",
    "reasons",
]


def at_risk_export_frame(
    at_risk: pd.DataFrame,
    new_ids: set[str],
    lang: str,
    tier_label: Any,
    source: str = "rules",
    drop: Iterable[str] = (),
) -> pd.DataFrame:
    """The at-risk list as account managers read it: labelled columns, reasons in words
    (``source``: ``rules`` lists reason codes, ``health`` reasons already in words).
    ``drop``: columns the data did not supply (:func:`fupan.io.exports.unsupplied`), left out
    rather than shown blank in every row."""
    from fupan.core import i18n

    df = at_risk.drop(columns=[c for c in drop if c in at_risk.columns])
    if "tier" in df.columns:
        df["tier"] = df.tier.map(lambda x: tier_label(x) if isinstance(x, str) else x)
    if source == "rules":
        df["reasons"] = df.reasons.map(lambda c: risk_reasons_text(c, lang))
    for col, digits in (
        ("usual_interval_days", 1),
        ("spend_12m", 2),
        ("clv", 2),
        ("score", 1),
        ("churn_probability", 3),
    ):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").round(digits)
    if "last_order" in df.columns:
        df["last_order"] = pd.to_datetime(df.last_order).dt.date
    # identity columns always; a measure only when the source has it (clv without a model)
    always = ("account_manager", "customer_id", "customer_name", "tier", "reasons")
    cols = [c for c in AT_RISK_COLUMNS if c in df.columns and (c in always or df[c].notna().any())]
    df = df[cols].assign(
        new=df.customer_id.isin(new_ids).map({True: i18n.t("dc.yes", lang), False: ""})
    )
    return df.rename(columns={c: i18n.t(f"kpi.col.{c}", lang) for c in df.columns})


def reasons_for_slide(reasons: str, source: str, lang: str, k: int = 2) -> str:
    """At most ``k`` reasons, short enough for a table row on a slide."""
    if source == "rules":
        return risk_reasons_text(reasons, lang)
    if not isinstance(reasons, str):
        return ""
    return "; ".join(reasons.split("; ")[:k])


def _sheet_name(name: str, used: set[str]) -> str:
    base = "".join("_" if ch in "[]:*?/\\" else ch for ch in str(name))[:31] or "-"
    out, i = base, 1
    while out in used:
        i += 1
        out = f"{base[:28]}~{i}"
    used.add(out)
    return out


#: Most account-manager sheets in the at-risk workbook (see :func:`export_at_risk`).
MAX_MANAGER_SHEETS = 200


def export_at_risk(
    frame: pd.DataFrame, run_dir: str | Path | None, lang: str, name: str = "at_risk"
) -> list[Path]:
    """Write ``exports/<name>.csv`` (UTF-8 with BOM) and ``.xlsx`` with a sheet for all customers
    and one per account manager (up to :data:`MAX_MANAGER_SHEETS` managers; with more, the
    all-customers sheet, sorted by manager and filterable, serves each of them)."""
    from fupan.core import i18n
    from fupan.io import exports

    paths = exports.write(frame, run_dir, name, xlsx=False)
    xlsx = paths[0].with_suffix(".xlsx")
    manager = i18n.t("kpi.col.account_manager", lang)
    used: set[str] = set()
    sheets = {_sheet_name(i18n.t("kpi.sheet.all", lang), used): frame}
    has_manager = manager in frame.columns
    # A sheet per account manager while there are few enough to tab through; beyond that
    # the first sheet (sorted by manager, filter on every column) is each manager's list.
    if has_manager and frame[manager].nunique(dropna=False) <= MAX_MANAGER_SHEETS:
        for am, part in frame.groupby(manager, sort=True, dropna=False):
            label = am if isinstance(am, str) and am else "-"
            sheets[_sheet_name(label, used)] = part
    # The at-risk workbook is the account managers' work list: written at any length.
    exports.write_workbook(xlsx, sheets)
    return [*paths, xlsx]


def manager_summary(at_risk: pd.DataFrame, new_ids: set[str]) -> pd.DataFrame:
    """Per account manager: customers at risk, new this month, 12-month spend and CLV at risk."""
    if at_risk.empty:
        return pd.DataFrame(columns=["account_manager", "customers", "new", "spend_12m", "clv"])
    df = at_risk.assign(
        new=at_risk.customer_id.isin(new_ids), account_manager=at_risk.account_manager.fillna("-")
    )
    g = df.groupby("account_manager").agg(
        customers=("customer_id", "size"),
        new=("new", "sum"),
        spend_12m=("spend_12m", "sum"),
        clv=("clv", "sum"),
    )
    if df.clv.isna().all():
        g["clv"] = np.nan
    return (
        g.reset_index()
        .sort_values(["spend_12m", "account_manager"], ascending=[False, True])
        .reset_index(drop=True)
    )


MONTH_ROWS = "kpi_month.parquet"


def save_month(report: KpiReport, run_dir: str | Path | None) -> Path | None:
    """Write the month's history rows into the run folder (``kpi_month.parquet``); the
    monthly command moves them into the history once the run has succeeded."""
    if not run_dir:
        return None
    path = Path(run_dir) / MONTH_ROWS
    report.history_rows().to_parquet(path, index=False)
    return path


#: A trend line needs this many months with a value: fewer points make a near-empty line,
#: so they are shown as a small table, with the month the line will start.
MIN_TREND_POINTS = 6


@dataclass
class TrendPlan:
    """Which KPIs of a trend slide can be drawn, and why the others cannot (yet).

    Attributes
    ----------
    draw : KPIs with at least :data:`MIN_TREND_POINTS` months with a value.
    starts : KPI -> the month its trend line starts (it has a value, but too few months).
    missing : KPI -> reason code for a KPI with no value in any month (the month's reason).
    """

    draw: list[str]
    starts: dict[str, str]
    missing: dict[str, str]


def trend_plan(
    trend: pd.DataFrame,
    table: pd.DataFrame,
    keys: list[str],
    month: str,
    min_points: int = MIN_TREND_POINTS,
) -> TrendPlan:
    """Split a group's KPIs into those drawn and those said in words.

    A line through one or two points is not a trend: a KPI with ``k < min_points`` months
    with a value starts its trend ``min_points - k`` months after ``month`` (if each month
    from now adds a value). A KPI without any value gets the month's reason
    (:func:`reason_text`; ``no_data`` when none was recorded).
    """
    draw, starts, missing = [], {}, {}
    reasons = table.set_index("kpi").reason if len(table) else pd.Series(dtype=object)
    for key in keys:
        rows = trend[trend.kpi == key] if len(trend) else trend
        values = pd.to_numeric(rows.value, errors="coerce") if len(rows) else pd.Series([])
        k = int(np.isfinite(values.to_numpy(dtype=float)).sum())
        if k >= min_points:
            draw.append(key)
        elif k > 0:
            starts[key] = shift_month(month, min_points - k)
        else:
            why = reasons.get(key) if key in reasons.index else None
            missing[key] = why if isinstance(why, str) and why else "no_data"
    return TrendPlan(draw, starts, missing)


def short_series(
    trend: pd.DataFrame, keys: Iterable[str], names: dict[str, str], fmt: Any
) -> pd.DataFrame:
    """The few months of KPIs too young for a trend line, as a small table: one row per
    KPI, one column per month with a value (at most ``MIN_TREND_POINTS - 1`` of them)."""
    keys = list(keys)
    rows = trend[trend.kpi.isin(keys)] if len(trend) else trend
    if not len(rows):
        return pd.DataFrame()
    values = rows.assign(v=pd.to_numeric(rows.value, errors="coerce")).dropna(subset=["v"])
    months = sorted(values.month.unique())
    out = []
    for key in keys:
        mine = values[values.kpi == key].set_index("month").v
        out.append(
            {
                "kpi": names[key],
                **{m: format_value(key, mine[m], fmt) if m in mine.index else "" for m in months},
            }
        )
    return pd.DataFrame(out)


def trend_figure(
    title: str,
    trend: pd.DataFrame,
    keys: list[str],
    months: list[str],
    names: dict[str, str],
    labels: dict[str, str],
    fmt: Any,
) -> Any:
    """Small multiples: one panel per KPI over the trend months, with target and alert lines.

    Months taken from the history and months computed now are drawn alike; the last point
    is coloured by the month's status. A KPI with no value in any month says so in its panel.
    """
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from fupan.report import charts

    n = len(keys)
    ncols = 1 if n == 1 else 3 if n > 4 or n == 3 else 2
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(11.5, 2.45 * nrows + 0.7), squeeze=False)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    x = pd.PeriodIndex(months, freq="M").to_timestamp()
    for ax, key in zip(axes.flat, keys, strict=False):
        kpi = CATALOGUE[key]
        ax.set_title(names[key], fontsize=10.5)
        s = trend[trend.kpi == key].set_index("month").reindex(months)
        y = pd.to_numeric(s.value, errors="coerce").to_numpy(dtype=float)
        scale = 1.0
        if not np.isfinite(y).any():
            ax.text(
                0.5,
                0.5,
                labels["na"],
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=charts.STATUS_COLORS["grey"],
                fontsize=11,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if kpi.unit == "money":
            scale = 1e4 if fmt.lang == "zh" else 1e3
            unit = "万" if fmt.lang == "zh" else "k"
            ax.set_ylabel(f"{fmt.symbol} {unit}", fontsize=8)
        ax.plot(x, y / scale, color=charts.PALETTE[0], marker="o", markersize=3, linewidth=1.6)
        last = np.where(np.isfinite(y))[0][-1]
        colour = charts.STATUS_COLORS.get(str(s.status.iloc[last]), charts.STATUS_COLORS["grey"])
        ax.plot([x[last]], [y[last] / scale], marker="o", markersize=8, color=colour, zorder=5)
        row = s.iloc[last]
        for which, style, colour_key in (("target", "--", "green"), ("alert", ":", "red")):
            level = row.get(which)
            if level is not None and not _isnan(level):
                ax.axhline(
                    float(level) / scale,
                    linestyle=style,
                    linewidth=1.2,
                    color=charts.STATUS_COLORS[colour_key],
                    label=labels[which],
                )
        if kpi.unit == "pct":
            charts.percent_axis(ax, "y", decimals=0 if np.nanmax(np.abs(y)) >= 0.1 else 1)
        ax.xaxis.set_major_locator(mdates.MonthLocator(bymonth=(1, 4, 7, 10)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%y-%m"))
        ax.tick_params(labelsize=8)
        ax.set_xlim(x[0] - pd.Timedelta(days=12), x[-1] + pd.Timedelta(days=12))
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="upper right",
            fontsize=9,
            frameon=False,
        )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
