"""The KPI catalogue: every KPI's unit, direction, source tables and chart group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["pct", "nps", "score", "days", "money"]
Direction = Literal["higher", "lower"]
STATUSES = ("green", "amber", "red", "grey")
# Event tables whose arrival is checked month by month, with their main date column.
EVENT_DATES = {
    "orders": "order_date",
    "contracts": "start_date",
    "touches": "touched_at",
    "tickets": "opened_at",
    "surveys": "surveyed_at",
    "activity": "period_start",
}
RECENT_DAYS = 14  # the volume check compares a month's last two weeks ...
BASELINE_DAYS = 84  # ... with the twelve weeks before them
QUARTER_DAYS = 90


@dataclass(frozen=True)
class Kpi:
    """One KPI of the catalogue.

    Attributes
    ----------
    key : identifier (results.json, history, label keys ``kpi.name.<key>``, ``kpi.def.<key>``,
        ``kpi.formula.<key>``).
    group : which trend chart it belongs to.
    unit : ``pct`` (a share 0-1), ``nps`` (-100..100), ``score`` (1-5), ``days``, ``money``.
    direction : ``higher`` or ``lower`` is good.
    sources : tables whose completeness in the month the value depends on.
    needs : optional tables without which it cannot be computed.
    model : the chapter model it needs (``ltv`` or ``health``), if any.
    decimals : decimals for rates too small for the default (monthly churn: 1.06%).
    """

    key: str
    group: str
    unit: Unit
    direction: Direction
    sources: tuple[str, ...]
    needs: tuple[str, ...] = ()
    model: str | None = None
    decimals: int | None = None  # shown with more decimals than the run's default


CATALOGUE: dict[str, Kpi] = {
    k.key: k
    for k in (
        Kpi("churn_rate_monthly", "retention", "pct", "lower", ("orders",), decimals=2),
        Kpi("churn_rate_t12", "retention", "pct", "lower", ("orders",)),
        Kpi(
            "renewal_rate_top_n", "retention", "pct", "higher", ("contracts",), needs=("contracts",)
        ),
        Kpi("renewal_rate", "retention", "pct", "higher", ("contracts",), needs=("contracts",)),
        Kpi("grr", "revenue", "pct", "higher", ("orders",)),
        Kpi("nrr", "revenue", "pct", "higher", ("orders",)),
        Kpi("repurchase_rate", "revenue", "pct", "higher", ("orders",)),
        Kpi("winback_rate", "revenue", "pct", "higher", ("orders",)),
        Kpi("nps", "experience", "nps", "higher", ("surveys",), needs=("surveys",)),
        Kpi("csat", "experience", "score", "higher", ("surveys",), needs=("surveys",)),
        Kpi(
            "first_response_median", "experience", "days", "lower", ("tickets",), needs=("tickets",)
        ),
        Kpi("sla_compliance", "experience", "pct", "higher", ("tickets",), needs=("tickets",)),
        Kpi(
            "touch_coverage",
            "experience",
            "pct",
            "higher",
            ("touches", "orders"),
            needs=("touches",),
        ),
        Kpi("avg_clv", "value", "money", "higher", ("orders",), model="ltv"),
        Kpi("red_band_share", "value", "pct", "lower", ("orders",), model="health"),
        Kpi("ltv_at_risk", "value", "money", "lower", ("orders",), model="ltv"),
    )
}
GROUPS = ("retention", "revenue", "experience", "value")
TARGET_FIELDS = ("target", "alert", "target_yoy", "alert_yoy")
