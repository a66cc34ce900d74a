"""The follow-up chapter: grade last year's forecasts against what happened since.

A 复盘 replays the last round. Two sources of "last year's forecasts":

``previous_run``
    an earlier annual run's ``results.json`` and exports (its red list), graded against
    the data since that run's ``as_of``;
``backtest``
    the forecasting steps rerun as of ``as_of - 12 months`` on a copy of the data cut at
    that date (every table restricted to rows dated on or before the cut, answers to
    tickets after it removed), so nothing after the cut can reach a flag or a fit.

Grades, each with an interval and its base rate: the red list (precision, recall, lift,
median warning lead time), calibration of the churn probabilities (by decile, Brier score),
CLV (predicted vs realised 12-month spend), the headline forecasts (expected churn rate,
12-month revenue and NRR vs the actuals, :func:`headline_rows`), and pilots read out
against the simulation's predicted effect.

Each review also records its own forecasts for the coming year (:func:`next_year`), so the
next review's follow-up grades what was said rather than what the models would say now.

The rooms, by the question each answers:

``cut``        where last year's forecasts come from; the data as it was at the cut
``forecasts``  last year's forecasts (backtest, previous run) and next year's (:func:`next_year`)
``grades``     what happened since, and how good the red list, probabilities, CLV and pilots were
``intervals``  the bootstrap intervals the grades share
``headline``   expected churn rate, 12-month revenue and NRR then vs what happened
``review``     the chapter in one call: :func:`follow_up` and :class:`Followup`
``slides``     what notebook 06's slides say and show

This package's names below are the chapter's public face: ``from fupan.chapters import followup``
then ``followup.follow_up(ds)``.
"""

from fupan.chapters.followup.cut import (
    DATE_COLUMNS,
    LATER_TICKET_COLUMNS,
    MIN_BEFORE_MONTHS,
    MIN_FOLLOW_MONTHS,
    MONTHS,
    FollowupSettings,
    Source,
    add_years,
    as_of_cut,
    cut_date,
    data_span_problem,
    find_previous,
    load_settings,
)
from fupan.chapters.followup.forecasts import (
    AT_RISK_EXPORTS,
    FORECASTS_EXPORT,
    ID_HEADERS,
    PROBABILITY_HEADERS,
    Forecast,
    NextYear,
    backtest_forecast,
    base_rates,
    from_previous_run,
    next_year,
    nrr_forecast,
    nrr_with_parts,
    predicted_spend,
    recorded_forecast,
    red_list_then,
)
from fupan.chapters.followup.grades import (
    brier,
    calibration_grades,
    clv_grades,
    outcomes_since,
    pilot_readouts,
    probability_and_spend_grades,
    realised_spend,
    red_list_grades,
)
from fupan.chapters.followup.headline import (
    HEADLINE_METRICS,
    churn_forecast_row,
    findings_then_and_now,
    headline_rows,
    nrr_forecast_row,
    revenue_forecast_row,
)
from fupan.chapters.followup.intervals import (
    N_BOOT,
    bootstrap_interval,
    diff_with_ci,
    percentile_interval,
    ratio_interval,
    total_interval,
)
from fupan.chapters.followup.review import (
    FLAGS_EVERYONE,
    HEADLINE_KEYS,
    RED_LIST_KEYS,
    Followup,
    follow_up,
    resolve_previous,
)
from fupan.chapters.followup.slides import (
    calibration_figure,
    clv_figure,
    findings_lines,
    headline_lines,
    headline_table,
    next_year_lines,
    next_year_table,
    pilot_lines,
    red_table,
    summary_line,
    verdict_words,
)

__all__ = [
    "AT_RISK_EXPORTS",
    "DATE_COLUMNS",
    "FLAGS_EVERYONE",
    "FORECASTS_EXPORT",
    "Followup",
    "FollowupSettings",
    "Forecast",
    "HEADLINE_KEYS",
    "HEADLINE_METRICS",
    "ID_HEADERS",
    "LATER_TICKET_COLUMNS",
    "MIN_BEFORE_MONTHS",
    "MIN_FOLLOW_MONTHS",
    "MONTHS",
    "N_BOOT",
    "NextYear",
    "PROBABILITY_HEADERS",
    "RED_LIST_KEYS",
    "Source",
    "add_years",
    "as_of_cut",
    "backtest_forecast",
    "base_rates",
    "bootstrap_interval",
    "brier",
    "calibration_figure",
    "calibration_grades",
    "churn_forecast_row",
    "clv_figure",
    "clv_grades",
    "cut_date",
    "diff_with_ci",
    "find_previous",
    "findings_lines",
    "findings_then_and_now",
    "follow_up",
    "from_previous_run",
    "headline_lines",
    "headline_rows",
    "headline_table",
    "data_span_problem",
    "load_settings",
    "next_year",
    "next_year_lines",
    "next_year_table",
    "nrr_forecast",
    "nrr_forecast_row",
    "nrr_with_parts",
    "outcomes_since",
    "percentile_interval",
    "pilot_lines",
    "pilot_readouts",
    "predicted_spend",
    "probability_and_spend_grades",
    "ratio_interval",
    "realised_spend",
    "recorded_forecast",
    "red_list_grades",
    "red_list_then",
    "red_table",
    "resolve_previous",
    "revenue_forecast_row",
    "summary_line",
    "total_interval",
    "verdict_words",
]
