"""The churn model's rows: when each churn happened, which monthly snapshots have a fully
known outcome, the catalogue features at those snapshots, and each projected customer's
last months (:func:`trajectories`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import _ID
from fupan.core.params import Params
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import features as F

# --------------------------------------------------------------------------------------
# Churn dates and the fitting snapshots


def effective_churn_dates(status: pd.DataFrame) -> pd.Series:
    """The day each churned customer's relationship ended (NaT for customers not churned).

    Recorded churn and contract ends keep their date; churn inferred from dormancy is dated
    on the last order (or acquisition when there was none), not a dormancy period later.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status`.

    Returns
    -------
    Series indexed by ``customer_id``.
    """
    eff = pd.to_datetime(status["churned_at"]).copy()
    dorm = (status["source"] == "dormancy").to_numpy()
    fallback = pd.to_datetime(status["last_order"]).fillna(pd.to_datetime(status["acquired_at"]))
    eff[dorm] = fallback[dorm]
    return pd.Series(eff.to_numpy(), index=status["customer_id"].to_numpy(), name="churn_date")


def outcomes_known_until(params: Params, ds: Dataset) -> pd.Timestamp:
    """The last day on which every churn is known by ``as_of``.

    A customer who stopped buying on day d is known to have churned only ``dormancy_days``
    later; a contract that ended is known to be lost ``grace_days`` later.
    """
    as_of = pd.Timestamp(params.as_of).normalize()
    if params.business_model == "contractual" and ds.has("contracts"):
        lag = params.churn_definition.grace_days
    else:
        lag = params.churn_definition.dormancy_days
    return as_of - pd.Timedelta(days=lag)


def fit_dates(known_until: pd.Timestamp, months: int) -> list[pd.Timestamp]:
    """``months`` month starts whose following month ends on or before ``known_until``."""
    last = (known_until + pd.Timedelta(days=1) - pd.DateOffset(months=1)).to_period("M")
    last_ts = last.to_timestamp()
    return [last_ts - pd.DateOffset(months=k) for k in range(months - 1, -1, -1)]


def _ns(day: pd.Timestamp, n: int) -> np.ndarray:
    """``day`` repeated ``n`` times in the unit the feature tables use (pandas would keep a
    Timestamp's microseconds, and every join would convert them again)."""
    return np.full(n, pd.Timestamp(day).to_datetime64(), dtype="datetime64[ns]")


def _coerce(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    kinds = F.kinds(names)
    for n in names:
        if kinds[n] == "categorical":
            df[n] = df[n].astype(object).where(df[n].notna(), None)
        else:
            df[n] = pd.to_numeric(df[n], errors="coerce").astype("float64")
    return df


def _feature_table(ds: Dataset, pairs: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The catalogue features of the distinct ``(customer_id, snapshot_date)`` in ``pairs``.

    One query serves several sets of pairs (the fit's snapshots, the projected customers'
    months): each feature query re-reads every event table and recompiles a large
    expression, and a pair's features do not depend on the other pairs asked with it.
    """
    ids = pairs[_ID].copy()
    ids["snapshot_date"] = pd.to_datetime(ids["snapshot_date"]).astype("datetime64[ns]")
    ids = ids.drop_duplicates().reset_index(drop=True)
    if ids.empty:
        out = ids
        for n in names:
            out[n] = pd.Series(dtype=object if F.kinds([n])[n] == "categorical" else float)
        return out
    out = engine.to_pandas(F.feature_expr(ds, ids, list(names)))
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).astype("datetime64[ns]")
    return _coerce(out[[*_ID, *names]], names)


def _with_features(pairs: pd.DataFrame, table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``pairs`` (customer_id, snapshot_date, ...) with ``names`` from ``table`` joined on,
    sorted by customer and snapshot."""
    pairs = pairs.copy()
    pairs["snapshot_date"] = pd.to_datetime(pairs["snapshot_date"]).astype("datetime64[ns]")
    if pairs.empty:
        for n in names:
            pairs[n] = pd.Series(dtype=object if F.kinds([n])[n] == "categorical" else float)
        return pairs
    out = pairs.merge(table[[*_ID, *names]], on=_ID, how="left", validate="1:1")
    return out.sort_values(_ID, kind="stable").reset_index(drop=True)


def _more_features(
    ds: Dataset, table: pd.DataFrame | None, pairs: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """``table`` (``names`` of some pairs, or None) extended to hold every pair in ``pairs``:
    only the pairs it lacks are asked for (:func:`_feature_table`)."""
    if table is None:
        return _feature_table(ds, pairs, names)
    ids = pairs[_ID].copy()
    ids["snapshot_date"] = pd.to_datetime(ids["snapshot_date"]).astype("datetime64[ns]")
    ids = ids[~pd.MultiIndex.from_frame(ids).isin(pd.MultiIndex.from_frame(table[_ID]))]
    table = table[[*_ID, *names]]
    if ids.empty:
        return table
    return pd.concat([table, _feature_table(ds, ids, names)], ignore_index=True)


def fit_frame(
    ds: Dataset,
    status: pd.DataFrame,
    dates: Sequence[pd.Timestamp],
    names: Sequence[str],
    max_customers: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per customer still a customer at each snapshot, with its monthly churn label.

    A customer is at risk at snapshot ``s`` when acquired before ``s`` and not churned before
    ``s`` (:func:`effective_churn_dates`); the label says she churned before the next month's
    snapshot. ``exact`` marks customers whose churn date is exact (not inferred from
    dormancy).

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date, label, exact`` and the features.
    """
    pairs = _fit_pairs(status, dates, max_customers, seed)
    return _with_features(pairs, _feature_table(ds, pairs, names), names)


def _fit_pairs(
    status: pd.DataFrame,
    dates: Sequence[pd.Timestamp],
    max_customers: int | None,
    seed: int,
) -> pd.DataFrame:
    """:func:`fit_frame`'s rows before the features are joined on."""
    eff = effective_churn_dates(status)
    ids = status["customer_id"].to_numpy()
    acquired = pd.to_datetime(status["acquired_at"]).to_numpy()
    churn = eff.to_numpy()
    exact = (status["source"] != "dormancy").to_numpy()
    keep = np.ones(len(ids), bool)
    if max_customers is not None and len(ids) > max_customers:
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(np.sort(ids), size=max_customers, replace=False).tolist())
        # hash lookup: np.isin compares object arrays element by element (minutes at 100k)
        keep = engine.isin(ids, chosen)
    parts = []
    for s in dates:
        s = pd.Timestamp(s)
        nxt = (s + pd.DateOffset(months=1)).to_datetime64()
        s64 = s.to_datetime64()
        live = keep & (acquired < s64) & ~(churn < s64)
        if not live.any():
            continue
        c = churn[live]
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids[live],
                    "snapshot_date": _ns(s, int(live.sum())),
                    "label": (c >= s64) & (c < nxt),
                    "exact": exact[live],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["customer_id", "snapshot_date", "label", "exact"])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------
# Projection frames and scenario changes


def now_date(params: Params) -> pd.Timestamp:
    """The projection snapshot: the day after ``as_of`` (features include ``as_of`` itself)."""
    return pd.Timestamp(params.as_of).normalize() + pd.Timedelta(days=1)


def trajectories(
    ds: Dataset,
    customers: pd.DataFrame,
    now: pd.Timestamp,
    months: int,
    names: Sequence[str],
) -> pd.DataFrame:
    """Each customer's features at her last ``months`` monthly snapshots up to ``now``.

    Parameters
    ----------
    customers : ``customer_id, acquired_at`` of the customers to project.
    now : the latest snapshot (exclusive as-of date).

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date`` and ``names``; months before a customer's
    acquisition are left out.
    """
    pairs = _trajectory_pairs(customers, now, months)
    return _with_features(pairs, _feature_table(ds, pairs, names), names)


def _trajectory_pairs(customers: pd.DataFrame, now: pd.Timestamp, months: int) -> pd.DataFrame:
    """:func:`trajectories`' rows before the features are joined on."""
    acq = pd.to_datetime(customers["acquired_at"]).to_numpy()
    ids = customers["customer_id"].to_numpy()
    parts = []
    for k in range(months - 1, -1, -1):
        s = pd.Timestamp(now) - pd.DateOffset(months=k)
        ok = acq < s.to_datetime64()
        if ok.any():
            parts.append(
                pd.DataFrame({"customer_id": ids[ok], "snapshot_date": _ns(s, int(ok.sum()))})
            )
    if not parts:
        return pd.DataFrame(columns=_ID)
    return pd.concat(parts, ignore_index=True)
