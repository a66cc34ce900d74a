"""The floor for the feature stage: the per-customer feature catalogue as one hand-written
DuckDB SQL query.

It computes the same features, with the same definitions, as ``fupan.measures.features.CATALOGUE``
(read each definition there), for every customer acquired before ``as_of`` from events
strictly before it - written the way a DuckDB user would write it by hand: one query,
``FILTER`` clauses, ``arg_max`` for "the latest", no Ibis. The benchmark times it on the same
in-memory tables the feature stage reads, fetches the result into pandas like the feature
stage does, and checks (outside the timing) that both give equal values.

Day arithmetic: dates are compared as dates; timestamps are turned into fractional days
since 1970-01-01 (epoch seconds / 86400), as the catalogue's definitions read "days".
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

TABLES = ("customers", "orders", "contracts", "touches", "tickets", "surveys", "activity")
CATEGORICAL = ("tier", "region", "industry", "acquisition_channel")


def sql(
    as_of: str,
    sla: dict[str, float],
    first_repeat_touch_days: int = 7,
    login_gap_cap_weeks: int = 12,
    dims: tuple[str, ...] = (),
) -> str:
    """The floor query for the eight-table contract (all optional tables present)."""
    day = dt.date.fromisoformat(str(as_of))
    sd = (day - dt.date(1970, 1, 1)).days
    default_sla = max(sla.values()) if sla else "'inf'::DOUBLE"
    sla_case = (
        "CASE "
        + " ".join(f"WHEN c.tier = '{k}' THEN {float(v)!r}" for k, v in sla.items())
        + f" ELSE {default_sla} END"
        if sla
        else "'inf'::DOUBLE"
    )
    n = int(first_repeat_touch_days)
    cap = int(login_gap_cap_weeks)
    horizon = max(28, 7 * (cap + 1))  # + the activity period, added in the query
    dim_aggs = "".join(
        f",\n        arg_max({d}, (surveyed_at, survey_id)) FILTER (WHERE {d} IS NOT NULL) AS {d}"
        for d in dims
    )
    dim_cols = "".join(f", s.{d}" for d in dims)
    return f"""
WITH
base AS (
    SELECT customer_id, tier, region, industry, acquisition_channel, acquired_at,
           DATE '{day}' - acquired_at AS tenure_days
    FROM customers WHERE acquired_at < DATE '{day}'
),
ord AS (
    SELECT customer_id,
        max(order_date) FILTER (WHERE amount > 0) AS last_pos,
        min(order_date) FILTER (WHERE amount > 0) AS first_pos,
        count(*) FILTER (WHERE amount > 0) AS n_pos,
        count(*) FILTER (WHERE amount > 0 AND order_date >= DATE '{day}' - 90) AS orders_90d,
        count(*) FILTER (WHERE amount > 0 AND order_date >= DATE '{day}' - 365) AS orders_365d,
        sum(amount) FILTER (WHERE order_date >= DATE '{day}' - 90) AS spend_90d,
        sum(amount) FILTER (WHERE order_date >= DATE '{day}' - 365) AS spend_365d,
        sum(amount) FILTER (WHERE order_date < DATE '{day}' - 90
                              AND order_date >= DATE '{day}' - 180) AS spend_prev_90d
    FROM orders WHERE order_date < DATE '{day}'
    GROUP BY customer_id
),
tch AS (
    SELECT customer_id,
        count(*) FILTER (WHERE touched_at >= TIMESTAMP '{day}' - INTERVAL 30 DAY) AS touches_30d,
        count(*) FILTER (WHERE touched_at >= TIMESTAMP '{day}' - INTERVAL 90 DAY) AS touches_90d,
        max(epoch(touched_at) / 86400.0) AS last_touch
    FROM touches WHERE touched_at < TIMESTAMP '{day}'
    GROUP BY customer_id
),
second_order AS (   -- the first repeat purchase: the 2nd order with amount > 0, ever
    SELECT customer_id, order_date AS repeat_date FROM (
        SELECT customer_id, order_date,
               row_number() OVER (PARTITION BY customer_id ORDER BY order_date, order_id) AS k
        FROM orders WHERE amount > 0)
    WHERE k = 2
),
repeat_touch AS (
    SELECT r.customer_id, r.repeat_date, count(t.touched_at) > 0 AS followed
    FROM second_order r LEFT JOIN touches t
      ON t.customer_id = r.customer_id
     AND t.touched_at >= r.repeat_date
     AND t.touched_at < r.repeat_date + INTERVAL {n + 1} DAY
    GROUP BY r.customer_id, r.repeat_date
),
tk AS (
    SELECT k.customer_id,
           epoch(k.opened_at) / 86400.0 AS t_open,
           CASE WHEN k.first_response_at < TIMESTAMP '{day}'
                THEN epoch(k.first_response_at) / 86400.0 ELSE {sd}.0 END AS known_fr,
           k.resolved_at,
           {sla_case} AS sla
    FROM tickets k JOIN customers c ON c.customer_id = k.customer_id
    WHERE k.opened_at < TIMESTAMP '{day}'
),
tkt AS (
    SELECT customer_id,
        count(*) FILTER (WHERE {sd} - t_open <= 90) AS tickets_90d,
        count(*) FILTER (WHERE {sd} - t_open > 90 AND {sd} - t_open <= 180) AS tickets_prev_90d,
        median(known_fr - t_open) FILTER (WHERE {sd} - t_open <= 180) AS median_wait,
        count(*) FILTER (WHERE resolved_at IS NULL OR resolved_at >= TIMESTAMP '{day}') AS open_tickets,
        count(*) FILTER (WHERE {sd} - t_open <= 90 AND known_fr - t_open > sla) AS sla_breaches_90d
    FROM tk GROUP BY customer_id
),
srv AS (
    SELECT customer_id, surveyed_at, survey_id, nps, csat{"".join(f", {d}" for d in dims)},
           lag(nps) OVER (PARTITION BY customer_id ORDER BY surveyed_at, survey_id) AS prev_nps
    FROM surveys
),
sv AS (
    SELECT customer_id,
        arg_max(nps, (surveyed_at, survey_id)) AS nps_latest,
        arg_max(prev_nps, (surveyed_at, survey_id)) AS nps_before,
        arg_max(csat, (surveyed_at, survey_id)) FILTER (WHERE csat IS NOT NULL) AS csat_latest{dim_aggs}
    FROM srv WHERE surveyed_at < DATE '{day}'
    GROUP BY customer_id
),
period AS (   -- activity rows are daily or weekly: the most common gap between periods
    SELECT coalesce((
        SELECT gap FROM (
            SELECT d - lag(d) OVER (PARTITION BY customer_id ORDER BY d) AS gap
            FROM (SELECT DISTINCT customer_id, period_start AS d FROM activity))
        WHERE gap > 0 GROUP BY gap ORDER BY count(*) DESC, gap LIMIT 1), 7)::INTEGER AS days
),
act AS (
    SELECT a.customer_id,
        sum(a.logins) FILTER (WHERE a.period_start + p.days > DATE '{day}' - 28) AS logins_28d,
        max(a.period_start + p.days) FILTER (WHERE a.logins > 0) AS last_login_end
    FROM activity a, period p
    WHERE a.period_start + p.days <= DATE '{day}'
      AND a.period_start + p.days > DATE '{day}' - ({horizon} + p.days)
    GROUP BY a.customer_id
),
act_first AS (SELECT min(period_start) AS first_period FROM activity),
ctr AS (   -- contracts started before the snapshot; "running" ones have not ended by it
    SELECT customer_id,
        max(end_date) FILTER (WHERE end_date >= DATE '{day}') - DATE '{day}' AS days_to_renewal,
        count(*) FILTER (WHERE end_date >= DATE '{day}') AS running
    FROM contracts WHERE start_date < DATE '{day}'
    GROUP BY customer_id
)
SELECT
    b.customer_id,
    coalesce(DATE '{day}' - o.last_pos, b.tenure_days) AS recency_days,
    coalesce(o.orders_90d, 0) AS orders_90d,
    coalesce(o.orders_365d, 0) AS orders_365d,
    coalesce(o.spend_90d, 0) AS spend_90d,
    coalesce(o.spend_365d, 0) AS spend_365d,
    CASE WHEN coalesce(o.spend_prev_90d, 0) > 0
         THEN greatest(least((coalesce(o.spend_90d, 0) - o.spend_prev_90d) / o.spend_prev_90d, 1), -1)
         ELSE 0 END AS spend_change_qoq,
    CASE WHEN o.n_pos >= 2 AND o.last_pos > o.first_pos
         THEN (DATE '{day}' - o.last_pos)::DOUBLE
              / ((o.last_pos - o.first_pos)::DOUBLE / (o.n_pos - 1)::DOUBLE)
         END AS order_gap_ratio,
    b.tenure_days,
    b.tier, b.region, b.industry, b.acquisition_channel,
    coalesce(t.touches_30d, 0) AS touches_30d,
    coalesce(t.touches_90d, 0) AS touches_90d,
    coalesce(floor({sd} - t.last_touch)::BIGINT, b.tenure_days) AS days_since_touch,
    CASE WHEN r.repeat_date + {n} < DATE '{day}' AND NOT r.followed THEN 1 ELSE 0 END
        AS no_touch_after_first_repeat,
    coalesce(k.tickets_90d, 0) AS tickets_90d,
    CASE WHEN coalesce(k.tickets_prev_90d, 0) > 0
         THEN greatest(least((coalesce(k.tickets_90d, 0) - k.tickets_prev_90d)::DOUBLE
                             / k.tickets_prev_90d, 1), -1)
         ELSE 0 END AS tickets_change_qoq,
    coalesce(k.median_wait, 0) AS median_first_response_days,
    coalesce(k.open_tickets, 0) AS open_tickets,
    coalesce(k.sla_breaches_90d, 0) AS sla_breaches_90d,
    s.nps_latest,
    s.nps_latest - s.nps_before AS nps_change,
    CASE WHEN s.nps_latest <= 6 THEN 1 ELSE 0 END AS detractor,
    s.csat_latest,
    coalesce(a.logins_28d, 0) AS logins_28d,
    greatest(least(floor((DATE '{day}' - coalesce(a.last_login_end,
        greatest(b.acquired_at, f.first_period))) / 7)::BIGINT, {cap}), 0)
        AS weeks_without_login,
    d.days_to_renewal,
    CASE WHEN d.running = 0 THEN 1 ELSE 0 END AS no_running_contract{dim_cols}
FROM base b
LEFT JOIN ord o USING (customer_id)
LEFT JOIN tch t USING (customer_id)
LEFT JOIN repeat_touch r USING (customer_id)
LEFT JOIN tkt k USING (customer_id)
LEFT JOIN sv s USING (customer_id)
LEFT JOIN act a USING (customer_id)
LEFT JOIN ctr d USING (customer_id)
CROSS JOIN act_first f
ORDER BY b.customer_id
"""


def compare(ours: pd.DataFrame, floor: pd.DataFrame, rtol: float = 1e-9) -> dict:
    """Column by column: do the feature stage and the floor give the same values?"""
    a = ours.set_index("customer_id").sort_index()
    b = floor.set_index("customer_id").sort_index()
    out: dict = {"rows": [len(a), len(b)], "same_customers": bool(a.index.equals(b.index))}
    cols = [c for c in a.columns if c != "snapshot_date"]
    out["missing_in_floor"] = [c for c in cols if c not in b.columns]
    out["extra_in_floor"] = [c for c in b.columns if c not in a.columns]
    bad = {}
    if out["same_customers"]:
        for c in cols:
            if c not in b.columns:
                continue
            x, y = a[c], b[c]
            if c in CATEGORICAL:
                diff = int((x.fillna("<null>").astype(str) != y.fillna("<null>").astype(str)).sum())
            else:
                xv = pd.to_numeric(x, errors="coerce").to_numpy(float)
                yv = pd.to_numeric(y, errors="coerce").to_numpy(float)
                nulls = np.isnan(xv) != np.isnan(yv)
                both = ~np.isnan(xv) & ~np.isnan(yv)
                far = ~np.isclose(xv[both], yv[both], rtol=rtol, atol=1e-9)
                diff = int(nulls.sum() + far.sum())
            if diff:
                bad[c] = diff
    out["columns_compared"] = len(cols) - len(out["missing_in_floor"])
    out["mismatched_values"] = bad
    out["equal"] = bool(
        out["same_customers"]
        and not bad
        and not out["missing_in_floor"]
        and not out["extra_in_floor"]
    )
    return out
