"""Chapter 1 headlines: churn and renewal against benchmarks, and the failure points ranked.

* :func:`review_window` - the review period as the half-open window churn rates use.
* :func:`headline_churn` - churn overall, for core customers, by tier, industry and region,
  each with a Wilson interval, the benchmark and the gap in points.
* :func:`top_n_renewal` - renewal of the top-N customers (by revenue in the year before the
  review period) against the target.
* :func:`rank_failure_points` - the failure points of tiering, touches, service, lifecycle,
  churn and renewal, ranked by the revenue at stake.

Revenue at stake is defined per failure point and published on the findings slide:

* churn and renewal: last year's revenue of the customers lost beyond the benchmark or
  target (the excess share of the lost revenue);
* tiering, touches, service and the lifecycle: the trailing-year revenue of the customers
  the failure touches today, times the *excess churn* of customers who faced the same
  failure at the start of the review period - their churn over the period minus that of
  the customers who did not, compared within each assigned tier (:func:`excess_churn`).
  It is an association, not a causal effect; chapter 2 weighs the drivers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import numpy as np
import pandas as pd

from fupan.chapters import service
from fupan.core import i18n
from fupan.core.params import Params
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import metrics, segments
from fupan.measures.outcomes import churn_rate, period_churn
from fupan.measures.segments import trailing_start


def review_window(params: Params) -> tuple[dt.date, dt.date]:
    """(start, end) for :func:`fupan.measures.outcomes.churn_rate`: churn in [period_start, as_of].

    ``churn_rate`` counts churn in ``(start, end]`` among customers at risk at ``start``, so
    the start is the day before the period begins.
    """
    return params.period_start - dt.timedelta(days=1), params.as_of


def headline_churn(status: pd.DataFrame, dims: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Churn over the review period: overall, core, and by tier, industry and region.

    Parameters
    ----------
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of``.
    dims : one row per customer with ``customer_id`` and any of ``industry, region``.
    params : benchmarks (``churn_rate``, ``core_churn_rate``), core tiers, review period.

    Returns
    -------
    DataFrame with ``dimension`` (overall, core, tier, industry, region), ``group``,
    ``at_risk, churned, rate, ci_low, ci_high, benchmark, gap, gap_ci_low, gap_ci_high``
    (gap = rate - benchmark; its interval is the rate's, shifted: the benchmark is fixed).
    Core tiers are judged against the core benchmark, every other group against the overall.
    """
    start, end = review_window(params)
    # a breakdown needs the column and at least one known value
    keep = [c for c in ("industry", "region") if c in dims.columns and dims[c].notna().any()]
    st = status.merge(dims[["customer_id", *keep]], on="customer_id", how="left")
    st["core"] = st.tier.isin(params.tiers.core)
    b_all, b_core = params.benchmarks.churn_rate, params.benchmarks.core_churn_rate
    parts = []
    overall = churn_rate(st, start, end).assign(dimension="overall", group="all", benchmark=b_all)
    parts.append(overall)
    core = churn_rate(st[st.core], start, end).assign(
        dimension="core", group="core", benchmark=b_core
    )
    parts.append(core)
    by_tier = churn_rate(st, start, end, by="tier")
    if len(by_tier):  # nobody at risk at the start: no groups (the overall row says so)
        order = {t: i for i, t in enumerate(params.tiers.order)}
        by_tier = (
            by_tier.assign(dimension="tier", _o=by_tier.group.map(order).fillna(len(order)))
            .sort_values("_o")
            .drop(columns="_o")
        )
        by_tier["benchmark"] = np.where(by_tier.group.isin(params.tiers.core), b_core, b_all)
        parts.append(by_tier)
    for col in keep:
        g = churn_rate(st.dropna(subset=[col]), start, end, by=col)
        if len(g):
            g = g.assign(dimension=col, benchmark=b_all)
            parts.append(g.sort_values("rate", ascending=False))
    out = pd.concat(parts, ignore_index=True)
    out["gap"] = out.rate - out.benchmark
    out["gap_ci_low"] = out.ci_low - out.benchmark
    out["gap_ci_high"] = out.ci_high - out.benchmark
    cols = [
        "dimension",
        "group",
        "at_risk",
        "churned",
        "rate",
        "ci_low",
        "ci_high",
        "benchmark",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
    ]
    return out[cols]


def prior_year_revenue(ds: Dataset, cut: dt.date) -> pd.DataFrame:
    """Revenue per customer in the year ending on ``cut`` (one row per customer with orders)."""
    start = trailing_start(cut)
    o = ds["orders"]
    o = o.filter((o.order_date >= ibis.literal(start)) & (o.order_date <= ibis.literal(cut)))
    return engine.to_pandas(
        o.group_by("customer_id").aggregate(revenue=o.amount.sum()).order_by("customer_id")
    )


def top_n_customers(ds: Dataset, status: pd.DataFrame, n: int) -> pd.DataFrame:
    """The top-N customers at the start of the review period (:func:`fupan.measures.metrics.top_n_customers`).

    Customers acquired and not churned by the day before ``period_start``, ranked by revenue
    in the year up to that day (ties by customer id).
    """
    return metrics.top_n_customers(ds, status, ds.params.period_start, n)


def top_n_renewal(
    ds: Dataset, status: pd.DataFrame, n: int | None = None
) -> tuple[dict, pd.DataFrame]:
    """Renewal rate of the top-N customers over the review period, against
    ``benchmarks.top_n_renewal_target``: the catalogue's :func:`fupan.measures.metrics.top_n_renewal`
    over ``[period_start, as_of]``.

    With ``contracts``: a top-N customer is due when a contract of theirs ended in the
    review period; it renewed when a contract names it in ``renewal_of`` or a new contract
    of the customer started after it and no later than ``grace_days`` after its end. A
    contract still inside its grace period at ``as_of`` and not yet renewed is pending and
    left out. The customer's latest due contract decides.

    Without ``contracts`` (non-contractual data): renewal is a repeat purchase - the
    customer ordered during the review period.

    Returns
    -------
    (summary with ``metric, basis, n, due, renewed, rate, ci_low, ci_high, target, gap``,
    one row per top-N customer with ``rank, revenue, due, renewed``)
    """
    params = ds.params
    summary, per = metrics.top_n_renewal(ds, status, params.period_start, params.as_of, n)
    target = params.benchmarks.top_n_renewal_target
    summary["target"] = target
    summary["gap"] = summary["rate"] - target if summary["due"] else np.nan
    return summary, per


def renewal_by_band(top: pd.DataFrame, bands: int = 4) -> pd.DataFrame:
    """Renewal of the top-N customers in ``bands`` rank bands of equal width.

    Parameters
    ----------
    top : the per-customer frame of :func:`top_n_renewal` (``rank, due, renewed``).

    Returns
    -------
    One row per band with a customer due: ``band, due, renewed, first, last`` (the ranks it
    spans among the due) and ``rate``.
    """
    width = max(1, int(np.ceil(len(top) / bands)))
    due = top[top.due].assign(band=lambda d: (d["rank"] - 1) // width)
    out = due.groupby("band").agg(
        due=("due", "size"),
        renewed=("renewed", "sum"),
        first=("rank", "min"),
        last=("rank", "max"),
    )
    out["rate"] = out.renewed / out.due
    return out.reset_index()


def lost_revenue(
    status: pd.DataFrame, revenue_before: pd.DataFrame, params: Params
) -> tuple[int, float]:
    """Customers churned in the review period and their revenue in the year before it."""
    start, end = review_window(params)
    # the headline's population and flag: one definition of "churned in the period"
    at_start = period_churn(status, start, end)
    lost = at_start[at_start.churned_in_period]
    rev = (
        revenue_before.set_index("customer_id")
        .revenue.reindex(lost.customer_id)
        .fillna(0)
        .clip(lower=0)
    )
    return len(lost), float(rev.sum())


def churn_counts(status: pd.DataFrame, params: Params) -> dict[str, int]:
    """The churned counts the diagnosis quotes, each with its population, and how they add up.

    All come from one :func:`fupan.measures.outcomes.churn_status` at ``as_of``:

    * ``at_start`` - customers on the books when the review period began (acquired by the
      day before ``period_start`` and not churned by then): the churn rate's denominator;
    * ``churned_in_period`` - of those, lost during the period: the churn rate's numerator,
      the churn failure point's customers (:func:`lost_revenue`);
    * ``churned_before_period`` - lost on or before the day before ``period_start``;
    * ``new_churned_in_period`` - acquired during the period and already lost by ``as_of``
      (not in the churn rate: they were not at risk at its start);
    * ``churned_by_as_of`` - everyone lost by ``as_of``: the funnel's churned stage. It is
      the sum of the three above.
    """
    start, end = review_window(params)
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    at_start = period_churn(status, start, end)
    churned = status.churned_at.notna() & (status.churned_at <= e)
    before = churned & (status.churned_at <= s)
    new = churned & (status.acquired_at > s)
    return {
        "at_start": len(at_start),
        "churned_in_period": int(at_start.churned_in_period.sum()),
        "churned_before_period": int(before.sum()),
        "new_churned_in_period": int(new.sum()),
        "churned_by_as_of": int(churned.sum()),
    }


def excess_share(rate: float, benchmark: float) -> float:
    """The part of a loss rate above its benchmark, as a share of the rate (0 when at or below)."""
    if rate is None or not rate > 0 or np.isnan(rate):
        return 0.0
    return max(0.0, (rate - benchmark) / rate)


def excess_churn(exposed: pd.Series, churned: pd.Series, strata: pd.Series | None = None) -> dict:
    """Churn of the exposed minus churn of the unexposed, compared within strata.

    The per-stratum differences are averaged with the exposed group's stratum sizes as
    weights (a risk difference standardised to the exposed), so a failure concentrated in a
    tier that churns more anyway is not blamed for that tier's churn.

    Returns
    -------
    dict with ``exposed, exposed_churn, unexposed_churn`` (crude rates) and ``excess``
    (standardised difference; NaN when no stratum has both groups).
    """
    df = pd.DataFrame(
        {
            "e": np.asarray(exposed, dtype=bool),
            "c": np.asarray(churned, dtype=bool),
            "s": "all" if strata is None else np.asarray(strata, dtype=object),
        }
    )
    num = den = 0.0
    for _, g in df.groupby("s"):
        e, u = g[g.e], g[~g.e]
        if len(e) and len(u):
            num += len(e) * (e.c.mean() - u.c.mean())
            den += len(e)
    return {
        "exposed": int(df.e.sum()),
        "exposed_churn": float(df.c[df.e].mean()) if df.e.any() else np.nan,
        "unexposed_churn": float(df.c[~df.e].mean()) if (~df.e).any() else np.nan,
        "excess": num / den if den else np.nan,
    }


def failure_point(
    key: str,
    metric: str,
    value: float,
    affected_now: set[str] | pd.Series,
    affected_then: set[str] | pd.Series,
    at_start: pd.DataFrame,
    revenue: pd.DataFrame,
) -> dict:
    """A failure-point candidate whose revenue at stake comes from excess churn.

    Parameters
    ----------
    key, metric, value : what failed and the headline number that shows it.
    affected_now : customers the failure touches today.
    affected_then : customers it touched at the start of the review period.
    at_start : :func:`fupan.measures.outcomes.period_churn` over the review period (``customer_id,
        tier, churned_in_period``).
    revenue : trailing-year revenue per customer (``customer_id, revenue``).

    Returns
    -------
    dict with ``key, metric, value, customers, revenue_exposed, excess_churn, exposed_churn,
    unexposed_churn, revenue_at_stake`` = revenue_exposed x max(0, excess_churn) (NaN when
    the excess cannot be estimated).
    """
    then = set(affected_then)
    ex = excess_churn(
        engine.isin(at_start.customer_id, then), at_start.churned_in_period, at_start.tier
    )
    exposed = segment_revenue(affected_now, revenue)
    excess = ex["excess"]
    return {
        "key": key,
        "metric": metric,
        "value": value,
        "customers": len(set(affected_now)),
        "revenue_exposed": exposed,
        "excess_churn": excess,
        "exposed_churn": ex["exposed_churn"],
        "unexposed_churn": ex["unexposed_churn"],
        "revenue_at_stake": exposed * max(0.0, excess) if excess == excess else np.nan,
    }


def loss_point(
    key: str, metric: str, value: float, customers: int, lost: float, rate: float, benchmark: float
) -> dict:
    """A failure-point candidate for a loss rate against its benchmark (churn, non-renewal).

    Revenue at stake = ``lost`` x the share of the loss rate above the benchmark.
    """
    return {
        "key": key,
        "metric": metric,
        "value": value,
        "customers": customers,
        "revenue_exposed": lost,
        "excess_churn": rate - benchmark,
        "revenue_at_stake": lost * excess_share(rate, benchmark),
    }


def rank_failure_points(candidates: list[dict], top: int = 3) -> pd.DataFrame:
    """Order failure-point candidates by revenue at stake and keep the ``top`` ones.

    Each candidate is a dict with ``key, metric, value, revenue_at_stake`` and optional
    extra fields (``customers``, ``benchmark``...). Candidates with no revenue at stake
    (NaN or <= 0) are dropped: they are not failures on this data.
    """
    df = pd.DataFrame(candidates)
    if df.empty:
        return pd.DataFrame(columns=["rank", "key", "metric", "value", "revenue_at_stake"])
    df = df[df.revenue_at_stake.fillna(0) > 0]
    df = (
        df.sort_values(["revenue_at_stake", "key"], ascending=[False, True])
        .head(top)
        .reset_index(drop=True)
    )
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def segment_revenue(customer_ids: pd.Series | set | list, revenue: pd.DataFrame) -> float:
    """Sum of non-negative revenue of the given customers (``revenue``: customer_id, revenue)."""
    ids = set(customer_ids)
    r = revenue[engine.isin(revenue.customer_id, ids)].revenue
    return float(r.clip(lower=0).sum())


# --------------------------------------------------------------------------------------
# What the data can show: supplied columns, breakdowns, superlatives


def tiers_supplied(ds: Dataset) -> bool:
    """Whether the business supplied an assigned tier per customer.

    Asks the data layer (``ds.supplied("customers", "tier")``) when it can answer; else a
    tier column that is absent or entirely null counts as not supplied.
    """
    supplied = getattr(ds, "supplied", None)
    if callable(supplied):
        return bool(supplied("customers", "tier"))
    c = ds["customers"]
    if "tier" not in c.columns:
        return False
    n = engine.to_pandas(c.aggregate(n=c.tier.notnull().sum())).n.iloc[0]
    return bool(n and n > 0)


def breakdown_status(values: pd.Series | None) -> tuple[str, list[str]]:
    """Whether a column can break a metric down: ``ok`` (two or more known values),
    ``one`` (a single value: the breakdown is the total) or ``none`` (absent or empty).

    Returns
    -------
    (status, the distinct known values, sorted)
    """
    if values is None:
        return "none", []
    known = sorted({str(v) for v in values.dropna()})
    if not known:
        return "none", []
    return ("ok" if len(known) > 1 else "one"), known


def label(prefix: str, value: Any, lang: str) -> str:
    """A data value's label from the catalogue (``prefix.value``), or the value itself."""
    try:
        return i18n.t(f"{prefix}.{value}", lang)
    except i18n.MissingLabelError:
        return str(value)


def highest(frame: pd.DataFrame, column: str, min_groups: int = 2) -> pd.Series | None:
    """The row with the strictly highest ``column`` among at least ``min_groups`` rows.

    None when fewer rows have a value, or when the top value is shared (a tie or every
    group equal): a superlative needs a group that stands above the others.
    """
    rated = frame.dropna(subset=[column])
    if len(rated) < min_groups:
        return None
    ranked = rated.sort_values(column, ascending=False, kind="stable")
    top, second = ranked[column].iloc[0], ranked[column].iloc[1]
    return ranked.iloc[0] if top > second else None


def lowest(frame: pd.DataFrame, column: str, min_groups: int = 2) -> pd.Series | None:
    """The row with the strictly lowest ``column`` (see :func:`highest`)."""
    flipped = frame.assign(_neg=-frame[column])
    row = highest(flipped, "_neg", min_groups)
    return None if row is None else row.drop("_neg")


def group_breakdowns(
    features: pd.DataFrame, tiers_given: bool
) -> tuple[list[str], list[tuple[str, dict]]]:
    """Which of tier, industry and region can break churn down, and why the others cannot.

    A dimension breaks a metric down when it has two or more known values (and, for the
    tier, when the business supplied tiers: a tier derived from spend is not the business's
    segmentation).

    Returns
    -------
    (dimensions to show, reasons): each reason is a ``diag.cannot.*`` catalogue key and its
    values (``column``, ``value``).
    """
    shown, why = [], []
    for dim in ("tier", "industry", "region"):
        state, values = breakdown_status(features[dim] if dim in features.columns else None)
        column = f"customers.{dim}"
        if dim == "tier" and not tiers_given:
            why.append(("diag.cannot.tiers_not_supplied", {}))
        elif state == "none":
            why.append(("diag.cannot.no_column", {"column": column}))
        elif state == "one":
            why.append(("diag.cannot.one_value", {"column": column, "value": values[0]}))
        else:
            shown.append(dim)
    return shown, why


def tier_blocker(
    tiers_given: bool, order: list[str], current_tiers: pd.Series, breakdown: bool = False
) -> tuple[str, dict] | None:
    """Why assigned tiers cannot be set against recommended ones (None when they can).

    With ``breakdown`` (a metric split by assigned tier), current customers must also sit in
    two or more tiers; a comparison with the recommended tier needs only one.

    Parameters
    ----------
    tiers_given : whether the business supplied tiers (:func:`tiers_supplied`).
    order : ``tiers.order`` from the params.
    current_tiers : the assigned tier of each current (not churned) customer.
    breakdown : whether the slide splits by assigned tier.

    Returns
    -------
    A ``diag.cannot.*`` catalogue key and its values (``tier`` is a tier code), or None.
    """
    if not tiers_given:
        return "diag.cannot.tiers_only_recommended", {}
    if len(order) < 2:
        return "diag.cannot.one_tier", {"tier": order[0]}
    if current_tiers.empty:
        return "diag.cannot.no_current", {}
    state, values = breakdown_status(current_tiers)
    if breakdown and state != "ok":
        return "diag.cannot.one_value_current", {"column": "customers.tier", "tier": values[0]}
    return None


def headline_figures(
    churn: pd.DataFrame, renewal: dict, service: pd.Series | None, params: Params
) -> dict[str, Any]:
    """The headline slide's figures under their ``diagnosis.*`` results keys, in order.

    Parameters
    ----------
    churn : :func:`headline_churn` (first row overall, second core customers).
    renewal : :func:`top_n_renewal`'s summary.
    service : the overall row of :func:`fupan.chapters.service.service_levels` when tickets
        were opened in the review period, else None.
    params : the run's params (benchmarks, ``diagnosis.top_n``).

    Returns
    -------
    dict; a figure the data cannot give (no customer at risk of churn, no core customer,
    no renewal due, no ticket) is None.
    """
    overall, core = churn.iloc[0], churn.iloc[1]
    measured, core_ok = overall.at_risk > 0, core.at_risk > 0
    svc = service is not None
    return {
        "churn_rate": overall.rate if measured else None,
        "churn_rate_ci": [overall.ci_low, overall.ci_high] if measured else None,
        "churn_at_risk": int(overall.at_risk),
        "churned_customers": int(overall.churned),
        "core_churn_rate": core.rate if core_ok else None,
        "core_churn_rate_ci": [core.ci_low, core.ci_high] if core_ok else None,
        "benchmark_churn_rate": params.benchmarks.churn_rate,
        "benchmark_core_churn_rate": params.benchmarks.core_churn_rate,
        "churn_gap": overall.gap if measured else None,
        "core_churn_gap": core.gap if core_ok else None,
        "churn_by_group": churn,
        "top_n": params.diagnosis.top_n,
        "top_n_renewal_rate": renewal["rate"] if renewal["due"] else None,
        "top_n_renewal_target": renewal["target"],
        "top_n_renewal": renewal,
        "median_first_response_days": service.median_first_response_days if svc else None,
        "sla_compliance": service.sla_compliance if svc else None,
    }


def headline_tiles(
    head: dict[str, Any], top_n: int, params: Params, fmt: i18n.Fmt
) -> list[tuple[str, str, str]]:
    """The headline slide's tiles (label, value, colour) from :func:`headline_figures`:
    churn, then core churn, top-N renewal and first response when measured; red when on
    the wrong side of the benchmark."""
    t, b = (lambda key, **v: i18n.t(key, fmt.lang, **v)), params.benchmarks
    rate, core, renew = head["churn_rate"], head["core_churn_rate"], head["top_n_renewal_rate"]
    target, median = head["top_n_renewal_target"], head["median_first_response_days"]
    tiles = [
        (t("diag.tile.churn", bench=fmt.pct(b.churn_rate)), fmt.pct(rate), head["churn_gap"] > 0)
    ]
    if core is not None:
        label = t("diag.tile.core_churn", bench=fmt.pct(b.core_churn_rate))
        tiles.append((label, fmt.pct(core), head["core_churn_gap"] > 0))
    if renew is not None:
        label = t("diag.tile.top_n_renewal", n=top_n, target=fmt.pct(target))
        tiles.append((label, fmt.pct(renew), renew < target))
    if median is not None:
        label = t("diag.tile.first_response", bench=fmt.days(b.first_response_days))
        tiles.append((label, fmt.days(median), median > b.first_response_days))
    return [(label, value, "red" if worse else "green") for label, value, worse in tiles]


def reason_words(reason: tuple[str, dict] | None, lang: str, tier_label=str) -> str | None:
    """A ``(catalogue key, values)`` reason (:func:`tier_blocker`, :func:`group_breakdowns`)
    in words, tier codes as ``tier_label`` reads them; None for no reason."""
    if reason is None:
        return None
    key, values = reason
    return i18n.t(key, lang, **{k: tier_label(v) if k == "tier" else v for k, v in values.items()})


def behaviour_segments(
    features: pd.DataFrame, at_start: pd.DataFrame, revenue: pd.DataFrame, params: Params
) -> tuple[segments.BehaviouralSegments | None, pd.DataFrame, int]:
    """Behavioural segments of the customers at the start of the review period.

    Parameters
    ----------
    features : :func:`fupan.measures.segments.customer_features_as_of` at the period start, for
        the customers in ``at_start`` (same order as the model's labels).
    at_start : :func:`fupan.measures.outcomes.period_churn` over the review period.
    revenue : trailing-year revenue per customer (``customer_id, revenue``): the value
        each segment brings and the weight of the fit.
    params : ``diagnosis.segment_k_range`` and the seed.

    Returns
    -------
    (fitted :class:`~fupan.measures.segments.BehaviouralSegments`, its
    :func:`~fupan.measures.segments.describe_segments` table with a ``name`` per segment in
    ``params.lang``, the fewest customers a fit needs); the model is None and the table
    empty when there are fewer customers than that or no behaviour to cluster on.
    """
    d = params.diagnosis
    ids = features.customer_id
    churned = at_start.set_index("customer_id").churned_in_period.reindex(ids).to_numpy()
    value = revenue.set_index("customer_id").revenue.reindex(ids).fillna(0.0).to_numpy()
    x = segments.behaviour_matrix(features)
    fewest = 10 * d.segment_k_range[0]
    if len(x) < fewest or x.shape[1] == 0:
        return None, pd.DataFrame(), fewest
    model = segments.BehaviouralSegments(d.segment_k_range, random_state=params.seed)
    model.fit(x, value=value)
    seg = segments.describe_segments(features, model.labels_, value, churned, model.profile_)

    def t(key: str, **values: Any) -> str:
        return i18n.t(key, params.lang, **values)

    seg["name"] = [
        t(
            "diag.seg.name",
            i=s + 1,
            value=t(f"diag.seg.value.{v}"),
            trait=t(f"diag.seg.trait.{tr}") if tr else t(f"diag.seg.activity.{a}"),
        )
        for s, v, tr, a in zip(seg.segment, seg.value, seg.trait, seg.activity, strict=True)
    ]
    return model, seg, fewest


# --------------------------------------------------------------------------------------
# The chapter's pieces put together: the headline bars and the ranked failure points


def headline_bars(
    churn: tuple[float, float] | None,
    core: tuple[float, float] | None,
    renewal: tuple[float, float] | None,
) -> pd.DataFrame:
    """The headline chart's rows: each measured (value, benchmark) pair, in slide order.

    Churn and core churn are worse above their benchmark, top-N renewal below its target;
    a pair that could not be measured (None) has no bar.
    """
    rows = [
        (metric, pair[0], pair[1], lower)
        for metric, pair, lower in (
            ("churn", churn, True),
            ("core_churn", core, True),
            ("top_n_renewal", renewal, False),
        )
        if pair is not None
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "benchmark", "lower_is_better"])


def exposed_at_start(
    ds: Dataset,
    features_at_start: pd.DataFrame,
    snapshots: pd.DataFrame,
    start: dt.date,
    params: Params,
) -> dict[str, set]:
    """Who faced each failure at the start of the review period, to see how much more of
    them churned (:func:`failure_point`'s ``affected_then``).

    ``tiering``: misclassified on the features at ``start``; ``lifecycle``: declining or at
    risk in ``snapshots`` at ``start``; ``touches`` (with a touches table): no touch in the
    ``coverage_days`` up to ``start``; ``service`` (with tickets): an SLA breach in the year
    before ``start``.
    """
    at = snapshots[snapshots.cut == pd.Timestamp(start)]
    then = {
        "tiering": set(
            segments.retier(features_at_start, params).query("misclassified").customer_id
        ),
        "lifecycle": set(at[at.stage.isin(["declining", "at_risk"])].customer_id),
    }
    if ds.has("touches"):
        since = pd.Timestamp(start) - pd.Timedelta(days=params.diagnosis.coverage_days - 1)
        last = features_at_start.last_touch
        then["touches"] = set(features_at_start.customer_id[~(last >= since)])
    if ds.has("tickets"):
        before = service.customer_service(ds, trailing_start(start), start)
        then["service"] = set(before.customer_id[before.breaches > 0])
    return then


def failure_points(
    exposed_now: dict[str, tuple[str, float, set]],
    exposed_then: dict[str, set],
    at_start: pd.DataFrame,
    revenue: pd.DataFrame,
    lost: tuple[int, float],
    churn: tuple[float, float] | None = None,
    renewal: tuple[pd.DataFrame, float, float] | None = None,
    top: int = 3,
) -> tuple[pd.DataFrame, list[dict]]:
    """The chapter's failure points ranked by revenue at stake, and every candidate.

    Parameters
    ----------
    exposed_now : per failure (``tiering``, ``touches``, ``service``, ``lifecycle``, in
        slide order), its headline metric, value and the customers it touches today.
    exposed_then : :func:`exposed_at_start`.
    at_start : :func:`fupan.measures.outcomes.period_churn` over the review period.
    revenue : trailing-year revenue per customer (``customer_id, revenue``).
    lost : :func:`lost_revenue` (customers lost, their revenue the year before).
    churn : (churn rate, benchmark) when churn was measured.
    renewal : (:func:`top_n_renewal`'s customers, rate, target) when renewals were due.
    top : how many to keep.

    Returns
    -------
    (:func:`rank_failure_points` table, the candidates considered)
    """
    candidates = [
        failure_point(key, metric, value, ids, exposed_then[key], at_start, revenue)
        for key, (metric, value, ids) in exposed_now.items()
    ]
    if churn is not None:
        rate, bench = churn
        candidates.append(loss_point("churn", "churn_rate", rate, *lost, rate, bench))
    if renewal is not None:
        customers, rate, target = renewal
        not_renewed = customers[customers.due & ~customers.renewed]
        candidates.append(
            loss_point(
                "renewal",
                "top_n_renewal_rate",
                rate,
                len(not_renewed),
                float(not_renewed.revenue.clip(lower=0).sum()),
                1 - rate,
                1 - target,
            )
        )
    return rank_failure_points(candidates, top=top), candidates


#: how each failure point's headline value reads ("pct" a share, "int" a count)
POINT_VALUES = {
    "churn_rate": "pct",
    "top_n_renewal_rate": "pct",
    "misclassified_customers": "int",
    "touch_coverage": "pct",
    "sla_compliance": "pct",
    "declining_or_at_risk_customers": "int",
}


def failure_findings(
    ranked: pd.DataFrame, fmt: i18n.Fmt, extra: dict[str, dict[str, Any]]
) -> list[dict]:
    """One finding per ranked failure point: its sentence (``diag.finding.<key>`` in
    ``fmt.lang``, quoting the value, the revenue at stake and exposed, the excess churn and
    the customers, plus ``extra[key]``) and the figures it quotes."""
    findings = []
    for r in ranked.itertuples():
        value = getattr(fmt, POINT_VALUES[r.metric])(r.value)
        sentence = i18n.t(
            f"diag.finding.{r.key}",
            fmt.lang,
            value=value,
            revenue=fmt.money(r.revenue_at_stake),
            exposed=fmt.money(r.revenue_exposed),
            excess=fmt.pts(r.excess_churn),
            customers=fmt.int(r.customers),
            **extra[r.key],
        )
        findings.append(
            {
                "title": sentence,
                "key": r.key,
                "metric": r.metric,
                "value": r.value,
                "revenue_at_stake": r.revenue_at_stake,
                "customers": int(r.customers),
            }
        )
    return findings


def findings_table(findings: list[dict], fmt: i18n.Fmt) -> pd.DataFrame:
    """The findings slide's table: rank, failure point, its value, customers and revenue at
    stake, one row per :func:`failure_findings` entry."""
    value = [getattr(fmt, POINT_VALUES[x["metric"]])(x["value"]) for x in findings]
    return pd.DataFrame(
        {
            "rank": [i + 1 for i in range(len(findings))],
            "point": [i18n.t(f"diag.point.{x['key']}", fmt.lang) for x in findings],
            "value": value,
            "customers": [x["customers"] for x in findings],
            "revenue_at_stake": [x["revenue_at_stake"] for x in findings],
        }
    )


def tier_rules(params: Params, fmt: i18n.Fmt) -> str:
    """The recommended-tier rules in words (spend floors per tier, dormancy for the last)."""
    order, floors, lang = params.tiers.order, params.tiers.spend_floors, fmt.lang
    rules = []
    for i, code in enumerate(order):
        name = params.tier_label(code)
        if i == 0:
            rules.append(i18n.t("diag.tiers.rule_top", lang, tier=name, low=fmt.money(floors[i])))
        elif i < len(order) - 1:
            low, high = fmt.money(floors[i]), fmt.money(floors[i - 1])
            rules.append(i18n.t("diag.tiers.rule_mid", lang, tier=name, low=low, high=high))
        else:
            high, days = fmt.money(floors[i - 1]), params.tiers.dormant_days
            rules.append(i18n.t("diag.tiers.rule_last", lang, tier=name, high=high, days=days))
    return i18n.t("diag.tiers.rules", lang) + ("；" if lang == "zh" else "; ").join(rules)
