"""Completeness: whether each event table's data for a month looks complete (arrival lag
and volume checks), and which tables a KPI depends on."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from fupan.chapters.kpi.catalogue import (
    BASELINE_DAYS,
    CATALOGUE,
    EVENT_DATES,
    QUARTER_DAYS,
    RECENT_DAYS,
)
from fupan.chapters.kpi.months import Window
from fupan.core.params import Params
from fupan.io.dataset import Dataset


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


def month_completeness(ds: Dataset, windows: list[Window]) -> pd.DataFrame:
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
