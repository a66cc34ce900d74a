"""Warning signals: rules from params, backtested on past snapshots; satisfaction vs churn.

A rule (``churn.rules`` in params) fires at a snapshot when ``feature op threshold``. Each
rule is backtested on the monthly snapshots (:func:`fupan.measures.features.snapshots`): of the
customer-months it flagged, how many churned within the horizon (precision), how many of
the churning customer-months it caught (recall), how much more likely a flagged customer
churned than the base rate (lift), how long before churn it first fired (lead time), and
how many churned customers it flagged at all. Intervals come from a cluster bootstrap over
customers. Rules are not fitted, so every snapshot with a complete label is fair game.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from fupan.chapters.atrisk import feature_label
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.measures import features as F
from fupan.measures import outcomes
from fupan.measures.outcomes import rate_with_ci
from fupan.models import hazard
from fupan.models.health import cluster_bootstrap_draws, nan_percentile

if TYPE_CHECKING:
    from fupan.chapters.churn import ChurnReview

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def rule_flags(snap: pd.DataFrame, rules: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Which rules fire on which snapshot rows.

    Parameters
    ----------
    snap : snapshot (or customer) features.
    rules : name -> rule with ``feature``, ``op``, ``threshold`` (params ``churn.rules``).

    Returns
    -------
    (DataFrame of booleans, one column per rule whose feature is present; the names of
    rules skipped because their feature is absent). A missing value never fires.
    """
    out, skipped = {}, []
    for name, r in rules.items():
        if r.feature not in snap.columns:
            skipped.append(name)
            continue
        v = pd.to_numeric(snap[r.feature], errors="coerce")
        out[name] = (_OPS[r.op](v, r.threshold) & v.notna()).to_numpy()
    return pd.DataFrame(out, index=snap.index), skipped


def lead_times(
    snap: pd.DataFrame,
    flag: np.ndarray,
    churned_at: pd.Series,
    window_days: int,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """For each customer who churned in ``[start, end]``: was it flagged before, how early?

    A flag counts when raised at a snapshot in the ``window_days`` before the churn date.
    Only churners with at least one snapshot in that window are counted.

    Parameters
    ----------
    snap : rows with ``customer_id, snapshot_date``.
    flag : bool per row.
    churned_at : churn date per customer id (index).
    window_days : look-back window.
    start, end : churn dates considered (default: the snapshots' range plus the window).

    Returns
    -------
    DataFrame per churner: ``customer_id, churned_at, flagged, first_flag, lead_days``.
    """
    return _lead_summary(_lead_rows(snap, churned_at, window_days, start, end), flag)


_LEAD_COLUMNS = ["customer_id", "churned_at", "flagged", "first_flag", "lead_days"]


def _lead_rows(
    snap: pd.DataFrame,
    churned_at: pd.Series,
    window_days: int,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The snapshot rows of churners in the window before their churn (any flag), with
    ``row``, their position in ``snap``; shared by every rule backtested on ``snap``."""
    ch = churned_at.dropna()
    start = pd.Timestamp(start) if start is not None else snap.snapshot_date.min()
    end = (
        pd.Timestamp(end)
        if end is not None
        else snap.snapshot_date.max() + pd.Timedelta(days=window_days)
    )
    ch = ch[(ch >= start) & (ch <= end)]
    rows = snap[["customer_id", "snapshot_date"]].assign(row=np.arange(len(snap)))
    rows = rows[rows.customer_id.isin(ch.index)]
    if not len(rows):
        # nobody churned in the window (pandas cannot map through an empty date series)
        return rows.assign(churned_at=pd.Series(dtype="datetime64[ns]", index=rows.index))
    rows = rows.assign(churned_at=rows.customer_id.map(ch))
    delta = (rows.churned_at - rows.snapshot_date).dt.days
    return rows[(delta > 0) & (delta <= window_days)] if len(rows) else rows


def _lead_summary(rows: pd.DataFrame, flag: np.ndarray) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=_LEAD_COLUMNS)
    rows = rows.assign(flag=np.asarray(flag, dtype=bool)[rows.row.to_numpy()])
    first = rows[rows.flag].groupby("customer_id").snapshot_date.min()
    per = rows.groupby("customer_id").churned_at.first().to_frame()
    per["first_flag"] = first.reindex(per.index)
    per["flagged"] = per.first_flag.notna()
    per["lead_days"] = (per.churned_at - per.first_flag).dt.days
    return per.reset_index()[_LEAD_COLUMNS]


def _rates(flag: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    fw, pw, base_w = w[flag].sum(), w[y].sum(), w.sum()
    hit = w[flag & y].sum()
    prec = hit / fw if fw else np.nan
    rec = hit / pw if pw else np.nan
    base = pw / base_w if base_w else np.nan
    return prec, rec, (prec / base if base else np.nan)


def _rates_from_sums(
    fw: np.ndarray, pw: np.ndarray, base_w: np.ndarray, hit: np.ndarray
) -> np.ndarray:
    """:func:`_rates` for many replicates at once, from their weighted sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(fw != 0, hit / fw, np.nan)
        rec = np.where(pw != 0, hit / pw, np.nan)
        base = np.where(base_w != 0, pw / base_w, np.nan)
        lift = np.where((base != 0) & ~np.isnan(base), prec / base, np.nan)
    return np.column_stack([prec, rec, lift])


def backtest_rules(
    snap: pd.DataFrame,
    rules: Mapping[str, Any],
    churned_at: pd.Series,
    window_days: int = 180,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Precision, recall, lift (95% cluster-bootstrap CI), lead time and churners flagged.

    Parameters
    ----------
    snap : snapshots with complete labels (``label``).
    rules : params ``churn.rules``.
    churned_at : churn date per customer (for lead times).
    window_days : a flag counts this long before churn.

    Returns
    -------
    DataFrame per rule (``available`` False when its feature is missing from the data);
    ``warning`` is True only for a rule whose lift exceeds 1 (a rule with lift <= 1 must
    never be presented as a warning sign).
    """
    flags, skipped = rule_flags(snap, rules)
    y = snap.label.to_numpy(bool)
    # Every bootstrap sum is a sum over customers of (times drawn) x (the customer's own
    # row counts): counted once per customer, each replicate is a product with the draws.
    # The counts are whole numbers, so the sums are exact in any order.
    codes, replicates = cluster_bootstrap_draws(snap.customer_id.to_numpy(), n_boot, seed)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    draws = [d.astype(float) for d in replicates]
    draws = np.array(draws).reshape(len(draws), n_clusters)
    per_rows = np.bincount(codes, minlength=n_clusters).astype(float)
    per_y = np.bincount(codes, weights=y, minlength=n_clusters)
    lead_rows = _lead_rows(snap, churned_at, window_days)
    rows = []
    for name, r in rules.items():
        row: dict[str, Any] = {
            "rule": name,
            "feature": r.feature,
            "op": r.op,
            "threshold": float(r.threshold),
            "available": name not in skipped,
        }
        if name in skipped:
            rows.append(row)
            continue
        f = flags[name].to_numpy()
        prec, rec, lift = _rates(f, y, np.ones(len(y)))
        per_flag = np.bincount(codes, weights=f, minlength=n_clusters)
        per_hit = np.bincount(codes, weights=f & y, minlength=n_clusters)
        boot = (
            _rates_from_sums(draws @ per_flag, draws @ per_y, draws @ per_rows, draws @ per_hit)
            if len(draws)
            else np.full((1, 3), np.nan)
        )
        lo, hi = nan_percentile(boot, 2.5, axis=0), nan_percentile(boot, 97.5, axis=0)
        lt = _lead_summary(lead_rows, f)
        flagged = lt[lt.flagged] if len(lt) else lt
        row.update(
            {
                "rows": int(len(y)),
                "flagged_rows": int(f.sum()),
                "flagged_share": float(f.mean()) if len(f) else float("nan"),
                "precision": float(prec),
                "precision_low": float(lo[0]),
                "precision_high": float(hi[0]),
                "recall": float(rec),
                "recall_low": float(lo[1]),
                "recall_high": float(hi[1]),
                "lift": float(lift),
                # only a rule that raises churn risk is a warning sign: lift <= 1 means the
                # flagged customers churn no more (or less) than the rest
                "warning": bool(lift > 1),
                "lift_low": float(lo[2]),
                "lift_high": float(hi[2]),
                "median_lead_days": float(flagged.lead_days.median())
                if len(flagged)
                else float("nan"),
                "churners": int(len(lt)),
                "churners_flagged": int(len(flagged)),
                "churners_flagged_share": float(len(flagged) / len(lt))
                if len(lt)
                else float("nan"),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Satisfaction vs churn

NPS_CATEGORIES = ("promoter", "passive", "detractor", "none")


def nps_category(nps: Sequence[float]) -> np.ndarray:
    """promoter (9-10), passive (7-8), detractor (0-6), none (never surveyed)."""
    v = pd.to_numeric(pd.Series(nps), errors="coerce").to_numpy(float)
    return np.select(
        [np.isnan(v), v >= 9, v >= 7], ["none", "promoter", "passive"], default="detractor"
    )


def churn_by_group(
    groups: Sequence[Any], churned: Sequence[bool], order: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Churn rate with a Wilson 95% CI per group."""
    g = pd.Series(np.asarray(groups, dtype=object))
    y = np.asarray(churned, dtype=bool)
    keys = list(order) if order is not None else sorted(g.dropna().unique(), key=str)
    rows = []
    for k in keys:
        m = (g == k).to_numpy()
        if not m.any():
            continue
        rate, lo, hi = rate_with_ci(int(y[m].sum()), int(m.sum()))
        rows.append(
            {
                "group": k,
                "customers": int(m.sum()),
                "churned": int(y[m].sum()),
                "rate": rate,
                "low": lo,
                "high": hi,
            }
        )
    return pd.DataFrame(rows)


def correlation(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict:
    """Pearson correlation with a Fisher-z interval (point-biserial when ``y`` is 0/1).

    Rows where either value is missing are dropped.
    """
    a = pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(float)
    b = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(float)
    m = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[m], b[m]
    n = int(m.sum())
    if n < 4 or a.std() == 0 or b.std() == 0:
        return {
            "r": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "n": n,
            "p": float("nan"),
        }
    r, p = stats.pearsonr(a, b)
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    half = stats.norm.ppf(0.5 + level / 2) / np.sqrt(n - 3)
    return {
        "r": float(r),
        "low": float(np.tanh(z - half)),
        "high": float(np.tanh(z + half)),
        "n": n,
        "p": float(p),
    }


def nps_score(nps: Sequence[float]) -> float:
    """Net promoter score: % promoters - % detractors among those surveyed (-100..100)."""
    cat = nps_category(nps)
    surveyed = cat != "none"
    if not surveyed.any():
        return float("nan")
    return float(
        100.0 * ((cat[surveyed] == "promoter").mean() - (cat[surveyed] == "detractor").mean())
    )


def monthly_trend(snap: pd.DataFrame) -> pd.DataFrame:
    """Per snapshot: NPS (latest survey of each live customer), churn rate within the
    horizon (Wilson 95% CI), customers."""
    rows = []
    for s, g in snap.groupby("snapshot_date", sort=True):
        rate, lo, hi = rate_with_ci(int(g.label.sum()), len(g))
        rows.append(
            {
                "snapshot_date": s,
                "customers": len(g),
                "nps": nps_score(g.nps_latest) if "nps_latest" in g else float("nan"),
                "churn_rate": rate,
                "low": lo,
                "high": hi,
            }
        )
    return pd.DataFrame(rows)


def rule_label(name: str, rule: Any, lang: str) -> str:
    """A rule's display name: ``churn.rule.<name>`` or "<feature label> <op> <threshold>"."""
    try:
        return i18n.t(f"churn.rule.{name}", lang)
    except i18n.MissingLabelError:
        return f"{feature_label(rule.feature, lang)} {rule.op} {rule.threshold:g}"


# --------------------------------------------------------------------------------------
# Slides: the words of chapter 2's slides on warning signs, survival and satisfaction
# (the chapter's computation is :func:`fupan.chapters.churn.review`)


def finite(v: Any) -> bool:
    return v is not None and v == v and abs(v) != float("inf")


def iso_day(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def best_warning(ch: ChurnReview) -> Any:
    return ch.warnings.sort_values("lift", ascending=False).iloc[0]


def rules_slide(ch: ChurnReview) -> Slide:
    """Warning rules backtested: the strongest warning sign, or that no rule raises risk."""
    ok, f = ch.backtested, ch.fmt
    if not len(ok):
        return Slide(
            ch.t("churn.signals.title_none"), ch.t("churn.signals.none_why"), skip="signals"
        )
    finding = ch.t(
        "churn.signals.finding",
        n=ch.n_dates,
        horizon=ch.horizon,
        base=f.pct(ch.base_rate),
        window=ch.params.churn.lead_window_days,
    )
    if not len(ch.warnings):
        # no rule raises risk: say so, never call the least bad one a warning sign
        return Slide(ch.t("churn.signals.title_no_warning", n=len(ok)), finding, **rules_table(ch))
    best = best_warning(ch)
    return Slide(
        ch.t(
            "churn.signals.title",
            rule=ch.rule_label(best.rule),
            lift=f.num(best.lift, 1),
            precision=f.pct(best.precision),
        ),
        finding,
        **rules_table(ch),
    )


def rules_table(ch: ChurnReview) -> dict[str, Any]:
    """The rules slide's table (:class:`~fupan.chapters.slide.Slide` fields): each backtested
    rule's flagged share, precision (CI), lift, recall, lead, churners."""
    ok, f, none = ch.backtested, ch.fmt, ch.t("churn.signals.lift_none")

    def precision(p: float, lo: float, hi: float) -> str:
        if finite(lo) and finite(hi):
            return f"{f.pct(p)} ({f.pct(lo)}–{f.pct(hi)})"
        return f.pct(p) if finite(p) else none

    tbl = pd.DataFrame(
        {
            "rule": [ch.rule_label(r) for r in ok.rule],
            "flagged": ok.flagged_share,
            "precision": [
                precision(*x)
                for x in zip(ok.precision, ok.precision_low, ok.precision_high, strict=True)
            ],
            "lift": [
                (f.num(v, 1) if finite(v) else none)
                + ("" if w else " " + ch.t("churn.signals.not_warning"))
                for v, w in zip(ok.lift, ok.warning, strict=True)
            ],
            "recall": ok.recall,
            "lead": [ch.lead_text(v) for v in ok.median_lead_days],
            "churners": [
                f"{int(a)}/{int(b)}" for a, b in zip(ok.churners_flagged, ok.churners, strict=True)
            ],
        }
    )
    cols = ["rule", "flagged", "precision", "lift", "recall", "lead", "churners"]
    return {
        "table": tbl[cols],
        "columns": {c: ch.t(f"churn.col.{c}") for c in cols},
        "formats": {"flagged": f.pct, "recall": f.pct},
    }


def lift_slide(ch: ChurnReview) -> Slide | None:
    """Lift per rule with its interval; None when one rule, or no rule that flagged a
    churner, leaves nothing to compare (the rules table already gives each lift)."""
    ok = ch.backtested
    if not (len(ok) >= 2 and (ok.lift > 0).any()):
        return None
    return Slide(
        ch.t("churn.lift.title", n=int((ok.lift_low > 1).sum()), total=len(ok)),
        ch.t("churn.lift.finding"),
    )


# --------------------------------------------------------------------------------------
# Survival by tier and by NPS group; satisfaction and churn


@dataclass
class Survival:
    """Kaplan-Meier curves per group of the customers live at ``start``."""

    start: pd.Timestamp
    curves: dict[Any, pd.DataFrame]
    p: float  # log-rank p-value across the groups
    one_year: dict[Any, float]  # survival at 365 days per group
    order: list[Any]  # the groups in the order the chart draws them


def survival_base(ch: ChurnReview) -> tuple[pd.Timestamp, pd.DataFrame]:
    """The customers live at the first snapshot date that has any (a date before the data
    has none), followed to churn or ``as_of``: ``time`` (days), ``event`` (churned)."""
    status = ch.status
    start = next(
        (pd.Timestamp(x) for x in ch.dates if (status.acquired_at < pd.Timestamp(x)).any()),
        pd.Timestamp(ch.dates[0]),
    )
    base = status[(status.acquired_at < start) & ~(status.churned_at < start)].copy()
    end_t = base.churned_at.where(base.churned, ch.as_of)
    base["time"] = (end_t - start).dt.days.clip(lower=0.5)
    base["event"] = base.churned.astype(int)
    return start, base


def _survival(
    start: pd.Timestamp, base: pd.DataFrame, group: np.ndarray, order: Sequence[Any]
) -> Survival:
    curves, p = hazard.kaplan_meier(base.time, base.event, group)
    one_year = {g: float(c.surv[c.time <= 365].iloc[-1]) for g, c in curves.items()}
    drawn = [g for g in order if g in curves] + [g for g in curves if g not in order]
    return Survival(start, curves, p, one_year, drawn)


def survival_by_tier(ch: ChurnReview) -> tuple[Survival | None, Slide]:
    """Survival per tier and its slide's words; no curves when the tiers cannot be compared
    (no tier column, one tier, or nobody live at the start)."""
    start, base = survival_base(ch)
    supplied = getattr(ch.ds, "supplied", None)
    given = supplied("customers", "tier") if supplied else bool(ch.status.tier.notna().any())
    live = base.tier.dropna().unique().tolist()
    if len(base) and (not given or len(live) < 2):
        # one group has no "highest" or "lowest": say what would make the comparison possible
        key = "churn.km_tier.title_no_tier" if not given else "churn.km_tier.title_one_tier"
        title = ch.t(key, tier=ch.params.tier_label(live[0]) if live else "")
        return None, Slide(title, ch.t("churn.km_tier.one_tier_why"), skip="km_tier")
    if not len(base):
        return None, Slide(
            ch.t("churn.km_tier.title_none"),
            ch.t("churn.km_tier.none_why", start=iso_day(start)),
            skip="km_tier",
        )
    kb = base[base.tier.notna()]
    km = _survival(start, kb, kb.tier.to_numpy(), ch.params.tiers.order)
    worst, best = min(km.one_year, key=km.one_year.get), max(km.one_year, key=km.one_year.get)
    tier, pct = ch.params.tier_label, ch.fmt.pct
    return km, Slide(
        ch.t(
            "churn.km_tier.title",
            worst=tier(worst),
            worst_s=pct(km.one_year[worst]),
            best=tier(best),
            best_s=pct(km.one_year[best]),
        ),
        ch.t("churn.km.finding", start=iso_day(start), p=f"{km.p:.3g}"),
    )


def survival_by_nps(ch: ChurnReview) -> tuple[Survival | None, Slide]:
    """Survival of promoters, passives, detractors and the unsurveyed, and its slide; no
    curves without surveys, or without both detractors and promoters and a churn."""
    if not ch.ds.has("surveys"):
        why = ch.t("churn.surveys_why")
        return None, Slide(
            ch.t("churn.km_nps.title_missing"), why, skip="km_nps", missing="surveys"
        )
    start, base = survival_base(ch)
    km = None
    if len(base):
        nps = (
            F.customer_features_before(ch.ds, start, ["nps_latest"])
            .set_index("customer_id")
            .nps_latest
        )
        km = _survival(start, base, nps_category(base.customer_id.map(nps)), NPS_CATEGORIES)
        km.order = [c for c in NPS_CATEGORIES if c in km.curves]
    # a comparison needs both groups and at least one churn among them
    if km is None or not ({"detractor", "promoter"} <= set(km.curves) and finite(km.p)):
        slide = Slide(
            ch.t("churn.km_nps.title_few"),
            ch.t("churn.km_nps.few_why", start=iso_day(start)),
            skip="km_nps",
        )
        return km, slide
    pct = ch.fmt.pct
    return km, Slide(
        ch.t(
            "churn.km_nps.title",
            det=pct(km.one_year["detractor"]),
            pro=pct(km.one_year["promoter"]),
        ),
        ch.t("churn.km.finding", start=iso_day(start), p=f"{km.p:.3g}"),
    )


@dataclass
class Satisfaction:
    """Churn over the review period by NPS group and by CSAT score of the customers live
    at its start, and the correlation of NPS with churn."""

    start: pd.Timestamp
    by_nps: pd.DataFrame
    by_csat: pd.DataFrame
    correlation: dict


def satisfaction(ch: ChurnReview) -> Satisfaction:
    """Churn within the review period by the latest survey answer before it began."""
    start = pd.Timestamp(ch.params.period_start)
    feats = F.customer_features_before(ch.ds, start, ["nps_latest", "csat_latest"])
    at_start = outcomes.period_churn(ch.status, start, ch.as_of)
    sat = at_start[["customer_id", "churned_in_period"]].merge(feats, on="customer_id", how="left")
    by_nps = churn_by_group(nps_category(sat.nps_latest), sat.churned_in_period, NPS_CATEGORIES)
    csat = sat.csat_latest.map(lambda v: "none" if v != v else str(int(v)))
    by_csat = churn_by_group(csat, sat.churned_in_period, ["1", "2", "3", "4", "5", "none"])
    corr = correlation(sat.nps_latest, sat.churned_in_period.astype(float))
    return Satisfaction(start, by_nps, by_csat, corr)


def satisfaction_slide(ch: ChurnReview, sat: Satisfaction | None) -> Slide:
    """Detractors' versus promoters' churn (or why it cannot be compared)."""
    if sat is None:
        why = ch.t("churn.surveys_why")
        return Slide(ch.t("churn.sat.title_missing"), why, skip="satisfaction", missing="surveys")
    g, corr, f = sat.by_nps.set_index("group"), sat.correlation, ch.fmt
    det, pro = g.rate.get("detractor", float("nan")), g.rate.get("promoter", float("nan"))
    if not (finite(det) and finite(pro) and corr["n"] >= 3 and finite(corr["r"])):
        return Slide(
            ch.t("churn.sat.title_few"),
            ch.t("churn.sat.few_why", start=iso_day(sat.start), n=f.int(corr["n"])),
            skip="satisfaction",
        )
    return Slide(
        ch.t("churn.sat.title", det=f.pct(det), pro=f.pct(pro)),
        ch.t(
            "churn.sat.finding",
            start=iso_day(sat.start),
            end=iso_day(ch.as_of),
            r=f.num(corr["r"], 2),
            lo=f.num(corr["low"], 2),
            hi=f.num(corr["high"], 2),
            n=f.int(corr["n"]),
        ),
    )


def survey_trend(ch: ChurnReview) -> pd.DataFrame:
    """:func:`monthly_trend` of the chapter's snapshots (no rows without snapshots)."""
    return monthly_trend(ch.snap) if len(ch.snap) else pd.DataFrame({"nps": []})


def trend_slide(ch: ChurnReview, trend: pd.DataFrame) -> Slide:
    """NPS and churn rate from the first to the last month with surveyed customers."""
    # the months with surveyed customers (NPS is undefined where nobody was surveyed yet)
    tn = trend[trend.nps.notna()]
    if len(tn) < 2:
        return Slide(ch.t("churn.trend.title_few"), ch.t("churn.trend.few_why"), skip="nps_trend")
    f = ch.fmt
    return Slide(
        ch.t(
            "churn.trend.title",
            nps0=f.num(tn.nps.iloc[0], 0),
            nps1=f.num(tn.nps.iloc[-1], 0),
            c0=f.pct(tn.churn_rate.iloc[0]),
            c1=f.pct(tn.churn_rate.iloc[-1]),
        ),
        ch.t("churn.trend.finding", horizon=ch.horizon),
    )
