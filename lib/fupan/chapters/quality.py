"""Data-check findings for chapter 0: completeness, accuracy, timeliness, coverage.

Everything here reads the :class:`~fupan.io.validation.ValidationReport` the loader produced,
so the data-check chapter shows exactly what the run checked.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fupan.io.schema import TABLES
from fupan.io.validation import ValidationReport

# Which later sections need which optional table: a missing table skips these, and says so.
SECTION_NEEDS: dict[str, list[str]] = {
    "contracts": ["diagnosis.renewal", "ltv.contractual", "kpi.renewal"],
    "touches": [
        "diagnosis.touches",
        "churn.touch_signals",
        "simulation.touches",
        "kpi.touch_coverage",
    ],
    "tickets": ["diagnosis.service", "churn.service_signals", "simulation.sla", "kpi.sla"],
    "surveys": ["churn.satisfaction", "kpi.nps"],
    "activity": ["churn.login_signals"],
    "churn_events": ["churn.lost_reasons", "ltv.lost_by_reason", "simulation.winback"],
}


def table_overview(report: ValidationReport) -> pd.DataFrame:
    """One row per contract table: present, rows loaded, rows kept, errors, warnings, latest date."""
    rows = []
    for name, table in TABLES.items():
        prof = report.profile.get(name, {})
        probs = [p for p in report.problems if p.table == name]
        rows.append(
            {
                "table": name,
                "required": table.required,
                "present": name in report.present,
                "rows": prof.get("rows"),
                "clean_rows": prof.get("clean_rows"),
                "errors": sum(p.severity == "error" for p in probs),
                "warnings": sum(p.severity == "warning" for p in probs),
                "latest": prof.get("latest"),
                "lag_days": prof.get("lag_days"),
            }
        )
    return pd.DataFrame(rows)


# Empty by design: a contract that renews nothing, a ticket not yet answered or resolved.
MEANINGFUL_NULLS = {
    ("contracts", "renewal_of"),
    ("tickets", "first_response_at"),
    ("tickets", "resolved_at"),
}


def completeness(report: ValidationReport) -> pd.DataFrame:
    """Share of filled values of the columns that may be empty (long format).

    Columns that must be filled are enforced by validation (a run with gaps there stops), and
    columns whose emptiness carries meaning (:data:`MEANINGFUL_NULLS`) are not gaps.
    """
    rows = []
    for name in report.present:
        table = TABLES[name]
        prof = report.profile.get(name, {})
        # Columns the source did not have at all are "not supplied", not gaps (the capability
        # map says what they would enable).
        had = set(prof.get("columns", prof.get("null_share", {})))
        if name in report.supplied:  # a column empty throughout counts as not supplied
            had &= set(report.supplied[name])
        for col, null_share in prof.get("null_share", {}).items():
            if (name, col) in MEANINGFUL_NULLS or not table.column(col).nullable:
                continue
            if col not in had:
                continue
            if null_share is not None:
                rows.append({"table": name, "column": col, "filled": 1.0 - null_share})
    return pd.DataFrame(rows, columns=["table", "column", "filled"])


def coverage(report: ValidationReport) -> pd.DataFrame:
    """First and last date of each table's main date column."""
    rows = []
    for name in report.present:
        table = TABLES[name]
        main = next((c.name for c in table.columns if c.not_after_as_of), None)
        rng = report.profile.get(name, {}).get("date_range", {}).get(main)
        if main and rng and rng[0] and rng[1]:
            start, end = pd.Timestamp(rng[0]), pd.Timestamp(rng[1])
            rows.append(
                {
                    "table": name,
                    "column": main,
                    "start": start,
                    "end": end,
                    "months": round((end - start).days / 30.44, 1),
                }
            )
    return pd.DataFrame(rows, columns=["table", "column", "start", "end", "months"])


def problems(report: ValidationReport) -> pd.DataFrame:
    """Every finding as a table, errors first."""
    order = {"error": 0, "warning": 1, "info": 2}
    rows = [
        {
            "severity": p.severity,
            "table": p.table,
            "column": p.column or "",
            "check": p.check,
            "rows": p.count,
            "message": p.message,
            "fix": p.fix,
        }
        for p in sorted(report.problems, key=lambda p: (order[p.severity], p.table))
    ]
    return pd.DataFrame(
        rows, columns=["severity", "table", "column", "check", "rows", "message", "fix"]
    )


def skipped_sections(report: ValidationReport) -> dict[str, list[str]]:
    """Missing optional table -> the later sections that will say they are skipped."""
    return {
        t: SECTION_NEEDS.get(t, [])
        for t in TABLES
        if not TABLES[t].required and t not in report.present
    }


def section_needs(report: ValidationReport) -> pd.DataFrame:
    """Each optional table, whether it is present, and the sections (label keys) that need it."""
    rows = [
        {"table": t, "present": t in report.present, "sections": list(secs)}
        for t, secs in SECTION_NEEDS.items()
    ]
    return pd.DataFrame(rows, columns=["table", "present", "sections"])


# --------------------------------------------------------------------------------------
# Capability map: each analysis runs or is skipped, and what data would enable it

#: Each analysis and what it needs. A need is ``table:<name>`` (the optional table is
#: present), ``column:<table>.<column>`` (the source supplied the column: a derived or empty
#: one does not count), ``history:<months>`` (months of order, or contract, history up to
#: as_of) or ``model:<business model>``. Every need must hold.
CAPABILITIES: dict[str, list[str]] = {
    "diagnosis.churn": [],
    "diagnosis.churn_by_industry": ["column:customers.industry"],
    "diagnosis.churn_by_region": ["column:customers.region"],
    "diagnosis.assigned_vs_recommended_tier": ["column:customers.tier"],
    "diagnosis.net_revenue_retention": ["history:24"],
    "diagnosis.renewal": ["table:contracts"],
    "diagnosis.touches": ["table:touches"],
    "diagnosis.service": ["table:tickets"],
    "churn.warning_signals": ["history:13"],
    "churn.touch_signals": ["table:touches", "history:13"],
    "churn.service_signals": ["table:tickets", "history:13"],
    "churn.satisfaction": ["table:surveys"],
    "churn.login_signals": ["table:activity", "history:13"],
    "churn.lost_reasons": ["table:churn_events"],
    "churn.by_account_manager": ["column:customers.account_manager"],
    "ltv.transactions": ["model:non_contractual", "table:orders"],
    "ltv.contractual": ["model:contractual", "table:contracts"],
    "ltv.lost_by_reason": ["table:churn_events"],
    "simulation.sla": ["table:tickets", "history:13"],
    "simulation.touches": ["table:touches", "history:13"],
    "simulation.retier": ["column:customers.tier", "history:13"],
    "simulation.winback": ["table:churn_events"],
    "kpi.renewal": ["table:contracts"],
    "kpi.touch_coverage": ["table:touches"],
    "kpi.sla": ["table:tickets"],
    "kpi.nps": ["table:surveys"],
}


def history_months(report: ValidationReport) -> float:
    """Months of history: first to last order (or contract start) in the clean data."""
    cov = coverage(report)
    for table in ("orders", "contracts"):
        row = cov[cov.table == table]
        if len(row):
            return float(row.months.iloc[0])
    return 0.0


def _need_met(need: str, report: ValidationReport, business_model: str, months: float) -> bool:
    kind, _, what = need.partition(":")
    if kind == "table":
        return what in report.present
    if kind == "column":
        table, _, column = what.partition(".")
        return table in report.present and column in report.supplied.get(table, [])
    if kind == "history":
        return months >= float(what)
    if kind == "model":
        return business_model == what
    raise ValueError(f"unknown need {need!r}")


def capability_map(report: ValidationReport, business_model: str) -> pd.DataFrame:
    """Each analysis of the review, whether the data lets it run, and what is missing.

    Parameters
    ----------
    report : the load's validation report (tables present, columns supplied, coverage).
    business_model : ``params.business_model``.

    Returns
    -------
    DataFrame with one row per :data:`CAPABILITIES` entry: ``section``, ``chapter`` (the
    part before the dot), ``runs``, ``needs`` (every need) and ``missing`` (the needs the
    data does not meet: what would enable the section), in chapter order.
    """
    months = history_months(report)
    rows = []
    for section, needs in CAPABILITIES.items():
        missing = [n for n in needs if not _need_met(n, report, business_model, months)]
        rows.append(
            {
                "section": section,
                "chapter": section.split(".")[0],
                "runs": not missing,
                "needs": list(needs),
                "missing": missing,
            }
        )
    return pd.DataFrame(rows, columns=["section", "chapter", "runs", "needs", "missing"])


def describe_need(need: str, t: Any) -> str:
    """A need in words, through the label function ``t`` (``nb.t``)."""
    kind, _, what = need.partition(":")
    if kind == "table":
        return t("dc.cap.need.table", table=t(f"table.{what}"))
    if kind == "column":
        return t("dc.cap.need.column", column=what)
    if kind == "history":
        return t("dc.cap.need.history", months=what)
    return t("dc.cap.need.model", model=what)
