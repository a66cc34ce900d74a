"""Non-contractual CLV: BG/NBD (or Pareto/NBD) x Gamma-Gamma on the orders before a snapshot."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.clv.valuation import TRANSACTIONS, Valuation, _ts, horizon_months
from fupan.core.chapter_params import LtvParams
from fupan.io.dataset import Dataset
from fupan.models.ltv import (
    UNIT_DAYS,
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    summary_from_orders,
)
from fupan.models.ltv._core import unique_rows

# ---- non-contractual: BG/NBD (or Pareto/NBD) x Gamma-Gamma ---------------------------


def transaction_summary(
    ds: Dataset, snapshot: Any, ltv: LtvParams, holdout_end: Any = None
) -> pd.DataFrame:
    """Per-customer frequency / recency / T / monetary from orders dated before ``snapshot``.

    With ``holdout_end`` the calibration ends at ``snapshot`` and ``frequency_holdout`` counts
    purchase days in ``[snapshot, holdout_end)``. Aggregated in the engine.
    """
    orders = ds["orders"].select("customer_id", "order_date", "amount")
    snap = _ts(snapshot).date()
    if holdout_end is None:
        return summary_from_orders(orders, snap, freq=ltv.time_unit)
    return summary_from_orders(
        orders, _ts(holdout_end).date(), freq=ltv.time_unit, calibration_end=snap
    )


@dataclass
class TransactionModels:
    """The fitted purchase and spend models of one snapshot."""

    purchases: BetaGeo | ParetoNBD
    spend: GammaGamma
    n_fit: int
    population_spend: float


def fit_transactions(summary: pd.DataFrame, ltv: LtvParams) -> TransactionModels:
    """Fit the purchase model on every customer and Gamma-Gamma on repeat buyers with
    positive spend.

    Customers first seen on the last observed day (``T = 0``) carry no information about
    their purchase rate and are left out of the fit. Every snapshot is fitted from the same
    starting values, so its estimates do not depend on the order snapshots are valued in.

    Raises
    ------
    ValueError
        When no customer has a repeat purchase with positive spend, or the fitted spend
        model has no finite mean (``q <= 1``).
    """
    cls = BetaGeo if ltv.transaction_model == "bgnbd" else ParetoNBD
    # boolean arrays, not Series: a Series mask makes pandas hash the customer ids
    fit_rows = summary[(summary["T"] > 0).to_numpy()]
    if fit_rows.empty:
        raise ValueError("no customer has an order before the snapshot: nothing to fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # convergence is recorded in info
        purchases = cls().fit(fit_rows, time_unit=ltv.time_unit)
    repeat = fit_rows[((fit_rows.frequency > 0) & (fit_rows.monetary > 0)).to_numpy()]
    if repeat.empty:
        raise ValueError(
            "no customer has a repeat purchase with positive net spend: the spend model "
            "(Gamma-Gamma) cannot be fitted"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spend = GammaGamma().fit(repeat.frequency, repeat.monetary)
    pop = spend.population_mean_spend()
    if not math.isfinite(pop):
        raise ValueError(
            f"the spend model has no finite mean (q = {spend.params_['q']:.3g} <= 1): spend is "
            "too heavy-tailed for Gamma-Gamma; check for extreme orders"
        )
    return TransactionModels(purchases, spend, int(len(fit_rows)), float(pop))


def discounted_purchases(
    model: BetaGeo | ParetoNBD,
    frequency: Any,
    recency: Any,
    T: Any,
    horizon: int,
    discount_rate_annual: float,
) -> np.ndarray:
    """Expected purchases month by month over ``horizon`` months, discounted to now.

    ``sum_k (E[X(k)] - E[X(k-1)]) / (1+d)^(k/12)`` with ``E[X(k)]`` the model's expected
    purchases in the next ``k`` months given the customer's history: the purchase factor of
    :meth:`GammaGamma.clv` (``period="M"``, rate quoted a year), with every month of every
    customer evaluated in one call. ``recency`` and ``T`` are in ``model.time_unit_``.
    Customers with the same history (one-time buyers of the same age, say) are computed once.
    """
    f, r, t = (np.asarray(v, dtype=float).ravel() for v in (frequency, recency, T))
    if f.size == 0:
        return np.zeros(0)
    first, back = unique_rows(f, r, t)
    x, tx, T_ = f[first], r[first], t[first]
    n = x.size
    step = UNIT_DAYS["M"] / UNIT_DAYS[model.time_unit_]  # one month in the model's unit
    k = np.arange(1, int(horizon) + 1, dtype=float)
    if isinstance(model, BetaGeo):  # the same values, its bracket once per (frequency, T)
        cum = model.expected_purchases_grid(k * step, x, tx, T_)
    else:
        cum = np.asarray(
            model.expected_purchases(
                np.tile(k * step, n),
                np.repeat(x, k.size),
                np.repeat(tx, k.size),
                np.repeat(T_, k.size),
            ),
            dtype=float,
        ).reshape(n, k.size)
    monthly = np.diff(cum, axis=1, prepend=0.0)
    discount = (1.0 + discount_rate_annual) ** (-k / 12.0)
    return np.sum(monthly * discount[None, :], axis=1)[back]


def value_transactions(
    models: TransactionModels, summary: pd.DataFrame, ltv: LtvParams, snapshot: Any
) -> Valuation:
    """Discounted residual CLV of every customer in ``summary``.

    Repeat buyers whose refunds net their repeat spend to zero or less are valued at the
    population mean spend (their count is ``info['spend_imputed']``): Gamma-Gamma needs
    positive spend, and the conditional expected spend of a customer whose observed mean is
    the population mean is exactly that mean. Customers first seen on the last observed day
    (``T = 0``) are valued as one day old (``info['first_seen_last_day']``).
    """
    unit = ltv.time_unit
    s = summary[["frequency", "recency", "T", "monetary"]].copy()
    first_day = (s["T"] <= 0).to_numpy()
    s.loc[first_day, "T"] = 1.0 / UNIT_DAYS[unit]
    nonpos = (s.frequency > 0) & (s.monetary <= 0)
    monetary = s.monetary.where(~nonpos, models.population_spend)
    spend = np.asarray(models.spend.expected_spend(s.frequency, monetary), dtype=float)
    purchases = discounted_purchases(
        models.purchases,
        s.frequency,
        s.recency,
        s["T"],
        horizon_months(ltv),
        ltv.discount_rate_annual,
    )
    clv = purchases * spend * ltv.margin
    bad = ~np.isfinite(clv)
    if bad.any():  # a wrong total is worse than none: name the customers and the model
        raise ValueError(
            f"CLV is not finite for {int(bad.sum())} customers (e.g. {list(s.index[bad][:5])}) "
            f"with purchase model {models.purchases.params_} and spend model {models.spend.params_}"
        )
    alive = models.purchases.probability_alive(s.frequency, s.recency, s["T"])
    values = s.assign(
        purchases=purchases,
        spend=spend,
        spend_imputed=nonpos,
        p_alive=np.asarray(alive, dtype=float),
        clv=np.asarray(clv, dtype=float),
    )
    values["p_churn"] = 1.0 - values["p_alive"]
    info = {
        "customers": int(len(values)),
        "spend_imputed": int(nonpos.sum()),
        "spend_imputed_negative": int(((s.frequency > 0) & (s.monetary < 0)).sum()),
        "first_seen_last_day": int(first_day.sum()),
        "one_time_buyers": int((s.frequency == 0).sum()),
        "converged": bool(
            getattr(models.purchases, "converged_", True)
            and getattr(models.spend, "converged_", True)
        ),
        "population_spend": models.population_spend,
        "fit_customers": models.n_fit,
        "time_unit": unit,
    }
    return Valuation(
        _ts(snapshot),
        TRANSACTIONS,
        values,
        {"transactions": models.purchases, "spend": models.spend},
        info,
    )
