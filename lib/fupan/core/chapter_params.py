"""The chapter sections of a params file, one model class each: ``diagnosis``
(:class:`DiagnosisParams`), ``churn`` (:class:`ChurnParams`), ``ltv`` (:class:`LtvParams`),
``simulation`` (:class:`SimulationParams`), ``followup`` (:class:`FollowupParams`) and ``kpi``
(:class:`KpiParams`). :class:`fupan.core.params.Params` holds them; every section, there and
here, is a :class:`Section`: unknown keys are rejected and assignments validated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)


class Section(BaseModel):
    """A section of a params file: unknown keys are rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DiagnosisParams(Section):
    top_n: int = Field(100, gt=0, description="top-N customers by value for the renewal headline")
    segment_k_range: list[int] = [3, 8]
    misclassification_growth: float = Field(
        3.0, description="spend growth above which an under-tiered customer is listed (3.0 = +300%)"
    )
    rfm_bins: int = Field(5, ge=2, le=10, description="RFM quantile scores run 1..rfm_bins (best)")
    value_quantile: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="value x potential: high value at or above this quantile of 12-month spend",
    )
    potential_cut: float = Field(
        0.0, ge=-1, le=1, description="high potential: spend trend (H2-H1)/(|H1|+|H2|) above this"
    )
    coverage_days: int = Field(
        90, gt=0, description="touch coverage: touched within this many days"
    )
    min_exposure_days: int = Field(
        90, ge=1, description="touch policy judged on customers exposed this long"
    )
    stage_at_risk_days: int = Field(
        180, gt=0, description="funnel: no order for this long = at risk"
    )
    stage_trend_days: int = Field(
        180, gt=0, description="funnel: declining compares two windows this long"
    )
    stage_declining_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="funnel: declining when the last window's spend < ratio x the one before",
    )
    stage_active_orders: int = Field(
        2, ge=1, description="funnel: active with this many orders in the last year"
    )
    funnel_months: int = Field(
        12, ge=2, description="monthly stage snapshots for time spent per stage"
    )
    retention_quarters: int = Field(
        8, ge=1, description="retention curves: quarters after acquisition"
    )


class WarningRule(Section):
    """A churn warning rule: fires when ``feature op threshold`` at a snapshot."""

    feature: str = Field(description="a feature catalogue name (fupan.measures.features.CATALOGUE)")
    op: Literal[">=", ">", "<=", "<", "=="] = ">="
    threshold: float


class HandDimension(Section):
    """One dimension of the hand-weighted health score."""

    weight: float = Field(gt=0)
    metrics: dict[str, Literal[1, -1]] = Field(
        description="feature -> +1 (higher is healthier) or -1 (higher is worse)"
    )


def _default_rules() -> dict[str, WarningRule]:
    return {
        "spend_down": WarningRule(feature="spend_change_qoq", op="<=", threshold=-0.40),
        "service_requests_down": WarningRule(
            feature="tickets_change_qoq", op="<=", threshold=-0.50
        ),
        "no_login_weeks": WarningRule(feature="weeks_without_login", op=">=", threshold=3),
        "detractor": WarningRule(feature="detractor", op=">=", threshold=1),
        "sla_breach": WarningRule(feature="sla_breaches_90d", op=">=", threshold=1),
        "no_touch_after_repeat": WarningRule(
            feature="no_touch_after_first_repeat", op=">=", threshold=1
        ),
    }


def _default_hand() -> dict[str, HandDimension]:
    return {
        "need_fit": HandDimension(
            weight=0.3, metrics={"dim_need_fit": 1, "spend_change_qoq": 1, "orders_90d": 1}
        ),
        "resolution_efficiency": HandDimension(
            weight=0.3,
            metrics={"median_first_response_days": -1, "open_tickets": -1, "dim_resolution": 1},
        ),
        "relationship_intimacy": HandDimension(
            weight=0.2, metrics={"dim_intimacy": 1, "touches_90d": 1, "days_since_touch": -1}
        ),
        "engagement": HandDimension(weight=0.2, metrics={"logins_28d": 1, "nps_latest": 1}),
    }


def _default_reason_features() -> dict[str, list[str]]:
    return {
        "service": [
            "median_first_response_days",
            "open_tickets",
            "sla_breaches_90d",
            "tickets_90d",
            "tickets_change_qoq",
            "csat_latest",
            "dim_resolution",
        ],
        "price": ["spend_change_qoq", "spend_90d", "spend_365d", "orders_90d", "orders_365d"],
        "no_contact": [
            "no_touch_after_first_repeat",
            "days_since_touch",
            "touches_30d",
            "touches_90d",
            "dim_intimacy",
        ],
        "product_fit": [
            "weeks_without_login",
            "logins_28d",
            "dim_need_fit",
            "nps_latest",
            "nps_change",
            "detractor",
        ],
    }


class ChurnParams(Section):
    """Chapter 2: snapshots, warning rules, health score, drivers, lost reasons, at-risk list."""

    horizon_days: int = Field(90, gt=0, description="label: churned within H days after a snapshot")
    snapshot_months: int = Field(24, gt=1, description="monthly snapshots across the review window")
    test_months: int = Field(
        6, gt=0, description="the latest snapshots are held out: models are judged on them"
    )
    alert_volume: float = Field(0.10, gt=0, lt=1, description="share of customers flagged red")
    amber_volume: float = Field(
        0.20, ge=0, lt=1, description="share flagged amber, beyond the red share"
    )
    target_precision: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="if set, red = the largest alert volume whose training precision reaches this (overrides alert_volume)",
    )
    lead_window_days: int = Field(
        180, gt=0, description="lead time: a flag counts this many days before churn"
    )
    first_repeat_touch_days: int = Field(
        7, ge=0, description="no_touch_after_first_repeat: the N-day window"
    )
    login_gap_cap_weeks: int = Field(12, gt=0, description="weeks_without_login is capped here")
    group_correlation: float = Field(
        0.7,
        gt=0,
        le=1,
        description="metrics with |Spearman rho| above this are grouped (health weights, drivers)",
    )
    max_model_customers: int = Field(
        20_000,
        gt=0,
        description="models fit on snapshots of at most this many customers (a seeded sample)",
    )
    permutation_rows: int = Field(
        10_000, gt=0, description="later-period rows used for permutation importance"
    )
    bootstrap: int = Field(
        200, ge=20, description="cluster-bootstrap replicates for AUC and precision intervals"
    )
    exclude_features: list[str] = Field(
        default_factory=lambda: ["tier"],
        description="features never used by the models; tier is today's tier (the data holds no tier history), "
        "which may encode what happened after a snapshot",
    )
    definitional_features: list[str] | None = Field(
        None,
        description="features that are part of the churn definition: adjusted for, never ranked as drivers "
        "(default: recency_days, order_gap_ratio when non_contractual; days_to_renewal when contractual)",
    )
    driver_exclude: list[str] | None = Field(
        None,
        description="signs of churn already under way: used by the health score to predict, left out of the "
        "driver models, as adjusting for a consequence of churn distorts every effect (default: "
        "no_running_contract; also days_to_renewal when non_contractual, where a contract left to lapse "
        "is how leaving shows up and the lapse is in its missing values)",
    )
    rules: dict[str, WarningRule] = Field(default_factory=_default_rules)
    hand_weights: dict[str, HandDimension] = Field(default_factory=_default_hand)
    reason_features: dict[str, list[str]] = Field(
        default_factory=_default_reason_features,
        description="churn reason -> the features that speak to it (stated vs model reasons)",
    )


class LtvParams(Section):
    """Chapter 3: CLV models, LTV lost to churn, LTV at risk (``fupan.chapters.clv``)."""

    margin: float = Field(
        0.30, gt=0, le=1, description="profit margin applied to spend and contract value"
    )
    discount_rate_annual: float = Field(0.10, ge=0, description="discount rate a year")
    horizon_years: float = Field(
        3.0, gt=0, description="CLV counts value in the next this many years"
    )
    time_unit: Literal["D", "W", "M"] = Field("W", description="time unit of the transaction model")
    transaction_model: Literal["bgnbd", "pareto_nbd"] = Field(
        "bgnbd",
        description="non-contractual purchases: BG/NBD, or Pareto/NBD (P(alive) < 1 for one-time buyers)",
    )
    sbg_segment: Literal["tier", "cohort", "none"] = Field(
        "tier",
        description="contractual: one sBG renewal model per tier, per start-year cohort, or pooled",
    )
    sbg_min_chains: int = Field(
        50, ge=1, description="segments with fewer contract chains use the pooled sBG"
    )
    sbg_min_churned: int = Field(
        5, ge=1, description="...or with fewer chains that ended unrenewed"
    )
    snapshot_months: int = Field(
        1, ge=1, le=12, description="lost LTV: snapshots this many months apart"
    )
    at_risk_p_alive: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="at risk without churn scores (non-contractual): P(alive) below this",
    )
    at_risk_renewal_days: int = Field(
        90,
        gt=0,
        description="at risk without churn scores (contractual): renewal decision within this many days",
    )
    top_lost: int = Field(10, ge=1, description="largest lost accounts shown by name")
    holdout_max_freq: int = Field(
        7, ge=1, description="model check: calibration frequencies pooled from here"
    )


def _default_simulation_features() -> list[str]:
    # The scenario levers (first response, touches) and the churn signals they must be
    # separated from; features that are arithmetic of a lever (sla_breaches_90d, open tickets,
    # touches_30d, days_since_touch) are left out because a scenario cannot recompute them.
    # The assigned tier is left out too: it sets the service policy (SLA, touch cadence), so
    # adjusting for it would leave the levers only their within-tier noise; customer size
    # enters through spend_365d.
    return [
        "median_first_response_days", "touches_90d", "no_touch_after_first_repeat",
        "spend_change_qoq", "weeks_without_login", "detractor", "tickets_90d", "orders_90d",
        "spend_365d", "tenure_days", "recency_days", "days_to_renewal",
    ]  # fmt: skip


class SimulationParams(Section):
    """Chapter 4: scenario simulation, pilot design and roadmap (``fupan.chapters.simulate``)."""

    scenarios_file: str | None = Field(
        "scenarios.yaml",
        description="scenarios YAML beside the params file (fupan.core.scenarios); when the default "
        "name is absent there, the project's params/scenarios.yaml is used and the deck says so",
    )
    bootstrap: int = Field(
        200, ge=10, description="bootstrap refits of the churn model (customers resampled)"
    )
    interval: float = Field(0.90, gt=0.5, lt=1, description="coverage of the reported intervals")
    fit_months: int = Field(
        24,
        ge=3,
        description="monthly snapshots the churn model is fitted on: the latest whose outcomes are fully known",
    )
    max_fit_customers: int = Field(
        20_000, gt=0, description="the model is fitted on at most this many customers (seeded)"
    )
    projection_months: int = Field(
        12,
        ge=1,
        le=36,
        description="a customer's coming year is projected from her last N monthly snapshots",
    )
    features: list[str] = Field(
        default_factory=_default_simulation_features,
        description="churn-model features (those available are used; levers must be among them)",
    )
    horizon_years: float = Field(1.0, gt=0, le=10, description="default scenario horizon")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="pilot significance level (two-sided)")
    power: float = Field(
        0.80, gt=0.5, lt=1, description="pilot power to detect the predicted effect"
    )
    go_uplift: float = Field(
        0.20,
        gt=0,
        description="pilot go/no-go: roll out when the relative improvement is at least this",
    )
    pilot_max_months: int = Field(12, ge=1, le=36, description="longest pilot considered")
    winback_pilot_months: int = Field(
        3, ge=1, le=24, description="win-back pilots observe reactivation this long"
    )
    rollout_months: int = Field(
        6, ge=1, description="roadmap: months from rollout to standardisation"
    )
    sensitivity: list[float] = Field(
        default_factory=lambda: [0.5, 1.5],
        min_length=2,
        max_length=2,
        description="tornado: ROI with the effect size scaled by these factors",
    )


class FollowupParams(Section):
    """Chapter 6: grading last year's forecasts (``fupan.chapters.followup``)."""

    previous: str | None = Field(
        None, description="a previous run's folder (relative to the params file), or none"
    )
    months: int = Field(12, gt=0, description="how far back the backtest looks (months)")
    auto_previous: bool = Field(
        True, description="without `previous`, grade the newest earlier annual run found"
    )


class KpiParams(Section):
    """Chapter 5 and the monthly report: KPI windows, data-completeness and at-risk rules.

    Targets and alert thresholds live in ``benchmarks.kpi_targets`` (read by ``fupan.chapters.kpi``).
    """

    @model_validator(mode="before")
    @classmethod
    def _retired_touch_window(cls, data: Any) -> Any:
        # one definition of touch coverage (fupan.measures.metrics) for diagnosis and KPIs alike
        if isinstance(data, dict) and "touch_window_months" in data:
            raise ValueError(
                "kpi.touch_window_months is retired: touch coverage has one window for the "
                "diagnosis and the KPIs; remove it and set diagnosis.coverage_days (days) instead"
            )
        return data

    trend_months: int = Field(24, ge=2, le=120, description="months shown in the trend charts")
    survey_window_months: int = Field(
        3, ge=1, le=24, description="NPS and CSAT: responses in the trailing N months"
    )
    complete_lag_days: int = Field(
        7,
        ge=0,
        description="a table whose latest row is more than this many days before month end may be incomplete",
    )
    complete_silence_p: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="...and is, when so long a silence had less than this chance at its usual daily rate",
    )
    complete_min_share: float = Field(
        0.4,
        ge=0,
        le=1,
        description="rows in the month's last 14 days below this share of the usual volume: incomplete",
    )
    complete_min_expected: float = Field(
        30,
        ge=0,
        description="the volume rule applies only when at least this many rows were expected",
    )
    at_risk_cadence_multiple: float = Field(
        2.0, gt=1, description="at risk: no order for this many times the customer's usual interval"
    )
    at_risk_min_days: int = Field(
        60, ge=1, description="at risk: ...and for at least this many days"
    )
    at_risk_spend_drop: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="at risk: the last 90 days' spend fell by this share vs the 90 days before",
    )
    alert_on: list[Literal["kpi", "new_red", "incomplete"]] = Field(
        default_factory=lambda: ["kpi", "new_red", "incomplete"],
        description="alert kinds that make `fupan monthly` exit with the alert code",
    )
    at_risk_source: Literal["auto", "health", "rules"] = Field(
        "auto",
        description="at-risk list and red band: the churn chapter's health score (health), the interim "
        "rules above (rules), or the health score when it is available (auto)",
    )
    history_file: str = Field(
        "kpi_history.parquet", description="KPI history, relative to the reports folder"
    )
