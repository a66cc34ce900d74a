"""The feature catalogue and as-of snapshots: what we knew about each customer on a date.

Every feature is computed in the query engine (Ibis) from events strictly *before* its
snapshot date; nothing on or after the snapshot day is read. Snapshot labels come from the
shared churn definition (:mod:`fupan.measures.outcomes`), evaluated as of the day before the snapshot
(who is still a customer) and as of the end of the horizon (who churned within it).

Public API
----------
``CATALOGUE``
    feature name -> :class:`Feature` (definition, unit, source table, kind).
``available(ds)``
    the catalogue names computable from the tables present (``dim_*`` expanded).
``feature_expr(ds, pairs, names)``
    an Ibis expression: one row per (customer, snapshot date) pair, the features as columns.
``customer_features_before(ds, day, names)``
    one row per customer acquired before ``as_of``, as a pandas DataFrame.
``monthly_snapshot_dates(as_of, months, horizon_days)``
    monthly snapshot dates whose labels are fully observed by ``as_of``.
``dormancy_snapshot_dates(first_day, as_of, dormancy_days)``
    dates one dormancy apart, for churn learned from orders alone.
``snapshots(ds, dates, horizon_days, names)``
    features + label per live customer per snapshot.
``split(snap, test_months, horizon_days)``
    earlier snapshots to fit on, later ones to judge on, no outcome overlapping the later.

Each source table's aggregates and feature columns are in :mod:`fupan.measures.feature_tables`;
day arithmetic uses integer day numbers (days since 1970-01-01) so that the same expressions
run on DuckDB, Spark or a warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from fupan.core import progress
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes
from fupan.measures.feature_tables import (
    QUARTER,
    _activity_block,
    _activity_columns,
    _contract_block,
    _contract_columns,
    _day,
    _first_repeat,
    _order_block,
    _order_columns,
    _survey_block,
    _survey_columns,
    _ticket_block,
    _ticket_columns,
    _touch_blocks,
    _touch_columns,
    activity_period_days,
)

Kind = Literal["numeric", "binary", "categorical"]


@dataclass(frozen=True)
class Feature:
    """One catalogue entry.

    Parameters
    ----------
    name : the column name everywhere (results.json, params, labels ``feat.<name>``).
    definition : what it measures, precisely enough to recompute it by hand.
    unit : days, weeks, count, currency, ratio, score, flag or category.
    source : the contract table(s) it is computed from.
    kind : numeric, binary (0/1) or categorical (text).
    """

    name: str
    definition: str
    unit: str
    source: str
    kind: Kind = "numeric"


_F = Feature


CATALOGUE: dict[str, Feature] = {
    f.name: f
    for f in (
        _F(
            "recency_days",
            "days from the last order with amount > 0 to the snapshot; days since "
            "acquisition when there is none",
            "days",
            "orders",
        ),
        _F(
            "orders_90d",
            "orders with amount > 0 in the 90 days before the snapshot",
            "count",
            "orders",
        ),
        _F(
            "orders_365d",
            "orders with amount > 0 in the 365 days before the snapshot",
            "count",
            "orders",
        ),
        _F(
            "spend_90d",
            "net order amount (refunds subtracted) in the 90 days before the snapshot",
            "currency",
            "orders",
        ),
        _F(
            "spend_365d",
            "net order amount (refunds subtracted) in the 365 days before the snapshot",
            "currency",
            "orders",
        ),
        _F(
            "spend_change_qoq",
            "(spend in the 90 days before the snapshot - spend in the 90 days "
            "before those) / the latter, clipped to [-1, 1]; 0 when the earlier window has no "
            "positive spend",
            "ratio",
            "orders",
        ),
        _F(
            "order_gap_ratio",
            "recency_days / the customer's mean gap between orders with amount "
            "> 0 ((last - first) / (orders - 1)); empty with fewer than two orders",
            "ratio",
            "orders",
        ),
        _F("tenure_days", "days from acquired_at to the snapshot", "days", "customers"),
        _F(
            "tier",
            "the tier the business assigns today (the data holds no tier history, so it "
            "may reflect what happened after the snapshot)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "region",
            "the customer's region (customers.region)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "industry",
            "the customer's industry (customers.industry)",
            "category",
            "customers",
            "categorical",
        ),
        _F(
            "acquisition_channel",
            "channel the customer was acquired through",
            "category",
            "customers",
            "categorical",
        ),
        _F("touches_30d", "touches in the 30 days before the snapshot", "count", "touches"),
        _F("touches_90d", "touches in the 90 days before the snapshot", "count", "touches"),
        _F(
            "days_since_touch",
            "days from the last touch to the snapshot; days since acquisition when never touched",
            "days",
            "touches",
        ),
        _F(
            "no_touch_after_first_repeat",
            "1 once N days have passed after the first repeat "
            "purchase (the second order with amount > 0) with no touch on that day or the N days "
            "after it; else 0 (N = churn.first_repeat_touch_days, default 7)",
            "flag",
            "orders, touches",
            "binary",
        ),
        _F("tickets_90d", "tickets opened in the 90 days before the snapshot", "count", "tickets"),
        _F(
            "tickets_change_qoq",
            "(tickets opened in the 90 days before the snapshot - tickets in "
            "the 90 days before those) / the latter, clipped to [-1, 1]; 0 when the earlier window "
            "has none",
            "ratio",
            "tickets",
        ),
        _F(
            "median_first_response_days",
            "median days from opened_at to first_response_at over "
            "tickets opened in the 180 days before the snapshot; a ticket still unanswered at the "
            "snapshot counts with the days it has waited so far; 0 when there is no ticket",
            "days",
            "tickets",
        ),
        _F(
            "open_tickets",
            "tickets opened before the snapshot and not resolved before it",
            "count",
            "tickets",
        ),
        _F(
            "sla_breaches_90d",
            "tickets opened in the 90 days before the snapshot whose first "
            "response took (or, unanswered, has waited) longer than the SLA of the customer's "
            "tier (benchmarks.sla_first_response_days; today's tier, as the data holds no "
            "tier history)",
            "count",
            "tickets",
        ),
        _F("nps_latest", "NPS (0-10) of the latest survey before the snapshot", "score", "surveys"),
        _F("nps_change", "latest NPS minus the NPS of the survey before it", "score", "surveys"),
        _F(
            "detractor",
            "1 if the latest survey before the snapshot has NPS <= 6; 0 otherwise "
            "(also never surveyed)",
            "flag",
            "surveys",
            "binary",
        ),
        _F("csat_latest", "the latest CSAT (1-5) recorded before the snapshot", "score", "surveys"),
        _F(
            "logins_28d",
            "logins in activity periods that ended in the 28 days before the snapshot",
            "count",
            "activity",
        ),
        _F(
            "weeks_without_login",
            "consecutive whole weeks with zero logins immediately before "
            "the snapshot (only activity periods that ended before it), capped at "
            "churn.login_gap_cap_weeks (default 12)",
            "weeks",
            "activity",
        ),
        _F(
            "days_to_renewal",
            "days from the snapshot to the end_date of the latest contract "
            "started before it and still running; empty without one",
            "days",
            "contracts",
        ),
        _F(
            "no_running_contract",
            "1 when the customer has had a contract that started before the snapshot but none "
            "is running at it (the last one ended unrenewed); 0 otherwise, also for customers "
            "who never had a contract",
            "flag",
            "contracts",
            "binary",
        ),
    )
}

DIM_PREFIX = "dim_"
# Surveys carry any number of dim_* scores; each becomes a feature named after its column.
DIM_DEFINITION = "the latest {name} score recorded before the snapshot"

_BLOCKS: dict[str, tuple[str, ...]] = {
    "customers": ("tenure_days", "tier", "region", "industry", "acquisition_channel"),
    "orders": (
        "recency_days",
        "orders_90d",
        "orders_365d",
        "spend_90d",
        "spend_365d",
        "spend_change_qoq",
        "order_gap_ratio",
    ),
    "touches": ("touches_30d", "touches_90d", "days_since_touch", "no_touch_after_first_repeat"),
    "tickets": (
        "tickets_90d",
        "tickets_change_qoq",
        "median_first_response_days",
        "open_tickets",
        "sla_breaches_90d",
    ),
    "surveys": ("nps_latest", "nps_change", "detractor", "csat_latest"),
    "activity": ("logins_28d", "weeks_without_login"),
    "contracts": ("days_to_renewal", "no_running_contract"),
}
_BLOCK_OF = {name: block for block, names in _BLOCKS.items() for name in names}
# Optional customer columns: present only when the source has them.
_OPTIONAL_CUSTOMER_COLS = ("acquisition_channel",)


def feature(name: str) -> Feature:
    """The catalogue entry for ``name`` (``dim_*`` survey dimensions included)."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith(DIM_PREFIX):
        return Feature(name, DIM_DEFINITION.format(name=name), "score", "surveys")
    raise KeyError(f"'{name}' is not in the feature catalogue; known: {sorted(CATALOGUE)}")


def _dims(ds: Dataset) -> list[str]:
    if not ds.has("surveys"):
        return []
    return sorted(c for c in ds["surveys"].columns if c.startswith(DIM_PREFIX))


def available(ds: Dataset) -> list[str]:
    """Catalogue names computable from the tables present in ``ds``, in catalogue order."""
    customer_cols = set(ds["customers"].columns)
    out = []
    for name in CATALOGUE:
        block = _BLOCK_OF[name]
        if block == "customers" and name not in ("tenure_days",) and name not in customer_cols:
            continue
        if block not in ("customers", "orders") and not ds.has(block):
            continue
        out.append(name)
    return out + _dims(ds)


def kinds(names: Iterable[str]) -> dict[str, Kind]:
    """numeric / binary / categorical for each feature name."""
    return {n: feature(n).kind for n in names}


# --------------------------------------------------------------------------------------
# The feature query: the (customer, snapshot) pairs joined to each source table's block
# (:mod:`fupan.measures.feature_tables`)


def _pairs_table(ds: Dataset, pairs: pd.DataFrame | ir.Table) -> ir.Table:
    if isinstance(pairs, pd.DataFrame):
        frame = pd.DataFrame(
            {
                "customer_id": pairs["customer_id"].astype(str).to_numpy(),
                "snapshot_date": pd.to_datetime(pairs["snapshot_date"]).dt.date.to_numpy(),
            }
        )
        pairs = ibis.memtable(frame)
    return pairs.select("customer_id", sd=_day(pairs.snapshot_date.cast("date")))


def _left(x: ir.Table, block: ir.Table, tag: str) -> ir.Table:
    # Keys renamed apart rather than dropped after the join: every block then extends one
    # join chain instead of wrapping the last join in a projection. Ibis emits half the SQL
    # (18k characters, not 33k) and compiles it faster: a fixed cost that dominated the
    # feature query at 10k customers.
    b = block.rename({f"{tag}_cid": "customer_id", f"{tag}_sd": "sd"})
    return x.left_join(b, [x.customer_id == b[f"{tag}_cid"], x.sd == b[f"{tag}_sd"]])


def feature_expr(
    ds: Dataset, pairs: pd.DataFrame | ir.Table, names: Sequence[str] | None = None
) -> ir.Table:
    """Features for (customer, snapshot date) pairs, as an Ibis expression.

    Parameters
    ----------
    ds : the dataset.
    pairs : ``customer_id, snapshot_date`` rows (a DataFrame or an Ibis table).
    names : catalogue names to compute (default: every available one).

    Returns
    -------
    Ibis table with ``customer_id, snapshot_date`` and one column per feature. Every value
    uses only events dated strictly before the row's snapshot date.
    """
    names = _computable(ds, names)
    want = set(names)
    blocks = _blocks_for(names)
    cust_cols = [n for n in ("tier", "region", "industry", "acquisition_channel") if n in want]
    # All joins first, then every column from the final relation.
    x, act_first = _joined(ds, _pairs_table(ds, pairs), blocks, want, cust_cols)
    tenure = x.sd - x.ad
    cols: dict[str, ir.Value] = {"tenure_days": tenure}
    if "orders" in blocks:
        cols.update(_order_columns(x, tenure))
    if "touches" in blocks:
        cols.update(_touch_columns(ds, x, tenure, want))
    if "tickets" in blocks:
        cols.update(_ticket_columns(x))
    if "surveys" in blocks:
        cols.update(_survey_columns(x, [n for n in names if n.startswith(DIM_PREFIX)]))
    if "activity" in blocks:
        cols.update(_activity_columns(ds, x, act_first))
    if "contracts" in blocks:
        cols.update(_contract_columns(x))
    for n in cust_cols:
        cols[n] = x[n]
    return x.select(
        "customer_id",
        snapshot_date=(ibis.date("1970-01-01") + x.sd.as_interval("D")).cast("date"),
        **{n: cols[n] for n in names},
    )


def _computable(ds: Dataset, names: Sequence[str] | None) -> list[str]:
    """The names asked for (default: every available one); a name the tables present
    cannot give is an error naming what can be given."""
    names = list(available(ds) if names is None else names)
    avail = set(available(ds))
    bad = [n for n in names if n not in avail]
    if bad:
        raise KeyError(
            f"features {bad} cannot be computed from the tables present "
            f"(available: {sorted(avail)})"
        )
    return names


def _blocks_for(names: Sequence[str]) -> set[str]:
    """The source tables' blocks the names read (the first-repeat flag also reads orders)."""
    blocks = {_BLOCK_OF.get(n, "surveys") for n in names}
    if "no_touch_after_first_repeat" in names:
        blocks.add("orders")
    return blocks


def _joined(
    ds: Dataset, base0: ir.Table, blocks: set[str], want: set[str], cust_cols: list[str]
) -> tuple[ir.Table, ir.Value | None]:
    """The pairs joined to the customers and to each block's aggregates, one join chain;
    with activity, also the day tracking began (``act_first``, else None)."""
    c = ds["customers"]
    cust = c.select("customer_id", *cust_cols, ad=_day(c.acquired_at))
    x = base0.join(cust, "customer_id")
    act_first = None
    if "orders" in blocks:
        x = _left(x, _order_block(ds, base0), "o")
    if "touches" in blocks:
        x = _left(x, _touch_blocks(ds, base0), "t")
        if "no_touch_after_first_repeat" in want:
            rep = _first_repeat(ds).rename(r_cid="customer_id")
            x = x.left_join(rep, x.customer_id == rep.r_cid)
    if "tickets" in blocks:
        x = _left(x, _ticket_block(ds, base0), "k")
    if "surveys" in blocks:
        x = _left(x, _survey_block(ds, base0, _dims(ds)), "s")
    if "activity" in blocks:
        x = _left(x, _activity_block(ds, base0, activity_period_days(ds.root)), "a")
        if ds.parent is None:
            act = ds["activity"]
            x = x.cross_join(act.aggregate(x_act_first=_day(act.period_start).min()))
            act_first = x.x_act_first
        else:
            # when tracking began is a fact of the whole table, not of a sample's rows
            act = ds.root["activity"]
            first = act.aggregate(f=_day(act.period_start).min()).to_pyarrow()["f"][0].as_py()
            act_first = ibis.literal(first, type="int64")
    if "contracts" in blocks:
        x = _left(x, _contract_block(ds, base0), "c")
    return x, act_first


def to_frame(expr: ir.Table, names: Sequence[str]) -> pd.DataFrame:
    """A :func:`feature_expr` result in pandas: dates as datetimes, categorical features as
    objects with ``None`` for missing, every other feature as float64."""
    df = engine.to_pandas(expr)
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    for n in names:
        k = feature(n).kind
        if k == "categorical":
            df[n] = df[n].astype(object).where(df[n].notna(), None)
        else:
            df[n] = pd.to_numeric(df[n], errors="coerce").astype("float64")
    return df


def customer_features_before(
    ds: Dataset, day: str | dt.date | pd.Timestamp, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """The catalogue's features of every customer acquired strictly before ``day``, from
    events strictly before ``day`` (a snapshot on ``day``: nothing of that day is read).

    For the run's view *on or before* a date (order totals, trailing-year spend) see
    :func:`fupan.measures.segments.customer_features_as_of`.

    Returns
    -------
    DataFrame, one row per customer: ``customer_id, snapshot_date`` (``day``) and the
    features.
    """
    names = list(available(ds) if names is None else names)
    day = pd.Timestamp(day).date()
    c = ds["customers"]
    pairs = c.filter(c.acquired_at < ibis.literal(day)).select(
        "customer_id", snapshot_date=ibis.literal(day)
    )
    df = to_frame(feature_expr(ds, pairs, names), names)
    return df.sort_values("customer_id").reset_index(drop=True)


def monthly_snapshot_dates(
    as_of: str | dt.date | pd.Timestamp, months: int, horizon_days: int
) -> list[pd.Timestamp]:
    """``months`` month-start dates, the last one the latest whose horizon ends by ``as_of``."""
    end = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=horizon_days - 1)
    last = end.to_period("M").to_timestamp()
    return [last - pd.DateOffset(months=k) for k in range(months - 1, -1, -1)]


def dormancy_snapshot_dates(
    first_day: str | dt.date | pd.Timestamp,
    as_of: str | dt.date | pd.Timestamp,
    dormancy_days: int,
    min_history_days: int = QUARTER,
) -> list[pd.Timestamp]:
    """Snapshot dates ``dormancy_days`` apart whose dormancy-length outcome is seen by ``as_of``.

    Under a dormancy rule a live customer can churn within ``dormancy_days`` of any date
    (their clock is already running), but within a shorter horizon only if their last order
    is old already: the label would be the rule itself. Dates spaced by the dormancy make
    each interval ``[s, next s)`` a window in which every live customer's churn is possible
    and observed, with no customer's outcome counted twice.

    Parameters
    ----------
    first_day : the first day of data (earliest order or acquisition).
    as_of : the last day of data.
    dormancy_days : the dormancy of the churn definition.
    min_history_days : the first date leaves at least this much history for the features.

    Returns
    -------
    Dates in ascending order, the last the latest whose window ``[s, s + dormancy)`` ends by
    ``as_of``; empty when the history is too short for one.
    """
    last = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=dormancy_days - 1)
    first = pd.Timestamp(first_day).normalize() + pd.Timedelta(days=min_history_days)
    out = []
    s = last
    while s >= first:
        out.append(s)
        s = s - pd.Timedelta(days=dormancy_days)
    return out[::-1]


def _status_at(ds: Dataset, day: pd.Timestamp, cache: dict[pd.Timestamp, pd.DataFrame]):
    if day not in cache:
        st = outcomes.churn_status(ds, day.date())
        cache[day] = st[["customer_id", "acquired_at", "churned_at"]]
    return cache[day]


def snapshots(
    ds: Dataset,
    dates: Sequence[str | dt.date | pd.Timestamp],
    horizon_days: int,
    names: Sequence[str] | None = None,
    max_customers: int | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Features and churn label per live customer per snapshot date.

    A customer is in snapshot ``s`` when acquired before ``s`` and not churned by the day
    before ``s`` (the churn definition evaluated on what was known then). The label says
    whether the customer churned on a day in ``[s, s + horizon_days)``, by the churn
    definition evaluated on the last day of that horizon.

    Parameters
    ----------
    ds : the dataset.
    dates : snapshot dates.
    horizon_days : H, the label window.
    names : features to compute (default: all available).
    max_customers : keep a random subset of at most this many customers (seeded), for
        models that need not see every customer.
    random_state : seed of that subset's draw (scikit-learn's name; the params' ``seed``).

    Returns
    -------
    DataFrame with ``customer_id, snapshot_date``, the features, ``label`` (bool),
    ``label_churned_at`` (the churn date within the horizon, else NaT) and
    ``label_complete`` (the horizon ends on or before the dataset's ``as_of``).
    """
    names = list(available(ds) if names is None else names)
    as_of = pd.Timestamp(ds.params.as_of)
    cache: dict[pd.Timestamp, pd.DataFrame] = {}
    work = ds
    if max_customers is not None:
        ids = np.sort(ds["customers"].select("customer_id").to_pandas()["customer_id"].to_numpy())
        if len(ids) > max_customers:
            rng = np.random.default_rng(random_state)
            # the sample's rows only: ~45 churn-status and one feature query read 2% of the
            # events at 1M customers, not all of them
            work = ds.subset(rng.choice(ids, size=max_customers, replace=False))
    parts = []
    one = pd.Timedelta(days=1)
    for raw in progress.bar(dates, "snapshot queries", unit="date"):
        s = pd.Timestamp(raw).normalize()
        before = _status_at(work, s - one, cache)
        live = before[(before.acquired_at < s) & before.churned_at.isna()]
        end = min(s + pd.Timedelta(days=horizon_days) - one, as_of)
        after = _status_at(work, end, cache).set_index("customer_id").churned_at
        frame = pd.DataFrame({"customer_id": live.customer_id.to_numpy(), "snapshot_date": s})
        churned_at = after.reindex(frame.customer_id).to_numpy()
        in_window = pd.Series(churned_at).between(s, end).to_numpy()
        frame["label_churned_at"] = pd.to_datetime(np.where(in_window, churned_at, pd.NaT))
        frame["label"] = in_window
        frame["label_complete"] = s + pd.Timedelta(days=horizon_days) - one <= as_of
        parts.append(frame)
    pairs = pd.concat(parts, ignore_index=True)
    if pairs.empty:
        cols = [
            "customer_id",
            "snapshot_date",
            *names,
            "label",
            "label_churned_at",
            "label_complete",
        ]
        return pd.DataFrame(columns=cols)
    feats = to_frame(feature_expr(work, pairs[["customer_id", "snapshot_date"]], names), names)
    if work is not ds:
        work.close()
    out = pairs.merge(feats, on=["customer_id", "snapshot_date"], how="left", validate="1:1")
    out = out[
        ["customer_id", "snapshot_date", *names, "label", "label_churned_at", "label_complete"]
    ]
    return out.sort_values(["snapshot_date", "customer_id"]).reset_index(drop=True)


def split(
    snap: pd.DataFrame, test_months: int, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Earlier snapshots to fit on, later ones to judge on, with no overlap in outcomes.

    The test period is the last ``test_months`` snapshot dates. A training snapshot is kept
    only if its label window ``[s, s + horizon)`` ends before the test period starts, so
    nothing a model learns from happened during the period it is judged on.

    Returns
    -------
    (train, test, first test date)
    """
    dates = np.sort(snap.snapshot_date.unique())
    if len(dates) < 2:
        raise ValueError(
            "need at least two snapshot dates to fit on one period and judge on a later one"
        )
    k = min(test_months, len(dates) - 1)
    start = pd.Timestamp(dates[-k])
    train = snap[snap.snapshot_date + pd.Timedelta(days=horizon_days) <= start]
    test = snap[snap.snapshot_date >= start]
    return train, test, start
