"""BG/NBD: the beta-geometric / negative binomial model of Fader, Hardie and Lee (2005).

While active, a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``; after each
repeat purchase she becomes inactive with probability ``p ~ Beta(a, b)``.

Reference: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "'Counting your customers' the
easy way: an alternative to the Pareto/NBD model", Marketing Science 24(2), 275-284.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, hyp1f1, hyp2f1, polygamma

from ._core import (
    ParametricLTVModel,
    check_rfm,
    dot,
    group_codes,
    maybe_compress,
    resolve_time_unit,
    split_rfm_frame,
    to_model_time,
    unique_map,
    unique_rows,
    warm_start,
    wrap_like,
    wsum,
)


def bgnbd_loglik(params: dict[str, float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6), computed in log space."""
    x, tx, T_, _ = check_rfm(frequency, recency, T)
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    return _loglik_parts(r, alpha, a, b, x, tx, T_)[0]


def _loglik_parts(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood per row plus the two log-terms of the mixture (A2 and A3)."""
    pos = x > 0
    base = betaln(a, b)
    a2 = betaln(a, b + x) - base - (r + x) * np.log(alpha + T)
    a3 = np.full_like(x, -np.inf)
    xp = x[pos]
    a3[pos] = betaln(a + 1, b + xp - 1) - base - (r + xp) * np.log(alpha + tx[pos])
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + np.logaddexp(a2, a3)
    return ll, a2, a3


#: Above this ``r`` (with ``alpha`` as large: a boundary fit where purchase rates hardly
#: vary between customers) the bracket uses its ``r -> infinity`` limit: ``2F1`` with a first
#: parameter near ``-r`` cancels catastrophically there (scipy returns NaN or garbage: a
#: 30-customer fit with r = 1e8 once valued new customers at millions). The limit's
#: relative error is about 1e-5 at r = 1e4 and falls as 1/r (tested against the exact form).
R_LIMIT = 1e4


def _cond_bracket_poisson(
    a: float, b: float, r: float, x: np.ndarray, scale: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """:func:`_cond_bracket` as ``r, alpha -> infinity`` at a fixed rate ``(r + x) / scale``.

    ``(1 - z)^A 2F1(A, B; C; z)`` with ``A = r + x`` tends to ``1F1(C - B; C; -w)`` (Kummer),
    ``w = A t / scale`` the expected purchases at the customer's rate.
    """
    w = (r + x) * t / scale
    return (1 - hyp1f1(a - 1, a + b + x - 1, -w)) / (a - 1)


def _cond_bracket(
    a: float, b: float, r: float, x: np.ndarray, scale: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """``[1 - (scale/(scale+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(scale+t))] / (a-1)``.

    Evaluated after Euler's transformation, ``(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``,
    whose first two parameters do not grow with ``x``: stable for large frequencies.
    """
    if abs(a - 1.0) < 1e-7:  # removable singularity at a = 1: evaluate just beside it
        a = 1.0 + 1e-7
    if r > R_LIMIT:
        return _cond_bracket_poisson(a, b, r, x, scale, t)
    z = t / (scale + t)
    log1mz = np.log(scale) - np.log(scale + t)
    f = hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    u = (a - 1) * log1mz
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        stable = -np.expm1(u + np.log(f))
        out = np.where(f > 0, stable, 1 - np.exp(u) * f) / (a - 1)
    bad = ~np.isfinite(out)
    if bad.any():
        # Large a and b (drop-out nearly the same for everyone, common once a is in the
        # thousands): 2F1 overflows. Its terms then tend to ((b+x)/(a+b+x-1))^n, so the
        # bracket tends to [1 - (scale / (scale + p t))^(r+x)] / (a-1), p = (a-1)/(a+b+x-1):
        # the fixed-p limit of BG/NBD, relative error O(1/a + x/b).
        xb, sb, tb = (np.broadcast_to(v, out.shape)[bad] for v in (x, scale, t))
        p = (a - 1) / (a + b + xb - 1)
        out = np.array(out, dtype=float)
        out[bad] = -np.expm1((r + xb) * (np.log(sb) - np.log(sb + p * tb))) / (a - 1)
    return out


def _negll_hess(
    x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray
) -> Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]:
    """Negative log-likelihood with its exact gradient and Hessian in log-parameters.

    Written for speed on millions of rows: per row, ``ll = g(x) + r log alpha + B(x)
    - (r+x) log(alpha+T) + softplus(d)`` with ``d = log(a/(b+x-1)) + (r+x) log((alpha+T) /
    (alpha+t_x))`` (FHL 2005, eq. 6 rearranged); everything that depends on ``x`` alone is
    evaluated once per distinct ``x``. Customers with ``x = 0`` contribute only
    ``r log(alpha / (alpha+T))``.
    """
    zero = x == 0
    T0, w0 = T[zero], w[zero]
    W0sum = float(w0.sum())
    xp, txp, Tp, wp = x[~zero], tx[~zero], T[~zero], w[~zero]
    ux, ix = group_codes(xp)
    Wx = np.bincount(ix, weights=wp, minlength=ux.size)
    Wpos = float(Wx.sum())
    wx = wp * xp

    def seg(values: np.ndarray) -> np.ndarray:
        return np.bincount(ix, weights=values, minlength=ux.size)

    def fgh(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        la = math.log(alpha)
        g = np.zeros(4)
        H = np.zeros((4, 4))
        # customers without repeat purchases
        l0 = np.log(alpha + T0)
        u0 = 1.0 / (alpha + T0)
        wu0 = dot(w0, u0)
        ll = W0sum * r * la - r * dot(w0, l0)
        g[0] = W0sum * la - dot(w0, l0)
        g[1] = W0sum * r / alpha - r * wu0
        H[0, 1] = W0sum / alpha - wu0
        H[1, 1] = -W0sum * r / alpha**2 + r * dot(w0, u0 * u0)
        if xp.size:
            # per distinct x
            bx1 = b + ux - 1
            gl = gammaln(r + ux) - gammaln(r)
            B2 = betaln(a, b + ux) - betaln(a, b)
            psi_ab, psi_abx = digamma(a + b), digamma(a + b + ux)
            tri_ab, tri_abx = polygamma(1, a + b), polygamma(1, a + b + ux)
            cx = math.log(a) - np.log(bx1)
            # per row
            uT = 1.0 / (alpha + Tp)
            utx = 1.0 / (alpha + txp)
            LT = np.log(alpha + Tp)
            D = np.log(utx * (alpha + Tp))
            rx = r + xp
            d = cx[ix] + rx * D
            # logistic and softplus from one exp: softplus(d) = d - log(expit(d)); d is
            # clipped where expit underflows (softplus is then 0 to double precision)
            np.maximum(d, -700.0, out=d)
            s_ = 1.0 / (1.0 + np.exp(-d))
            sp = d - np.log(s_)
            ws = wp * s_
            wv = ws * (1.0 - s_)
            E = uT - utx
            G = rx * E
            wvD, wvG = wv * D, wv * G
            S, V, VD, VG = seg(ws), seg(wv), seg(wvD), seg(wvG)
            wLT = dot(wp, LT)
            wrxuT = dot(wp * rx, uT)
            ll += dot(Wx, gl + B2) + Wpos * r * la - r * wLT - dot(wx, LT) + dot(wp, sp)
            g[0] += dot(Wx, digamma(r + ux) - digamma(r)) + Wpos * la - wLT + dot(ws, D)
            g[1] += Wpos * r / alpha - wrxuT + dot(ws, G)
            g[2] += dot(Wx, psi_ab - psi_abx) + float(S.sum()) / a
            B2_b = digamma(b + ux) - psi_abx - digamma(b) + psi_ab
            g[3] += dot(Wx, B2_b) - dot(S, 1.0 / bx1)
            H[0, 0] += dot(Wx, polygamma(1, r + ux) - polygamma(1, r)) + dot(wvD, D)
            H[0, 1] += Wpos / alpha - dot(wp, uT) + dot(ws, E) + dot(wvD, G)
            # d2/dalpha2 of -(r+x) log(alpha+T) + s d: (r+x) uT^2 - s (r+x)(uT^2 - utx^2)
            H[1, 1] += (
                -Wpos * r / alpha**2 + dot(wp * rx, uT * uT) - dot(ws, G * (uT + utx)) + dot(wvG, G)
            )
            H[0, 2] = float(VD.sum()) / a
            H[0, 3] = -dot(VD, 1.0 / bx1)
            H[1, 2] = float(VG.sum()) / a
            H[1, 3] = -dot(VG, 1.0 / bx1)
            B2_ab = tri_ab - tri_abx
            H[2, 2] = dot(Wx, B2_ab) + (float(V.sum()) - float(S.sum())) / a**2
            H[2, 3] = dot(Wx, B2_ab) - dot(V, 1.0 / bx1) / a
            B2_bb = polygamma(1, b + ux) - tri_abx - polygamma(1, b) + tri_ab
            H[3, 3] = dot(Wx, B2_bb) + dot(S + V, 1.0 / bx1**2)
        H = np.triu(H) + np.triu(H, 1).T
        p = np.array([r, alpha, a, b])
        # to log-parameters: d/dtheta = p d/dp; d2/dtheta2 = P H P + diag(p g)
        g_t = p * g
        H_t = H * np.outer(p, p) + np.diag(g_t)
        return -ll, -g_t, -H_t

    return fgh


class BetaGeo(ParametricLTVModel):
    """BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    initial_params : dict, optional
        Starting values for ``r, alpha, a, b``; a data-based guess by default.
    max_iter : int
        Iteration cap for the optimiser.

    Attributes
    ----------
    params_ : dict
        Maximum-likelihood estimates of ``r, alpha, a, b``. ``alpha`` is in the data's
        time unit (``time_unit_``).
    standard_errors_ : dict
        Asymptotic standard errors (inverse Hessian, delta method).
    summary_ : pandas.DataFrame
        ``param, estimate, se, ci_low, ci_high`` (95% Wald interval on the log scale).
    log_likelihood_ : float
        Maximised log-likelihood (summed over customers, weights included).
    n_obs_ : float
        Number of customers (sum of weights).
    n_unique_ : int
        Distinct ``(frequency, recency, T)`` rows the likelihood was evaluated on.
    time_unit_ : str
        Unit of recency, T and every ``t`` passed to the predictions.

    Notes
    -----
    By the model's definition a customer can only drop out right after a repeat purchase,
    so ``probability_alive`` is exactly 1 for customers with frequency 0, however long ago
    they bought. That is a property of BG/NBD, not of the data; use :class:`ParetoNBD`
    when that matters (its probability for such customers is below 1).

    Examples
    --------
    >>> model = BetaGeo().fit(summary)  # doctest: +SKIP
    >>> model.expected_purchases(39, 2, 30.43, 38.86)  # doctest: +SKIP
    """

    _param_names = ("r", "alpha", "a", "b")

    def fit(
        self,
        frequency: Any,
        recency: Any = None,
        T: Any = None,
        *,
        weights: Any = None,
        time_unit: str | None = None,
    ) -> BetaGeo:
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency : array-like or DataFrame
            Repeat purchases per customer, or a summary DataFrame with columns
            ``frequency, recency, T`` (its ``attrs['time_unit']`` is used).
        recency, T : array-like
            Time of the last purchase and age of the customer, both measured from the
            first purchase, in ``time_unit``.
        weights : array-like or str, optional
            Number of customers each row stands for (compressed data), or a column name.
        time_unit : {"D", "W", "M", "Y"}
            Unit of ``recency`` and ``T``. Required unless the DataFrame records it.

        Returns
        -------
        self
        """
        self.time_unit_ = resolve_time_unit(time_unit, frequency)
        frequency, recency, T, weights = split_rfm_frame(frequency, recency, T, weights)
        x, tx, T_, w = check_rfm(frequency, recency, T, weights)
        (x, tx, T_), w = maybe_compress(x, tx, T_, weights=w)
        self.n_unique_ = int(x.size)
        ux, ix = np.unique(x, return_inverse=True)
        pos_u = ux > 0

        def negll_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            r, alpha, a, b = np.exp(theta)
            base = betaln(a, b)
            gl = gammaln(r + ux) - gammaln(r)
            b2 = betaln(a, b + ux) - base
            b3 = np.full_like(ux, -np.inf)
            b3[pos_u] = betaln(a + 1, b + ux[pos_u] - 1) - base
            la_T = np.log(alpha + T_)
            la_tx = np.log(alpha + tx)
            rx = r + x
            a2 = b2[ix] - rx * la_T
            a3 = b3[ix] - rx * la_tx
            lse = np.logaddexp(a2, a3)
            ll = gl[ix] + r * np.log(alpha) + lse
            w2 = np.exp(a2 - lse)
            w3 = np.exp(a3 - lse)
            # derivatives with respect to r, alpha, a, b
            ps_r = (digamma(r + ux) - digamma(r))[ix]
            d_r = ps_r + np.log(alpha) - w2 * la_T - w3 * la_tx
            d_alpha = r / alpha - rx * (w2 / (alpha + T_) + w3 / (alpha + tx))
            psi_abx = digamma(a + b + ux)
            da2 = digamma(a) - psi_abx
            da3 = digamma(a + 1) - psi_abx
            db2 = digamma(b + ux) - psi_abx
            db3 = np.zeros_like(ux)
            db3[pos_u] = digamma(b + ux[pos_u] - 1) - psi_abx[pos_u]
            dab = digamma(a + b)
            d_a = w2 * da2[ix] + w3 * da3[ix] - (digamma(a) - dab)
            d_b = w2 * db2[ix] + w3 * db3[ix] - (digamma(b) - dab)
            grad = np.array(
                [wsum(w, d_r) * r, wsum(w, d_alpha) * alpha, wsum(w, d_a) * a, wsum(w, d_b) * b]
            )
            return -float(wsum(w, ll)), -grad

        def negll(theta: np.ndarray) -> float:
            r, alpha, a, b = np.exp(theta)
            return -float(wsum(w, _loglik_parts(r, alpha, a, b, x, tx, T_)[0]))

        mean_x = float(wsum(w, x) / w.sum())
        mean_T = float(wsum(w, T_) / w.sum())
        guess = {"r": 1.0, "alpha": mean_T / max(mean_x, 0.05), "a": 1.0, "b": 2.0}
        theta0 = self._start(guess)
        if not self.initial_params:
            theta0 = warm_start(_negll_hess, (x, tx, T_), w, theta0)
        self._fit_params(negll, theta0, float(w.sum()), negll_grad, _negll_hess(x, tx, T_, w))
        return self

    # -- predictions ---------------------------------------------------------------------
    def expected_purchases_new(self, t: Any) -> Any:
        """Expected repeat purchases in ``(0, t]`` for a customer who has just made a first
        purchase (FHL 2005, eq. 7). ``t`` in ``time_unit_`` or a string such as ``"12M"``.
        """
        r, alpha, a, b = self._p()
        tt = np.asarray(to_model_time(t, self.time_unit_), dtype=float)
        out = (a + b - 1) * _cond_bracket(a, b, r, np.zeros_like(tt), np.full_like(tt, alpha), tt)
        return wrap_like(out, t)

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> Any:
        """Expected purchases in the next ``t`` periods given the customer's history
        (FHL 2005, eq. 10). Customers with frequency 0 are handled by the same formula.
        """
        r, alpha, a, b = self._p()
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        tt = np.broadcast_to(np.asarray(to_model_time(t, self.time_unit_), float), x.shape)

        def fn(x: np.ndarray, tx: np.ndarray, T_: np.ndarray, tt: np.ndarray) -> np.ndarray:
            num = (a + b + x - 1) * _cond_bracket(a, b, r, x, alpha + T_, tt)
            return num * self._alive(x, tx, T_)

        return wrap_like(unique_map([x, tx, T_, tt], fn), frequency)

    def expected_purchases_grid(self, t: Any, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """:meth:`expected_purchases` of every customer at every horizon in ``t``.

        Returns an array of shape ``(customers, len(t))`` whose element ``[i, j]`` equals
        ``expected_purchases(t[j], frequency[i], recency[i], T[i])``. The hypergeometric
        bracket depends on ``(frequency, T, t)`` only and P(alive) on the customer alone,
        so each is evaluated once per distinct value instead of once per customer and
        horizon (many customers share a frequency and an age). ``t`` in ``time_unit_``.
        """
        r, alpha, a, b = self._p()
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        tt = np.asarray(to_model_time(t, self.time_unit_), dtype=float).ravel()
        k = tt.size
        if x.size == 0 or k == 0:
            return np.zeros((x.size, k))
        first, back = unique_rows(x, T_)
        xs = np.repeat(x[first], k)
        num = (a + b + xs - 1) * _cond_bracket(
            a, b, r, xs, alpha + np.repeat(T_[first], k), np.tile(tt, first.size)
        )
        return num.reshape(-1, k)[back] * self._alive(x, tx, T_)[:, None]

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> Any:
        """P(customer still active | history) (FHL 2005 appendix). Exactly 1 for customers
        with frequency 0, by the model's assumption that drop-out follows a purchase.
        """
        self._check_fitted()
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        return wrap_like(self._alive(x, tx, T_), frequency)

    def _alive(self, x: np.ndarray, tx: np.ndarray, T_: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self._p()
        pos = x > 0
        log_odds = np.full_like(x, -np.inf)
        xp = x[pos]
        log_odds[pos] = (
            np.log(a)
            - np.log(b + xp - 1)
            + (r + xp) * (np.log(alpha + T_[pos]) - np.log(alpha + tx[pos]))
        )
        return expit(-log_odds)
