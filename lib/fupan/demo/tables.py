"""The tables of one simulated chunk: the history up to ``as_of``, cut at churn.

One function per table, called in :func:`build_tables`. Key columns (``order_id`` …) and
``renewal_of`` are left null here and numbered by :func:`fupan.demo.generator.generate`,
which knows how many rows earlier chunks wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fupan.demo.arrays import _cat, _dates, _ids, _ln_noise, _stamps, _take
from fupan.demo.config import (
    ACQ_CHANNELS,
    CHURN_REASONS,
    CITIES,
    COMPETITOR_P,
    COMPETITORS,
    DAY_S,
    INDUSTRIES,
    NAME_CORES,
    NAME_SUFFIXES,
    ORDER_CATEGORIES,
    PRIORITIES,
    REGIONS,
    RENEWAL_LOOKAHEAD_DAYS,
    TICKET_CATEGORIES,
    TIERS,
    TOUCH_CHANNELS,
    TOUCH_RESPONDED_P,
    _schema,
)
from fupan.demo.world import _Orders, _Tickets, _World


@dataclass
class _Written:
    """What the tables keep, for the chunk's statistics (see :mod:`fupan.demo.truth`)."""

    orders: _Orders  # orders written
    tickets: _Tickets  # tickets written
    resp_null: np.ndarray  # per written ticket: no first response by as_of
    c_start: np.ndarray  # (n, n_contracts) potential contract starts
    c_has: np.ndarray  # ... written
    c_val: np.ndarray  # ... annual value (unrounded)
    contract_k: np.ndarray  # per written contract: its number for the customer (0 = first)
    recorded: np.ndarray  # per customer: churn event written


def build_tables(w: _World) -> tuple[dict[str, pa.Table], _Written]:
    """The eight simulated tables of one chunk, and what they keep for its statistics."""
    cust_ids = _ids("C", w.f.first + 1, w.f.n, w.f.ctx.cust_width)
    tables = {"customers": _customers_table(w, cust_ids)}
    tables["orders"], orders = _orders_table(w, cust_ids)
    tables["contracts"], (c_start, c_has, c_val, ck) = _contracts_table(w, cust_ids)
    tables["touches"] = _touches_table(w, cust_ids)
    tables["tickets"], tickets, resp_null = _tickets_table(w, cust_ids)
    tables["surveys"] = _surveys_table(w, cust_ids)
    tables["activity"] = _activity_table(w, cust_ids)
    tables["churn_events"], recorded = _churn_events_table(w, cust_ids, orders)
    return tables, _Written(orders, tickets, resp_null, c_start, c_has, c_val, ck, recorded)


def _customers_table(w: _World, cust_ids: pa.Array) -> pa.Table:
    c, iv, n = w.cust, w.f.ctx.interventions, w.f.n
    region_out = np.full(n, REGIONS.index(iv["region"])) if "region" in iv else c.region
    chan_out = (
        np.full(n, ACQ_CHANNELS.index(iv["acquisition_channel"]))
        if "acquisition_channel" in iv
        else c.channel
    )
    am_w = max(3, len(str(w.f.ctx.n_am)))
    am_ids = pc.binary_join_element_wise(
        "AM-", pc.utf8_lpad(pc.cast(pa.array(c.am), pa.string()), width=am_w, padding="0"), ""
    )
    return pa.table(
        {
            "customer_id": cust_ids,
            "acquired_at": _dates(c.acq_day),
            "customer_name": _names(w),
            "industry": _take(INDUSTRIES, c.industry),
            "region": _take(REGIONS, region_out),
            "tier": _take(TIERS, c.tier),
            "account_manager": am_ids,
            "acquisition_channel": _take(ACQ_CHANNELS, chan_out),
        },
        schema=_schema("customers"),
    )


def _names(w: _World) -> pa.Array:
    """Company names: a city of the (true) region, a core word, an industry suffix."""
    u_name, c = w.d.u_name, w.cust
    cities = np.asarray([x for r in REGIONS for x in CITIES[r]], dtype=object)
    city = cities[c.region * 5 + np.floor(u_name[:, 0] * 5).astype(np.int64)]
    core = np.asarray(NAME_CORES, dtype=object)[
        np.floor(u_name[:, 1] * len(NAME_CORES)).astype(np.int64)
    ]
    sufs = np.asarray([x for i in INDUSTRIES for x in NAME_SUFFIXES[i]], dtype=object)
    suf = sufs[c.industry * 3 + np.floor(u_name[:, 2] * 3).astype(np.int64)]
    return pc.binary_join_element_wise(
        pa.array(city, pa.string()),
        pa.array(core, pa.string()),
        pa.array(suf, pa.string()),
        "有限公司",
        "",
    )


def _orders_table(w: _World, cust_ids: pa.Array) -> tuple[pa.Table, _Orders]:
    o = w.orders
    o = o.take((o.day < w.churn.end_day[o.c]) & (o.day <= w.f.ctx.as_of_day))
    table = pa.table(
        {
            "order_id": pa.nulls(len(o.c), pa.string()),  # numbered by the caller
            "customer_id": pc.take(cust_ids, pa.array(o.c)),
            "order_date": _dates(o.day),
            "amount": pa.array(o.amt, pa.float64()),
            "category": _take(ORDER_CATEGORIES, o.cat),
        },
        schema=_schema("orders"),
    )
    return table, o


def _contracts_table(
    w: _World, cust_ids: pa.Array
) -> tuple[pa.Table, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Annual contracts from acquisition; contract k+1 renews k. Contractual: renewed unless
    the customer churned at its end. Non-contractual: a customer who goes dormant within
    RENEWAL_LOOKAHEAD_DAYS after the end lets it lapse."""
    ctx, c, T = w.f.ctx, w.cust, w.f.T
    gr = ctx.params.growth_rate_share
    kk = np.arange(ctx.n_contracts)
    c_start = c.acq_day[:, None] + 365 * kk[None, :]
    if ctx.mode == "contractual":
        c_has = c_start < w.churn.end_day[:, None]
    else:
        c_has = (kk[None, :] == 0) | (
            w.churn.churn_day[:, None] > c_start - 1 + RENEWAL_LOOKAHEAD_DAYS
        )
    c_has &= c_start <= ctx.as_of_day
    c_w = np.clip((c_start - ctx.d0) // 7, 0, T - 1)
    c_val = c.s0[:, None] * np.exp(
        c.drift[:, None] * kk[None, :] + (1 - gr) * c.gp[w.f.rows1[:, None], c_w]
    )
    c_val *= _ln_noise(w.d.z_contract[:, : ctx.n_contracts], 0.1)
    cr, ck = np.nonzero(c_has)
    table = pa.table(
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
    return table, (c_start, c_has, c_val, ck)


def _touches_table(w: _World, cust_ids: pa.Array) -> pa.Table:
    t = w.touches
    t = t.take((t.day < w.churn.end_day[t.c]) & (t.day <= w.f.ctx.as_of_day))
    t_p = np.asarray(TOUCH_RESPONDED_P)[t.ch]
    return pa.table(
        {
            "touch_id": pa.nulls(len(t.c), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(t.c)),
            "touched_at": _stamps(t.sec),
            "channel": _take(TOUCH_CHANNELS, t.ch),
            # about 3% of the answers are unknown (null)
            "responded": pa.array(t.u_tr < t_p, mask=(t.u_tr > t_p) & (t.u_tr < t_p + 0.03)),
        },
        schema=_schema("touches"),
    )


def _tickets_table(w: _World, cust_ids: pa.Array) -> tuple[pa.Table, _Tickets, np.ndarray]:
    as_of = w.f.ctx.as_of_day
    end_s = (as_of + 1) * DAY_S
    k = w.tickets
    k = k.take((k.day < w.churn.end_day[k.c]) & (k.day <= as_of))
    resp_null = k.never | (k.resp >= end_s)
    table = pa.table(
        {
            "ticket_id": pa.nulls(len(k.c), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(k.c)),
            "opened_at": _stamps(k.open),
            "first_response_at": _stamps(k.resp, resp_null),
            "resolved_at": _stamps(k.resolve, resp_null | (k.resolve >= end_s)),
            "priority": _take(PRIORITIES, k.prio),
            "category": _take(TICKET_CATEGORIES, k.cat),
        },
        schema=_schema("tickets"),
    )
    return table, k, resp_null


def _surveys_table(w: _World, cust_ids: pa.Array) -> pa.Table:
    s = w.surveys
    sr, sk = np.nonzero(s.resp & (s.day < w.churn.end_day[:, None]) & (s.day <= w.f.ctx.as_of_day))
    return pa.table(
        {
            "survey_id": pa.nulls(len(sr), pa.string()),
            "customer_id": pc.take(cust_ids, pa.array(sr)),
            "surveyed_at": _dates(s.day[sr, sk]),
            "nps": pa.array(s.nps[sr, sk], pa.int64()),
            "csat": pa.array(s.csat[sr, sk], pa.int64(), mask=s.csat_null[sr, sk]),
            "dim_need_fit": pa.array(np.round(s.dim_need[sr, sk], 1)),
            "dim_resolution": pa.array(np.round(s.dim_res[sr, sk], 1)),
            "dim_intimacy": pa.array(np.round(s.dim_int[sr, sk], 1)),
        },
        schema=_schema("surveys"),
    )


def _activity_table(w: _World, cust_ids: pa.Array) -> pa.Table:
    TH, monday = w.f.TH, w.f.monday
    ar, aw = np.nonzero(w.cust.valid[:, :TH] & (monday[None, :TH] < w.churn.end_day[:, None]))
    return pa.table(
        {
            "customer_id": pc.take(cust_ids, pa.array(ar)),
            "period_start": _dates(monday[aw]),
            "logins": pa.array(w.logins[ar, aw].astype(np.int64)),
        },
        schema=_schema("activity"),
    )


def _churn_events_table(
    w: _World, cust_ids: pa.Array, orders: _Orders
) -> tuple[pa.Table, np.ndarray]:
    """Recorded churn events, with a reason drawn in proportion to what drove the hazard at
    churn, a competitor for some reasons, and the value of the year before churn."""
    P, n, u_churn, ch = w.f.ctx.params, w.f.n, w.d.u_churn, w.churn
    rec_p = P.churn_recorded_non_contractual if w.f.ctx.mode == "non_contractual" else 1.0
    recorded = ch.churned & (u_churn[:, 1] < rec_p)
    reason = _churn_reason(w)
    reason_null = u_churn[:, 4] < 0.02
    comp_p = np.asarray([0.3, 0.7, 1.0, 0.0, 0.1, 0.0, 0.05])[reason]
    v = (u_churn[:, 4] - 0.02) / 0.98
    comp_named = (v >= 0) & (v < comp_p)
    comp = _cat(np.clip(v / np.maximum(comp_p, 1e-9), 0, 1), COMPETITOR_P)
    oc, o_day = orders.c, orders.day
    lv = ch.churned[oc] & (o_day >= ch.churn_day[oc] - 365) & (o_day < ch.churn_day[oc])
    lost = np.bincount(oc[lv], weights=orders.amt[lv], minlength=n)
    er = np.flatnonzero(recorded)
    table = pa.table(
        {
            "customer_id": pc.take(cust_ids, pa.array(er)),
            "churned_at": _dates(ch.churn_day[er]),
            "reason": _take(CHURN_REASONS, reason[er], reason_null[er]),
            "competitor": _take(COMPETITORS, comp[er], ~comp_named[er]),
            "lost_value": pa.array(np.round(lost[er], 2), pa.float64()),
        },
        schema=_schema("churn_events"),
    )
    return table, recorded


def _churn_reason(w: _World) -> np.ndarray:
    """Reason code per customer, in proportion to each driver's hazard contribution at the
    churn decision; price-sensitive customers mostly name price."""
    n, u_churn, contrib = w.f.n, w.d.u_churn, w.churn.contrib
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
    return np.where(w.cust.ps & (u_churn[:, 3] < 0.6), CHURN_REASONS.index("price"), reason)
