"""One benchmark stage per invocation, so each is timed and measured as a whole process.

    python benchmarks/stages.py load DATA_DIR
    python benchmarks/stages.py features DATA_DIR
    python benchmarks/stages.py duckdb_floor DATA_DIR
    python benchmarks/stages.py ltv_fit DATA_DIR
    python benchmarks/stages.py spark_load DATA_DIR
    python benchmarks/stages.py spark_features DATA_DIR
    python benchmarks/stages.py review_load DATA_DIR PARAMS_FILE
    python benchmarks/stages.py csv_floor DATA_DIR

Each prints one ``RESULT {json}`` line; run.py reads it. ``features`` and ``duckdb_floor``
leave their per-customer frames beside the data (``_bench_features.parquet``,
``_bench_floor.parquet``) and ``duckdb_floor`` compares the two (after its timing). ``spark_features`` runs the same
catalogue on a local Spark session (``engine: spark``), leaves ``_bench_features_spark.parquet``
and compares it with the DuckDB stage's frame. The Spark stages print ``PART {json}`` as each
part ends, so a stage stopped at its time or memory limit still tells how far it got.

The two compared timings start after a full garbage collection. Loading leaves ~170k
Python objects behind; the collection they make due (~0.1 s) otherwise falls inside
whatever runs next, which at 10k customers was a fifth of the feature query's time.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AS_OF = "2026-10-31"
FEATURES_FILE = "_bench_features.parquet"
FLOOR_FILE = "_bench_floor.parquet"
SUMMARY_FILE = "_bench_summary.csv"
SPARK_FEATURES_FILE = "_bench_features_spark.parquet"
# Spark's scratch (the Parquet hand-off, its warehouse and shuffle files) goes under the
# benchmark's work folder, one per data folder, which the driver clears: a stage killed at
# its limit leaves it behind.
SPARK_TMP = HERE / "work" / "spark-tmp"


def _params(data: str, engine: str = "duckdb"):
    from fupan.core import params as fparams

    folder = Path(tempfile.mkdtemp(prefix="fupan-bench-"))
    path = folder / "p.yaml"
    bench = ROOT / "params" / "benchmarks.yaml"
    path.write_text(
        f"name: bench\nas_of: {AS_OF}\nengine: {engine}\nbenchmarks_file: {bench}\n"
        f"data:\n  source: {data}\n",
        encoding="utf-8",
    )
    return fparams.load(path)


def _part(**values) -> None:
    print("PART " + json.dumps(values, default=float), flush=True)


def load(data: str) -> dict:
    from fupan.io import data as fdata

    t0 = time.perf_counter()
    ds = fdata.load(_params(data), work_dir=Path(tempfile.mkdtemp(prefix="fupan-bench-work-")))
    rows = {t: ds.report.profile[t]["clean_rows"] for t in ds.report.present}
    ds.close()
    return {"rows": rows, "load_seconds": time.perf_counter() - t0}


def review_load(data: str, params_file: str) -> dict:
    """Load + validate as a review does it: the review's params, a staging file on disk."""
    import shutil

    from fupan.core import params as fparams
    from fupan.io import data as fdata

    p = fparams.load(params_file, **{"data.source": data})
    work = Path(tempfile.mkdtemp(prefix="fupan-bench-work-"))
    t0, c0 = time.perf_counter(), time.process_time()
    ds = fdata.load(p, work_dir=work)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = {t: ds.report.profile[t]["clean_rows"] for t in ds.report.present}
    ds.close()
    shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows, "load_seconds": seconds, "load_cpu_seconds": cpu}


#: How often the floor reads every file (it is short: its median is compared).
FLOOR_REPEATS_CSV = 3


def csv_floor(data: str) -> dict:
    """The floor of a CSV load: DuckDB's own ``read_csv`` of every file plus one aggregate.

    Per table ``SELECT count(*), max(<first column>) FROM read_csv(file)``: every row is
    parsed and one column's values are kept, nothing is checked or staged. Repeated
    ``FLOOR_REPEATS_CSV`` times in this process (the files are in the page cache from the
    first pass, as they are for the load measured beside it); the median is the floor.
    """
    import statistics

    import duckdb

    files = sorted(Path(data).glob("*.csv"))
    if not files:
        raise SystemExit(f"no CSV files in {data}")
    # the first column's name from the header line, outside the timing
    first = {
        f: f.open(encoding="utf-8-sig").readline().split(",")[0].strip().strip('"') for f in files
    }
    runs, cpus, rows = [], [], {}
    for _ in range(FLOOR_REPEATS_CSV):
        con = duckdb.connect()
        t0, c0 = time.perf_counter(), time.process_time()
        for f in files:
            sql = f"SELECT count(*), max(\"{first[f]}\") FROM read_csv('{f}')"
            rows[f.stem] = int(con.execute(sql).fetchone()[0])
        runs.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        con.close()
    # Beside the floor (not the target's): every column typed and stored in an in-memory
    # table, as a load must at least do; the aggregate above converts one column only.
    con = duckdb.connect()
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        con.execute(f"CREATE TABLE \"{f.stem}\" AS SELECT * FROM read_csv('{f}')")
    tables = (time.perf_counter() - t0, time.process_time() - c0)
    con.close()
    return {
        "rows": rows,
        "floor_seconds": statistics.median(runs),
        "floor_cpu_seconds": statistics.median(cpus),
        "runs": runs,
        "tables_seconds": tables[0],
        "tables_cpu_seconds": tables[1],
    }


def features(data: str) -> dict:
    """Load + validate (in memory), then the whole feature catalogue at as_of, into pandas."""
    from fupan.io import data as fdata
    from fupan.measures import features as ffeat

    t0 = time.perf_counter()
    ds = fdata.load(_params(data))
    gc.collect()
    t1 = time.perf_counter()
    df = ffeat.customer_features_before(ds, ds.params.as_of)
    t2 = time.perf_counter()
    df.to_parquet(Path(data) / FEATURES_FILE, index=False)
    return {
        "customers": len(df),
        "features": len(df.columns) - 2,
        "load_seconds": t1 - t0,
        "feature_seconds": t2 - t1,
    }


def duckdb_floor(data: str) -> dict:
    """The same per-customer features as one hand-written DuckDB query (see floor.py)."""
    import duckdb
    import pandas as pd

    sys.path.insert(0, str(HERE))
    import floor

    p = _params(data)
    con = duckdb.connect()
    src = Path(data)
    for name in floor.TABLES:
        path = next(
            (
                src / f"{name}.{ext}"
                for ext in ("parquet", "csv")
                if (src / f"{name}.{ext}").exists()
            ),
            None,
        )
        if path is None:
            raise SystemExit(f"the floor query needs every table; {name} is missing in {src}")
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {reader}('{path}')")
    dims = tuple(sorted(c for c in con.table("surveys").columns if c.startswith("dim_")))
    query = floor.sql(
        AS_OF,
        p.benchmarks.sla_first_response_days,
        p.churn.first_repeat_touch_days,
        p.churn.login_gap_cap_weeks,
        dims,
    )
    gc.collect()
    t0 = time.perf_counter()
    df = con.execute(query).df()
    seconds = time.perf_counter() - t0
    df.to_parquet(src / FLOOR_FILE, index=False)
    out = {"customers": len(df), "features": len(df.columns) - 1, "query_seconds": seconds}
    ours = src / FEATURES_FILE
    if ours.exists():
        out["check"] = floor.compare(pd.read_parquet(ours), df)
    return out


def ltv_fit(data: str) -> dict:
    """Order summary in the engine, then fupan's BG/NBD and Gamma-Gamma fits (timed apart)."""
    import ibis
    from fupan.models import ltv

    con = ibis.duckdb.connect()
    src = Path(data)
    orders_path = next(p for p in (src / "orders.parquet", src / "orders.csv") if p.exists())
    if orders_path.suffix == ".parquet":
        orders = con.read_parquet(str(orders_path))
    else:
        orders = con.read_csv(str(orders_path))
    t0 = time.perf_counter()
    summary = ltv.summary_from_orders(orders, AS_OF, freq="W")
    t1 = time.perf_counter()
    bg = ltv.BetaGeo().fit(summary)
    t2 = time.perf_counter()
    rep = summary[(summary.frequency > 0) & (summary.monetary > 0)]
    gg = ltv.GammaGamma().fit(rep)
    t3 = time.perf_counter()
    summary[["frequency", "recency", "T", "monetary"]].to_csv(src / SUMMARY_FILE, index=False)
    return {
        "customers": len(summary),
        "repeat_customers": len(rep),
        "time_unit": summary.attrs.get("time_unit"),
        "summary_seconds": t1 - t0,
        "bgnbd_fit_seconds": t2 - t1,
        "bgnbd_converged": bool(bg.converged_),
        "bgnbd_log_likelihood": bg.log_likelihood_,
        "bgnbd_params": bg.params_,
        "gamma_gamma_fit_seconds": t3 - t2,
        "gamma_gamma_log_likelihood": gg.log_likelihood_,
        "gamma_gamma_params": gg.params_,
        "fit_seconds": t3 - t1,
    }


def _spark_dataset(data: str):
    """A local Spark session as fupan starts it, then load + validate + hand-off to it.

    Prints each part's seconds as it ends. The session is the one a review gets
    (``engine.spark_session``: ``local[2]``, driver memory ``FUPAN_SPARK_DRIVER_MEMORY``
    or 4g); its scratch goes to ``SPARK_TMP``.
    """
    from fupan.io import data as fdata
    from fupan.io import engine

    root = SPARK_TMP / Path(data).name
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="stage-", dir=root))
    t0 = time.perf_counter()
    session = engine.spark_session(
        warehouse=scratch / "warehouse", conf={"spark.local.dir": str(scratch / "local")}
    )
    conf = session.sparkContext.getConf()
    _part(
        session_seconds=time.perf_counter() - t0,
        spark_version=session.version,
        master=conf.get("spark.master"),
        driver_memory=conf.get("spark.driver.memory"),
        shuffle_partitions=session.conf.get("spark.sql.shuffle.partitions"),
    )
    t1 = time.perf_counter()
    ds = fdata.load(_params(data, "spark"), work_dir=scratch / "work")
    rows = {t: ds.report.profile[t]["clean_rows"] for t in ds.report.present}
    _part(load_seconds=time.perf_counter() - t1, rows=rows)
    return ds, scratch, t0


def spark_load(data: str) -> dict:
    """Load + validate (DuckDB, as always) and the hand-off of every table to Spark."""
    import shutil

    ds, scratch, t0 = _spark_dataset(data)
    # the hand-off registers views over Parquet; count every table so Spark reads each once
    t1 = time.perf_counter()
    counts = {t: int(ds[t].count().execute()) for t in ds.report.present}
    out = {"spark_count_seconds": time.perf_counter() - t1, "spark_rows": counts}
    out["total_seconds"] = time.perf_counter() - t0
    ds.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def spark_features(data: str) -> dict:
    """The feature catalogue at as_of on Spark; compared with the DuckDB stage's frame."""
    import shutil

    import pandas as pd

    sys.path.insert(0, str(HERE))
    import floor
    from fupan.measures import features as ffeat

    ds, scratch, _ = _spark_dataset(data)
    gc.collect()
    t0 = time.perf_counter()
    df = ffeat.customer_features(ds, ds.params.as_of)
    out = {
        "customers": len(df),
        "features": len(df.columns) - 2,
        "feature_seconds": time.perf_counter() - t0,
    }
    ds.close()
    df.to_parquet(Path(data) / SPARK_FEATURES_FILE, index=False)
    ours = Path(data) / FEATURES_FILE
    if ours.exists():  # outside the timing: same customers, same values (rtol 1e-9)?
        out["check"] = floor.compare(pd.read_parquet(ours), df)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


if __name__ == "__main__":
    stage, data = sys.argv[1], str(Path(sys.argv[2]).resolve())
    result = globals()[stage](data, *sys.argv[3:])
    print("RESULT " + json.dumps(result, default=float))
