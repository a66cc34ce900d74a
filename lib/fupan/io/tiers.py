"""Customer tiers from spend: the spend floors (from the params, else from the data's
trailing spend) and the SQL that gives every customer without a tier its spend tier.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fupan.core.params import Params
from fupan.io.reading import _sql_string
from fupan.io.validation import ValidationReport


def default_floor_shares(k: int) -> list[float]:
    """Cumulative share of customers with spend at or above each tier's floor (best first).

    Four tiers: top 5%, next 15%, next 30%, the rest (cumulative 5%, 20%, 50%). Two tiers:
    top 20%; three: top 5%, next 25%. More than four: cumulative shares evenly spaced on a
    log scale from 5% to 50%. The last tier has no floor (it takes the rest).
    """
    import numpy as np

    table = {1: [], 2: [0.20], 3: [0.05, 0.30], 4: [0.05, 0.20, 0.50]}
    if k in table:
        return table[k]
    return [float(x) for x in np.geomspace(0.05, 0.5, k - 1)]


def resolve_floors(spend: Any, k: int) -> tuple[list[float], list[float]]:
    """Spend floors in the data's own scale: quantiles of positive trailing-12-month spend.

    Floor i is the ``1 - share_i`` quantile of the spend of customers who spent anything
    (:func:`default_floor_shares`), rounded to two significant digits; the last floor is 0.
    Without any positive spend no floor but the last is reachable.
    """
    import numpy as np

    shares = default_floor_shares(k)
    pos = np.asarray(spend, dtype=float)
    pos = pos[np.isfinite(pos) & (pos > 0)]
    if not len(pos):
        return [float("inf")] * (k - 1) + [0.0], shares
    floors: list[float] = []
    for sh in shares:
        q = float(np.quantile(pos, 1 - sh))
        q = float(f"{q:.2g}")
        floors.append(min(q, floors[-1]) if floors else q)
    return floors + [0.0], shares


def _spend_sql(params: Params, report: ValidationReport) -> str:
    """customer_id, trailing-12-month spend and days since last activity, per clean customer.

    The rule of :func:`fupan.measures.segments.customer_features_as_of` (net order amount in
    (as_of - 1 year, as_of], recency from the last order or else acquired_at). Without
    orders (a contractual business): the annual value of contracts running in that year,
    and days since the last contract ended.
    """
    from fupan.measures.segments import trailing_start

    as_of = pd.Timestamp(params.as_of).date()
    t12 = trailing_start(as_of)
    if "orders" in report.present:
        return (
            "SELECT c.customer_id, c.rowid AS _ord, coalesce(sum(o.amount) FILTER "
            f"(WHERE o.order_date >= DATE '{t12}'), 0) AS spend, date_diff('day', "
            f"coalesce(max(o.order_date), any_value(c.acquired_at)), DATE '{as_of}') AS recency "
            "FROM main.customers c LEFT JOIN main.orders o USING (customer_id) "
            "GROUP BY c.customer_id, c.rowid"
        )
    return (
        "SELECT c.customer_id, c.rowid AS _ord, coalesce(sum(k.annual_value) FILTER "
        f"(WHERE k.end_date >= DATE '{t12}'), 0) AS spend, greatest(date_diff('day', "
        f"coalesce(max(k.end_date), any_value(c.acquired_at)), DATE '{as_of}'), 0) AS recency "
        "FROM main.customers c LEFT JOIN main.contracts k USING (customer_id) "
        "GROUP BY c.customer_id, c.rowid"
    )


def tier_case_sql(order: list[str], floors: list[float], dormant_days: int) -> str:
    """The spend-floor rule of :func:`fupan.measures.segments.spend_tier` as a SQL CASE over
    ``spend`` and ``recency``: dormant customers take the last tier; otherwise the best
    tier whose floor the spend reaches."""
    import math

    whens = [f"WHEN recency >= {int(dormant_days)} THEN {_sql_string(order[-1])}"]
    for code, floor in zip(order[:-1], floors[:-1], strict=True):
        if math.isfinite(floor):
            whens.append(f"WHEN spend >= {float(floor)!r} THEN {_sql_string(code)}")
    return f"CASE {' '.join(whens)} ELSE {_sql_string(order[-1])} END"


def fill_tiers(con: Any, params: Params, report: ValidationReport) -> None:
    """Resolve ``tiers.spend_floors`` and fill ``customers.tier`` when the source has none.

    Floors the params file does not set come from the data (:func:`resolve_floors`) when the
    data has no tiers of its own or ``tiers.order`` is not the default four; they are
    written into ``params`` in place and recorded in ``report.tier_floors``. Without an
    assigned tier, every customer gets the tier the spend-floor rule gives.
    """
    tiers = params.tiers
    supplied = "tier" in report.supplied.get("customers", [])
    explicit = "spend_floors" in tiers.model_fields_set
    placeholder = not all(f < float("inf") for f in tiers.spend_floors)
    spend_sql = _spend_sql(params, report)
    if explicit:
        report.tier_floors = {"source": "params", "floors": list(tiers.spend_floors)}
    elif supplied and not placeholder:
        report.tier_floors = {"source": "default", "floors": list(tiers.spend_floors)}
        report.add(
            "info",
            "customers",
            "tier",
            "spend_floors",
            0,
            f"tiers.spend_floors is not set: the default floors {tiers.spend_floors} decide "
            "the recommended tier",
            fix="set tiers.spend_floors in the data's currency and scale",
        )
    else:
        spend = con.raw_sql(f"SELECT spend FROM ({spend_sql})").fetchnumpy()["spend"]
        floors, shares = resolve_floors(spend, len(tiers.order))
        tiers.spend_floors = floors
        report.tier_floors = {
            "source": "data",
            "floors": floors,
            "shares": shares,
            "rule": "quantiles of trailing-12-month net spend of customers with spend: "
            + ", ".join(f"top {s:.0%}" for s in shares)
            + ", rest; rounded to two significant digits",
        }
    if supplied:
        return
    case = tier_case_sql(tiers.order, tiers.spend_floors, tiers.dormant_days)
    con.raw_sql(
        "CREATE OR REPLACE TABLE main.customers__new AS SELECT c.* REPLACE (t.tier AS tier) "
        f"FROM main.customers c JOIN (SELECT customer_id, _ord, {case} AS tier FROM "
        f"({spend_sql})) t USING (customer_id) ORDER BY t._ord"
    )
    con.raw_sql("DROP TABLE main.customers")
    con.raw_sql("ALTER TABLE main.customers__new RENAME TO customers")
    report.derived["customers.tier"] = "spend_floors"
