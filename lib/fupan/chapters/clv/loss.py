"""What did churn cost? The period's ledger of entry values and LTV lost to churn."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.clv.valuation import UNRECORDED

# --------------------------------------------------------------------------------------
# LTV lost to churn


def period_ledger(
    status: pd.DataFrame,
    snapshots: Sequence[pd.Timestamp],
    value: Callable[[pd.Timestamp, list[str]], pd.Series],
) -> pd.DataFrame:
    """Who was in the period's base, what they were worth on entry, and what churn took.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of`` (the shared churn definition).
    snapshots : :func:`month_starts`: the period start, month starts, and "now" (as_of + 1).
    value : ``value(snapshot, customer_ids) -> Series`` of CLV for the customers it can value
        at that snapshot from data strictly before it (others are left out).

    Returns
    -------
    One row per customer in the base: ``customer_id, entry_snapshot, entry_clv, churned``
    (in the period), ``churned_at, loss_snapshot`` (the last snapshot before the churn) and
    ``lost_ltv`` (her CLV there; NaN if no snapshot before the churn could value her).
    Customers who churned on or before the period start are not in the base.
    """
    start, now = snapshots[0], snapshots[-1]
    end = now - pd.Timedelta(days=1)
    st = status[(status.acquired_at <= end) & ~(status.churned_at <= start)]
    st = st.set_index("customer_id")
    churned_at = st.churned_at
    in_period = churned_at.notna() & (churned_at > start) & (churned_at <= end)
    # customers are tracked by position in ``st``: a value's ids are matched to positions
    # once per snapshot, instead of membership tests of string lists per customer
    n = len(st)
    acquired = st.acquired_at
    entry_k = np.full(n, -1)
    entry_val = np.full(n, np.nan)
    loss_k = np.full(n, -1)
    loss_val = np.full(n, np.nan)
    for k, s in enumerate(snapshots):
        nxt = snapshots[k + 1] if k + 1 < len(snapshots) else None
        alive = (churned_at.isna() | (churned_at > s)).to_numpy(dtype=bool)
        need_entry = alive & (entry_k < 0) & (acquired < s).to_numpy(dtype=bool)
        if nxt is None:  # "now": only customers who entered during the last month
            need_loss = np.zeros(n, dtype=bool)
        else:
            need_loss = (
                in_period & (churned_at > s) & (churned_at <= nxt) & (acquired < s)
            ).to_numpy(dtype=bool)
        need = need_entry | need_loss
        if not need.any():
            continue
        ids = st.index[need].tolist()
        # sorted and distinct, as promised to ``value``: status usually comes sorted, and
        # checking that costs a tenth of sorting a million ids
        if not all(a < b for a, b in zip(ids, ids[1:], strict=False)):
            ids = sorted(set(ids))
        v = value(s, ids)
        pos = st.index.get_indexer(v.index)
        asked = pos >= 0
        asked[asked] = need[pos[asked]]  # values of customers not asked for are ignored
        pos = pos[asked]
        val = v.to_numpy(dtype=float)[asked]
        first = entry_k[pos] < 0
        entry_k[pos[first]] = k
        entry_val[pos[first]] = val[first]
        lost = need_loss[pos]
        loss_k[pos[lost]] = k
        loss_val[pos[lost]] = val[lost]
    out = pd.DataFrame({"customer_id": st.index})
    out["entry_snapshot"] = _snapshot_column(entry_k, snapshots)
    out["entry_clv"] = entry_val
    out["churned"] = in_period.to_numpy()
    out["churned_at"] = churned_at.to_numpy()
    out["loss_snapshot"] = _snapshot_column(loss_k, snapshots)
    out["lost_ltv"] = loss_val
    out.loc[~out.churned, "lost_ltv"] = np.nan
    return out


def _snapshot_column(k: np.ndarray, snapshots: Sequence[pd.Timestamp]) -> np.ndarray:
    """The snapshot at each position ``k`` (``-1``: NaT) as a datetime64 array.

    Its unit is the one pandas infers from the snapshots that occur (the period start is
    in seconds, "now" in microseconds): the unit a per-customer map of Timestamps through
    ``pd.to_datetime`` gives, inferred here from the distinct values only.
    """
    used = np.unique(k)
    col = pd.to_datetime(
        pd.Series(used).map({i: snapshots[i] for i in used.tolist() if i >= 0})
    ).to_numpy()
    return col[np.searchsorted(used, k)]


@dataclass
class LostSummary:
    """The period's loss in one place (every figure goes to results.json)."""

    lost: float
    base: float
    rate: float
    churned: int
    churned_not_valued: int
    base_customers: int


def summarise_loss(ledger: pd.DataFrame) -> LostSummary:
    """Total lost, the base's value on entry, their ratio, and the counts behind them."""
    churned = ledger[ledger.churned]
    lost = float(churned.lost_ltv.fillna(0.0).sum())
    base = float(ledger.entry_clv.fillna(0.0).sum())
    return LostSummary(
        lost=lost,
        base=base,
        rate=lost / base if base > 0 else float("nan"),
        churned=int(len(churned)),
        churned_not_valued=int(churned.lost_ltv.isna().sum()),
        base_customers=int(ledger.entry_clv.notna().sum()),
    )


def loss_by(
    ledger: pd.DataFrame, attrs: pd.DataFrame, by: str, order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Lost LTV by a customer attribute, with the group's share of the loss and loss rate.

    Parameters
    ----------
    ledger : :func:`period_ledger`.
    attrs : one row per customer with ``customer_id`` and the ``by`` column (``tier``,
        ``industry``, ``cohort``, ``reason``...); a missing value is its own group
        (``UNRECORDED``).
    order : groups in this order first (e.g. the tier order), the rest by loss.

    Returns
    -------
    ``group, churned, lost_ltv, share`` (of the total loss), ``base_clv`` (the group's value
    on entry) and ``rate`` (lost / base; NaN for ``reason``, which only churners have).
    """
    df = ledger.merge(attrs[["customer_id", by]], on="customer_id", how="left")
    df[by] = df[by].astype(object).where(df[by].notna(), UNRECORDED)
    lost = (
        df[df.churned]
        .groupby(by)
        .agg(churned=("customer_id", "size"), lost_ltv=("lost_ltv", "sum"))
    )
    base = df.groupby(by).entry_clv.sum().rename("base_clv")
    out = lost.join(base, how="outer") if by != "reason" else lost.assign(base_clv=np.nan)
    out = out.fillna({"churned": 0, "lost_ltv": 0.0})
    out["churned"] = out.churned.astype(int)
    total = float(out.lost_ltv.sum())
    out["share"] = out.lost_ltv / total if total > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rate"] = np.where(out.base_clv > 0, out.lost_ltv / out.base_clv, np.nan)
    out = out.reset_index().rename(columns={by: "group"})
    out = out.sort_values("lost_ltv", ascending=False, kind="stable")
    if order is not None:
        rank = {g: i for i, g in enumerate(order)}
        out["_o"] = out.group.map(lambda g: rank.get(g, len(rank)))
        out = out.sort_values("_o", kind="stable").drop(columns="_o")
    return out[["group", "churned", "lost_ltv", "share", "base_clv", "rate"]].reset_index(drop=True)


def material(lost: float, base: float) -> bool:
    """Whether a loss is worth a slide: at least one currency unit and 0.01% of the base.

    Customers whose dormancy is declared long after they stopped buying are valued near zero
    at the last snapshot before the churn date; sums of such crumbs would otherwise become
    "the largest share" of a loss that rounds to nothing.
    """
    lost = float(lost) if lost is not None else 0.0
    base = float(base) if base is not None and np.isfinite(base) else 0.0
    return bool(np.isfinite(lost) and lost >= max(1.0, 1e-4 * base))


def top_lost(ledger: pd.DataFrame, details: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` churned customers with the largest lost LTV, with their details.

    ``details`` is one row per customer (e.g. ``customer_id, customer_name, tier, industry,
    reason, competitor, lost_value``); ties are broken by customer id for a stable order.
    """
    lost = ledger[ledger.churned & ledger.lost_ltv.notna()]
    lost = lost.sort_values(["lost_ltv", "customer_id"], ascending=[False, True]).head(n)
    cols = ["customer_id", "churned_at", "loss_snapshot", "lost_ltv"]
    return lost[cols].merge(details, on="customer_id", how="left").reset_index(drop=True)
