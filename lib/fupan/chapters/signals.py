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
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fupan.measures.outcomes import rate_with_ci
from fupan.models.health import cluster_bootstrap_draws, nan_percentile

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
    from fupan.chapters.atrisk import feature_label
    from fupan.core import i18n

    try:
        return i18n.t(f"churn.rule.{name}", lang)
    except i18n.MissingLabelError:
        return f"{feature_label(rule.feature, lang)} {rule.op} {rule.threshold:g}"
