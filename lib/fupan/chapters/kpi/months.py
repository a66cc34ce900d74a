"""Months and the date windows one month's KPIs are computed over (the as-of rule)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.measures import metrics
from fupan.measures.segments import years_before


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
