"""Demo data generator: eight contract tables with a known truth.

``generate`` writes a synthetic customer base (``customers``, ``orders``, ``contracts``,
``touches``, ``tickets``, ``surveys``, ``activity``, ``churn_events``) plus ``truth.json``,
the planted effects and calibration figures that tests and benchmarks check an analysis
against.

How the world works (weekly time steps, snapshot = Monday 00:00):

* Customers are acquired over the history with steadily growing intake. Each gets an
  initial expected annual spend; the tier is assigned from it once and never revised.
* A latent engagement process (AR(1) per customer) drives order frequency and logins.
  Planted small customers (``truth["planted_growth_customer_ids"]``) grow their spend ×10
  or more a year or more after acquisition while keeping their low tier.
* Tickets arise from orders; first-response time grows with how busy the account is (its
  order rate) and, for the largest accounts, with their size. Touches follow a cadence by
  tier plus a follow-up after the first repeat purchase. Surveys come about twice a year.
* Contracts are annual from acquisition. Contractual: churn is a contract not renewed at
  its end. Non-contractual: customers go dormant; a customer who goes dormant within
  ``RENEWAL_LOOKAHEAD_DAYS`` after a contract end lets it lapse (the world is simulated
  that far beyond ``as_of``; nothing after ``as_of`` is written).
* Churn is a weekly hazard, log-linear in *observable* trailing features computed from the
  event data strictly before the snapshot (plus one hidden segment flag). The full
  potential event history is simulated first, then cut at churn, so features at a
  snapshot are exactly the ones an analysis can recompute from the tables.

Randomness: customers are grouped into fixed blocks of ``BLOCK`` customers, each with its
own stream ``SeedSequence(seed, spawn_key=(block,))`` (the ``block``-th child of
``SeedSequence(seed).spawn``). All random variates are drawn from potential (pre-churn,
pre-policy) quantities, so the output does not depend on ``chunk_customers`` and an
intervention changes only deterministic transforms (common random numbers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy.signal import lfilter

from fupan.schema import TABLES

#: The tables the world simulation writes; ``pilots`` is planted afterwards.
SIMULATED = tuple(t for t in TABLES if t != "pilots")

__all__ = ["generate", "TIERS", "TIER_THRESHOLDS", "CHURN_REASONS", "tier_of_spend"]

GENERATOR_VERSION = "1"
BLOCK = 100  # customers per random stream; chunks are rounded up to a multiple of it
SIM_UNIT = 10_000  # customers simulated at once (a multiple of BLOCK)
DAY_S = 86_400
WEEK_S = 7 * DAY_S
EPOCH = date(1970, 1, 1)

TIERS = ("platinum", "gold", "silver", "attention")  # best -> worst
TIER_THRESHOLDS = (200_000.0, 50_000.0, 10_000.0)  # CNY a year: platinum, gold, silver floors
INDUSTRIES = ("manufacturing", "retail", "finance", "healthcare", "logistics", "tech")
INDUSTRY_P = (0.24, 0.2, 0.12, 0.14, 0.13, 0.17)
REGIONS = ("华东", "华南", "华北", "西南", "华中")
REGION_P = (0.32, 0.22, 0.2, 0.13, 0.13)
ACQ_CHANNELS = ("referral", "event", "online", "sales")
ACQ_CHANNEL_P = (0.25, 0.15, 0.3, 0.3)
ORDER_CATEGORIES = ("hardware", "software", "service", "consumables")
ORDER_CATEGORY_P = (0.3, 0.25, 0.2, 0.25)
TICKET_CATEGORIES = ("delivery", "quality", "billing", "technical", "other")
TICKET_CATEGORY_P = (0.25, 0.25, 0.15, 0.25, 0.1)
PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_P = (0.2, 0.5, 0.22, 0.08)
PRIORITY_DELAY = (1.15, 1.0, 0.85, 0.6)
CHURN_REASONS = (
    "service",
    "price",
    "competitor",
    "no_contact",
    "product_fit",
    "relocation",
    "other",
)
COMPETITORS = ("CompA", "CompB", "CompC")
COMPETITOR_P = (0.5, 0.3, 0.2)
TOUCH_CHANNELS = ("visit", "call", "email", "sms", "app_push", "wechat", "event", "other")
# cadence touches per week and channel mix, by tier (platinum, gold, silver, attention)
TOUCH_RATE = (0.45, 0.22, 0.07, 0.03)
TOUCH_CHANNEL_P = (
    (0.35, 0.30, 0.05, 0.00, 0.00, 0.25, 0.05, 0.00),
    (0.15, 0.35, 0.15, 0.00, 0.00, 0.25, 0.10, 0.00),
    (0.00, 0.25, 0.25, 0.15, 0.10, 0.20, 0.05, 0.00),
    (0.00, 0.00, 0.25, 0.35, 0.30, 0.05, 0.00, 0.05),
)
TOUCH_RESPONDED_P = (0.95, 0.8, 0.3, 0.68, 0.89, 0.75, 0.85, 0.5)

CITIES = {
    "华东": ("上海", "杭州", "苏州", "南京", "宁波"),
    "华南": ("广州", "深圳", "东莞", "厦门", "佛山"),
    "华北": ("北京", "天津", "石家庄", "太原", "济南"),
    "西南": ("成都", "重庆", "昆明", "贵阳", "南宁"),
    "华中": ("武汉", "长沙", "郑州", "南昌", "合肥"),
}
NAME_CORES = (
    "华信", "远景", "恒达", "鑫源", "博雅", "星辰", "瑞丰", "天成", "嘉禾", "宏图",
    "金桥", "新锐", "中科", "安泰", "永盛", "汇通", "润德", "明达", "聚力", "创联",
)  # fmt: skip
NAME_SUFFIXES = {
    "manufacturing": ("机械制造", "精密制造", "工业"),
    "retail": ("商贸", "零售", "百货"),
    "finance": ("金融服务", "投资", "资产管理"),
    "healthcare": ("医疗器械", "健康科技", "医药"),
    "logistics": ("物流", "供应链", "运输"),
    "tech": ("科技", "信息技术", "软件"),
}

FEATURES = (
    "median_first_response_days",
    "no_touch_after_first_repeat",
    "spend_change_qoq",
    "weeks_without_login",
    "detractor",
    "price_sensitive",
)
NULL_FEATURES = ("region", "acquisition_channel", "dim_intimacy")
GAP_CAP_WEEKS = 12
# non-contractual: a customer who goes dormant within this many days after a contract end
# does not renew it
RENEWAL_LOOKAHEAD_DAYS = 182
LOOKAHEAD_WEEKS = RENEWAL_LOOKAHEAD_DAYS // 7 + 2  # simulated beyond as_of (never written)
_NEVER = 10**9  # a day number after any date we write


@dataclass(frozen=True)
class _Effect:
    beta: float
    unit: str
    description: str
    observable: bool = True


# Log hazard ratios per unit, on the weekly churn hazard. Sizes were chosen so that
# |log HR x population std| is clearly ordered (see truth["effect_ranking"]).
EFFECTS: dict[str, _Effect] = {
    "median_first_response_days": _Effect(
        0.22,
        "days",
        "median of (first_response_at - opened_at) in days over the customer's tickets "
        "opened in the 180 days before the snapshot and first-responded before it; 0 when "
        "there is none",
    ),
    "no_touch_after_first_repeat": _Effect(
        1.15,
        "binary",
        "1 once 7 days have passed after the first repeat purchase (the first order with "
        "amount > 0 after the acquisition order) with no touch on that day or the 7 days "
        "after it; else 0",
    ),
    "spend_change_qoq": _Effect(
        -0.76,
        "relative change",
        "(spend in the 90 days before the snapshot - spend in the 90 days before those) / "
        "the latter, clipped to [-1, 1]; 0 when the earlier window has no positive spend",
    ),
    "weeks_without_login": _Effect(
        0.17,
        "weeks",
        f"consecutive weeks with zero logins in activity immediately before the snapshot "
        f"week, capped at {GAP_CAP_WEEKS}",
    ),
    "detractor": _Effect(
        0.25,
        "binary",
        "1 if the latest survey before the snapshot has nps <= 6; 0 otherwise (also never "
        "surveyed)",
    ),
    "price_sensitive": _Effect(
        0.5,
        "binary",
        "hidden segment flag (in no table; ids in truth['price_sensitive_customer_ids'])",
        observable=False,
    ),
}


@dataclass
class _Params:
    """World parameters, calibrated so the defaults meet truth['calibration'] targets."""

    base_log_hazard: float = -7.95  # weekly
    acq_growth: float = 0.3  # yearly growth of acquisitions
    spend_median: float = 16_000.0  # initial expected annual spend (lognormal)
    spend_sigma: float = 1.25
    rate_base: float = 8.0  # orders a year at zero spend ...
    rate_slope: float = 2.5  # ... plus this per doubling of (1 + spend / 10k)
    rate_sigma: float = 0.45  # idiosyncratic order frequency (who is busy)
    eng_sd: float = 0.28  # latent engagement, log scale
    eng_phi: float = 0.96  # weekly autocorrelation
    drift_sd: float = 0.05  # per year, log order value
    amount_sigma: float = 0.45
    refund_share: float = 0.01
    login_median: float = 1.5  # logins a week
    login_sigma: float = 0.9
    login_size_power: float = 0.5
    ticket_base: float = 0.012  # tickets a week ...
    ticket_per_order: float = 0.22  # ... plus this per expected order
    delay_scale: float = 2.65  # mean first response (days) at 10 orders a year ...
    delay_power: float = 1.8  # ... growing with the order rate to this power
    size_knee: float = 90_000.0  # accounts above this initial spend wait longer ...
    size_kappa: float = 1.0  # ... proportionally to size ...
    size_cap: float = 1.6  # ... up to this multiple
    size_growth_share: float = 0.0  # a planted growth does not count as account size
    serv_sigma: float = 0.4  # account-level service quality
    delay_sigma: float = 0.55  # ticket-level
    never_answered: float = 0.01
    follow_up_by_tier: tuple[float, ...] = (0.97, 0.95, 0.2, 0.05)  # after the first repeat
    survey_response: float = 0.7
    price_sensitive_by_tier: tuple[float, ...] = (0.1, 0.15, 0.35, 0.45)
    plant_share: float = 0.06  # of all customers (planted among eligible ones)
    plant_max_spend: float = 15_000.0  # planted among small accounts (attention, low silver)
    growth_min: float = 10.0
    growth_span: float = 6.0
    growth_rate_share: float = 0.4  # share of the planted log growth in order frequency
    churn_recorded_non_contractual: float = 0.7
    effects: dict[str, float] = field(
        default_factory=lambda: {k: e.beta for k, e in EFFECTS.items()}
    )


_DEFAULT_PARAMS = _Params()
# contractual customers stay to the end of their contract year, so slow service is seen for
# longer before it ends a relationship: a lower scale keeps the same calibration targets
_MODE_OVERRIDES: dict[str, dict[str, float]] = {
    "contractual": {"delay_scale": 1.85, "base_log_hazard": -7.66},
}

ARROW_TYPES = {
    "str": pa.string(),
    "date": pa.date32(),
    "datetime": pa.timestamp("s"),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}
SURVEY_DIMS = ("dim_need_fit", "dim_resolution", "dim_intimacy")


def _schema(table: str) -> pa.Schema:
    cols = [pa.field(c.name, ARROW_TYPES[c.dtype]) for c in TABLES[table].columns]
    if table == "surveys":
        cols += [pa.field(d, pa.float64()) for d in SURVEY_DIMS]
    return pa.schema(cols)


def tier_of_spend(annual_spend: np.ndarray) -> np.ndarray:
    """Tier code (0 = platinum ... 3 = attention) for an annual spend in CNY."""
    s = np.asarray(annual_spend, dtype=float)
    return np.where(
        s >= TIER_THRESHOLDS[0],
        0,
        np.where(s >= TIER_THRESHOLDS[1], 1, np.where(s >= TIER_THRESHOLDS[2], 2, 3)),
    )


# ----------------------------------------------------------------------------- random


class _Streams:
    """One numpy Generator per block of ``BLOCK`` customers; draws concatenate over blocks."""

    def __init__(self, seed: int, first_block: int, sizes: list[int]) -> None:
        self.sizes = sizes
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.gens = [
            np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(first_block + k,)))
            )
            for k in range(len(sizes))
        ]

    def cust(self, kind: str, width: int | None = None, dtype: type = np.float64) -> np.ndarray:
        out = []
        for g, s in zip(self.gens, self.sizes, strict=True):
            shape = (s,) if width is None else (s, width)
            out.append(g.random(shape, dtype) if kind == "u" else g.standard_normal(shape, dtype))
        return np.concatenate(out)

    def events(self, block_counts: np.ndarray, kind: str) -> np.ndarray:
        out = []
        for g, c in zip(self.gens, block_counts, strict=True):
            out.append(g.random(int(c)) if kind == "u" else g.standard_normal(int(c)))
        return np.concatenate(out) if out else np.zeros(0)

    def poisson_cells(self, lam: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.zeros(lam.shape, dtype=np.int32)
        for k, g in enumerate(self.gens):
            a, b = self.bounds[k], self.bounds[k + 1]
            m = valid[a:b]
            sub = out[a:b]
            sub[m] = g.poisson(lam[a:b][m])
        return out


def _cat(u: np.ndarray, p: tuple[float, ...] | np.ndarray) -> np.ndarray:
    cp = np.cumsum(p)
    cp = cp / cp[-1]
    return np.minimum(np.searchsorted(cp, u, side="right"), len(cp) - 1)


def _ln_noise(z: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(sigma * z - 0.5 * sigma * sigma)


# ----------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    seed: int
    n_customers: int
    mode: str
    as_of: date
    as_of_day: int
    d0: int  # first Monday of the history (days since epoch)
    n_weeks: int
    n_sim: int  # weeks simulated (history plus look-ahead)
    interventions: dict[str, Any]
    params: _Params
    n_am: int
    cust_width: int
    n_slots: int  # survey slots per customer
    n_contracts: int  # potential contracts per customer

    @property
    def year_start_day(self) -> int:
        return self.as_of_day - 365

    def monday(self, w: np.ndarray | int) -> np.ndarray:
        return self.d0 + 7 * np.asarray(w, dtype=np.int64)


def _day(d: date) -> int:
    return (d - EPOCH).days


def _check_interventions(iv: dict | None) -> dict[str, Any]:
    iv = dict(iv or {})
    known = {
        "first_response_cap_days",
        "tiers",
        "touch_after_first_repeat",
        "region",
        "acquisition_channel",
    }
    unknown = set(iv) - known
    if unknown:
        raise ValueError(f"unknown intervention(s) {sorted(unknown)}; known: {sorted(known)}")
    if "tiers" in iv and "first_response_cap_days" not in iv:
        raise ValueError("intervention 'tiers' needs 'first_response_cap_days'")
    if "first_response_cap_days" in iv:
        cap = float(iv["first_response_cap_days"])
        if not cap > 0:
            raise ValueError("first_response_cap_days must be > 0")
        iv["first_response_cap_days"] = cap
        tiers = list(iv.get("tiers") or TIERS)
        bad = [t for t in tiers if t not in TIERS]
        if bad:
            raise ValueError(f"unknown tier(s) {bad} in interventions; tiers are {list(TIERS)}")
        iv["tiers"] = tiers
    if "touch_after_first_repeat" in iv:
        iv["touch_after_first_repeat"] = bool(iv["touch_after_first_repeat"])
    if "region" in iv and iv["region"] not in REGIONS:
        raise ValueError(f"unknown region {iv['region']!r}; regions are {list(REGIONS)}")
    if "acquisition_channel" in iv and iv["acquisition_channel"] not in ACQ_CHANNELS:
        raise ValueError(f"unknown acquisition_channel {iv['acquisition_channel']!r}")
    return iv


# ----------------------------------------------------------------------------- helpers


def _ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    nums = pa.array(np.arange(start, start + n, dtype=np.int64))
    s = pc.utf8_lpad(pc.cast(nums, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, s, "")


def _take(
    vocab: tuple[str, ...] | list[str], codes: np.ndarray, mask: np.ndarray | None = None
) -> pa.Array:
    arr = pc.take(pa.array(list(vocab), pa.string()), pa.array(np.asarray(codes, dtype=np.int64)))
    if mask is not None:
        arr = pc.if_else(pa.array(mask), pa.nulls(len(arr), pa.string()), arr)
    return arr


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32), type=pa.date32())


def _stamps(secs: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(secs, dtype=np.int64), type=pa.timestamp("s"), mask=null)


def _group_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of runs of equal values in a sorted key array."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    lengths = np.diff(np.concatenate([starts, [len(keys)]]))
    return starts, lengths


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every unit in a 2-D count matrix, row-major (customer, week)."""
    flat = counts.ravel()
    nz = np.flatnonzero(flat)
    rep = flat[nz]
    cells = np.repeat(nz, rep)
    return cells // counts.shape[1], cells % counts.shape[1]


# ----------------------------------------------------------------------------- chunk


def _simulate_chunk(ctx: _Ctx, first: int, n: int) -> dict[str, Any]:  # noqa: C901
    P = ctx.params
    TH = ctx.n_weeks  # weeks of history (the last one holds as_of)
    T = ctx.n_sim  # simulated weeks: history plus a look-ahead for renewal decisions
    as_of = ctx.as_of_day
    iv = ctx.interventions
    nb = -(-n // BLOCK)
    sizes = [min(BLOCK, n - k * BLOCK) for k in range(nb)]
    rs = _Streams(ctx.seed, first // BLOCK, sizes)
    gi = first + np.arange(n, dtype=np.int64)  # global customer index
    rows1 = np.arange(n)
    wk = np.arange(T, dtype=np.int64)
    monday = ctx.monday(wk)

    # ---- static draws (fixed order) -------------------------------------------------
    u_acq = rs.cust("u")
    z_spend = rs.cust("z")
    u_ind = rs.cust("u")
    u_reg = rs.cust("u")
    u_chan = rs.cust("u")
    u_am = rs.cust("u")
    u_name = rs.cust("u", 3)
    z_rate = rs.cust("z")
    z_serv = rs.cust("z")
    z_login = rs.cust("z")
    u_ps = rs.cust("u")
    u_plant = rs.cust("u", 4)
    z_drift = rs.cust("z")
    u_follow = rs.cust("u", 5)
    u_survey = rs.cust("u")
    z_sat = rs.cust("z")
    z_rel = rs.cust("z")
    u_churn = rs.cust("u", 6)
    z_contract = rs.cust("z", ctx.n_contracts + 1)
    S = ctx.n_slots
    u_srv = rs.cust("u", S * 3)
    z_srv = rs.cust("z", S * 5)
    eps = rs.cust("z", T, np.float32)
    u_haz = rs.cust("u", T, np.float32)

    # ---- acquisition: stratified over a steadily growing intake -----------------------
    g = math.log(1 + P.acq_growth) / 52.0
    t_max = TH - 1.0
    t_acq = np.log1p((gi + u_acq) / ctx.n_customers * math.expm1(g * t_max)) / g
    acq_day = ctx.d0 + np.minimum(np.floor(t_acq * 7).astype(np.int64), 7 * (TH - 1) - 1)
    a = (acq_day - ctx.d0) // 7  # acquisition week
    valid = wk[None, :] > a[:, None]  # regular processes start the week after acquisition

    # ---- attributes -------------------------------------------------------------------
    s0 = np.exp(math.log(P.spend_median) + P.spend_sigma * z_spend)  # expected annual spend
    tier = tier_of_spend(s0)  # assigned once, never revised
    industry = _cat(u_ind, INDUSTRY_P)
    region = _cat(u_reg, REGION_P)
    channel = _cat(u_chan, ACQ_CHANNEL_P)
    am = np.floor(u_am * ctx.n_am).astype(np.int64) + 1
    ps = u_ps < np.asarray(P.price_sensitive_by_tier)[tier]
    r0 = (P.rate_base + P.rate_slope * np.log2(1.0 + s0 / 10_000.0)) * _ln_noise(
        z_rate, P.rate_sigma
    )
    login_rate = np.exp(math.log(P.login_median) + P.login_sigma * z_login)
    login_rate = np.clip(login_rate * (s0 / P.spend_median) ** P.login_size_power, 0.15, 15.0)
    serv_q = _ln_noise(z_serv, P.serv_sigma)
    drift = P.drift_sd * z_drift

    # planted growth (x8-14, more if needed to clear the next tier) a year or more in
    ramp_start = a + 52 + np.floor(4 + u_plant[:, 2] * 26).astype(np.int64)
    ramp_len = np.floor(8 + u_plant[:, 3] * 18).astype(np.int64)
    next_floor = np.asarray([TIER_THRESHOLDS[0] * 4, *TIER_THRESHOLDS])[tier]
    growth = np.maximum(P.growth_min + P.growth_span * u_plant[:, 1], 1.6 * next_floor / s0)
    eligible = (s0 < P.plant_max_spend) & (ramp_start + ramp_len <= TH - 1 - 56)
    p_plant = min(1.0, P.plant_share / max(_eligible_share(ctx), 1e-9))
    planted = eligible & (u_plant[:, 0] < p_plant)
    gp = np.zeros((n, T), dtype=np.float32)  # planted log growth, smooth ramp
    pl = np.flatnonzero(planted)
    prog = np.clip(
        (wk[None, :] - ramp_start[pl, None]) / np.maximum(ramp_len[pl], 1)[:, None], 0.0, 1.0
    )
    gp[pl] = np.log(growth[pl])[:, None] * (prog * prog * (3 - 2 * prog))
    del prog, pl

    # ---- engagement: AR(1) in logs, stationary from the start --------------------------
    x = eps * np.float32(P.eng_sd * math.sqrt(1 - P.eng_phi**2))
    x[:, 0] = eps[:, 0] * np.float32(P.eng_sd)
    eng = lfilter(np.ones(1, np.float32), np.asarray([1.0, -P.eng_phi], np.float32), x, axis=1)
    del x, eps
    gr = P.growth_rate_share
    rate_w = r0[:, None] / 52.0 * np.exp(eng + gr * gp)  # expected orders per week

    # ---- orders (potential: as if the customer never churned) --------------------------
    k_orders = rs.poisson_cells(rate_w, valid)
    oc, ow = _expand(k_orders)
    del k_orders
    cnt = np.bincount(oc // BLOCK, minlength=nb)
    u_od = rs.events(cnt, "u")
    z_oa = rs.events(cnt, "z")
    u_oc = rs.events(cnt, "u")
    u_or = rs.events(cnt, "u")
    o_day = monday[ow] + np.floor(u_od * 7).astype(np.int64)
    unit = s0 / r0
    amt_level = np.exp(drift[oc] * (ow - a[oc]) / 52.0 + (1 - gr) * gp[oc, ow])  # order value
    o_amt = unit[oc] * amt_level * _ln_noise(z_oa, P.amount_sigma)
    o_amt = np.where(u_or < P.refund_share, -(0.2 + 0.8 * (u_or / P.refund_share)) * o_amt, o_amt)
    o_cat = _cat(u_oc, ORDER_CATEGORY_P)
    del amt_level, u_od, z_oa, u_oc, u_or
    # the acquisition order (first deal) on acquired_at
    oc = np.concatenate([rows1, oc])
    ow = np.concatenate([a, ow])
    o_day = np.concatenate([acq_day, o_day])
    o_amt = np.round(np.concatenate([unit * _ln_noise(z_contract[:, -1], 0.3), o_amt]), 2)
    o_cat = np.concatenate([_cat(u_churn[:, 5], ORDER_CATEGORY_P), o_cat])
    order = np.lexsort((np.arange(len(oc)), o_day, oc))
    oc, ow, o_day, o_amt, o_cat = oc[order], ow[order], o_day[order], o_amt[order], o_cat[order]
    del order

    # first repeat purchase: the first order with amount > 0 after the acquisition order
    idx_rep = np.flatnonzero((ow > a[oc]) & (o_amt > 0))
    first_rep = (
        idx_rep[np.concatenate([[True], oc[idx_rep][1:] != oc[idx_rep][:-1]])]
        if len(idx_rep)
        else idx_rep
    )
    fr_day = np.full(n, _NEVER, dtype=np.int64)
    fr_day[oc[first_rep]] = o_day[first_rep]
    has_fr = fr_day < _NEVER
    del idx_rep, first_rep

    # spend_change_qoq: exact 90-day windows from weekly sums plus Monday (/Tuesday) parts
    flat = oc * T + ow
    dow = o_day - monday[ow]
    cum = np.zeros((n, T + 1))
    np.cumsum(
        np.bincount(flat, weights=o_amt, minlength=n * T).reshape(n, T), axis=1, out=cum[:, 1:]
    )
    c90 = np.zeros((n, T))  # spend before (Monday - 90 days) = Tuesday of week w-13
    c90[:, 13:] = cum[:, : T - 13]
    c90[:, 13:] += np.bincount(
        flat, weights=np.where(dow == 0, o_amt, 0.0), minlength=n * T
    ).reshape(n, T)[:, : T - 13]
    c180 = np.zeros((n, T))  # spend before (Monday - 180 days) = Wednesday of week w-26
    c180[:, 26:] = cum[:, : T - 26]
    c180[:, 26:] += np.bincount(
        flat, weights=np.where(dow <= 1, o_amt, 0.0), minlength=n * T
    ).reshape(n, T)[:, : T - 26]
    last90 = cum[:, :T] - c90
    prev90 = c90 - c180
    del cum, c90, c180, flat, dow
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(prev90 > 0.005, np.clip((last90 - prev90) / prev90, -1.0, 1.0), 0.0).astype(
            np.float32
        )
    del last90, prev90

    # ---- logins ------------------------------------------------------------------------
    logins = rs.poisson_cells(login_rate[:, None] * np.exp(eng), valid)
    last_login = np.where((logins > 0) & valid, wk[None, :], a[:, None])
    np.maximum.accumulate(last_login, axis=1, out=last_login)
    gap = np.zeros((n, T), dtype=np.float32)
    gap[:, 1:] = wk[None, :-1] - last_login[:, :-1]
    gap = np.where(valid, np.minimum(gap, GAP_CAP_WEEKS), 0).astype(np.float32)
    del last_login

    # ---- touches (potential) -----------------------------------------------------------
    t_rate = np.asarray(TOUCH_RATE)[tier]
    k_touch = rs.poisson_cells(np.broadcast_to(t_rate[:, None], (n, T)), valid)
    tc, tw = _expand(k_touch)
    del k_touch
    cnt = np.bincount(tc // BLOCK, minlength=nb)
    u_td = rs.events(cnt, "u")
    u_ts = rs.events(cnt, "u")
    u_tch = rs.events(cnt, "u")
    u_tr = rs.events(cnt, "u")
    t_day = monday[tw] + np.floor(u_td * 7).astype(np.int64)
    t_sec = t_day * DAY_S + 8 * 3600 + np.floor(u_ts * 12 * 3600).astype(np.int64)
    cp = np.cumsum(np.asarray(TOUCH_CHANNEL_P), axis=1)
    t_ch = np.minimum((u_tch[:, None] > cp[tier[tc]]).sum(axis=1), len(TOUCH_CHANNELS) - 1)
    del tw, u_td, u_ts, u_tch
    # follow-up after the first repeat purchase (policy: by tier; intervention: everyone)
    if iv.get("touch_after_first_repeat"):
        f_has = has_fr.copy()
        f_off = 1 + np.floor(u_follow[:, 1] * 3).astype(np.int64)
    else:
        f_has = has_fr & (u_follow[:, 0] < np.asarray(P.follow_up_by_tier)[tier])
        f_off = np.minimum(np.floor(-np.log1p(-u_follow[:, 1]) * 3.5).astype(np.int64), 20)
    f_idx = np.flatnonzero(f_has)
    f_day = fr_day[f_idx] + f_off[f_idx]
    f_sec = f_day * DAY_S + 9 * 3600 + np.floor(u_follow[f_idx, 2] * 9 * 3600).astype(np.int64)
    f_ch = np.where(tier[f_idx] == 0, 0, np.where(u_follow[f_idx, 3] < 0.6, 1, 5))
    tc = np.concatenate([tc, f_idx])
    t_day = np.concatenate([t_day, f_day])
    t_sec = np.concatenate([t_sec, f_sec])
    t_ch = np.concatenate([t_ch, f_ch])
    u_tr = np.concatenate([u_tr, u_follow[f_idx, 4]])
    order = np.lexsort((np.arange(len(tc)), t_sec, tc))
    tc, t_day, t_sec, t_ch, u_tr = tc[order], t_day[order], t_sec[order], t_ch[order], u_tr[order]
    del order
    in_win = has_fr[tc] & (t_day >= fr_day[tc]) & (t_day <= fr_day[tc] + 7)
    no_touch = has_fr & ~(np.bincount(tc[in_win], minlength=n) > 0)
    nt_from = np.where(no_touch, -(-(fr_day + 8 - ctx.d0) // 7), T + 1)
    nt = (wk[None, :] >= nt_from[:, None]).astype(np.float32)
    del in_win

    # ---- tickets (potential) -----------------------------------------------------------
    k_tix = rs.poisson_cells(P.ticket_base + P.ticket_per_order * rate_w, valid)
    kc, kw = _expand(k_tix)
    del k_tix
    cnt = np.bincount(kc // BLOCK, minlength=nb)
    u_kd = rs.events(cnt, "u")
    u_ks = rs.events(cnt, "u")
    u_kp = rs.events(cnt, "u")
    u_kc = rs.events(cnt, "u")
    z_kd = rs.events(cnt, "z")
    z_kr = rs.events(cnt, "z")
    u_kn = rs.events(cnt, "u")
    k_day = monday[kw] + np.floor(u_kd * 7).astype(np.int64)
    k_open = k_day * DAY_S + 7 * 3600 + np.floor(u_ks * 15 * 3600).astype(np.int64)
    k_prio = _cat(u_kp, PRIORITY_P)
    k_cat = _cat(u_kc, TICKET_CATEGORY_P)
    # first response slows with how busy the account is (its order rate that week) and,
    # for the largest accounts, with their size
    size_now = s0[kc] * np.exp(P.size_growth_share * (1 - gr) * gp[kc, kw])
    base_rate = rate_w[kc, kw] * np.exp(-gr * gp[kc, kw])  # a planted growth is not load
    load = (base_rate * 52.0 / 10.0) ** P.delay_power
    load *= np.clip(size_now / P.size_knee, 1.0, P.size_cap) ** P.size_kappa
    delay = (
        P.delay_scale
        * load
        * serv_q[kc]
        * np.asarray(PRIORITY_DELAY)[k_prio]
        * _ln_noise(z_kd, P.delay_sigma)
    )
    delay = np.clip(delay, 0.02, 60.0)
    del size_now, load, rate_w, base_rate
    if "first_response_cap_days" in iv:
        capped = np.isin(tier[kc], [TIERS.index(t) for t in iv["tiers"]])
        delay = np.where(capped, np.minimum(delay, iv["first_response_cap_days"]), delay)
    k_resp = k_open + np.round(delay * DAY_S).astype(np.int64)
    never = u_kn < P.never_answered
    k_resolve = k_resp + np.round(np.exp(math.log(1.5) + 0.8 * z_kr) * DAY_S).astype(np.int64)
    del u_kd, u_ks, u_kp, u_kc, z_kd, z_kr, u_kn, delay, kw

    # median first response over tickets opened in the 180 days before the snapshot and
    # answered before it (one sort over ticket x snapshot pairs)
    ans = np.flatnonzero(~never)
    w_lo = (k_resp[ans] - ctx.d0 * DAY_S) // WEEK_S + 1
    w_hi = np.minimum((k_day[ans] + 180 - ctx.d0) // 7, T - 1)
    ln = np.maximum(w_hi - w_lo + 1, 0)
    rep_t = np.repeat(ans, ln)
    w_rep = np.repeat(w_lo - (np.cumsum(ln) - ln), ln) + np.arange(len(rep_t))
    key = (kc[rep_t] * T + w_rep) << 23
    key += k_resp[rep_t] - k_open[rep_t]
    del rep_t, w_rep, ans, w_lo, w_hi, ln
    key.sort()
    cell = key >> 23
    d_sorted = key & ((1 << 23) - 1)
    st, le = _group_index(cell)
    resp_f = np.zeros(n * T, dtype=np.float32)
    resp_f[cell[st]] = (d_sorted[st + (le - 1) // 2] + d_sorted[st + le // 2]) / (2.0 * DAY_S)
    resp_f = resp_f.reshape(n, T)
    del key, cell, d_sorted, st, le

    # ---- surveys (about every 26 weeks, ~70% answered) --------------------------------
    phase = np.floor(u_survey * 26).astype(np.int64)
    s_week = a[:, None] + 1 + phase[:, None] + 26 * np.arange(S)[None, :]
    s_wc = np.minimum(s_week, T - 1)
    s_resp = (u_srv[:, :S] < P.survey_response) & (s_week < T)
    s_day = ctx.monday(s_wc) + np.floor(u_srv[:, S : 2 * S] * 7).astype(np.int64)
    e_std = eng[rows1[:, None], s_wc] / P.eng_sd
    r_at = resp_f[rows1[:, None], s_wc]
    sat = 7.3 + 1.1 * z_sat[:, None] + 0.7 * e_std - 0.3 * (r_at - 2.5) + 1.3 * z_srv[:, :S]
    nps = np.clip(np.round(sat), 0, 10).astype(np.int64)
    csat = np.clip(np.round(3.6 + 0.45 * (sat - 7.3) + 0.6 * z_srv[:, S : 2 * S]), 1, 5).astype(
        np.int64
    )
    csat_null = u_srv[:, 2 * S :] < 0.05
    dim_need = np.clip(
        3.5 + 0.45 * e_std + 0.3 * z_sat[:, None] + 0.5 * z_srv[:, 2 * S : 3 * S], 1, 5
    )
    dim_res = np.clip(3.9 - 0.15 * (r_at - 2.5) + 0.5 * z_srv[:, 3 * S : 4 * S], 1, 5)
    # dim_intimacy is a null feature: independent of everything that drives churn
    dim_int = np.clip(3.4 + 0.6 * z_rel[:, None] + 0.5 * z_srv[:, 4 * S : 5 * S], 1, 5)
    det = np.zeros((n, T), dtype=np.float32)
    for k in range(S):
        after = s_resp[:, k : k + 1] & (wk[None, :] > s_week[:, k : k + 1])
        det = np.where(after, (nps[:, k] <= 6)[:, None].astype(np.float32), det)
    del eng, e_std, r_at, sat

    # ---- hazard and churn --------------------------------------------------------------
    b = P.effects
    feats = {
        "median_first_response_days": resp_f,
        "no_touch_after_first_repeat": nt,
        "spend_change_qoq": sc,
        "weeks_without_login": gap,
        "detractor": det,
    }
    lh = np.full((n, T), P.base_log_hazard) + b["price_sensitive"] * ps[:, None]
    for name, arr in feats.items():
        lh += b[name] * arr
    h = np.where(valid, np.exp(lh), 0.0)
    del lh

    if ctx.mode == "non_contractual":
        hit = (u_haz < -np.expm1(-h)) & valid
        ever = hit.any(axis=1)
        wc = np.where(ever, hit.argmax(axis=1), T - 1)
        del hit
        churn_day = np.where(
            ever, monday[wc] + np.floor(u_churn[:, 0] * 7).astype(np.int64), _NEVER
        )
        end_day = churn_day  # no activity from the churn day on
        decision_w = wc
    else:
        hc = np.zeros((n, T + 1))
        np.cumsum(h, axis=1, out=hc[:, 1:])
        churn_day = np.full(n, _NEVER, dtype=np.int64)
        decision_w = np.full(n, T - 1, dtype=np.int64)
        for k in range(ctx.n_contracts):
            sk = acq_day + 365 * k
            ek = sk + 364
            due = (ek <= as_of) & (churn_day == _NEVER)
            w0 = np.clip(-(-(sk - ctx.d0) // 7), 0, T)
            w1 = np.clip(-(-(sk + 365 - ctx.d0) // 7), 0, T)
            wd = np.clip((ek - ctx.d0) // 7, 0, T - 1)
            lose = due & (u_haz[rows1, wd] < -np.expm1(-(hc[rows1, w1] - hc[rows1, w0])))
            churn_day = np.where(lose, ek, churn_day)
            decision_w = np.where(lose, wd, decision_w)
        # the contract runs through its end_date
        end_day = np.where(churn_day < _NEVER, churn_day + 1, _NEVER)
        del hc
    churned = churn_day <= as_of  # churned within the history (what the data shows)
    del h, u_haz

    at_risk = valid & (monday[None, :] < end_day[:, None]) & (wk[None, :] < TH)
    if ctx.mode == "non_contractual":
        at_risk &= wk[None, :] <= decision_w[:, None]
    moments = {}
    ar = at_risk.ravel()
    for name, arr in feats.items():
        v = arr.ravel()[ar].astype(np.float64)
        moments[name] = (len(v), float(v.sum()), float((v * v).sum()))
    v = np.repeat(ps, at_risk.sum(axis=1)).astype(np.float64)
    moments["price_sensitive"] = (len(v), float(v.sum()), float((v * v).sum()))
    del ar, v
    contrib = {name: b[name] * arr[rows1, decision_w] for name, arr in feats.items()}
    nt_at_churn = nt[rows1, decision_w] > 0
    del feats, resp_f, nt, sc, gap, det, at_risk

    # ---- tables: the history up to as_of, cut at churn ---------------------------------
    tables: dict[str, pa.Table] = {}
    cust_ids = _ids("C", first + 1, n, ctx.cust_width)
    region_out = np.full(n, REGIONS.index(iv["region"])) if "region" in iv else region
    chan_out = (
        np.full(n, ACQ_CHANNELS.index(iv["acquisition_channel"]))
        if "acquisition_channel" in iv
        else channel
    )
    cities = np.asarray([c for r in REGIONS for c in CITIES[r]], dtype=object)
    city = cities[region * 5 + np.floor(u_name[:, 0] * 5).astype(np.int64)]
    core = np.asarray(NAME_CORES, dtype=object)[
        np.floor(u_name[:, 1] * len(NAME_CORES)).astype(np.int64)
    ]
    sufs = np.asarray([x for i in INDUSTRIES for x in NAME_SUFFIXES[i]], dtype=object)
    suf = sufs[industry * 3 + np.floor(u_name[:, 2] * 3).astype(np.int64)]
    names = pc.binary_join_element_wise(
        pa.array(city, pa.string()),
        pa.array(core, pa.string()),
        pa.array(suf, pa.string()),
        "有限公司",
        "",
    )
    am_w = max(3, len(str(ctx.n_am)))
    am_ids = pc.binary_join_element_wise(
        "AM-", pc.utf8_lpad(pc.cast(pa.array(am), pa.string()), width=am_w, padding="0"), ""
    )
    tables["customers"] = pa.table(
        {
            "customer_id": cust_ids,
            "acquired_at": _dates(acq_day),
            "customer_name": names,
            "industry": _take(INDUSTRIES, industry),
            "region": _take(REGIONS, region_out),
            "tier": _take(TIERS, tier),
            "account_manager": am_ids,
            "acquisition_channel": _take(ACQ_CHANNELS, chan_out),
        },
        schema=_schema("customers"),
    )

    keep = (o_day < end_day[oc]) & (o_day <= as_of)
    oc, o_day, o_amt, o_cat = oc[keep], o_day[keep], o_amt[keep], o_cat[keep]
    tables["orders"] = pa.table(
        {
            "order_id": pa.nulls(len(oc), pa.string()),  # numbered by the caller
            "customer_id": pc.take(cust_ids, pa.array(oc)),
            "order_date": _dates(o_day),
            "amount": pa.array(o_amt, pa.float64()),
            "category": _take(ORDER_CATEGORIES, o_cat),
        },
        schema=_schema("orders"),
    )

    # contracts: annual from acquisition; contract k+1 renews k. Contractual: renewed unless
    # the customer churned at its end. Non-contractual: a customer who goes dormant within
    # RENEWAL_LOOKAHEAD_DAYS after the end lets it lapse.
    kk = np.arange(ctx.n_contracts)
    c_start = acq_day[:, None] + 365 * kk[None, :]
    if ctx.mode == "contractual":
        c_has = c_start < end_day[:, None]
    else:
        c_has = (kk[None, :] == 0) | (churn_day[:, None] > c_start - 1 + RENEWAL_LOOKAHEAD_DAYS)
    c_has &= c_start <= as_of
    c_w = np.clip((c_start - ctx.d0) // 7, 0, T - 1)
    c_val = s0[:, None] * np.exp(drift[:, None] * kk[None, :] + (1 - gr) * gp[rows1[:, None], c_w])
    c_val *= _ln_noise(z_contract[:, : ctx.n_contracts], 0.1)
    cr, ck = np.nonzero(c_has)
    tables["contracts"] = pa.table(
        {
            "contract_id": pa.nulls(len(cr), pa.string()),  # numbered by the caller
            "customer_id": pc.take(cust_ids, pa.array(cr)),
            "start_date": _dates(c_start[cr, ck]),
            "end_date": _dates(c_start[cr, ck] + 364),
            "annual_value": pa.array(np.round(c_val[cr, ck], 2), pa.float64()),
            "renewal_of": pa.nulls(len(cr), pa.string()),  # filled by the caller
        },
        schema=_schema("contracts"),
    )
    c_val_all = c_val
    del gp, c_w

    keep = (t_day < end_day[tc]) & (t_day <= as_of)
    t_p = np.asarray(TOUCH_RESPONDED_P)[t_ch[keep]]
    u_tr = u_tr[keep]
    tables["touches"] = pa.table(
        {
            "touch_id": pa.nulls(int(keep.sum()), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(tc[keep])),
            "touched_at": _stamps(t_sec[keep]),
            "channel": _take(TOUCH_CHANNELS, t_ch[keep]),
            "responded": pa.array(u_tr < t_p, mask=(u_tr > t_p) & (u_tr < t_p + 0.03)),
        },
        schema=_schema("touches"),
    )
    del tc, t_day, t_sec, t_ch, u_tr, t_p

    end_s = (as_of + 1) * DAY_S
    keep = (k_day < end_day[kc]) & (k_day <= as_of)
    kc, k_open, k_resp, k_resolve = kc[keep], k_open[keep], k_resp[keep], k_resolve[keep]
    resp_null = never[keep] | (k_resp >= end_s)
    tables["tickets"] = pa.table(
        {
            "ticket_id": pa.nulls(len(kc), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(kc)),
            "opened_at": _stamps(k_open),
            "first_response_at": _stamps(k_resp, resp_null),
            "resolved_at": _stamps(k_resolve, resp_null | (k_resolve >= end_s)),
            "priority": _take(PRIORITIES, k_prio[keep]),
            "category": _take(TICKET_CATEGORIES, k_cat[keep]),
        },
        schema=_schema("tickets"),
    )

    sr, sk_ = np.nonzero(s_resp & (s_day < end_day[:, None]) & (s_day <= as_of))
    tables["surveys"] = pa.table(
        {
            "survey_id": pa.nulls(len(sr), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(sr)),
            "surveyed_at": _dates(s_day[sr, sk_]),
            "nps": pa.array(nps[sr, sk_], pa.int64()),
            "csat": pa.array(csat[sr, sk_], pa.int64(), mask=csat_null[sr, sk_]),
            "dim_need_fit": pa.array(np.round(dim_need[sr, sk_], 1)),
            "dim_resolution": pa.array(np.round(dim_res[sr, sk_], 1)),
            "dim_intimacy": pa.array(np.round(dim_int[sr, sk_], 1)),
        },
        schema=_schema("surveys"),
    )

    ar_, aw_ = np.nonzero(valid[:, :TH] & (monday[None, :TH] < end_day[:, None]))
    tables["activity"] = pa.table(
        {
            "customer_id": pc.take(cust_ids, pa.array(ar_)),
            "period_start": _dates(monday[aw_]),
            "logins": pa.array(logins[ar_, aw_].astype(np.int64)),
        },
        schema=_schema("activity"),
    )
    del logins, ar_, aw_, valid

    # churn events with a reason drawn in proportion to what drove the hazard at churn
    rec_p = P.churn_recorded_non_contractual if ctx.mode == "non_contractual" else 1.0
    recorded = churned & (u_churn[:, 1] < rec_p)
    w_reason = np.stack(
        [
            np.maximum(contrib["median_first_response_days"], 0),  # service
            np.full(n, 0.12),  # price
            np.maximum(contrib["spend_change_qoq"], 0) + 0.25,  # competitor
            contrib["no_touch_after_first_repeat"],  # no_contact
            contrib["weeks_without_login"] + contrib["detractor"] + 0.2,  # product_fit
            np.full(n, 0.08),  # relocation
            np.full(n, 0.12),  # other
        ],
        axis=1,
    )
    cw = np.cumsum(w_reason, axis=1)
    reason = np.minimum((u_churn[:, 2:3] * cw[:, -1:] > cw).sum(axis=1), len(CHURN_REASONS) - 1)
    reason = np.where(ps & (u_churn[:, 3] < 0.6), CHURN_REASONS.index("price"), reason)
    reason_null = u_churn[:, 4] < 0.02
    comp_p = np.asarray([0.3, 0.7, 1.0, 0.0, 0.1, 0.0, 0.05])[reason]
    v = (u_churn[:, 4] - 0.02) / 0.98
    comp_named = (v >= 0) & (v < comp_p)
    comp = _cat(np.clip(v / np.maximum(comp_p, 1e-9), 0, 1), COMPETITOR_P)
    lv = churned[oc] & (o_day >= churn_day[oc] - 365) & (o_day < churn_day[oc])
    lost = np.bincount(oc[lv], weights=o_amt[lv], minlength=n)
    er = np.flatnonzero(recorded)
    tables["churn_events"] = pa.table(
        {
            "customer_id": pc.take(cust_ids, pa.array(er)),
            "churned_at": _dates(churn_day[er]),
            "reason": _take(CHURN_REASONS, reason[er], reason_null[er]),
            "competitor": _take(COMPETITORS, comp[er], ~comp_named[er]),
            "lost_value": pa.array(np.round(lost[er], 2), pa.float64()),
        },
        schema=_schema("churn_events"),
    )

    # ---- statistics for truth.json ---------------------------------------------------
    ys = ctx.year_start_day
    alive_ys = (acq_day <= ys) & (churn_day > ys)
    churn_y = alive_ys & churned
    # top-100 renewal: contracts ending in [ys, as_of) ranked by annual value
    c_end = c_start + 364
    c_next = np.concatenate([c_has[:, 1:], np.zeros((n, 1), bool)], axis=1)
    due = c_has & (c_end >= ys) & (c_end < as_of)
    dr, dk = np.nonzero(due)
    d_val = np.round(c_val_all[dr, dk], 2)
    top = np.lexsort((gi[dr], -d_val))[:100]
    top_tuple = (d_val[top], gi[dr[top]], c_next[dr[top], dk[top]])
    m_last = o_day > ys
    n_orders_12 = np.bincount(oc[m_last], minlength=n).astype(np.int64)
    km = (~resp_null) & (k_open > ys * DAY_S)
    tk_sum = np.bincount(kc[km], weights=(k_resp[km] - k_open[km]) / DAY_S, minlength=n)
    tk_n = np.bincount(kc[km], minlength=n).astype(np.int64)
    is_core = tier <= 1

    def cnt2(mask: np.ndarray) -> tuple[int, int]:
        return int((mask & alive_ys).sum()), int((mask & churn_y).sum())

    return {
        "tables": tables,
        "contract_k": ck,
        "moments": moments,
        "churn_counts": {
            "overall": cnt2(np.ones(n, bool)),
            "core": cnt2(is_core),
            "price_sensitive": cnt2(ps),
            "not_price_sensitive": cnt2(~ps),
            **{f"tier_{t}": cnt2(tier == i) for i, t in enumerate(TIERS)},
        },
        "churned_total": int(churned.sum()),
        "recorded_total": int(recorded.sum()),
        "churn_y_no_touch": int((churn_y & nt_at_churn).sum()),
        "churn_y_recorded": int((churn_y & recorded).sum()),
        "top": top_tuple,
        "per_customer": (n_orders_12, tk_sum, tk_n),
        "planted": gi[planted],
        "misclassified": gi[planted & ~churned],
        "price_sensitive": gi[ps],
        "tier_counts": np.bincount(tier, minlength=4),
        "alive_now": int((~churned).sum()),
    }


def _eligible_share(ctx: _Ctx) -> float:
    """Approximate share of customers that can carry a planted growth: acquired early
    enough for a first year, a ramp and a trailing year before as_of, and small enough."""
    P = ctx.params
    g = math.log(1 + P.acq_growth) / 52.0
    t_max = ctx.n_weeks - 1.0
    t_cut = max(ctx.n_weeks - 1 - 56 - 52 - 17 - 17, 0)  # mean ramp start and length
    in_time = math.expm1(g * t_cut) / math.expm1(g * t_max)
    z = (math.log(P.plant_max_spend) - math.log(P.spend_median)) / P.spend_sigma
    return in_time * 0.5 * (1 + math.erf(z / math.sqrt(2)))


# ----------------------------------------------------------------------------- writers


class _Writer:
    def __init__(self, out: Path, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.files: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            path = self.out / f"{name}.{self.fmt}"
            if self.fmt == "csv":
                fh = open(path, "wb")  # noqa: SIM115 - closed in close()
                fh.write((",".join(table.schema.names) + "\n").encode("utf-8"))
                self.files[name] = fh
                self.writers[name] = pacsv.CSVWriter(
                    fh,
                    table.schema,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
                )
            else:
                self.writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
        if table.num_rows:
            self.writers[name].write_table(table)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        for fh in self.files.values():
            fh.close()


# ----------------------------------------------------------------------------- API


def generate(
    out_dir: str | Path,
    customers: int = 5000,
    seed: int = 42,
    business_model: Literal["contractual", "non_contractual"] = "non_contractual",
    as_of: str | date = "2026-10-31",
    years: int = 4,
    fmt: Literal["csv", "parquet"] = "csv",
    interventions: dict | None = None,
    chunk_customers: int = 50_000,
) -> dict:
    """Write a synthetic customer base with planted truth; return the truth dict.

    Parameters
    ----------
    out_dir : folder to write ``<table>.csv`` (or ``.parquet``) and ``truth.json`` into.
    customers : number of customers.
    seed : master seed; same seed and arguments give byte-identical files.
    business_model : ``non_contractual`` (customers go dormant; ~70% of churners have a
        recorded churn event) or ``contractual`` (churn = a contract not renewed at its end).
    as_of : the review date; nothing after it appears except ``end_date`` of running
        contracts.
    years : history length before ``as_of`` (at least 3).
    fmt : ``csv`` (UTF-8, ISO dates, ``true``/``false``, empty = null) or ``parquet``.
    interventions : counterfactual policy, e.g. ``{"first_response_cap_days": 3.5,
        "tiers": ["platinum", "gold"]}``, ``{"touch_after_first_repeat": True}``,
        ``{"region": "华东"}``; everything else is drawn identically (common random numbers).
    chunk_customers : customers simulated and appended per chunk (bounds memory); rounded
        up to a multiple of the internal block size. Does not change the output.
    """
    if isinstance(as_of, str):
        as_of = date.fromisoformat(as_of)
    elif isinstance(as_of, datetime):
        as_of = as_of.date()
    if business_model not in ("contractual", "non_contractual"):
        raise ValueError(
            f"business_model must be 'contractual' or 'non_contractual', got {business_model!r}"
        )
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    customers = int(customers)
    if customers < 1:
        raise ValueError("customers must be >= 1")
    if int(seed) < 0:
        raise ValueError("seed must be a non-negative integer")
    if int(years) < 3:
        raise ValueError("years must be >= 3 (the review needs three years of history)")
    iv = _check_interventions(interventions)
    params = replace(_DEFAULT_PARAMS, **_MODE_OVERRIDES.get(business_model, {}))

    try:
        start = as_of.replace(year=as_of.year - int(years))
    except ValueError:  # 29 February
        start = as_of.replace(year=as_of.year - int(years), day=28)
    d0 = _day(start) + (7 - start.weekday()) % 7  # first Monday on or after the start
    as_of_day = _day(as_of)
    n_weeks = (as_of_day - d0) // 7 + 1
    ctx = _Ctx(
        seed=int(seed),
        n_customers=customers,
        mode=business_model,
        as_of=as_of,
        as_of_day=as_of_day,
        d0=d0,
        n_weeks=n_weeks,
        n_sim=n_weeks + LOOKAHEAD_WEEKS,
        interventions=iv,
        params=params,
        n_am=max(1, round(customers / 60)),
        cust_width=max(6, len(str(customers))),
        n_slots=(n_weeks + LOOKAHEAD_WEEKS) // 26 + 1,
        n_contracts=int(years) + 2,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunk = max(BLOCK, -(-int(chunk_customers) // BLOCK) * BLOCK)
    writer = _Writer(out, fmt)
    counters = dict.fromkeys(("orders", "contracts", "touches", "tickets", "surveys"), 0)
    prefixes = {"orders": "O", "contracts": "K", "touches": "T", "tickets": "S", "surveys": "V"}
    widths = {"orders": 8, "contracts": 7, "touches": 8, "tickets": 8, "surveys": 8}
    key_col = {"orders": "order_id", "contracts": "contract_id", "touches": "touch_id",
               "tickets": "ticket_id", "surveys": "survey_id"}  # fmt: skip
    rows = dict.fromkeys(SIMULATED, 0)
    acc: dict[str, Any] = {
        "moments": {},
        "churn_counts": {},
        "top": [],
        "per_customer": [],
        "planted": [],
        "misclassified": [],
        "price_sensitive": [],
        "tier_counts": np.zeros(4, np.int64),
        "churned_total": 0,
        "recorded_total": 0,
        "churn_y_no_touch": 0,
        "churn_y_recorded": 0,
        "alive_now": 0,
    }
    try:
        for first in range(0, customers, chunk):
            n = min(chunk, customers - first)
            pending: dict[str, list[pa.Table]] = {name: [] for name in SIMULATED}
            # simulate in units of at most SIM_UNIT customers (smaller arrays are faster);
            # blocks are independent, so this does not change the output
            for sub in range(first, first + n, SIM_UNIT):
                res = _simulate_chunk(ctx, sub, min(SIM_UNIT, first + n - sub))
                tabs = res["tables"]
                for name in counters:
                    t = tabs[name]
                    ids = _ids(prefixes[name], counters[name] + 1, t.num_rows, widths[name])
                    t = t.set_column(t.schema.get_field_index(key_col[name]), key_col[name], ids)
                    if name == "contracts":
                        prev = pc.take(ids, pa.array(np.maximum(np.arange(t.num_rows) - 1, 0)))
                        first_k = pa.array(res["contract_k"] == 0)
                        renewal = pc.if_else(first_k, pa.nulls(t.num_rows, pa.string()), prev)
                        t = t.set_column(
                            t.schema.get_field_index("renewal_of"), "renewal_of", renewal
                        )
                    counters[name] += t.num_rows
                    tabs[name] = t
                for name in SIMULATED:
                    pending[name].append(tabs[name])
                    rows[name] += tabs[name].num_rows
                _accumulate(acc, res)
                del res, tabs
            for name in SIMULATED:
                writer.write(name, pa.concat_tables(pending[name]))
            del pending
    finally:
        writer.close()

    truth = _truth(ctx, acc, rows, fmt)
    # after every simulated table is written, from its own random stream: the pilot
    # changes no byte of the other tables
    truth["pilots"], rows["pilots"] = _plant_pilot(out, fmt, ctx)
    with open(out / "truth.json", "w", encoding="utf-8") as fh:
        json.dump(truth, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return truth


#: The planted pilot (see :func:`_plant_pilot`): a roadmap scenario's name, the share of
#: live customers enrolled, and P(treatment arm) for enrolled customers who stay / leave.
PILOT_NAME = "amber_monthly_touch"
PILOT_SHARE = 0.6
PILOT_P_TREAT_STAY = 0.5
PILOT_P_TREAT_CHURN = 0.35
PILOT_SEED_OFFSET = 7_919
#: The churn definition the planted effect is stated in (the demo params' defaults).
PILOT_DORMANCY_DAYS = 365
PILOT_GRACE_DAYS = 60


def _read_back(out: Path, fmt: str, name: str) -> pd.DataFrame:
    path = out / f"{name}.{fmt}"
    if fmt == "csv":
        return pacsv.read_csv(path).to_pandas()
    return pq.read_table(path).to_pandas()


def _churned_by(
    cust: pd.DataFrame,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    contracts: pd.DataFrame,
    cut: pd.Timestamp,
    mode: str,
) -> pd.Series:
    """Churned on or before ``cut`` by the contract's rule (recorded events win unless an
    order follows them; else dormancy, or for a contractual business the last contract's
    end plus grace), from data on or before ``cut``; index ``customer_id``."""
    o = orders[orders.order_date <= cut].groupby("customer_id").order_date.max()
    last = o.reindex(cust.customer_id).fillna(cust.set_index("customer_id").acquired_at)
    derived = last + pd.Timedelta(days=PILOT_DORMANCY_DAYS) <= cut
    if mode == "contractual":
        c = contracts[contracts.start_date <= cut].groupby("customer_id").end_date.max()
        c = c.reindex(cust.customer_id)
        ended = c + pd.Timedelta(days=PILOT_GRACE_DAYS) <= cut
        derived = ended.where(c.notna(), derived)
    ev = events[events.churned_at <= cut].groupby("customer_id").churned_at.max()
    ev = ev.reindex(cust.customer_id)
    recorded = ev.notna() & ~(o.reindex(cust.customer_id) > ev)
    return (recorded | derived).astype(bool)


def _plant_pilot(out: Path, fmt: str, ctx: _Ctx) -> tuple[dict[str, Any], int]:
    """Write ``pilots`` with a planted effect; return its truth and row count.

    A pilot starts a year before ``as_of`` among the customers live then. Its arms are drawn
    from a stream of their own (``seed + PILOT_SEED_OFFSET``), after the world is written,
    so no other table changes. The world simulates no treatment, so the effect is planted in
    the assignment: an enrolled customer who goes on to churn by ``as_of`` joins the
    treatment arm with probability ``PILOT_P_TREAT_CHURN``, one who stays with
    ``PILOT_P_TREAT_STAY``. The treatment arm's churn rate is then lower by a known amount:
    ``expected_effect`` is the expected difference (treatment - control) given the enrolled
    customers' churn rate; ``realised_*`` are this draw's rates.
    """
    start = pd.Timestamp(ctx.as_of) - pd.DateOffset(years=1)
    as_of = pd.Timestamp(ctx.as_of)
    cust = _read_back(out, fmt, "customers")[["customer_id", "acquired_at"]]
    cust["acquired_at"] = pd.to_datetime(cust.acquired_at)
    orders = _read_back(out, fmt, "orders")[["customer_id", "order_date"]]
    orders["order_date"] = pd.to_datetime(orders.order_date)
    events = _read_back(out, fmt, "churn_events")[["customer_id", "churned_at"]]
    events["churned_at"] = pd.to_datetime(events.churned_at)
    contracts = _read_back(out, fmt, "contracts")[["customer_id", "start_date", "end_date"]]
    for col in ("start_date", "end_date"):
        contracts[col] = pd.to_datetime(contracts[col])
    before = _churned_by(cust, orders, events, contracts, start, ctx.mode)
    after = _churned_by(cust, orders, events, contracts, as_of, ctx.mode)
    live = (cust.set_index("customer_id").acquired_at <= start) & ~before
    ids = live.index[live.to_numpy()]
    rng = np.random.default_rng(int(ctx.seed) + PILOT_SEED_OFFSET)
    enrolled = ids[rng.random(len(ids)) < PILOT_SHARE]
    y = after.reindex(enrolled).to_numpy(dtype=bool)
    p_treat = np.where(y, PILOT_P_TREAT_CHURN, PILOT_P_TREAT_STAY)
    treat = rng.random(len(enrolled)) < p_treat
    table = pd.DataFrame(
        {
            "pilot": PILOT_NAME,
            "customer_id": enrolled.astype(str),
            "arm": np.where(treat, "treatment", "control"),
            "started_at": [start.date()] * len(enrolled),
        }
    )
    w = _Writer(out, fmt)
    try:
        w.write(
            "pilots", pa.Table.from_pandas(table, schema=_schema("pilots"), preserve_index=False)
        )
    finally:
        w.close()
    r = float(y.mean()) if len(y) else 0.0
    a, b = PILOT_P_TREAT_CHURN, PILOT_P_TREAT_STAY
    exp_t = r * a / (r * a + (1 - r) * b) if r else 0.0
    exp_c = r * (1 - a) / (r * (1 - a) + (1 - r) * (1 - b)) if r else 0.0

    def rate(mask: np.ndarray) -> float | None:
        return round(float(y[mask].mean()), 6) if mask.any() else None

    truth = {
        "pilot": PILOT_NAME,
        "started_at": str(start.date()),
        "outcome": "churned in (started_at, as_of] among customers live at started_at",
        "churn_definition": {
            "dormancy_days": PILOT_DORMANCY_DAYS,
            "grace_days": PILOT_GRACE_DAYS,
        },
        "treated": int(treat.sum()),
        "control": int((~treat).sum()),
        "enrolled_churn_rate": round(r, 6),
        "expected_treated_rate": round(exp_t, 6),
        "expected_control_rate": round(exp_c, 6),
        "expected_effect": round(exp_t - exp_c, 6),
        "realised_treated_rate": rate(treat),
        "realised_control_rate": rate(~treat),
        "how": (
            "planted in the assignment: P(treatment) = "
            f"{PILOT_P_TREAT_CHURN} for enrolled customers who churn by as_of, "
            f"{PILOT_P_TREAT_STAY} for those who stay"
        ),
    }
    return truth, len(table)


def _accumulate(acc: dict[str, Any], res: dict[str, Any]) -> None:
    for f, (c, s, ss) in res["moments"].items():
        c0, s0, ss0 = acc["moments"].get(f, (0, 0.0, 0.0))
        acc["moments"][f] = (c0 + c, s0 + s, ss0 + ss)
    for g, (alive, ch) in res["churn_counts"].items():
        a0, c0 = acc["churn_counts"].get(g, (0, 0))
        acc["churn_counts"][g] = (a0 + alive, c0 + ch)
    for key in ("top", "per_customer", "planted", "misclassified", "price_sensitive"):
        acc[key].append(res[key])
    acc["tier_counts"] += res["tier_counts"]
    for key in (
        "churned_total",
        "recorded_total",
        "churn_y_no_touch",
        "churn_y_recorded",
        "alive_now",
    ):
        acc[key] += res[key]


def _truth(ctx: _Ctx, acc: dict[str, Any], rows: dict[str, int], fmt: str) -> dict:
    P = ctx.params
    width = ctx.cust_width

    def ids(parts: list[np.ndarray]) -> list[str]:
        arr = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return [f"C{i + 1:0{width}d}" for i in arr.tolist()]

    effects = {}
    for name in FEATURES:
        c, s, ss = acc["moments"][name]
        mean = s / c if c else 0.0
        std = math.sqrt(max(ss / c - mean * mean, 0.0)) if c else 0.0
        e = EFFECTS[name]
        beta = P.effects[name]
        effects[name] = {
            "log_hazard_ratio": beta,
            "unit": e.unit,
            "std": round(std, 6),
            "mean": round(mean, 6),
            "standardized": round(beta * std, 6),
            "description": e.description,
            "observable": e.observable,
        }
    ranking = sorted(effects, key=lambda k: -abs(effects[k]["standardized"]))

    def rate(group: str) -> float | None:
        alive, ch = acc["churn_counts"][group]
        return round(ch / alive, 6) if alive else None

    vals = np.concatenate([t[0] for t in acc["top"]])
    gidx = np.concatenate([t[1] for t in acc["top"]])
    ren = np.concatenate([t[2] for t in acc["top"]])
    top = np.lexsort((gidx, -vals))[:100]
    top100 = float(ren[top].mean()) if len(top) else None
    n12 = np.concatenate([p[0] for p in acc["per_customer"]])
    tks = np.concatenate([p[1] for p in acc["per_customer"]])
    tkn = np.concatenate([p[2] for p in acc["per_customer"]])
    buyers = n12 > 0
    busy_days = None
    if buyers.any():
        thr = float(np.quantile(n12[buyers], 0.8))
        busy = buyers & (n12 >= thr)
        busy_days = float(tks[busy].sum() / max(tkn[busy].sum(), 1))
    churn_y = acc["churn_counts"]["overall"][1]
    calibration = {
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
        "calibration": calibration,
        "interventions": ctx.interventions,
        "block_size": BLOCK,
    }
