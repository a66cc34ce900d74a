"""Where last year's forecasts come from, and the data as it was at the cut: the settings
(``followup: {previous: ...}``), the cut date, whether there is history to grade, and
:func:`as_of_cut` (every table restricted to rows known on or before the cut).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

import ibis
import pandas as pd
import yaml

from fupan.core.chapter_params import FollowupParams
from fupan.io import engine
from fupan.io.dataset import Dataset

#: How far back the backtest looks: the review we would have produced a year ago.
MONTHS = 12
#: After the cut, at least this much history must remain to grade anything.
MIN_FOLLOW_MONTHS = 1
#: Before the cut, at least this much history to forecast from (a backtest on a few days of
#: orders would grade forecasts no review could have made): 12 + 1 months in all.
MIN_BEFORE_MONTHS = 1
#: The date each table's rows are known from (rows after the cut do not exist then).
DATE_COLUMNS = {
    "customers": "acquired_at",
    "orders": "order_date",
    "contracts": "start_date",
    "touches": "touched_at",
    "tickets": "opened_at",
    "surveys": "surveyed_at",
    "activity": "period_start",
    "churn_events": "churned_at",
    "pilots": "started_at",
}
#: Ticket timestamps that are later events of a ticket opened before the cut.
LATER_TICKET_COLUMNS = ("first_response_at", "resolved_at")
Source = Literal["previous_run", "backtest"]


# --------------------------------------------------------------------------------------
# Settings: ``followup: {previous: ...}`` in the params file


#: The chapter's own params are ``followup:`` in the params file (:class:`FollowupParams`).
FollowupSettings = FollowupParams


def load_settings(params_file: str | Path) -> FollowupSettings:
    """``followup:`` from the params file (defaults when absent); ``previous`` resolved
    against the file's folder."""
    path = Path(params_file)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    s = FollowupSettings.model_validate(raw.get("followup") or {})
    if s.previous and not Path(s.previous).is_absolute():
        s = s.model_copy(update={"previous": str((path.parent / s.previous).resolve())})
    return s


def find_previous(
    reports_dir: str | Path, as_of: dt.date, months: int = MONTHS, exclude: Path | None = None
) -> Path | None:
    """The newest annual run in ``reports_dir`` at least ``months - 1`` months before
    ``as_of`` (a run a few weeks short of a year still counts), or ``None``."""
    root = Path(reports_dir)
    if not root.is_dir():
        return None
    latest = (pd.Timestamp(as_of) - pd.DateOffset(months=months - 1)).date()
    best: tuple[dt.date, Path] | None = None
    for d in root.iterdir():
        res = d / "results.json"
        if d.name.startswith(".") or d.name.endswith(".failed") or not res.exists():
            continue
        if exclude is not None and d.resolve() == exclude.resolve():
            continue
        try:
            run = json.loads(res.read_text(encoding="utf-8")).get("run", {})
            then = dt.date.fromisoformat(str(run.get("as_of")))
        except (ValueError, TypeError, json.JSONDecodeError):
            continue
        if run.get("kind", "annual_review") != "annual_review" or then > latest:
            continue
        if best is None or then > best[0]:
            best = (then, d)
    return None if best is None else best[1]


# --------------------------------------------------------------------------------------
# The data as it was at the cut


def cut_date(as_of: dt.date | str, months: int = MONTHS) -> dt.date:
    """``as_of`` minus ``months`` calendar months (a month end stays a month end)."""
    a = pd.Timestamp(as_of)
    c = a - pd.DateOffset(months=months)
    if a.is_month_end:
        c = c + pd.offsets.MonthEnd(0)
    return c.date()


def data_span_problem(ds: Dataset, cut: dt.date) -> dict[str, Any] | None:
    """Why the data cannot be graded from ``cut`` (``None`` when it can).

    Needs orders from at least :data:`MIN_BEFORE_MONTHS` before the cut (something to
    forecast from) and at least :data:`MIN_FOLLOW_MONTHS` after it (something to grade
    against).
    """
    o = ds["orders"]
    first, last = engine.to_pandas(
        o.aggregate(first=o.order_date.min(), last=o.order_date.max())
    ).iloc[0]
    as_of = pd.Timestamp(ds.params.as_of)
    if pd.isna(first) or pd.Timestamp(first) > pd.Timestamp(cut) - pd.DateOffset(
        months=MIN_BEFORE_MONTHS
    ):
        months = 0.0 if pd.isna(first) else (as_of - pd.Timestamp(first)).days / 30.44
        return {
            "reason": "short_history",
            "first_order": None if pd.isna(first) else pd.Timestamp(first).date(),
            "months": round(months, 1),
        }
    if pd.Timestamp(cut) + pd.DateOffset(months=MIN_FOLLOW_MONTHS) > as_of:
        return {"reason": "no_follow_up", "first_order": pd.Timestamp(first).date(), "months": 0.0}
    return None


def _period_days(activity: ibis.expr.types.Table) -> int:
    """The activity table's period length in days: the smallest gap between its distinct
    period starts (1 for daily, 7 for weekly rows; 1 when there is a single period)."""
    d = engine.to_pandas(activity.select("period_start").distinct()).period_start
    gaps = pd.to_datetime(d).sort_values().diff().dt.days.dropna()
    gaps = gaps[gaps > 0]
    return int(gaps.min()) if len(gaps) else 1


def as_of_cut(ds: Dataset, cut: dt.date) -> Dataset:
    """A copy of ``ds`` as it stood at the end of ``cut``: every table restricted to rows
    dated on or before it, ticket answers and resolutions after it removed, and
    ``params.as_of`` moved to it. Held in memory in its own DuckDB; nothing is cached
    (the run's cache holds models fitted on the whole data)."""
    lit = ibis.literal(cut)
    end = ibis.literal(pd.Timestamp(cut) + pd.Timedelta(days=1))
    con = ibis.duckdb.connect()
    for name in ds.present:
        t = ds[name]
        col = DATE_COLUMNS.get(name)
        if col and col in t.columns:
            is_ts = t[col].type().is_timestamp()
            t = t.filter(t[col] < end if is_ts else t[col] <= lit)
        if name == "activity":
            # a period that began by the cut but ends after it holds logins from after it
            t = t.filter(
                t.period_start <= ibis.literal(cut - dt.timedelta(days=_period_days(t) - 1))
            )
        if name == "tickets":
            later = {
                c: ibis.ifelse(t[c] < end, t[c], ibis.null().cast(t[c].type()))
                for c in LATER_TICKET_COLUMNS
                if c in t.columns
            }
            t = t.mutate(**later)
        con.create_table(name, t.to_pyarrow())
    params = type(ds.params).model_validate(
        {**ds.params.model_dump(), "as_of": cut, "period_start": None}
    )
    object.__setattr__(params, "base_dir", ds.params.base_dir)
    return Dataset(con=con, params=params, report=ds.report, fingerprints=ds.fingerprints)


def add_years(day: dt.date, years: int = 1) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)
