"""From an order log to the per-customer summary the LTV models need, and a holdout check.

The aggregation runs in the query engine through Ibis: pandas only receives one row per
customer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from ._core import UNIT_DAYS, normalize_unit, wsum


def _as_date(value: Any, name: str) -> dt.date:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a date") from None
    if pd.isna(ts):
        raise ValueError(f"{name} is required")
    if ts != ts.normalize():
        raise ValueError(f"{name}={value!r} must be a date (midnight), not a time of day")
    return ts.date()


def _order_rows(
    orders: ir.Table | pd.DataFrame, customer_col: str, date_col: str, amount_col: str | None
) -> ir.Table:
    """``cid, day, amount`` of an order log, after checking its columns have no empty values."""
    table = ibis.memtable(orders) if isinstance(orders, pd.DataFrame) else orders
    if not isinstance(table, ir.Table):
        raise TypeError("orders must be an Ibis table expression or a pandas DataFrame")
    wanted = [customer_col, date_col] + ([amount_col] if amount_col else [])
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"orders lacks column(s) {missing}; it has {list(table.columns)}")

    # Exact decimal sums: a float sum's last bits depend on the order parallel threads combine
    # partial sums, and a fit amplifies that into run-to-run differences.
    amount = table[amount_col].cast("decimal(38, 4)") if amount_col else ibis.literal(0.0)
    rows = table.select(cid=table[customer_col], day=table[date_col].cast("date"), amount=amount)
    nulls = rows.aggregate(
        n_cid=rows.cid.isnull().sum(),
        n_day=rows.day.isnull().sum(),
        n_amt=rows.amount.isnull().sum(),
    ).to_pandas()
    for col, label in (("n_cid", customer_col), ("n_day", date_col), ("n_amt", amount_col)):
        count = int(nulls[col].iloc[0] or 0)
        if count:
            raise ValueError(f"orders.{label} has {count} empty values; fix or drop those rows")
    return rows


def summary_from_orders(
    orders: ir.Table | pd.DataFrame,
    as_of: Any,
    freq: str = "W",
    customer_col: str = "customer_id",
    date_col: str = "order_date",
    amount_col: str | None = "amount",
    calibration_end: Any = None,
) -> pd.DataFrame:
    """Per-customer frequency / recency / T / monetary summary of an order log.

    Parameters
    ----------
    orders : ibis.Table or pandas.DataFrame
        One row per order (or order line). A DataFrame is wrapped with ``ibis.memtable``
        and aggregated by the default backend (DuckDB).
    as_of : date
        Snapshot date, **exclusive**: only orders dated strictly before ``as_of`` are used
        (the project's as-of rule). The last observed day is ``as_of - 1 day``.
    freq : {"D", "W", "M", "Y"}
        Unit of ``recency``, ``T`` and ``duration_holdout`` (months are 365.25/12 days).
        Durations are whole days converted to this unit, so they may be fractional.
    customer_col, date_col, amount_col : str
        Column names. ``amount_col=None`` skips ``monetary``.
    calibration_end : date, optional
        Exclusive end of the calibration window; orders from ``calibration_end`` up to
        ``as_of`` form the holdout. Customers whose first purchase is on or after
        ``calibration_end`` are not in the summary.

    Returns
    -------
    pandas.DataFrame
        Indexed by customer, sorted, with columns

        - ``frequency``: repeat purchase days, i.e. distinct purchase days minus one
          (several orders on one day are one purchase);
        - ``recency``: last purchase day minus first purchase day;
        - ``T``: last observed day (end of calibration minus one day) minus first purchase
          day;
        - ``monetary``: net value of all orders dated after the first purchase day divided
          by ``frequency`` (0 when ``frequency`` is 0);
        - with ``calibration_end``: ``frequency_holdout`` (purchase days in the holdout)
          and ``duration_holdout`` (its length).

        ``attrs`` records ``time_unit``, ``as_of`` and ``calibration_end``.

    Notes
    -----
    Refunds are rows with a negative amount. A day counts as a purchase only if it has at
    least one row with amount >= 0; a day of refunds alone is not a purchase. Refund
    amounts still count in ``monetary`` when dated after the first purchase day, so a
    customer whose refunds outweigh her repeat purchases gets ``monetary <= 0``; the
    Gamma-Gamma model rejects such rows and callers decide what to do with them.
    """
    unit = normalize_unit(freq, "freq")
    end_all, cal_end = _summary_window(as_of, calibration_end)
    rows = _order_rows(orders, customer_col, date_col, amount_col)
    rows = rows.filter(rows.day < ibis.literal(end_all))
    days = rows.group_by(["cid", "day"]).aggregate(
        value=rows.amount.sum(), n_buy=(rows.amount >= 0).cast("int64").sum()
    )
    per = _calibration_summary(rows, days, cal_end)
    if calibration_end is not None:
        per = _with_holdout(per, days, cal_end)
    out = _summary_frame(per.to_pandas(), unit, customer_col, amount_col)
    if calibration_end is not None:
        out["duration_holdout"] = (end_all - cal_end).days / UNIT_DAYS[unit]
    out = out.sort_index()
    out.attrs.update(
        time_unit=unit,
        as_of=end_all.isoformat(),
        calibration_end=None if calibration_end is None else cal_end.isoformat(),
    )
    return out


def _summary_window(as_of: Any, calibration_end: Any) -> tuple[dt.date, dt.date]:
    """The exclusive ends of the observation and of the calibration (``as_of`` without a
    holdout); a holdout must lie inside the observation and not be empty."""
    end_all = _as_date(as_of, "as_of")
    cal_end = end_all if calibration_end is None else _as_date(calibration_end, "calibration_end")
    if cal_end > end_all:
        raise ValueError(f"calibration_end {cal_end} is after as_of {end_all}")
    if calibration_end is not None and cal_end == end_all:
        raise ValueError("calibration_end equals as_of: the holdout period would be empty")
    return end_all, cal_end


def _calibration_summary(rows: ir.Table, days: ir.Table, cal_end: dt.date) -> ir.Table:
    """Per customer with a purchase day in calibration: repeat days, recency and age in
    days, and the value of the rows after the first purchase day."""
    cal = rows.filter(rows.day < ibis.literal(cal_end))
    buys = days.filter((days.n_buy > 0) & (days.day < ibis.literal(cal_end)))
    first = buys.group_by("cid").aggregate(
        first_day=buys.day.min(), last_day=buys.day.max(), n_days=buys.count()
    )
    after = cal.join(first, "cid")
    repeat_value = after.group_by("cid").aggregate(
        repeat_value=ibis.cases((after.day > after.first_day, after.amount), else_=0)
        .sum()
        .cast("float64")
    )
    per = first.join(repeat_value, "cid")
    last_day = ibis.literal(cal_end) - ibis.interval(days=1)
    return per.select(
        cid=per.cid,
        frequency=per.n_days - 1,
        recency_days=per.last_day.delta(per.first_day, unit="day"),
        T_days=last_day.delta(per.first_day, unit="day"),
        repeat_value=per.repeat_value,
    )


def _with_holdout(per: ir.Table, days: ir.Table, cal_end: dt.date) -> ir.Table:
    """Each calibration customer's purchase days in the holdout (0 for none)."""
    hold = days.filter((days.n_buy > 0) & (days.day >= ibis.literal(cal_end)))
    hold = hold.group_by("cid").aggregate(frequency_holdout=hold.count())
    return per.left_join(hold, "cid").select(
        *[per[c] for c in per.columns],
        frequency_holdout=hold.frequency_holdout.fill_null(0),
    )


def _summary_frame(
    df: pd.DataFrame, unit: str, customer_col: str, amount_col: str | None
) -> pd.DataFrame:
    """The summary in the time unit; monetary is the repeat value per repeat day."""
    scale = UNIT_DAYS[unit]
    out = pd.DataFrame(
        {
            "frequency": df["frequency"].astype("int64").to_numpy(),
            "recency": df["recency_days"].to_numpy(dtype=float) / scale,
            "T": df["T_days"].to_numpy(dtype=float) / scale,
        },
        index=pd.Index(df["cid"].to_numpy(), name=customer_col),
    )
    if amount_col:
        freq_ = out["frequency"].to_numpy()
        value = df["repeat_value"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["monetary"] = np.where(freq_ > 0, value / np.maximum(freq_, 1), 0.0)
    if "frequency_holdout" in df:
        out["frequency_holdout"] = df["frequency_holdout"].astype("int64").to_numpy()
    return out


class OrderHistory:
    """The summaries of :func:`summary_from_orders` at several snapshot dates, from one query.

    A review values its customers at every month start: a summary per date would scan and
    group the whole order log once per date. Here the engine groups it once, by customer
    and by the interval between consecutive dates, and keeps running totals over the
    intervals (purchase days, last purchase day, exact decimal repeat value); the summary at
    any of the dates, with or without a holdout up to a later one, is then a selection of
    those rows. Every summary equals the one :func:`summary_from_orders` returns for the
    same arguments (same values, dtypes, order and ``attrs``).

    Parameters
    ----------
    orders, freq, customer_col, date_col, amount_col
        As for :func:`summary_from_orders`.
    dates : iterable of dates
        The snapshot dates (exclusive, as ``as_of``) summaries will be asked for.
    """

    def __init__(
        self,
        orders: ir.Table | pd.DataFrame,
        dates: Any,
        freq: str = "W",
        customer_col: str = "customer_id",
        date_col: str = "order_date",
        amount_col: str | None = "amount",
    ) -> None:
        self.unit = normalize_unit(freq, "freq")
        self.customer_col = customer_col
        self.amount_col = amount_col
        self.dates = sorted({_as_date(d, "date") for d in dates})
        if not self.dates:
            raise ValueError("OrderHistory needs at least one date")
        rows = _order_rows(orders, customer_col, date_col, amount_col)
        rows = rows.filter(rows.day < ibis.literal(self.dates[-1]))
        days = rows.group_by(["cid", "day"]).aggregate(
            value=rows.amount.sum(), n_buy=(rows.amount >= 0).cast("int64").sum()
        )
        buys = days.filter(days.n_buy > 0)
        first = buys.group_by("cid").aggregate(first_day=buys.day.min())
        d = days.join(first, "cid")
        # before the first purchase day nothing counts (no purchase, no repeat value)
        d = d.filter(d.day >= d.first_day)
        # interval k holds the days in [dates[k-1], dates[k]); interval 0 those before dates[0]
        bucket = sum(
            ((d.day >= ibis.literal(b)).cast("int64") for b in self.dates), ibis.literal(0)
        )
        is_buy = d.n_buy > 0
        d = d.mutate(
            bucket=bucket,
            buy=is_buy.cast("int64"),
            buy_day=ibis.ifelse(is_buy, d.day, ibis.null("date")),
            # the expression summary_from_orders sums per order, summed here per day: the
            # same exact decimal total
            repeat=ibis.cases((d.day > d.first_day, d.value), else_=0),
        )
        per = d.group_by(["cid", "bucket"]).aggregate(
            first_day=d.first_day.min(),
            n_days=d.buy.sum(),
            last_day=d.buy_day.max(),
            repeat=d.repeat.sum(),
        )
        w = ibis.cumulative_window(group_by=per.cid, order_by=per.bucket)
        per = per.select(
            cid=per.cid,
            bucket=per.bucket,
            first_day=per.first_day,
            days=per.n_days.sum().over(w),
            last_day=per.last_day.max().over(w),
            repeat_value=per.repeat.sum().over(w).cast("float64"),
        )
        table = per.order_by(["cid", "bucket"]).to_pyarrow()
        cid = table.column("cid").to_numpy()
        bucket_ = table.column("bucket").to_numpy().astype(np.int64)
        first_day = table.column("first_day").to_numpy().astype("datetime64[D]").astype(np.int64)
        last_day = table.column("last_day").to_numpy().astype("datetime64[D]").astype(np.int64)
        new = np.ones(cid.size, dtype=bool)
        new[1:] = cid[1:] != cid[:-1]
        group = np.cumsum(new) - 1
        ids = pd.Index(cid[new], name=customer_col)
        if not ids.is_monotonic_increasing:  # the engine's string order is not pandas'
            order = np.argsort(ids.to_numpy(), kind="stable")
            rank = np.empty(order.size, dtype=np.int64)
            rank[order] = np.arange(order.size)
            group = rank[group]
            ids = ids[order]
            perm = np.lexsort((bucket_, group))
            group, bucket_ = group[perm], bucket_[perm]
            first_day, last_day = first_day[perm], last_day[perm]
            table = table.take(perm)
        self.ids = ids
        self._group = group
        self._bucket = bucket_
        self._first = first_day
        self._recency = last_day - first_day
        self._days = table.column("days").to_numpy().astype(np.int64)
        self._value = table.column("repeat_value").to_numpy().astype(float)
        self._last_of_group = np.ones(group.size, dtype=bool)
        self._last_of_group[:-1] = group[1:] != group[:-1]

    def _rows(self, date: dt.date) -> np.ndarray:
        """Per customer with a purchase before ``date``, her running totals' row there."""
        try:
            k = self.dates.index(date)
        except ValueError:
            raise ValueError(
                f"{date} is not one of the history's dates {[d.isoformat() for d in self.dates]}"
            ) from None
        nxt = np.empty_like(self._bucket)
        nxt[:-1] = self._bucket[1:]
        nxt[-1:] = k + 1
        upto = self._bucket <= k
        return np.flatnonzero(upto & (self._last_of_group | (nxt > k)))

    def summary(self, as_of: Any, calibration_end: Any = None) -> pd.DataFrame:
        """:func:`summary_from_orders` ``(orders, as_of, freq, ..., calibration_end)``.

        ``as_of`` and ``calibration_end`` must be among the history's dates.
        """
        end_all = _as_date(as_of, "as_of")
        cal_end = (
            end_all if calibration_end is None else _as_date(calibration_end, "calibration_end")
        )
        if cal_end > end_all:
            raise ValueError(f"calibration_end {cal_end} is after as_of {end_all}")
        if calibration_end is not None and cal_end == end_all:
            raise ValueError("calibration_end equals as_of: the holdout period would be empty")
        rows = self._rows(cal_end)
        scale = UNIT_DAYS[self.unit]
        last_day = np.datetime64(cal_end, "D").astype(np.int64) - 1
        freq_ = self._days[rows] - 1
        out = pd.DataFrame(
            {
                "frequency": freq_,
                "recency": self._recency[rows].astype(float) / scale,
                "T": (last_day - self._first[rows]).astype(float) / scale,
            },
            index=self.ids[self._group[rows]],
        )
        if self.amount_col:
            value = self._value[rows]
            with np.errstate(divide="ignore", invalid="ignore"):
                out["monetary"] = np.where(freq_ > 0, value / np.maximum(freq_, 1), 0.0)
        if calibration_end is not None:
            later = self._rows(end_all)
            days_then = np.zeros(self.ids.size, dtype=np.int64)
            days_then[self._group[later]] = self._days[later]
            out["frequency_holdout"] = days_then[self._group[rows]] - self._days[rows]
            out["duration_holdout"] = (end_all - cal_end).days / scale
        out.attrs.update(
            time_unit=self.unit,
            as_of=end_all.isoformat(),
            calibration_end=None if calibration_end is None else cal_end.isoformat(),
        )
        return out


def holdout_by_frequency(model: Any, summary: pd.DataFrame, max_freq: int = 7) -> pd.DataFrame:
    """Actual vs predicted mean holdout purchases by calibration frequency.

    Parameters
    ----------
    model : BetaGeo or ParetoNBD
        Fitted on the calibration columns of ``summary``.
    summary : pandas.DataFrame
        Output of :func:`summary_from_orders` with ``calibration_end`` (or any frame with
        ``frequency, recency, T, frequency_holdout, duration_holdout``).
    max_freq : int
        Frequencies ``>= max_freq`` are pooled into one row labelled ``max_freq``.

    Returns
    -------
    pandas.DataFrame
        One row per frequency: ``frequency, n_customers, actual, predicted, error``.
        ``attrs`` holds the error metrics: ``mae`` (mean absolute error over the rows),
        ``weighted_mae`` (weighted by customers), ``correlation`` (Pearson, across the
        rows), ``customer_mae`` and ``customer_correlation`` (per customer), and
        ``total_actual`` / ``total_predicted`` purchases in the holdout.
    """
    need = ["frequency", "recency", "T", "frequency_holdout", "duration_holdout"]
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks {missing}: build it with calibration_end set")
    unit = summary.attrs.get("time_unit")
    if unit is not None and normalize_unit(unit) != getattr(model, "time_unit_", unit):
        raise ValueError(
            f"summary is in {unit!r} but the model was fitted on {model.time_unit_!r} data"
        )
    pred = np.asarray(
        model.expected_purchases(
            summary["duration_holdout"].to_numpy(dtype=float),
            summary["frequency"].to_numpy(dtype=float),
            summary["recency"].to_numpy(dtype=float),
            summary["T"].to_numpy(dtype=float),
        ),
        dtype=float,
    )
    actual = summary["frequency_holdout"].to_numpy(dtype=float)
    bucket = np.minimum(summary["frequency"].to_numpy(dtype=int), max_freq)
    frame = pd.DataFrame({"frequency": bucket, "actual": actual, "predicted": pred})
    table = frame.groupby("frequency").agg(
        n_customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    table = table.reset_index()
    table["error"] = table["predicted"] - table["actual"]
    n = table["n_customers"].to_numpy(dtype=float)
    err = np.abs(table["error"].to_numpy())
    table.attrs.update(
        mae=float(err.mean()),
        weighted_mae=float(wsum(err, n) / n.sum()),
        correlation=float(np.corrcoef(table["actual"], table["predicted"])[0, 1])
        if len(table) > 1
        else float("nan"),
        customer_mae=float(np.mean(np.abs(pred - actual))),
        customer_correlation=float(np.corrcoef(actual, pred)[0, 1]),
        total_actual=float(actual.sum()),
        total_predicted=float(pred.sum()),
    )
    return table
