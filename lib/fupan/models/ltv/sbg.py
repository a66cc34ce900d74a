"""Shifted-beta-geometric (sBG) model of contract renewal.

At the end of every period an active customer cancels with probability
``theta ~ Beta(alpha, beta)``. References: P. S. Fader and B. G. S. Hardie (2007), "How to
project customer retention", Journal of Interactive Marketing 21(1), 76-90; and (2010)
"Customer-base valuation in a contractual setting: the perils of ignoring
heterogeneity", Marketing Science 29(1), 85-93 (DEL and DERL).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import betaln, hyp2f1

from ._core import ParametricLTVModel, normalize_unit, wsum


def _as_cohorts(survivors: Any, initial: Any) -> list[tuple[float, np.ndarray]]:
    """Normalise one cohort or a list of cohorts to ``[(n0, survivors), ...]``."""
    if initial is None:
        raise ValueError(
            "initial (the cohort size at the start of period 1) is required; the survivors "
            "list holds the customers still active at the end of periods 1..n"
        )
    nested = np.ndim(initial) == 1
    cohorts_s = list(survivors) if nested else [survivors]
    cohorts_n = list(np.atleast_1d(initial)) if nested else [initial]
    if len(cohorts_s) != len(cohorts_n):
        raise ValueError(f"{len(cohorts_n)} initial sizes but {len(cohorts_s)} survivor series")
    out = []
    for i, (n0, s) in enumerate(zip(cohorts_n, cohorts_s, strict=True)):
        s = np.asarray(s, dtype=float)
        n0 = float(n0)
        tag = f"cohort {i}: " if nested else ""
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{tag}survivors must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(s)) or (s < 0).any() or n0 <= 0:
            raise ValueError(f"{tag}counts must be finite, survivors >= 0 and initial > 0")
        seq = np.concatenate([[n0], s])
        if (np.diff(seq) > 0).any():
            raise ValueError(f"{tag}survivor counts must not increase: {seq.tolist()}")
        out.append((n0, s))
    return out


class ShiftedBetaGeometric(ParametricLTVModel):
    """sBG model of period-by-period retention in a contractual setting.

    Parameters
    ----------
    initial_params : dict, optional
        Starting values for ``alpha, beta``.
    max_iter : int
        Iteration cap for the optimiser.

    Attributes
    ----------
    params_ : dict
        ``alpha, beta`` of the beta distribution of the per-period churn probability.
    standard_errors_, summary_, log_likelihood_ : as for :class:`BetaGeo`.
    n_obs_ : float
        Customers at the start (sum of the cohorts' initial sizes).
    n_periods_ : int
        Longest observed history, in periods.
    time_unit_ : str or None
        Length of one contract period, if given to ``fit``.
    """

    _param_names = ("alpha", "beta")

    def fit(
        self, survivors: Any, initial: Any = None, *, time_unit: str | None = None
    ) -> ShiftedBetaGeometric:
        """Fit on survivor counts.

        Parameters
        ----------
        survivors : sequence of int, or list of sequences
            Customers still active at the end of periods ``1..n`` (not including the
            starting count). A list of sequences fits several cohorts of different lengths.
        initial : int or sequence of int
            Cohort size at the start of period 1 (one per cohort). Required: it is never
            guessed from the survivors.
        time_unit : {"D", "W", "M", "Y"}, optional
            Length of one period, recorded as ``time_unit_``.

        Returns
        -------
        self
        """
        cohorts = _as_cohorts(survivors, initial)
        self.time_unit_ = normalize_unit(time_unit) if time_unit is not None else None
        self.n_periods_ = max(s.size for _, s in cohorts)
        # sufficient statistics: churners per period t and survivors censored at t
        churn = np.zeros(self.n_periods_)
        censored = np.zeros(self.n_periods_)
        for n0, s in cohorts:
            seq = np.concatenate([[n0], s])
            churn[: s.size] += -np.diff(seq)
            censored[s.size - 1] += s[-1]
        t = np.arange(1, self.n_periods_ + 1)

        def negll(theta: np.ndarray) -> float:
            a, b = np.exp(theta)
            base = betaln(a, b)
            log_p = betaln(a + 1, b + t - 1) - base
            log_s = betaln(a, b + t) - base
            return -float(wsum(churn, log_p) + wsum(censored, log_s))

        self._fit_params(
            negll, self._start({"alpha": 1.0, "beta": 1.0}), sum(n for n, _ in cohorts)
        )
        return self

    @staticmethod
    def _periods(periods: Any, start: int) -> np.ndarray:
        if np.ndim(periods) == 0:
            return np.arange(start, int(periods) + 1)
        t = np.asarray(periods, dtype=float)
        if (t < start).any() or (t != np.round(t)).any():
            raise ValueError(f"periods must be whole numbers >= {start}")
        return t

    def survival_curve(self, periods: Any) -> pd.Series:
        """``S(t) = B(alpha, beta + t) / B(alpha, beta)``: share still active after ``t``
        periods. An integer ``n`` means ``t = 0..n``; otherwise the given periods."""
        a, b = self._p()
        t = self._periods(periods, 0)
        return pd.Series(np.exp(betaln(a, b + t) - betaln(a, b)), index=t.astype(int), name="S")

    def retention_curve(self, periods: Any) -> pd.Series:
        """Period-on-period retention ``r_t = S(t)/S(t-1) = (beta + t - 1)/(alpha + beta + t - 1)``;
        it rises with ``t`` as the customers likeliest to churn leave. ``t >= 1``."""
        a, b = self._p()
        t = self._periods(periods, 1)
        return pd.Series((b + t - 1) / (a + b + t - 1), index=t.astype(int), name="r")

    def churn_probability(self, periods: Any) -> pd.Series:
        """``P(T = t)``: probability a new customer's last period is period ``t``."""
        a, b = self._p()
        t = self._periods(periods, 1)
        return pd.Series(
            np.exp(betaln(a + 1, b + t - 1) - betaln(a, b)), index=t.astype(int), name="P"
        )

    def expected_lifetime_value(
        self,
        value_per_period: float,
        discount_rate: float,
        periods: int | None = None,
        renewals: int | None = None,
    ) -> float:
        """Discounted expected lifetime value of one customer (payments at period starts).

        Parameters
        ----------
        value_per_period : float
            Net cash flow received at the start of each period the customer is active.
        discount_rate : float
            Rate per period (> 0 for an infinite horizon).
        periods : int, optional
            Number of payments to add up; ``None`` means no limit (closed form).
        renewals : int, optional
            ``None``: DEL of a customer just acquired, counting her first payment now
            (undiscounted): ``m * 2F1(1, beta; alpha + beta; 1/(1+d))``.
            ``n >= 0``: DERL of a customer who has renewed ``n`` times and is about to decide
            on the next renewal (Fader & Hardie 2010, eq. 6): the next payment, if she renews,
            is undiscounted:
            ``m (beta + n)/(alpha + beta + n) 2F1(1, beta + n + 1; alpha + beta + n + 1; 1/(1+d))``.
        """
        a, b = self._p()
        if discount_rate <= -1:
            raise ValueError("discount_rate must be > -1")
        n = 0 if renewals is None else int(renewals)
        if n < 0:
            raise ValueError("renewals must be >= 0")
        # k-th cash flow (k = 0, 1, ...) arrives if the customer survives a further k periods
        # (DEL) or k + 1 periods (DERL); survival probabilities are conditional on n renewals.
        offset = 0 if renewals is None else 1
        y = 1.0 / (1.0 + discount_rate)
        if periods is None:
            if discount_rate <= 0:
                raise ValueError("an infinite horizon needs discount_rate > 0")
            if offset == 0:
                return float(value_per_period * hyp2f1(1.0, b, a + b, y))
            ratio = (b + n) / (a + b + n)
            return float(value_per_period * ratio * hyp2f1(1.0, b + n + 1, a + b + n + 1, y))
        k = np.arange(int(periods))
        log_cond = betaln(a, b + n + k + offset) - betaln(a, b + n)
        return float(value_per_period * np.sum(np.exp(log_cond) * y**k))
