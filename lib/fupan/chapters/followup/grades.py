"""How good were they? What happened since the cut, and the grades with intervals and base
rates: the red list, calibration of the churn probabilities, CLV, and pilot readouts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import numpy as np
import pandas as pd

from fupan.chapters.followup.cut import MONTHS
from fupan.chapters.followup.forecasts import Forecast
from fupan.chapters.followup.intervals import (
    N_BOOT,
    bootstrap_interval,
    diff_with_ci,
    percentile_interval,
)
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

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
            lift_lo, lift_hi = percentile_interval(p_b / b_b)
    leads = graded.loc[f & y, "lead_days"].to_numpy(float)
    lead = float(np.median(leads)) if len(leads) else float("nan")
    lead_lo = lead_hi = float("nan")
    if len(leads) >= 2:
        idx = rng.integers(0, len(leads), size=(n_boot, len(leads)))
        lead_lo, lead_hi = percentile_interval(np.median(leads[idx], axis=1))
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
        lo, hi = percentile_interval(np.mean((p[idx] - y[idx]) ** 2, axis=1))
    ref = brier(np.full(len(y), y.mean()), y)
    return {
        "brier": b, "brier_low": lo, "brier_high": hi, "brier_base_rate": ref,
        "expected_churners": float(p.sum()), "churners": int(y.sum()), "n": int(len(p)),
        "table": _calibration(p, y),
    }  # fmt: skip


def _calibration(p: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    # imported here: models.health brings scikit-learn (~0.5 CPU s) into chapter 6's kernel
    from fupan.models import health

    return health.calibration(p, y, bins=10)


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
    bias_lo, bias_hi = bootstrap_interval(lambda a: a.mean(axis=1), [e], seed, n_boot)
    mae_lo, mae_hi = bootstrap_interval(lambda a: np.abs(a).mean(axis=1), [e], seed, n_boot)
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
