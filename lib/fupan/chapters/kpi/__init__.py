"""KPI catalogue, formulas, red/amber/green status and the monthly KPI history (chapter 5).

Every KPI has a definition, a formula, a unit, the direction that is good, and a target and
alert threshold from params (``benchmarks.kpi_targets``, defaults in :mod:`.status`). A
month's value uses only data on or before that month's end (the as-of rule), so a month
computed today from the full data equals what a run at that month end would have said: every
query filters events, customers (acquired by then) and ticket responses (known by then) to the
month end. Per-event work runs in the query engine over a grid of months (one row per month,
or per customer and month); pandas sees at most one row per customer and month.

Status
    ``green`` at or better than target, ``amber`` between target and alert threshold,
    ``red`` across the alert threshold (an alert), ``grey`` when there is no value (an
    optional table or a chapter model is missing, too little history) or the month's data
    is incomplete.
History
    ``<reports>/kpi_history.parquet``: one row per (month, kpi) with the value, status and
    the fingerprint of the inputs that produced it, replaced month by month atomically.

The rooms, in the order a month's report is made
------------------------------------------------
``catalogue``
    the KPIs (unit, direction, source tables, chart group); to add a KPI, start here.
``months``
    ``YYYY-MM`` months and the date windows of one month (:class:`Window`).
``status``
    targets, alert thresholds and the red/amber/green status.
``context``
    one dataset with per-date caches, and the rows formulas return.
``formulas``
    the KPI formulas over the orders, contracts, surveys, tickets and touches.
``value``
    CLV, health bands, the rule-based at-risk list and the KPIs built on them.
``arrival``
    whether a month's data looks complete.
``report``
    every KPI per month, evaluated, and :func:`month_report`.
``formatting``
    values, changes, thresholds and reasons in words; the scorecard.
``history``
    ``kpi_history.parquet``.
``slides``
    alert sentences, the at-risk export, trend slides.

This package's namespace is the chapter's API: the notebook and ``fupan monthly`` call
``kpi.month_report``, ``kpi.trend_plan`` etc. from here; its charts are in
:mod:`fupan.report.plots.kpi`.
"""

from fupan.chapters.kpi.arrival import kpi_sources, month_completeness
from fupan.chapters.kpi.catalogue import (
    BASELINE_DAYS,
    CATALOGUE,
    EVENT_DATES,
    GROUPS,
    QUARTER_DAYS,
    RECENT_DAYS,
    STATUSES,
    TARGET_FIELDS,
    Direction,
    Kpi,
    Unit,
)
from fupan.chapters.kpi.formatting import (
    SCORECARD_COLUMNS,
    STATUS_MARKS,
    format_against,
    format_change,
    format_threshold,
    format_value,
    reason_text,
    scorecard_html,
    scorecard_rows,
    show_scorecard,
    status_html,
    status_legend_html,
    value_and_threshold,
)
from fupan.chapters.kpi.formulas import (
    churn_kpis,
    renewal_kpis,
    revenue_kpis,
    survey_kpis,
    ticket_kpis,
    touch_kpi,
    winback_kpi,
)
from fupan.chapters.kpi.history import (
    HISTORY_COLUMNS,
    empty_history,
    history_path,
    read_history,
    write_history,
)
from fupan.chapters.kpi.months import (
    Window,
    month_end,
    month_range,
    parse_month,
    report_month,
    shift_month,
)
from fupan.chapters.kpi.report import (
    FORMULAS,
    KpiReport,
    backfill_rows,
    build_alerts,
    compute_series,
    evaluate,
    fingerprint,
    history_rows,
    month_report,
)
from fupan.chapters.kpi.slides import (
    AT_RISK_COLUMNS,
    HEADLINE,
    MAX_MANAGER_SHEETS,
    MIN_TREND_POINTS,
    MONTH_ROWS,
    TrendPlan,
    alert_messages,
    at_risk_export_frame,
    at_risk_slide_table,
    completeness_table,
    definitions_table,
    export_at_risk,
    furthest_from_target,
    incomplete_title,
    manager_summary,
    reasons_for_slide,
    risk_reasons_text,
    save_month,
    short_series,
    trend_not_drawn,
    trend_plan,
    trend_title,
)
from fupan.chapters.kpi.status import default_targets, status_of, targets
from fupan.chapters.kpi.value import (
    HEALTH_KPIS,
    MODEL_KPIS,
    REASON_CODES,
    at_risk_by_rules,
    clv_valuation,
    customer_clv,
    customer_facts,
    health_at_risk,
    health_bands,
    ltv_at_risk,
    value_kpis,
)

__all__ = [
    "AT_RISK_COLUMNS",
    "BASELINE_DAYS",
    "CATALOGUE",
    "EVENT_DATES",
    "FORMULAS",
    "GROUPS",
    "HEADLINE",
    "HEALTH_KPIS",
    "HISTORY_COLUMNS",
    "MAX_MANAGER_SHEETS",
    "MIN_TREND_POINTS",
    "MODEL_KPIS",
    "MONTH_ROWS",
    "QUARTER_DAYS",
    "REASON_CODES",
    "RECENT_DAYS",
    "SCORECARD_COLUMNS",
    "STATUSES",
    "STATUS_MARKS",
    "TARGET_FIELDS",
    "Direction",
    "Kpi",
    "KpiReport",
    "TrendPlan",
    "Unit",
    "Window",
    "alert_messages",
    "at_risk_export_frame",
    "at_risk_slide_table",
    "at_risk_by_rules",
    "backfill_rows",
    "build_alerts",
    "churn_kpis",
    "clv_valuation",
    "completeness_table",
    "compute_series",
    "customer_clv",
    "customer_facts",
    "default_targets",
    "definitions_table",
    "empty_history",
    "evaluate",
    "export_at_risk",
    "fingerprint",
    "format_against",
    "format_change",
    "format_threshold",
    "format_value",
    "furthest_from_target",
    "health_at_risk",
    "health_bands",
    "history_path",
    "history_rows",
    "incomplete_title",
    "kpi_sources",
    "month_completeness",
    "ltv_at_risk",
    "manager_summary",
    "month_end",
    "month_range",
    "month_report",
    "parse_month",
    "read_history",
    "reason_text",
    "reasons_for_slide",
    "renewal_kpis",
    "report_month",
    "revenue_kpis",
    "risk_reasons_text",
    "save_month",
    "scorecard_html",
    "scorecard_rows",
    "short_series",
    "shift_month",
    "show_scorecard",
    "status_html",
    "status_legend_html",
    "status_of",
    "survey_kpis",
    "targets",
    "ticket_kpis",
    "touch_kpi",
    "trend_not_drawn",
    "trend_plan",
    "trend_title",
    "value_and_threshold",
    "value_kpis",
    "winback_kpi",
    "write_history",
]
