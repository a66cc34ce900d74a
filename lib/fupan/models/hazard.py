"""When do customers churn? The Cox hazard model of the drivers, and Kaplan-Meier curves.

:func:`counting_process` turns monthly snapshots into time-varying covariates (each snapshot
opens an interval that runs to the next snapshot or to churn). :class:`DriverCox` fits a Cox
proportional-hazards model (Breslow ties, delayed entry) on them by Newton's method with
a cluster-robust sandwich covariance, falling back to statsmodels' ``PHReg``: hazard ratios
per SD with 95% intervals. :func:`kaplan_meier` gives survival curves per group with the
log-rank test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from fupan.models.design import (
    fit_with_fallback,
    group_codes,
    ratio_table,
    renamed_arguments,
    single_threaded,
)


def counting_process(snap: pd.DataFrame, step_days: int | None = None) -> pd.DataFrame:
    """Entry, exit and event per snapshot row, for a Cox model with time-varying covariates.

    Each snapshot opens an interval ``[s, next snapshot)`` (or ``[s, s + step_days)``), ended
    early by churn on day ``d`` (exit ``d + 0.5``, event 1: during that day). Times are days
    since the first snapshot. Events at half days never coincide with the whole-day interval
    boundaries, where statsmodels would drop a customer whose interval is closed by
    censoring and reopened by the next snapshot from that moment's risk set.
    """
    dates = np.sort(snap.snapshot_date.unique())
    nxt = pd.Series(list(dates[1:]) + [pd.NaT], index=dates)
    if step_days is None:
        step_days = (
            int(np.median(np.diff(dates)).astype("timedelta64[D]").astype(int))
            if len(dates) > 1
            else 30
        )
    s = pd.to_datetime(snap.snapshot_date)
    end = pd.to_datetime(nxt.reindex(snap.snapshot_date.to_numpy()).to_numpy())
    end = pd.Series(end, index=snap.index).fillna(s + pd.Timedelta(days=step_days))
    churn = pd.to_datetime(snap.label_churned_at)
    event = churn.notna() & (churn < end)
    exit_ = end.where(~event, churn + pd.Timedelta(hours=12))
    origin = s.min()
    return pd.DataFrame(
        {
            "entry": (s - origin).dt.days.astype(float),
            "exit": (exit_ - origin) / pd.Timedelta(days=1),
            "event": event.astype(int),
        },
        index=snap.index,
    )


class _CoxRiskSets:
    """Breslow partial likelihood of a Cox model with delayed entry, on interval risk sets.

    A row is at risk at every distinct event time ``t`` with ``entry <= t <= exit`` (the
    convention of statsmodels' ``PHReg``). Sums over a risk set are differences of
    cumulative sums over the sorted event times, so a likelihood, score and information
    evaluation costs a few passes over the rows instead of a loop over event times.
    """

    def __init__(self, entry: np.ndarray, exit_: np.ndarray, event: np.ndarray, X: np.ndarray):
        event = np.asarray(event, dtype=bool)
        times = np.unique(exit_[event])
        self.X = np.ascontiguousarray(X, dtype=float)
        self.n_times = len(times)
        # rows are at risk at event-time indices first_..last_ (empty when first_ > last_)
        self.first_ = np.searchsorted(times, entry, side="left")
        self.last_ = np.searchsorted(times, exit_, side="right") - 1
        self.at_risk_ = self.first_ <= self.last_
        self.event_ = event
        self.event_time_ = np.searchsorted(times, exit_[event])
        self.deaths_ = np.bincount(self.event_time_, minlength=self.n_times).astype(float)
        self.x_events_ = self.X[event].sum(axis=0)

    def _risk_sums(self, v: np.ndarray) -> np.ndarray:
        """Sum of ``v`` (rows, or rows x columns) over each event time's risk set."""
        T = self.n_times
        a, b = self.first_[self.at_risk_], self.last_[self.at_risk_] + 1
        v = v[self.at_risk_]
        if v.ndim == 1:
            d = np.bincount(a, v, T + 1) - np.bincount(b, v, T + 1)
            return np.cumsum(d)[:T]
        d = np.stack(
            [
                np.bincount(a, v[:, j], T + 1) - np.bincount(b, v[:, j], T + 1)
                for j in range(v.shape[1])
            ],
            axis=1,
        )
        return np.cumsum(d, axis=0)[:T]

    def _over_risk_times(self, per_time: np.ndarray) -> np.ndarray:
        """Per row: the sum of ``per_time`` over the event times at which it is at risk."""
        c = np.cumsum(per_time, axis=0)
        c = np.concatenate([np.zeros((1, *per_time.shape[1:])), c])
        out = c[self.last_ + 1] - c[np.minimum(self.first_, self.last_ + 1)]
        return np.where(self.at_risk_.reshape(-1, *([1] * (per_time.ndim - 1))), out, 0.0)

    def evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, dict]:
        """Log partial likelihood, score, Hessian and the pieces the sandwich needs."""
        eta = self.X @ beta
        eta = eta - eta.max()  # exp() stays finite; the likelihood is unchanged
        r = np.exp(eta)
        s0 = self._risk_sums(r)
        s1 = self._risk_sums(r[:, None] * self.X)
        mean = s1 / s0[:, None]  # risk-weighted covariate mean per event time
        hazard = self.deaths_ / s0  # Breslow increment of the cumulative hazard
        loglike = float(eta[self.event_].sum() - self.deaths_ @ np.log(s0))
        score = self.x_events_ - self.deaths_ @ mean
        c = self._over_risk_times(hazard)
        info = (self.X * (r * c)[:, None]).T @ self.X - (mean * self.deaths_[:, None]).T @ mean
        return loglike, score, -info, {"r": r, "mean": mean, "hazard": hazard, "c": c}

    def score_residuals(self, parts: dict) -> np.ndarray:
        """Per row: its share of the score (sums to the score over all rows)."""
        r, mean, hazard, c = parts["r"], parts["mean"], parts["hazard"], parts["c"]
        out = -r[:, None] * (self.X * c[:, None] - self._over_risk_times(hazard[:, None] * mean))
        out[self.event_] += self.X[self.event_] - mean[self.event_time_]
        return out


def _cox_newton(
    risk: _CoxRiskSets, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Maximise the partial likelihood by Newton's method with step halving.

    Returns (coefficients, Hessian, pieces at the optimum), or None when it does not
    converge (a singular information matrix, or a likelihood that keeps rising: separation).
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return _cox_newton_steps(risk, max_iter, tol)


def _cox_newton_steps(
    risk: _CoxRiskSets, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, dict] | None:
    # A trial step may overflow; the step is then halved until the likelihood is finite
    # and has not fallen, which is what keeps Newton from the overshoot statsmodels hits.
    beta = np.zeros(risk.X.shape[1])
    ll, score, hess, parts = risk.evaluate(beta)
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(-hess, score)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        t = 1.0
        for _ in range(30):
            new = beta + t * step
            out = risk.evaluate(new)
            if np.isfinite(out[0]) and out[0] >= ll - 1e-12 * abs(ll):
                break
            t *= 0.5
        else:
            return None
        beta, (ll, score, hess, parts) = new, out
        if np.max(np.abs(t * step)) < tol:
            return beta, hess, parts
    return None


class DriverCox(BaseEstimator):
    """Cox PH (Breslow ties) with delayed entry; hazard ratios per SD with robust 95% CI.

    The robust covariance is the sandwich of the information matrix around the score
    residuals summed per cluster (statsmodels' ``PHReg(...).fit(groups=...)``). When
    Newton's method does not converge, statsmodels fits the model instead. The outcome
    ``y`` is a counting-process frame (:func:`counting_process`): ``entry``, ``exit``,
    ``event`` per row of ``X``.

    Attributes
    ----------
    summary_ : DataFrame indexed by design column: ``coef, se, hazard_ratio, hr_low,
        hr_high, p``; ``summary_.attrs["cov"]`` is ``cov_``.
    coef_ : pd.Series, log hazard ratio per SD of each column.
    cov_ : DataFrame, the robust covariance of the coefficients.
    """

    @single_threaded
    def fit(
        self, X: pd.DataFrame, y: pd.DataFrame, groups: Sequence[Any] | None = None
    ) -> DriverCox:
        Z, cp = X, y
        Xv = Z.to_numpy(dtype=float)
        codes = group_codes(groups, len(Z))
        risk = _CoxRiskSets(
            cp["entry"].to_numpy(float), cp["exit"].to_numpy(float), cp["event"].to_numpy(bool), Xv
        )
        fitted = _cox_newton(risk) if risk.n_times else None
        if fitted is None:
            params, bse, pvalues, cov = _fit_cox_statsmodels(Xv, cp, codes)
        else:
            params, hess, parts = fitted
            resid = risk.score_residuals(parts)
            per_cluster = np.stack(
                [np.bincount(codes, resid[:, j]) for j in range(resid.shape[1])], axis=1
            )
            h_inv = np.linalg.inv(hess)
            cov = h_inv @ (per_cluster.T @ per_cluster) @ h_inv
            bse = np.sqrt(np.diag(cov))
            pvalues = 2.0 * stats.norm.sf(np.abs(params / bse))
        coef = pd.Series(params, index=Z.columns)
        se = pd.Series(bse, index=Z.columns)
        out = ratio_table(coef, se, pd.Series(pvalues, index=Z.columns), "hazard_ratio", "hr")
        out.attrs["cov"] = pd.DataFrame(np.asarray(cov), index=Z.columns, columns=Z.columns)
        self.summary_ = out
        self.coef_ = coef
        self.cov_ = out.attrs["cov"]
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Risk score per row: the log partial hazard ``X @ coef_`` (higher = sooner)."""
        check_is_fitted(self)
        return X[self.coef_.index].to_numpy(float) @ self.coef_.to_numpy()


@renamed_arguments(clusters="groups")
def fit_cox(Z: pd.DataFrame, cp: pd.DataFrame, groups: Sequence[Any] | None = None) -> pd.DataFrame:
    """:class:`DriverCox`'s ``summary_``: hazard ratios per SD with a robust 95% CI.

    Returns
    -------
    DataFrame indexed by design column: ``coef, se, hazard_ratio, hr_low, hr_high, p``.
    """
    return DriverCox().fit(Z, cp, groups).summary_


def _fit_cox_statsmodels(
    X: np.ndarray, cp: pd.DataFrame, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from statsmodels.duration.hazard_regression import PHReg

    model = PHReg(
        cp["exit"].to_numpy(),
        X,
        status=cp["event"].to_numpy(),
        entry=cp["entry"].to_numpy(),
        ties="breslow",
    )
    res = fit_with_fallback(model.fit, groups=codes)
    return (
        np.asarray(res.params),
        np.asarray(res.bse),
        np.asarray(res.pvalues),
        np.asarray(res.cov_params()),
    )


# --------------------------------------------------------------------------------------
# Kaplan-Meier


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, entry: np.ndarray | None = None
) -> tuple[dict[Any, pd.DataFrame], float]:
    """Kaplan-Meier curves per group with 95% pointwise CI, and the log-rank p-value.

    Returns
    -------
    (group -> DataFrame ``time, surv, low, high, at_risk``, log-rank p-value across groups)
    """
    from statsmodels.duration.survfunc import SurvfuncRight, survdiff

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    group = np.asarray(group)
    curves: dict[Any, pd.DataFrame] = {}
    for g in pd.unique(group):
        m = group == g
        sf = SurvfuncRight(time[m], event[m], entry=None if entry is None else entry[m])
        t = np.r_[0.0, sf.surv_times]
        s = np.r_[1.0, sf.surv_prob]
        se = np.r_[0.0, sf.surv_prob_se]
        # log(-log) interval: stays inside [0, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            lls = np.log(-np.log(s))
            half = 1.96 * se / (s * np.abs(np.log(s)))
            # log(-log S) falls as S rises: its upper limit gives the lower limit of S
            low = np.where(s < 1, np.exp(-np.exp(lls + half)), 1.0)
            high = np.where(s < 1, np.exp(-np.exp(lls - half)), 1.0)
        at_risk = np.r_[m.sum(), sf.n_risk]
        curves[g] = pd.DataFrame(
            {
                "time": t,
                "surv": s,
                "low": np.nan_to_num(low, nan=s),
                "high": np.nan_to_num(high, nan=s),
                "at_risk": at_risk,
            }
        )
    p = float("nan")
    if len(curves) > 1 and event.sum() > 0:
        _, p = survdiff(time, event, group, entry=entry)
        p = float(p)
    return curves, p
