"""The customer lifecycle: stage funnel, stage conversion and dwell time, cohort retention.

Lifecycle stages, in lifecycle order: first deal -> repeat -> active -> declining -> at risk
-> churned. Each customer is in exactly one stage at a date, by these rules (params
``diagnosis.stage_*``), each excluding the ones above it:

1. churned: lost by that date under the review's churn definition (:mod:`fupan.measures.outcomes`);
2. at risk: no order for ``stage_at_risk_days`` (counted from acquisition without orders);
   the threshold must sit below the churn dormancy, or the stage is empty by construction
   (a customer that quiet is already churned): :func:`at_risk_days` then uses half the
   dormancy and warns;
3. first deal: at most one order so far;
4. declining: spend in the last ``stage_trend_days`` below ``stage_declining_ratio`` x the
   spend in the ``stage_trend_days`` before, which was positive;
5. active: at least ``stage_active_orders`` orders in the last year;
6. repeat: everyone else (ordered more than once, recently, not yet a regular).

Conversion over the review period follows the customers in each stage at its start: the
share who made a repeat order (first deal) or became active at some month end (repeat),
and the share who by ``as_of`` stand at declining or worse, at risk or churned, or churned
(the later stages). Time spent per stage is the mean dwell implied by the month-to-month chance of
staying: 1 / (1 - p_stay) months.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fupan.core import i18n
from fupan.core.params import Params
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import metrics
from fupan.measures.outcomes import churn_status
from fupan.measures.segments import SegmentRule, as_date, assign_rules, trailing_start

STAGES = ("first_deal", "repeat", "active", "declining", "at_risk", "churned")
# What counts as moving on from each stage (the next step of the lifecycle or beyond it).
NEXT: dict[str, tuple[str, ...]] = {
    "first_deal": ("repeat_order",),
    "repeat": ("active",),
    "active": ("declining", "at_risk", "churned"),
    "declining": ("at_risk", "churned"),
    "at_risk": ("churned",),
}
# Moving on is progress for the first two steps and a loss for the others.
FORWARD = ("first_deal", "repeat")
MONTH_DAYS = 365.25 / 12


def at_risk_days(params: Params) -> tuple[int, bool]:
    """The at-risk stage's threshold in days, and whether it was derived.

    A customer without an order for ``churn_definition.dormancy_days`` is churned, and churn
    is tested first, so an at-risk threshold at or above the dormancy leaves the stage
    empty whatever the data. Then the threshold is half the dormancy (at least one day) and
    a warning says so; the slide states the rule in use.

    Returns
    -------
    (days, derived): ``derived`` is True when ``diagnosis.stage_at_risk_days`` was replaced.
    """
    days = params.diagnosis.stage_at_risk_days
    dormancy = params.churn_definition.dormancy_days
    if days < dormancy:
        return days, False
    derived = max(1, dormancy // 2)
    warnings.warn(
        f"diagnosis.stage_at_risk_days ({days}) is not below churn_definition.dormancy_days "
        f"({dormancy}): the at-risk stage would always be empty; using {derived} days "
        "(half the dormancy). Set diagnosis.stage_at_risk_days below the dormancy to choose.",
        UserWarning,
        stacklevel=2,
    )
    return derived, True


def stage_rules(params: Params) -> list[SegmentRule]:
    """The six stage rules as mutually exclusive predicates on a snapshot frame.

    Each rule is written out in full (not as "none of the rules above and ..."), so each
    test is evaluated once per rule: 13M rows at 1M customers.
    """
    d = params.diagnosis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warned once by the caller that shows the rules
        risk_days, _ = at_risk_days(params)

    def lost(x: pd.DataFrame) -> pd.Series:
        return x.churned

    def quiet(x: pd.DataFrame) -> pd.Series:
        return x.days_since_order >= risk_days

    def single(x: pd.DataFrame) -> pd.Series:
        return x.orders_total <= 1

    def drop(x: pd.DataFrame) -> pd.Series:
        return (x.spend_before > 0) & (x.spend_recent < d.stage_declining_ratio * x.spend_before)

    def regular(x: pd.DataFrame) -> pd.Series:
        return x.orders_year >= d.stage_active_orders

    def at_risk(x: pd.DataFrame) -> pd.Series:
        return ~lost(x) & quiet(x)

    def first_deal(x: pd.DataFrame) -> pd.Series:
        return ~lost(x) & ~quiet(x) & single(x)

    def settled(x: pd.DataFrame) -> pd.Series:
        """Not churned, not at risk, not a first deal: declining, active or repeat."""
        return ~lost(x) & ~quiet(x) & ~single(x)

    def declining(x: pd.DataFrame) -> pd.Series:
        return settled(x) & drop(x)

    def active(x: pd.DataFrame) -> pd.Series:
        return settled(x) & ~drop(x) & regular(x)

    def repeat(x: pd.DataFrame) -> pd.Series:
        return settled(x) & ~drop(x) & ~regular(x)

    funcs = {
        "churned": lost,
        "at_risk": at_risk,
        "first_deal": first_deal,
        "declining": declining,
        "active": active,
        "repeat": repeat,
    }
    return [SegmentRule(s, funcs[s]) for s in STAGES]


def month_end_dates(as_of: dt.date, months: int) -> list[dt.date]:
    """``as_of`` and the ``months`` month ends before it, oldest first: the dates the
    lifecycle funnel takes each customer's stage at (:func:`stage_snapshots`)."""
    ts = pd.Timestamp(as_of)
    ends = {(ts - pd.offsets.MonthEnd(i)).date() for i in range(1, months + 1)}
    return sorted(ends | {as_of})


def stage_snapshots(ds: Dataset, cuts: list[dt.date]) -> pd.DataFrame:
    """Each customer's stage at each date in ``cuts`` (one row per customer and date).

    Rows are ordered by date, then customer id. The order aggregates at every date come
    from one pass over the orders up to the last date; churn at each date is
    :func:`fupan.measures.outcomes.churn_status` at that date, so a snapshot uses only data up to it.

    Returns
    -------
    DataFrame with ``customer_id, cut, acquired_at, orders_total, last_order, orders_year,
    spend_recent, spend_before, days_since_order, churned, stage``.
    """
    params = ds.params
    cuts = sorted({as_date(c) for c in cuts})
    log = _OrderLog.read(ds, cuts[-1] if cuts else dt.date.min)
    rows, cols = _aggregates_at(log, cuts, params.diagnosis.stage_trend_days)
    snap = _snapshot_frame(log, rows, cols)
    snap["churned"] = _churned(ds, cuts, snap.cut.to_numpy(), _arrow(snap.customer_id))
    snap["stage"] = assign_rules(snap, stage_rules(params))
    return snap


#: a missing date as a day number: below every date, so max() passes it over
_NAT = np.datetime64("NaT", "D").view(np.int64)


def _days(date: dt.date) -> int:
    return int(np.datetime64(date, "D").astype(np.int64))


@dataclass
class _OrderLog:
    """Customers acquired by the last date and their orders up to it, as day numbers.

    A customer's code is their position in customer id order. Sorted by date, the orders
    up to a date are a prefix and a window is a slice.
    """

    ids: pa.Array  # customer ids in id order
    acquired: np.ndarray  # acquisition day per customer
    code: np.ndarray  # per order: the customer's position
    day: np.ndarray  # per order, ascending
    amount: np.ndarray  # per order

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def read(cls, ds: Dataset, last: dt.date) -> _OrderLog:
        last_cut = ibis.literal(last)
        # Only customers acquired by the last date can appear in a snapshot.
        c = ds["customers"].filter(lambda t: t.acquired_at <= last_cut)
        c = c.select(
            "customer_id", "acquired_at", code=ibis.row_number().over(order_by="customer_id")
        )
        cust = c.order_by("customer_id").to_pyarrow()
        o = ds["orders"].filter(lambda t: t.order_date <= last_cut)
        o = o.inner_join(c.select("customer_id", "code"), "customer_id")
        # Code and amount break ties, so the sums add in the same order on every run.
        o = o.select("code", "order_date", amount=o.amount.fill_null(0.0))
        orders = o.order_by(["order_date", "code", "amount"]).to_pyarrow()
        n = cust.num_rows
        position = np.empty(n, dtype=np.int64)
        position[cust.column("code").to_numpy()] = np.arange(n)
        return cls(
            ids=cust.column("customer_id").combine_chunks(),
            acquired=np.asarray(cust.column("acquired_at").to_numpy(), dtype="M8[D]").view(
                np.int64
            ),
            code=position[orders.column("code").to_numpy()],
            day=np.asarray(orders.column("order_date").to_numpy(), dtype="M8[D]").view(np.int64),
            amount=np.asarray(orders.column("amount").to_numpy(), dtype=float),
        )

    def upto(self, date: dt.date) -> int:
        """How many orders are dated on or before ``date``."""
        return int(np.searchsorted(self.day, _days(date), side="right"))

    def count(self, lo: int, hi: int) -> np.ndarray:
        return np.bincount(self.code[lo:hi], minlength=self.n)

    def spend(self, lo: int, hi: int) -> np.ndarray:
        return np.bincount(self.code[lo:hi], weights=self.amount[lo:hi], minlength=self.n)


def _aggregates_at(
    log: _OrderLog, cuts: list[dt.date], trend: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every date's order aggregates, one pass over the orders: the customers' codes (a
    block per date, id order) and the columns, as day numbers and amounts."""
    # One block of rows per date, customers in id order: filled in place, no concatenation.
    members = [np.flatnonzero(log.acquired <= _days(cut)) for cut in cuts]
    size = sum(len(m) for m in members)
    out = {
        "code": np.empty(size, dtype=np.int64),
        "cut": np.empty(size, dtype=np.int64),
        "orders_total": np.empty(size, dtype=np.int64),
        "last_order": np.empty(size, dtype=np.int64),
        "orders_year": np.empty(size, dtype=np.int64),
        "spend_recent": np.empty(size, dtype=float),
        "spend_before": np.empty(size, dtype=float),
    }
    total = np.zeros(log.n, dtype=np.int64)
    last = np.full(log.n, _NAT, dtype=np.int64)
    done = at = 0
    for cut, rows in zip(cuts, members, strict=True):
        end = log.upto(cut)
        # the lifetime count and the last order carry over from the date before
        total += log.count(done, end)
        np.maximum.at(last, log.code[done:end], log.day[done:end])
        done = end
        year = log.upto(trailing_start(cut) - dt.timedelta(days=1))
        recent = log.upto(cut - dt.timedelta(days=trend))
        before = log.upto(cut - dt.timedelta(days=2 * trend))
        block = slice(at, at + len(rows))
        out["code"][block] = rows
        out["cut"][block] = _days(cut)
        out["orders_total"][block] = total[rows]
        out["last_order"][block] = last[rows]
        out["orders_year"][block] = log.count(year, end)[rows]
        out["spend_recent"][block] = log.spend(recent, end)[rows]
        out["spend_before"][block] = log.spend(before, max(before, recent))[rows]
        at += len(rows)
    rows = out.pop("code")
    return rows, out


def _snapshot_frame(log: _OrderLog, rows: np.ndarray, out: dict[str, np.ndarray]) -> pd.DataFrame:
    """The aggregates as a frame: ids, dates as datetimes, days since the last order (or
    since acquisition, for a customer without one)."""
    start = np.where(out["last_order"] == _NAT, log.acquired[rows], out["last_order"])
    since = out["cut"] - start

    def stamp(day_numbers: np.ndarray) -> np.ndarray:
        return day_numbers.view("M8[D]").astype("M8[s]")

    # copy=False: each column stays its own array (pandas would otherwise copy them into
    # one block per dtype, a second pass over 13M rows at 1M customers)
    return pd.DataFrame(
        {
            "customer_id": log.ids.take(pa.array(rows)).to_pandas(),
            "cut": stamp(out["cut"]),
            "acquired_at": stamp(log.acquired[rows]),
            "orders_total": out["orders_total"],
            "last_order": stamp(out["last_order"]),
            "orders_year": out["orders_year"],
            "spend_recent": out["spend_recent"],
            "spend_before": out["spend_before"],
            "days_since_order": since,
        },
        copy=False,
    )


def _arrow(values: pd.Series) -> pa.Array:
    """A column as one Arrow array (no copy for Arrow-backed strings in one chunk)."""
    out = pa.array(values)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _churned(ds: Dataset, cuts: list[dt.date], at: np.ndarray, ids: pa.Array) -> np.ndarray:
    """:func:`fupan.measures.outcomes.churn_status`'s flag for each (customer, date) row.

    ``at`` is sorted. Each date's rows are looked up in that date's status: read in place
    when both list the same customers in the same order (the usual case), else by a hash
    lookup of the ids; a customer without a status row is not churned.
    """
    out = np.zeros(len(at), dtype=bool)
    bounds = [*np.searchsorted(at, np.array(cuts, dtype="M8[D]").astype(at.dtype)), len(at)]
    for i, cut in enumerate(cuts):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        st = churn_status(ds, cut)
        flags = st.churned.to_numpy(dtype=bool)
        mine = ids.slice(lo, hi - lo).cast(pa.large_string())
        theirs = _arrow(st.customer_id).cast(pa.large_string())
        if mine.equals(theirs):
            out[lo:hi] = flags
            continue
        if pc.count_distinct(theirs, mode="all").as_py() != len(theirs):
            raise ValueError(f"churn_status at {cut} lists a customer more than once")
        pos = pc.index_in(mine, value_set=theirs).to_numpy(zero_copy_only=False)
        found = ~np.isnan(pos)
        out[lo:hi][found] = flags[pos[found].astype(np.int64)]
    return out


def funnel_counts(stages: pd.Series) -> pd.DataFrame:
    """Customers per stage, in lifecycle order, with shares (they add up to the total)."""
    counts = stages.value_counts().reindex(list(STAGES), fill_value=0)
    out = counts.rename_axis("stage").reset_index(name="customers")
    out["share"] = out.customers / max(int(out.customers.sum()), 1)
    return out


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes, equal for equal values (missing values get one of their own), and their count.

    Customer ids are compared as codes: hashing 13M Arrow strings once is cheap, comparing
    them as Python strings again and again (merges, isin, reindex) is not.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, len(uniques)


def _stage_numbers(stages: pd.Series) -> np.ndarray:
    """Each row's position in :data:`STAGES`; -1 for anything else (missing included)."""
    codes, uniques = pd.factorize(stages)
    known = [STAGES.index(u) if u in STAGES else -1 for u in uniques]
    return np.array([*known, -1], dtype=np.int64)[codes]  # code -1 (missing) reads the last


def _slots(codes: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray | None:
    """``out[code]`` = the row among ``rows`` with that code, -1 for none; None if a code repeats."""
    out = np.full(size, -1, dtype=np.int64)
    out[codes[rows]] = rows
    # with a repeated code the later row wins and the earlier one does not read back
    return out if (out[codes[rows]] == rows).all() else None


def conversion(snapshots: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Stage-to-stage movement of the customers in each stage at ``start`` by ``end``.

    Progress counts once reached: a first-deal customer moved on if they ordered again by
    ``end``; a repeat customer if they were active at any month end up to ``end``. Decline
    counts where customers stand at ``end`` (a dip they recovered from is not a loss): an
    active customer slid on if declining, at risk or churned at ``end``, and so on.

    ``snapshots`` is :func:`stage_snapshots` (at least ``customer_id, cut, stage,
    orders_total``); each customer appears at most once at the last date up to ``end``.

    Returns
    -------
    DataFrame with ``stage, next, cohort, moved, rate, forward, lost`` where ``lost`` is the
    customers who failed to move on (forward steps) or slid on (later steps).
    """
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    cut = snapshots.cut
    first = (cut == s).to_numpy()
    later = ((cut > s) & (cut <= e)).to_numpy()
    final = (cut == cut[later].max()).to_numpy() if later.any() else first
    codes, size = _codes(snapshots.customer_id)
    stage = _stage_numbers(snapshots.stage)
    at_final = _slots(codes, np.flatnonzero(final), size)
    if at_final is None:
        raise ValueError("a customer appears twice in the final snapshot")
    # position -1 (not in the final snapshot) reads the appended missing value
    final_stage = np.append(stage, -1)
    final_orders = np.append(snapshots.orders_total.to_numpy(dtype=float), np.nan)
    first_codes, first_stage = codes[first], stage[first]
    rows = []
    for i, name in enumerate(STAGES[:-1]):
        ids = first_codes[first_stage == STAGES.index(name)]
        nxt = [STAGES.index(x) for x in NEXT[name] if x in STAGES]
        if name == "first_deal":
            moved = int((np.nan_to_num(final_orders[at_final[ids]], nan=0.0) >= 2).sum())
        elif name in FORWARD:
            seen = np.zeros(size, dtype=bool)
            seen[codes[later & np.isin(stage, nxt)]] = True
            seen[codes[snapshots.customer_id.isna().to_numpy()]] = False  # nunique skips NaN
            moved = int(seen[np.unique(ids)].sum())
        else:
            moved = int(np.isin(final_stage[at_final[ids]], nxt).sum())
        n = len(ids)
        rate = moved / n if n else np.nan
        forward = name in FORWARD
        rows.append(
            {
                "stage": name,
                "next": STAGES[i + 1],
                "cohort": n,
                "moved": moved,
                "rate": rate,
                "forward": forward,
                "lost": (n - moved) if forward else moved,
            }
        )
    return pd.DataFrame(rows)


def biggest_break(conv: pd.DataFrame) -> pd.Series:
    """The step that loses the most customers (see :func:`conversion`)."""
    return conv.loc[conv.lost.idxmax()]


def dwell_time(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Mean time in each stage from month-to-month transitions: 1 / (1 - p_stay) months.

    Consecutive snapshots must be about a month apart; the as_of snapshot (a partial month)
    is left out. Churned is absorbing and gets no dwell time. A transition is a customer's
    row at one month end paired with their row at the next (every pair, were a customer
    listed twice at a date).
    """
    values = snapshots.cut.to_numpy()
    rows = np.flatnonzero(snapshots.cut.dt.is_month_end.to_numpy())
    rows = rows[np.argsort(values[rows], kind="stable")]
    cuts = np.unique(values[rows])
    bounds = [*np.searchsorted(values[rows], cuts), len(rows)]
    codes, size = _codes(snapshots.customer_id)
    stage = _stage_numbers(snapshots.stage)
    now_parts, next_parts = [], []
    for i in range(len(cuts) - 1):
        a, b = rows[bounds[i] : bounds[i + 1]], rows[bounds[i + 1] : bounds[i + 2]]
        at_next = _slots(codes, b, size)
        if at_next is not None:
            pos = at_next[codes[a]]
            now_parts.append(stage[a[pos >= 0]])
            next_parts.append(stage[pos[pos >= 0]])
        else:  # a customer twice at the next date: every pairing, as a merge would make
            pairs = pd.DataFrame({"c": codes[a], "a": a}).merge(
                pd.DataFrame({"c": codes[b], "b": b}), on="c"
            )
            now_parts.append(stage[pairs.a.to_numpy()])
            next_parts.append(stage[pairs.b.to_numpy()])
    now = np.concatenate([np.zeros(0, dtype=np.int64), *now_parts])
    then = np.concatenate([np.zeros(0, dtype=np.int64), *next_parts])
    out = []
    for k, name in enumerate(STAGES):
        here = now == k
        n = int(here.sum())
        stay = int((then[here] == k).sum()) / n if n else np.nan
        months = 1.0 / (1.0 - stay) if name != "churned" and n and stay < 1 else np.nan
        out.append(
            {
                "stage": name,
                "transitions": n,
                "p_stay": stay,
                "months": months,
                "days": months * MONTH_DAYS if months == months else np.nan,
            }
        )
    return pd.DataFrame(out)


def stage_table(counts: pd.DataFrame, conv: pd.DataFrame, dwell: pd.DataFrame) -> pd.DataFrame:
    """Counts, conversion and dwell per stage in one frame.

    ``rate_why`` and ``days_why`` say why a rate or a dwell time is missing: ``final`` (the
    churned stage: no next step, no exit), ``no_cohort`` (nobody in the stage at the start),
    ``never_left`` (nobody left the stage in the months observed: dwell longer than the
    window) or ``not_seen`` (no month-to-month transition from the stage); None when there is a value (missing, not a string, when set).
    """
    out = counts.merge(
        conv[["stage", "cohort", "moved", "rate", "forward", "lost"]], on="stage", how="left"
    )
    out = out.merge(dwell[["stage", "days", "transitions", "p_stay"]], on="stage", how="left")

    def why_rate(stage: str, rate: float) -> str | None:
        if stage == "churned":
            return "final"
        return "no_cohort" if rate != rate else None

    def why_days(stage: str, days: float, seen: float, stay: float) -> str | None:
        if stage == "churned":
            return "final"
        if days == days:
            return None
        return "never_left" if seen > 0 and stay >= 1 else "not_seen"

    out["rate_why"] = [why_rate(s, r) for s, r in zip(out.stage, out.rate, strict=True)]
    out["days_why"] = [
        why_days(s, d, n, p)
        for s, d, n, p in zip(
            out.stage, out.days, out.transitions.fillna(0), out.p_stay, strict=True
        )
    ]
    return out


def stage_table_words(stages: pd.DataFrame, fmt: i18n.Fmt) -> pd.DataFrame:
    """:func:`stage_table` as the stages slide shows it, in ``fmt.lang``: stage names, the
    move out of each stage, and a reason in words where a cohort, rate or dwell time is
    missing (columns ``stage, customers, share, cohort, moved_label, rate, days``)."""

    def t(key: str) -> str:
        return i18n.t(key, fmt.lang)

    final = t("diag.stages.why.final")
    rates = zip(stages.rate, stages.rate_why, strict=True)
    days = zip(stages.days, stages.days_why, strict=True)
    out = stages.assign(
        stage=[t(f"diag.stage.{s}") for s in stages.stage],
        moved_label=[t(f"diag.stage.moved.{s}") if s in NEXT else final for s in stages.stage],
        cohort=[fmt.int(v) if v == v else final for v in stages.cohort],
        rate=[t(f"diag.stages.why.{w}") if isinstance(w, str) else fmt.pct(v) for v, w in rates],
        days=[t(f"diag.stages.why.{w}") if isinstance(w, str) else fmt.num(v, 0) for v, w in days],
    )
    return out[["stage", "customers", "share", "cohort", "moved_label", "rate", "days"]]


@dataclass
class Lifecycle:
    """The lifecycle funnel of a review: stages at each date, today's counts, conversion
    over the review period, dwell times, the per-stage table and the biggest break."""

    snapshots: pd.DataFrame
    now: pd.DataFrame
    counts: pd.DataFrame
    conversion: pd.DataFrame
    dwell: pd.DataFrame
    stages: pd.DataFrame
    biggest_break: pd.Series

    def break_summary(self) -> dict:
        """The biggest break as plain values (results.json)."""
        b = self.biggest_break
        return {
            "stage": b.stage,
            "next": b.next,
            "cohort": int(b.cohort),
            "lost": int(b.lost),
            "rate": b.rate,
            "forward": bool(b.forward),
        }


def lifecycle(ds: Dataset, as_of: dt.date, start: dt.date, months: int) -> Lifecycle:
    """Each customer's stage at ``as_of``, at the ``months`` month ends before it and at the
    review period's ``start``, and the funnel built from them (:class:`Lifecycle`)."""
    cuts = sorted(set(month_end_dates(as_of, months)) | {start})
    snap = stage_snapshots(ds, cuts)
    now = snap[snap.cut == pd.Timestamp(as_of)]
    counts = funnel_counts(now.stage)
    conv = conversion(snap, start, as_of)
    dwell = dwell_time(snap)
    table = stage_table(counts, conv, dwell)
    return Lifecycle(snap, now, counts, conv, dwell, table, biggest_break(conv))


def funnel_headline(life: Lifecycle, start: dt.date, fmt: i18n.Fmt) -> str:
    """The funnel slide's title in ``fmt.lang``: the step that lost the most customers of
    the stage's cohort at ``start`` (:func:`biggest_break`), or that no step lost any."""

    def t(key: str, **values: object) -> str:
        return i18n.t(key, fmt.lang, **values)

    brk, total = life.biggest_break, life.counts.customers.sum()
    if not brk.lost > 0:
        return t("diag.funnel.title_none", n=fmt.int(total))
    first = t(f"diag.stage.{brk.stage}")
    return t(
        "diag.funnel.title_forward" if brk.forward else "diag.funnel.title_slide",
        step=t("diag.funnel.step", a=first, b=t(f"diag.stage.{brk.next}")),
        lost=fmt.int(brk.lost),
        cohort=fmt.int(brk.cohort),
        share=fmt.pct(brk.lost / brk.cohort if brk.cohort else np.nan),
        date=start,
        first=first,
    )


def stages_headline(life: Lifecycle, fmt: i18n.Fmt) -> str:
    """The stages slide's title in ``fmt.lang``: how long customers stay active and how
    many at-risk customers move on, each when the data gives it."""

    def t(key: str, **values: object) -> str:
        return i18n.t(key, fmt.lang, **values)

    risk_rate = life.conversion.set_index("stage").rate.get("at_risk")
    active_days = life.dwell.set_index("stage").days.get("active")
    parts = []
    if active_days == active_days and active_days is not None:
        parts.append(t("diag.stages.title_active", active_days=fmt.days(active_days, 0)))
    if risk_rate == risk_rate and risk_rate is not None:
        parts.append(t("diag.stages.title_risk", risk_rate=fmt.pct(risk_rate)))
    return t("diag.stages.sep").join(parts) if parts else t("diag.stages.title_plain")


# --------------------------------------------------------------------------------------
# Cohort retention


def retention_curves(ds: Dataset, quarters: int = 8, cohorts: int | None = None) -> pd.DataFrame:
    """Share of each acquisition-quarter cohort that ordered in quarter k after acquisition.

    Quarter 0 is the acquisition quarter. Only quarters that ended by ``as_of`` are shown.

    Returns
    -------
    long DataFrame ``cohort`` (quarter start), ``k``, ``customers``, ``ordering``, ``retention``.
    """
    as_of = as_date(ds.params.as_of)
    c = ds["customers"].filter(lambda t: t.acquired_at <= ibis.literal(as_of))
    c = c.mutate(cohort=c.acquired_at.truncate("Q"))
    sizes = engine.to_pandas(c.group_by("cohort").aggregate(customers=c.count()))
    o = (
        ds["orders"]
        .select("customer_id", "order_date")
        .inner_join(c.select("customer_id", "cohort"), "customer_id")
    )
    o = o.mutate(
        k=(o.order_date.year() - o.cohort.year()) * 4
        + (o.order_date.quarter() - o.cohort.quarter())
    )
    o = o.filter((o.k >= 0) & (o.k <= quarters))
    act = engine.to_pandas(o.group_by(["cohort", "k"]).aggregate(ordering=o.customer_id.nunique()))
    sizes["cohort"] = pd.to_datetime(sizes.cohort)
    act["cohort"] = pd.to_datetime(act.cohort)
    grid = sizes.merge(pd.DataFrame({"k": range(quarters + 1)}), how="cross")
    out = grid.merge(act, on=["cohort", "k"], how="left")
    out["ordering"] = out.ordering.fillna(0).astype(int)
    # the quarter k ends the day before the cohort's quarter k + 1 starts
    months = out.cohort.dt.year * 12 + out.cohort.dt.month - 1 + 3 * (out.k + 1)
    q_next = pd.to_datetime({"year": months // 12, "month": months % 12 + 1, "day": 1})
    out = out[q_next <= pd.Timestamp(as_of) + pd.Timedelta(days=1)].copy()
    out["retention"] = out.ordering / out.customers
    out = out.sort_values(["cohort", "k"]).reset_index(drop=True)
    if cohorts:
        keep = sorted(out.cohort.unique())[-cohorts:]
        out = out[out.cohort.isin(keep)].reset_index(drop=True)
    return out


def cohort_label(ts: pd.Timestamp) -> str:
    return f"{ts.year}Q{(ts.month - 1) // 3 + 1}"


def retention_base_start(as_of: str | dt.date) -> dt.date:
    """The first day of the base year of :func:`revenue_retention` (:func:`fupan.measures.metrics.retention_base_start`)."""
    return metrics.retention_base_start(as_of)


def revenue_retention(features: pd.DataFrame, as_of: str | dt.date) -> pd.DataFrame:
    """Gross and net revenue retention by acquisition year, trailing year vs the year before.

    The catalogue's definition (:func:`fupan.measures.metrics.retention_from_features`): only
    customers acquired before the base year began count, so every base year is complete;
    those with no base revenue are left out (their revenue is new, not retained). Net:
    revenue now / revenue then. Gross: sum of min(now, then) / revenue then. Negative net
    revenue (refunds) counts as 0. The ``all`` row is the catalogue's NRR and GRR; when the
    orders do not reach back to the base year it has no customers (nothing can be judged).

    Parameters
    ----------
    features : :func:`fupan.measures.segments.customer_features_as_of` at ``as_of`` (``acquired_at``,
        ``first_order``, ``spend_12m``, ``spend_prior_12m``).
    as_of : the snapshot date of ``features``.
    """
    cols = ["cohort", "customers", "base_revenue", "revenue", "grr", "nrr"]
    whole = metrics.retention_from_features(features, as_of)
    if whole["reason"] == "history":
        return pd.DataFrame(
            [{"cohort": "all", "customers": 0, "base_revenue": 0.0, "revenue": 0.0}], columns=cols
        )
    df = features[metrics.in_retention_cohort(features.acquired_at.to_numpy(), as_of)]
    rows = []
    for key, g in [("all", df), *df.groupby(df.acquired_at.dt.year)]:
        sums = metrics.retention_sums(
            g.spend_12m.fillna(0).to_numpy(float), g.spend_prior_12m.fillna(0).to_numpy(float)
        )
        if key != "all" and sums["customers"] == 0:
            continue
        grr, nrr = metrics.retention_ratios(sums)
        rows.append(
            {
                "cohort": key,
                "customers": sums["customers"],
                "base_revenue": float(sums["base"]),
                "revenue": float(sums["net"]),
                "grr": np.nan if grr is None else grr,
                "nrr": np.nan if nrr is None else nrr,
            }
        )
    return pd.DataFrame(rows, columns=cols)
