"""Lost customers (战败客户): why they said they left, what it cost, and what the data says.

Reasons come from ``churn_events``. A customer with several recorded reasons for the same
churn shares one unit of count and their lost value equally between them (attribution
weights 1/k). Lost value is the recorded ``lost_value`` when present, else the net order
amount of the 365 days before the churn date (computed in the engine).

Stated reasons are set beside the model's: each lost customer's features just before
churn are scored with the driver model, and the reason whose features add the most risk
(``churn.reason_features`` in params) is the model's reason. Where the two disagree, the
slide says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import numpy as np
import pandas as pd

from fupan.chapters.signals import finite, iso_day
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import outcomes
from fupan.measures.outcomes import rate_with_ci
from fupan.models import drivers

UNRECORDED = "unrecorded"
MODEL_OTHER = "other"


def lost_customers(
    ds: Dataset, start: Any, end: Any, status: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Customers who churned in ``(start, end]``, with reasons, competitor and lost value.

    Parameters
    ----------
    ds : the dataset.
    start, end : the period.
    status : :func:`fupan.measures.outcomes.churn_status` at ``end`` (computed when omitted).

    Returns
    -------
    DataFrame per lost customer: ``customer_id, tier, churned_at, source, reasons`` (list;
    ``["unrecorded"]`` without a recorded reason), ``competitor, lost_value,
    value_source`` (recorded | spend_365d).
    """
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    status = outcomes.churn_status(ds, e.date()) if status is None else status
    lost = status[status.churned & (status.churned_at > s) & (status.churned_at <= e)]
    lost = lost[["customer_id", "tier", "churned_at", "source", "competitor", "lost_value"]].copy()
    cols = [
        "customer_id",
        "tier",
        "churned_at",
        "source",
        "reasons",
        "competitor",
        "lost_value",
        "value_source",
    ]
    if lost.empty:
        return pd.DataFrame(columns=cols)
    keys = ibis.memtable(
        pd.DataFrame(
            {"customer_id": lost.customer_id.to_numpy(), "cd": lost.churned_at.dt.date.to_numpy()}
        )
    )
    o = ds["orders"]
    j = keys.join(
        o,
        [
            keys.customer_id == o.customer_id,
            o.order_date < keys.cd,
            o.order_date >= keys.cd - ibis.interval(days=365),
        ],
    )
    spend = j.group_by(keys.customer_id).aggregate(spend=j.amount.sum())
    spend = engine.to_pandas(spend)
    spend = spend.set_index("customer_id").spend
    reasons: dict[str, list[str]] = {}
    if ds.has("churn_events"):
        ev = ds["churn_events"]
        m = keys.join(ev, [keys.customer_id == ev.customer_id, ev.churned_at == keys.cd])
        rows = engine.to_pandas(m.select(customer_id=keys.customer_id, reason=ev.reason).distinct())
        rows = rows.dropna(subset=["reason"])
        # one sort instead of a Python loop over customers' groups: the same sorted lists
        listed = (
            pd.DataFrame(
                {
                    "customer_id": rows.customer_id.to_numpy(),
                    "reason": [str(r) for r in rows.reason],
                }
            )
            .sort_values(["customer_id", "reason"], kind="stable")
            .groupby("customer_id", sort=False)
            .reason.agg(list)
        )
        reasons = dict(zip(listed.index, listed.to_numpy(), strict=True))
    lost["reasons"] = [reasons.get(c, [UNRECORDED]) for c in lost.customer_id]
    recorded = lost.lost_value.notna()
    lost["value_source"] = np.where(recorded, "recorded", "spend_365d")
    lost["lost_value"] = lost.lost_value.where(recorded, lost.customer_id.map(spend).fillna(0.0))
    lost["lost_value"] = lost.lost_value.astype(float).clip(lower=0.0)
    return lost[cols].reset_index(drop=True)


def attribution(lost: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer, reason) with weight 1/k and the matching share of lost value."""
    cols = ["customer_id", "tier", "reason", "weight", "value"]
    if lost.empty:
        return pd.DataFrame([], columns=cols)
    k = np.array(
        [len(r) for r in lost.reasons], dtype=int
    )  # a customer without reasons adds no row
    row = np.repeat(np.arange(len(lost)), k)
    share = 1.0 / np.maximum(k, 1)
    value = lost.lost_value.to_numpy(dtype=float) / np.maximum(k, 1)
    return pd.DataFrame(
        {
            "customer_id": lost.customer_id.to_numpy()[row].tolist(),
            "tier": lost.tier.to_numpy()[row].tolist(),
            "reason": [reason for r in lost.reasons for reason in r],
            "weight": share[row],
            "value": value[row],
        },
        columns=cols,
    )


def pareto(attrib: pd.DataFrame, by: str = "count") -> pd.DataFrame:
    """Reasons sorted by weighted count (``by="count"``) or lost value, with cumulative share."""
    g = attrib.groupby("reason").agg(count=("weight", "sum"), value=("value", "sum"))
    key = "count" if by == "count" else "value"
    g = g.sort_values([key, "count"], ascending=False, kind="stable")
    total = g[key].sum()
    g["share"] = g[key] / total if total else 0.0
    g["cum_share"] = g["share"].cumsum()
    return g.reset_index()


def by_tier(attrib: pd.DataFrame, tiers: Sequence[str]) -> pd.DataFrame:
    """Share of each tier's lost customers (weighted) by reason: rows reasons, columns tiers."""
    t = attrib.pivot_table(
        index="reason", columns="tier", values="weight", aggfunc="sum", fill_value=0.0
    )
    t = t.reindex(
        columns=[x for x in tiers if x in t.columns] + [x for x in t.columns if x not in tiers]
    )
    return t / t.sum(axis=0)


def competitor_share(lost: pd.DataFrame) -> dict:
    """Share of lost customers (Wilson 95% CI) and of lost value that went to a competitor."""
    named = lost.competitor.notna() & (lost.competitor.astype(str).str.strip() != "")
    rate, lo, hi = rate_with_ci(int(named.sum()), len(lost))
    value = lost.lost_value.sum()
    per = (
        lost[named]
        .groupby("competitor")
        .agg(customers=("customer_id", "size"), value=("lost_value", "sum"))
    )
    per = per.sort_values("customers", ascending=False)
    return {
        "customers": int(len(lost)),
        "to_competitor": int(named.sum()),
        "share": rate,
        "low": lo,
        "high": hi,
        "value_share": float(lost.lost_value[named].sum() / value) if value else float("nan"),
        "by_competitor": per.reset_index().to_dict(orient="records"),
    }


def features_before_churn(
    ds: Dataset, lost: pd.DataFrame, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Each lost customer's features as of their churn date (events strictly before it)."""
    pairs = pd.DataFrame(
        {"customer_id": lost.customer_id.to_numpy(), "snapshot_date": lost.churned_at.to_numpy()}
    )
    names = list(F.available(ds) if names is None else names)
    expr = F.feature_expr(ds, pairs, names)
    df = engine.to_pandas(expr)
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    return df


def model_reasons(
    contributions: pd.DataFrame,
    reason_features: Mapping[str, Sequence[str]],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> pd.Series:
    """The reason whose features add the most churn risk, per row.

    Parameters
    ----------
    contributions : rows x features, added log-odds of churn (a model's contributions).
    reason_features : reason -> features that speak to it.
    groups : model feature -> the correlated metrics it stands for (a representative is
        mapped to a reason through any of its members).

    Returns
    -------
    Series of reasons (``"other"`` when no mapped feature adds risk).
    """
    groups = groups or {}
    owner: dict[str, str] = {}
    for reason, feats in reason_features.items():
        for f in feats:
            owner.setdefault(f, reason)
    reason_of = {}
    for col in contributions.columns:
        for f in [col, *groups.get(col, [])]:
            if f in owner:
                reason_of[col] = owner[f]
                break
    scores = pd.DataFrame(0.0, index=contributions.index, columns=list(reason_features))
    for col, reason in reason_of.items():
        scores[reason] += contributions[col].clip(lower=0.0)
    best = scores.idxmax(axis=1)
    return best.where(scores.max(axis=1) > 0, MODEL_OTHER)


def stated_vs_model(lost: pd.DataFrame, model_reason: pd.Series) -> tuple[pd.DataFrame, dict]:
    """Stated reason shares beside model-attributed shares, for customers with a stated reason.

    Parameters
    ----------
    lost : :func:`lost_customers`.
    model_reason : reason per customer id (index).

    Returns
    -------
    (DataFrame per reason ``stated_share, model_share, gap`` sorted by |gap|; summary with
    ``customers`` compared and ``agreement``: share whose model reason is one they stated).
    """
    known = lost[lost.reasons.map(lambda r: r != [UNRECORDED])]
    known = known[known.customer_id.isin(model_reason.index)]
    if known.empty:
        return pd.DataFrame(columns=["reason", "stated_share", "model_share", "gap"]), {
            "customers": 0,
            "agreement": float("nan"),
        }
    att = attribution(known)
    stated = att.groupby("reason").weight.sum() / len(known)
    mr = model_reason.reindex(known.customer_id)
    model = mr.value_counts(normalize=True)
    reasons = list(dict.fromkeys([*stated.index, *model.index]))
    t = pd.DataFrame(
        {
            "reason": reasons,
            "stated_share": [float(stated.get(r, 0.0)) for r in reasons],
            "model_share": [float(model.get(r, 0.0)) for r in reasons],
        }
    )
    t["gap"] = t.model_share - t.stated_share
    t = t.reindex(t.gap.abs().sort_values(ascending=False).index).reset_index(drop=True)
    agree = np.mean([m in r for m, r in zip(mr.to_numpy(), known.reasons, strict=True)])
    return t, {"customers": int(len(known)), "agreement": float(agree)}


# --------------------------------------------------------------------------------------
# Chapter 2's slides on lost customers


@dataclass
class LostReview:
    """The lost customers of the review period and their stated reasons, weighted.

    ``has_reasons`` is False without ``churn_events``, without lost customers, or when no
    lost customer has a recorded reason; the tables are then empty.
    """

    lost: pd.DataFrame  # :func:`lost_customers`
    unrecorded: pd.Series  # per lost customer: no reason recorded
    has_reasons: bool
    known: pd.DataFrame  # :func:`attribution` of the recorded reasons
    by_count: pd.DataFrame  # :func:`pareto` by weighted count
    by_value: pd.DataFrame  # :func:`pareto` by lost value


def review(ds: Dataset, status: pd.DataFrame | None = None) -> LostReview:
    """The period's lost customers, their reasons' Pareto by count and by lost value."""
    p = ds.params
    lost = lost_customers(ds, p.period_start, p.as_of, status=status)
    unrecorded = (
        lost.reasons.map(lambda r: r == [UNRECORDED]) if len(lost) else pd.Series(dtype=bool)
    )
    has = ds.has("churn_events") and len(lost) > 0 and not unrecorded.all()
    if not has:
        empty = pd.DataFrame()
        return LostReview(lost, unrecorded, False, empty, empty, empty)
    att = attribution(lost)
    known = att[att.reason != UNRECORDED]
    return LostReview(lost, unrecorded, True, known, pareto(known, "count"), pareto(known, "value"))


def reason_label(reason: Any, lang: str) -> str:
    """A reason's display name (``churn.reason.<reason>``; the reason itself when the
    vocabulary has no label for it)."""
    try:
        return i18n.t(f"churn.reason.{reason}", lang)
    except KeyError:
        return str(reason)


def lost_results(lr: LostReview) -> dict[str, Any]:
    """What results.json records under ``churn`` about the lost customers."""
    if not lr.has_reasons:
        return {}
    lost = lr.lost
    return {
        "lost_reasons": lr.by_count,
        "lost_customers": {
            "customers": len(lost),
            "value": float(lost.lost_value.sum()),
            "value_recorded_share": float((lost.value_source == "recorded").mean()),
        },
    }


def pareto_slide(lr: LostReview, ds: Dataset, fmt: i18n.Fmt) -> Slide:
    """The top stated reason by count and by lost value (or why there are no reasons)."""
    p, lang = ds.params, ds.params.lang

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    if not lr.has_reasons:
        missing = not ds.has("churn_events")
        why = t("churn.pareto.missing_why" if missing else "churn.pareto.unrecorded_why")
        gone = "churn_events" if missing else None
        return Slide(t("churn.pareto.title_missing"), why, skip="lost_reasons", missing=gone)
    c, v, lost = lr.by_count, lr.by_value, lr.lost
    # one recorded reason has no "top": say that every recorded reason is that one
    if len(c) > 1:
        title = t(
            "churn.pareto.title",
            top=reason_label(c.reason.iloc[0], lang),
            share=fmt.pct(c.share.iloc[0]),
            vtop=reason_label(v.reason.iloc[0], lang),
            vshare=fmt.pct(v.share.iloc[0]),
        )
    else:
        title = t("churn.pareto.title_one", reason=reason_label(c.reason.iloc[0], lang))
    finding = t(
        "churn.pareto.finding",
        n=fmt.int(len(lost)),
        value=fmt.money(lost.lost_value.sum()),
        start=iso_day(p.period_start),
        end=iso_day(p.as_of),
        unrec=fmt.int(int(lr.unrecorded.sum())),
        unrec_share=fmt.pct(float(lr.unrecorded.mean())),
    )
    return Slide(title, finding)


def value_note(lr: LostReview, lang: str) -> str | None:
    """Said when some lost value is estimated from spend rather than recorded."""
    if (lr.lost.value_source != "recorded").any():
        return i18n.t("churn.pareto.note_value", lang)
    return None


def competitor_slide(comp: dict, lang: str, fmt: i18n.Fmt) -> Slide:
    """The competitor slide's title (share of lost customers and value to a competitor)
    and finding (the three competitors who took the most customers)."""
    top = ", ".join(f"{x['competitor']} {x['customers']}" for x in comp["by_competitor"][:3])
    has_value = finite(comp["value_share"])
    title = i18n.t(
        "churn.tier_reasons.title" if has_value else "churn.tier_reasons.title_novalue",
        lang,
        share=fmt.pct(comp["share"]),
        lo=fmt.pct(comp["low"]),
        hi=fmt.pct(comp["high"]),
        vshare=fmt.pct(comp["value_share"]) if has_value else "",
    )
    finding = (
        i18n.t("churn.tier_reasons.finding", lang, top=top)
        if top
        else i18n.t("churn.tier_reasons.finding_none", lang)
    )
    return Slide(title, finding)


def stated_vs_model_review(
    ds: Dataset, lr: LostReview, result: Any, names: Sequence[str]
) -> tuple[pd.DataFrame, dict]:
    """:func:`stated_vs_model` with each lost customer's model reason from the driver
    logit (``result``: :class:`fupan.models.drivers.DriverResult`) on their features
    just before churn."""
    before = features_before_churn(ds, lr.lost, names)
    contrib = drivers.contributions(result, before).set_index(before.customer_id)
    reasons = model_reasons(contrib, ds.params.churn.reason_features, result.groups)
    return stated_vs_model(lr.lost, reasons)


def stated_vs_model_slide(svm: pd.DataFrame, summary: dict, lang: str, fmt: i18n.Fmt) -> Slide:
    """The reason with the largest gap between stated and model shares, and the agreement."""
    g0 = svm.iloc[0]
    key = "churn.svm.title_more" if g0.gap > 0 else "churn.svm.title_less"
    title = i18n.t(
        key,
        lang,
        reason=reason_label(g0.reason, lang),
        stated=fmt.pct(g0.stated_share),
        model=fmt.pct(g0.model_share),
    )
    finding = i18n.t(
        "churn.svm.finding",
        lang,
        n=fmt.int(summary["customers"]),
        agree=fmt.pct(summary["agreement"]),
    )
    notes = [i18n.t("churn.svm.note", lang)]
    return Slide(title, finding, **stated_vs_model_table(svm, lang, fmt), notes=notes)


def stated_vs_model_table(svm: pd.DataFrame, lang: str, fmt: i18n.Fmt) -> dict[str, Any]:
    """The slide's table (:class:`~fupan.chapters.slide.Slide` fields): stated and model
    shares per reason, with their gap in points."""
    cols = ["reason", "stated_share", "model_share", "gap"]
    frame = svm.assign(reason=svm.reason.map(lambda r: reason_label(r, lang)))[cols]
    headers = {c: i18n.t(f"churn.svm.col.{c}", lang) for c in cols}
    formats = {"stated_share": fmt.pct, "model_share": fmt.pct, "gap": fmt.pts}
    return {"table": frame, "columns": headers, "formats": formats}
