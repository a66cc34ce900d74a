"""Query engines: DuckDB embedded by default, Spark when one machine is not enough.

Loading and validation always stage the clean tables in DuckDB (cheap, local, exact error
reports). With ``engine: spark`` the staged tables are handed to a Spark session as Parquet,
and every chapter's Ibis expressions run there unchanged through Ibis' PySpark backend.

The session
    A Spark session already running in the process (a cluster notebook, a test fixture) is
    used as it is. Otherwise a local one is started: ``local[2]`` unless
    ``FUPAN_SPARK_MASTER`` names another master (``local[8]``, ``spark://host:7077``, ...),
    with ``FUPAN_SPARK_DRIVER_MEMORY`` (default ``4g``) for the driver. With a remote master
    the Parquet hand-off folder must be on storage every executor can read.

    Spark needs Java 17 or later (``make spark-deps`` installs Debian's
    ``default-jre-headless``). The JVM logs errors only (:func:`log4j2_config`), so Spark's
    start-up WARN lines do not reach a review's terminal; ``FUPAN_SPARK_LOG_LEVEL=warn``
    (or ``info``) shows them again.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARQUET_DIR = "parquet"

# For small data (tests, a few thousand customers): one shuffle partition, no adaptive
# re-planning, no whole-stage code generation and the JVM's quick (C1) compiler. Planning and
# JIT warm-up, not data, dominate there; these settings cut a 300-customer feature query
# from ~25 s to ~10 s on two cores. Not for large data: C1 code runs slower once warm.
SMALL_DATA_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


#: log4j 2 configuration for a local session's JVM: one console appender on stderr at the
#: chosen level. Spark's own default profile logs WARN and announces itself in two lines.
#: Java itself still prints one line, "WARNING: Using incubator modules:
#: jdk.incubator.vector" (Spark 4 adds that module; no log setting reaches it).
LOG4J2 = """\
rootLogger.level = {root}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = {level}
"""
# PySpark counts as Spark's shell: when the root level is not WARN, Spark prints "Setting
# default log level to WARN" and a hint on start-up. So the root logs WARN and the console
# appender's threshold drops what is below the chosen level.
_QUIETER_THAN_WARN = {"off", "fatal", "error", "warn"}
LOG_LEVEL_ENV = "FUPAN_SPARK_LOG_LEVEL"


def log4j2_config(level: str | None = None) -> Path:
    """A log4j 2 properties file for the JVM at ``level`` (default: ``$FUPAN_SPARK_LOG_LEVEL``,
    else ``error``), written once into the temporary folder."""
    level = (level or os.environ.get(LOG_LEVEL_ENV) or "error").strip().lower()
    if level not in {"off", "fatal", "error", "warn", "info", "debug", "trace", "all"}:
        raise ValueError(f"{LOG_LEVEL_ENV}={level!r}: use error, warn, info or debug")
    text = LOG4J2.format(level=level, root="warn" if level in _QUIETER_THAN_WARN else level)
    uid = getattr(os, "getuid", lambda: 0)()  # /tmp is shared: one file per user
    path = Path(tempfile.gettempdir()) / f"fupan-spark-log4j2-{level}-{uid}.properties"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # a session starting beside this one never reads half a file
    return path


def spark_available() -> str | None:
    """``None`` when a local Spark session can start here, else the reason it cannot."""
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'fupan[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and Path(java_home, "bin", "java").exists()):
        return "no Java runtime found (java not on PATH and JAVA_HOME unset); Spark needs Java 17+"
    return None


def spark_session(
    app: str = "fupan",
    cores: int = 2,
    warehouse: str | Path | None = None,
    conf: dict[str, str] | None = None,
) -> Any:
    """The running Spark session, or a new local one configured for these machines.

    A per-session warehouse folder avoids LOCATION_ALREADY_EXISTS from a leftover
    ``spark-warehouse/``; the UI is off and Spark binds to the loopback address only.
    ``conf`` adds or overrides settings of a new session (e.g. :data:`SMALL_DATA_CONF`).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            "engine: spark needs the spark extra: pip install 'fupan[spark]'"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", "python3"))
    wh = Path(warehouse) if warehouse else Path(tempfile.mkdtemp(prefix="fupan-spark-wh-"))
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(wh),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(max(2, cores * 2)),
        "spark.driver.memory": os.environ.get("FUPAN_SPARK_DRIVER_MEMORY", "4g"),
        # Results come back to pandas one row per customer, through Arrow.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **(conf or {}),
    }
    # the log configuration joins any JVM options the caller gives (SMALL_DATA_CONF's)
    java_opts = f"-Dlog4j2.configurationFile={log4j2_config().as_uri()}"
    given = settings.get("spark.driver.extraJavaOptions")
    settings["spark.driver.extraJavaOptions"] = f"{java_opts} {given}" if given else java_opts
    builder = SparkSession.builder.master(
        os.environ.get("FUPAN_SPARK_MASTER", f"local[{cores}]")
    ).appName(app)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
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


def to_pandas(expr: Any) -> Any:
    """``expr.to_pandas()``, without Python objects for every value of a column with nulls.

    Ibis 12's DuckDB backend converts any Arrow column that has a null with
    ``to_pylist()``: one Python object per row before pandas sees it. At a million customers
    that is most of the time of a query whose result has dates or reasons that can be
    missing (``churned_at``, ``last_order``). On DuckDB the result is fetched as Arrow and
    converted by :func:`arrow_to_pandas`; every other backend goes through Ibis unchanged.
    """
    backend = expr._find_backend()
    if getattr(backend, "name", None) != "duckdb":
        return expr.to_pandas()
    table = fetch_arrow(backend, lambda: backend._to_duckdb_relation(expr).to_arrow_table())
    return arrow_to_pandas(table, expr)


def fetch_arrow(backend: Any, fetch: Callable[[], Any]) -> Any:
    """``fetch()`` (a DuckDB query returning an Arrow table), again without the memory cap
    when DuckDB runs out of memory under it.

    Parameters
    ----------
    backend : the Ibis DuckDB backend the query runs on.
    fetch : runs the query and returns its ``pyarrow.Table``.
    """
    import duckdb

    try:
        return fetch()
    except duckdb.OutOfMemoryException as exc:
        # ``engine_memory_gb`` caps DuckDB so that two notebooks share the machine; a query
        # that cannot run under the cap even by spilling is better slow than a failed review
        warnings.warn(
            f"DuckDB needed more than engine_memory_gb ({exc.__class__.__name__}); "
            "this notebook continues with DuckDB's default memory limit",
            RuntimeWarning,
            stacklevel=3,
        )
        # RESET alone changes the setting but not the limit in force (DuckDB 1.5): set the
        # default it reports back explicitly
        backend.raw_sql("RESET memory_limit")
        default = backend.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
        backend.raw_sql(f"SET memory_limit = '{default}'")
        return fetch()


def arrow_to_pandas(table: Any, expr: Any) -> Any:
    """The pandas result of DuckDB's Arrow ``table`` for ``expr``, as ``expr.to_pandas()``
    would give it: same values, same dtypes.

    For float, string, date and boolean columns Arrow's own conversion gives the same values
    and dtype as Ibis' per-value path, so those take it; every other column with a null
    goes through ``to_pylist()`` as in Ibis. Tests compare the two on every column type the
    contract has.

    Parameters
    ----------
    table : the ``pyarrow.Table`` DuckDB returned for ``expr``'s SQL.
    expr : the Ibis expression (its schema decides the final dtypes).
    """
    import pandas as pd
    import pyarrow.types as pat
    from ibis.backends.duckdb.converter import DuckDBPandasData

    def fast(t: Any) -> bool:
        # with nulls, Arrow's conversion gives what Ibis builds from to_pylist(): float NaN;
        # object str/None; object date/None; object bool/None
        return (
            pat.is_floating(t)
            or pat.is_string(t)
            or pat.is_large_string(t)
            or pat.is_date32(t)
            or pat.is_boolean(t)
        )

    df = pd.DataFrame(
        {
            name: (
                col.to_pylist()
                if pat.is_nested(col.type)
                or pat.is_dictionary(col.type)
                or (col.null_count and not fast(col.type))
                # dates straight to datetime64 (NaT for nulls), not a datetime.date object
                # per value: Ibis then casts to its own unit either way
                else col.to_pandas(date_as_object=not pat.is_date32(col.type))
            )
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )
    df = DuckDBPandasData.convert_table(df, expr.as_table().schema())
    return expr.__pandas_result__(df)


def isin(values: Any, members: Any) -> Any:
    """``pd.Index(values).isin(members)`` as a boolean array, fast for text ids.

    pandas' ``isin`` on its Arrow-backed ``str`` dtype (customer ids, from every query)
    turns each of ``members`` into an Arrow scalar in Python first: about a second per
    million members, however short ``values`` is. When ``values`` are ``str`` and the
    members are all text, Arrow's hash-set kernel answers instead; anything else goes to
    pandas. Missing values match each other, as in pandas.

    Parameters
    ----------
    values : Series, Index, array or list to test.
    members : set, list, array, Series, Index or Arrow array of the values looked for.

    Returns
    -------
    Boolean numpy array, one entry per element of ``values``.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    left = values if isinstance(values, pd.Series | pd.Index) else pd.Index(values)

    def by_pandas() -> Any:
        listed = members.to_pylist() if isinstance(members, pa.Array | pa.ChunkedArray) else members
        if isinstance(listed, set | frozenset | dict):
            listed = list(listed)
        return np.asarray(pd.Index(left).isin(listed), dtype=bool)

    dtype = left.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return by_pandas()
    if isinstance(members, pa.Array | pa.ChunkedArray):
        found = members
        if not (pa.types.is_string(found.type) or pa.types.is_large_string(found.type)):
            return by_pandas()
    else:
        mdtype = getattr(members, "dtype", None)
        if isinstance(mdtype, pd.StringDtype) and mdtype.storage == "pyarrow":
            found = pa.array(members)
        else:
            listed = list(members)
            if not all(type(m) is str for m in listed):
                return by_pandas()
            found = pa.array(listed, type=pa.large_string())
    if len(found) == 0:
        return np.zeros(len(left), dtype=bool)
    column = pa.array(left)
    hit = pc.is_in(column, value_set=found.cast(column.type))
    return np.asarray(hit.fill_null(False), dtype=bool)
