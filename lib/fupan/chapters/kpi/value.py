"""Customer value and risk: chapter 3's CLV, the churn chapter's health bands, the
rule-based at-risk list, and the KPIs built on them (average CLV, red band share, LTV at
risk)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from typing import Any

import ibis
import numpy as np
import pandas as pd

from fupan.chapters.kpi.catalogue import CATALOGUE, QUARTER_DAYS
from fupan.chapters.kpi.context import _Ctx, _val
from fupan.chapters.kpi.months import Window, _epoch, _minus_months
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import outcomes


def clv_valuation(ds: Dataset, as_of: dt.date) -> Any:
    """Chapter 3's valuation (:mod:`fupan.chapters.clv`) from data on or before ``as_of``.

    Its snapshot is exclusive, so it is taken on the day after ``as_of``: the same valuation
    chapter 3 calls "now" for a run as of the month end.

    Raises
    ------
    ValueError
        when the models cannot be fitted or did not converge (too little data).
    """
    from fupan.chapters import clv as chapter3

    kind, _ = chapter3.choose_model(ds.params, ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported through info['converged']
        val = chapter3.Valuer(ds, kind).valuation(pd.Timestamp(as_of) + pd.Timedelta(days=1))
    if not val.info.get("converged", True):
        raise ValueError("the CLV models did not converge")
    return val


def customer_clv(ds: Dataset, as_of: dt.date) -> pd.Series:
    """Discounted CLV per customer, from data on or before ``as_of``: chapter 3's valuation
    (:func:`clv_valuation`), so both chapters quote the same CLV.

    Raises
    ------
    ValueError
        when the models cannot be fitted or their fit does not converge (e.g. too few
        customers with a repeat purchase).
    """
    return clv_valuation(ds, as_of).values["clv"].astype(float).rename("clv")


# Optional chapter models must never stop the monthly report: a failure makes their KPIs
# "not available" with the reason.
_MODEL_ERRORS = (
    ValueError,
    RuntimeError,
    ArithmeticError,
    KeyError,
    IndexError,
    np.linalg.LinAlgError,
)


def _clv(ctx: _Ctx, day: dt.date) -> tuple[pd.Series | None, str | None]:
    if day not in ctx._clv:
        try:
            ctx._clv[day] = (customer_clv(ctx.ds, day), None)
        except _MODEL_ERRORS:
            # too little data to fit (early months, tiny data): the KPI is not available
            ctx._clv[day] = (None, "model_failed:ltv")
    return ctx._clv[day]


def _as_of_view(ds: Dataset, day: dt.date) -> Dataset:
    """The dataset with ``params.as_of`` moved back to ``day`` (same tables), for chapter
    models that read the run's date from the params."""
    if ds.params.as_of == day:
        return ds
    return dataclasses.replace(ds, params=ds.params.model_copy(update={"as_of": day}))


def health_bands(
    ds: Dataset, as_of: dt.date, before: dt.date | None = None, reasons: bool = True
) -> tuple[Any, str | None]:
    """Health scores and bands from the churn chapter (:mod:`fupan.chapters.atrisk`).

    The health model is trained as of ``as_of`` (only snapshots whose labels are known by
    then) and scores every live customer at ``as_of``, and, with ``before``, at that earlier
    date with the same model and thresholds (to find customers newly in the red band).

    The scores are kept in the run cache (:mod:`fupan.io.cache`): chapter 5 scores the
    report month's end, and the follow-up (chapter 6, after chapter 5) the same date for
    next year's forecasts; the date scored with ``before`` is kept on its own too, so both
    read one scoring. ``reasons=False`` leaves the red band's reasons out (empty text), for
    callers that read only the scores.

    Returns
    -------
    ``({date: frame}, None)`` with frames ``customer_id, customer_name, account_manager, tier,
    score, band, churn_probability, reasons`` (reasons in words for the red band at
    ``as_of``, empty otherwise), or ``(None, why)``:
    ``disabled:health`` when ``kpi.at_risk_source`` is ``rules``, ``model_failed:health``
    when the model fails (for example too little data to train).

    Raises
    ------
    RuntimeError
        when ``kpi.at_risk_source`` is ``health`` and the health score is not available.
    """
    source = ds.params.kpi.at_risk_source
    if source == "rules":
        return None, "disabled:health"
    from fupan.io import cache

    view = _as_of_view(ds, as_of)
    now = _iso(as_of)
    then = None if before is None or _iso(before) == now else _iso(before)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = cache.memo(
                view,
                "kpi.health_bands",
                [now, then, reasons],
                lambda: _scored(view, as_of, before if then else None, reasons),
            )
            if then is not None:
                # the report date alone, as a caller without ``before`` asks for it
                cache.memo(view, "kpi.health_bands", [now, None, reasons], lambda: {now: got[now]})
    except _MODEL_ERRORS as exc:
        if source == "health":
            raise RuntimeError(
                f"kpi.at_risk_source is 'health' but the health model failed: {exc}"
            ) from exc
        return None, "model_failed:health"
    out = {as_of: got[now]}
    if before is not None:
        out[before] = got[then or now]
    return out, None


def _iso(day: Any) -> str:
    return pd.Timestamp(day).date().isoformat()


def _scored(
    view: Dataset, as_of: dt.date, before: dt.date | None, reasons: bool
) -> dict[str, pd.DataFrame]:
    """:func:`health_bands`' frames by ISO date (``view``: the dataset as of ``as_of``;
    ``before`` a different date or ``None``)."""
    from fupan.chapters import atrisk  # the churn chapter's health score

    model = atrisk.train(view)
    # Only the red band's reasons are shown (the at-risk list); the earlier date only says
    # who was red then. Both dates are scored with one feature query.
    days: dict[dt.date, tuple[str, ...]] = {as_of: ("red",) if reasons else ()}
    if before is not None:
        days[before] = ()
    lists = atrisk.at_risk_lists(view, days, model=model, bands=("red", "amber", "green"))
    return {_iso(d): lists[pd.Timestamp(d).normalize()] for d in days}


def _health(ctx: _Ctx, day: dt.date, before: dt.date | None = None) -> tuple[Any, str | None]:
    key = (day, before)
    if key not in ctx._health:
        ctx._health[key] = health_bands(ctx.ds, day, before)
    return ctx._health[key]


REASON_CODES = ("overdue", "spend_drop", "detractor", "sla_breach")


def customer_facts(ds: Dataset, as_of: dt.date, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per active customer at ``as_of``: who, and their order rhythm (one engine query).

    Returns
    -------
    DataFrame ``customer_id, account_manager, tier, customer_name`` (if present), ``n_days``
    (purchase days), ``first_buy, last_order, days_since_order, usual_interval_days``,
    ``q_cur, q_prev`` (net spend in the last 90 days and the 90 before), ``spend_12m``.
    """
    day = pd.Timestamp(as_of).date()
    lit = ibis.literal(day)
    if status is None:
        status = outcomes.churn_status(ds, day)
    active = status.loc[~status.churned, ["customer_id"]]
    cust = ds["customers"].filter(lambda t: t.acquired_at <= lit)
    o = ds["orders"].filter(lambda t: t.order_date <= lit)
    ids = cust.select(cid="customer_id")
    o = o.join(ids, o.customer_id == ids.cid)
    age = lit.delta(o.order_date, unit="day")
    buy_day = ibis.ifelse(o.amount >= 0, o.order_date, ibis.null().cast("date"))
    per = engine.to_pandas(
        o.group_by("customer_id").aggregate(
            n_days=buy_day.nunique(),
            first_buy=buy_day.min(),
            last_order=buy_day.max(),
            q_cur=ibis.ifelse(age < QUARTER_DAYS, o.amount, 0.0).sum(),
            q_prev=ibis.ifelse(
                (age >= QUARTER_DAYS) & (age < 2 * QUARTER_DAYS), o.amount, 0.0
            ).sum(),
            spend_12m=ibis.ifelse(
                o.order_date > ibis.literal(_minus_months(day, 12)), o.amount, 0.0
            ).sum(),
        )
    )
    cols = ["customer_id", "account_manager", "tier"] + (
        ["customer_name"] if "customer_name" in cust.columns else []
    )
    info = engine.to_pandas(cust.select(*cols))
    df = active.merge(info, on="customer_id", how="left").merge(per, on="customer_id", how="left")
    df["n_days"] = df.n_days.fillna(0).astype(int)
    for col in ("first_buy", "last_order"):
        df[col] = pd.to_datetime(df[col])
    for col in ("q_cur", "q_prev", "spend_12m"):
        df[col] = df[col].fillna(0.0).astype(float)
    df["days_since_order"] = (pd.Timestamp(day) - df.last_order).dt.days
    span = (df.last_order - df.first_buy).dt.days
    df["usual_interval_days"] = np.where(
        df.n_days >= 2, span / (df.n_days - 1).clip(lower=1), np.nan
    )
    return df


def at_risk_by_rules(
    ds: Dataset, as_of: dt.date, status: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Active customers showing warning signals at ``as_of``, by fixed rules: the interim
    at-risk list, used when the churn chapter's health score (its model-based list,
    :func:`fupan.chapters.atrisk.at_risk_list`) is not available.

    A customer is at risk when ``overdue``, or when two or more of the other signals fire.
    Signals (thresholds in ``params.kpi``), each a reason code:

    ``overdue``
        no purchase for more than ``at_risk_cadence_multiple`` times the customer's own
        usual interval (first to last purchase day / (purchase days - 1)), and for at least
        ``at_risk_min_days``; customers with a single purchase day are measured against the
        median interval of all repeat customers.
    ``spend_drop``
        net spend in the last 90 days below ``1 - at_risk_spend_drop`` times the 90 days
        before (which had spend).
    ``detractor``
        the latest survey answer in the last 12 months gave NPS 0-6.
    ``sla_breach``
        a ticket still unanswered at ``as_of`` past its tier's first-response SLA.

    Returns
    -------
    DataFrame, one row per customer at risk: ``customer_id, customer_name, account_manager,
    tier, last_order, days_since_order, usual_interval_days, spend_12m, reasons`` (codes
    joined by ``;``), sorted by account manager then 12-month spend (largest first).
    """
    k = ds.params.kpi
    day = pd.Timestamp(as_of).date()
    df = customer_facts(ds, day, status)
    repeat = df.loc[df.n_days >= 2, "usual_interval_days"]
    typical = float(repeat.median()) if len(repeat) else np.nan
    interval = df.usual_interval_days.fillna(typical)
    limit = np.maximum(k.at_risk_cadence_multiple * interval, k.at_risk_min_days)
    flags = pd.DataFrame(index=df.index)
    flags["overdue"] = (
        df.days_since_order.notna() & interval.notna() & (df.days_since_order > limit)
    )
    flags["spend_drop"] = (df.q_prev > 0) & (df.q_cur < (1 - k.at_risk_spend_drop) * df.q_prev)
    flags["detractor"] = False
    flags["sla_breach"] = False
    if ds.has("surveys"):
        flags["detractor"] = df.customer_id.isin(_detractors(ds, day)).to_numpy()
    if ds.has("tickets"):
        flags["sla_breach"] = df.customer_id.isin(_sla_breached(ds, day)).to_numpy()
    # Overdue alone is a strong signal; the others are common on their own (a detractor, one
    # slow quarter) and only flag a customer together.
    others = flags[["spend_drop", "detractor", "sla_breach"]].sum(axis=1)
    hit = flags.overdue | (others >= 2)
    reasons = (
        flags.apply(lambda r: ";".join(c for c in REASON_CODES if r[c]), axis=1)
        if len(flags)
        else ""
    )
    df["reasons"] = reasons
    out = df[hit.to_numpy()].copy()
    keep = [
        "customer_id",
        "customer_name",
        "account_manager",
        "tier",
        "last_order",
        "days_since_order",
        "usual_interval_days",
        "spend_12m",
        "reasons",
    ]
    out = out[[c for c in keep if c in out.columns]]
    out = out.sort_values(
        ["account_manager", "spend_12m", "customer_id"],
        ascending=[True, False, True],
        na_position="last",
    )
    return out.reset_index(drop=True)


def _detractors(ds: Dataset, day: dt.date) -> pd.Series:
    """Customers whose latest survey answer in the 12 months to ``day`` gave NPS 0-6."""
    lit = ibis.literal(day)
    s = ds["surveys"].filter(
        lambda t: (t.surveyed_at <= lit) & (t.surveyed_at > ibis.literal(_minus_months(day, 12)))
    )
    last = s.group_by("customer_id").aggregate(at=s.surveyed_at.max())
    s = s.join(last, [s.customer_id == last.customer_id, s.surveyed_at == last.at])
    det = engine.to_pandas(
        s.group_by(s.customer_id).aggregate(nps=s.nps.min()).filter(lambda t: t.nps <= 6)
    )
    return det.customer_id


def _sla_breached(ds: Dataset, day: dt.date) -> pd.Series:
    """Customers with a ticket still unanswered at the end of ``day`` past its tier's
    first-response SLA."""
    tk = ds["tickets"]
    ct = ds["customers"].select(cid="customer_id", ctier="tier")
    t = tk.join(ct, tk.customer_id == ct.cid)
    now_s = _epoch(day + dt.timedelta(days=1))
    opened = t.opened_at.epoch_seconds()
    unanswered = t.first_response_at.isnull() | (t.first_response_at.epoch_seconds() >= now_s)
    late = t.filter(
        (opened < now_s) & unanswered & (opened + _Ctx(ds).sla_days(t.ctier) * 86400.0 < now_s)
    )
    return engine.to_pandas(late.select("customer_id").distinct()).customer_id


def _risk(ctx: _Ctx, day: dt.date) -> pd.DataFrame:
    if day not in ctx._risk:
        ctx._risk[day] = at_risk_by_rules(ctx.ds, day, status=ctx.status(day))
    return ctx._risk[day]


def health_at_risk(ctx: _Ctx, w: Window) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The month's at-risk list and the customers new on it since the previous month end.

    With the churn chapter's health score: customers in the red band (riskiest first, reasons
    in words), new = red now and scored but not red at the previous month end (same model
    and thresholds). Otherwise the interim rules of :func:`at_risk_by_rules`, new = at risk now
    and active but not at risk at the previous month end.

    Returns
    -------
    (at_risk, new, source) with source ``health`` or ``rules``.
    """
    scored, _ = _health(ctx, w.end, w.prev_end)
    if scored is None:
        now = _risk(ctx, w.end)
        before = _risk(ctx, w.prev_end)
        active_before = ctx.active_ids(w.prev_end)
        fresh = now[
            ~engine.isin(now.customer_id, before.customer_id)
            & engine.isin(now.customer_id, active_before)
        ]
        return now, fresh.reset_index(drop=True), "rules"
    frame, prev = scored[w.end], scored[w.prev_end]
    facts = customer_facts(ctx.ds, w.end, ctx.status(w.end))
    facts = facts[
        ["customer_id", "last_order", "days_since_order", "usual_interval_days", "spend_12m"]
    ]
    red = frame[frame.band == "red"].merge(facts, on="customer_id", how="left")
    red["spend_12m"] = red.spend_12m.fillna(0.0)
    red = red.sort_values(["account_manager", "score", "customer_id"], na_position="last")
    red = red.reset_index(drop=True)
    was = prev.customer_id[(prev.band == "red").to_numpy()]
    fresh = red[~engine.isin(red.customer_id, was) & engine.isin(red.customer_id, prev.customer_id)]
    fresh = fresh.reset_index(drop=True)
    return red, fresh, "health"


MODEL_KPIS = tuple(k for k, v in CATALOGUE.items() if v.model)
HEALTH_KPIS = ("red_band_share", "ltv_at_risk")


def ltv_at_risk(ctx: _Ctx, w: Window) -> tuple[float | None, int | None, str | None]:
    """Chapter 3's LTV at risk (:func:`fupan.chapters.clv.at_risk`): the sum of churn probability x CLV
    over the customers at risk, with the churn chapter's red band and probabilities when the
    health score is available, else the CLV model's own view (P(alive) or renewal due)."""
    from fupan.chapters import clv as chapter3

    try:
        val = clv_valuation(ctx.ds, w.end)
    except _MODEL_ERRORS:
        return None, None, "model_failed:ltv"
    scored, _ = _health(ctx, w.end, w.prev_end)
    scores = None
    if scored is not None:
        frame = scored[w.end]
        scores, _ = chapter3.normalise_scores(frame[frame.band == "red"])
    try:
        risk = chapter3.at_risk(val, ctx.active_ids(w.end), ctx.params.ltv, scores)
    except _MODEL_ERRORS:
        return None, None, "model_failed:ltv"
    return float(risk.ltv_at_risk.sum()), len(risk), None


def value_kpis(ctx: _Ctx, windows: list[Window]) -> list[dict[str, Any]]:
    """Average CLV of active customers, the share of live customers in the red health band,
    and LTV at risk (chapter 3's definition, :func:`ltv_at_risk`).

    The health model is trained per month, so the two health KPIs are computed only for
    ``ctx.health_months`` (a month's own run, or the months a backfill writes); other months
    take them from the history."""
    rows = []
    for w in windows:
        if ctx.model_months is not None and w.month not in ctx.model_months:
            rows += [_val(w.month, k, None, None, "not_computed") for k in MODEL_KPIS]
            continue
        active = ctx.active_ids(w.end)
        clv, why = _clv(ctx, w.end)
        if clv is None:
            rows.append(_val(w.month, "avg_clv", None, None, why))
        else:
            values = clv.reindex(active).dropna()
            rows.append(
                _val(w.month, "avg_clv", values.mean() if len(values) else None, len(values))
            )
        if ctx.health_months is not None and w.month not in ctx.health_months:
            rows += [_val(w.month, k, None, None, "not_computed") for k in HEALTH_KPIS]
            continue
        scored, why = _health(ctx, w.end, w.prev_end)
        if scored is None:
            rows.append(_val(w.month, "red_band_share", None, None, why))
        else:
            b = scored[w.end]
            share = (b.band == "red").mean() if len(b) else None
            rows.append(_val(w.month, "red_band_share", share, len(b)))
        value, n, why = ltv_at_risk(ctx, w)
        rows.append(_val(w.month, "ltv_at_risk", value, n, why))
    return rows
