"""Data-check findings for chapter 0: completeness, accuracy, timeliness, coverage.

Everything here reads the :class:`~fupan.validation.ValidationReport` the loader produced,
so the data-check chapter shows exactly what the run checked.
"""

from __future__ import annotations

import pandas as pd

from fupan.schema import TABLES
from fupan.validation import ValidationReport

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
        for col, null_share in report.profile.get(name, {}).get("null_share", {}).items():
            if (name, col) in MEANINGFUL_NULLS or not table.column(col).nullable:
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
