"""Run definitions: YAML files in ``params/`` validated by pydantic models.

A params file is a contract. Unknown keys are rejected with the nearest valid name, types
are checked, dates parsed, and every problem is reported in one message. Relative paths in
a params file are resolved against the folder that holds the file, so a run does not depend
on the directory it was started from.

Chapter sections (``diagnosis``, ``churn``, ``ltv``, ``simulation``, ``kpi``) each own one
model class below.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fupan.core import paths

NOTEBOOKS = (
    "00_data_check",
    "01_diagnosis",
    "02_churn_root_cause",
    "03_ltv_loss",
    "04_strategy_simulation",
    "05_kpi_tracking",
    "06_followup",
)


class ParamsError(ValueError):
    """A params file that does not meet its contract; the message lists every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NumberFormat(_Model):
    """How a column writes its numbers: "1.234,50" is ``{decimal: ",", thousands: "."}``."""

    decimal: Literal[".", ","] = Field(".", description="decimal mark")
    thousands: Literal[",", ".", " ", "'", ""] = Field(
        ",", description="thousands separator ('' for none)"
    )

    @model_validator(mode="after")
    def _distinct(self) -> NumberFormat:
        if self.decimal == self.thousands:
            raise ValueError("number_format: decimal and thousands must differ")
        return self


class DataSource(_Model):
    """Where the data comes from and how its columns map onto the contract."""

    source: str = Field(
        description="folder of CSV/Parquet/xlsx files, a .duckdb file, or a database URL"
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="table -> file name, when files are not named by table"
    )
    columns: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="table -> {source column: contract column}"
    )
    values: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict,
        description="table -> column -> {source value: contract value}, e.g. Chinese channel names",
    )
    encoding: str = Field(
        "auto", description="CSV encoding: auto (UTF-8, UTF-8-SIG, GB18030) or a codec"
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or index (default: first)")
    sheets: dict[str, str | int] = Field(
        default_factory=dict,
        description="table -> Excel sheet name or 0-based index; overrides data.sheet",
    )
    encodings: dict[str, str] = Field(
        default_factory=dict, description="table -> CSV encoding; overrides data.encoding"
    )
    header_row: int | None = Field(
        None,
        description="0-based header row in Excel/CSV files; default: detected (title rows skipped)",
    )
    orphans: Literal["fail", "drop"] = Field(
        "drop", description="rows whose customer_id is not in customers: stop, or drop and report"
    )
    orphan_threshold: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a table with a larger share of orphan rows stops the run even with orphans: drop",
    )
    number_format: NumberFormat | dict[str, NumberFormat | dict[str, NumberFormat]] | None = Field(
        None,
        description="how numbers are written: one format for every column, or per table "
        "({orders: {decimal: ',', thousands: '.'}}), or per column ({orders: {amount: {...}}}); "
        "default: a decimal point, with ',' accepted only as a thousands separator",
    )
    bad_amounts: Literal["fail", "drop"] = Field(
        "fail",
        description="orders with an empty, NaN or infinite amount: stop, or drop and report",
    )
    orders_before_acquisition: Literal["warn", "fail", "adjust"] = Field(
        "warn",
        description="orders dated before the customer's acquired_at: keep both and report "
        "(warn), stop (fail), or move acquired_at to the first order and report (adjust)",
    )

    def number_format_for(self, table: str, column: str) -> NumberFormat | None:
        """The number format of one column: per column, else per table, else global."""
        nf = self.number_format
        if nf is None or isinstance(nf, NumberFormat):
            return nf
        per = nf.get(table)
        if isinstance(per, dict):
            return per.get(column)
        return per


class Tiers(_Model):
    """The tier vocabulary the business assigns, best first."""

    order: list[str] = ["platinum", "gold", "silver", "attention"]
    core: list[str] = ["platinum", "gold"]
    labels: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "platinum": {"zh": "白金", "en": "Platinum"},
            "gold": {"zh": "黄金", "en": "Gold"},
            "silver": {"zh": "银牌", "en": "Silver"},
            "attention": {"zh": "需关注", "en": "Needs attention"},
        }
    )
    # Annual-spend floors per tier (same order as ``order``; the last tier has floor 0).
    spend_floors: list[float] = [200_000, 50_000, 10_000, 0]
    dormant_days: int = Field(
        365, description="no order for this long: dormant, whatever the spend"
    )

    @model_validator(mode="after")
    def _check(self) -> Tiers:
        missing = [t for t in self.core if t not in self.order]
        if missing:
            raise ValueError(f"core tiers {missing} are not in tiers.order {self.order}")
        if "spend_floors" not in self.model_fields_set and len(self.spend_floors) != len(
            self.order
        ):
            # Not set in the params: data.load resolves them from the data's spend
            # (fupan.io.tiers.resolve_floors); until then no floor is reachable but the last.
            inf = float("inf")
            object.__setattr__(self, "spend_floors", [inf] * (len(self.order) - 1) + [0.0])
            return self
        if len(self.spend_floors) != len(self.order):
            raise ValueError("tiers.spend_floors needs one floor per tier in tiers.order")
        if any(a < b for a, b in zip(self.spend_floors, self.spend_floors[1:], strict=False)):
            raise ValueError("tiers.spend_floors must decrease from the best tier to the worst")
        return self


class ChurnDefinition(_Model):
    """How churn is defined for this business."""

    dormancy_days: int = Field(
        365, gt=0, description="non-contractual: no order for this long = churned"
    )
    grace_days: int = Field(60, ge=0, description="contractual: days after end_date to renew")
    reasons: list[str] = [
        "service",
        "price",
        "competitor",
        "no_contact",
        "product_fit",
        "relocation",
        "other",
    ]


class Format(_Model):
    currency: str = "CNY"
    currency_symbol: str = "¥"
    thousands: str = ","
    decimals: int = 1


class Privacy(_Model):
    """Masking for decks and exports meant for wide circulation."""

    mask_pii: bool = Field(
        False, description="replace customer names and ids by salted hashes in the deck"
    )
    salt: str | None = Field(
        None, description="masking key; the FUPAN_PII_SALT environment variable wins"
    )


class Benchmarks(_Model):
    """Industry benchmarks and targets (``params/benchmarks.yaml``)."""

    churn_rate: float = 0.12
    core_churn_rate: float = 0.12
    top_n_renewal_target: float = 0.75
    renewal_rate: float = 0.80
    first_response_days: float = 3.5
    resolution_days: float = 7.0
    sla_first_response_days: dict[str, float] = Field(
        default_factory=lambda: {"platinum": 1.0, "gold": 2.0, "silver": 3.5, "attention": 5.0}
    )
    nps_alert_below: float = 40.0
    nps_target: float = 45.0
    lost_ltv_rate: float = 0.10
    net_revenue_retention: float = 1.0
    touch_policy_per_quarter: dict[str, float] = Field(
        default_factory=lambda: {"platinum": 6, "gold": 4, "silver": 2, "attention": 1}
    )
    kpi_targets: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="kpi -> {target, alert}; read by fupan.chapters.kpi"
    )


class DiagnosisParams(_Model):
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


class WarningRule(_Model):
    """A churn warning rule: fires when ``feature op threshold`` at a snapshot."""

    feature: str = Field(description="a feature catalogue name (fupan.measures.features.CATALOGUE)")
    op: Literal[">=", ">", "<=", "<", "=="] = ">="
    threshold: float


class HandDimension(_Model):
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


class ChurnParams(_Model):
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


class LtvParams(_Model):
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


class SimulationParams(_Model):
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


class FollowupParams(_Model):
    """Chapter 6: grading last year's forecasts (``fupan.chapters.followup``)."""

    previous: str | None = Field(
        None, description="a previous run's folder (relative to the params file), or none"
    )
    months: int = Field(12, gt=0, description="how far back the backtest looks (months)")
    auto_previous: bool = Field(
        True, description="without `previous`, grade the newest earlier annual run found"
    )


class KpiParams(_Model):
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


class Params(_Model):
    """A whole run definition."""

    name: str | dict[str, str] = Field(
        "fupan review",
        description="the run's name on the title slide and every footer: one text, or one per "
        "language, {zh: 2026 年度客户复盘, en: 2026 customer review}; after loading, the text "
        "in the run's language",
    )
    name_en: str | None = Field(
        None, description="the English name when name is a single (Chinese) text"
    )
    goals: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the review's goals per language, for the background slide",
    )
    kind: Literal["annual_review", "monthly"] = "annual_review"
    lang: Literal["zh", "en"] = "zh"
    as_of: dt.date
    period_start: dt.date | None = Field(
        None, description="start of the review period (default: one year before as_of)"
    )
    seed: int = 42
    business_model: Literal["contractual", "non_contractual"] = "non_contractual"
    engine: Literal["duckdb", "spark"] = "duckdb"
    data: DataSource
    notebooks: list[str] = list(NOTEBOOKS)
    cell_timeout_seconds: int = Field(900, gt=0)
    parallel_notebooks: int = Field(
        2,
        ge=1,
        description=(
            "notebooks executed at once, each in its own kernel (1: one after another); "
            "each kernel holds the data it reads, so memory grows with this"
        ),
    )
    engine_memory_gb: float | None = Field(
        2.0,
        gt=0,
        description=(
            "memory each notebook's DuckDB engine may hold before it spills to disk in the "
            "run's work folder (null: DuckDB's default, 80% of the machine per notebook)"
        ),
    )
    benchmarks_file: str | None = "benchmarks.yaml"
    reports_dir: str | None = Field(
        None,
        description=(
            "where runs are written, relative to this file "
            "(default: reports/ under the folder fupan is started in; --out overrides)"
        ),
    )
    benchmarks: Benchmarks = Field(default_factory=Benchmarks)
    tiers: Tiers = Field(default_factory=Tiers)
    churn_definition: ChurnDefinition = Field(default_factory=ChurnDefinition)
    format: Format = Field(default_factory=Format)
    privacy: Privacy = Field(default_factory=Privacy)
    diagnosis: DiagnosisParams = Field(default_factory=DiagnosisParams)
    churn: ChurnParams = Field(default_factory=ChurnParams)
    ltv: LtvParams = Field(default_factory=LtvParams)
    simulation: SimulationParams = Field(default_factory=SimulationParams)
    kpi: KpiParams = Field(default_factory=KpiParams)
    followup: FollowupParams = Field(default_factory=FollowupParams)
    # Set by load(): the folder relative paths are resolved against.
    base_dir: str = Field("", exclude=True)
    # Set by load(): the run's paths, absolute (see the context property).
    _context: paths.RunContext | None = PrivateAttr(None)
    _params_file: Path | None = PrivateAttr(None)

    @field_validator("notebooks")
    @classmethod
    def _known_notebooks(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if n not in NOTEBOOKS]
        if bad:
            raise ValueError(f"unknown notebooks {bad}; known: {list(NOTEBOOKS)}")
        return v

    @field_validator("name")
    @classmethod
    def _name_languages(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(v, dict):
            bad = [k for k in v if k not in ("zh", "en")]
            if bad:
                raise ValueError(f"name: unknown language {bad}; give name: {{zh: …, en: …}}")
            empty = [k for k, text in v.items() if not str(text).strip()]
            if empty or not v:
                raise ValueError(f"name: the {empty or 'zh/en'} text is empty")
        elif not v.strip():
            raise ValueError("name must not be empty")
        return v

    @model_validator(mode="after")
    def _run_name(self) -> Params:
        """``name`` becomes the text in the run's language (the title and every footer)."""
        object.__setattr__(
            self, "name", run_name(self.name, self.name_en, self.lang, self.kind, self.as_of)
        )
        return self

    @model_validator(mode="after")
    def _derive(self) -> Params:
        if self.period_start is None:
            object.__setattr__(
                self, "period_start", _years_before(self.as_of, 1) + dt.timedelta(days=1)
            )
        if self.period_start >= self.as_of:
            raise ValueError(f"period_start {self.period_start} must be before as_of {self.as_of}")
        return self

    def resolve(self, path: str) -> str:
        """A path from the params file, absolute, relative to the file's folder (URLs unchanged)."""
        return paths.absolute(path, self.base_dir)

    @property
    def context(self) -> paths.RunContext:
        """Every path of the run, absolute (:class:`fupan.core.paths.RunContext`).

        Made once by :func:`load`; params built otherwise (or a copy whose paths were
        changed) get theirs on first use."""
        if self._context is None or self._context.key != _context_key(self):
            self._context = run_context(self, self._params_file)
        return self._context

    def tier_label(self, tier: str) -> str:
        return self.tiers.labels.get(tier, {}).get(self.lang, tier)


_CJK = re.compile(r"[\u3400-\u9fff]")
_DEFAULT_EN_NAME = {"annual_review": "Customer review {year}", "monthly": "Monthly customer report"}


def run_name(
    name: str | dict[str, str], name_en: str | None, lang: str, kind: str, as_of: dt.date
) -> str:
    """The run's name in ``lang``.

    ``name`` is one text or ``{zh: …, en: …}``; ``name_en`` is the English one beside a
    single text. An English deck never shows a Chinese run name: without an English name
    it says the kind of review and the year (and warns, naming the fix).

    Raises
    ------
    ValueError
        when ``name`` is per language and ``name_en`` is given too, or the per-language
        name lacks the run's language.
    """
    if isinstance(name, dict):
        if name_en is not None:
            raise ValueError(
                "give the English name once: name: {zh: …, en: …} or name_en, not both"
            )
        if lang in name:
            return name[lang]
        if lang == "en" or _CJK.search(next(iter(name.values()))):
            raise ValueError(
                f"name has no '{lang}' text for this {lang} deck (it has {sorted(name)}): "
                f"add it, e.g. name: {{zh: …, en: …}}"
            )
        return next(iter(name.values()))
    if lang == "en" and name_en:
        return name_en
    if lang == "en" and _CJK.search(name):
        fallback = _DEFAULT_EN_NAME[kind].format(year=as_of.year)
        warnings.warn(
            f"name '{name}' is Chinese and the deck is English: it is titled '{fallback}'. "
            "Set name: {zh: …, en: …} or name_en to choose the English name.",
            stacklevel=2,
        )
        return fallback
    return name


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def _nearest(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return (
        f" — did you mean '{near[0]}'?" if near else f" — valid keys: {', '.join(sorted(options))}"
    )


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the params"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = _nearest(str(loc[-1]), list(model.model_fields)) if model else ""
            lines.append(f"  - unknown key '{where}'{hint}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  - {where}: {e['msg']}{got_s}")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: dates stay strings so pydantic reports bad ones."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path, **overrides: Any) -> Params:
    """Read, merge and validate a params file.

    Parameters
    ----------
    path : the YAML run definition.
    **overrides : top-level or dotted keys (``data.source``) that replace the file's values;
        ``None`` and empty strings are ignored so notebook defaults can pass through.

    Raises
    ------
    ParamsError
        listing every problem at once, with the nearest valid key for unknown ones.
    """
    path = Path(path).resolve()
    raw = _read_yaml(path)
    for key, value in overrides.items():
        if value is None or value == "":
            continue
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    # A params file copied on its own has no benchmarks or scenarios beside it: the default
    # names fall back to the packaged files with a warning. A file named otherwise must
    # exist (falling back would silently price what the user did not ask for).
    bench_file = raw.get("benchmarks_file", "benchmarks.yaml")
    if bench_file:
        bench_path = path.parent / bench_file
        if not bench_path.exists():
            if bench_file != "benchmarks.yaml":
                raise ParamsError(f"{path}: benchmarks_file '{bench_file}' not found beside it")
            bench_path = _fallback(path, "benchmarks_file", bench_file, "benchmarks.yaml")
        raw["benchmarks"] = _merge(_read_yaml(bench_path), raw.get("benchmarks") or {})
    sim = raw.get("simulation")
    if isinstance(sim, dict) and sim.get("scenarios_file") == "scenarios.yaml":
        if not (path.parent / "scenarios.yaml").exists():
            _fallback(path, "simulation.scenarios_file", "scenarios.yaml", "scenarios.yaml")
            # Left at its default, fupan.core.scenarios takes the packaged file and the deck says so.
            del sim["scenarios_file"]
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, str(path))) from None
    object.__setattr__(params, "base_dir", str(path.parent))
    params._params_file = path
    params._context = run_context(params, path)
    return params


def _context_key(params: Params) -> tuple[Any, ...]:
    return (
        params.base_dir,
        params.data.source,
        params.reports_dir,
        params.benchmarks_file,
        params.simulation.scenarios_file,
    )


def run_context(params: Params, params_file: Path | None = None) -> paths.RunContext:
    """The run's paths, resolved against the params file's folder: the one place a run
    resolves them (outputs named on the command line are the CLI's, against the shell's
    folder)."""
    configured = params.reports_dir
    reports = (
        Path(params.resolve(str(Path(configured).expanduser()))).resolve()
        if configured
        else (Path.cwd() / "reports").resolve()
    )
    bench, scen = params.benchmarks_file, params.simulation.scenarios_file
    return paths.RunContext(
        params_file=params_file,
        base_dir=Path(params.base_dir) if params.base_dir else None,
        data=params.resolve(params.data.source),
        benchmarks_file=Path(params.resolve(bench)) if bench else None,
        scenarios_file=Path(params.resolve(scen)) if scen else None,
        reports_dir=reports,
        key=_context_key(params),
    )


#: Benchmarks and scenarios shipped with the package, used when a params file has none beside it.
DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"


def packaged_default(name: str) -> Path:
    """The packaged default file ``name`` (``benchmarks.yaml``, ``scenarios.yaml``)."""
    packaged = DEFAULTS_DIR / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[3] / "params" / name  # a source checkout


def _fallback(params_path: Path, key: str, name: str, default: str) -> Path:
    import warnings

    fallback = packaged_default(default)
    if not fallback.exists():
        raise ParamsError(
            f"{params_path}: {key} '{name}' not found beside it, and no packaged default"
        )
    warnings.warn(
        f"{key} '{name}' is not beside {params_path.name}; using the packaged default "
        f"{fallback} (copy it beside the params file to change it)",
        UserWarning,
        stacklevel=3,
    )
    return fallback


def dump(params: Params) -> dict[str, Any]:
    """The params as plain JSON-able values (for manifests and re-runs)."""
    import re

    out = params.model_dump(mode="json")
    # A database URL may carry a password: manifests are shared, credentials are not.
    out["data"]["source"] = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", params.context.data)
    return out
