"""The whole chapter in one call: :func:`review` values the base at the period start and now,
checks the model, and prices the loss to churn in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from fupan.chapters.clv.check import holdout_check, renewal_check
from fupan.chapters.clv.contracts import contract_chains, contract_period_years, value_contracts
from fupan.chapters.clv.loss import LostSummary, period_ledger, summarise_loss
from fupan.chapters.clv.transactions import (
    fit_transactions,
    transaction_summary,
    value_transactions,
)
from fupan.chapters.clv.valuation import (
    CONTRACTS,
    POOLED,
    TRANSACTIONS,
    Valuation,
    _ts,
    choose_model,
    model_name,
    month_starts,
)
from fupan.io import cache, engine
from fupan.io.dataset import Dataset
from fupan.models.ltv.data import OrderHistory

# --------------------------------------------------------------------------------------
# The whole chapter


@dataclass
class Review:
    """Everything chapter 3 computes, for the notebook to show and record.

    ``start`` and ``now`` value everyone the model can at the period start and now (the day
    after ``as_of``); ``current`` is ``now.values`` cut to the customers still active under
    the churn definition (churned customers' residual value was counted as lost);
    ``not_valued`` lists active customers the model cannot value (no purchase, or no running
    contract, before now). ``check`` is the model check on the review period.
    """

    kind: str
    fallback: str | None
    model: str
    snapshots: list[pd.Timestamp]
    start: Valuation
    now: Valuation
    current: pd.DataFrame
    ledger: pd.DataFrame
    loss: LostSummary
    check: pd.DataFrame
    valuations: int
    not_valued: list[str] = field(default_factory=list)


class Valuer:
    """Values customers at snapshots, fitting each snapshot's models once (cached).

    Between the full valuations (period start, now) only the customers asked for are valued:
    the model is fitted on everyone, the 36-month CLV sum is the costly part.
    ``Valuer(ds, kind)(snapshot, ids)`` is the ``value`` callable :func:`period_ledger` wants.
    Given the review's ``snapshots``, the transaction summaries at all of them come from one
    pass over the orders (:class:`fupan.models.ltv.data.OrderHistory`, equal to
    :func:`transaction_summary` at each date); other dates are summarised one by one.
    """

    def __init__(self, ds: Dataset, kind: str, snapshots: Sequence[pd.Timestamp] = ()):
        self.ds = ds
        self.kind = kind
        self.ltv = ds.params.ltv
        self._fits: dict[pd.Timestamp, Any] = {}
        self._period = contract_period_years(ds) if kind == CONTRACTS else None
        self.full: dict[pd.Timestamp, Valuation] = {}
        self.summaries: dict[pd.Timestamp, pd.DataFrame] = {}
        self._dates = {_ts(s).date() for s in snapshots}
        self._history: OrderHistory | None = None

    def summary(self, snapshot: Any, holdout_end: Any = None) -> pd.DataFrame:
        """:func:`transaction_summary` ``(ds, snapshot, ltv, holdout_end)``."""
        dates = {_ts(snapshot).date()} | (
            set() if holdout_end is None else {_ts(holdout_end).date()}
        )
        if not dates <= self._dates:
            return transaction_summary(self.ds, snapshot, self.ltv, holdout_end)
        if self._history is None:
            orders = self.ds["orders"].select("customer_id", "order_date", "amount")
            self._history = OrderHistory(orders, sorted(self._dates), freq=self.ltv.time_unit)
        if holdout_end is None:
            return self._history.summary(_ts(snapshot).date())
        return self._history.summary(_ts(holdout_end).date(), calibration_end=_ts(snapshot).date())

    def fit(self, snapshot: pd.Timestamp, summary: pd.DataFrame | None = None) -> Any:
        if snapshot not in self._fits:
            if self.kind == TRANSACTIONS:
                if summary is None:
                    summary = self.summary(snapshot)
                self.summaries[snapshot] = summary
                self._fits[snapshot] = fit_transactions(summary, self.ltv)
            else:
                self._fits[snapshot] = value_contracts(
                    self.ds, snapshot, self.ltv, period_years=self._period
                )
        return self._fits[snapshot]

    def valuation(self, snapshot: pd.Timestamp) -> Valuation:
        """Every customer the model can value at ``snapshot``.

        Computed once per run (:mod:`fupan.io.cache`): chapters 4 and 5 quote chapter 3's CLV.
        """

        def compute() -> Valuation:
            fitted = self.fit(snapshot)
            if self.kind == TRANSACTIONS:
                return value_transactions(fitted, self.summaries[snapshot], self.ltv, snapshot)
            return fitted

        if snapshot not in self.full:
            self.full[snapshot] = cache.memo(
                self.ds, "clv.valuation", [self.kind, pd.Timestamp(snapshot).isoformat()], compute
            )
        return self.full[snapshot]

    def __call__(self, snapshot: pd.Timestamp, ids: list[str]) -> pd.Series:
        if snapshot in self.full or self.kind == CONTRACTS:
            return self.valuation(snapshot).values.clv
        fitted = self.fit(snapshot)
        summary = self.summaries[snapshot]
        part = summary[engine.isin(summary.index, ids)]
        if part.empty:
            return pd.Series(dtype=float)
        return value_transactions(fitted, part, self.ltv, snapshot).values.clv


def review(ds: Dataset, status: pd.DataFrame) -> Review:
    """Value the base at the period start and now, and the loss to churn in between.

    Parameters
    ----------
    ds : the run's dataset (``ds.params`` gives the period, business model and ``ltv``).
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of``.
    """
    # Hundreds of small optimiser runs: BLAS threads only add contention on a busy machine.
    with threadpool_limits(limits=1):
        return _review(ds, status)


def _review(ds: Dataset, status: pd.DataFrame) -> Review:
    params = ds.params
    ltv = params.ltv
    kind, fallback = choose_model(params, ds)
    snaps = month_starts(params.period_start, params.as_of, ltv.snapshot_months)
    start, now = snaps[0], snaps[-1]
    valuer = Valuer(ds, kind, snaps)
    if kind == TRANSACTIONS:
        # the period-start summary with the review period as holdout
        cal = valuer.summary(start, holdout_end=now)
        models = valuer.fit(start, cal[["frequency", "recency", "T", "monetary"]])
        check = holdout_check(models, cal, ltv.holdout_max_freq)
    start_val = valuer.valuation(start)
    now_val = valuer.valuation(now)
    if kind == CONTRACTS:
        check = renewal_check(
            start_val, contract_chains(ds, now), params.as_of, params.churn_definition.grace_days
        )
    ledger = period_ledger(status, snaps, valuer)
    active = pd.Index(status.customer_id[~status.churned])
    values = now_val.values
    return Review(
        kind=kind,
        fallback=fallback,
        model=model_name(kind, ltv),
        snapshots=snaps,
        start=start_val,
        now=now_val,
        current=values[engine.isin(values.index, active)],
        ledger=ledger,
        loss=summarise_loss(ledger),
        check=check,
        valuations=len(valuer._fits),
        not_valued=sorted(set(active[~engine.isin(active, values.index)])),
    )


def model_parameters(val: Valuation) -> pd.DataFrame:
    """The fitted parameters of a valuation's models: ``model, segment, param, estimate, se,
    ci_low, ci_high``."""
    rows = []
    if val.kind == TRANSACTIONS:
        for name in ("transactions", "spend"):
            m = val.models[name]
            label = {"BetaGeo": "bgnbd", "ParetoNBD": "pareto_nbd", "GammaGamma": "gamma_gamma"}[
                type(m).__name__
            ]
            rows.append(m.summary_.assign(model=label, segment=POOLED))
    else:
        for seg, m in val.models["sbg"].items():
            rows.append(m.summary_.assign(model="sbg", segment=seg))
    out = pd.concat(rows, ignore_index=True)
    return out[["model", "segment", "param", "estimate", "se", "ci_low", "ci_high"]]


def params_record(val: Valuation) -> dict[str, Any]:
    """``ltv.params``: estimates (and standard errors) by model and segment."""
    table = model_parameters(val)
    out: dict[str, Any] = {}
    for (model, seg), g in table.groupby(["model", "segment"], sort=False):
        entry = {r.param: float(r.estimate) for r in g.itertuples()}
        entry["se"] = {r.param: float(r.se) for r in g.itertuples()}
        if model == "sbg":
            out.setdefault("sbg", {})[seg] = entry
        else:
            out[model] = entry
    return out
