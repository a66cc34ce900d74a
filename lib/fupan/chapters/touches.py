"""Touches: frequency per tier against the touch policy, coverage, channel mix and response.

Definitions:

* *exposure*: a customer counts for the part of the review period in which they were a
  customer, from ``max(period_start, acquired_at)`` to ``min(as_of, churned_at)``; those lost
  before the period are left out. Touch frequency = touches in that exposure / exposure in
  quarters (91.3 days), so a customer acquired mid-year is not judged on a full year.
* *meeting the policy*: a customer with at least ``min_exposure_days`` of exposure whose own
  frequency reaches ``benchmarks.touch_policy_per_quarter`` for their assigned tier.
* *coverage*: share of customers not churned at ``as_of`` touched in the last
  ``diagnosis.coverage_days`` days.
* *response rate*: touches with ``responded`` true / touches with ``responded`` known.

Per-touch aggregation runs in the query engine; pandas sees one row per customer or channel.
"""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pandas as pd

from fupan.chapters.diagnosis import highest, label, lowest
from fupan.core import i18n
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures.outcomes import rate_with_ci
from fupan.measures.segments import as_date

QUARTER_DAYS = 365.25 / 4


def customer_touches(
    ds: Dataset,
    status: pd.DataFrame,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    recent_days: int | None = None,
) -> pd.DataFrame:
    """One row per customer exposed in [start, end]: exposure, touches in it, recent touch.

    Parameters
    ----------
    ds : the run's dataset (needs ``touches``).
    status : :func:`fupan.measures.outcomes.churn_status` at ``end`` or later.
    start, end : the window (default: the review period).
    recent_days : coverage window in days before ``end`` (default ``diagnosis.coverage_days``).

    Returns
    -------
    DataFrame with ``customer_id, tier, exposure_start, exposure_end, exposure_quarters,
    touches, per_quarter, last_touch, touched_recently, active_at_end``.
    """
    params = ds.params
    s = pd.Timestamp(as_date(start if start is not None else params.period_start))
    e = pd.Timestamp(as_date(end if end is not None else params.as_of))
    recent = int(recent_days if recent_days is not None else params.diagnosis.coverage_days)
    st = status[(status.acquired_at <= e) & ~(status.churned_at < s)].copy()
    st["exposure_start"] = st.acquired_at.where(st.acquired_at > s, s)
    st["exposure_end"] = st.churned_at.where(st.churned_at < e, e).fillna(e)
    days = (st.exposure_end - st.exposure_start).dt.days + 1
    st["exposure_quarters"] = days.clip(lower=1) / QUARTER_DAYS
    st["active_at_end"] = ~(st.churned_at <= e)

    t = ds["touches"]
    d = t.touched_at.date()
    t = t.filter((d >= ibis.literal(s.date())) & (d <= ibis.literal(e.date()))).mutate(day=d)
    # Exposure bounds go to the engine so only touches inside each customer's exposure count.
    bounds = ibis.memtable(
        st[["customer_id", "exposure_start", "exposure_end"]].assign(
            exposure_start=st.exposure_start.dt.date, exposure_end=st.exposure_end.dt.date
        )
    )
    j = t.inner_join(bounds, "customer_id")
    j = j.filter((j.day >= j.exposure_start) & (j.day <= j.exposure_end))
    recent_from = (e - pd.Timedelta(days=recent - 1)).date()
    agg = engine.to_pandas(
        j.group_by("customer_id").aggregate(
            touches=j.count(),
            last_touch=j.day.max(),
            recent=(j.day >= ibis.literal(recent_from)).sum(),
        )
    )
    out = st[
        [
            "customer_id",
            "tier",
            "exposure_start",
            "exposure_end",
            "exposure_quarters",
            "active_at_end",
        ]
    ]
    out = out.merge(agg, on="customer_id", how="left")
    out["touches"] = out.touches.fillna(0).astype(int)
    out["per_quarter"] = out.touches / out.exposure_quarters
    out["touched_recently"] = out.recent.fillna(0).astype(int) > 0
    out["last_touch"] = pd.to_datetime(out.last_touch)
    return out.drop(columns="recent").reset_index(drop=True)


def touch_frequency(
    per_customer: pd.DataFrame,
    policy: dict[str, float],
    order: list[str],
    min_exposure_days: int = 90,
) -> pd.DataFrame:
    """Touches per customer per quarter by tier vs the policy, and share meeting the policy.

    Returns
    -------
    DataFrame with ``tier, customers, touches, exposure_quarters, per_quarter, policy, ratio,
    assessed, meeting_policy, meeting_share`` (ratio = per_quarter / policy).
    """
    rows = []
    # the tiers present, found once (not once per tier of the order)
    present = set(per_customer.tier.unique())
    for tier in [t for t in order if t in present] + sorted(present - set(order)):
        g = per_customer[per_customer.tier == tier]
        exp = g.exposure_quarters.sum()
        rate = g.touches.sum() / exp if exp > 0 else np.nan
        pol = policy.get(tier, np.nan)
        assessed = g[g.exposure_quarters * QUARTER_DAYS >= min_exposure_days]
        meeting = int((assessed.per_quarter >= pol).sum()) if not np.isnan(pol) else 0
        rows.append(
            {
                "tier": tier,
                "customers": len(g),
                "touches": int(g.touches.sum()),
                "exposure_quarters": exp,
                "per_quarter": rate,
                "policy": pol,
                "ratio": rate / pol if pol else np.nan,
                "assessed": len(assessed),
                "meeting_policy": meeting,
                "meeting_share": meeting / len(assessed) if len(assessed) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def coverage(per_customer: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Share of customers active at the window's end touched recently, overall and by tier."""
    act = per_customer[per_customer.active_at_end]
    rows = []
    present = set(act.tier.unique())  # once, not once per tier of the order
    tiers = [t for t in order if t in present] + sorted(present - set(order))
    for key, g in [("all", act)] + [(t, act[act.tier == t]) for t in tiers]:
        k = int(g.touched_recently.sum())
        p, lo, hi = rate_with_ci(k, len(g))
        rows.append(
            {
                "tier": key,
                "customers": len(g),
                "touched": k,
                "coverage": p,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def channel_mix(
    ds: Dataset, start: str | dt.date | None = None, end: str | dt.date | None = None
) -> pd.DataFrame:
    """Touches by channel in the window: count, share, response rate with a Wilson interval."""
    params = ds.params
    s = as_date(start if start is not None else params.period_start)
    e = as_date(end if end is not None else params.as_of)
    t = ds["touches"]
    d = t.touched_at.date()
    t = t.filter((d >= ibis.literal(s)) & (d <= ibis.literal(e)))
    aggs = {"touches": t.count()}
    if "responded" in t.columns:
        aggs["known"] = t.responded.notnull().sum()
        aggs["responded"] = t.responded.fill_null(False).sum()
    df = engine.to_pandas(t.group_by("channel").aggregate(**aggs))
    if "known" not in df.columns:
        df["known"], df["responded"] = 0, 0
    df[["touches", "known", "responded"]] = (
        df[["touches", "known", "responded"]].fillna(0).astype(int)
    )
    total = df.touches.sum()
    df["share"] = df.touches / total if total else np.nan
    ci = [rate_with_ci(int(r), int(k)) for r, k in zip(df.responded, df.known, strict=True)]
    df["response_rate"] = [c[0] for c in ci]
    df["ci_low"] = [c[1] for c in ci]
    df["ci_high"] = [c[2] for c in ci]
    return df.sort_values(["touches", "channel"], ascending=[False, True]).reset_index(drop=True)


def channel_headline(mix: pd.DataFrame, fmt: i18n.Fmt) -> tuple[str, str | None]:
    """The channel slide's title and finding, in ``fmt.lang``, from :func:`channel_mix`
    (at least one channel): the best and the worst responding channel when one stands
    above and one below the rest, else the most used channel and why no ranking."""

    def t(key: str, **values: object) -> str:
        return i18n.t(key, fmt.lang, **values)

    known, top = mix[mix.known > 0], mix.iloc[0]
    best, worst = highest(known, "response_rate"), lowest(known, "response_rate")
    top_name, share = label("diag.channel", top.channel, fmt.lang), fmt.pct(top.share)
    if best is None or worst is None:
        key = "diag.ch.title_even" if len(known) else "diag.ch.title_noresp"
        return t(key, top=top_name, share=share, n=len(known)), None
    return (
        t(
            "diag.ch.title",
            best=label("diag.channel", best.channel, fmt.lang),
            best_rate=fmt.pct(best.response_rate),
            worst=label("diag.channel", worst.channel, fmt.lang),
            worst_rate=fmt.pct(worst.response_rate),
        ),
        t("diag.ch.finding", top=top_name, share=share),
    )
