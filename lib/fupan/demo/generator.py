"""``generate``: simulate the world chunk by chunk, write its tables, the pilot and the truth."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fupan.demo.arrays import _ids
from fupan.demo.config import (
    _DEFAULT_PARAMS,
    _MODE_OVERRIDES,
    BLOCK,
    LOOKAHEAD_WEEKS,
    SIM_UNIT,
    SIMULATED,
    _check_interventions,
    _Ctx,
    _day,
)
from fupan.demo.pilot import _plant_pilot
from fupan.demo.tables import build_tables
from fupan.demo.truth import accumulate, chunk_stats, new_accumulator, truth
from fupan.demo.world import simulate_world
from fupan.demo.writer import _Writer

#: Tables whose key column is numbered across chunks: prefix, digits, column.
_KEYS = {
    "orders": ("O", 8, "order_id"),
    "contracts": ("K", 7, "contract_id"),
    "touches": ("T", 8, "touch_id"),
    "tickets": ("S", 8, "ticket_id"),
    "surveys": ("V", 8, "survey_id"),
}


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
    ctx = _context(customers, seed, business_model, as_of, years, fmt, interventions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, acc = _write_world(ctx, out, fmt, chunk_customers)
    result = truth(ctx, acc, rows, fmt)
    # after every simulated table is written, from its own random stream: the pilot
    # changes no byte of the other tables (rows is result["rows"]: it gains "pilots")
    result["pilots"], rows["pilots"] = _plant_pilot(out, fmt, ctx)
    with open(out / "truth.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return result


def _context(
    customers: int,
    seed: int,
    business_model: str,
    as_of: str | date,
    years: int,
    fmt: str,
    interventions: dict | None,
) -> _Ctx:
    """Check the arguments and lay out the calendar: the run's context."""
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
    return _Ctx(
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


def _write_world(
    ctx: _Ctx, out: Path, fmt: str, chunk_customers: int
) -> tuple[dict[str, int], dict[str, Any]]:
    """Simulate and append the tables chunk by chunk; return the row counts and the
    accumulated statistics for the truth."""
    chunk = max(BLOCK, -(-int(chunk_customers) // BLOCK) * BLOCK)
    writer = _Writer(out, fmt)
    counters = dict.fromkeys(_KEYS, 0)
    rows = dict.fromkeys(SIMULATED, 0)
    acc = new_accumulator()
    customers = ctx.n_customers
    try:
        for first in range(0, customers, chunk):
            n = min(chunk, customers - first)
            pending: dict[str, list[pa.Table]] = {name: [] for name in SIMULATED}
            # simulate in units of at most SIM_UNIT customers (smaller arrays are faster);
            # blocks are independent, so this does not change the output
            for sub in range(first, first + n, SIM_UNIT):
                res = _simulate_chunk(ctx, sub, min(SIM_UNIT, first + n - sub))
                tabs = _number_keys(res["tables"], res["contract_k"], counters)
                for name in SIMULATED:
                    pending[name].append(tabs[name])
                    rows[name] += tabs[name].num_rows
                accumulate(acc, res)
                del res, tabs
            for name in SIMULATED:
                writer.write(name, pa.concat_tables(pending[name]))
            del pending
    finally:
        writer.close()
    return rows, acc


def _simulate_chunk(ctx: _Ctx, first: int, n: int) -> dict[str, Any]:
    """Customers ``first .. first + n - 1``: their tables (keys not yet numbered), the
    number of each contract for its customer, and their statistics for the truth."""
    world = simulate_world(ctx, first, n)
    tables, kept = build_tables(world)
    return {"tables": tables, "contract_k": kept.contract_k, **chunk_stats(world, kept)}


def _number_keys(
    tabs: dict[str, pa.Table], contract_k: np.ndarray, counters: dict[str, int]
) -> dict[str, pa.Table]:
    """Number the key columns on from earlier chunks; link each renewal to its contract."""
    for name, (prefix, width, key) in _KEYS.items():
        t = tabs[name]
        ids = _ids(prefix, counters[name] + 1, t.num_rows, width)
        t = t.set_column(t.schema.get_field_index(key), key, ids)
        if name == "contracts":
            prev = pc.take(ids, pa.array(np.maximum(np.arange(t.num_rows) - 1, 0)))
            first_k = pa.array(contract_k == 0)
            renewal = pc.if_else(first_k, pa.nulls(t.num_rows, pa.string()), prev)
            t = t.set_column(t.schema.get_field_index("renewal_of"), "renewal_of", renewal)
        counters[name] += t.num_rows
        tabs[name] = t
    return tabs
