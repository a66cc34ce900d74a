"""Data shapes the demo generator never makes (issue 17), built from a small simulation.

Each shape is a folder of CSVs and a params file. Customers buy in a Poisson rhythm until
their own (random) end, so dormancy churn, repeat buying and one-time buyers all occur with
known settings; the shapes bend one thing at a time. The loader of today still needs a
filled ``customers.tier``: orders-only shapes give the one tier every customer would get.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AS_OF = pd.Timestamp("2025-12-31")

SHAPES = (
    "orders_only",
    "custom_tier",
    "short_history",
    "n30",
    "one_day",
    "no_churn",
    "churn90",
    "contractual",
    "contractual_orders",
    "timezones",
    "high_frequency",
)


def _orders(
    rng: np.random.Generator,
    n: int,
    months: int,
    stop_share: float,
    gap_days: float,
    one_day: bool = False,
    per_day: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    start = AS_OF - pd.DateOffset(months=months)
    span = (AS_OF - start).days
    if one_day:
        acq = np.full(n, 0)
    else:
        acq = rng.integers(0, max(1, int(span * 0.6)), n)
    stops = rng.random(n) < stop_share
    rows = []
    for i in range(n):
        t0 = start + pd.Timedelta(days=int(acq[i]))
        end = AS_OF
        if stops[i]:
            end = t0 + pd.Timedelta(days=int(rng.integers(1, max(2, (AS_OF - t0).days // 3))))
        t = t0
        while t <= end:
            for _ in range(int(rng.integers(1, per_day + 1))):
                rows.append((f"K{i:04d}", t, round(float(rng.gamma(2.0, 40.0)) + 1, 2)))
            t = t + pd.Timedelta(days=int(rng.exponential(gap_days)) + 1)
    orders = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    customers = pd.DataFrame(
        {
            "customer_id": [f"K{i:04d}" for i in range(n)],
            "acquired_at": [(start + pd.Timedelta(days=int(a))).date() for a in acq],
        }
    )
    return customers, orders


def build(shape: str, folder: str | Path, seed: int = 17) -> Path:
    """Write ``shape``'s data under ``folder/data`` and return ``folder/params.yaml``."""
    folder = Path(folder)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n, months, stop, gap, dormancy = 400, 30, 0.3, 45.0, 180
    tier, extra, period_start = "attention", "", "2025-01-01"
    kw: dict = {}
    if shape == "short_history":
        months, period_start = 10, "2025-06-01"
    elif shape == "n30":
        n = 30
    elif shape == "one_day":
        kw["one_day"] = True
    elif shape == "no_churn":
        stop, gap, dormancy = 0.0, 20.0, 365
    elif shape == "churn90":
        stop = 0.9
    elif shape == "high_frequency":
        kw["per_day"], gap, n, months = 4, 3.0, 40, 18
    customers, orders = _orders(rng, n, months, stop, gap, **kw)
    # one customer whose dormancy completes exactly on as_of: churned at as_of, live the day
    # before (the edge where two chapters' counts once differed)
    edge = AS_OF - pd.Timedelta(days=dormancy)
    first = pd.Timestamp(customers.acquired_at.min())
    customers.loc[len(customers)] = ["KEDGE", first.date()]
    orders = pd.concat(
        [
            orders,
            pd.DataFrame(
                {
                    "customer_id": "KEDGE",
                    "order_date": [first, first + pd.Timedelta(days=100), edge],
                    "amount": [120.0, 80.0, 95.0],
                }
            ),
        ],
        ignore_index=True,
    )
    if shape == "custom_tier":
        tier = "standard"
        extra = (
            "tiers:\n  order: [standard]\n  core: [standard]\n  spend_floors: [0]\n"
            "  labels: {standard: {zh: 标准, en: Standard}}\n"
        )
    customers["tier"] = tier
    # today's loader needs these columns to exist; empty, they count as not supplied
    for col in ("industry", "region", "account_manager"):
        customers[col] = None
    if shape == "timezones":
        tz = rng.choice(["+08:00", "-05:00", "+00:00"], len(orders))
        clock = pd.to_timedelta(rng.integers(0, 86_400, len(orders)), unit="s")
        stamps = pd.to_datetime(orders.order_date) + clock
        orders["order_date"] = [
            s.strftime("%Y-%m-%dT%H:%M:%S") + z for s, z in zip(stamps, tz, strict=True)
        ]
    elif shape == "high_frequency":
        clock = pd.to_timedelta(rng.integers(0, 86_400, len(orders)), unit="s")
        orders["order_date"] = (pd.to_datetime(orders.order_date) + clock).dt.strftime(
            "%Y-%m-%d %H:%M:%S"
        )
    else:
        orders["order_date"] = pd.to_datetime(orders.order_date).dt.date
    orders["order_id"] = [f"O{i:06d}" for i in range(len(orders))]
    model = "non_contractual"
    if shape.startswith("contractual"):
        # contracts and no orders (the loader of today still needs orders: the
        # "contractual_orders" variant keeps them, to exercise the contract models now)
        model = "contractual"
        contracts = _contracts(rng, customers)
        contracts.to_csv(data / "contracts.csv", index=False)
    if shape == "contractual":
        (data / "orders.csv").unlink(missing_ok=True)
    else:
        orders.to_csv(data / "orders.csv", index=False)
    customers.to_csv(data / "customers.csv", index=False)
    path = folder / "params.yaml"
    path.write_text(
        f"name: shape {shape}\nkind: annual_review\nlang: en\nas_of: {AS_OF.date()}\n"
        f"period_start: {period_start}\nbusiness_model: {model}\nbenchmarks_file: null\n"
        f"data:\n  source: {data.resolve()}\nchurn_definition:\n  dormancy_days: {dormancy}\n"
        f"format:\n  currency: USD\n  currency_symbol: '$'\n{extra}",
        encoding="utf-8",
    )
    return path


def _contracts(rng: np.random.Generator, customers: pd.DataFrame) -> pd.DataFrame:
    """Yearly contracts from acquisition, each renewed with probability 0.75."""
    rows = []
    for cid, acq in zip(customers.customer_id, customers.acquired_at, strict=True):
        start, prev, k = pd.Timestamp(acq), None, 0
        value = round(float(rng.gamma(2.0, 5000.0)), 2)
        while start <= AS_OF:
            k += 1
            cid_k = f"{cid}-{k}"
            end = start + pd.DateOffset(years=1) - pd.Timedelta(days=1)
            rows.append((cid_k, cid, start.date(), end.date(), value, prev))
            if rng.random() > 0.75:
                break
            prev, start = cid_k, end + pd.Timedelta(days=1)
    return pd.DataFrame(
        rows,
        columns=[
            "contract_id",
            "customer_id",
            "start_date",
            "end_date",
            "annual_value",
            "renewal_of",
        ],
    )
