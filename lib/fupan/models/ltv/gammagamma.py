"""Gamma-Gamma model of average transaction value, and discounted CLV.

Each transaction value is ``Gamma(p, nu)``; ``nu ~ Gamma(q, v)`` varies across customers
(``v`` is the scale of the spend distribution, called gamma in the papers). The observed
mean ``zbar`` of ``x`` repeat transactions therefore has ``x * zbar ~ Gamma(p x, nu)``.

References: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "RFM and CLV: using iso-value
curves for customer base analysis", Journal of Marketing Research 42(4), 415-430; and
P. S. Fader and B. G. S. Hardie (2013), "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, polygamma

from ._core import (
    ParametricLTVModel,
    as_float_array,
    check_rfm,
    check_weights,
    dot,
    group_codes,
    maybe_compress,
    normalize_unit,
    unique_map,
    unit_ratio,
    warm_start,
    where,
    wrap_like,
    wsum,
)


def gamma_gamma_loglik(params: dict[str, float], frequency: Any, monetary: Any) -> np.ndarray:
    """Per-customer log-likelihood of the observed mean spend (customers with x > 0)."""
    x = as_float_array(frequency, "frequency")
    z = as_float_array(monetary, "monetary")
    p, q, v = (params[k] for k in ("p", "q", "v"))
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(z)
        + px * np.log(x)
        - (px + q) * np.log(v + x * z)
    )


def _negll_hess(
    x: np.ndarray, z: np.ndarray, w: np.ndarray
) -> Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]:
    """Negative log-likelihood with exact gradient and Hessian in log-parameters.

    Only ``log(v + x zbar)`` has to be evaluated per customer at each step: the terms in
    ``gammaln(p x + q)`` depend on ``x`` alone (evaluated once per distinct frequency) and
    ``(p x - 1) log zbar + p x log x`` is linear in ``p`` (two constant sums).
    """
    ux, inv = group_codes(x)
    Wx = np.bincount(inv, weights=w, minlength=ux.size)
    W = float(Wx.sum())
    y = x * z
    wx = w * x
    c1 = dot(wx, np.log(z) + np.log(x))
    c2 = dot(w, np.log(z))

    def fgh(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        p, q, v = np.exp(theta)
        pq = p * ux + q
        L = np.log(v + y)
        u = 1.0 / (v + y)
        u2 = u * u
        wxL, wL = dot(wx, L), dot(w, L)
        wxu, wu = dot(wx, u), dot(w, u)
        ll = (
            dot(Wx, gammaln(pq) - gammaln(p * ux))
            + W * (q * math.log(v) - float(gammaln(q)))
            + p * c1
            - c2
            - p * wxL
            - q * wL
        )
        psi_pq, tri_pq = digamma(pq), polygamma(1, pq)
        g = np.array(
            [
                dot(Wx, ux * (psi_pq - digamma(p * ux))) + c1 - wxL,
                dot(Wx, psi_pq) - W * float(digamma(q)) + W * math.log(v) - wL,
                W * q / v - p * wxu - q * wu,
            ]
        )
        H = np.empty((3, 3))
        H[0, 0] = dot(Wx, ux * ux * (tri_pq - polygamma(1, p * ux)))
        H[0, 1] = H[1, 0] = dot(Wx, ux * tri_pq)
        H[1, 1] = dot(Wx, tri_pq) - W * float(polygamma(1, q))
        H[0, 2] = H[2, 0] = -wxu
        H[1, 2] = H[2, 1] = W / v - wu
        H[2, 2] = -W * q / v**2 + p * dot(wx, u2) + q * dot(w, u2)
        par = np.array([p, q, v])
        g_t = par * g
        H_t = H * np.outer(par, par) + np.diag(g_t)
        return -ll, -g_t, -H_t

    return fgh


class GammaGamma(ParametricLTVModel):
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    initial_params : dict, optional
        Starting values for ``p, q, v``.
    max_iter : int
        Iteration cap for the optimiser.

    Attributes
    ----------
    params_ : dict
        ``p`` (shape of transaction values), ``q`` and ``v`` (shape and scale of the
        heterogeneity in mean spend), in the currency of ``monetary``.
    standard_errors_, summary_, log_likelihood_ : as for :class:`BetaGeo`.
    n_obs_ : float
        Customers with frequency > 0 the model was fitted on.
    n_excluded_ : float
        Customers with frequency 0 left out (they carry no repeat-spend information).

    Notes
    -----
    The model assumes spend is independent of purchase frequency; check the correlation
    of frequency and monetary among repeat customers before relying on it.
    """

    _param_names = ("p", "q", "v")

    def fit(self, frequency: Any, monetary: Any = None, *, weights: Any = None) -> GammaGamma:
        """Fit on customers with at least one repeat purchase.

        Parameters
        ----------
        frequency : array-like or DataFrame
            Repeat purchases per customer, or a summary DataFrame with ``frequency`` and
            ``monetary`` columns.
        monetary : array-like
            Mean value of the customer's repeat purchases.
        weights : array-like or str, optional
            Number of customers each row stands for, or a column name.

        Raises
        ------
        ValueError
            If any customer with frequency > 0 has ``monetary <= 0`` (refunds outweigh
            purchases, or zero-value orders): the message gives how many and which; filter
            them before fitting.
        """
        if isinstance(frequency, pd.DataFrame):
            frame = frequency
            if isinstance(weights, str):
                weights = frame[weights]
            frequency, monetary = frame["frequency"], frame["monetary"]
        if monetary is None:
            raise ValueError("monetary is required")
        labels = frequency.index if isinstance(frequency, pd.Series) else None
        x = as_float_array(frequency, "frequency")
        z = as_float_array(monetary, "monetary")
        if x.size != z.size:
            raise ValueError(f"frequency has {x.size} rows but monetary has {z.size}")
        w = check_weights(weights, x.size)
        if ((x < 0) | (x != np.round(x))).any():
            raise ValueError("frequency must be a whole number >= 0")
        keep = x > 0
        bad = keep & (z <= 0)
        if bad.any():
            n_neg = int((keep & (z < 0)).sum())
            raise ValueError(
                f"GammaGamma needs positive spend: {int(bad.sum())} customers with frequency > 0 "
                f"have monetary <= 0 ({n_neg} negative, i.e. refunds outweigh purchases; "
                f"{int(bad.sum()) - n_neg} zero): {where(bad, labels)}. "
                "Filter them (e.g. summary[summary.monetary > 0]) before fitting."
            )
        self.n_excluded_ = float(w[~keep].sum())
        (x, z), w = maybe_compress(x[keep], z[keep], weights=w[keep])
        if w.sum() == 0:
            raise ValueError("no customer has a repeat purchase: nothing to fit")
        self.n_unique_ = int(x.size)
        log_x, log_z = np.log(x), np.log(z)

        def negll_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            p, q, v = np.exp(theta)
            px = p * x
            lvxz = np.log(v + x * z)
            ll = (
                gammaln(px + q)
                - gammaln(px)
                - gammaln(q)
                + q * np.log(v)
                + (px - 1) * log_z
                + px * log_x
                - (px + q) * lvxz
            )
            dpq = digamma(px + q)
            d_p = x * (dpq - digamma(px) + log_z + log_x - lvxz)
            d_q = dpq - digamma(q) + np.log(v) - lvxz
            d_v = q / v - (px + q) / (v + x * z)
            g = np.array([wsum(w, d_p) * p, wsum(w, d_q) * q, wsum(w, d_v) * v])
            return -float(wsum(w, ll)), -g

        mean_z = float(wsum(w, z) / w.sum())
        guess = {"p": 1.0, "q": 2.0, "v": mean_z}
        theta0 = self._start(guess)
        if not self.initial_params:
            theta0 = warm_start(_negll_hess, (x, z), w, theta0)
        self._fit_params(
            lambda th: negll_grad(th)[0],
            theta0,
            float(w.sum()),
            negll_grad,
            _negll_hess(x, z, w),
        )
        return self

    def expected_spend(self, frequency: Any, monetary: Any) -> Any:
        """Conditional expected average transaction value, ``p (v + x zbar) / (p x + q - 1)``
        (FHL 2005, eq. 5). A weighted mean of the population mean ``p v / (q - 1)`` and the
        customer's own ``zbar``; frequency 0 gives the population mean (NaN if q <= 1).
        """
        p, q, v = self._p()
        x = as_float_array(frequency, "frequency")
        z = as_float_array(monetary, "monetary")
        x, z = np.broadcast_arrays(x, z)
        z = np.where(x > 0, z, 0.0)
        denom = p * x + q - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(denom > 0, p * (v + x * z) / denom, np.nan)
        return wrap_like(out, frequency)

    def population_mean_spend(self) -> float:
        """Mean transaction value across customers, ``p v / (q - 1)`` (infinite if q <= 1)."""
        p, q, v = self._p()
        return p * v / (q - 1) if q > 1 else float("inf")

    def clv(
        self,
        model: Any,
        frequency: Any,
        recency: Any,
        T: Any,
        monetary: Any,
        *,
        time_unit: str,
        horizon: int,
        period: str = "M",
        discount_rate: float = 0.0,
        discount_period: str | None = None,
        margin: float = 1.0,
    ) -> Any:
        """Discounted customer lifetime value over a finite horizon.

        ``CLV = sum_{k=1..horizon} E[purchases in period k] * E[spend] * margin / (1+d)^k``,
        where period ``k`` covers ``((k-1) L, k L]`` after ``T`` and ``L`` is one ``period``
        expressed in the transaction model's time unit.

        Parameters
        ----------
        model : BetaGeo or ParetoNBD
            A fitted transaction model (anything with ``expected_purchases`` and
            ``time_unit_``).
        frequency, recency, T, monetary : array-like
            The customers' calibration summary, as the models were fitted on.
        time_unit : str
            Unit of ``recency`` and ``T`` as the caller understands it. Must equal
            ``model.time_unit_``: a mismatch (e.g. data in weeks, model fitted on days) is the
            classic silent CLV bug, so it raises.
        horizon : int
            Number of ``period``s to add up (e.g. 12 with ``period="M"`` for one year).
        period : {"D", "W", "M", "Y"}
            Length of one discounting period.
        discount_rate : float
            Discount rate per ``discount_period`` (e.g. 0.01 a month); must be > -1.
        discount_period : str, optional
            Unit the discount rate is quoted in (defaults to ``period``). A rate quoted for
            another period is converted by compounding, e.g. 10% a year is
            ``1.1 ** (1/12) - 1`` a month.
        margin : float
            Profit margin applied to spend (1 = revenue). Negative margins are allowed.

        Returns
        -------
        numpy.ndarray or pandas.Series
            One value per customer, in the currency of ``monetary``.

        Raises
        ------
        ValueError
            On unknown or inconsistent units, a non-integer or non-positive horizon, or a
            discount rate <= -1.
        """
        self._check_fitted()
        model_unit = getattr(model, "time_unit_", None)
        if model_unit is None or not hasattr(model, "expected_purchases"):
            raise ValueError("model must be a fitted BetaGeo or ParetoNBD (with time_unit_)")
        unit = normalize_unit(time_unit, "time_unit")
        if unit != model_unit:
            raise ValueError(
                f"time_unit={time_unit!r} but the transaction model was fitted on data in "
                f"{model_unit!r}: recency and T must be in the model's unit. Refit, or convert "
                "the summary, so they agree"
            )
        period = normalize_unit(period, "period")
        rate_unit = normalize_unit(discount_period or period, "discount_period")
        if isinstance(horizon, bool) or not float(horizon).is_integer() or horizon <= 0:
            raise ValueError(f"horizon must be a positive whole number of periods, got {horizon}")
        if not np.isfinite(discount_rate) or discount_rate <= -1:
            raise ValueError(f"discount_rate must be > -1, got {discount_rate}")
        rate = (1 + discount_rate) ** unit_ratio(period, rate_unit) - 1
        step = unit_ratio(period, model_unit)
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        z = np.broadcast_to(as_float_array(monetary, "monetary"), x.shape)

        def per_row(x: np.ndarray, tx: np.ndarray, T_: np.ndarray, z: np.ndarray) -> np.ndarray:
            spend = np.asarray(self.expected_spend(x, z), dtype=float)
            total = np.zeros_like(x)
            previous = np.zeros_like(x)
            for k in range(1, int(horizon) + 1):
                cumulative = np.asarray(model.expected_purchases(k * step, x, tx, T_), float)
                total += (cumulative - previous) / (1 + rate) ** k
                previous = cumulative
            return total * spend * margin

        # identical customers (common in compressed or daily-resolution data) computed once
        return wrap_like(unique_map([x, tx, T_, z], per_row), frequency)
