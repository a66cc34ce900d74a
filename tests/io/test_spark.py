"""engine: spark — the same Ibis expressions on a local Spark session give DuckDB's numbers.

One generated dataset (a few hundred customers, all eight tables) is loaded twice: once on
the embedded DuckDB engine and once with ``engine: spark`` (validated in DuckDB, handed to
Spark as Parquet, queried through Ibis' PySpark backend). The per-customer features at one
``as_of`` and the KPI series over a handful of months must agree.

Skips, saying why, where Java or pyspark (``pip install 'fupan[spark]'``) is missing. The
session uses :data:`fupan.io.engine.SMALL_DATA_CONF` so the module runs in about a minute or
two on two cores (JVM start and query planning dominate at this size, not data).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile
import pytest
from fupan.io import engine

_WHY = engine.spark_available()
pytestmark = [
    pytest.mark.skipif(_WHY is not None, reason=f"Spark engine not testable here: {_WHY}"),
    pytest.mark.timeout(900),
]

AS_OF = "2026-10-31"
MONTHS = ["2026-08", "2026-09", "2026-10"]
CUSTOMERS = 300


def _params(folder: Path, data: Path, eng: str):
    from fupan.core import params as fparams

    return fparams.load(paramfile.write(folder, data, name="spark-check", as_of=AS_OF, engine=eng))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory):
    """(DuckDB dataset, Spark dataset) over the same generated data."""
    from fupan import demo
    from fupan.io import data as fdata

    root = tmp_path_factory.mktemp("spark")
    data = root / "data"
    demo.generate(data, customers=CUSTOMERS, seed=11, fmt="parquet")
    # Started first, so the load below reuses it (spark_session returns the running session).
    session = engine.spark_session(
        app="fupan-test", warehouse=root / "warehouse", conf=engine.SMALL_DATA_CONF
    )
    duck = fdata.load(_params(root / "duck", data, "duckdb"))
    spark = fdata.load(_params(root / "spark", data, "spark"), work_dir=root / "work")
    yield duck, spark
    duck.close()
    spark.close()
    session.stop()


def test_spark_dataset_runs_on_spark(engines):
    duck, spark = engines
    assert duck.con.name == "duckdb"
    assert spark.con.name == "pyspark"
    assert spark.present == duck.present
    for table in duck.present:
        n_duck = duck[table].count().to_pyarrow().as_py()
        assert spark[table].count().to_pyarrow().as_py() == n_duck, table


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.columns) == list(b.columns), what
    assert len(a) == len(b), what
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            np.testing.assert_array_equal(np.isnan(xv), np.isnan(yv), err_msg=f"{what}.{col} nulls")
            np.testing.assert_allclose(xv, yv, rtol=1e-9, atol=1e-9, err_msg=f"{what}.{col}")
        else:
            xs = x.astype(object).where(x.notna(), None).astype(str).tolist()
            ys = y.astype(object).where(y.notna(), None).astype(str).tolist()
            assert xs == ys, f"{what}.{col}"


def test_customer_features_equal_on_spark(engines):
    from fupan.measures import features as F

    duck, spark = engines
    names = F.available(duck)
    assert names == F.available(spark)
    a = F.customer_features_before(duck, AS_OF)
    b = F.customer_features_before(spark, AS_OF)
    assert len(a) > CUSTOMERS // 2
    _assert_same(a, b, "features")
    # The comparison is not vacuous: the event features vary across customers.
    for col in ("orders_365d", "touches_90d", "tickets_90d", "nps_latest", "logins_28d"):
        assert a[col].nunique() > 1, col


def test_kpi_series_equal_on_spark(engines):
    from fupan.chapters import kpi

    duck, spark = engines
    va, ca = kpi.compute_series(duck, MONTHS, model_months=[], health_months=[])
    vb, cb = kpi.compute_series(spark, MONTHS, model_months=[], health_months=[])
    assert va.value.notna().sum() >= 10 * len(MONTHS)
    _assert_same(va.reset_index(drop=True), vb.reset_index(drop=True), "kpi values")
    _assert_same(ca.reset_index(drop=True), cb.reset_index(drop=True), "kpi completeness")


def test_churn_status_equal_on_spark(engines):
    from fupan.measures import outcomes

    duck, spark = engines
    day = dt.date.fromisoformat(AS_OF)
    a = outcomes.churn_status(duck, day).sort_values("customer_id").reset_index(drop=True)
    b = outcomes.churn_status(spark, day).sort_values("customer_id").reset_index(drop=True)
    _assert_same(a, b, "churn status")
