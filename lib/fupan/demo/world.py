"""The world of one chunk of customers, simulated week by week as a list of named steps.

:func:`simulate_world` reads top to bottom as the story the package docstring tells:
draws, acquisition and attributes, engagement, orders, logins, touches, tickets, surveys,
then the churn hazard built from the features those leave behind. Every random variate is
taken from the chunk's :class:`~fupan.demo.arrays._Streams` in a fixed order (static draws
first, then the event draws of orders, logins, touches and tickets, in that order); moving
a step changes the data, so the order of the steps below is part of the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import lfilter

from fupan.demo.arrays import _cat, _expand, _group_index, _ln_noise, _Streams
from fupan.demo.config import (
    _NEVER,
    ACQ_CHANNEL_P,
    BLOCK,
    DAY_S,
    GAP_CAP_WEEKS,
    INDUSTRY_P,
    ORDER_CATEGORY_P,
    PRIORITY_DELAY,
    PRIORITY_P,
    REGION_P,
    TICKET_CATEGORY_P,
    TIER_THRESHOLDS,
    TIERS,
    TOUCH_CHANNEL_P,
    TOUCH_CHANNELS,
    TOUCH_RATE,
    WEEK_S,
    _Ctx,
    _eligible_share,
    tier_of_spend,
)


class _Rows:
    """Parallel event arrays (one row per event); ``take`` keeps a subset or an order."""

    def take(self, idx: np.ndarray) -> Any:
        return type(self)(**{k: v[idx] for k, v in vars(self).items()})


@dataclass
class _Frame:
    """Where one chunk sits: its customers, its weeks and its random streams."""

    ctx: _Ctx
    first: int  # global index of the chunk's first customer
    n: int
    nb: int  # random blocks
    rs: _Streams
    gi: np.ndarray  # global customer index
    rows1: np.ndarray  # 0 .. n-1
    wk: np.ndarray  # simulated weeks 0 .. T-1
    monday: np.ndarray  # day number of each week's Monday

    @property
    def T(self) -> int:  # noqa: N802 - simulated weeks: history plus a renewal look-ahead
        return self.ctx.n_sim

    @property
    def TH(self) -> int:  # noqa: N802 - weeks of history (the last one holds as_of)
        return self.ctx.n_weeks


@dataclass
class _Draws:
    """Per-customer uniform (``u_``) and normal (``z_``) draws, in the order they are taken."""

    u_acq: np.ndarray
    z_spend: np.ndarray
    u_ind: np.ndarray
    u_reg: np.ndarray
    u_chan: np.ndarray
    u_am: np.ndarray
    u_name: np.ndarray
    z_rate: np.ndarray
    z_serv: np.ndarray
    z_login: np.ndarray
    u_ps: np.ndarray
    u_plant: np.ndarray
    z_drift: np.ndarray
    u_follow: np.ndarray
    u_survey: np.ndarray
    z_sat: np.ndarray
    z_rel: np.ndarray
    u_churn: np.ndarray
    z_contract: np.ndarray
    u_srv: np.ndarray
    z_srv: np.ndarray
    eps: np.ndarray  # (n, T) engagement innovations
    u_haz: np.ndarray  # (n, T) churn decisions


@dataclass
class _Customers:
    """Who the customers are: acquisition, attributes fixed at acquisition, planted growth."""

    acq_day: np.ndarray
    a: np.ndarray  # acquisition week
    valid: np.ndarray  # (n, T): regular processes run (weeks after acquisition)
    s0: np.ndarray  # expected annual spend at acquisition
    tier: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    am: np.ndarray
    ps: np.ndarray  # hidden price-sensitive flag
    r0: np.ndarray  # orders a year
    login_rate: np.ndarray
    serv_q: np.ndarray
    drift: np.ndarray
    planted: np.ndarray
    gp: np.ndarray  # (n, T) planted log growth


@dataclass
class _Orders(_Rows):
    c: np.ndarray  # customer row
    w: np.ndarray  # week
    day: np.ndarray
    amt: np.ndarray
    cat: np.ndarray


@dataclass
class _Touches(_Rows):
    c: np.ndarray
    day: np.ndarray
    sec: np.ndarray
    ch: np.ndarray
    u_tr: np.ndarray  # responded draw


@dataclass
class _Tickets(_Rows):
    c: np.ndarray
    day: np.ndarray
    open: np.ndarray
    resp: np.ndarray
    resolve: np.ndarray
    prio: np.ndarray
    cat: np.ndarray
    never: np.ndarray  # never answered


@dataclass
class _Surveys:
    """Survey slots, (n, n_slots) each."""

    week: np.ndarray
    resp: np.ndarray  # answered
    day: np.ndarray
    nps: np.ndarray
    csat: np.ndarray
    csat_null: np.ndarray
    dim_need: np.ndarray
    dim_res: np.ndarray
    dim_int: np.ndarray


@dataclass
class _Churn:
    churn_day: np.ndarray  # _NEVER when the customer never churns
    end_day: np.ndarray  # first day without activity
    decision_w: np.ndarray  # week whose features decided the churn
    churned: np.ndarray  # churned within the history (what the data shows)
    moments: dict[str, tuple[int, float, float]]  # of each feature over customer-weeks at risk
    contrib: dict[str, np.ndarray]  # log hazard contribution of each feature at the decision
    nt_at_churn: np.ndarray


@dataclass
class _World:
    """Everything one chunk's simulation leaves for its tables and statistics."""

    f: _Frame
    d: _Draws
    cust: _Customers
    orders: _Orders
    logins: np.ndarray
    touches: _Touches
    tickets: _Tickets
    surveys: _Surveys
    churn: _Churn


def simulate_world(ctx: _Ctx, first: int, n: int) -> _World:
    """Simulate customers ``first .. first + n - 1`` over the history and the look-ahead."""
    f = _frame(ctx, first, n)
    d = _draw_static(f)
    cust = _customers(f, d)
    eng, rate_w = _engagement(f, d, cust)
    orders = _orders(f, d, cust, rate_w)
    fr_day = _first_repeat_day(f, cust, orders)
    spend_change = _spend_change_qoq(f, orders)
    logins, gap = _logins(f, cust, eng)
    touches, no_touch = _touches(f, d, cust, fr_day)
    tickets = _tickets(f, d, cust, rate_w)
    del rate_w
    resp_f = _median_first_response(f, tickets)
    surveys, detractor = _surveys(f, d, cust, eng, resp_f)
    del eng
    features = {
        "median_first_response_days": resp_f,
        "no_touch_after_first_repeat": no_touch,
        "spend_change_qoq": spend_change,
        "weeks_without_login": gap,
        "detractor": detractor,
    }
    churn = _churn(f, d, cust, features)
    return _World(f, d, cust, orders, logins, touches, tickets, surveys, churn)


def _frame(ctx: _Ctx, first: int, n: int) -> _Frame:
    nb = -(-n // BLOCK)
    sizes = [min(BLOCK, n - k * BLOCK) for k in range(nb)]
    wk = np.arange(ctx.n_sim, dtype=np.int64)
    return _Frame(
        ctx=ctx,
        first=first,
        n=n,
        nb=nb,
        rs=_Streams(ctx.seed, first // BLOCK, sizes),
        gi=first + np.arange(n, dtype=np.int64),
        rows1=np.arange(n),
        wk=wk,
        monday=ctx.monday(wk),
    )


def _draw_static(f: _Frame) -> _Draws:
    # keyword arguments are evaluated left to right: this is the order of the draws
    rs, S, T = f.rs, f.ctx.n_slots, f.T
    return _Draws(
        u_acq=rs.cust("u"),
        z_spend=rs.cust("z"),
        u_ind=rs.cust("u"),
        u_reg=rs.cust("u"),
        u_chan=rs.cust("u"),
        u_am=rs.cust("u"),
        u_name=rs.cust("u", 3),
        z_rate=rs.cust("z"),
        z_serv=rs.cust("z"),
        z_login=rs.cust("z"),
        u_ps=rs.cust("u"),
        u_plant=rs.cust("u", 4),
        z_drift=rs.cust("z"),
        u_follow=rs.cust("u", 5),
        u_survey=rs.cust("u"),
        z_sat=rs.cust("z"),
        z_rel=rs.cust("z"),
        u_churn=rs.cust("u", 6),
        z_contract=rs.cust("z", f.ctx.n_contracts + 1),
        u_srv=rs.cust("u", S * 3),
        z_srv=rs.cust("z", S * 5),
        eps=rs.cust("z", T, np.float32),
        u_haz=rs.cust("u", T, np.float32),
    )


def _customers(f: _Frame, d: _Draws) -> _Customers:
    """Acquisition (stratified over a steadily growing intake), attributes, planted growth."""
    ctx, P, TH = f.ctx, f.ctx.params, f.TH
    g = math.log(1 + P.acq_growth) / 52.0
    t_max = TH - 1.0
    t_acq = np.log1p((f.gi + d.u_acq) / ctx.n_customers * math.expm1(g * t_max)) / g
    acq_day = ctx.d0 + np.minimum(np.floor(t_acq * 7).astype(np.int64), 7 * (TH - 1) - 1)
    a = (acq_day - ctx.d0) // 7
    valid = f.wk[None, :] > a[:, None]  # regular processes start the week after acquisition

    s0 = np.exp(math.log(P.spend_median) + P.spend_sigma * d.z_spend)
    tier = tier_of_spend(s0)  # assigned once, never revised
    login_rate = np.exp(math.log(P.login_median) + P.login_sigma * d.z_login)
    login_rate = np.clip(login_rate * (s0 / P.spend_median) ** P.login_size_power, 0.15, 15.0)
    planted, gp = _planted_growth(f, d, a, s0, tier)
    return _Customers(
        acq_day=acq_day,
        a=a,
        valid=valid,
        s0=s0,
        tier=tier,
        industry=_cat(d.u_ind, INDUSTRY_P),
        region=_cat(d.u_reg, REGION_P),
        channel=_cat(d.u_chan, ACQ_CHANNEL_P),
        am=np.floor(d.u_am * ctx.n_am).astype(np.int64) + 1,
        ps=d.u_ps < np.asarray(P.price_sensitive_by_tier)[tier],
        r0=(P.rate_base + P.rate_slope * np.log2(1.0 + s0 / 10_000.0))
        * _ln_noise(d.z_rate, P.rate_sigma),
        login_rate=login_rate,
        serv_q=_ln_noise(d.z_serv, P.serv_sigma),
        drift=P.drift_sd * d.z_drift,
        planted=planted,
        gp=gp,
    )


def _planted_growth(
    f: _Frame, d: _Draws, a: np.ndarray, s0: np.ndarray, tier: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Planted growth (x8-14, more if needed to clear the next tier) a year or more in:
    who is planted, and the (n, T) log growth on a smooth ramp."""
    P, TH, u_plant = f.ctx.params, f.TH, d.u_plant
    ramp_start = a + 52 + np.floor(4 + u_plant[:, 2] * 26).astype(np.int64)
    ramp_len = np.floor(8 + u_plant[:, 3] * 18).astype(np.int64)
    next_floor = np.asarray([TIER_THRESHOLDS[0] * 4, *TIER_THRESHOLDS])[tier]
    growth = np.maximum(P.growth_min + P.growth_span * u_plant[:, 1], 1.6 * next_floor / s0)
    eligible = (s0 < P.plant_max_spend) & (ramp_start + ramp_len <= TH - 1 - 56)
    p_plant = min(1.0, P.plant_share / max(_eligible_share(f.ctx), 1e-9))
    planted = eligible & (u_plant[:, 0] < p_plant)
    gp = np.zeros((f.n, f.T), dtype=np.float32)
    pl = np.flatnonzero(planted)
    prog = np.clip(
        (f.wk[None, :] - ramp_start[pl, None]) / np.maximum(ramp_len[pl], 1)[:, None], 0.0, 1.0
    )
    gp[pl] = np.log(growth[pl])[:, None] * (prog * prog * (3 - 2 * prog))
    return planted, gp


def _engagement(f: _Frame, d: _Draws, cust: _Customers) -> tuple[np.ndarray, np.ndarray]:
    """Latent engagement, AR(1) in logs and stationary from the start, and the expected
    orders per week it drives."""
    P = f.ctx.params
    x = d.eps * np.float32(P.eng_sd * math.sqrt(1 - P.eng_phi**2))
    x[:, 0] = d.eps[:, 0] * np.float32(P.eng_sd)
    eng = lfilter(np.ones(1, np.float32), np.asarray([1.0, -P.eng_phi], np.float32), x, axis=1)
    rate_w = cust.r0[:, None] / 52.0 * np.exp(eng + P.growth_rate_share * cust.gp)
    return eng, rate_w


def _orders(f: _Frame, d: _Draws, cust: _Customers, rate_w: np.ndarray) -> _Orders:
    """Potential orders (as if the customer never churned) plus the acquisition order,
    sorted by customer and day."""
    P, rs, gr = f.ctx.params, f.rs, f.ctx.params.growth_rate_share
    a, gp, s0 = cust.a, cust.gp, cust.s0
    oc, ow = _expand(rs.poisson_cells(rate_w, cust.valid))
    cnt = np.bincount(oc // BLOCK, minlength=f.nb)
    u_od = rs.events(cnt, "u")
    z_oa = rs.events(cnt, "z")
    u_oc = rs.events(cnt, "u")
    u_or = rs.events(cnt, "u")
    o_day = f.monday[ow] + np.floor(u_od * 7).astype(np.int64)
    unit = s0 / cust.r0
    amt_level = np.exp(cust.drift[oc] * (ow - a[oc]) / 52.0 + (1 - gr) * gp[oc, ow])
    o_amt = unit[oc] * amt_level * _ln_noise(z_oa, P.amount_sigma)
    o_amt = np.where(u_or < P.refund_share, -(0.2 + 0.8 * (u_or / P.refund_share)) * o_amt, o_amt)
    # the acquisition order (first deal) on acquired_at
    orders = _Orders(
        c=np.concatenate([f.rows1, oc]),
        w=np.concatenate([a, ow]),
        day=np.concatenate([cust.acq_day, o_day]),
        amt=np.round(np.concatenate([unit * _ln_noise(d.z_contract[:, -1], 0.3), o_amt]), 2),
        cat=np.concatenate([_cat(d.u_churn[:, 5], ORDER_CATEGORY_P), _cat(u_oc, ORDER_CATEGORY_P)]),
    )
    return orders.take(np.lexsort((np.arange(len(orders.c)), orders.day, orders.c)))


def _first_repeat_day(f: _Frame, cust: _Customers, o: _Orders) -> np.ndarray:
    """Day of the first repeat purchase (the first order with amount > 0 after the
    acquisition order); ``_NEVER`` when there is none."""
    idx_rep = np.flatnonzero((o.w > cust.a[o.c]) & (o.amt > 0))
    first_rep = (
        idx_rep[np.concatenate([[True], o.c[idx_rep][1:] != o.c[idx_rep][:-1]])]
        if len(idx_rep)
        else idx_rep
    )
    fr_day = np.full(f.n, _NEVER, dtype=np.int64)
    fr_day[o.c[first_rep]] = o.day[first_rep]
    return fr_day


def _spend_change_qoq(f: _Frame, o: _Orders) -> np.ndarray:
    """spend_change_qoq at every snapshot: exact 90-day windows from weekly sums plus the
    Monday (/Tuesday) parts of the boundary weeks."""
    n, T = f.n, f.T
    flat = o.c * T + o.w
    dow = o.day - f.monday[o.w]
    cum = np.zeros((n, T + 1))
    np.cumsum(
        np.bincount(flat, weights=o.amt, minlength=n * T).reshape(n, T), axis=1, out=cum[:, 1:]
    )
    c90 = np.zeros((n, T))  # spend before (Monday - 90 days) = Tuesday of week w-13
    c90[:, 13:] = cum[:, : T - 13]
    c90[:, 13:] += np.bincount(
        flat, weights=np.where(dow == 0, o.amt, 0.0), minlength=n * T
    ).reshape(n, T)[:, : T - 13]
    c180 = np.zeros((n, T))  # spend before (Monday - 180 days) = Wednesday of week w-26
    c180[:, 26:] = cum[:, : T - 26]
    c180[:, 26:] += np.bincount(
        flat, weights=np.where(dow <= 1, o.amt, 0.0), minlength=n * T
    ).reshape(n, T)[:, : T - 26]
    last90 = cum[:, :T] - c90
    prev90 = c90 - c180
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev90 > 0.005, np.clip((last90 - prev90) / prev90, -1.0, 1.0), 0.0).astype(
            np.float32
        )


def _logins(f: _Frame, cust: _Customers, eng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weekly logins and weeks_without_login at every snapshot."""
    wk, valid, a = f.wk, cust.valid, cust.a
    logins = f.rs.poisson_cells(cust.login_rate[:, None] * np.exp(eng), valid)
    last_login = np.where((logins > 0) & valid, wk[None, :], a[:, None])
    np.maximum.accumulate(last_login, axis=1, out=last_login)
    gap = np.zeros((f.n, f.T), dtype=np.float32)
    gap[:, 1:] = wk[None, :-1] - last_login[:, :-1]
    gap = np.where(valid, np.minimum(gap, GAP_CAP_WEEKS), 0).astype(np.float32)
    return logins, gap


def _touches(
    f: _Frame, d: _Draws, cust: _Customers, fr_day: np.ndarray
) -> tuple[_Touches, np.ndarray]:
    """Potential touches (a cadence by tier plus the follow-up after the first repeat
    purchase) and no_touch_after_first_repeat at every snapshot."""
    rs, tier, n, T = f.rs, cust.tier, f.n, f.T
    t_rate = np.asarray(TOUCH_RATE)[tier]
    tc, tw = _expand(rs.poisson_cells(np.broadcast_to(t_rate[:, None], (n, T)), cust.valid))
    cnt = np.bincount(tc // BLOCK, minlength=f.nb)
    u_td = rs.events(cnt, "u")
    u_ts = rs.events(cnt, "u")
    u_tch = rs.events(cnt, "u")
    u_tr = rs.events(cnt, "u")
    t_day = f.monday[tw] + np.floor(u_td * 7).astype(np.int64)
    cp = np.cumsum(np.asarray(TOUCH_CHANNEL_P), axis=1)
    cadence = _Touches(
        c=tc,
        day=t_day,
        sec=t_day * DAY_S + 8 * 3600 + np.floor(u_ts * 12 * 3600).astype(np.int64),
        ch=np.minimum((u_tch[:, None] > cp[tier[tc]]).sum(axis=1), len(TOUCH_CHANNELS) - 1),
        u_tr=u_tr,
    )
    follow = _follow_ups(f, d, cust, fr_day)
    t = _Touches(**{k: np.concatenate([getattr(cadence, k), v]) for k, v in vars(follow).items()})
    t = t.take(np.lexsort((np.arange(len(t.c)), t.sec, t.c)))
    has_fr = fr_day < _NEVER
    in_win = has_fr[t.c] & (t.day >= fr_day[t.c]) & (t.day <= fr_day[t.c] + 7)
    no_touch = has_fr & ~(np.bincount(t.c[in_win], minlength=n) > 0)
    nt_from = np.where(no_touch, -(-(fr_day + 8 - f.ctx.d0) // 7), T + 1)
    return t, (f.wk[None, :] >= nt_from[:, None]).astype(np.float32)


def _follow_ups(f: _Frame, d: _Draws, cust: _Customers, fr_day: np.ndarray) -> _Touches:
    """The follow-up touch after the first repeat purchase (policy: by tier; the
    ``touch_after_first_repeat`` intervention: everyone, within 1-3 days)."""
    P, tier, u_follow = f.ctx.params, cust.tier, d.u_follow
    has_fr = fr_day < _NEVER
    if f.ctx.interventions.get("touch_after_first_repeat"):
        f_has = has_fr.copy()
        f_off = 1 + np.floor(u_follow[:, 1] * 3).astype(np.int64)
    else:
        f_has = has_fr & (u_follow[:, 0] < np.asarray(P.follow_up_by_tier)[tier])
        f_off = np.minimum(np.floor(-np.log1p(-u_follow[:, 1]) * 3.5).astype(np.int64), 20)
    f_idx = np.flatnonzero(f_has)
    f_day = fr_day[f_idx] + f_off[f_idx]
    return _Touches(
        c=f_idx,
        day=f_day,
        sec=f_day * DAY_S + 9 * 3600 + np.floor(u_follow[f_idx, 2] * 9 * 3600).astype(np.int64),
        ch=np.where(tier[f_idx] == 0, 0, np.where(u_follow[f_idx, 3] < 0.6, 1, 5)),
        u_tr=u_follow[f_idx, 4],
    )


def _tickets(f: _Frame, d: _Draws, cust: _Customers, rate_w: np.ndarray) -> _Tickets:
    """Potential tickets, arising from orders, with their first response and resolution."""
    P, rs = f.ctx.params, f.rs
    kc, kw = _expand(rs.poisson_cells(P.ticket_base + P.ticket_per_order * rate_w, cust.valid))
    cnt = np.bincount(kc // BLOCK, minlength=f.nb)
    u_kd = rs.events(cnt, "u")
    u_ks = rs.events(cnt, "u")
    u_kp = rs.events(cnt, "u")
    u_kc = rs.events(cnt, "u")
    z_kd = rs.events(cnt, "z")
    z_kr = rs.events(cnt, "z")
    u_kn = rs.events(cnt, "u")
    k_day = f.monday[kw] + np.floor(u_kd * 7).astype(np.int64)
    k_open = k_day * DAY_S + 7 * 3600 + np.floor(u_ks * 15 * 3600).astype(np.int64)
    k_prio = _cat(u_kp, PRIORITY_P)
    delay = _response_delay(f, cust, rate_w, kc, kw, k_prio, z_kd)
    k_resp = k_open + np.round(delay * DAY_S).astype(np.int64)
    return _Tickets(
        c=kc,
        day=k_day,
        open=k_open,
        resp=k_resp,
        resolve=k_resp + np.round(np.exp(math.log(1.5) + 0.8 * z_kr) * DAY_S).astype(np.int64),
        prio=k_prio,
        cat=_cat(u_kc, TICKET_CATEGORY_P),
        never=u_kn < P.never_answered,
    )


def _response_delay(
    f: _Frame,
    cust: _Customers,
    rate_w: np.ndarray,
    kc: np.ndarray,
    kw: np.ndarray,
    k_prio: np.ndarray,
    z_kd: np.ndarray,
) -> np.ndarray:
    """First-response time in days: slower the busier the account (its order rate that
    week) and, for the largest accounts, with their size; capped by an intervention."""
    P, iv, gp, gr = f.ctx.params, f.ctx.interventions, cust.gp, f.ctx.params.growth_rate_share
    size_now = cust.s0[kc] * np.exp(P.size_growth_share * (1 - gr) * gp[kc, kw])
    base_rate = rate_w[kc, kw] * np.exp(-gr * gp[kc, kw])  # a planted growth is not load
    load = (base_rate * 52.0 / 10.0) ** P.delay_power
    load *= np.clip(size_now / P.size_knee, 1.0, P.size_cap) ** P.size_kappa
    delay = (
        P.delay_scale
        * load
        * cust.serv_q[kc]
        * np.asarray(PRIORITY_DELAY)[k_prio]
        * _ln_noise(z_kd, P.delay_sigma)
    )
    delay = np.clip(delay, 0.02, 60.0)
    if "first_response_cap_days" in iv:
        capped = np.isin(cust.tier[kc], [TIERS.index(t) for t in iv["tiers"]])
        delay = np.where(capped, np.minimum(delay, iv["first_response_cap_days"]), delay)
    return delay


def _median_first_response(f: _Frame, k: _Tickets) -> np.ndarray:
    """median_first_response_days at every snapshot: over tickets opened in the 180 days
    before it and answered before it (one sort over ticket x snapshot pairs)."""
    n, T, d0 = f.n, f.T, f.ctx.d0
    ans = np.flatnonzero(~k.never)
    w_lo = (k.resp[ans] - d0 * DAY_S) // WEEK_S + 1
    w_hi = np.minimum((k.day[ans] + 180 - d0) // 7, T - 1)
    ln = np.maximum(w_hi - w_lo + 1, 0)
    rep_t = np.repeat(ans, ln)
    w_rep = np.repeat(w_lo - (np.cumsum(ln) - ln), ln) + np.arange(len(rep_t))
    key = (k.c[rep_t] * T + w_rep) << 23
    key += k.resp[rep_t] - k.open[rep_t]
    del rep_t, w_rep
    key.sort()
    cell = key >> 23
    d_sorted = key & ((1 << 23) - 1)
    st, le = _group_index(cell)
    resp_f = np.zeros(n * T, dtype=np.float32)
    resp_f[cell[st]] = (d_sorted[st + (le - 1) // 2] + d_sorted[st + le // 2]) / (2.0 * DAY_S)
    return resp_f.reshape(n, T)


def _surveys(
    f: _Frame, d: _Draws, cust: _Customers, eng: np.ndarray, resp_f: np.ndarray
) -> tuple[_Surveys, np.ndarray]:
    """Surveys about every 26 weeks (~70% answered) and detractor at every snapshot."""
    P, S, T, rows1, z_srv = f.ctx.params, f.ctx.n_slots, f.T, f.rows1, d.z_srv
    phase = np.floor(d.u_survey * 26).astype(np.int64)
    s_week = cust.a[:, None] + 1 + phase[:, None] + 26 * np.arange(S)[None, :]
    s_wc = np.minimum(s_week, T - 1)
    s_resp = (d.u_srv[:, :S] < P.survey_response) & (s_week < T)
    e_std = eng[rows1[:, None], s_wc] / P.eng_sd
    r_at = resp_f[rows1[:, None], s_wc]
    sat = 7.3 + 1.1 * d.z_sat[:, None] + 0.7 * e_std - 0.3 * (r_at - 2.5) + 1.3 * z_srv[:, :S]
    nps = np.clip(np.round(sat), 0, 10).astype(np.int64)
    csat = np.clip(np.round(3.6 + 0.45 * (sat - 7.3) + 0.6 * z_srv[:, S : 2 * S]), 1, 5)
    s = _Surveys(
        week=s_week,
        resp=s_resp,
        day=f.ctx.monday(s_wc) + np.floor(d.u_srv[:, S : 2 * S] * 7).astype(np.int64),
        nps=nps,
        csat=csat.astype(np.int64),
        csat_null=d.u_srv[:, 2 * S :] < 0.05,
        dim_need=np.clip(
            3.5 + 0.45 * e_std + 0.3 * d.z_sat[:, None] + 0.5 * z_srv[:, 2 * S : 3 * S], 1, 5
        ),
        dim_res=np.clip(3.9 - 0.15 * (r_at - 2.5) + 0.5 * z_srv[:, 3 * S : 4 * S], 1, 5),
        # dim_intimacy is a null feature: independent of everything that drives churn
        dim_int=np.clip(3.4 + 0.6 * d.z_rel[:, None] + 0.5 * z_srv[:, 4 * S : 5 * S], 1, 5),
    )
    det = np.zeros((f.n, T), dtype=np.float32)
    for k in range(S):
        after = s_resp[:, k : k + 1] & (f.wk[None, :] > s_week[:, k : k + 1])
        det = np.where(after, (nps[:, k] <= 6)[:, None].astype(np.float32), det)
    return s, det


def _churn(f: _Frame, d: _Draws, cust: _Customers, feats: dict[str, np.ndarray]) -> _Churn:
    """The weekly hazard from the features, the churn it draws, and the feature moments
    over the customer-weeks at risk (for truth['effects'])."""
    P, n = f.ctx.params, f.n
    b = P.effects
    lh = np.full((n, f.T), P.base_log_hazard) + b["price_sensitive"] * cust.ps[:, None]
    for name, arr in feats.items():
        lh += b[name] * arr
    h = np.where(cust.valid, np.exp(lh), 0.0)
    del lh
    if f.ctx.mode == "non_contractual":
        churn_day, end_day, decision_w = _dormancy(f, d, cust, h)
    else:
        churn_day, end_day, decision_w = _non_renewal(f, d, cust, h)
    del h
    at_risk = cust.valid & (f.monday[None, :] < end_day[:, None]) & (f.wk[None, :] < f.TH)
    if f.ctx.mode == "non_contractual":
        at_risk &= f.wk[None, :] <= decision_w[:, None]
    moments = {}
    ar = at_risk.ravel()
    for name, arr in feats.items():
        v = arr.ravel()[ar].astype(np.float64)
        moments[name] = (len(v), float(v.sum()), float((v * v).sum()))
    v = np.repeat(cust.ps, at_risk.sum(axis=1)).astype(np.float64)
    moments["price_sensitive"] = (len(v), float(v.sum()), float((v * v).sum()))
    rows1 = f.rows1
    return _Churn(
        churn_day=churn_day,
        end_day=end_day,
        decision_w=decision_w,
        churned=churn_day <= f.ctx.as_of_day,
        moments=moments,
        contrib={name: b[name] * arr[rows1, decision_w] for name, arr in feats.items()},
        nt_at_churn=feats["no_touch_after_first_repeat"][rows1, decision_w] > 0,
    )


def _dormancy(
    f: _Frame, d: _Draws, cust: _Customers, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-contractual churn: the first week the hazard strikes; no activity from then."""
    T = f.T
    hit = (d.u_haz < -np.expm1(-h)) & cust.valid
    ever = hit.any(axis=1)
    wc = np.where(ever, hit.argmax(axis=1), T - 1)
    del hit
    churn_day = np.where(
        ever, f.monday[wc] + np.floor(d.u_churn[:, 0] * 7).astype(np.int64), _NEVER
    )
    return churn_day, churn_day, wc


def _non_renewal(
    f: _Frame, d: _Draws, cust: _Customers, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contractual churn: a contract not renewed at its end, with the hazard summed over
    the contract year; the contract runs through its end_date."""
    ctx, T, n, rows1, acq_day = f.ctx, f.T, f.n, f.rows1, cust.acq_day
    hc = np.zeros((n, T + 1))
    np.cumsum(h, axis=1, out=hc[:, 1:])
    churn_day = np.full(n, _NEVER, dtype=np.int64)
    decision_w = np.full(n, T - 1, dtype=np.int64)
    for k in range(ctx.n_contracts):
        sk = acq_day + 365 * k
        ek = sk + 364
        due = (ek <= ctx.as_of_day) & (churn_day == _NEVER)
        w0 = np.clip(-(-(sk - ctx.d0) // 7), 0, T)
        w1 = np.clip(-(-(sk + 365 - ctx.d0) // 7), 0, T)
        wd = np.clip((ek - ctx.d0) // 7, 0, T - 1)
        lose = due & (d.u_haz[rows1, wd] < -np.expm1(-(hc[rows1, w1] - hc[rows1, w0])))
        churn_day = np.where(lose, ek, churn_day)
        decision_w = np.where(lose, wd, decision_w)
    end_day = np.where(churn_day < _NEVER, churn_day + 1, _NEVER)
    return churn_day, end_day, decision_w
