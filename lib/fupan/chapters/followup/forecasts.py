"""Last year's forecasts: rerun on the data cut at ``as_of - 12 months`` (:func:`backtest_forecast`),
read back from a previous run (:func:`from_previous_run`), or recorded now for next year's
review (:func:`next_year`).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.followup.cut import MONTHS, Source, add_years, as_of_cut, cut_date
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

#: Headers a previous run's at-risk export may carry its customer id / probability under.
ID_HEADERS = ("customer_id", "客户编号", "Customer ID", "Customer")
PROBABILITY_HEADERS = ("churn_probability", "流失概率", "Churn probability")
# Exports of the red list, newest name first (chapter 2's own, then the shared name).
AT_RISK_EXPORTS = ("churn_at_risk.csv", "at_risk.csv")


# --------------------------------------------------------------------------------------
# Last year's forecasts


@dataclass
class Forecast:
    """What a review said at ``as_of_then``.

    Attributes
    ----------
    source : ``previous_run`` or ``backtest``.
    as_of_then : the forecast's date.
    scores : one row per customer scored then: ``customer_id, flagged`` and, when known,
        ``churn_probability`` (within ``horizon_days``) and ``score``.
    method : ``health`` (chapter 2's learned health score) or ``rules`` (chapter 5's
        interim rules) or ``export`` (a previous run's red list).
    horizon_days : the churn probability's horizon.
    clv : per customer ``customer_id, predicted_spend_12m, clv`` (``None`` when not made).
    notes : why a part is missing, by part (``clv``, ``calibration``, ...), as codes.
    flagged_count_then : the red list's size as that run recorded it (previous runs).
    results_then : the previous run's results.json (empty for a backtest).
    before : :func:`fupan.measures.segments.customer_features_as_of` at ``as_of_then`` from the data as it
        stood then (``spend_12m`` is the revenue of the year to the cut); ``None`` for a
        previous run's export.
    base : the forecasts a reader would make without a model, from the data as it stood
        then (:func:`base_rates`): last period's churn rates and NRR.
    recorded : the per-customer forecasts were read from a previous run's
        ``exports/followup_forecasts.csv`` (:func:`next_year`), not recomputed.
    """

    source: Source
    as_of_then: dt.date
    scores: pd.DataFrame
    method: str
    horizon_days: int
    clv: pd.DataFrame | None = None
    notes: dict[str, str] = field(default_factory=dict)
    flagged_count_then: int | None = None
    results_then: dict[str, Any] = field(default_factory=dict)
    before: pd.DataFrame | None = None
    base: dict[str, float] = field(default_factory=dict)
    recorded: bool = False


def red_list_then(ds_cut: Dataset, reasons: bool = True) -> tuple[pd.DataFrame, str]:
    """Every live customer at the cut scored the way the review would have: chapter 2's
    health score when it can be trained (the red band flagged), else chapter 5's rules.

    The red band's reasons are not read here: ``reasons=False`` skips putting them in
    words; the default asks for the scoring chapter 5 keeps in the run cache
    (:func:`fupan.chapters.kpi.health_bands`)."""
    from fupan.chapters import kpi

    cut = pd.Timestamp(ds_cut.params.as_of).date()
    try:
        scored, why = kpi.health_bands(ds_cut, cut, reasons=reasons)
    except RuntimeError:
        scored, why = None, "model_failed:health"
    if scored is None:
        warnings.warn(f"follow-up: health score not available as of {cut} ({why})", stacklevel=2)
    if scored is not None:
        f = scored[cut]
        out = f[["customer_id", "score", "churn_probability"]].copy()
        out["flagged"] = (f.band == "red").to_numpy()
        return out.reset_index(drop=True), "health"
    status = outcomes.churn_status(ds_cut, cut)
    live = status.loc[~status.churned, ["customer_id"]].reset_index(drop=True)
    rules = kpi.at_risk_by_rules(ds_cut, cut, status=status)
    live["flagged"] = live.customer_id.isin(rules.customer_id)
    return live, "rules"


def predicted_spend(ds_cut: Dataset, months: int = MONTHS) -> pd.DataFrame:
    """Chapter 3's transaction model as of the cut: expected net spend in the next
    ``months`` months per customer (expected purchases x expected spend, undiscounted,
    before margin) and the chapter's CLV.

    Raises
    ------
    ValueError
        for a contractual valuation (renewals, not spend) or a model that cannot be fitted.
    """
    from fupan.chapters import clv as chapter3
    from fupan.chapters import kpi
    from fupan.models.ltv._core import UNIT_DAYS

    val = kpi.clv_valuation(ds_cut, pd.Timestamp(ds_cut.params.as_of).date())
    if val.kind != chapter3.TRANSACTIONS:
        raise ValueError("contracts")
    v = val.values
    model = val.models["transactions"]
    t = months * UNIT_DAYS["M"] / UNIT_DAYS[model.time_unit_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.asarray(
            model.expected_purchases(
                np.full(len(v), t), v.frequency.to_numpy(), v.recency.to_numpy(), v["T"].to_numpy()
            ),
            dtype=float,
        )
    return pd.DataFrame(
        {
            "customer_id": v.index.astype(str),
            "predicted_spend_12m": n * v.spend.to_numpy(dtype=float),
            "clv": v.clv.to_numpy(dtype=float),
        }
    )


def base_rates(ds_cut: Dataset, horizon_days: int, before: pd.DataFrame) -> dict[str, float]:
    """What the data as it stood at the cut says without a model: churn over the
    ``horizon_days`` and over the 365 days before the cut (customers live at the window's
    start), and the NRR measured at the cut. A rate that cannot be measured is left out."""
    cut = pd.Timestamp(ds_cut.params.as_of)
    status = outcomes.churn_status(ds_cut, cut.date())
    out: dict[str, float] = {}
    for key, days in (("churn_rate_horizon", horizon_days), ("churn_rate_annual", 365)):
        at_risk = outcomes.period_churn(status, (cut - pd.Timedelta(days=days)).date(), cut.date())
        if len(at_risk):
            out[key] = float(at_risk.churned_in_period.mean())
    nrr, _, _ = nrr_with_parts(before, cut.date())
    if nrr is not None:
        out["nrr"] = nrr
    return out


def _forecast_at(ds_at: Dataset, months: int, reasons: bool = True) -> Forecast:
    """The forecasts a review as of ``ds_at.params.as_of`` makes, from ``ds_at`` (a dataset
    holding nothing after that date): the red list with its probabilities, the 12-month
    spend forecast, each customer's revenue of the year before, and the base rates.
    ``reasons``: as :func:`red_list_then` (a cut dataset has no run cache to read)."""
    from fupan.measures import segments

    at = pd.Timestamp(ds_at.params.as_of).date()
    notes: dict[str, str] = {}
    horizon = ds_at.params.churn.horizon_days
    scores, method = red_list_then(ds_at, reasons)
    clv = None
    try:
        clv = predicted_spend(ds_at, months)
    except ValueError as exc:
        notes["clv"] = "contracts" if str(exc) == "contracts" else "model_failed"
    before = segments.customer_features_as_of(ds_at, at, engagement=False)
    base = base_rates(ds_at, horizon, before)
    if method == "rules":
        notes["calibration"] = "rules"
    return Forecast(
        "backtest",
        at,
        scores,
        method,
        horizon,
        clv,
        notes,
        flagged_count_then=int(scores.flagged.sum()),
        before=before,
        base=base,
    )


def backtest_forecast(ds: Dataset, months: int = MONTHS, cut: dt.date | None = None) -> Forecast:
    """Rerun the forecasts as of ``cut`` (default ``as_of - months``) on the data as it stood
    then; ``months`` is also the spend forecast's horizon."""
    cut = cut or cut_date(ds.params.as_of, months)
    ds_cut = as_of_cut(ds, cut)
    try:
        return _forecast_at(ds_cut, months, reasons=False)
    finally:
        ds_cut.close()


#: This review's per-customer forecasts, exported for next year's follow-up to grade.
FORECASTS_EXPORT = "followup_forecasts"


@dataclass
class NextYear:
    """This review's forecasts for the year after ``as_of`` (:func:`next_year`).

    ``frame`` is ``exports/followup_forecasts.csv``: every customer acquired by ``as_of``
    with ``acquired_at, first_order, spend_12m_before`` (net orders of the year to
    ``as_of``), ``scored`` (live and scored by the red list), ``flagged``,
    ``churn_probability`` (within ``horizon_days``) and ``predicted_spend_12m``. ``summary`` is results.json
    ``followup.next_year``: the totals the deck quotes and what reading the frame back needs.
    """

    frame: pd.DataFrame
    summary: dict[str, Any]


def next_year(ds: Dataset, months: int = MONTHS) -> NextYear:
    """Record this review's forecasts so next year's follow-up grades them as recorded:
    expected churn rate (mean probability of the scored customers), 12-month revenue of the
    live customers (CLV model) and NRR of the next base-year cohort."""
    fc = _forecast_at(ds, months)
    b = fc.before
    frame = pd.DataFrame(
        {"customer_id": b.customer_id.astype(str), "acquired_at": b.acquired_at.dt.date,
         "first_order": pd.to_datetime(b.first_order).dt.date,
         "spend_12m_before": b.spend_12m.to_numpy(float)}
    )  # fmt: skip
    cols = [c for c in ("customer_id", "flagged", "churn_probability") if c in fc.scores]
    frame = frame.merge(fc.scores[cols].assign(scored=True), on="customer_id", how="outer")
    if fc.clv is not None:
        frame = frame.merge(
            fc.clv[["customer_id", "predicted_spend_12m"]], on="customer_id", how="left"
        )
    frame["scored"] = frame.scored.astype("boolean").fillna(False).astype(bool)
    frame["flagged"] = frame.flagged.astype("boolean").fillna(False).astype(bool)
    summary: dict[str, Any] = {
        "as_of": fc.as_of_then, "method": fc.method, "horizon_days": fc.horizon_days,
        "months": months, "notes": fc.notes or None, "base": fc.base or None,
        "customers_scored": int(frame.scored.sum()),
    }  # fmt: skip
    if "churn_probability" in frame and frame.churn_probability.notna().any():
        summary["churn_rate"] = float(frame.churn_probability[frame.scored].mean())
    if fc.clv is not None:
        live = frame.scored & frame.predicted_spend_12m.notna()
        summary["revenue_12m"] = float(frame.predicted_spend_12m[live].sum())
        summary["revenue_12m_base"] = float(frame.spend_12m_before[live].sum())
        nrr = nrr_forecast(fc)
        if not isinstance(nrr, str):
            summary["nrr"], summary["nrr_cohort"] = nrr[0], len(nrr[1])
    summary = {k: v for k, v in summary.items() if v is not None}  # results.json holds no null
    return NextYear(frame.sort_values("customer_id").reset_index(drop=True), summary)


def recorded_forecast(run: Path, results: dict[str, Any]) -> Forecast | None:
    """A previous run's own per-customer forecasts (:func:`next_year`), or ``None`` when it
    recorded none (runs before this chapter recorded them)."""
    rec = (results.get("followup") or {}).get("next_year") or {}
    path = run / "exports" / f"{FORECASTS_EXPORT}.csv"
    if not rec or not path.exists():
        return None
    f = pd.read_csv(path, dtype={"customer_id": str}, encoding="utf-8-sig")
    for col in ("acquired_at", "first_order"):
        f[col] = pd.to_datetime(f[col])
    scored = f.scored.astype(str).str.lower() == "true"
    cols = [c for c in ("customer_id", "flagged", "churn_probability") if c in f]
    scores = f.loc[scored, cols].reset_index(drop=True)
    scores["flagged"] = scores.flagged.astype(str).str.lower() == "true"
    clv = None
    if "predicted_spend_12m" in f and f.predicted_spend_12m.notna().any():
        clv = f.loc[f.predicted_spend_12m.notna(), ["customer_id", "predicted_spend_12m"]]
    before = f[["customer_id", "acquired_at", "first_order"]].assign(
        spend_12m=f.spend_12m_before.astype(float)
    )
    return Forecast(
        "previous_run",
        dt.date.fromisoformat(str(rec["as_of"])),
        scores,
        str(rec.get("method", "health")),
        int(rec.get("horizon_days", 90)),
        clv.reset_index(drop=True) if clv is not None else None,
        dict(rec.get("notes") or {}),
        before=before,
        base=dict(rec.get("base") or {}),
        recorded=True,
    )


def _column(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def from_previous_run(run_dir: str | Path) -> Forecast:
    """A previous run's red list (its exported at-risk list) and recorded figures.

    Raises
    ------
    FileNotFoundError
        when the folder has no results.json or no at-risk export.
    """
    run = Path(run_dir)
    res_path = run / "results.json"
    if not res_path.exists():
        raise FileNotFoundError(f"{res_path} not found: is {run} a fupan run folder?")
    results = json.loads(res_path.read_text(encoding="utf-8"))
    then = dt.date.fromisoformat(str(results["run"]["as_of"]))
    path = next(
        (run / "exports" / n for n in AT_RISK_EXPORTS if (run / "exports" / n).exists()), None
    )
    if path is None:
        raise FileNotFoundError(
            f"{run / 'exports'} holds no at-risk list ({', '.join(AT_RISK_EXPORTS)})"
        )
    exp = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    cid = _column(exp, ID_HEADERS)
    if cid is None:
        raise ValueError(f"{path}: no customer id column (looked for {list(ID_HEADERS)})")
    scores = pd.DataFrame({"customer_id": exp[cid].astype(str), "flagged": True})
    pcol = _column(exp, PROBABILITY_HEADERS)
    if pcol is not None:
        scores["churn_probability"] = pd.to_numeric(exp[pcol], errors="coerce")
    scores = scores.drop_duplicates("customer_id").reset_index(drop=True)
    churn = results.get("churn", {})
    count = churn.get("at_risk_count")
    notes = {"calibration": "red_list_only"}
    clv = None
    clv_path = run / "exports" / "ltv_customer_values.csv"
    if clv_path.exists():
        notes["clv"] = "no_spend_forecast"
    else:
        notes["clv"] = "no_export"
    horizon = int((results.get("churn", {}).get("snapshots") or {}).get("horizon_days") or 90)
    return Forecast(
        "previous_run",
        then,
        scores,
        "export",
        horizon,
        clv,
        notes,
        flagged_count_then=None if count is None else int(count),
        results_then=results,
    )


def nrr_with_parts(
    features: pd.DataFrame, day: dt.date
) -> tuple[float | None, pd.DataFrame, str | None]:
    """Net revenue retention at ``day`` by the metric catalogue's one definition
    (:func:`fupan.measures.metrics.retention_from_features`), its per-customer terms
    (``customer_id, then, now``) for an interval, and why it cannot be judged (the
    catalogue's ``history`` or ``no_base``; ``None`` when it can).

    The one place the chapter calls the NRR definition. The terms come from the catalogue's
    population rule (:func:`fupan.measures.metrics.in_retention_cohort`, base revenue > 0, negative
    revenue counted as 0) and are checked to add up to its totals, so a change of
    definition cannot go unnoticed.
    """
    from fupan.measures import metrics

    total = metrics.retention_from_features(features, day)
    df = features[metrics.in_retention_cohort(features.acquired_at.to_numpy(), day)]
    then = df.spend_prior_12m.fillna(0).to_numpy(float)
    now = np.maximum(df.spend_12m.fillna(0).to_numpy(float), 0)
    has = then > 0
    parts = pd.DataFrame(
        {
            "customer_id": df.customer_id.astype(str).to_numpy()[has],
            "then": then[has],
            "now": now[has],
        }
    )
    if len(parts) != total["customers"] or not np.isclose(parts.now.sum(), total["net"]):
        raise RuntimeError(
            "follow-up: NRR terms disagree with fupan.measures.metrics.retention_from_features"
        )
    return total["nrr"], parts, total["reason"]


def nrr_forecast(model: Forecast) -> tuple[float, pd.DataFrame] | str:
    """The expected NRR of the base-year cohort at ``model.as_of_then``: the CLV model's
    12-month spend of the cohort over its revenue in the year to that date, by the one
    definition (:func:`nrr_with_parts`); else why not (``model_failed``: no spend forecast;
    ``history``: the orders do not reach back to the base year; ``no_cohort``)."""
    if model.clv is None or model.before is None:
        return "model_failed"
    pred = model.clv.set_index("customer_id").predicted_spend_12m
    b = model.before
    frame = b[["customer_id", "acquired_at", "first_order"]].assign(
        spend_prior_12m=b.spend_12m.to_numpy(float),
        spend_12m=pred.reindex(b.customer_id.astype(str)).fillna(0.0).to_numpy(float),
    )
    forecast, parts, why = nrr_with_parts(frame, add_years(model.as_of_then))
    if why == "history":
        return "history"
    return "no_cohort" if forecast is None else (forecast, parts)
