"""One benchmark stage per invocation, so each is timed and measured as a whole process.

    python benchmarks/stages.py load DATA_DIR
    python benchmarks/stages.py features DATA_DIR
    python benchmarks/stages.py duckdb_floor DATA_DIR
    python benchmarks/stages.py ltv_fit DATA_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _params(data: str):
    from fupan import params as fparams

    folder = Path(tempfile.mkdtemp(prefix="fupan-bench-"))
    path = folder / "p.yaml"
    path.write_text(f"name: bench\nas_of: 2026-10-31\nbenchmarks_file: null\ndata:\n  source: {data}\n", encoding="utf-8")
    return fparams.load(path)


def load(data: str) -> dict:
    from fupan import data as fdata

    ds = fdata.load(_params(data), work_dir=Path(tempfile.mkdtemp(prefix="fupan-bench-work-")))
    rows = {t: ds.report.profile[t]["clean_rows"] for t in ds.report.present}
    ds.close()
    return {"rows": rows}


def features(data: str) -> dict:
    from fupan import data as fdata
    from fupan import features as ffeat

    ds = fdata.load(_params(data))
    t0 = time.perf_counter()
    df = ffeat.customer_features(ds, ds.params.as_of)
    return {"customers": len(df), "features": len(df.columns), "feature_seconds": time.perf_counter() - t0}


def duckdb_floor(data: str) -> dict:
    """The floor for the feature stage: one plain DuckDB query of per-customer order aggregates."""
    import duckdb

    con = duckdb.connect()
    src = Path(data)
    orders = next(p for p in (src / "orders.parquet", src / "orders.csv") if p.exists())
    reader = "read_parquet" if orders.suffix == ".parquet" else "read_csv_auto"
    con.execute(f"CREATE TABLE orders AS SELECT * FROM {reader}('{orders}')")
    t0 = time.perf_counter()
    n = con.execute(
        """
        SELECT count(*) FROM (
          SELECT customer_id,
                 date_diff('day', max(order_date), DATE '2026-10-31') AS recency_days,
                 count(*) FILTER (WHERE order_date > DATE '2026-10-31' - INTERVAL 90 DAY) AS orders_90d,
                 count(*) FILTER (WHERE order_date > DATE '2026-10-31' - INTERVAL 365 DAY) AS orders_365d,
                 sum(amount) FILTER (WHERE order_date > DATE '2026-10-31' - INTERVAL 90 DAY) AS spend_90d,
                 sum(amount) FILTER (WHERE order_date > DATE '2026-10-31' - INTERVAL 365 DAY) AS spend_365d,
                 sum(amount) FILTER (WHERE order_date > DATE '2026-10-31' - INTERVAL 180 DAY
                                       AND order_date <= DATE '2026-10-31' - INTERVAL 90 DAY) AS spend_prev_90d
          FROM orders WHERE order_date < DATE '2026-10-31' GROUP BY customer_id)
        """
    ).fetchone()[0]
    return {"customers": n, "query_seconds": time.perf_counter() - t0}


def ltv_fit(data: str) -> dict:
    import ibis

    from fupan import ltv

    con = ibis.duckdb.connect()
    src = Path(data)
    orders_path = next(p for p in (src / "orders.parquet", src / "orders.csv") if p.exists())
    orders = con.read_parquet(str(orders_path)) if orders_path.suffix == ".parquet" else con.read_csv(str(orders_path))
    t0 = time.perf_counter()
    summary = ltv.summary_from_orders(orders, "2026-10-31", freq="W")
    t1 = time.perf_counter()
    bg = ltv.BetaGeo().fit(summary)
    t2 = time.perf_counter()
    rep = summary[summary.frequency > 0]
    rep = rep[rep.monetary > 0]
    ltv.GammaGamma().fit(rep)
    t3 = time.perf_counter()
    out = {"customers": len(summary), "summary_seconds": t1 - t0, "bgnbd_fit_seconds": t2 - t1,
           "gamma_gamma_fit_seconds": t3 - t2, "bgnbd_log_likelihood": bg.log_likelihood_,
           "bgnbd_params": bg.params_}
    summary[["frequency", "recency", "T"]].to_csv(Path(data) / "_bench_summary.csv", index=False)
    return out


if __name__ == "__main__":
    stage, data = sys.argv[1], sys.argv[2]
    result = globals()[stage](data)
    print("RESULT " + json.dumps(result, default=float))
