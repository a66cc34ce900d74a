"""What the notebook shows and writes: alert sentences, the at-risk export and workbook,
the month's history rows, and the trend slides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.kpi.catalogue import CATALOGUE
from fupan.chapters.kpi.formatting import (
    format_against,
    format_change,
    format_threshold,
    format_value,
    reason_text,
)
from fupan.chapters.kpi.months import shift_month
from fupan.chapters.kpi.report import KpiReport
from fupan.chapters.kpi.status import targets


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


def at_risk_slide_table(
    at_risk: pd.DataFrame,
    source: str,
    lang: str,
    fmt: Any,
    tier_label: Any,
    manager: bool = True,
    drop: Iterable[str] = (),
) -> pd.DataFrame:
    """At-risk customers as a slide's table rows, largest 12-month spend first.

    Columns ``customer_id``, ``account_manager`` (with ``manager``), ``tier`` (through
    ``tier_label``), ``days_since_order`` (as text), ``spend_12m`` and at most two reasons
    (:func:`reasons_for_slide`); ``account_manager`` and ``tier`` are left out when in
    ``drop`` (customer columns the data did not supply).
    """
    from fupan.core import i18n

    na = i18n.t("kpi.value.na", lang)
    top = at_risk.sort_values(["spend_12m", "customer_id"], ascending=[False, True])
    cols: dict[str, Any] = {"customer_id": top.customer_id}
    if manager:
        cols["account_manager"] = top.account_manager
    cols["tier"] = top.tier.map(tier_label)
    cols["days_since_order"] = top.days_since_order.map(lambda v: fmt.int(v) if pd.notna(v) else na)
    cols["spend_12m"] = top.spend_12m
    cols["reasons"] = top.reasons.map(lambda c: reasons_for_slide(c, source, lang))
    out = pd.DataFrame(cols)
    drop = set(drop)
    return out.drop(columns=[c for c in ("account_manager", "tier") if c in drop and c in out])


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


def furthest_from_target(table: pd.DataFrame) -> pd.Series | None:
    """The red or amber KPI of a month's table furthest from its target (the scorecard's
    title names it), or None when every KPI is green or grey.

    The distance is relative to the KPI's target-to-alert gap: ``(value - target) / (alert
    - target)``, so 1 is on the alert threshold; a KPI without two distinct levels counts 1
    when red and 0 when amber.
    """
    judged = table[table.status.isin(["red", "amber"])].copy()
    if not len(judged):
        return None
    gap = judged.apply(_gap_to_alert, axis=1)
    return judged.assign(g=gap).sort_values("g", ascending=False).iloc[0]


def _gap_to_alert(r: pd.Series) -> float:
    if pd.notna(r.target) and pd.notna(r.alert) and r.target != r.alert:
        return (r.value - r.target) / (r.alert - r.target)
    return 0.0 if r.status == "amber" else 1.0


def completeness_table(comp: pd.DataFrame, lang: str, fmt: Any) -> pd.DataFrame:
    """The month's completeness per event table as a slide shows it: the table's name, its
    latest row, the lag, the rows in the last two weeks and those expected, and why the
    month looks incomplete (in words; a missing number reads "not available")."""
    from fupan.core import i18n

    na = i18n.t("kpi.value.na", lang)

    def num(values: pd.Series) -> list[str]:
        return [fmt.int(v) if pd.notna(v) else na for v in values]

    return pd.DataFrame(
        {
            "table": [i18n.t(f"table.{x}", lang) for x in comp.table],
            "latest": [str(v) if pd.notna(v) else na for v in comp.latest],
            "lag_days": num(comp.lag_days),
            "recent": num(comp.recent),
            "expected": num(comp.expected),
            "why": [i18n.t(f"kpi.why.{w or 'ok'}", lang) for w in comp.why],
        }
    )


def definitions_table(params: Any, lang: str, fmt: Any) -> pd.DataFrame:
    """Every KPI's name, good direction, target, alert threshold and formula, in words
    (the definitions slides; the formula last, so a slide wraps it as prose)."""
    from fupan.core import i18n

    tg = targets(params)
    return pd.DataFrame(
        {
            "kpi": [i18n.t(f"kpi.name.{k}", lang) for k in CATALOGUE],
            "direction": [i18n.t(f"kpi.dir.{v.direction}", lang) for v in CATALOGUE.values()],
            "target": [format_threshold(k, tg[k], "target", fmt) for k in CATALOGUE],
            "alert": [format_threshold(k, tg[k], "alert", fmt) for k in CATALOGUE],
            "formula": [i18n.t(f"kpi.formula.{k}", lang) for k in CATALOGUE],
        }
    )


def incomplete_title(
    completeness: pd.DataFrame, month: str, as_of: Any, lang: str, fmt: Any
) -> str | None:
    """The data-completeness slide's title, from the month's first incomplete table: data
    that stops early (``lag``), too few rows at month end (``volume``), or a month not over
    at ``as_of``; None when every table is complete."""
    from fupan.core import i18n

    bad = completeness[~completeness.complete.astype(bool)] if len(completeness) else completeness
    if not len(bad):
        return None
    first = bad.iloc[0]
    table = i18n.t(f"table.{first.table}", lang)
    if first.why == "lag":
        return i18n.t("kpi.incomplete.title", lang, month=month, table=table, latest=first.latest)
    if first.why == "volume":
        return i18n.t(
            "kpi.incomplete.title_volume",
            lang,
            month=month,
            table=table,
            recent=fmt.int(first.recent),
            expected=fmt.int(first.expected),
        )
    return i18n.t("kpi.incomplete.title_partial", lang, month=month, end=as_of)


#: The KPI a group's trend slide names in its title.
HEADLINE = {
    "retention": "churn_rate_t12",
    "revenue": "nrr",
    "experience": "nps",
    "value": "avg_clv",
}


def trend_title(
    group: str, table: pd.DataFrame, plan: TrendPlan, n_months: int, lang: str, fmt: Any
) -> str:
    """A group's trend slide title: its headline KPI (:data:`HEADLINE`) with this month's
    value and its change on a year ago, when that KPI's line is drawn; else the group and
    the number of months."""
    from fupan.core import i18n

    key = HEADLINE[group]
    head = table.set_index("kpi").loc[key]
    group_name = i18n.t(f"kpi.group.{group}", lang)
    name = i18n.t(f"kpi.name.{key}", lang)
    if pd.notna(head.value) and key in plan.draw:
        value = format_value(key, head.value, fmt)
        if pd.notna(head.yoy):
            change = format_change(key, head.yoy, fmt)
            return i18n.t(
                "kpi.trend.title", lang, group=group_name, kpi=name, value=value, change=change
            )
        return i18n.t("kpi.trend.title_no_yoy", lang, group=group_name, kpi=name, value=value)
    return i18n.t("kpi.trend.title_na", lang, group=group_name, n=n_months)


def trend_not_drawn(plan: TrendPlan, lang: str) -> list[str]:
    """Why each KPI of a trend plan is not drawn, in words: when its trend starts (too few
    months with a value so far), or why it has no value (:func:`reason_text`)."""
    from fupan.core import i18n

    def name(k: str) -> str:
        return i18n.t(f"kpi.name.{k}", lang)

    words = [i18n.t("kpi.trend.starts", lang, kpi=name(k), month=m) for k, m in plan.starts.items()]
    words += [
        i18n.t("kpi.trend.missing", lang, kpi=name(k), why=reason_text(r, lang))
        for k, r in plan.missing.items()
    ]
    return words
