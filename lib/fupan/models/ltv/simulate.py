"""Simulators that draw data from the LTV models' own generative stories.

Used by the parameter-recovery tests and by benchmarks. Every function takes a
``random_state`` (seed or :class:`numpy.random.Generator`) and is vectorised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _rng(random_state: Any) -> np.random.Generator:
    return np.random.default_rng(random_state)


def _ages(n: int, T: Any) -> np.ndarray:
    T_ = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    if (T_ <= 0).any():
        raise ValueError("T must be > 0")
    return T_


def _last_of(rng: np.random.Generator, x: np.ndarray, k: np.ndarray, span: np.ndarray):
    """Time of the x-th of k uniform arrivals on (0, span] (0 where x = 0)."""
    out = np.zeros(x.size)
    pos = x > 0
    out[pos] = span[pos] * rng.beta(x[pos], k[pos] - x[pos] + 1)
    return out


def simulate_bgnbd(
    n: int,
    params: dict[str, float],
    T: Any,
    random_state: Any = None,
    holdout: float | None = None,
) -> pd.DataFrame:
    """Draw ``n`` customers from BG/NBD.

    Parameters
    ----------
    n : int
        Number of customers.
    params : dict
        ``r, alpha, a, b``.
    T : float or array-like
        Age of each customer (time since first purchase) at the end of calibration.
    random_state : int or numpy.random.Generator, optional
    holdout : float, optional
        If given, also draw ``frequency_holdout``: purchases in ``(T, T + holdout]``.

    Returns
    -------
    pandas.DataFrame
        ``frequency, recency, T``, ``alive`` (the latent state at ``T``, for checking
        ``probability_alive``), plus ``frequency_holdout, duration_holdout`` if asked.
    """
    rng = _rng(random_state)
    T_ = _ages(n, T)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    # purchases made before dropping out: the customer leaves right after the N-th one
    n_life = rng.geometric(np.clip(p, 1e-300, 1.0)).astype(float)
    k_cal = rng.poisson(lam * T_).astype(float)
    x = np.minimum(k_cal, n_life)
    out = pd.DataFrame({"frequency": x, "recency": _last_of(rng, x, k_cal, T_), "T": T_})
    out["alive"] = n_life > k_cal
    if holdout is not None:
        k_hold = rng.poisson(lam * holdout).astype(float)
        out["frequency_holdout"] = np.minimum(k_cal + k_hold, n_life) - x
        out["duration_holdout"] = float(holdout)
    return out


def simulate_pareto_nbd(
    n: int,
    params: dict[str, float],
    T: Any,
    random_state: Any = None,
    holdout: float | None = None,
) -> pd.DataFrame:
    """Draw ``n`` customers from Pareto/NBD (``params``: ``r, alpha, s, beta``).

    Arguments and result as for :func:`simulate_bgnbd`.
    """
    rng = _rng(random_state)
    T_ = _ages(n, T)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
    life = rng.exponential(1.0 / mu)
    active = np.minimum(life, T_)
    x = rng.poisson(lam * active).astype(float)
    out = pd.DataFrame({"frequency": x, "recency": _last_of(rng, x, x, active), "T": T_})
    out["alive"] = life > T_
    if holdout is not None:
        span = np.clip(life - T_, 0.0, holdout)
        out["frequency_holdout"] = rng.poisson(lam * span).astype(float)
        out["duration_holdout"] = float(holdout)
    return out


def simulate_gamma_gamma(
    n: int, params: dict[str, float], frequency: Any, random_state: Any = None
) -> pd.DataFrame:
    """Draw mean repeat spend for ``n`` customers from Gamma-Gamma (``p, q, v``).

    ``frequency`` (a number or ``n`` numbers) is each customer's count of repeat
    purchases; ``monetary`` is the mean of that many transaction values (0 if none).
    """
    rng = _rng(random_state)
    x = np.broadcast_to(np.asarray(frequency, dtype=float), (n,)).copy()
    nu = rng.gamma(params["q"], 1.0 / params["v"], n)
    pos = x > 0
    monetary = np.zeros(n)
    monetary[pos] = rng.gamma(params["p"] * x[pos], 1.0 / nu[pos]) / x[pos]
    return pd.DataFrame({"frequency": x, "monetary": monetary})


def simulate_sbg(
    n: int, params: dict[str, float], periods: int, random_state: Any = None
) -> np.ndarray:
    """Survivors at the end of periods ``1..periods`` of a cohort of ``n`` (``alpha, beta``)."""
    rng = _rng(random_state)
    theta = rng.beta(params["alpha"], params["beta"], n)
    lifetime = rng.geometric(np.clip(theta, 1e-300, 1.0))  # last period active
    t = np.arange(1, int(periods) + 1)
    counts = np.bincount(np.minimum(lifetime, periods + 1), minlength=periods + 2)
    alive_after = n - np.cumsum(counts)[1 : periods + 1]
    return np.asarray(alive_after[: t.size], dtype=int)
