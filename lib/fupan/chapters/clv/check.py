"""Is the model right? Its forecasts for the review period against what customers did."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.clv.transactions import TransactionModels
from fupan.chapters.clv.valuation import Valuation, _ts
from fupan.models.ltv import (
    holdout_by_frequency,
)

# --------------------------------------------------------------------------------------
# Model checks


def holdout_check(
    models: TransactionModels, summary: pd.DataFrame, max_freq: int = 7
) -> pd.DataFrame:
    """Predicted vs actual purchases in the holdout by calibration frequency.

    ``summary`` comes from :func:`transaction_summary` with ``holdout_end``; ``models`` were
    fitted on its calibration columns. Metrics are in ``attrs`` (see
    :func:`fupan.models.ltv.holdout_by_frequency`).
    """
    rows = summary[(summary["T"] > 0).to_numpy()]
    return holdout_by_frequency(models.purchases, rows, max_freq=max_freq)


def renewal_check(
    start: Valuation, chains_now: pd.DataFrame, as_of: Any, grace_days: int, max_renewals: int = 4
) -> pd.DataFrame:
    """Predicted vs actual renewal rate of the decisions taken in the review period.

    Chains running at the period-start valuation whose next renewal decision is known by
    ``as_of`` (renewed, or ended at least ``grace_days`` before with no renewal) are compared
    with the renewal probability the start's sBG models gave them, by renewals made before
    (pooled from ``max_renewals``). Chains are matched by customer and chain number.

    Returns
    -------
    DataFrame ``renewals, n_decisions, actual, predicted, error`` with ``attrs`` ``mae``,
    ``weighted_mae``, ``decisions``, ``total_actual``, ``total_predicted``.
    """
    cols = ["renewals", "n_decisions", "actual", "predicted", "error"]
    if start.chains is None or start.chains.empty:
        return pd.DataFrame(columns=cols)
    before = start.chains[["customer_id", "chain", "contracts", "last_end", "p_churn"]]
    after = chains_now[["customer_id", "chain", "contracts"]].rename(
        columns={"contracts": "contracts_now"}
    )
    rows = before.merge(after, on=["customer_id", "chain"], how="left")
    rows["renewed"] = rows.contracts_now.fillna(0) > rows.contracts
    lapsed = rows.last_end + pd.Timedelta(days=grace_days) < _ts(as_of)
    rows = rows[rows.renewed | lapsed].copy()
    rows["bucket"] = (rows.contracts - 1).clip(upper=max_renewals).astype(int)
    rows["p_renew"] = 1.0 - rows.p_churn
    table = rows.groupby("bucket").agg(
        n_decisions=("renewed", "size"), actual=("renewed", "mean"), predicted=("p_renew", "mean")
    )
    table = table.reset_index().rename(columns={"bucket": "renewals"})
    table["error"] = table.predicted - table.actual
    n = table.n_decisions.to_numpy(dtype=float)
    err = np.abs(table.error.to_numpy(dtype=float))
    table.attrs.update(
        mae=float(err.mean()) if len(err) else float("nan"),
        weighted_mae=float(np.sum(err * n) / n.sum()) if n.sum() else float("nan"),
        decisions=int(len(rows)),
        total_actual=float(rows.renewed.sum()),
        total_predicted=float(rows.p_renew.sum()),
    )
    return table[cols]
