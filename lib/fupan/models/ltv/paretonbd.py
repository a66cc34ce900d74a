"""Pareto/NBD: the model of Schmittlein, Morrison and Colombo (1987).

While active, a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``; her
unobserved lifetime is exponential with rate ``mu ~ Gamma(s, beta)``.

The likelihood follows P. S. Fader and B. G. S. Hardie (2005), "A note on deriving the
Pareto/NBD model and related expressions". Its Gaussian hypergeometric terms
``2F1(r+s+x, s+1; r+s+x+1; z)`` (alpha >= beta) and ``2F1(r+s+x, r+x; r+s+x+1; z)``
(alpha < beta) grow without bound as ``x`` grows or ``z -> 1``. Euler's transformation
``2F1(a, b; c; z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z)`` turns both into functions with first
parameter 1, bounded by ``1/(1-z)``, whose logarithms are then combined in log space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, gammaln, hyp2f1

from ._core import (
    ParametricLTVModel,
    check_rfm,
    compress_rows,
    log1mexp,
    resolve_time_unit,
    split_rfm_frame,
    to_model_time,
    unique_map,
    wrap_like,
    wsum,
)


def _log_tail(
    r: float, alpha: float, s: float, beta: float, x: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """``log[(r+s+x) * integral_t^inf (alpha+u)^-(r+x) (beta+u)^-(s+1) du]``.

    This is the log of the Fader-Hardie ``2F1(...) / (max(alpha, beta) + t)^(r+s+x)`` term,
    on the branch fixed by ``alpha >= beta`` or ``alpha < beta``, after Euler's
    transformation.
    """
    c = r + s + x + 1
    if alpha >= beta:
        z = (alpha - beta) / (alpha + t)
        f = hyp2f1(1.0, r + x, c, z)
        return np.log(f) - (r + x) * np.log(alpha + t) - s * np.log(beta + t)
    z = (beta - alpha) / (beta + t)
    f = hyp2f1(1.0, s + 1, c, z)
    return np.log(f) - (r + x - 1) * np.log(alpha + t) - (s + 1) * np.log(beta + t)


_Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> _Pairs:
    """Distinct ``(a, b)`` rows and the index mapping every row to its pair."""
    uniq, inv = np.unique(np.column_stack([a, b]), axis=0, return_inverse=True)
    return uniq[:, 0].copy(), uniq[:, 1].copy(), inv.reshape(-1)


def _parts(
    r: float,
    alpha: float,
    s: float,
    beta: float,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    pairs: tuple[_Pairs, _Pairs] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (log-likelihood, log of the 'alive at T' term, log of the 'died' term).

    ``pairs`` optionally gives the distinct ``(x, t_x)`` and ``(x, T)`` pairs so that the
    hypergeometric terms are evaluated once per pair rather than once per row.
    """
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    if pairs is None:
        hi = _log_tail(r, alpha, s, beta, x, tx)
        lo = _log_tail(r, alpha, s, beta, x, T)
    else:
        (ux1, ut1, inv1), (ux2, ut2, inv2) = pairs
        hi = _log_tail(r, alpha, s, beta, ux1, ut1)[inv1]
        lo = _log_tail(r, alpha, s, beta, ux2, ut2)[inv2]
    with np.errstate(divide="ignore"):
        log_a0 = hi + log1mexp(np.minimum(lo - hi, 0.0))
    died = np.log(s) - np.log(r + s + x) + log_a0
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return head + np.logaddexp(alive, died), alive, died


def pareto_nbd_loglik(params: dict[str, float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Per-customer Pareto/NBD log-likelihood (Fader & Hardie 2005 note, eq. 22)."""
    x, tx, T_, _ = check_rfm(frequency, recency, T)
    r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
    return _parts(r, alpha, s, beta, x, tx, T_)[0]


def _growth(s: float, u: np.ndarray) -> np.ndarray:
    """``[1 - (1+u)^-(s-1)] / (s-1)``, with its limit ``log(1+u)`` at ``s = 1``."""
    lu = np.log1p(u)
    if abs(s - 1) < 1e-10:
        return lu
    return -np.expm1(-(s - 1) * lu) / (s - 1)


class ParetoNBD(ParametricLTVModel):
    """Pareto/NBD model of repeat purchasing (Schmittlein, Morrison & Colombo 1987).

    Parameters
    ----------
    initial_params : dict, optional
        Starting values for ``r, alpha, s, beta``.
    max_iter : int
        Iteration cap for the optimiser.

    Attributes
    ----------
    params_, standard_errors_, summary_, log_likelihood_, n_obs_, n_unique_, time_unit_
        As for :class:`BetaGeo`; ``alpha`` and ``beta`` are in ``time_unit_``.

    Notes
    -----
    Unlike BG/NBD, a customer may die at any moment, so a customer with no repeat purchase
    has a probability of being alive below 1 that falls with her age ``T``.
    """

    _param_names = ("r", "alpha", "s", "beta")

    def fit(
        self,
        frequency: Any,
        recency: Any = None,
        T: Any = None,
        *,
        weights: Any = None,
        time_unit: str | None = None,
    ) -> ParetoNBD:
        """Fit by maximum likelihood; arguments as for :meth:`BetaGeo.fit`.

        Returns
        -------
        self
        """
        self.time_unit_ = resolve_time_unit(time_unit, frequency)
        frequency, recency, T, weights = split_rfm_frame(frequency, recency, T, weights)
        x, tx, T_, w = check_rfm(frequency, recency, T, weights)
        (x, tx, T_), w = compress_rows(x, tx, T_, weights=w)
        self.n_unique_ = int(x.size)
        pairs = (_distinct_pairs(x, tx), _distinct_pairs(x, T_))

        def negll(theta: np.ndarray) -> float:
            r, alpha, s, beta = np.exp(theta)
            with np.errstate(all="ignore"):
                return -float(wsum(w, _parts(r, alpha, s, beta, x, tx, T_, pairs)[0]))

        mean_x = float(wsum(w, x) / w.sum())
        mean_T = float(wsum(w, T_) / w.sum())
        guess = {"r": 1.0, "alpha": mean_T / max(mean_x, 0.05), "s": 1.0, "beta": mean_T}
        self._fit_params(negll, self._start(guess), float(w.sum()))
        return self

    def _log_odds_dead(self, x: np.ndarray, tx: np.ndarray, T_: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = self._p()
        _, alive, died = _parts(r, alpha, s, beta, x, tx, T_)
        return died - alive

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> Any:
        """P(alive at T | x, t_x, T) (Fader & Hardie 2005 note, eq. 18); below 1 even for
        customers with no repeat purchase."""
        self._check_fitted()
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        out = unique_map([x, tx, T_], lambda *c: expit(-self._log_odds_dead(*c)))
        return wrap_like(out, frequency)

    def expected_purchases_new(self, t: Any) -> Any:
        """Expected purchases in ``(0, t]`` for a new customer (note, eq. 19)."""
        r, alpha, s, beta = self._p()
        tt = np.asarray(to_model_time(t, self.time_unit_), dtype=float)
        return wrap_like(r * beta / alpha * _growth(s, tt / beta), t)

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> Any:
        """Expected purchases in ``(T, T+t]`` given the history (note, eq. 21)."""
        r, alpha, s, beta = self._p()
        x, tx, T_, _ = check_rfm(frequency, recency, T)
        tt = np.broadcast_to(np.asarray(to_model_time(t, self.time_unit_), float), x.shape)

        def fn(x: np.ndarray, tx: np.ndarray, T_: np.ndarray, tt: np.ndarray) -> np.ndarray:
            p_alive = expit(-self._log_odds_dead(x, tx, T_))
            rate = (r + x) * (beta + T_) / (alpha + T_)
            return rate * _growth(s, tt / (beta + T_)) * p_alive

        return wrap_like(unique_map([x, tx, T_, tt], fn), frequency)
