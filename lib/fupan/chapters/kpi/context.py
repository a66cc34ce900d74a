"""The computation context: one dataset with per-date caches, and the row helpers
every KPI formula returns its values through."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fupan.chapters.kpi.months import Window
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

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
        # order segments per tuple of bounds (:func:`fupan.chapters.kpi.formulas._segments_of`)
        self._orders: dict[tuple[dt.date, ...], Any] = {}
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
