"""Query engines: DuckDB embedded by default, Spark when one machine is not enough.

Loading and validation always stage the clean tables in DuckDB (cheap, local, exact error
reports). With ``engine: spark`` the staged tables are handed to a Spark session as Parquet,
and every chapter's Ibis expressions run there unchanged through Ibis' PySpark backend.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

PARQUET_DIR = "parquet"


def spark_session(app: str = "fupan", cores: int = 2, warehouse: str | Path | None = None) -> Any:
    """A local Spark session configured for these machines.

    A per-session warehouse folder avoids LOCATION_ALREADY_EXISTS from a leftover
    ``spark-warehouse/``; the UI is off and Spark binds to the loopback address only.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            "engine: spark needs the spark extra: pip install 'fupan[spark]'"
        ) from exc
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", "python3"))
    wh = Path(warehouse) if warehouse else Path(tempfile.mkdtemp(prefix="fupan-spark-wh-"))
    session = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.warehouse.dir", str(wh))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(2, cores * 2)))
        .config("spark.driver.memory", os.environ.get("FUPAN_SPARK_DRIVER_MEMORY", "4g"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def export_parquet(con: Any, tables: list[str], folder: str | Path) -> Path:
    """Write the staged DuckDB tables as Parquet files for another engine to read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in tables:
        con.table(name).to_parquet(folder / f"{name}.parquet")
    return folder


def spark_backend(folder: str | Path, tables: list[str], session: Any | None = None) -> Any:
    """An Ibis PySpark backend with each staged table registered as a view."""
    import ibis

    con = ibis.pyspark.connect(session or spark_session())
    for name in tables:
        con.read_parquet(str(Path(folder) / f"{name}.parquet"), table_name=name)
    return con
