"""Data shapes the demo generator never makes, built from scratch for the shape matrix.

Each builder writes a data folder and a params file into ``root`` and returns the params
path. The transaction logs come from a small simulation of our own (a purchase rate and a
lifetime per customer), not from :mod:`fupan.demo`, so no test here can lean on the demo's
planted effects. CDNOW is the real order log of Fader and Hardie, shipped in the
``lifetimes`` wheel (copied into ``tests/data/cdnow``).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile

TESTS = Path(__file__).parent
CDNOW_MASTER = TESTS / "data" / "cdnow" / "CDNOW_master.txt.gz"
AS_OF = pd.Timestamp("2026-10-31")


def cdnow_orders() -> pd.DataFrame:
    """The full CDNOW log with its four real columns under contract names where they exist."""
    with gzip.open(CDNOW_MASTER, "rt", encoding="ascii") as fh:
        df = pd.read_csv(
            fh,
            sep=r"\s+",
            header=0,
            names=["customer_id", "date", "number_of_cds", "amount"],
            dtype={"customer_id": str, "date": str},
        )
    return pd.DataFrame(
        {
            "customer_id": df.customer_id,
            "order_date": pd.to_datetime(df.date, format="%Y%m%d").dt.strftime("%Y-%m-%d"),
            "number_of_cds": df.number_of_cds,
            "amount": df.amount,
        }
    )


def simulate_log(
    n: int,
    seed: int,
    start: str = "2023-11-01",
    end: pd.Timestamp = AS_OF,
    monthly_rate: tuple[float, float] = (0.3, 2.0),
    mean_life_days: float | None = 700.0,
    same_day_acquisition: bool = False,
    acquire_days: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers and their orders: each buys at its own Poisson rate until its lifetime ends.

    Returns (customers with customer_id and acquired_at, orders with customer_id,
    order_date as a Timestamp and amount).
    """
    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start), end
    span = (t1 - t0).days
    if same_day_acquisition:
        acq = np.zeros(n, dtype=int)
    else:
        acq = np.sort(rng.integers(0, acquire_days or max(span - 30, 1), size=n))
    rate = rng.uniform(*monthly_rate, size=n) / 30.4
    life = (
        rng.exponential(mean_life_days, size=n)
        if mean_life_days is not None
        else np.full(n, np.inf)
    )
    scale = rng.lognormal(5.0, 0.6, size=n)
    rows: list[tuple[str, int, float]] = []
    for i in range(n):
        stop = min(span, acq[i] + life[i])
        day = float(acq[i])
        rows.append((i, acq[i], scale[i]))  # the first order is the acquisition
        while True:
            day += rng.exponential(1.0 / rate[i])
            if day >= stop:
                break
            rows.append((i, int(day), scale[i] * rng.lognormal(0.0, 0.3)))
    ids = np.array([f"K{i:05d}" for i in range(n)])
    o = pd.DataFrame(rows, columns=["i", "day", "amount"])
    orders = pd.DataFrame(
        {
            "customer_id": ids[o.i.to_numpy()],
            "order_date": t0 + pd.to_timedelta(o.day, unit="D"),
            "amount": o.amount.round(2),
        }
    )
    customers = pd.DataFrame(
        {"customer_id": ids, "acquired_at": (t0 + pd.to_timedelta(acq, unit="D")).date}
    )
    return customers, orders


def _params(
    root: Path,
    *,
    name: str,
    as_of: str,
    business_model: str = "non_contractual",
    extra: str = "",
    lang: str = "en",
) -> Path:
    return paramfile.write(
        root,
        "data",
        'format:\n  currency: USD\n  currency_symbol: "$"\n' + extra,
        benchmarks_file=None,
        name=name,
        kind="annual_review",
        lang=lang,
        as_of=as_of,
        business_model=business_model,
        seed=7,
    )


def _write(root: Path, **tables: pd.DataFrame) -> None:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(data / f"{name}.csv", index=False)


def _orders_out(orders: pd.DataFrame) -> pd.DataFrame:
    out = orders.copy()
    out["order_date"] = pd.to_datetime(out.order_date).dt.strftime("%Y-%m-%d")
    return out


def cdnow(root: Path) -> Path:
    """1. Full CDNOW, orders only, as the issue's new user ran it."""
    _write(root, orders=cdnow_orders())
    return _params(
        root,
        name="CDNOW review",
        as_of="1998-06-30",
        extra="period_start: 1997-07-01\nchurn_definition:\n  dormancy_days: 180\n",
    )


def orders_only(root: Path) -> Path:
    """2. A synthetic transaction log: orders with customer, date and amount only."""
    _, orders = simulate_log(400, seed=11)
    _write(root, orders=_orders_out(orders))
    return _params(root, name="orders only", as_of=str(AS_OF.date()))


def key_columns(root: Path) -> Path:
    """3. customers and orders with their key columns only (no tier, region, industry)."""
    customers, orders = simulate_log(300, seed=12)
    orders = _orders_out(orders)
    orders.insert(0, "order_id", [f"ORD-{i}" for i in range(len(orders))])
    _write(root, customers=customers, orders=orders)
    return _params(root, name="key columns", as_of=str(AS_OF.date()))


def contractual(root: Path) -> Path:
    """4. A subscription business: contracts with renewals, no orders at all."""
    rng = np.random.default_rng(13)
    rows = []
    for i in range(300):
        start = pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(rng.integers(0, 1000)))
        value = round(float(rng.lognormal(8.0, 0.7)), 2)
        prev = None
        k = 0
        while start <= AS_OF:
            cid = f"CT{i:04d}-{k}"
            end = start + pd.DateOffset(years=1) - pd.Timedelta(days=1)
            rows.append((cid, f"S{i:04d}", start.date(), end.date(), value, prev))
            if rng.random() < 0.2:  # not renewed
                break
            prev, k = cid, k + 1
            start = end + pd.Timedelta(days=1)
            value = round(value * float(rng.uniform(0.9, 1.2)), 2)
    contracts = pd.DataFrame(
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
    _write(root, contracts=contracts)
    return _params(
        root,
        name="subscriptions",
        as_of=str(AS_OF.date()),
        business_model="contractual",
        extra="tiers:\n  order: [enterprise, team]\n  core: [enterprise]\n",
    )


def short_history(root: Path) -> Path:
    """5. Nine months of history: shorter than a base year plus a review year."""
    _, orders = simulate_log(300, seed=14, start="2026-02-01", monthly_rate=(1.0, 3.0))
    _write(root, orders=_orders_out(orders))
    return _params(root, name="short history", as_of=str(AS_OF.date()))


def thirty_customers(root: Path) -> Path:
    """6. 30 customers."""
    customers, orders = simulate_log(30, seed=15)
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="thirty", as_of=str(AS_OF.date()))


def custom_tier(root: Path) -> Path:
    """7. One tier, with the business's own name for it."""
    customers, orders = simulate_log(300, seed=16)
    customers["tier"] = "member"
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(
        root,
        name="one tier",
        as_of=str(AS_OF.date()),
        extra="tiers:\n  order: [member]\n  core: [member]\n  spend_floors: [0]\n",
    )


def same_day(root: Path) -> Path:
    """8. Every customer acquired on the same day."""
    customers, orders = simulate_log(300, seed=17, same_day_acquisition=True)
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="one cohort", as_of=str(AS_OF.date()))


def no_churn(root: Path) -> Path:
    """9. Nobody churns: every customer buys often until as_of."""
    customers, orders = simulate_log(300, seed=18, monthly_rate=(3.0, 6.0), mean_life_days=None)
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="no churn", as_of=str(AS_OF.date()))


def heavy_churn(root: Path) -> Path:
    """10. About 90% of the customers have churned by as_of."""
    customers, orders = simulate_log(
        300,
        seed=19,
        start="2023-01-01",
        monthly_rate=(0.5, 2.0),
        mean_life_days=250.0,
        acquire_days=700,
    )
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="heavy churn", as_of=str(AS_OF.date()))


def timezones(root: Path) -> Path:
    """11. Order timestamps with times and UTC offsets (a CRM exporting in local time)."""
    customers, orders = simulate_log(300, seed=20)
    rng = np.random.default_rng(20)
    secs = rng.integers(0, 86_400, size=len(orders))
    ts = pd.to_datetime(orders.order_date) + pd.to_timedelta(secs, unit="s")
    orders = orders.assign(order_date=ts.dt.strftime("%Y-%m-%dT%H:%M:%S") + "+08:00")
    _write(root, customers=customers, orders=orders)
    return _params(root, name="time zones", as_of=str(AS_OF.date()))


NOISE_COLUMN = "industry"


def noise_column(root: Path) -> Path:
    """12. A categorical column of pure noise with 10 levels (assigned at random)."""
    customers, orders = simulate_log(600, seed=21)
    rng = np.random.default_rng(121)
    customers[NOISE_COLUMN] = rng.choice([f"sector-{k}" for k in range(10)], size=len(customers))
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="noise", as_of=str(AS_OF.date()))


def high_frequency(root: Path) -> Path:
    """13. High-frequency buyers: several orders a day."""
    customers, orders = simulate_log(50, seed=22, start="2025-06-01", monthly_rate=(30.0, 90.0))
    _write(root, customers=customers, orders=_orders_out(orders))
    return _params(root, name="high frequency", as_of=str(AS_OF.date()))


SHAPES: dict[str, Callable[[Path], Path]] = {
    "cdnow": cdnow,
    "orders_only": orders_only,
    "key_columns": key_columns,
    "contractual": contractual,
    "short_history": short_history,
    "thirty_customers": thirty_customers,
    "custom_tier": custom_tier,
    "same_day": same_day,
    "no_churn": no_churn,
    "heavy_churn": heavy_churn,
    "timezones": timezones,
    "noise_column": noise_column,
    "high_frequency": high_frequency,
}


# The consistency gate (tests/e2e/test_gate_shapes.py): the metrics both chapters quote with a value on each shape (what its tables allow) ...
VALUED = {
    "demo": {"annual_churn", "nrr", "grr", "top_n_renewal", "touch_coverage"},
    "contractual": {"annual_churn", "nrr", "grr", "top_n_renewal"},
    "cdnow": {"annual_churn"},
}
# ... and those both say cannot be computed: touch coverage without touches; CDNOW's
# orders start 1997-01-01, inside the base year (1996-07-01 .. 1997-06-30) of revenue
# retention at 1998-06-30
NO_VALUE = {
    "demo": set(),
    "contractual": {"touch_coverage"},
    "cdnow": {"nrr", "grr", "touch_coverage"},
}


def check_gate(name: str, results: dict, params_path: Path, **overrides) -> None:
    """The gate passes on ``results`` and quotes the expected metrics with and without a
    value."""
    from fupan.core import params as fparams
    from fupan.report import gate

    params = fparams.load(params_path, **overrides)
    assert gate.check(results, params) == []
    groups = gate.shared(results, params)
    assert {"diagnosis", "kpi"} <= {q.key.split(".")[0] for g in groups for q in g}
    valued = {g[0].metric for g in groups if g[0].value is not None}
    empty = {g[0].metric for g in groups if g[0].value is None}
    assert VALUED[name] <= valued, valued
    assert NO_VALUE[name] == empty, empty


def cannot_show(results: dict) -> list[tuple[str, list[str], str]]:
    """What a run could not show, from results.json: per chapter section and reason, the
    slides and headline figures that reason explains (``<section>.skipped``), in the order
    the chapter recorded them. For the closing note of the shape matrix."""
    out: list[tuple[str, list[str], str]] = []
    for section, body in results.items():
        skipped = body.get("skipped") if isinstance(body, dict) else None
        if not isinstance(skipped, dict):
            continue
        by_reason: dict[str, list[str]] = {}
        for key, reason in skipped.items():
            by_reason.setdefault(reason, []).append(key)
        out.extend((section, keys, reason) for reason, keys in by_reason.items())
    return out


if __name__ == "__main__":  # python tests/shapes.py RUN_DIR...: what each run could not show
    import json
    import sys

    for run in map(Path, sys.argv[1:]):
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        print(f"### {results.get('run', {}).get('name', run.name)}")
        for section, keys, reason in cannot_show(results):
            print(f"- {section}: {', '.join(keys)}: {reason}")
        print()
