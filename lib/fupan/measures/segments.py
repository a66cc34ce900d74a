"""Customer tiers and segments: RFM, spend tiers, value x potential, re-tiering, clustering.

Everything starts from :func:`customer_features_as_of`, one row per customer as of a date,
aggregated in the query engine. The rest works on that frame:

* :func:`rfm_scores` - quantile scores 1..bins for recency, frequency and monetary value.
* :func:`spend_tier` - the threshold tier a customer's trailing-12-month spend earns
  (floors ``params.tiers.spend_floors``; dormant after ``params.tiers.dormant_days``).
* :func:`retier` - assigned vs recommended tier and the misclassification rule.
* :func:`value_potential` - four mutually exclusive quadrants with published rules.
* :func:`tier_effort` - each tier's share of customers, revenue, touches and tickets.
* :class:`BehaviouralSegments` - KMeans on standardised RFM and engagement features, k by
  silhouette, seeded.

The misclassification rule is a business rule from the params, not a model: a customer is
*misclassified* when the tier their trailing-12-month spend earns is at least one tier above
the tier the business assigned, and their trailing-12-month spend is at least
``1 + diagnosis.misclassification_growth`` times what they spent in their first 12 months
(3.0 means "spend up more than 300 %").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from fupan.core.params import Params
from fupan.io import engine
from fupan.io.dataset import Dataset

DAY_SECONDS = 86_400.0


# --------------------------------------------------------------------------------------
# Windows


def as_date(value: str | dt.date | pd.Timestamp) -> dt.date:
    """A plain ``datetime.date`` from a string, date or timestamp."""
    return pd.Timestamp(value).date()


def years_before(day: dt.date, years: int = 1) -> dt.date:
    """The same calendar day ``years`` earlier (29 February falls back to the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def trailing_start(as_of: dt.date, years: int = 1) -> dt.date:
    """First day of the trailing window ending on ``as_of``: (as_of - years, as_of]."""
    return years_before(as_of, years) + dt.timedelta(days=1)


def months_before(day: dt.date, months: int) -> dt.date:
    return (pd.Timestamp(day) - pd.DateOffset(months=months)).date()


def customer_features_as_of(
    ds: Dataset, as_of: str | dt.date | None = None, engagement: bool = True
) -> pd.DataFrame:
    """One row per customer acquired on or before ``as_of``, from data on or before ``as_of``
    only (the day ``as_of`` included; the catalogue's model features, which read strictly
    before their date, are :func:`fupan.measures.features.customer_features_before`).

    Windows: ``12m`` is the trailing year (as_of - 1 year, as_of]; ``prior_12m`` the year
    before it; ``first_12m`` the year from ``acquired_at``; ``h1``/``h2`` the older and the
    newer half of the trailing year. Amounts are net of refunds.

    Parameters
    ----------
    ds : the run's dataset.
    as_of : snapshot date (default: the run's as_of).
    engagement : add touches, responses, tickets and logins over the trailing year when
        those optional tables are present (columns are absent otherwise).

    Returns
    -------
    DataFrame with ``customer_id, acquired_at, tier, industry, region, account_manager,
    orders_total, revenue_total, first_order, last_order, orders_12m, spend_12m,
    spend_prior_12m, spend_first_12m, spend_h1, spend_h2, recency_days, tenure_days`` and,
    with ``engagement``, ``touches_12m, responses_12m, responded_known_12m, last_touch,
    tickets_12m, logins_12m``.
    """
    w = _Windows.at(as_date(as_of if as_of is not None else ds.params.as_of))
    base = _order_totals(ds, w)
    if engagement:
        base = _with_engagement(ds, base, w)
    return _feature_frame(base, w.cut)


@dataclass(frozen=True)
class _Windows:
    """The windows of :func:`customer_features_as_of`: the cut, the start of the trailing year,
    of the year before it, and of the trailing year's newer half."""

    cut: dt.date
    t12: dt.date
    prior: dt.date
    mid: dt.date

    @classmethod
    def at(cls, cut: dt.date) -> _Windows:
        t12 = trailing_start(cut)
        prior = trailing_start(t12 - dt.timedelta(days=1))
        return cls(cut, t12, prior, months_before(cut, 6) + dt.timedelta(days=1))


#: integer columns of :func:`customer_features_as_of`; a customer without rows counts 0
_COUNTS = [
    "orders_total",
    "orders_12m",
    "touches_12m",
    "responses_12m",
    "responded_known_12m",
    "tickets_12m",
    "logins_12m",
]
_MONEY = [
    "revenue_total",
    "spend_12m",
    "spend_prior_12m",
    "spend_first_12m",
    "spend_h1",
    "spend_h2",
]


def _order_totals(ds: Dataset, w: _Windows) -> ibis.expr.types.Table:
    """Customers acquired by the cut with their order counts and spend in each window."""
    lit_cut, lit_t12, lit_prior, lit_mid = (ibis.literal(d) for d in (w.cut, w.t12, w.prior, w.mid))
    c = ds["customers"].filter(lambda t: t.acquired_at <= lit_cut)
    o = ds["orders"].filter(lambda t: t.order_date <= lit_cut)
    # the end of each customer's first year, worked out once per customer, not per order
    first_year = c.select(
        "customer_id", first_end=(c.acquired_at + ibis.interval(years=1)).cast("date")
    )
    o = o.inner_join(first_year, "customer_id")
    first_end = o.first_end

    def _sum_if(cond: ibis.expr.types.BooleanValue) -> ibis.expr.types.Value:
        return ibis.ifelse(cond, o.amount, 0.0).sum()

    per = o.group_by("customer_id").aggregate(
        orders_total=o.count(),
        revenue_total=o.amount.sum(),
        first_order=o.order_date.min(),
        last_order=o.order_date.max(),
        orders_12m=(o.order_date >= lit_t12).sum(),
        spend_12m=_sum_if(o.order_date >= lit_t12),
        spend_prior_12m=_sum_if((o.order_date >= lit_prior) & (o.order_date < lit_t12)),
        spend_first_12m=_sum_if(o.order_date < first_end),
        spend_h1=_sum_if((o.order_date >= lit_t12) & (o.order_date < lit_mid)),
        spend_h2=_sum_if(o.order_date >= lit_mid),
    )
    dims = [
        col
        for col in ("customer_id", "acquired_at", "tier", "industry", "region", "account_manager")
        if col in c.columns
    ]
    return c.select(dims).left_join(per, "customer_id").drop("customer_id_right")


def _with_engagement(
    ds: Dataset, base: ibis.expr.types.Table, w: _Windows
) -> ibis.expr.types.Table:
    """Touches, responses, tickets and logins over the trailing year, for the optional
    tables present (their columns are absent otherwise)."""
    lit_cut, lit_t12 = ibis.literal(w.cut), ibis.literal(w.t12)
    if ds.has("touches"):
        tt = ds["touches"]
        tt = tt.filter(tt.touched_at.date() <= lit_cut)
        has_resp = "responded" in tt.columns
        agg = {
            "touches_12m": (tt.touched_at.date() >= lit_t12).sum(),
            "last_touch": tt.touched_at.date().max(),
        }
        if has_resp:
            in12 = tt.touched_at.date() >= lit_t12
            agg["responses_12m"] = (in12 & tt.responded.fill_null(False)).sum()
            agg["responded_known_12m"] = (in12 & tt.responded.notnull()).sum()
        tp = tt.group_by("customer_id").aggregate(**agg)
        base = base.left_join(tp, "customer_id").drop("customer_id_right")
    if ds.has("tickets"):
        tk = ds["tickets"]
        tk = tk.filter((tk.opened_at.date() <= lit_cut) & (tk.opened_at.date() >= lit_t12))
        kp = tk.group_by("customer_id").aggregate(tickets_12m=tk.count())
        base = base.left_join(kp, "customer_id").drop("customer_id_right")
    if ds.has("activity"):
        ac = ds["activity"]
        ac = ac.filter((ac.period_start <= lit_cut) & (ac.period_start >= lit_t12))
        ap = ac.group_by("customer_id").aggregate(logins_12m=ac.logins.sum())
        base = base.left_join(ap, "customer_id").drop("customer_id_right")
    return base


def _feature_frame(base: ibis.expr.types.Table, cut: dt.date) -> pd.DataFrame:
    """The query in pandas, by customer id: counts as int, money as float, recency and
    tenure in days at the cut."""
    # Customers without orders (touches, ...) count 0, not null: a nullable integer column
    # comes back from Ibis one Python object per row (most of this query's time at 1M).
    base = base.mutate(**{col: base[col].fill_null(0) for col in _COUNTS if col in base.columns})
    df = engine.to_pandas(base.order_by("customer_id"))
    for col in ("acquired_at", "first_order", "last_order", "last_touch"):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col])
    for col in _COUNTS:
        if col in df.columns:
            df[col] = df[col].fillna(0).astype(int)
    for col in _MONEY:
        df[col] = df[col].fillna(0.0).astype(float)
    ts_cut = pd.Timestamp(cut)
    last_active = df["last_order"].fillna(df["acquired_at"])
    df["recency_days"] = (ts_cut - last_active).dt.days.astype(int)
    df["tenure_days"] = (ts_cut - df["acquired_at"]).dt.days.astype(int)
    return df


# --------------------------------------------------------------------------------------
# RFM


def quantile_score(values: pd.Series, bins: int = 5, higher_is_better: bool = True) -> pd.Series:
    """Quantile score 1..bins (bins = best); tied values share a score.

    The score is ``ceil(bins * percentile rank)`` with average ranks for ties, so equal
    values always land in the same score and the scores are as even as the ties allow.
    """
    if len(values) == 0:
        return pd.Series([], dtype=int, index=values.index)
    pct = values.rank(method="average", pct=True, ascending=higher_is_better)
    return np.ceil(pct * bins).clip(1, bins).astype(int)


def rfm_scores(features: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """R, F and M quantile scores (1..bins, bins = best) and the combined ``RFM`` code.

    Recency is days since the last order (fewer is better), frequency the orders in the
    trailing year, monetary the trailing-year spend.
    """
    out = features[["customer_id"]].copy()
    out["r"] = quantile_score(features["recency_days"], bins, higher_is_better=False)
    out["f"] = quantile_score(features["orders_12m"], bins)
    out["m"] = quantile_score(features["spend_12m"], bins)
    out["rfm"] = out.r.astype(str) + out.f.astype(str) + out.m.astype(str)
    return out


def rfm_grid(features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Share of customers and of trailing-year revenue in each (R, F) cell."""
    df = features[["customer_id", "spend_12m"]].merge(
        scores[["customer_id", "r", "f"]], on="customer_id"
    )
    total_rev = df.spend_12m.clip(lower=0).sum()
    g = (
        df.groupby(["r", "f"])
        .agg(
            customers=("customer_id", "size"),
            revenue=("spend_12m", lambda s: s.clip(lower=0).sum()),
        )
        .reset_index()
    )
    g["customer_share"] = g.customers / len(df) if len(df) else np.nan
    g["revenue_share"] = g.revenue / total_rev if total_rev > 0 else np.nan
    return g


def rfm_best(grid: pd.DataFrame, hi: int) -> dict:
    """The customers scoring R and F >= ``hi``: their shares, and what can be said of them.

    ``kind`` says which statement is true and not empty:

    * ``share`` - they are a share of the base below 100% and bring a share of revenue
      below 100% (a concentration statement);
    * ``all_revenue`` - they bring all trailing-year revenue: everyone else brought none,
      which is what the slide must say (not a "x% bring 100%" concentration);
    * ``no_split`` - every customer scores that high: the scores do not separate anyone;
    * ``no_revenue`` - no trailing-year revenue at all.

    Returns
    -------
    dict with ``customer_share, revenue_share, kind``.
    """
    best = grid[(grid.r >= hi) & (grid.f >= hi)]
    cs = float(best.customer_share.sum()) if len(best) else 0.0
    rs = float(best.revenue_share.sum()) if len(best) else 0.0
    if grid.empty or not (grid.revenue_share.notna().any() and grid.revenue.sum() > 0):
        kind = "no_revenue"
    elif cs >= 1 - 1e-12:
        kind = "no_split"
    elif rs >= 1 - 1e-12:
        kind = "all_revenue"
    else:
        kind = "share"
    return {"customer_share": cs, "revenue_share": rs, "kind": kind}


# --------------------------------------------------------------------------------------
# Threshold tiers and re-tiering


def spend_tier(
    spend_12m: pd.Series,
    recency_days: pd.Series,
    order: list[str],
    floors: list[float],
    dormant_days: int,
) -> pd.Series:
    """The tier a trailing-12-month spend earns: the best tier whose floor it reaches.

    A customer without an order for ``dormant_days`` falls to the lowest tier whatever the
    spend. ``floors`` decrease with ``order`` and the last one is the catch-all.
    """
    codes = np.full(len(spend_12m), order[-1], dtype=object)
    spend = spend_12m.to_numpy(dtype=float)
    # Walk from the lowest tier up so the best reached floor wins.
    for code, floor in reversed(list(zip(order, floors, strict=True))):
        codes[spend >= floor] = code
    codes[recency_days.to_numpy() >= dormant_days] = order[-1]
    return pd.Series(codes, index=spend_12m.index, dtype=object)


def spend_tier_rules(order: list[str], floors: list[float], dormant_days: int) -> pd.DataFrame:
    """The threshold-tier rules as a table: tier, lower and upper spend bound, dormancy."""
    rows = []
    for i, (code, floor) in enumerate(zip(order, floors, strict=True)):
        upper = floors[i - 1] if i > 0 else np.inf
        last = i == len(order) - 1
        rows.append(
            {
                "tier": code,
                "spend_from": floor if not last else -np.inf,
                "spend_below": upper,
                "or_dormant": last,
                "dormant_days": dormant_days,
            }
        )
    return pd.DataFrame(rows)


def tier_index(tiers: pd.Series, order: list[str]) -> pd.Series:
    """Position of each tier in ``order`` (0 = best); NaN for codes not in the vocabulary."""
    # looked up once per distinct tier, not once per customer
    codes, uniques = pd.factorize(tiers)
    rank = {code: i for i, code in enumerate(order)}
    known = np.array([rank.get(u, np.nan) for u in uniques] + [np.nan], dtype=float)
    return pd.Series(known[codes], index=tiers.index, name=tiers.name)  # code -1: missing


def retier(
    features: pd.DataFrame, params: Params, churned: pd.Series | None = None
) -> pd.DataFrame:
    """Assigned tier vs the recommended dynamic tier, and the misclassification flag.

    The recommended tier is the threshold tier of trailing-12-month spend (:func:`spend_tier`).
    ``gap`` = assigned index - recommended index: positive means the customer is tiered
    below what their spend earns. ``growth`` = spend_12m / spend_first_12m - 1 (infinite
    when the first year's net spend was zero or negative and this year's is positive).
    ``misclassified`` = not churned, gap >= 1 and growth >= ``diagnosis.misclassification_growth``:
    a customer already lost is a churn case, not a tiering case.

    Parameters
    ----------
    features : from :func:`customer_features_as_of`.
    params : run params (tiers, misclassification growth).
    churned : churned as of the snapshot (per :mod:`fupan.measures.outcomes`), aligned with
        ``features``; None treats every customer as not churned.
    """
    tiers = params.tiers
    out = features[
        ["customer_id", "tier", "acquired_at", "spend_12m", "spend_first_12m", "recency_days"]
    ].copy()
    out["recommended"] = spend_tier(
        features.spend_12m,
        features.recency_days,
        tiers.order,
        tiers.spend_floors,
        tiers.dormant_days,
    )
    ai = tier_index(out.tier, tiers.order)
    ri = tier_index(out.recommended, tiers.order)
    out["gap"] = ai - ri
    first = out.spend_first_12m.to_numpy(dtype=float)
    now = out.spend_12m.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(
            first > 0,
            now / np.where(first > 0, first, 1.0) - 1.0,
            np.where(now > 0, np.inf, np.nan),
        )
    out["growth"] = growth
    threshold = params.diagnosis.misclassification_growth
    lost = np.zeros(len(out), bool) if churned is None else np.asarray(churned, dtype=bool)
    out["churned"] = lost
    out["misclassified"] = (
        (out.gap >= 1) & (np.nan_to_num(growth, nan=-np.inf) >= threshold) & ~lost
    )
    return out


def tier_matrix(retiered: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Customers by assigned tier (rows) and recommended tier (columns), in tier order."""
    m = pd.crosstab(retiered.tier, retiered.recommended)
    return (
        m.reindex(
            index=[t for t in order if t in m.index] + [t for t in m.index if t not in order],
            columns=order,
            fill_value=0,
        )
        .fillna(0)
        .astype(int)
    )


# --------------------------------------------------------------------------------------
# Value x potential


@dataclass(frozen=True)
class SegmentRule:
    """A published segment rule: a name and a predicate on the features frame."""

    code: str
    predicate: Callable[[pd.DataFrame], pd.Series]


QUADRANTS = ("star", "grow", "maintain", "develop")


def growth_trend(features: pd.DataFrame) -> pd.Series:
    """Spend trend inside the trailing year: (H2 - H1) / (|H1| + |H2|), in [-1, 1], 0 without spend.

    Positive: the newer half-year brought more than the older one.
    """
    h1, h2 = features.spend_h1.astype(float), features.spend_h2.astype(float)
    denom = h1.abs() + h2.abs()
    return ((h2 - h1) / denom.where(denom > 0)).fillna(0.0)


def value_potential_rules(value_cut: float, potential_cut: float) -> list[SegmentRule]:
    """The four quadrants as mutually exclusive rules on ``value`` and ``potential``.

    high value: value >= value_cut; high potential: potential > potential_cut.
    """
    hv = lambda d: d["value"] >= value_cut  # noqa: E731
    hp = lambda d: d["potential"] > potential_cut  # noqa: E731
    return [
        SegmentRule("star", lambda d: hv(d) & hp(d)),
        SegmentRule("maintain", lambda d: hv(d) & ~hp(d)),
        SegmentRule("grow", lambda d: ~hv(d) & hp(d)),
        SegmentRule("develop", lambda d: ~hv(d) & ~hp(d)),
    ]


def assign_rules(frame: pd.DataFrame, rules: list[SegmentRule]) -> pd.Series:
    """The code of the one rule each row satisfies; raises if rules overlap or leave gaps.

    A predicate's missing values count as not satisfied. Rule codes must be distinct.
    """
    codes = pd.Index([r.code for r in rules])
    if not codes.is_unique:
        raise ValueError(f"segment rule codes repeat: {codes[codes.duplicated()].tolist()}")
    if not len(frame):
        return pd.Series([], dtype=object, index=frame.index)
    # One boolean array per rule and a running count, not a frame of masks reduced row by row
    hits = np.zeros(len(frame), dtype=np.int64)
    which = np.zeros(len(frame), dtype=np.int64)
    for i, rule in enumerate(rules):
        mask = rule.predicate(frame)
        if not mask.index.equals(frame.index):
            mask = mask.reindex(frame.index)
        mask = mask.fillna(False).astype(bool).to_numpy()
        hits += mask
        which[mask] = i
    if not (hits == 1).all():
        bad = frame.index[hits != 1][:5].tolist()
        raise ValueError(f"segment rules are not mutually exclusive and exhaustive (rows {bad})")
    # the dtype DataFrame.idxmax gives: the codes' values with their dtype inferred again
    if codes.inferred_type == "string":
        # text codes: an Arrow take, not millions of Python strings converted back to Arrow
        return pd.Series(pd.array(list(codes), dtype="str").take(which), index=frame.index)
    return pd.Series(np.asarray(codes)[which], index=frame.index)


def value_potential(
    features: pd.DataFrame,
    value_quantile: float = 0.5,
    potential_cut: float = 0.0,
    potential: pd.Series | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Place each customer in the value x potential matrix.

    Parameters
    ----------
    features : from :func:`customer_features_as_of`.
    value_quantile : value is high at or above this quantile of trailing-12-month spend
        among customers with any spend.
    potential_cut : potential is high above this value of the potential measure.
    potential : a per-customer potential (e.g. predicted CLV growth), aligned with
        ``features``; default the spend trend of :func:`growth_trend`.

    Returns
    -------
    (frame with ``customer_id, value, potential, quadrant``, {"value_cut", "potential_cut"})
    """
    out = features[["customer_id"]].copy()
    out["value"] = features.spend_12m.astype(float)
    out["potential"] = (
        growth_trend(features) if potential is None else potential.astype(float).to_numpy()
    )
    spenders = out.value[out.value > 0]
    value_cut = float(spenders.quantile(value_quantile)) if len(spenders) else np.inf
    out["quadrant"] = assign_rules(out, value_potential_rules(value_cut, potential_cut))
    return out, {"value_cut": value_cut, "potential_cut": float(potential_cut)}


def quadrant_summary(vp: pd.DataFrame) -> pd.DataFrame:
    """Customers and trailing-year revenue per quadrant, with shares."""
    rev = vp.value.clip(lower=0)
    g = (
        vp.assign(rev=rev)
        .groupby("quadrant")
        .agg(customers=("customer_id", "size"), revenue=("rev", "sum"))
    )
    g = g.reindex(list(QUADRANTS), fill_value=0)
    g["customer_share"] = g.customers / max(len(vp), 1)
    g["revenue_share"] = g.revenue / rev.sum() if rev.sum() > 0 else np.nan
    return g.reset_index().rename(columns={"index": "quadrant"})


# --------------------------------------------------------------------------------------
# Effort vs value


def tier_effort(features: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Each assigned tier's share of customers, trailing-year revenue, touches and tickets.

    Touch and ticket shares are NaN when the table is absent.
    """
    df = features.assign(rev=features.spend_12m.clip(lower=0))
    aggs = {"customers": ("customer_id", "size"), "revenue": ("rev", "sum")}
    for col, name in (("touches_12m", "touches"), ("tickets_12m", "tickets")):
        if col in df.columns:
            aggs[name] = (col, "sum")
    g = df.groupby("tier").agg(**aggs)
    g = g.reindex([t for t in order if t in g.index] + [t for t in g.index if t not in order])
    for name in ("customers", "revenue", "touches", "tickets"):
        if name in g.columns:
            total = g[name].sum()
            g[f"{name}_share"] = g[name] / total if total > 0 else np.nan
        else:
            g[name] = np.nan
            g[f"{name}_share"] = np.nan
    return g.reset_index()


# --------------------------------------------------------------------------------------
# Behavioural segments


def behaviour_matrix(features: pd.DataFrame) -> pd.DataFrame:
    """The clustering inputs: log-scaled RFM, tenure and whatever engagement is available."""
    x = pd.DataFrame(index=features.index)
    x["recency"] = np.log1p(features.recency_days.clip(lower=0))
    x["frequency"] = np.log1p(features.orders_12m.clip(lower=0))
    x["monetary"] = np.log1p(features.spend_12m.clip(lower=0))
    x["tenure"] = np.log1p(features.tenure_days.clip(lower=0))
    if "touches_12m" in features.columns:
        x["touches"] = np.log1p(features.touches_12m)
        if "responded_known_12m" in features.columns:
            known = features.responded_known_12m.replace(0, np.nan)
            x["response"] = (features.responses_12m / known).fillna(0.0)
    if "tickets_12m" in features.columns:
        x["tickets"] = np.log1p(features.tickets_12m)
    if "logins_12m" in features.columns:
        x["logins"] = np.log1p(features.logins_12m)
    # A constant column carries no information and breaks standardisation.
    return x.loc[:, x.std(ddof=0) > 0]


class BehaviouralSegments:
    """KMeans on standardised behaviour features, k chosen by silhouette.

    Parameters
    ----------
    k_range : (smallest, largest) k to try, inclusive.
    random_state : seed for KMeans and the silhouette sample.
    silhouette_sample : customers sampled for the silhouette score (it is quadratic).
    n_init : KMeans restarts per k.
    n_jobs : KMeans fits (one per k) run side by side on this many threads. Each fit runs on
        one thread, so the result is the same for any ``n_jobs``.

    Attributes
    ----------
    k_ : chosen number of segments.
    silhouettes_ : {k: silhouette score}.
    labels_ : segment per customer, 0..k-1, numbered by revenue per customer (0 = highest)
        when :meth:`fit` gets ``value``, else by KMeans order.
    profile_ : mean standardised feature value of each segment (segments x features).
    columns_ : the feature columns used.
    scaler_, kmeans_ : the fitted scikit-learn objects.
    """

    def __init__(
        self,
        k_range: tuple[int, int] | list[int] = (3, 8),
        random_state: int = 0,
        silhouette_sample: int = 3000,
        n_init: int = 4,
        n_jobs: int = 2,
    ):
        self.k_range = k_range
        self.random_state = random_state
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.n_jobs = n_jobs

    def fit(self, x: pd.DataFrame, value: pd.Series | None = None) -> BehaviouralSegments:
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        lo, hi = int(self.k_range[0]), int(self.k_range[1])
        n = len(x)
        hi = min(hi, n - 1)
        if n < 3 or hi < 2:
            raise ValueError(f"need at least 3 customers to segment (got {n})")
        lo = max(2, min(lo, hi))
        self.columns_ = list(x.columns)
        self.scaler_ = StandardScaler().fit(x.to_numpy(dtype=float))
        z = self.scaler_.transform(x.to_numpy(dtype=float))
        sample = min(n, self.silhouette_sample)
        self.silhouettes_: dict[int, float] = {}
        fits = {}
        ks = list(range(lo, hi + 1))

        def fit_one(k: int) -> KMeans:
            # One thread per fit: on a busy machine OpenMP workers spin and a small fit takes
            # 100x longer, and a fit on one thread adds up in one order whatever runs beside
            # it. OpenMP's thread count is per calling thread, so each worker sets its own.
            with threadpool_limits(1, user_api="openmp"):
                km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
                return km.fit(z)

        # BLAS is limited for the whole process, here, not by workers that finish at
        # different times and would restore it under each other.
        with threadpool_limits(1):
            if self.n_jobs > 1 and len(ks) > 1:
                with ThreadPoolExecutor(min(self.n_jobs, len(ks))) as pool:
                    fitted = list(pool.map(fit_one, ks))
            else:
                fitted = [fit_one(k) for k in ks]
        score = self._silhouette(z, sample)
        for k, km in zip(ks, fitted, strict=True):
            if len(np.unique(km.labels_)) < 2:
                continue
            self.silhouettes_[k] = score(km.labels_)
            fits[k] = km
        if not fits:
            raise ValueError("no k in k_range gave two or more segments")
        self.k_ = max(self.silhouettes_, key=lambda k: (self.silhouettes_[k], -k))
        self.kmeans_ = fits[self.k_]
        raw = self.kmeans_.labels_
        if value is not None:
            per = pd.Series(np.asarray(value, dtype=float)).groupby(raw).mean()
            rank = {old: new for new, old in enumerate(per.sort_values(ascending=False).index)}
        else:
            rank = {i: i for i in range(self.k_)}
        self._relabel = rank
        self.labels_ = np.array([rank[v] for v in raw])
        self.profile_ = pd.DataFrame(z, columns=self.columns_).groupby(self.labels_).mean()
        return self

    def _silhouette(self, z: np.ndarray, sample: int) -> Callable[[np.ndarray], float]:
        """``labels -> silhouette_score(z, labels, sample_size=sample, random_state=...)``.

        With a seed, every k is scored on the same sampled customers, so their distances
        are computed once, not once per k (the quadratic part: about a third of the fit at
        100,000 customers); sklearn's own sampling and, for one chunk of distances, the very
        same distance matrix, so the scores are unchanged.
        """
        from sklearn.metrics import pairwise_distances, silhouette_samples, silhouette_score

        seed = self.random_state
        if not isinstance(seed, int | np.integer):  # no fixed sample: score as sklearn does
            return lambda labels: float(
                silhouette_score(z, labels, sample_size=sample, random_state=seed)
            )
        idx = np.random.RandomState(seed).permutation(len(z))[:sample]
        dist = pairwise_distances(z[idx])
        return lambda labels: float(
            np.mean(silhouette_samples(dist, labels[idx], metric="precomputed"))
        )

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        z = self.scaler_.transform(x[self.columns_].to_numpy(dtype=float))
        with threadpool_limits(1):
            raw = self.kmeans_.predict(z)
        return np.array([self._relabel[v] for v in raw])


def describe_segments(
    features: pd.DataFrame,
    labels: np.ndarray,
    revenue: pd.Series,
    churned: pd.Series,
    profile: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each segment's share of customers, of revenue, churn rate and a plain profile.

    Parameters
    ----------
    features : the snapshot features the segments were fitted on.
    labels : segment per row of ``features``.
    revenue : revenue per customer to share out (e.g. the review period's), aligned.
    churned : churned in the period (bool), aligned.
    profile : mean standardised features per segment (:attr:`BehaviouralSegments.profile_`);
        gives each segment its most distinctive ``trait``.

    ``value`` is high when the segment's median trailing-year spend is at or above the 75th
    percentile of all customers, low at or below the median; ``activity`` is active when
    its median recency is within 90 days, cooling within a year, lapsed beyond. ``trait``
    is the feature other than spend whose segment mean lies furthest from the average,
    with its direction (``frequency.hi``, ``touches.lo``...).
    """
    from fupan.measures.outcomes import rate_with_ci

    df = pd.DataFrame(
        {
            "segment": labels,
            "revenue": np.clip(np.asarray(revenue, dtype=float), 0, None),
            "churned": np.asarray(churned, dtype=bool),
            "spend_12m": features.spend_12m.to_numpy(),
            "recency": features.recency_days.to_numpy(),
            "orders_12m": features.orders_12m.to_numpy(),
        }
    )
    q75, q50 = features.spend_12m.quantile(0.75), features.spend_12m.quantile(0.5)
    total_rev = df.revenue.sum()
    rows = []
    for seg, g in df.groupby("segment"):
        k = int(g.churned.sum())
        rate, lo, hi = rate_with_ci(k, len(g))
        med_spend, med_rec = g.spend_12m.median(), g.recency.median()
        value = (
            "high" if med_spend >= q75 and med_spend > 0 else ("low" if med_spend <= q50 else "mid")
        )
        activity = "active" if med_rec <= 90 else ("cooling" if med_rec <= 365 else "lapsed")
        trait = None
        if profile is not None and seg in profile.index:
            z = profile.loc[seg].drop(labels=["monetary"], errors="ignore")
            if len(z):
                name = z.abs().idxmax()
                trait = f"{name}.{'hi' if z[name] >= 0 else 'lo'}"
        rows.append(
            {
                "segment": int(seg),
                "customers": len(g),
                "customer_share": len(g) / len(df),
                "revenue_share": g.revenue.sum() / total_rev if total_rev > 0 else np.nan,
                "churn_rate": rate,
                "churn_ci_low": lo,
                "churn_ci_high": hi,
                "median_spend_12m": med_spend,
                "median_recency_days": med_rec,
                "median_orders_12m": g.orders_12m.median(),
                "value": value,
                "activity": activity,
                "trait": trait,
            }
        )
    return pd.DataFrame(rows).sort_values("segment").reset_index(drop=True)
