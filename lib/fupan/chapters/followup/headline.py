"""The headline forecasts then (expected churn rate, 12-month revenue, NRR) against what
happened, each with a bootstrap interval; and last year's failure points next to now.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fupan.chapters.followup.cut import MONTHS, add_years
from fupan.chapters.followup.forecasts import Forecast, nrr_forecast, nrr_with_parts
from fupan.chapters.followup.grades import realised_spend
from fupan.chapters.followup.intervals import ratio_interval, total_interval
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

# --------------------------------------------------------------------------------------
# Headline forecasts: churn rate, revenue and NRR then vs what happened

#: The headline forecasts, in the order the slide shows them.
HEADLINE_METRICS = ("churn_rate", "revenue_12m", "nrr")


def _row(metric: str, basis: str, population: int, forecast: float, actual: float,
         low: float, high: float, base: float | None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One graded forecast: held when the forecast lies in the actual's 95% interval, else
    missed ``over`` or ``under``, by ``off`` (forecast - actual) and ``off_relative``."""
    verdict = "held" if low <= forecast <= high else ("over" if forecast > high else "under")
    row = {
        "metric": metric, "basis": basis, "population": int(population),
        "forecast": float(forecast), "actual": float(actual), "low": float(low),
        "high": float(high), "verdict": verdict, "off": float(forecast - actual),
        "off_relative": float((forecast - actual) / actual) if actual else None,
        **extra,
    }  # fmt: skip
    if base is not None and math.isfinite(base):
        row["base"] = float(base)
        row["beats_base"] = bool(abs(forecast - actual) < abs(base - actual))
    return row


def _basis(fc: Forecast, model: Forecast) -> str:
    """Where a headline forecast comes from: the backtest's models, a previous run's
    recorded forecasts, or the same models rerun at a previous run's date."""
    if fc.source == "backtest":
        return "model_then"
    return "recorded" if model.recorded else "recomputed"


def churn_forecast_row(
    ds: Dataset, graded: pd.DataFrame, fc: Forecast, model: Forecast | None
) -> dict[str, Any] | str:
    """Expected vs realised churn rate of the customers live then (a row, or why not).

    A previous run's recorded ``simulation.model.predicted_annual_churn`` is graded over the
    12 months after its date; otherwise the mean churn probability of the customers the
    red list scored then is graded over the probability's horizon.
    """
    then, now = pd.Timestamp(fc.as_of_then), pd.Timestamp(ds.params.as_of)
    sim = (fc.results_then.get("simulation") or {}).get("model") or {}
    recorded = sim.get("predicted_annual_churn")
    if isinstance(recorded, (int, float)) and math.isfinite(recorded):
        end, basis, g = then + pd.DateOffset(months=12), "recorded", graded
        forecast = float(recorded)
        base = sim.get("observed_annual_churn")
        if not isinstance(base, (int, float)) and model is not None:
            base = model.base.get("churn_rate_annual")
        window = {"months": 12}
    else:
        if model is None or model.method != "health":
            return "rules"
        end = then + pd.Timedelta(days=model.horizon_days)
        prob = model.scores[["customer_id", "churn_probability"]].dropna()
        g = graded.drop(columns="churn_probability").merge(prob, on="customer_id")
        forecast, base = float(g.churn_probability.mean()), model.base.get("churn_rate_horizon")
        basis = _basis(fc, model)
        window = {"days": int(model.horizon_days)}
    if end > now:
        return "short_follow_up"
    if g.empty:
        return "rules"
    y = (g.churned & (g.churned_at <= end)).to_numpy(bool)
    rate, lo, hi = outcomes.rate_with_ci(int(y.sum()), len(y))
    return _row("churn_rate", basis, len(g), forecast, rate, lo, hi, base,
                churned=int(y.sum()), **window)  # fmt: skip


def revenue_forecast_row(
    ds: Dataset, fc: Forecast, model: Forecast | None, seed: int, months: int = MONTHS
) -> dict[str, Any] | str:
    """Predicted vs realised net revenue over the ``months`` after the cut of the customers
    live then with an order by then (the CLV model values them), a row or why not.
    Interval: customer bootstrap of the realised total. Base: the same customers' revenue
    in the ``months`` before the cut."""
    if model is None or model.clv is None:
        return (model.notes.get("clv") if model else None) or "model_failed"
    then = model.as_of_then
    if pd.Timestamp(then) + pd.DateOffset(months=months) > pd.Timestamp(ds.params.as_of):
        return "short_follow_up"
    live = set(model.scores.customer_id)
    df = model.clv[model.clv.customer_id.isin(live)][["customer_id", "predicted_spend_12m"]]
    df = df.merge(realised_spend(ds, then, months), on="customer_id", how="left")
    before = model.before.set_index("customer_id").spend_12m if model.before is not None else None
    df["realised"] = df.realised_spend_12m.fillna(0.0).astype(float)
    if df.empty:
        return "model_failed"
    r = df.realised.to_numpy(float)
    lo, hi = total_interval(r, seed)
    base = None if before is None else float(before.reindex(df.customer_id).fillna(0).sum())
    basis = _basis(fc, model)
    forecast = float(df.predicted_spend_12m.sum())
    return _row(
        "revenue_12m", basis, len(df), forecast, float(r.sum()), lo, hi, base, months=months
    )


def nrr_forecast_row(
    ds: Dataset, fc: Forecast, model: Forecast | None, seed: int
) -> dict[str, Any] | str:
    """Expected vs actual NRR of the base-year cohort at the cut (customers acquired a year
    before it with revenue in the year to it): the CLV model's 12-month spend of the cohort
    over its revenue in the year to the cut, vs the cohort's revenue in the year after it
    over the same base (:func:`nrr_with_parts`). Interval: customer bootstrap of the actual
    ratio. Base: the NRR measured at the cut."""
    from fupan.measures import segments

    if model is None or model.clv is None:
        return (model.notes.get("clv") if model else None) or "model_failed"
    then = model.as_of_then
    day = add_years(then)
    if pd.Timestamp(day) > pd.Timestamp(ds.params.as_of):
        return "short_follow_up"
    made = nrr_forecast(model)
    if isinstance(made, str):
        return made
    forecast, fparts = made
    feats = segments.customer_features_as_of(ds, day, engagement=False)
    # the same cohort's actual (the orders reach back: their first is the same as then)
    actual, parts, _ = nrr_with_parts(feats[feats.customer_id.isin(fparts.customer_id)], day)
    if actual is None:
        return "no_cohort"
    lo, hi = ratio_interval(parts.now.to_numpy(float), parts.then.to_numpy(float), seed)
    basis = _basis(fc, model)
    extra = {"cohort_acquired_by": segments.years_before(then), "base_revenue": fparts.then.sum()}
    return _row("nrr", basis, len(fparts), forecast, actual, lo, hi, model.base.get("nrr"), **extra)


def headline_rows(
    ds: Dataset, graded: pd.DataFrame, fc: Forecast, model: Forecast | None, seed: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Last year's expected churn rate, 12-month revenue and NRR vs this year's actuals.

    ``model`` holds the forecasts with every customer's churn probability and spend
    forecast as of ``fc.as_of_then``: the backtest itself, or (for a previous run, whose
    exports hold neither) the same models recomputed from the data as it stood at its date.
    Returns the rows (:func:`_row`) and, per metric that could not be graded, a reason code.
    """
    rows, skipped = [], {}
    for metric, make in (
        ("churn_rate", lambda: churn_forecast_row(ds, graded, fc, model)),
        ("revenue_12m", lambda: revenue_forecast_row(ds, fc, model, seed)),
        ("nrr", lambda: nrr_forecast_row(ds, fc, model, seed)),
    ):
        r = make()
        if isinstance(r, str):
            skipped[metric] = r
        else:
            rows.append(r)
    return rows, skipped


def findings_then_and_now(
    results_then: dict[str, Any], results_now: dict[str, Any]
) -> pd.DataFrame | None:
    """Last year's failure points (chapter 1's ``diagnosis.findings``) next to this year's
    value of the same metric; ``None`` when last year recorded none."""
    found = (results_then.get("diagnosis") or {}).get("findings") or []
    if not found:
        return None
    now = results_now.get("diagnosis") or {}
    rows = []
    for f in found:
        metric = f.get("metric")
        value_now = now.get(metric) if isinstance(now.get(metric), (int, float)) else None
        rows.append(
            {"key": f.get("key"), "metric": metric, "finding_then": f.get("title", ""),
             "value_then": f.get("value"), "value_now": value_now}
        )  # fmt: skip
    return pd.DataFrame(rows)
