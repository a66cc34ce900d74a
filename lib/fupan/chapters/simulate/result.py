"""What :func:`fupan.chapters.simulate.simulate` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# --------------------------------------------------------------------------------------
# The simulation


@dataclass
class ModelInfo:
    """What the churn model rests on, for the method slide and results.json."""

    fit_start: pd.Timestamp
    fit_end: pd.Timestamp
    known_until: pd.Timestamp
    rows: int
    customers: int
    events: int
    slope_rows: int
    inferred_left_out: int
    features: list[str]
    effects: pd.DataFrame  # column, feature, log_hr_per_unit, low, high
    predicted_annual_churn: float  # live customers now, as projected
    observed_annual_churn: float  # the shared definition, the year to as_of


@dataclass
class SimulationResult:
    """Everything chapter 4 shows and records.

    Attributes
    ----------
    table : one row per priced scenario, ranked by ROI (results.json ``simulation.scenarios``).
        ``*_low``/``*_high`` bound the interval (``simulation.interval``) of what the change
        would realise: model uncertainty and chance together; ``*_model_low``/``_high``
        bound the expected value (model uncertainty only).
    draws : scenario name -> replicate metrics (realised).
    sensitivity : ROI when the effect size, the cost or the customer value moves.
    pilots : pilot design per scenario.
    roadmap : phases per scenario (:func:`roadmap`).
    winback : scenario name -> per-customer win-back economics.
    per_customer : scenario name -> per-customer churn before/after and value.
    skipped : scenarios that could not be priced, with the reason.
    model : what the churn model rests on (None when no retention scenario was priced).
    info : bootstrap count, interval, dates, the value model.
    """

    table: pd.DataFrame
    draws: dict[str, pd.DataFrame]
    sensitivity: pd.DataFrame
    pilots: pd.DataFrame
    roadmap: pd.DataFrame
    winback: dict[str, pd.DataFrame]
    per_customer: dict[str, pd.DataFrame]
    skipped: list[dict[str, str]]
    model: ModelInfo | None
    info: dict[str, Any] = field(default_factory=dict)

    RECORD = (
        "name",
        "kind",
        "effect_source",
        "target_customers",
        "churn_before",
        "churn_after",
        "churn_change",
        "churn_change_low",
        "churn_change_high",
        "churn_change_model_low",
        "churn_change_model_high",
        "customers_kept",
        "customers_kept_low",
        "customers_kept_high",
        "ltv_retained",
        "ltv_retained_low",
        "ltv_retained_high",
        "cost",
        "roi",
        "roi_low",
        "roi_high",
        "roi_model_low",
        "roi_model_high",
        "payback_months",
        "payback_months_low",
        "payback_months_high",
        "horizon_years",
        "pilot_n_per_arm",
        "pilot_months",
        "phase",
        "rank",
    )

    def records(self, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """``simulation.scenarios`` for results.json; ``labels`` maps names to display names."""
        out = []
        for r in self.table.to_dict(orient="records"):
            row = {k: r.get(k) for k in self.RECORD}
            if labels is not None:
                row = {"label": labels.get(r["name"], r["name"]), **row}
            out.append(row)
        return out
