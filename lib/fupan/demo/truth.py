"""The planted truth: per-chunk statistics, their sum over chunks, and ``truth.json``."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np

from fupan.demo.config import (
    BLOCK,
    CHURN_REASONS,
    COMPETITORS,
    DAY_S,
    EFFECTS,
    EPOCH,
    FEATURES,
    GENERATOR_VERSION,
    NULL_FEATURES,
    TIER_THRESHOLDS,
    TIERS,
    _Ctx,
)
from fupan.demo.tables import _Written
from fupan.demo.world import _World

#: Scalar counts that add up over chunks.
_TOTALS = ("churned_total", "recorded_total", "churn_y_no_touch", "churn_y_recorded", "alive_now")
#: Per-chunk arrays that are concatenated over chunks.
_PARTS = ("top", "per_customer", "planted", "misclassified", "price_sensitive")


def chunk_stats(w: _World, kept: _Written) -> dict[str, Any]:
    """What one chunk contributes to truth.json (summed by :func:`accumulate`)."""
    f, c, ch = w.f, w.cust, w.churn
    n, ys = f.n, f.ctx.year_start_day
    alive_ys = (c.acq_day <= ys) & (ch.churn_day > ys)
    churn_y = alive_ys & ch.churned

    def cnt2(mask: np.ndarray) -> tuple[int, int]:
        return int((mask & alive_ys).sum()), int((mask & churn_y).sum())

    is_core = c.tier <= 1
    return {
        "moments": ch.moments,
        "churn_counts": {
            "overall": cnt2(np.ones(n, bool)),
            "core": cnt2(is_core),
            "price_sensitive": cnt2(c.ps),
            "not_price_sensitive": cnt2(~c.ps),
            **{f"tier_{t}": cnt2(c.tier == i) for i, t in enumerate(TIERS)},
        },
        "churned_total": int(ch.churned.sum()),
        "recorded_total": int(kept.recorded.sum()),
        "churn_y_no_touch": int((churn_y & ch.nt_at_churn).sum()),
        "churn_y_recorded": int((churn_y & kept.recorded).sum()),
        "top": _top_renewals(w, kept),
        "per_customer": _last_year_load(w, kept),
        "planted": f.gi[c.planted],
        "misclassified": f.gi[c.planted & ~ch.churned],
        "price_sensitive": f.gi[c.ps],
        "tier_counts": np.bincount(c.tier, minlength=4),
        "alive_now": int((~ch.churned).sum()),
    }


def _top_renewals(w: _World, kept: _Written) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This chunk's top-100 contracts ending in [year start, as_of) by annual value:
    value, global customer index, renewed."""
    n, ys = w.f.n, w.f.ctx.year_start_day
    c_end = kept.c_start + 364
    c_next = np.concatenate([kept.c_has[:, 1:], np.zeros((n, 1), bool)], axis=1)
    due = kept.c_has & (c_end >= ys) & (c_end < w.f.ctx.as_of_day)
    dr, dk = np.nonzero(due)
    d_val = np.round(kept.c_val[dr, dk], 2)
    top = np.lexsort((w.f.gi[dr], -d_val))[:100]
    return d_val[top], w.f.gi[dr[top]], c_next[dr[top], dk[top]]


def _last_year_load(w: _World, kept: _Written) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer in the last year: orders, sum and count of first-response days."""
    n, ys = w.f.n, w.f.ctx.year_start_day
    o, k = kept.orders, kept.tickets
    n_orders_12 = np.bincount(o.c[o.day > ys], minlength=n).astype(np.int64)
    km = (~kept.resp_null) & (k.open > ys * DAY_S)
    tk_sum = np.bincount(k.c[km], weights=(k.resp[km] - k.open[km]) / DAY_S, minlength=n)
    tk_n = np.bincount(k.c[km], minlength=n).astype(np.int64)
    return n_orders_12, tk_sum, tk_n


def new_accumulator() -> dict[str, Any]:
    return {
        "moments": {},
        "churn_counts": {},
        **{key: [] for key in _PARTS},
        "tier_counts": np.zeros(4, np.int64),
        **dict.fromkeys(_TOTALS, 0),
    }


def accumulate(acc: dict[str, Any], res: dict[str, Any]) -> None:
    for f, (c, s, ss) in res["moments"].items():
        c0, s0, ss0 = acc["moments"].get(f, (0, 0.0, 0.0))
        acc["moments"][f] = (c0 + c, s0 + s, ss0 + ss)
    for g, (alive, ch) in res["churn_counts"].items():
        a0, c0 = acc["churn_counts"].get(g, (0, 0))
        acc["churn_counts"][g] = (a0 + alive, c0 + ch)
    for key in _PARTS:
        acc[key].append(res[key])
    acc["tier_counts"] += res["tier_counts"]
    for key in _TOTALS:
        acc[key] += res[key]


def truth(ctx: _Ctx, acc: dict[str, Any], rows: dict[str, int], fmt: str) -> dict:
    """The truth dict written to truth.json (``pilots`` is added by the caller)."""
    P = ctx.params
    width = ctx.cust_width

    def ids(parts: list[np.ndarray]) -> list[str]:
        arr = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return [f"C{i + 1:0{width}d}" for i in arr.tolist()]

    effects = _effects(ctx, acc)
    ranking = sorted(effects, key=lambda k: -abs(effects[k]["standardized"]))
    tc = acc["tier_counts"]
    return {
        "generator": "fupan.demo",
        "generator_version": GENERATOR_VERSION,
        "seed": ctx.seed,
        "as_of": str(ctx.as_of),
        "history_start": str(EPOCH + timedelta(days=ctx.d0)),
        "customers": ctx.n_customers,
        "business_model": ctx.mode,
        "format": fmt,
        "rows": rows,
        "hazard": {
            "time_unit": "week",
            "snapshot": "Monday 00:00; features use only data strictly before it",
            "form": "P(churn in week) = 1 - exp(-exp(baseline + sum(log_hazard_ratio * x)))"
            + (
                "; contractual: P(not renewed) = 1 - exp(-sum of weekly hazards over the contract year)"
                if ctx.mode == "contractual"
                else ""
            ),
            "baseline_log_hazard": P.base_log_hazard,
            "std_population": "customer-weeks at risk over the whole history",
        },
        "effects": effects,
        "effect_ranking": ranking,
        "observable_effect_ranking": [k for k in ranking if effects[k]["observable"]],
        "null_features": list(NULL_FEATURES),
        "misclassified_customer_ids": ids(acc["misclassified"]),
        "planted_growth_customer_ids": ids(acc["planted"]),
        "misclassification_rule": "trailing-12-month spend tier >= 1 tier above the assigned tier "
        "and trailing-12-month spend >= 4 x the spend in the first 12 months after acquisition",
        "misclassified_definition": f"planted-growth customers (spend x{P.growth_min:g} or more a "
        "year or more after acquisition, tier unchanged) not churned by as_of; "
        "planted_growth_customer_ids also holds those that churned",
        "tier_thresholds": {
            "platinum": TIER_THRESHOLDS[0],
            "gold": TIER_THRESHOLDS[1],
            "silver": TIER_THRESHOLDS[2],
            "attention": 0.0,
        },  # fmt: skip
        "tier_shares": {t: round(int(tc[i]) / ctx.n_customers, 6) for i, t in enumerate(TIERS)},
        "price_sensitive_share": round(
            sum(len(x) for x in acc["price_sensitive"]) / ctx.n_customers, 6
        ),
        "price_sensitive_customer_ids": ids(acc["price_sensitive"]),
        "churn_reasons": list(CHURN_REASONS),
        "competitors": list(COMPETITORS),
        "churned_customers": int(acc["churned_total"]),
        "recorded_churn_events": int(acc["recorded_total"]),
        "calibration": _calibration(ctx, acc),
        "interventions": ctx.interventions,
        "block_size": BLOCK,
    }


def _effects(ctx: _Ctx, acc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each planted effect with its population mean and std over customer-weeks at risk."""
    effects = {}
    for name in FEATURES:
        c, s, ss = acc["moments"][name]
        mean = s / c if c else 0.0
        std = math.sqrt(max(ss / c - mean * mean, 0.0)) if c else 0.0
        e = EFFECTS[name]
        beta = ctx.params.effects[name]
        effects[name] = {
            "log_hazard_ratio": beta,
            "unit": e.unit,
            "std": round(std, 6),
            "mean": round(mean, 6),
            "standardized": round(beta * std, 6),
            "description": e.description,
            "observable": e.observable,
        }
    return effects


def _calibration(ctx: _Ctx, acc: dict[str, Any]) -> dict[str, Any]:
    """Figures of the last year the defaults are calibrated to (see ``_Params``)."""

    def rate(group: str) -> float | None:
        alive, ch = acc["churn_counts"][group]
        return round(ch / alive, 6) if alive else None

    top100 = _top100_renewal_rate(acc)
    busy_days = _busy_first_response_days(acc)
    churn_y = acc["churn_counts"]["overall"][1]
    return {
        "window": [str(ctx.as_of - timedelta(days=365)), str(ctx.as_of)],
        "core_annual_churn": rate("core"),
        "overall_annual_churn": rate("overall"),
        "price_sensitive_annual_churn": rate("price_sensitive"),
        "not_price_sensitive_annual_churn": rate("not_price_sensitive"),
        "tier_annual_churn": {t: rate(f"tier_{t}") for t in TIERS},
        "alive_at_window_start": int(acc["churn_counts"]["overall"][0]),
        "core_alive_at_window_start": int(acc["churn_counts"]["core"][0]),
        "top100_renewal_rate": round(top100, 6) if top100 is not None else None,
        "busy_first_response_days": round(busy_days, 6) if busy_days is not None else None,
        "sla_days": 3.5,
        "no_touch_share_among_churned": round(acc["churn_y_no_touch"] / churn_y, 6)
        if churn_y
        else None,
        "churn_recorded_share": round(acc["churn_y_recorded"] / churn_y, 6) if churn_y else None,
        "customers_alive_at_as_of": int(acc["alive_now"]),
        "definitions": {
            "annual_churn": "true churn (recorded or not) in the window among customers acquired "
            "on or before its start and not churned by then",
            "core": "tiers platinum and gold (assigned tier)",
            "top100_renewal_rate": "contracts ending in the window (end_date >= its start and < "
            "as_of), the 100 with the highest annual_value: share renewed (a contract with "
            "renewal_of pointing to it)",
            "busy_first_response_days": "mean first-response time (days) of answered tickets opened "
            "in the window, for customers whose order count in the window is at or above the 80th "
            "percentile among customers with at least one order in it",
        },
    }


def _top100_renewal_rate(acc: dict[str, Any]) -> float | None:
    vals = np.concatenate([t[0] for t in acc["top"]])
    gidx = np.concatenate([t[1] for t in acc["top"]])
    ren = np.concatenate([t[2] for t in acc["top"]])
    top = np.lexsort((gidx, -vals))[:100]
    return float(ren[top].mean()) if len(top) else None


def _busy_first_response_days(acc: dict[str, Any]) -> float | None:
    n12 = np.concatenate([p[0] for p in acc["per_customer"]])
    tks = np.concatenate([p[1] for p in acc["per_customer"]])
    tkn = np.concatenate([p[2] for p in acc["per_customer"]])
    buyers = n12 > 0
    if not buyers.any():
        return None
    thr = float(np.quantile(n12[buyers], 0.8))
    busy = buyers & (n12 >= thr)
    return float(tks[busy].sum() / max(tkn[busy].sum(), 1))
