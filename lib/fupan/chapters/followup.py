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
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd
import yaml

from fupan.core.chapter_params import FollowupParams
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes
from fupan.models import health
from fupan.report import results as fresults

#: How far back the backtest looks: the review we would have produced a year ago.
MONTHS = 12
#: After the cut, at least this much history must remain to grade anything.
MIN_FOLLOW_MONTHS = 1
#: Before the cut, at least this much history to forecast from (a backtest on a few days of
#: orders would grade forecasts no review could have made): 12 + 1 months in all.
MIN_BEFORE_MONTHS = 1
#: The date each table's rows are known from (rows after the cut do not exist then).
DATE_COLUMNS = {
    "customers": "acquired_at",
    "orders": "order_date",
    "contracts": "start_date",
    "touches": "touched_at",
    "tickets": "opened_at",
    "surveys": "surveyed_at",
    "activity": "period_start",
    "churn_events": "churned_at",
    "pilots": "started_at",
}
#: Ticket timestamps that are later events of a ticket opened before the cut.
LATER_TICKET_COLUMNS = ("first_response_at", "resolved_at")
#: Headers a previous run's at-risk export may carry its customer id / probability under.
ID_HEADERS = ("customer_id", "客户编号", "Customer ID", "Customer")
PROBABILITY_HEADERS = ("churn_probability", "流失概率", "Churn probability")
# Exports of the red list, newest name first (chapter 2's own, then the shared name).
AT_RISK_EXPORTS = ("churn_at_risk.csv", "at_risk.csv")
N_BOOT = 2000
Source = Literal["previous_run", "backtest"]


# --------------------------------------------------------------------------------------
# Settings: ``followup: {previous: ...}`` in the params file


#: The chapter's own params are ``followup:`` in the params file (:class:`FollowupParams`).
FollowupSettings = FollowupParams


def load_settings(params_file: str | Path) -> FollowupSettings:
    """``followup:`` from the params file (defaults when absent); ``previous`` resolved
    against the file's folder."""
    path = Path(params_file)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    s = FollowupSettings.model_validate(raw.get("followup") or {})
    if s.previous and not Path(s.previous).is_absolute():
        s = s.model_copy(update={"previous": str((path.parent / s.previous).resolve())})
    return s


def find_previous(
    reports_dir: str | Path, as_of: dt.date, months: int = MONTHS, exclude: Path | None = None
) -> Path | None:
    """The newest annual run in ``reports_dir`` at least ``months - 1`` months before
    ``as_of`` (a run a few weeks short of a year still counts), or ``None``."""
    root = Path(reports_dir)
    if not root.is_dir():
        return None
    latest = (pd.Timestamp(as_of) - pd.DateOffset(months=months - 1)).date()
    best: tuple[dt.date, Path] | None = None
    for d in root.iterdir():
        res = d / "results.json"
        if d.name.startswith(".") or d.name.endswith(".failed") or not res.exists():
            continue
        if exclude is not None and d.resolve() == exclude.resolve():
            continue
        try:
            run = json.loads(res.read_text(encoding="utf-8")).get("run", {})
            then = dt.date.fromisoformat(str(run.get("as_of")))
        except (ValueError, TypeError, json.JSONDecodeError):
            continue
        if run.get("kind", "annual_review") != "annual_review" or then > latest:
            continue
        if best is None or then > best[0]:
            best = (then, d)
    return None if best is None else best[1]


# --------------------------------------------------------------------------------------
# The data as it was at the cut


def cut_date(as_of: dt.date | str, months: int = MONTHS) -> dt.date:
    """``as_of`` minus ``months`` calendar months (a month end stays a month end)."""
    a = pd.Timestamp(as_of)
    c = a - pd.DateOffset(months=months)
    if a.is_month_end:
        c = c + pd.offsets.MonthEnd(0)
    return c.date()


def history_problem(ds: Dataset, cut: dt.date) -> dict[str, Any] | None:
    """Why the data cannot be graded from ``cut`` (``None`` when it can).

    Needs orders from at least :data:`MIN_BEFORE_MONTHS` before the cut (something to
    forecast from) and at least :data:`MIN_FOLLOW_MONTHS` after it (something to grade
    against).
    """
    o = ds["orders"]
    first, last = engine.to_pandas(
        o.aggregate(first=o.order_date.min(), last=o.order_date.max())
    ).iloc[0]
    as_of = pd.Timestamp(ds.params.as_of)
    if pd.isna(first) or pd.Timestamp(first) > pd.Timestamp(cut) - pd.DateOffset(
        months=MIN_BEFORE_MONTHS
    ):
        months = 0.0 if pd.isna(first) else (as_of - pd.Timestamp(first)).days / 30.44
        return {
            "reason": "short_history",
            "first_order": None if pd.isna(first) else pd.Timestamp(first).date(),
            "months": round(months, 1),
        }
    if pd.Timestamp(cut) + pd.DateOffset(months=MIN_FOLLOW_MONTHS) > as_of:
        return {"reason": "no_follow_up", "first_order": pd.Timestamp(first).date(), "months": 0.0}
    return None


def _period_days(activity: ibis.expr.types.Table) -> int:
    """The activity table's period length in days: the smallest gap between its distinct
    period starts (1 for daily, 7 for weekly rows; 1 when there is a single period)."""
    d = engine.to_pandas(activity.select("period_start").distinct()).period_start
    gaps = pd.to_datetime(d).sort_values().diff().dt.days.dropna()
    gaps = gaps[gaps > 0]
    return int(gaps.min()) if len(gaps) else 1


def as_of_cut(ds: Dataset, cut: dt.date) -> Dataset:
    """A copy of ``ds`` as it stood at the end of ``cut``: every table restricted to rows
    dated on or before it, ticket answers and resolutions after it removed, and
    ``params.as_of`` moved to it. Held in memory in its own DuckDB; nothing is cached
    (the run's cache holds models fitted on the whole data)."""
    lit = ibis.literal(cut)
    end = ibis.literal(pd.Timestamp(cut) + pd.Timedelta(days=1))
    con = ibis.duckdb.connect()
    for name in ds.present:
        t = ds[name]
        col = DATE_COLUMNS.get(name)
        if col and col in t.columns:
            is_ts = t[col].type().is_timestamp()
            t = t.filter(t[col] < end if is_ts else t[col] <= lit)
        if name == "activity":
            # a period that began by the cut but ends after it holds logins from after it
            t = t.filter(
                t.period_start <= ibis.literal(cut - dt.timedelta(days=_period_days(t) - 1))
            )
        if name == "tickets":
            later = {
                c: ibis.ifelse(t[c] < end, t[c], ibis.null().cast(t[c].type()))
                for c in LATER_TICKET_COLUMNS
                if c in t.columns
            }
            t = t.mutate(**later)
        con.create_table(name, t.to_pyarrow())
    params = type(ds.params).model_validate(
        {**ds.params.model_dump(), "as_of": cut, "period_start": None}
    )
    object.__setattr__(params, "base_dir", ds.params.base_dir)
    return Dataset(con=con, params=params, report=ds.report, fingerprints=ds.fingerprints)


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
    before : :func:`fupan.measures.segments.customer_features` at ``as_of_then`` from the data as it
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


def red_list_then(ds_cut: Dataset) -> tuple[pd.DataFrame, str]:
    """Every live customer at the cut scored the way the review would have: chapter 2's
    health score when it can be trained (the red band flagged), else chapter 5's rules."""
    from fupan.chapters import kpi

    cut = pd.Timestamp(ds_cut.params.as_of).date()
    try:
        scored, why = kpi.health_bands(ds_cut, cut)
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
    rules = kpi.at_risk_list(ds_cut, cut, status=status)
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


def _forecast_at(ds_at: Dataset, months: int) -> Forecast:
    """The forecasts a review as of ``ds_at.params.as_of`` makes, from ``ds_at`` (a dataset
    holding nothing after that date): the red list with its probabilities, the 12-month
    spend forecast, each customer's revenue of the year before, and the base rates."""
    from fupan.measures import segments

    at = pd.Timestamp(ds_at.params.as_of).date()
    notes: dict[str, str] = {}
    horizon = ds_at.params.churn.horizon_days
    scores, method = red_list_then(ds_at)
    clv = None
    try:
        clv = predicted_spend(ds_at, months)
    except ValueError as exc:
        notes["clv"] = "contracts" if str(exc) == "contracts" else "model_failed"
    except ImportError:
        notes["clv"] = "model_missing"
    before = segments.customer_features(ds_at, at, engagement=False)
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


def backtest(ds: Dataset, months: int = MONTHS, cut: dt.date | None = None) -> Forecast:
    """Rerun the forecasts as of ``cut`` (default ``as_of - months``) on the data as it stood
    then; ``months`` is also the spend forecast's horizon."""
    cut = cut or cut_date(ds.params.as_of, months)
    ds_cut = as_of_cut(ds, cut)
    try:
        return _forecast_at(ds_cut, months)
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


# --------------------------------------------------------------------------------------
# What happened since


def outcomes_since(ds: Dataset, then: dt.date, forecast: Forecast) -> pd.DataFrame:
    """The graded population: customers live at ``then`` (by today's data), whether they
    churned in ``(then, as_of]``, when, and what the forecast said about them.

    Returns
    -------
    DataFrame ``customer_id, flagged, score, churn_probability, churned, churned_at,
    lead_days, churned_in_horizon``.
    """
    now = pd.Timestamp(ds.params.as_of).date()
    status = outcomes.churn_status(ds, now)
    live = outcomes.period_churn(status, then, now)
    out = live[["customer_id", "churned_in_period", "churned_at"]].rename(
        columns={"churned_in_period": "churned"}
    )
    out["churned_at"] = out.churned_at.where(out.churned)
    out = out.merge(forecast.scores, on="customer_id", how="left")
    out["flagged"] = out.flagged.fillna(False).astype(bool)
    out["lead_days"] = (out.churned_at - pd.Timestamp(then)).dt.days
    h_end = pd.Timestamp(then) + pd.Timedelta(days=forecast.horizon_days)
    out["churned_in_horizon"] = out.churned & (out.churned_at <= h_end)
    for col in ("score", "churn_probability"):
        if col not in out.columns:
            out[col] = np.nan
    cols = [
        "customer_id",
        "flagged",
        "score",
        "churn_probability",
        "churned",
        "churned_at",
        "lead_days",
        "churned_in_horizon",
    ]
    return out[cols].sort_values("customer_id").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Grades


def _interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if not len(d):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(d, [a, 1 - a])
    return float(lo), float(hi)


def red_list_grades(graded: pd.DataFrame, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Precision, recall and lift of the red list with 95% intervals, and the base rate.

    precision = churned among flagged; recall = flagged among churned; base rate = churned
    among everyone graded; lift = precision / base rate. Precision, recall and the base
    rate have Wilson intervals; lift a multinomial bootstrap of the 2x2 table (the table
    is all lift depends on, so resampling its four cells equals resampling customers).
    The median warning lead time (flag to churn, flagged churners) has a bootstrap interval.
    """
    f = graded.flagged.to_numpy(bool)
    y = graded.churned.to_numpy(bool)
    n = len(graded)
    cells = np.array([(f & y).sum(), (f & ~y).sum(), (~f & y).sum(), (~f & ~y).sum()])
    tp, fp, fn, _ = (int(c) for c in cells)
    prec = outcomes.rate_with_ci(tp, tp + fp)
    rec = outcomes.rate_with_ci(tp, tp + fn)
    base = outcomes.rate_with_ci(tp + fn, n)
    lift = prec[0] / base[0] if n and tp + fp and base[0] > 0 else float("nan")
    rng = np.random.default_rng(seed)
    lift_lo = lift_hi = float("nan")
    if n and tp + fp and tp + fn:
        draws = rng.multinomial(n, cells / n, size=n_boot).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_b = draws[:, 0] / (draws[:, 0] + draws[:, 1])
            b_b = (draws[:, 0] + draws[:, 2]) / n
            lift_lo, lift_hi = _interval(p_b / b_b)
    leads = graded.loc[f & y, "lead_days"].to_numpy(float)
    lead = float(np.median(leads)) if len(leads) else float("nan")
    lead_lo = lead_hi = float("nan")
    if len(leads) >= 2:
        idx = rng.integers(0, len(leads), size=(n_boot, len(leads)))
        lead_lo, lead_hi = _interval(np.median(leads[idx], axis=1))
    return {
        "graded": n,
        "flagged": tp + fp,
        "churned": tp + fn,
        "flagged_churned": tp,
        "precision": prec[0], "precision_low": prec[1], "precision_high": prec[2],
        "recall": rec[0], "recall_low": rec[1], "recall_high": rec[2],
        "base_rate": base[0], "base_rate_low": base[1], "base_rate_high": base[2],
        "lift": lift, "lift_low": lift_lo, "lift_high": lift_hi,
        "median_lead_days": lead, "median_lead_days_low": lead_lo,
        "median_lead_days_high": lead_hi,
    }  # fmt: skip


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (0 is perfect)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def calibration_grades(
    graded: pd.DataFrame, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, Any] | None:
    """Predicted vs realised churn within the probability's horizon, by decile, and the
    Brier score (bootstrap 95% interval) next to the base rate's own Brier score (a
    forecast of the base rate for everyone), or ``None`` without probabilities."""
    g = graded[graded.churn_probability.notna()]
    if g.empty:
        return None
    p = g.churn_probability.to_numpy(float)
    y = g.churned_in_horizon.to_numpy(bool)
    b = brier(p, y)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(p), size=(n_boot, len(p))) if len(p) <= 20_000 else None
    lo = hi = float("nan")
    if idx is not None:
        lo, hi = _interval(np.mean((p[idx] - y[idx]) ** 2, axis=1))
    ref = brier(np.full(len(y), y.mean()), y)
    return {
        "brier": b, "brier_low": lo, "brier_high": hi, "brier_base_rate": ref,
        "expected_churners": float(p.sum()), "churners": int(y.sum()), "n": int(len(p)),
        "table": health.calibration(p, y, bins=10),
    }  # fmt: skip


def realised_spend(ds: Dataset, then: dt.date, months: int = MONTHS) -> pd.DataFrame:
    """Net order amount per customer in ``(then, then + months]`` (capped at ``as_of``)."""
    end = min(pd.Timestamp(then) + pd.DateOffset(months=months), pd.Timestamp(ds.params.as_of))
    o = ds["orders"].filter(
        lambda t: (t.order_date > ibis.literal(then)) & (t.order_date <= ibis.literal(end.date()))
    )
    return engine.to_pandas(o.group_by("customer_id").aggregate(realised_spend_12m=o.amount.sum()))


def clv_grades(
    predicted: pd.DataFrame,
    realised: pd.DataFrame,
    before: pd.Series | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict[str, Any] | None:
    """Predicted vs realised 12-month spend per customer: bias (mean predicted - realised)
    and MAE with customer-bootstrap 95% intervals, Spearman correlation, totals, and a
    table by decile of the prediction. With ``before`` (spend in the 12 months before the
    cut, by customer id) the same bias and MAE of the forecast without a model, "the same
    as last year" (``bias_base``, ``mae_base``)."""
    df = predicted.merge(realised, on="customer_id", how="left")
    df["realised_spend_12m"] = df.realised_spend_12m.fillna(0.0).astype(float)
    if df.empty:
        return None
    err = df.predicted_spend_12m - df.realised_spend_12m
    q = pd.qcut(df.predicted_spend_12m.rank(method="first"), min(10, len(df)), labels=False)
    table = (
        df.groupby(q.to_numpy())
        .agg(customers=("customer_id", "size"),
             predicted=("predicted_spend_12m", "mean"),
             realised=("realised_spend_12m", "mean"))
        .reset_index(names="decile")
    )  # fmt: skip
    table["decile"] += 1
    rho = float(df.predicted_spend_12m.corr(df.realised_spend_12m, method="spearman"))
    rho_dec = float(table.predicted.corr(table.realised)) if len(table) > 2 else float("nan")
    total_p, total_r = float(df.predicted_spend_12m.sum()), float(df.realised_spend_12m.sum())
    e = err.to_numpy(float)
    bias_lo, bias_hi = _boot(lambda a: a.mean(axis=1), [e], seed, n_boot)
    mae_lo, mae_hi = _boot(lambda a: np.abs(a).mean(axis=1), [e], seed, n_boot)
    base: dict[str, float] = {}
    if before is not None:
        naive = before.reindex(df.customer_id).fillna(0.0).to_numpy(float)
        base_err = naive - df.realised_spend_12m.to_numpy(float)
        base = {"bias_base": float(base_err.mean()), "mae_base": float(np.abs(base_err).mean())}
    return {
        "customers": int(len(df)),
        "bias": float(err.mean()),
        "bias_low": bias_lo,
        "bias_high": bias_hi,
        "mae": float(err.abs().mean()),
        "mae_low": mae_lo,
        "mae_high": mae_hi,
        **base,
        "spearman": rho,
        "decile_correlation": rho_dec,
        "predicted_total": total_p,
        "realised_total": total_r,
        "total_error": (total_p - total_r) / total_r if total_r else float("nan"),
        "table": table,
        "customers_frame": df,
    }


# --------------------------------------------------------------------------------------
# Pilots


def diff_with_ci(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """Difference of two proportions ``k1/n1 - k2/n2`` with Newcombe's hybrid Wilson 95%
    interval (good coverage for small arms and rates near 0)."""
    p1, l1, u1 = outcomes.rate_with_ci(k1, n1)
    p2, l2, u2 = outcomes.rate_with_ci(k2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, lo, hi


def pilot_readouts(
    ds: Dataset, predicted: list[dict[str, Any]] | None = None
) -> pd.DataFrame | None:
    """Each pilot's churn by arm among members live at its start, churned in
    ``(started_at, as_of]``: the difference (treatment - control) with its interval,
    chapter 4's go/no-go readout, and, when the simulation priced the pilot's scenario,
    its predicted change and whether the predicted interval holds the measured effect.
    ``None`` without a ``pilots`` table."""
    if not ds.has("pilots"):
        return None
    from fupan.chapters import simulate

    now = pd.Timestamp(ds.params.as_of).date()
    status = outcomes.churn_status(ds, now)
    pl = engine.to_pandas(ds["pilots"])
    pl["started_at"] = pd.to_datetime(pl.started_at)
    pred = {r.get("name"): r for r in (predicted or [])}
    rows = []
    for name, g in pl.groupby("pilot", sort=True):
        start = g.started_at.min()
        live = outcomes.period_churn(status, start.date(), now)
        m = g.merge(live[["customer_id", "churned_in_period"]], on="customer_id", how="inner")
        t = m[m.arm == "treatment"].churned_in_period
        c = m[m.arm == "control"].churned_in_period
        row: dict[str, Any] = {
            "pilot": name, "started_at": start.date(), "treated": len(t),
            "treated_churned": int(t.sum()), "control": len(c), "control_churned": int(c.sum()),
        }  # fmt: skip
        if len(t) and len(c):
            d, lo, hi = diff_with_ci(int(t.sum()), len(t), int(c.sum()), len(c))
            ro = simulate.readout(
                {"treated": len(t), "treated_events": int(t.sum()),
                 "control": len(c), "control_events": int(c.sum())}
            )  # fmt: skip
            row.update(
                treated_rate=ro["treated_rate"], control_rate=ro["control_rate"],
                effect=d, effect_low=lo, effect_high=hi, decision=ro["decision"],
            )  # fmt: skip
        p = pred.get(name)
        if p is not None and p.get("churn_change") is not None:
            plo, phi = p.get("churn_change_low"), p.get("churn_change_high")
            row.update(predicted_effect=p["churn_change"], predicted_low=plo, predicted_high=phi)
            if "effect" in row and plo is not None and phi is not None:
                row["prediction_held"] = bool(plo <= row["effect"] <= phi)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# The chapter in one call

#: A red list holding at least this share of the live customers grades nothing: its
#: precision is the base rate and its lift 1 by construction.
FLAGS_EVERYONE = 0.9
#: The red list's grades, dropped from results.json when the list flags everyone.
RED_LIST_KEYS = ("at_risk_precision", "at_risk_recall", "at_risk_lift", "median_lead_days")
#: The figures results.json ``followup`` holds or explains under ``skipped``.
HEADLINE_KEYS = tuple(fresults.HEADLINE["followup"])  # one list, kept in fupan.report.results


def _prune(node: Any) -> Any:
    """Drop null leaves from dicts (a record row keeps its other fields)."""
    if isinstance(node, dict):
        return {k: _prune(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_prune(v) for v in node if v is not None]
    return node


@dataclass
class Followup:
    """Everything the chapter shows and records (see :func:`follow_up`)."""

    source: Source | None
    as_of_then: dt.date | None
    problem: dict[str, Any] | None
    forecast: Forecast | None = None
    graded: pd.DataFrame | None = None
    red: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    clv: dict[str, Any] | None = None
    pilots: pd.DataFrame | None = None
    headline: list[dict[str, Any]] = field(default_factory=list)
    headline_skipped: dict[str, str] = field(default_factory=dict)
    findings: pd.DataFrame | None = None
    pilots_not_run: list[str] = field(default_factory=list)

    def record(self, lang: str = "en") -> dict[str, Any]:
        """results.json ``followup``: figures that exist, and under ``skipped`` the reason
        (in ``lang``) for each headline figure that does not; never a null or NaN."""
        from fupan.report.results import to_jsonable

        r, c, v = self.red or {}, self.calibration or {}, self.clv or {}
        fc = self.forecast
        out = {
            "source": self.source,
            "as_of_then": self.as_of_then,
            "problem": self.problem,
            "method": fc.method if fc else None,
            "notes": fc.notes if fc else None,
            "at_risk_then": r.get("flagged"),
            "at_risk_count_then_recorded": fc.flagged_count_then if fc else None,
            "at_risk_precision": r.get("precision"),
            "at_risk_recall": r.get("recall"),
            "at_risk_lift": r.get("lift"),
            "base_rate": r.get("base_rate"),
            "median_lead_days": r.get("median_lead_days"),
            "red_list": r or None,
            "brier": c.get("brier"),
            "calibration": dict(c) or None,
            "clv_bias": v.get("bias"),
            "clv_mae": v.get("mae"),
            "clv": {k: x for k, x in v.items() if k != "customers_frame"} or None,
            "pilots": self.pilots,
            "pilots_not_run": list(self.pilots_not_run),
            "headline": self.headline or None,
            "findings": self.findings,
        }
        if self.problem and self.problem["reason"] == "flags_everyone":
            out.update(dict.fromkeys(RED_LIST_KEYS), red_list=None)
        clean = _prune(to_jsonable(out))
        skipped = {k: self.why(k, lang) for k in HEADLINE_KEYS if k not in clean}
        for metric in self.headline_skipped:
            skipped[f"headline_{metric}"] = self.why(f"headline_{metric}", lang)
        if skipped:
            clean["skipped"] = skipped
        return clean

    def why(self, key: str, lang: str) -> str:
        """Why ``key`` of :meth:`record` is missing, in words."""
        from fupan.core import i18n

        def t(k: str, **v: Any) -> str:
            return i18n.t(k, lang, **v)

        p, then = self.problem or {}, str(self.as_of_then)
        if key == "pilots":
            return t("fu.pilot.none")
        if key == "findings":
            return t("fu.find.backtest" if self.source == "backtest" else "fu.find.none")
        if p.get("reason") == "no_follow_up":
            return t("fu.short.no_follow_up", then=then)
        if p.get("reason") == "short_history":
            key_ = "fu.short.short_history" if p.get("first_order") else "fu.short.no_orders"
            return t(key_, then=then, need=MONTHS + 1, first=str(p.get("first_order")),
                     months=p.get("months"))  # fmt: skip
        notes = self.forecast.notes if self.forecast else {}
        if p.get("reason") == "flags_everyone" and key in RED_LIST_KEYS:
            return t("fu.red.everyone", share=f"{100 * p['share']:.0f}%", then=then)
        if key in ("brier", "calibration"):
            return t(f"fu.cal.none.{notes.get('calibration', 'rules')}")
        if key in ("clv", "clv_bias", "clv_mae"):
            return t(f"fu.clv.none.{notes.get('clv', 'model_failed')}")
        if key.startswith("headline_"):
            return self.headline_reason(key.removeprefix("headline_"), lang)
        if key == "headline":
            return " ".join(self.headline_reason(m, lang) for m in self.headline_skipped) or t(
                "fu.head.none"
            )
        if key == "pilots_not_run":
            return t("fu.pilot.all_run")
        if self.red is not None and self.red["flagged"] == 0:
            return t("fu.red.none_flagged")
        if key in ("at_risk_lift", "median_lead_days") and self.red and self.red["churned"]:
            return t("fu.red.no_flagged_churner")
        return t("fu.overview.no_churn", then=then, graded=(self.red or {}).get("graded", 0))

    def headline_reason(self, metric: str, lang: str) -> str:
        """Why the headline forecast ``metric`` was not graded, in words."""
        from fupan.core import i18n
        from fupan.measures import segments

        then = self.as_of_then
        code = self.headline_skipped.get(metric, "model_failed")
        return i18n.t(
            f"fu.head.none.{code}",
            lang,
            what=i18n.t(f"fu.head.{metric}", lang),
            then=str(then),
            cohort=str(segments.years_before(then)) if then else "",
        )

    def export_frame(self) -> pd.DataFrame:
        """``exports/followup_at_risk.csv``: every graded customer with the forecast and
        the outcome."""
        g = self.graded
        cols = ["customer_id", "score", "churn_probability", "flagged", "churned", "churned_at"]
        out = g[cols].copy()
        out["churned_at"] = out.churned_at.dt.date
        return out.sort_values(["flagged", "customer_id"], ascending=[False, True])


# --------------------------------------------------------------------------------------
# Headline forecasts: churn rate, revenue and NRR then vs what happened

#: The headline forecasts, in the order the slide shows them.
HEADLINE_METRICS = ("churn_rate", "revenue_12m", "nrr")


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


def _boot(
    stat: Any, columns: list[np.ndarray], seed: int, n_boot: int = N_BOOT
) -> tuple[float, float]:
    """95% percentile interval of ``stat(*columns)`` over customers resampled with
    replacement (in chunks, so a large base never holds ``n_boot x n`` indices at once)."""
    n = len(columns[0])
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:  # every resample is the one customer
        v = float(stat(*(c[None, :] for c in columns))[0])
        return v, v
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // n))
    draws = []
    for k in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - k), n))
        draws.append(stat(*(c[idx] for c in columns)))
    return _interval(np.concatenate(draws))


def total_interval(x: np.ndarray, seed: int, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% interval of a population's total (customer bootstrap of ``sum(x)``)."""
    return _boot(lambda a: a.sum(axis=1), [np.asarray(x, float)], seed, n_boot)


def ratio_interval(
    num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = N_BOOT
) -> tuple[float, float]:
    """95% interval of ``sum(num) / sum(den)`` (customer bootstrap of the pairs)."""
    cols = [np.asarray(num, float), np.asarray(den, float)]
    return _boot(lambda a, b: a.sum(axis=1) / b.sum(axis=1), cols, seed, n_boot)


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
    forecast, parts, why = nrr_with_parts(frame, _add_years(model.as_of_then))
    if why == "history":
        return "history"
    return "no_cohort" if forecast is None else (forecast, parts)


def _add_years(day: dt.date, years: int = 1) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


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
    day = _add_years(then)
    if pd.Timestamp(day) > pd.Timestamp(ds.params.as_of):
        return "short_follow_up"
    made = nrr_forecast(model)
    if isinstance(made, str):
        return made
    forecast, fparts = made
    feats = segments.customer_features(ds, day, engagement=False)
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


def findings_table(
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


def follow_up(
    ds: Dataset,
    previous: str | Path | None = None,
    months: int = MONTHS,
    results_now: dict[str, Any] | None = None,
) -> Followup:
    """Grade last year's forecasts: ``previous`` run's red list when given, else a backtest
    as of ``as_of - months``. Never raises for data that cannot be graded: ``problem``
    says why (``short_history``, ``no_follow_up``, ``no_churn``, ``flags_everyone``).

    ``results_now`` is this run's results so far (chapter 1's findings and, for a
    backtest, chapter 4's scenarios are quoted from it when present).
    """
    seed = ds.params.seed
    results_now = results_now or {}
    if previous is not None:
        fc = from_previous_run(previous)
        then = fc.as_of_then
        problem = history_problem(ds, then)
    else:
        then = cut_date(ds.params.as_of, months)
        problem = history_problem(ds, then)
        fc = None if problem else backtest(ds, months)
    fu = Followup("previous_run" if previous is not None else "backtest", then, problem, fc)
    then_results = fc.results_then if fc is not None else {}
    sim = (then_results if previous is not None else results_now).get("simulation") or {}
    fu.pilots = pilot_readouts(ds, sim.get("scenarios"))
    run = set(fu.pilots.pilot) if fu.pilots is not None else set()
    designed = (then_results.get("simulation") or {}).get("pilots") or []
    fu.pilots_not_run = [d["name"] for d in designed if d.get("name") not in run]
    fu.findings = findings_table(then_results, results_now)
    if problem or fc is None:
        return fu
    fu.graded = outcomes_since(ds, then, fc)
    if not fu.graded.churned.any():
        fu.problem = {"reason": "no_churn", "graded": len(fu.graded)}
    fu.red = red_list_grades(fu.graded, seed)
    share = fu.red["flagged"] / max(fu.red["graded"], 1)
    if share >= FLAGS_EVERYONE:
        # a list of (nearly) everyone has the base rate as its precision by construction
        fu.problem = {"reason": "flags_everyone", "share": share, "graded": fu.red["graded"]}
    model = fc
    if fc.source == "previous_run":
        # its own per-customer forecasts when it recorded them; else (an older run, whose
        # exports hold only the red list) the same models rerun on the data as it stood then
        model = recorded_forecast(Path(previous), fc.results_then)
        try:
            model = model or backtest(ds, months, cut=then)
        except (ValueError, RuntimeError) as exc:
            warnings.warn(f"follow-up: models not rerun as of {then} ({exc})", stacklevel=2)
    # calibration and CLV grade what was forecast then: a backtest's or a previous run's
    # recorded per-customer forecasts, never models rerun today in a previous run's name
    said = model if model is not None and (model is fc or model.recorded) else None
    if said is not None:
        fu.calibration, fu.clv = probability_and_spend_grades(ds, fu.graded, said, months, seed)
        for key, grade in (("calibration", fu.calibration), ("clv", fu.clv)):
            if grade is not None:
                fc.notes.pop(key, None)
    fu.headline, fu.headline_skipped = headline_rows(ds, fu.graded, fc, model, seed)
    return fu


def probability_and_spend_grades(
    ds: Dataset, graded: pd.DataFrame, said: Forecast, months: int = MONTHS, seed: int = 0
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Calibration of ``said``'s churn probabilities over its horizon (health score only)
    and its 12-month spend forecast against realised spend (:func:`calibration_grades`,
    :func:`clv_grades`); ``None`` for a part it did not forecast."""
    cal = None
    if said.method == "health" and "churn_probability" in said.scores:
        probs = said.scores[["customer_id", "churn_probability"]]
        g = graded.drop(columns="churn_probability").merge(probs, on="customer_id", how="left")
        end = pd.Timestamp(said.as_of_then) + pd.Timedelta(days=said.horizon_days)
        g["churned_in_horizon"] = g.churned & (g.churned_at <= end)
        cal = calibration_grades(g, seed)
    clv = None
    if said.clv is not None:
        before = None if said.before is None else said.before.set_index("customer_id").spend_12m
        realised = realised_spend(ds, said.as_of_then, months)
        clv = clv_grades(said.clv, realised, before, seed)
    return cal, clv


# --------------------------------------------------------------------------------------
# The notebook's helpers


def resolve_previous(
    params_file: str | Path, run_dir: str | Path, as_of: dt.date, recorded: str | None = None
) -> Path | None:
    """The previous run to grade: ``recorded`` (the run's ``run.previous`` in results.json,
    set by ``fupan review --previous``), else ``followup.previous`` from the params file,
    else (with ``auto_previous``) the newest earlier annual run beside this run's folder,
    else none."""
    if recorded:
        return Path(recorded)
    s = load_settings(params_file)
    if s.previous:
        return Path(s.previous)
    if not s.auto_previous or not run_dir:
        return None
    here = Path(run_dir).resolve()
    return find_previous(here.parent, as_of, s.months, exclude=here)


def summary_line(results: dict[str, Any], lang: str, fmt: Any) -> str | None:
    """The executive summary's line from results.json ``followup`` ("Of last year's 390 red
    customers, 27% left, 5.9x the base rate"), or ``None`` when the list was not graded."""
    from fupan.core import i18n

    fu = results.get("followup") or {}
    need = ("at_risk_then", "at_risk_precision", "at_risk_lift", "base_rate")
    if not all(isinstance(fu.get(k), (int, float)) for k in need) or not fu["at_risk_then"]:
        return None
    return i18n.t(
        f"fu.summary.{fu.get('source', 'backtest')}",
        lang,
        n=fmt.int(fu["at_risk_then"]),
        precision=fmt.pct(fu["at_risk_precision"], 0),
        lift=fmt.num(fu["at_risk_lift"], 1),
        base=fmt.pct(fu["base_rate"], 0),
        then=fu.get("as_of_then", ""),
    )


def calibration_figure(table: pd.DataFrame, labels: dict[str, str]) -> Any:
    """Predicted vs realised churn rate by decile, realised with its interval."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = table["bin"].to_numpy()
    ax.plot(x, table.predicted, "o-", label=labels["predicted"])
    err = [table.observed - table.low, table.high - table.observed]
    ax.errorbar(x, table.observed, yerr=err, fmt="s", capsize=3, label=labels["observed"])
    ax.set_xticks(x)
    ax.set_xlabel(labels["x"])
    ax.set_ylabel(labels["y"])
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_title(labels["title"])
    ax.legend(frameon=False)
    return fig


def clv_figure(table: pd.DataFrame, labels: dict[str, str]) -> Any:
    """Mean predicted vs realised 12-month spend per decile of the prediction."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = table.decile.to_numpy()
    w = 0.4
    ax.bar(x - w / 2, table.predicted, w, label=labels["predicted"])
    ax.bar(x + w / 2, table.realised, w, label=labels["observed"])
    ax.set_xticks(x)
    ax.set_xlabel(labels["x"])
    ax.set_ylabel(labels["y"])
    ax.set_title(labels["title"])
    ax.legend(frameon=False)
    return fig


def red_table(red: dict[str, Any], lang: str, fmt: Any) -> pd.DataFrame:
    """The red list's grades as a slide table: measure, value, 95% interval, counts."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    rows = []
    for key, k, n in (
        ("precision", red["flagged_churned"], red["flagged"]),
        ("recall", red["flagged_churned"], red["churned"]),
        ("base_rate", red["churned"], red["graded"]),
    ):
        rows.append(
            [t(f"fu.red.{key}"), fmt.pct(red[key], 1),
             t("fu.range", lo=fmt.pct(red[f"{key}_low"], 1), hi=fmt.pct(red[f"{key}_high"], 1)),
             t(f"fu.red.count.{key}", k=fmt.int(k), n=fmt.int(n))]
        )  # fmt: skip
    if math.isfinite(red["lift"]):
        rows.append(
            [t("fu.red.lift"), f"{fmt.num(red['lift'], 2)}×",
             t("fu.range", lo=f"{fmt.num(red['lift_low'], 2)}×", hi=f"{fmt.num(red['lift_high'], 2)}×"),
             t("fu.red.count.precision", k=fmt.int(red["flagged_churned"]), n=fmt.int(red["flagged"]))]
        )  # fmt: skip
    if math.isfinite(red["median_lead_days"]):
        ci = ""
        if math.isfinite(red["median_lead_days_low"]):
            ci = t("fu.range", lo=fmt.num(red["median_lead_days_low"], 0),
                   hi=fmt.num(red["median_lead_days_high"], 0))  # fmt: skip
        rows.append(
            [t("fu.red.lead"), fmt.num(red["median_lead_days"], 0), ci,
             t("fu.red.count.lead", k=fmt.int(red["flagged_churned"]))]
        )  # fmt: skip
    cols = [t(f"fu.red.col.{c}") for c in ("measure", "value", "interval", "count")]
    return pd.DataFrame(rows, columns=cols)


def _metric_label(row: dict[str, Any], lang: str) -> str:
    from fupan.core import i18n

    if row["metric"] != "churn_rate":
        return i18n.t(f"fu.head.{row['metric']}", lang)
    if "months" in row:
        return i18n.t("fu.head.churn_rate_months", lang, months=row["months"])
    return i18n.t("fu.head.churn_rate_days", lang, days=row["days"])


def _show(row: dict[str, Any], x: float, fmt: Any) -> str:
    return fmt.money(x) if row["metric"] == "revenue_12m" else fmt.pct(x, 1)


def _off(row: dict[str, Any], fmt: Any) -> str:
    """How far the forecast missed: relative for money, percentage points for rates."""
    if row["metric"] == "revenue_12m" and row.get("off_relative") is not None:
        return fmt.pct(abs(row["off_relative"]), 0)
    return fmt.pts(abs(row["off"]), 1).lstrip("+")


def verdict_words(row: dict[str, Any], lang: str, fmt: Any) -> str:
    """``held`` or ``missed: 14% too low`` in words."""
    from fupan.core import i18n

    return i18n.t(f"fu.head.verdict.{row['verdict']}", lang, off=_off(row, fmt))


def headline_table(rows: list[dict[str, Any]], lang: str, fmt: Any) -> pd.DataFrame:
    """Headline forecasts vs actuals as a slide table: forecast, actual with its 95%
    interval, the base rate (the value a year before), the verdict in words."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    out = []
    for r in rows:
        base = _show(r, r["base"], fmt) if "base" in r else t("fu.head.no_base")
        out.append(
            [_metric_label(r, lang), _show(r, r["forecast"], fmt), _show(r, r["actual"], fmt),
             t("fu.range", lo=_show(r, r["low"], fmt), hi=_show(r, r["high"], fmt)), base,
             verdict_words(r, lang, fmt)]
        )  # fmt: skip
    cols = ("metric", "forecast", "actual", "interval", "base", "verdict")
    return pd.DataFrame(out, columns=[t(f"fu.head.col.{c}") for c in cols])


def headline_lines(
    rows: list[dict[str, Any]], then: Any, source: str, lang: str, fmt: Any
) -> dict[str, Any]:
    """The headline slide's title and finding (quoting the numbers) and the note that
    states each forecast's population in words."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    sep = "；" if lang == "zh" else "; "
    held = sum(r["verdict"] == "held" for r in rows)
    missed = [
        t(f"fu.head.off.{r['verdict']}", what=t(f"fu.head.short.{r['metric']}"), off=_off(r, fmt))
        for r in rows
        if r["verdict"] != "held"
    ]
    if missed:
        title = t("fu.head.title_some", held=held, n=len(rows), missed=sep.join(missed))
    else:
        title = t("fu.head.title_all", n=len(rows))
    pairs = sep.join(
        t("fu.head.pair", what=_metric_label(r, lang), f=_show(r, r["forecast"], fmt),
          a=_show(r, r["actual"], fmt))
        for r in rows
    )  # fmt: skip
    finding = t("fu.head.finding", pairs=pairs, then=str(then))
    pops = []
    for r in rows:
        # the churn forecast a previous run's simulation recorded is annual, over everyone live
        key = (
            "churn_rate.recorded" if "months" in r and r["metric"] == "churn_rate" else r["metric"]
        )
        pops.append(
            t(f"fu.head.pop.{key}", n=fmt.int(r["population"]), then=str(then),
              cohort=str(r.get("cohort_acquired_by", "")), days=r.get("days", ""),
              base=fmt.money(r.get("base_revenue")) if "base_revenue" in r else "")
        )  # fmt: skip
    note = t("fu.head.pop", pops=sep.join(pops))
    if any(r["basis"] == "recomputed" for r in rows):
        note += " " + t("fu.head.basis.recomputed", then=str(then))
    elif any(r["basis"] == "recorded" and r["metric"] != "churn_rate" for r in rows):
        note += " " + t("fu.head.basis.recorded", then=str(then))
    return {"title": title, "finding": finding, "note": note}


def next_year_lines(summary: dict[str, Any], lang: str, fmt: Any) -> tuple[str, str]:
    """The slide (title, finding) for this review's forecasts of the coming year, recorded
    for next year's follow-up; the finding quotes them or says why there are none."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    until = _add_years(dt.date.fromisoformat(str(summary["as_of"])))
    items = []
    if "churn_rate" in summary:
        x, n = fmt.pct(summary["churn_rate"], 1), fmt.int(summary["customers_scored"])
        items.append(t("fu.next.churn", days=summary["horizon_days"], x=x, n=n))
    if "revenue_12m" in summary:
        items.append(t("fu.next.revenue", x=fmt.money(summary["revenue_12m"])))
    if "nrr" in summary:
        items.append(
            t("fu.next.nrr", x=fmt.pct(summary["nrr"], 1), n=fmt.int(summary["nrr_cohort"]))
        )
    sep = "；" if lang == "zh" else "; "
    if not items:
        return t("fu.next.title_none"), t("fu.next.none")
    text = sep.join(items)
    return t("fu.next.title", until=str(until)), t(
        "fu.next.finding", items=text[:1].upper() + text[1:]
    )


def next_year_table(summary: dict[str, Any], lang: str, fmt: Any) -> pd.DataFrame | None:
    """The recorded forecasts next to this year's value of each (the base a reader would
    forecast without a model), or ``None`` when none was recorded."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    base = summary.get("base") or {}
    rows = []
    for key, label, show, b in (
        ("churn_rate", t("fu.head.churn_rate_days", days=summary.get("horizon_days")),
         lambda x: fmt.pct(x, 1), base.get("churn_rate_horizon")),
        ("revenue_12m", t("fu.head.revenue_12m"), fmt.money, summary.get("revenue_12m_base")),
        ("nrr", t("fu.head.nrr"), lambda x: fmt.pct(x, 1), base.get("nrr")),
    ):  # fmt: skip
        if key in summary:
            rows.append([label, show(summary[key]), t("fu.head.no_base") if b is None else show(b)])
    if not rows:
        return None
    until = _add_years(dt.date.fromisoformat(str(summary["as_of"])))
    cols = [
        t("fu.head.col.metric"),
        t("fu.next.col.forecast", until=str(until)),
        t("fu.next.col.base"),
    ]
    return pd.DataFrame(rows, columns=cols)


def pilot_lines(pilots: pd.DataFrame, as_of: Any, lang: str, fmt: Any) -> list[tuple[str, ...]]:
    """Per pilot: a slide (title, finding) and a note comparing it with the prediction."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    def pp(x: float) -> str:
        return fmt.pts(x, 1)  # "pts" / "个百分点", as every other slide writes a rate change

    out: list[tuple[str, ...]] = []
    for r in pilots.to_dict(orient="records"):
        if r.get("effect") is None or not math.isfinite(r.get("effect", float("nan"))):
            out.append(("slide", t("fu.pilot.one_arm", pilot=r["pilot"])))
            continue
        title = t("fu.pilot.title", pilot=r["pilot"], t=fmt.pct(r["treated_rate"], 1),
                  c=fmt.pct(r["control_rate"], 1), d=pp(r["effect"]), low=pp(r["effect_low"]),
                  high=pp(r["effect_high"]))  # fmt: skip
        finding = t("fu.pilot.finding", start=str(r["started_at"]), nt=fmt.int(r["treated"]),
                    nc=fmt.int(r["control"]), as_of=str(as_of),
                    decision=t(f"fu.decision.{r['decision']}"))  # fmt: skip
        out.append(("slide", title, finding))
        held = r.get("prediction_held")
        if held is None or (isinstance(held, float) and math.isnan(held)):
            out.append(("note", t("fu.pilot.no_prediction")))
        else:
            key = "fu.pilot.held" if held else "fu.pilot.missed"
            out.append(("note", t(key, p=pp(r["predicted_effect"]), low=pp(r["predicted_low"]),
                                  high=pp(r["predicted_high"]), d=pp(r["effect"]))))  # fmt: skip
    return out


def findings_lines(findings: pd.DataFrame, lang: str, fmt: Any) -> pd.DataFrame:
    """Last year's findings vs this year's values, as a slide table."""
    from fupan.core import i18n

    def value(metric: str, x: Any) -> str:
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return i18n.t("fu.find.not_measured", lang)
        share = metric.endswith(("_rate", "_share")) or metric in ("sla_compliance",)
        return fmt.pct(float(x), 1) if share else fmt.num(float(x), 0)

    rows = [
        [r.finding_then, value(r.metric, r.value_then), value(r.metric, r.value_now)]
        for r in findings.itertuples()
    ]
    cols = [i18n.t(f"fu.find.col.{c}", lang) for c in ("finding", "then", "now")]
    return pd.DataFrame(rows, columns=cols)
