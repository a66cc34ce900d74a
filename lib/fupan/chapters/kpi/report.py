"""Series, evaluation, report: every KPI per month, judged against its targets, and one
month's report (:func:`month_report`) with its trend and alerts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.kpi.arrival import kpi_sources, month_completeness
from fupan.chapters.kpi.catalogue import CATALOGUE
from fupan.chapters.kpi.context import _Ctx, _frame
from fupan.chapters.kpi.formulas import (
    churn_kpis,
    renewal_kpis,
    revenue_kpis,
    survey_kpis,
    ticket_kpis,
    touch_kpi,
    winback_kpi,
)
from fupan.chapters.kpi.history import HISTORY_COLUMNS
from fupan.chapters.kpi.months import Window, month_range, parse_month, report_month, shift_month
from fupan.chapters.kpi.status import _isnan, status_of, targets
from fupan.chapters.kpi.value import _clv, health_at_risk, value_kpis
from fupan.core.params import Params
from fupan.io.dataset import Dataset

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
    :func:`month_completeness` for the same months.
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
    return values.reset_index(drop=True), month_completeness(ctx.ds, windows)


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
