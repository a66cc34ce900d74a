"""What a valuation is: the model a business model calls for, the snapshot calendar, and
:class:`Valuation` (customer values at one snapshot, strictly before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fupan.core.chapter_params import LtvParams
from fupan.core.params import Params
from fupan.io.dataset import Dataset
from fupan.models.ltv import (
    UNIT_DAYS,
)

TRANSACTIONS = "transactions"
CONTRACTS = "contracts"
#: ``ltv.model`` as recorded in results.json, by kind and transaction model.
MODEL_NAMES = {
    ("transactions", "bgnbd"): "bgnbd+gamma_gamma",
    ("transactions", "pareto_nbd"): "pareto_nbd+gamma_gamma",
    ("contracts", None): "sbg",
}
POOLED = "(all)"
UNRECORDED = "(unrecorded)"
YEAR_DAYS = UNIT_DAYS["Y"]


def _ts(value: Any) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def choose_model(params: Params, ds: Dataset) -> tuple[str, str | None]:
    """The CLV model for this run: ``(kind, fallback)``.

    ``kind`` is ``"contracts"`` (sBG) or ``"transactions"`` (BG/NBD x Gamma-Gamma);
    ``fallback`` is ``"no_contracts"`` when the params say contractual but the data has no
    ``contracts`` table (the transaction model is used instead), else ``None``.
    """
    if params.business_model == "contractual":
        if ds.has("contracts"):
            return CONTRACTS, None
        return TRANSACTIONS, "no_contracts"
    return TRANSACTIONS, None


def model_name(kind: str, ltv: LtvParams) -> str:
    """The model's name as recorded under ``ltv.model``."""
    return MODEL_NAMES[(kind, ltv.transaction_model if kind == TRANSACTIONS else None)]


def month_starts(period_start: Any, as_of: Any, months: int = 1) -> list[pd.Timestamp]:
    """The review period's valuation snapshots on a month-start calendar, each exclusive.

    The period start, then the first day of every ``months``-th month after it, then "now"
    (the day after ``as_of``, so ``as_of`` itself is in the data); a valuation at a snapshot
    uses data strictly before it. A churn dated in ``(s_k, s_k+1]`` is valued at ``s_k``.
    (The churn features and the funnel keep calendars of their own, for other questions.)
    """
    start, end = _ts(period_start), _ts(as_of) + pd.Timedelta(days=1)
    if start >= end:
        raise ValueError(
            f"period start {start.date()} must be on or before as_of {_ts(as_of).date()}"
        )
    out = [start]
    nxt = (start + pd.offsets.MonthBegin(1)).normalize()
    # step from the first month start after the period start, every ``months`` months
    while nxt < end:
        out.append(nxt)
        nxt = (nxt + pd.offsets.MonthBegin(months)).normalize()
    out.append(end)
    return out


def horizon_months(ltv: LtvParams) -> int:
    """The CLV horizon in whole months (at least one)."""
    return max(1, int(round(ltv.horizon_years * 12)))


# --------------------------------------------------------------------------------------
# A valuation at one snapshot


@dataclass
class Valuation:
    """Customer values at one snapshot.

    Attributes
    ----------
    snapshot : exclusive as-of date: nothing dated on or after it was used.
    kind : ``"transactions"`` or ``"contracts"``.
    values : one row per valued customer (index ``customer_id``): ``clv`` (currency), and
        ``p_churn`` (transactions: 1 - P(alive); contracts: P(not renewing at the next
        decision)), plus the model inputs (``frequency, recency, T, monetary, spend`` or
        ``renewals, years_to_decision, annual_value, segment``).
    models : the fitted models (``transactions``, ``spend``; or ``sbg`` by segment).
    info : counts a slide may need to state (e.g. ``spend_imputed``).
    chains : contracts only: the running renewal chains behind ``values`` (one row per
        chain, with ``segment, years_to_decision, p_churn, clv``).
    """

    snapshot: pd.Timestamp
    kind: str
    values: pd.DataFrame
    models: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    chains: pd.DataFrame | None = None

    @property
    def total(self) -> float:
        return float(self.values["clv"].sum())
