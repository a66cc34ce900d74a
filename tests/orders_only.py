"""A synthetic transaction log (orders and a key-only customers table), for chapter 2 tests.

Each customer buys at exponential gaps (mean ``gap`` days) and after each order stops for
good with probability ``p_stop``; ``region`` raises that probability (a planted driver) and
``industry`` is a 10-level categorical assigned at random (pure noise). Churn is only the
dormancy rule: no ``churn_events`` table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import paramfile


def frames(
    n: int = 1500,
    start: str = "2024-01-01",
    days: int = 540,
    seed: int = 0,
    acquire_days: int = 120,
) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    region = rng.choice(["north", "south"], n)
    industry = rng.choice([f"ind{k}" for k in range(10)], n)
    p_stop = np.where(region == "south", 0.35, 0.12)
    rows = []
    for i in range(n):
        t = float(rng.integers(0, acquire_days))
        while t < days:
            rows.append((f"K{i:05d}", t0 + pd.Timedelta(days=int(t)), float(rng.gamma(2.0, 20.0))))
            if rng.random() < p_stop[i]:
                break
            t += rng.exponential(45.0)
    orders = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    orders.insert(0, "order_id", [f"o{k}" for k in range(len(orders))])
    first = orders.groupby("customer_id").order_date.min()
    ids = [f"K{i:05d}" for i in range(n)]
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "acquired_at": first.reindex(ids).dt.strftime("%Y-%m-%d").to_numpy(),
            "industry": industry,
            "region": region,
            "tier": "attention",
            "account_manager": "unknown",
        }
    )
    orders["order_date"] = orders.order_date.dt.strftime("%Y-%m-%d")
    return {"customers": customers, "orders": orders}


def write(folder: Path, **kw) -> tuple[Path, str]:
    """The CSVs in ``folder``; returns (folder, as_of: the last day of the log)."""
    folder.mkdir(parents=True, exist_ok=True)
    fr = frames(**kw)
    for name, df in fr.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    days = kw.get("days", 540)
    as_of = (pd.Timestamp(kw.get("start", "2024-01-01")) + pd.Timedelta(days=days - 1)).date()
    return folder, as_of.isoformat()


def params_file(folder: Path, data_dir: Path, as_of: str, extra: str = "") -> Path:
    return paramfile.write(
        folder,
        data_dir.resolve(),
        "churn_definition:\n  dormancy_days: 180\n"
        "tiers:\n  order: [platinum, gold, silver, attention]\n  core: [platinum, gold]\n" + extra,
        name="orders only",
        as_of=as_of,
        period_start=f"{as_of[:4]}-01-01",
        business_model="non_contractual",
    )
