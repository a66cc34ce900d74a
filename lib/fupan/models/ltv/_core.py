"""Shared machinery for the LTV estimators: time units, input checks, maximum likelihood.

Every model is fitted by maximising its log-likelihood over the logarithm of its
parameters (all parameters are positive), first with L-BFGS-B and, if that does not
converge, Nelder-Mead followed by another L-BFGS-B polish. Standard errors come from the
inverse of a central-difference Hessian of the negative log-likelihood in log-parameter
space, carried to the parameter scale by the delta method.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

#: Length of each supported time unit in days. A month is 1/12 of a Julian year.
UNIT_DAYS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25}

_UNIT_ALIASES: dict[str, str] = {
    "d": "D",
    "day": "D",
    "days": "D",
    "w": "W",
    "week": "W",
    "weeks": "W",
    "m": "M",
    "month": "M",
    "months": "M",
    "y": "Y",
    "year": "Y",
    "years": "Y",
}

#: Largest acceptable gradient component of the mean negative log-likelihood at the optimum.
GRAD_TOL = 1e-6

#: z quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def normalize_unit(unit: Any, name: str = "time_unit") -> str:
    """Return the canonical one-letter code ("D", "W", "M" or "Y") of a time unit.

    Raises
    ------
    ValueError
        If ``unit`` is not a recognised unit.
    """
    if isinstance(unit, str):
        key = unit.strip()
        if key in UNIT_DAYS:
            return key
        if key.lower() in _UNIT_ALIASES:
            return _UNIT_ALIASES[key.lower()]
    raise ValueError(
        f"{name}={unit!r} is not a time unit; use one of 'D' (days), 'W' (weeks), "
        "'M' (months of 365.25/12 days) or 'Y' (years of 365.25 days)"
    )


def unit_ratio(from_unit: str, to_unit: str) -> float:
    """How many ``to_unit`` are in one ``from_unit`` (e.g. ``unit_ratio("W", "D") == 7``)."""
    return UNIT_DAYS[normalize_unit(from_unit)] / UNIT_DAYS[normalize_unit(to_unit)]


def to_model_time(t: Any, model_unit: str, name: str = "t") -> np.ndarray | float:
    """Convert a duration to ``model_unit``.

    ``t`` is either a number (or array) already in ``model_unit``, a string such as
    ``"12M"``, ``"39W"`` or ``"90D"``, or a ``(value, unit)`` tuple.
    """
    if isinstance(t, str):
        text = t.strip()
        i = len(text)
        while i > 0 and text[i - 1].isalpha():
            i -= 1
        if i == 0 or i == len(text):
            raise ValueError(f"{name}={t!r}: expected a number followed by a unit, e.g. '12M'")
        try:
            value = float(text[:i])
        except ValueError:
            raise ValueError(f"{name}={t!r}: cannot read the number {text[:i]!r}") from None
        return value * unit_ratio(normalize_unit(text[i:], name), model_unit)
    if isinstance(t, tuple) and len(t) == 2 and isinstance(t[1], str):
        return np.asarray(t[0], dtype=float) * unit_ratio(normalize_unit(t[1], name), model_unit)
    return np.asarray(t, dtype=float) if np.ndim(t) else float(t)


def as_float_array(values: Any, name: str) -> np.ndarray:
    """A 1-D float array; raise a clear error on non-numeric or non-finite values."""
    if isinstance(values, pd.Series | pd.Index):
        # the values behind it: numpy's probing of a Series for array attributes makes pandas
        # look the names up among the index labels, building a hash table of every customer
        # id (a quarter of a second per call at a million customers)
        values = values.array
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric") from None
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} missing or infinite values ({where(bad)})")
    return arr


def where(mask: np.ndarray, labels: Any = None, limit: int = 10) -> str:
    """Describe the rows where ``mask`` holds: ``"rows 3, 17, ..."`` (labels if given)."""
    idx = np.flatnonzero(mask)
    if labels is not None:
        shown = [repr(v) for v in np.asarray(labels)[idx[:limit]]]
        head = "customers " + ", ".join(shown)
    else:
        head = "rows " + ", ".join(str(i) for i in idx[:limit])
    return head + (", ..." if idx.size > limit else "")


def check_weights(weights: Any, n: int) -> np.ndarray:
    """Return weights as floats (ones if ``None``); they must be finite and non-negative."""
    if weights is None:
        return np.ones(n)
    w = as_float_array(weights, "weights")
    if w.size != n:
        raise ValueError(f"weights has {w.size} values but the data has {n} rows")
    if (w < 0).any():
        raise ValueError(
            f"weights must be >= 0; {int((w < 0).sum())} are negative ({where(w < 0)})"
        )
    if w.sum() <= 0:
        raise ValueError("weights sum to zero: nothing to fit")
    return w


def check_rfm(
    frequency: Any, recency: Any, T: Any, weights: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate frequency / recency / T (and weights) and return float arrays."""
    x = as_float_array(frequency, "frequency")
    tx = as_float_array(recency, "recency")
    T_ = as_float_array(T, "T")
    x, tx, T_ = np.broadcast_arrays(x, tx, T_)
    labels = frequency.index if isinstance(frequency, pd.Series) else None
    problems = [
        ((x < 0) | (x != np.round(x)), "frequency must be a whole number >= 0"),
        (tx < 0, "recency must be >= 0"),
        (T_ <= 0, "T must be > 0"),
        (tx > T_ * (1 + 1e-12), "recency must not exceed T"),
        ((x == 0) & (tx != 0), "recency must be 0 when frequency is 0"),
    ]
    for mask, message in problems:
        if mask.any():
            raise ValueError(f"{message}: {int(mask.sum())} rows break it ({where(mask, labels)})")
    w = check_weights(weights, x.size)
    return x.astype(float), np.minimum(tx, T_).astype(float), T_.astype(float), w


def compress_rows(*columns: np.ndarray, weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical rows, summing their weights (zero-weight rows are dropped).

    Rows come out in order of first appearance. Hashing with :func:`unique_rows` takes
    about half the time of a pandas group-by, and it avoids the group-by's first-call cost
    (~5 ms, about a third of what a 10k-customer fit spent on fixed costs).
    """
    keep = np.asarray(weights) > 0
    cols = [np.asarray(c, dtype=float)[keep] for c in columns]
    w = np.asarray(weights, dtype=float)[keep]
    first, key = unique_rows(*cols)
    return [c[first] for c in cols], np.bincount(key, weights=w, minlength=first.size)


def dot(u: np.ndarray, v: np.ndarray) -> float:
    """``sum(u * v)`` by einsum: a BLAS dot product (``@``) may start threads that stall
    badly on a busy machine, and likelihood sums run many times per fit."""
    return float(np.einsum("i,i->", u, v))


def group_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and each row's index into them, like ``np.unique(...,
    return_inverse=True)``, without sorting when the values are small whole numbers
    (purchase counts): a counting pass instead of an O(n log n) sort."""
    if values.size and values.min() >= 0 and values.max() <= 4 * values.size + 1024:
        ints = values.astype(np.int64)
        if np.array_equal(ints, values):
            present = np.bincount(ints) > 0
            remap = np.cumsum(present) - 1
            return np.flatnonzero(present).astype(float), remap[ints]
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, inverse.reshape(-1)


#: Rows above which a fit first runs on a sample to find a starting point.
WARM_START_ROWS = 30_000


def warm_start(
    make_fgh: Callable[..., Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]],
    columns: Sequence[np.ndarray],
    weights: np.ndarray,
    theta0: np.ndarray,
    rows: int = 10_000,
) -> np.ndarray:
    """A starting point from a fit on a fixed pseudo-random sample of rows.

    On large data almost all of Newton's iterations are spent walking from the generic
    start to the optimum; doing that walk on a sample leaves two or three full-data
    iterations. The sample only chooses where the full fit starts, so the estimates are
    the full-data maximum either way (same seed, same start, same result).
    """
    n = weights.size
    if n <= WARM_START_ROWS:
        return theta0
    idx = np.sort(np.random.default_rng(0).choice(n, rows, replace=False))
    w = weights[idx]
    res = newton_minimize(make_fgh(*(c[idx] for c in columns), w), theta0, float(w.sum()))
    return np.asarray(res.x, dtype=float) if res.converged else theta0


def mostly_distinct(columns: Sequence[np.ndarray], sample: int = 20_000) -> bool:
    """Whether the rows of ``columns`` are nearly all different, judged on a fixed
    pseudo-random sample: True when fewer than a tenth of the sampled rows repeat.

    Collapsing identical rows costs a hash group-by over every row; it pays when times are
    whole periods (many customers share a row) and is wasted when they are fractional.
    """
    n = columns[0].size
    if n <= sample:
        return False
    idx = np.random.default_rng(0).choice(n, sample, replace=False)
    first, _ = unique_rows(*(np.asarray(c)[idx] for c in columns))
    return bool(first.size > 0.9 * sample)


def maybe_compress(
    *columns: np.ndarray, weights: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical rows when that pays (:func:`mostly_distinct`), else only drop
    zero-weight rows. Either way the likelihood is the same."""
    if mostly_distinct(columns):
        keep = weights > 0
        if keep.all():
            return list(columns), weights
        return [c[keep] for c in columns], weights[keep]
    return compress_rows(*columns, weights=weights)


def unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of equal-length 1-D columns, found by hashing.

    Returns ``(first, inverse)``: the position of each distinct row's first occurrence, in
    order of appearance, and each row's distinct-row number, so that
    ``column[first][inverse]`` is ``column`` for every column. NaN equals NaN. Hashing each
    column and then the pairs of codes is several times faster than ``np.unique(...,
    axis=0)``, which sorts the rows as byte strings.
    """
    key: np.ndarray | None = None
    for col in columns:
        codes, uniq = pd.factorize(np.asarray(col), use_na_sentinel=False)
        codes = codes.astype(np.int64)
        key = codes if key is None else pd.factorize(key * len(uniq) + codes)[0].astype(np.int64)
    if key is None:
        raise ValueError("unique_rows needs at least one column")
    first = np.unique(key, return_index=True)[1]
    return first, key


def unique_map(
    columns: Sequence[np.ndarray], fn: Callable[..., np.ndarray | tuple[np.ndarray, ...]]
) -> Any:
    """Evaluate ``fn`` on the unique rows of ``columns`` and broadcast back to all rows
    (on every row directly when nearly all rows differ: finding them would cost more)."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    if mostly_distinct(cols):
        return fn(*cols)
    first, codes = unique_rows(*cols)
    out = fn(*(c[first] for c in cols))
    if isinstance(out, tuple):
        return tuple(o[codes] for o in out)
    return out[codes]


def wrap_like(values: np.ndarray, template: Any) -> Any:
    """Return a Series with ``template``'s index if it is a Series, a float if scalar input."""
    if isinstance(template, pd.Series) and np.ndim(values) == 1 and len(values) == len(template):
        return pd.Series(values, index=template.index)
    if np.ndim(template) == 0 and np.size(values) == 1:
        return float(np.asarray(values).reshape(-1)[0])
    return values


def _central_grad(fun: Callable[[np.ndarray], float], theta: np.ndarray, h: float) -> np.ndarray:
    g = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return g


def numerical_hessian(
    fun: Callable[[np.ndarray], float],
    theta: np.ndarray,
    grad: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Central-difference Hessian of ``fun`` at ``theta`` (from ``grad`` if available)."""
    k = theta.size
    H = np.empty((k, k))
    if grad is not None:
        h = 1e-5
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            H[i] = (grad(theta + e) - grad(theta - e)) / (2 * h)
        return (H + H.T) / 2
    h = 1e-4
    f0 = fun(theta)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h
        H[i, i] = (fun(theta + ei) - 2 * f0 + fun(theta - ei)) / h**2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h
            H[i, j] = H[j, i] = (
                fun(theta + ei + ej)
                - fun(theta + ei - ej)
                - fun(theta - ei + ej)
                + fun(theta - ei - ej)
            ) / (4 * h**2)
    return H


def maximize_loglik(
    negll: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    scale: float,
    negll_grad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    max_iter: int = 1000,
    bound: float = 18.0,
) -> optimize.OptimizeResult:
    """Minimise ``negll`` (a total over customers) over log-parameters ``theta``.

    The objective is divided by ``scale`` (the number of customers) so tolerances do not
    depend on the data size. Uses the analytic gradient if ``negll_grad`` is given,
    central differences otherwise.
    """

    def f(th: np.ndarray) -> float:
        val = negll(th) / scale
        return val if np.isfinite(val) else 1e100

    if negll_grad is not None:

        def fg(th: np.ndarray) -> tuple[float, np.ndarray]:
            val, g = negll_grad(th)
            if not np.isfinite(val) or not np.all(np.isfinite(g)):
                return 1e100, np.zeros_like(th)
            return val / scale, g / scale

    else:

        def fg(th: np.ndarray) -> tuple[float, np.ndarray]:
            return f(th), _central_grad(f, th, 1e-6)

    bounds = [(-bound, bound)] * theta0.size
    opts = {"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9}

    def lbfgsb(start: np.ndarray) -> optimize.OptimizeResult:
        res = optimize.minimize(fg, start, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        res.grad_max = float(np.max(np.abs(res.jac))) if np.all(np.isfinite(res.jac)) else np.inf
        return res

    # L-BFGS-B often ends with "ABNORMAL" line-search exits once the gradient is at noise
    # level; judge convergence by the gradient, not by the flag.
    res = lbfgsb(theta0)
    if res.grad_max > GRAD_TOL:
        nm = optimize.minimize(
            f,
            res.x,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": max_iter, "xatol": 1e-8, "fatol": 1e-13, "adaptive": True},
        )
        polished = lbfgsb(nm.x)
        if polished.fun <= res.fun:
            res = polished
    res.converged = bool(res.grad_max <= 100 * GRAD_TOL and res.fun < 1e99)
    return res


def newton_minimize(
    fgh: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    theta0: np.ndarray,
    scale: float,
    max_iter: int = 200,
) -> optimize.OptimizeResult:
    """Minimise a total negative log-likelihood with its exact gradient and Hessian.

    A trust-region Newton method (scipy's ``trust-exact``) needs a handful of iterations
    where a quasi-Newton method needs dozens of function evaluations, and every
    evaluation here is a pass over all customers: this is what makes large fits fast. The
    objective is divided by ``scale`` so the tolerance does not depend on the data size.
    """
    cache: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}

    def parts(th: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        key = th.tobytes()
        if key not in cache:
            cache.clear()  # the method asks for f, g and H at one point at a time
            with np.errstate(all="ignore"):
                f, g, H = fgh(th)
            if not (np.isfinite(f) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
                f, g, H = np.inf, np.zeros_like(th), np.eye(th.size)
            cache[key] = (f / scale, g / scale, H / scale)
        return cache[key]

    res = optimize.minimize(
        lambda th: parts(th)[:2],
        theta0,
        jac=True,
        hess=lambda th: parts(th)[2],
        method="trust-exact",
        options={"gtol": GRAD_TOL / 1000, "maxiter": max_iter},
    )
    f, g, _ = parts(np.asarray(res.x, dtype=float))
    res.grad_max = float(np.max(np.abs(g))) if np.isfinite(f) else np.inf
    res.converged = bool(res.grad_max <= GRAD_TOL and np.isfinite(f))
    return res


class ParametricLTVModel:
    """Base for the fitted-by-maximum-likelihood LTV models (positive parameters)."""

    _param_names: tuple[str, ...] = ()

    def __init__(self, initial_params: dict[str, float] | None = None, max_iter: int = 1000):
        self.initial_params = initial_params
        self.max_iter = max_iter

    def __repr__(self) -> str:
        if hasattr(self, "params_"):
            inner = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"{type(self).__name__}({inner}, n_obs={self.n_obs_:g})"
        return f"{type(self).__name__}()"

    # -- helpers used by subclasses ---------------------------------------------------
    def _start(self, default: dict[str, float]) -> np.ndarray:
        start = dict(default)
        if self.initial_params:
            unknown = set(self.initial_params) - set(self._param_names)
            if unknown:
                raise ValueError(f"initial_params has unknown keys {sorted(unknown)}")
            start.update(self.initial_params)
        values = np.array([start[k] for k in self._param_names], dtype=float)
        if (values <= 0).any():
            raise ValueError(f"initial parameters must be > 0, got {start}")
        return np.log(values)

    def _fit_params(
        self,
        negll: Callable[[np.ndarray], float],
        theta0: np.ndarray,
        n_obs: float,
        negll_grad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
        negll_hess: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        res = None
        if negll_hess is not None:
            res = newton_minimize(negll_hess, theta0, n_obs, self.max_iter)
            if not res.converged:  # e.g. a start far out on a flat ridge: the slower, surer path
                res = None
        if res is None:
            res = maximize_loglik(negll, theta0, n_obs, negll_grad, self.max_iter)
        theta = np.asarray(res.x, dtype=float)
        self.optimizer_result_ = res
        self.converged_ = bool(res.converged)
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__}: the optimiser did not converge (largest gradient "
                f"component {res.grad_max:.2g}); the data may not identify the model, e.g. "
                "parameters drifting to a boundary",
                RuntimeWarning,
                stacklevel=3,
            )
        if negll_hess is not None:
            f_opt, _, H = negll_hess(theta)
            self.log_likelihood_ = -float(f_opt)
        else:
            self.log_likelihood_ = -float(negll(theta))
            grad = (lambda th: negll_grad(th)[1]) if negll_grad is not None else None
            H = numerical_hessian(negll, theta, grad)
        try:
            cov_theta = np.linalg.inv(H)
            ok = np.all(np.linalg.eigvalsh(H) > 0)
        except np.linalg.LinAlgError:
            cov_theta, ok = np.full_like(H, np.nan), False
        if not ok:
            warnings.warn(
                f"{type(self).__name__}: the Hessian at the optimum is not positive definite; "
                "standard errors are not available (the fit may sit on a boundary)",
                RuntimeWarning,
                stacklevel=3,
            )
            cov_theta = np.full_like(H, np.nan)
        self._set_estimates(theta, cov_theta)
        self.n_obs_ = float(n_obs)

    def _set_estimates(self, theta: np.ndarray, cov_theta: np.ndarray) -> None:
        est = np.exp(theta)
        se_theta = np.sqrt(np.clip(np.diag(cov_theta), 0, None))
        names = list(self._param_names)
        self.params_ = {k: float(v) for k, v in zip(names, est, strict=True)}
        self.standard_errors_ = {k: float(v) for k, v in zip(names, est * se_theta, strict=True)}
        self.covariance_ = pd.DataFrame(cov_theta * np.outer(est, est), index=names, columns=names)
        self.summary_ = pd.DataFrame(
            {
                "param": names,
                "estimate": est,
                "se": est * se_theta,
                "ci_low": np.exp(theta - Z95 * se_theta),
                "ci_high": np.exp(theta + Z95 * se_theta),
            }
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit() first")

    def _p(self) -> list[float]:
        self._check_fitted()
        return [self.params_[k] for k in self._param_names]

    @property
    def aic_(self) -> float:
        """Akaike information criterion ``2k - 2 log L``."""
        self._check_fitted()
        return 2 * len(self._param_names) - 2 * self.log_likelihood_


def resolve_time_unit(time_unit: Any, data: Any) -> str:
    """The data's time unit: the argument, else ``data.attrs['time_unit']``; required."""
    attr = getattr(data, "attrs", {}).get("time_unit") if hasattr(data, "attrs") else None
    if time_unit is None and attr is None:
        raise ValueError(
            "time_unit is required: say which unit frequency/recency/T are in "
            "('D', 'W', 'M' or 'Y'); summary_from_orders records it in DataFrame.attrs"
        )
    if time_unit is not None and attr is not None:
        if normalize_unit(time_unit) != normalize_unit(attr):
            raise ValueError(
                f"time_unit={time_unit!r} contradicts the data's attrs['time_unit']={attr!r}"
            )
    return normalize_unit(time_unit if time_unit is not None else attr)


def split_rfm_frame(
    frequency: Any, recency: Any, T: Any, weights: Any
) -> tuple[Any, Any, Any, Any]:
    """Allow ``fit(summary_df)``: pull frequency / recency / T (and weights) columns."""
    if isinstance(frequency, pd.DataFrame):
        if recency is not None or T is not None:
            raise ValueError("pass either a summary DataFrame or frequency, recency, T arrays")
        frame = frequency
        missing = [c for c in ("frequency", "recency", "T") if c not in frame.columns]
        if missing:
            raise ValueError(f"the summary DataFrame lacks columns {missing}")
        if isinstance(weights, str):
            weights = frame[weights]
        return frame["frequency"], frame["recency"], frame["T"], weights
    if recency is None or T is None:
        raise ValueError("frequency, recency and T are all required")
    return frequency, recency, T, weights


def wsum(weights: np.ndarray, values: np.ndarray) -> float:
    """``sum(weights * values)``; see :func:`dot`."""
    return dot(weights, values)


def log1mexp(x: np.ndarray) -> np.ndarray:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near both ends."""
    x = np.asarray(x, dtype=float)
    out = np.full_like(x, -np.inf)
    small = x > -math.log(2)
    out[small] = np.log(-np.expm1(x[small]))
    big = (~small) & np.isfinite(x)
    out[big] = np.log1p(-np.exp(x[big]))
    out[x == -np.inf] = 0.0
    return out
