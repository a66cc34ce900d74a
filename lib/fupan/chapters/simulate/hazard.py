"""The monthly discrete-time hazard model (binomial regression, complementary log-log
link): Newton fit, intercept calibration, and the bootstrap's cheap refits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from fupan.models.design import Design

# --------------------------------------------------------------------------------------
# The hazard model


def _cloglog_mu(eta: np.ndarray) -> np.ndarray:
    return -np.expm1(-np.exp(np.clip(eta, -40.0, 5.0)))


def _cloglog_weights(
    e: np.ndarray, y: np.ndarray, w: np.ndarray, ev: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row d loglik / d eta and minus its derivative, at ``e = exp(eta)``.

    d loglik / d eta = e (y - mu) / mu; minus its derivative is e on rows without an event
    and e - y r + y r^2 (1 - mu) (r = e / mu) on the rows in ``ev`` (y > 0). Churn is rare,
    so the churn probability is computed on the event rows only.
    """
    ee, yv, wv = e[ev], y[ev], w[ev]
    mu = np.clip(-np.expm1(-ee), 1e-12, 1.0 - 1e-12)
    r = ee / mu
    g = -w * e
    g[ev] = wv * r * (yv - mu)
    h = w * e
    h[ev] = wv * (ee - yv * r + yv * r * r * (1.0 - mu))
    return g, h


def _newton_cloglog(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    start: np.ndarray | None = None,
    ridge: float = 1.0,
    max_iter: int = 60,
    tol: float = 1e-9,
) -> np.ndarray:
    """Weighted binomial regression with the cloglog link by Newton's method.

    The first column of ``X`` is the intercept (not penalised). A weak ridge (``ridge``
    on standardised slopes, i.e. a normal prior with SD 1/sqrt(ridge) per SD of a feature)
    keeps small or separated samples finite without moving large-sample estimates.

    Steps use the observed information, not Fisher's expected one: cloglog is not the
    binomial's canonical link, so Fisher scoring converges only linearly, while the
    observed information is positive definite everywhere (the log-likelihood is concave
    in the linear predictor) and converges quadratically to the same maximum.
    """
    n, p = X.shape
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    pen = np.full(p, float(ridge))
    pen[0] = 0.0
    if start is None:
        ybar = float(np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6))
        beta = np.zeros(p)
        beta[0] = math.log(-math.log1p(-ybar))
    else:
        beta = np.asarray(start, dtype=float).copy()
    ev = y > 0
    wy = w[ev] * y[ev]

    def state(b: np.ndarray) -> tuple[float, np.ndarray]:
        e = np.exp(np.clip(X @ b, -40.0, 5.0))
        mu = np.clip(-np.expm1(-e[ev]), 1e-300, 1.0)
        # sum of w (y log mu - (1 - y) e), split so the log is taken on event rows only
        ll = float(np.dot(wy, np.log(mu)) - np.dot(w, e) + np.dot(wy, e[ev]))
        return ll - 0.5 * float(np.sum(pen * b * b)), e

    ll, e = state(beta)
    for _ in range(max_iter):
        g, h = _cloglog_weights(e, y, w, ev)
        score = X.T @ g - pen * beta
        # h >= 0 (rounding aside), and Xh.T @ Xh runs as a symmetric rank-k update
        Xh = X * np.sqrt(np.maximum(h, 0.0))[:, None]
        info = Xh.T @ Xh + np.diag(pen)
        step = np.linalg.solve(info, score)
        t = 1.0
        while True:
            cand = beta + t * step
            ll_new, e_new = state(cand)
            if ll_new >= ll - 1e-10 or t < 1e-8:
                break
            t /= 2.0
        beta, ll, e = cand, ll_new, e_new
        if np.max(np.abs(t * step)) < tol:
            break
    return beta


@dataclass
class HazardModel:
    """A fitted monthly cloglog hazard model on a standardised design.

    Attributes
    ----------
    design : the feature design (imputation, winsorising, standardising, dummies).
    beta : slopes on ``design.columns_`` (log hazard ratio per SD).
    intercept : calibrated intercept.
    """

    design: Design
    beta: np.ndarray
    intercept: float

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        return self.design.transform(df).to_numpy(dtype=float)

    def hazard(self, Z: np.ndarray) -> np.ndarray:
        """Monthly cumulative hazard ``exp(eta)`` per row (churn probability = 1 - exp(-it))."""
        return np.exp(np.clip(self.intercept + Z @ self.beta, -40.0, 5.0))

    def per_unit(self) -> pd.Series:
        """Log hazard ratio per unit of each numeric feature (per level for dummies)."""
        sd = self.design.sd_[self.design.columns_].to_numpy(dtype=float)
        return pd.Series(self.beta / sd, index=self.design.columns_)


def _calibrate(
    offset: np.ndarray, y: np.ndarray, w: np.ndarray, start: float | None = None
) -> float:
    """The intercept at which the expected number of monthly churns equals the observed.

    The expected count rises with the intercept, so Newton's method from ``start`` (the
    slope fit's own intercept, close by) is kept inside a bracket that every evaluation
    narrows; bisection takes over when a step leaves it, Brent's method after 60 steps.
    """
    target = float(np.sum(w * y))
    if target <= 0:
        return -40.0

    def gap(b0: float) -> float:
        return float(np.sum(w * _cloglog_mu(b0 + offset))) - target

    lo, hi = -40.0, 5.0
    if start is not None and lo < start < hi:
        b = float(start)
        for _ in range(60):
            eta = b + offset
            inside = (eta > -40.0) & (eta < 5.0)  # the clipped rows do not move with b
            e = np.exp(np.clip(eta, -40.0, 5.0))
            mu = -np.expm1(-e)
            f = float(np.dot(w, mu)) - target
            if f == 0.0:
                return b
            if f > 0:
                hi = b
            else:
                lo = b
            slope = float(np.dot(w[inside], (e * (1.0 - mu))[inside]))
            nxt = b - f / slope if slope > 0 else math.nan
            if not lo < nxt < hi:
                nxt = 0.5 * (lo + hi)
            if abs(nxt - b) < 1e-12:
                return nxt
            b = nxt
    return float(optimize.brentq(gap, lo, hi, xtol=1e-10))


def fit_hazard(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    weights: np.ndarray | None = None,
    design: Design | None = None,
    start: np.ndarray | None = None,
    Z: np.ndarray | None = None,
) -> HazardModel:
    """Fit the monthly hazard: slopes on ``exact`` rows, intercept calibrated on all rows.

    Parameters
    ----------
    frame : :func:`fit_frame` output.
    numeric, categorical : model features.
    weights : row weights (a bootstrap replicate); default 1.
    design : a fitted design to reuse (bootstrap replicates keep the full-data design).
    start : starting values ``[intercept, *slopes]``.
    Z : ``design.transform(frame)`` as an array, when already computed.
    """
    return _fit_hazard(frame, numeric, categorical, weights, design, start, Z)[0]


def _fit_hazard(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    weights: np.ndarray | None = None,
    design: Design | None = None,
    start: np.ndarray | None = None,
    Z: np.ndarray | None = None,
) -> tuple[HazardModel, np.ndarray]:
    """:func:`fit_hazard` and the slope fit's own ``[intercept, *slopes]`` (before the
    intercept is calibrated), where a bootstrap refit starts."""
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    if design is None:
        design = Design(numeric, categorical).fit(frame)
    if Z is None:
        Z = design.transform(frame).to_numpy(dtype=float)
    y = frame["label"].to_numpy(dtype=float)
    # rows a bootstrap replicate did not draw carry no information: leave them out
    drawn = w > 0
    use = frame["exact"].to_numpy(dtype=bool) & drawn
    X = np.column_stack([np.ones(int(use.sum())), Z[use]])
    with threadpool_limits(limits=1):
        coef = _newton_cloglog(X, y[use], w[use], start=start)
    beta = coef[1:]
    intercept = _calibrate(Z[drawn] @ beta, y[drawn], w[drawn], coef[0])
    return HazardModel(design=design, beta=beta, intercept=intercept), coef


class _Refit:
    """Bootstrap refits of the fitted model (:func:`fit_hazard` with row weights and the
    full-data design), with what every replicate repeats done once: the design matrix of
    the slope rows, the labels, the starting values (the full-data slope fit).

    Call :meth:`fit` inside ``threadpool_limits(limits=1)``: entering that context finds
    the BLAS libraries anew each time (about 15 ms), more than a refit's own arithmetic.
    """

    def __init__(self, frame: pd.DataFrame, model: HazardModel, coef: np.ndarray, Z: np.ndarray):
        self.design = model.design
        self.Z = Z
        self.y = frame["label"].to_numpy(dtype=float)
        self.exact = frame["exact"].to_numpy(dtype=bool)
        self.X = np.column_stack([np.ones(int(self.exact.sum())), Z[self.exact]])
        self.y_exact = self.y[self.exact]
        self.start = np.asarray(coef, dtype=float)

    def fit(self, weights: np.ndarray) -> HazardModel:
        w = np.asarray(weights, dtype=float)
        drawn = w > 0
        w_exact = w[self.exact]
        use = w_exact > 0
        coef = _newton_cloglog(self.X[use], self.y_exact[use], w_exact[use], self.start)
        beta = coef[1:]
        intercept = _calibrate((self.Z @ beta)[drawn], self.y[drawn], w[drawn], coef[0])
        return HazardModel(design=self.design, beta=beta, intercept=intercept)
