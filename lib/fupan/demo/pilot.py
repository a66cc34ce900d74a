"""The planted pilot: a ``pilots`` table written after the world, with a known effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fupan.demo.config import _Ctx, _schema
from fupan.demo.writer import _Writer

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
    enrolled, y, treat = _assign_arms(out, fmt, ctx, start)
    table = pd.DataFrame(
        {
            "pilot": PILOT_NAME,
            "customer_id": enrolled.astype(str),
            "arm": np.where(treat, "treatment", "control"),
            # object dtype also when nobody is enrolled (an empty list would be float)
            "started_at": pd.Series([start.date()] * len(enrolled), dtype=object),
        }
    )
    w = _Writer(out, fmt)
    try:
        w.write(
            "pilots", pa.Table.from_pandas(table, schema=_schema("pilots"), preserve_index=False)
        )
    finally:
        w.close()
    return _pilot_truth(start, y, treat), len(table)


def _assign_arms(
    out: Path, fmt: str, ctx: _Ctx, start: pd.Timestamp
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Enrol customers live at ``start`` and draw their arms, reading the written tables
    back: the enrolled ids, whether each churned by ``as_of``, and whether it is treated."""
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
    return enrolled, y, treat


def _pilot_truth(start: pd.Timestamp, y: np.ndarray, treat: np.ndarray) -> dict[str, Any]:
    """The pilot's entry in truth.json: expected and realised churn rates by arm."""
    r = float(y.mean()) if len(y) else 0.0
    a, b = PILOT_P_TREAT_CHURN, PILOT_P_TREAT_STAY
    exp_t = r * a / (r * a + (1 - r) * b) if r else 0.0
    exp_c = r * (1 - a) / (r * (1 - a) + (1 - r) * (1 - b)) if r else 0.0

    def rate(mask: np.ndarray) -> float | None:
        return round(float(y[mask].mean()), 6) if mask.any() else None

    return {
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
