"""Who the customers are: tier, industry, acquisition cohort and churn details, and CLV or
loss broken down by them (with why a breakdown cannot be shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.clv.valuation import UNRECORDED
from fupan.io import engine
from fupan.io.dataset import Dataset


def clv_by_group(
    values: pd.DataFrame, attrs: pd.DataFrame, by: str, order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Customers, total, mean, median and share of CLV by a customer attribute."""
    df = (
        values[["clv"]]
        .rename_axis("customer_id")
        .reset_index()
        .merge(attrs[["customer_id", by]], on="customer_id", how="left")
    )
    df[by] = df[by].astype(object).where(df[by].notna(), UNRECORDED)
    g = df.groupby(by).clv.agg(customers="size", total="sum", mean="mean", median="median")
    total = float(df.clv.sum())
    g["share"] = g.total / total if total > 0 else np.nan
    g = g.reset_index().rename(columns={by: "group"})
    g = g.sort_values("total", ascending=False, kind="stable")
    if order is not None:
        rank = {x: i for i, x in enumerate(order)}
        g = g.assign(_o=g.group.map(lambda x: rank.get(x, len(rank)))).sort_values(
            "_o", kind="stable"
        )
        g = g.drop(columns="_o")
    return g.reset_index(drop=True)


#: Cohort units, coarsest first: the first that splits the customers into two or more
#: cohorts is used (a base acquired within one year is compared by quarter, then month).
COHORT_UNITS = ("year", "quarter", "month")


def cohort_unit(acquired: pd.Series) -> str | None:
    """The coarsest unit of :data:`COHORT_UNITS` giving two or more acquisition cohorts, or
    None when every customer was acquired in the same month (no cohort to compare)."""
    when = pd.to_datetime(acquired).dropna()
    for unit in COHORT_UNITS:
        if _cohort_labels(when, unit).nunique() > 1:
            return unit
    return None


def _cohort_labels(when: pd.Series, unit: str) -> pd.Series:
    if unit == "year":
        return when.dt.year.astype(str)
    if unit == "quarter":
        return when.dt.year.astype(str) + "-Q" + when.dt.quarter.astype(str)
    return when.dt.strftime("%Y-%m")


def customer_attributes(ds: Dataset, status: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: name, tier, industry, acquisition cohort and churn details.

    The cohort is the acquisition year, or quarter or month when a year holds everyone
    (:func:`cohort_unit`, kept in ``attrs["cohort_unit"]``; None when all customers were
    acquired in one month). Columns the contract allows but the data lacks are None here;
    tables shown or exported drop them (:func:`fupan.io.exports.drop_unsupplied`).
    """
    cust = ds["customers"]
    cols = [c for c in ("customer_id", "customer_name", "tier", "industry") if c in cust.columns]
    df = engine.to_pandas(cust.select(cols))
    st = status[["customer_id", "acquired_at", "reason", "competitor", "lost_value"]]
    df = df.merge(st, on="customer_id", how="left")
    when = pd.to_datetime(df.acquired_at)
    unit = cohort_unit(when)
    df["cohort"] = None
    if unit is not None:
        df.loc[when.notna(), "cohort"] = _cohort_labels(when[when.notna()], unit)
    if "customer_name" not in df.columns:
        df["customer_name"] = None
    if "industry" not in df.columns:
        df["industry"] = None
    out = df.drop(columns="acquired_at")
    out.attrs["cohort_unit"] = unit
    return out


def breakdown_gap(ds: Dataset, table: pd.DataFrame, column: str | None = None) -> str | None:
    """Why a breakdown of value by groups cannot be shown, or None when it can.

    ``not_supplied``: the customers column was not in the data (:func:`fupan.io.exports.supplied`);
    ``one_group``: every valued customer is in one group, so a comparison across groups (and
    any "highest" or "largest") would be over a single group; ``no_loss``: nothing was lost.
    ``table`` is :func:`loss_by` or :func:`clv_by_group` output.
    """
    from fupan.io import exports

    if column is not None and not exports.supplied(ds, "customers", column):
        return "not_supplied"
    base = "base_clv" if "base_clv" in table.columns else "total"
    groups = table[(table[base] > 0) & (table.group != UNRECORDED)]
    if len(groups) < 2:
        return "one_group"
    if "lost_ltv" in table.columns and not table.lost_ltv.sum() > 0:
        return "no_loss"
    return None
