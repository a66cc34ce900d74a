"""Settings of the demo world: vocabularies, planted effects, parameters and the run context."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from fupan.io.schema import TABLES

#: The tables the world simulation writes; ``pilots`` is planted afterwards.
SIMULATED = tuple(t for t in TABLES if t != "pilots")

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
