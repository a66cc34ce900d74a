"""Targets and alert thresholds (defaults from the benchmarks, overlaid by
``benchmarks.kpi_targets``) and the red/amber/green status they give a value."""

from __future__ import annotations

import difflib
import math
from typing import Any

from fupan.chapters.kpi.catalogue import CATALOGUE, TARGET_FIELDS
from fupan.core.params import Benchmarks, Params


def default_targets(b: Benchmarks) -> dict[str, dict[str, float]]:
    """Targets when ``benchmarks.kpi_targets`` does not set them, derived from the benchmarks.

    Money KPIs have no absolute default (it depends on the business): their default is
    relative to the same month a year earlier (``target_yoy`` / ``alert_yoy``).
    """
    monthly = lambda annual: round(1 - (1 - annual) ** (1 / 12), 4)  # noqa: E731
    return {
        "churn_rate_monthly": {
            "target": monthly(b.churn_rate),
            "alert": monthly(1.5 * b.churn_rate),
        },
        "churn_rate_t12": {"target": b.churn_rate, "alert": round(1.5 * b.churn_rate, 4)},
        "renewal_rate_top_n": {
            "target": b.top_n_renewal_target,
            "alert": round(b.top_n_renewal_target - 0.10, 4),
        },
        "renewal_rate": {"target": b.renewal_rate, "alert": round(b.renewal_rate - 0.10, 4)},
        "grr": {"target": 0.90, "alert": 0.80},
        "nrr": {
            "target": b.net_revenue_retention,
            "alert": round(b.net_revenue_retention - 0.10, 4),
        },
        "repurchase_rate": {"target": 0.32, "alert": 0.15},
        "winback_rate": {"target": 0.12, "alert": 0.05},
        "nps": {"target": b.nps_target, "alert": b.nps_alert_below},
        "csat": {"target": 4.2, "alert": 3.8},
        "first_response_median": {
            "target": b.first_response_days,
            "alert": round(1.5 * b.first_response_days, 2),
        },
        "sla_compliance": {"target": 0.90, "alert": 0.80},
        "touch_coverage": {"target": 0.80, "alert": 0.60},
        "avg_clv": {"target_yoy": 0.0, "alert_yoy": -0.10},
        "red_band_share": {"target": 0.10, "alert": 0.15},
        "ltv_at_risk": {"target_yoy": 0.0, "alert_yoy": 0.20},
    }


def targets(params: Params) -> dict[str, dict[str, float | None]]:
    """Target and alert threshold of every KPI: defaults overlaid with ``benchmarks.kpi_targets``.

    Each KPI gets ``target``, ``alert`` (absolute) and ``target_yoy``, ``alert_yoy`` (change
    vs the same month a year earlier); a KPI uses the absolute pair when it has one.

    Raises
    ------
    ValueError
        for an unknown KPI or field in ``kpi_targets``, or thresholds in the wrong order.
    """
    out: dict[str, dict[str, float | None]] = {}
    defaults = default_targets(params.benchmarks)
    given = params.benchmarks.kpi_targets
    problems = []
    for key, spec in given.items():
        if key not in CATALOGUE:
            near = difflib.get_close_matches(key, list(CATALOGUE), n=1)
            hint = f" - did you mean '{near[0]}'?" if near else f"; known: {', '.join(CATALOGUE)}"
            problems.append(f"benchmarks.kpi_targets: unknown KPI '{key}'{hint}")
        for f in spec:
            if f not in TARGET_FIELDS:
                problems.append(
                    f"benchmarks.kpi_targets.{key}: unknown field '{f}' (use {', '.join(TARGET_FIELDS)})"
                )
    for key, kpi in CATALOGUE.items():
        spec = dict(given.get(key) or defaults[key])
        row = {f: (float(spec[f]) if spec.get(f) is not None else None) for f in TARGET_FIELDS}
        for t, a in ((row["target"], row["alert"]), (row["target_yoy"], row["alert_yoy"])):
            if t is not None and a is not None and not _better_or_equal(t, a, kpi.direction):
                word = "below" if kpi.direction == "higher" else "above"
                problems.append(
                    f"benchmarks.kpi_targets.{key}: the alert threshold {a} must be {word} "
                    f"the target {t} ({kpi.direction} is better)"
                )
        out[key] = row
    if problems:
        raise ValueError("\n".join(problems))
    return out


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a >= b if direction == "higher" else a <= b


def status_of(
    value: float | None, target: float | None, alert: float | None, direction: str
) -> str:
    """``green`` at or better than target, ``amber`` up to the alert threshold, ``red`` past it.

    ``grey`` when the value or the target is missing. The threshold itself counts as amber
    (NPS exactly 40 with "alert below 40" is not an alert).
    """
    if value is None or target is None or (isinstance(value, float) and math.isnan(value)):
        return "grey"
    if _better_or_equal(value, target, direction):
        return "green"
    if alert is None or _better_or_equal(value, alert, direction):
        return "amber"
    return "red"


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
