"""Money in the data's scale: customer values (chapter 3's CLV), trailing spend, the
reference spend default costs are shares of, unit costs, and the natural return of the lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from fupan.core.scenarios import (
    DEFAULT_COST_SHARES,
    Scenario,
)
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

# --------------------------------------------------------------------------------------
# Customer values


def annuity(years: float, churn: float, discount: float) -> float:
    """Expected discounted years of margin over ``years`` with annual ``churn``."""
    total, t = 0.0, 0
    keep = (1.0 - churn) / (1.0 + discount)
    while t < years:
        total += min(1.0, years - t) * keep**t
        t += 1
    return total


def customer_values(ds: Dataset, now: pd.Timestamp) -> tuple[pd.Series, str]:
    """Each customer's CLV at ``now`` from chapter 3's model (:mod:`fupan.chapters.clv`).

    Returns
    -------
    (Series customer_id -> CLV in currency, the model's name)
    """
    from fupan.chapters import clv

    kind, _ = clv.choose_model(ds.params, ds)
    with threadpool_limits(limits=1):
        val = clv.Valuer(ds, kind).valuation(now)
    return val.values["clv"].astype(float), clv.model_name(kind, ds.params.ltv)


def spend_before(ds: Dataset, ends: pd.Series) -> pd.Series:
    """Net spend in the 365 days up to and including each customer's date in ``ends``."""
    import ibis

    if ends.empty:
        return pd.Series(dtype=float)
    frame = pd.DataFrame(
        {
            "cid": ends.index.astype(str).to_numpy(),
            "end_day": (pd.to_datetime(ends.to_numpy()) - pd.Timestamp("1970-01-01")).days,
        }
    )
    t = ibis.memtable(frame)
    o = ds["orders"]
    o = o.select("customer_id", "amount", od=o.order_date.epoch_days())
    j = o.join(t, o.customer_id == t.cid)
    j = j.filter((j.od <= j.end_day) & (j.od > j.end_day - 365))
    agg = engine.to_pandas(j.group_by("cid").aggregate(spend=j.amount.sum()))
    return agg.set_index("cid")["spend"].reindex(ends.index.astype(str)).fillna(0.0).astype(float)


# ---- money in the data's scale -----------------------------------------------------------


def reference_spend(ds: Dataset, as_of: pd.Timestamp) -> float:
    """The median customer's annual value: the median net spend over the 365 days to
    ``as_of`` (inclusive) of the customers with an order in that year (refunds netted, a
    negative total counted as 0). NaN when nobody bought in that year.

    Default scenario costs are shares of it (:data:`fupan.core.scenarios.DEFAULT_COST_SHARES`),
    so they follow the data's currency and scale.
    """
    import ibis

    day = pd.Timestamp(as_of).normalize()
    o = ds["orders"]
    o = o.filter(
        (o.order_date.cast("date") <= ibis.literal(day.date()))
        & (o.order_date.cast("date") > ibis.literal((day - pd.Timedelta(days=365)).date()))
    )
    agg = engine.to_pandas(o.group_by("customer_id").aggregate(spend=o.amount.sum()))
    if agg.empty:
        return float("nan")
    return float(np.median(agg["spend"].astype(float).clip(lower=0.0)))


@dataclass
class _Costs:
    """A scenario's unit costs after the defaults are filled in, and where each came from."""

    per_customer: float
    per_touch: float
    fixed: float
    offer: float = 0.0
    basis: dict[str, str] = field(default_factory=dict)  # amount -> "file" | "data"

    def record(self) -> dict[str, Any]:
        return {
            "cost_per_customer": self.per_customer,
            "cost_per_touch": self.per_touch,
            "cost_fixed": self.fixed,
            "cost_basis": "file"
            if all(v == "file" for v in self.basis.values())
            else ("data" if all(v == "data" for v in self.basis.values()) else "mixed"),
        }


def _amount(given: float | None, default: float, name: str, basis: dict[str, str]) -> float:
    basis[name] = "file" if given is not None else "data"
    return float(given) if given is not None else float(default)


def _retention_costs(s: Scenario, ref: float, target_spend: float) -> _Costs:
    """Unit costs of a retention scenario: the file's amounts, else shares of the data."""
    sh, c, basis = DEFAULT_COST_SHARES, s.cost, {}
    ref = ref if np.isfinite(ref) else 0.0
    return _Costs(
        per_customer=_amount(c.per_customer, sh["per_customer"] * ref, "per_customer", basis),
        per_touch=_amount(c.per_touch, sh["per_touch"] * ref, "per_touch", basis),
        fixed=_amount(c.fixed, sh["fixed"] * target_spend, "fixed", basis),
        basis=basis,
    )


def natural_return(
    ds: Dataset, status: pd.DataFrame, as_of: pd.Timestamp, within_days: int
) -> tuple[float, int, str]:
    """How many lost customers come back without an offer: (rate, customers, basis).

    With recorded churn, the share of recorded churners who ordered again (``won_back``).
    Without it (churn inferred from dormancy), the customers already lost a year before
    ``as_of`` (churned in the ``within_days`` before that date) and the share of them who
    ordered again in the year since; ``basis`` says which (``recorded`` or ``dormancy``),
    and a rate resting on no customer is 0 with ``customers`` 0.
    """
    won = int(status.won_back.sum())
    recorded = int((status.source == "recorded").sum())
    if won + recorded:
        return won / (won + recorded), won + recorded, "recorded"
    d0 = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=365)
    before = outcomes.churn_status(ds, d0.date())
    at = pd.to_datetime(before.churned_at)
    lost = before[before.churned.astype(bool) & (at > d0 - pd.Timedelta(days=within_days))]
    if lost.empty:
        return 0.0, 0, "dormancy"
    last_now = pd.to_datetime(status.set_index("customer_id").last_order)
    back = last_now.reindex(lost.customer_id).to_numpy() > np.datetime64(d0)
    return float(np.mean(back)), len(lost), "dormancy"
