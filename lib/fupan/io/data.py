"""Load a data source into the embedded engine, check it against the contract, stage it.

Every table arrives as text in a DuckDB staging database (through Ibis), is cast to the
contract's types there with ``TRY_CAST`` so bad values are counted and shown rather than
crashing, and is cleaned by the rules in params (orphans, rows after ``as_of``). pandas never
sees the raw event tables: notebooks query the staged tables through Ibis and pull one row
per customer.

:func:`load` runs the steps in order; each has its own module: reading the source
(:mod:`fupan.io.reading`), typing and the contract's checks (:mod:`fupan.io.contract`),
cleaning (:mod:`fupan.io.cleaning`), spend tiers (:mod:`fupan.io.tiers`). The result is a
:class:`fupan.io.dataset.Dataset`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.io import sources
from fupan.io.cleaning import _clean_table
from fupan.io.contract import _check_and_type, _check_value_maps
from fupan.io.dataset import Dataset
from fupan.io.reading import _SOURCE_DB, _sql_name, _stage_source
from fupan.io.schema import CORE_TABLES, TABLES
from fupan.io.tiers import fill_tiers
from fupan.io.validation import DataValidationError, Severity, ValidationReport

warnings.filterwarnings("ignore", message=".*infer_string.*")


STAGED_NAME = "staged.duckdb"


REPORT_NAME = "validation.json"


def _stage_tables(
    con: Any, staged: list[str], params: Params, report: ValidationReport, source: str
) -> None:
    """Type, check, derive and clean every staged table, in the order cleaning needs.

    ``customers`` is typed first; then ``orders`` and ``contracts``, from which a missing
    ``customers`` table (or its ``acquired_at``) is derived; then customers are cleaned
    (their keys decide orphans), then every event table, one at a time.
    """
    _check_value_maps(params, report)
    _require_core(staged, params, report, source)
    for name in TABLES:
        if name not in staged and name != "customers":
            if not any(p.table == name for p in report.errors):
                report.missing_optional.append(name)
    # Cleaning findings follow every check finding in the report, as the user fixes the
    # export first; they are collected aside while tables are cleaned one by one.
    cleaning = ValidationReport()
    staged.sort(key=list(TABLES).index)
    core = [n for n in CORE_TABLES if n in staged]
    typed = [
        n for n in ["customers", *core] if n in staged and _type_one(con, n, params, report, staged)
    ]
    if "orders" not in staged and "contracts" in typed:
        _orders_from_contracts(con, report)
        core, typed = ["orders", *core], ["orders", *typed]
    events = [n for n in core if n in typed]
    customers_ok = "customers" in typed or "customers" not in staged
    if customers_ok and (events or "customers" in typed):
        if _finalise_customers(con, params, report, "customers" in typed, events):
            if "customers" not in report.present:
                report.present.append("customers")
            _clean_table(con, "customers", params, cleaning)
            for name in events:
                _clean_table(con, name, params, cleaning)
    for name in staged:
        if name in ("customers", *core):
            continue
        if _type_one(con, name, params, report, staged) and "customers" in report.present:
            _clean_table(con, name, params, cleaning)
            con.raw_sql(f"DROP TABLE IF EXISTS temp.main.{_sql_name('typed_' + name)}")
    report.problems.extend(cleaning.problems)
    if "customers" in report.present and report.ok:
        _after_clean(con, params, report)
    _check_param_references(params, report)
    for name in core:
        con.raw_sql(f"DROP TABLE IF EXISTS temp.main.{_sql_name('typed_' + name)}")


def _require_core(staged: list[str], params: Params, report: ValidationReport, source: str) -> None:
    """The minimum input: orders, or contracts for a contractual business."""
    if any(p.table in CORE_TABLES for p in report.errors):
        return
    fix = (
        f"add orders.csv (or .parquet/.xlsx) to {source}, or name the file in params: "
        "data.files.orders"
    )
    if "orders" in staged:
        return
    if "contracts" not in staged:
        report.add(
            "error",
            "orders",
            None,
            "missing_file",
            0,
            f"no orders table in {source} (nor contracts): the minimum input is orders with "
            "customer_id, order_date and amount (a contractual business may give contracts)",
            fix=fix,
        )
    elif params.business_model != "contractual":
        report.add(
            "error",
            "orders",
            None,
            "missing_file",
            0,
            "no orders table: a non_contractual business defines churn by orders "
            "(no order for churn_definition.dormancy_days)",
            fix=fix + "; or, if churn is a contract left to lapse, set business_model: contractual",
        )


def _type_one(
    con: Any, name: str, params: Params, report: ValidationReport, staged: list[str]
) -> bool:
    """Type and check one table; True when it passed and joins the dataset."""
    outcome = _check_and_type(con, TABLES[name], params, report)
    if outcome == "empty":
        core = "orders" if "orders" in staged else "contracts"
        sev: Severity = "error" if name in ("customers", core) else "warning"
        report.add(
            sev,
            name,
            None,
            "empty",
            0,
            f"'{name}' has a header but no rows",
            fix="export the table again with its rows" if sev == "error" else "",
        )
        if sev == "warning":
            report.missing_optional.append(name)
        return False
    if outcome == "ok":
        report.present.append(name)
        return True
    return False


_DUCK_TYPE = {
    "str": "VARCHAR",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
}


def _replace_temp(con: Any, name: str, select_sql: str) -> None:
    # CREATE OR REPLACE cannot read the table it replaces
    tmp = _sql_name(f"{name}__new")
    con.raw_sql(f"CREATE OR REPLACE TEMP TABLE {tmp} AS {select_sql}")
    con.raw_sql(f"DROP TABLE temp.main.{_sql_name(name)}")
    con.raw_sql(f"ALTER TABLE temp.main.{tmp} RENAME TO {_sql_name(name)}")


def _orders_from_contracts(con: Any, report: ValidationReport) -> None:
    """A contractual export without orders: one invoice per contract year.

    Every chapter reads revenue from orders. A subscription bills its annual value once a
    contract year (the convention of annual_value), so each contract becomes an order on
    its start date and on every anniversary before its end; the data-check slide says the
    orders were derived, and how.
    """
    con.raw_sql(
        "CREATE OR REPLACE TEMP TABLE typed_orders AS "
        "SELECT c.contract_id || '#' || CAST(k.range AS VARCHAR) AS order_id, c.customer_id, "
        "CAST(c.start_date + to_years(CAST(k.range AS INTEGER)) AS DATE) AS order_date, "
        "CAST(c.annual_value AS DOUBLE) AS amount, CAST(NULL AS VARCHAR) AS category, "
        "c._row AS _row "
        "FROM typed_contracts c, range(0, 100) k "
        "WHERE c.start_date + to_years(CAST(k.range AS INTEGER)) <= c.end_date "
        "ORDER BY c._row, k.range"
    )
    n = con.raw_sql("SELECT count(*) FROM typed_orders").fetchone()[0]
    report.derived["orders"] = "contracts"
    report.supplied["orders"] = ["order_id", "customer_id", "order_date", "amount"]
    report.profile["orders"] = {"rows": int(n), "columns": ["customer_id", "order_date", "amount"]}
    report.present.append("orders")
    if "orders" in report.missing_optional:
        report.missing_optional.remove("orders")
    report.add(
        "info",
        "orders",
        None,
        "derived",
        int(n),
        f"no orders table: {n:,} orders derived from contracts, one per contract year "
        "(the contract's annual_value on its start date and each anniversary before its end)",
    )


def _finalise_customers(
    con: Any, params: Params, report: ValidationReport, have: bool, events: list[str]
) -> bool:
    """``typed_customers`` with every contract column: derived from orders/contracts when
    the source has none, its ``acquired_at`` derived (first order or contract start) when
    the source lacks it, and orders before acquisition judged by policy."""
    firsts = []
    if "orders" in events:
        firsts.append("SELECT customer_id, order_date AS d FROM typed_orders")
    if "contracts" in events:
        firsts.append("SELECT customer_id, start_date AS d FROM typed_contracts")
    first = (
        f"SELECT customer_id, min(d) AS first_deal FROM ({' UNION ALL '.join(firsts)}) "
        "WHERE customer_id IS NOT NULL GROUP BY customer_id"
    )
    table = TABLES["customers"]
    if not have:
        if not firsts:
            return False
        cols = ", ".join(
            "first_deal AS acquired_at"
            if c.name == "acquired_at"
            else f"CAST(NULL AS {_DUCK_TYPE[c.dtype]}) AS {_sql_name(c.name)}"
            for c in table.columns
            if c.name != "customer_id"
        )
        con.raw_sql(
            "CREATE OR REPLACE TEMP TABLE typed_customers AS SELECT row_number() OVER "
            f"(ORDER BY customer_id) AS _row, customer_id, {cols} FROM ({first}) ORDER BY customer_id"
        )
        n = con.raw_sql("SELECT count(*) FROM typed_customers").fetchone()[0]
        report.derived["customers"] = "+".join(events)
        report.derived["customers.acquired_at"] = "first_deal"
        report.supplied["customers"] = []
        report.profile["customers"] = {"rows": int(n), "columns": ["customer_id"]}
        report.add(
            "info",
            "customers",
            None,
            "derived",
            int(n),
            f"no customers table: {n:,} customers derived from {' and '.join(events)} "
            "(acquired_at = first order or contract start); tier, industry, region and "
            "account manager are not supplied",
        )
        return True
    supplied = report.supplied.get("customers", [])
    if "acquired_at" not in supplied and firsts:
        _replace_temp(
            con,
            "typed_customers",
            "SELECT c.* REPLACE (f.first_deal AS acquired_at) FROM typed_customers c "
            f"LEFT JOIN ({first}) f USING (customer_id) ORDER BY c._row",
        )
        report.derived["customers.acquired_at"] = "first_deal"
    elif "orders" in events:
        _orders_before_acquisition(con, params, report, first)
    return True


def _orders_before_acquisition(
    con: Any, params: Params, report: ValidationReport, first: str
) -> None:
    """Orders dated before their customer's acquired_at, by ``data.orders_before_acquisition``.

    acquired_at decides cohorts, tenure and first-year spend, and an order before it means
    one of the two dates is wrong; only the user knows which. By default both are kept and
    reported (warn): CRM exports often carry the account's creation date, later than the
    first deal when history was migrated, and those orders are real revenue, so dropping
    them would understate it and stopping would refuse every such export. ``fail`` stops the
    run; ``adjust`` takes the first order as acquired_at.
    """
    # customers acquired after as_of are excluded with their orders: not judged here
    sql = (
        "FROM typed_orders o JOIN typed_customers c USING (customer_id) "
        f"WHERE o.order_date < c.acquired_at AND c.acquired_at <= DATE '{params.as_of}'"
    )
    n = con.raw_sql(f"SELECT count(*) {sql}").fetchone()[0]
    if not n:
        return
    rows = con.raw_sql(
        f"SELECT o._row, o.order_id, o.customer_id, o.order_date, c.acquired_at {sql} "
        "ORDER BY o._row LIMIT 5"
    ).fetchall()
    examples = [
        dict(zip(["row", "order_id", "customer_id", "order_date", "acquired_at"], r, strict=True))
        for r in rows
    ]
    policy = params.data.orders_before_acquisition
    if policy in ("fail", "warn"):
        report.add(
            "error" if policy == "fail" else "warning",
            "orders",
            "order_date",
            "before_acquisition",
            int(n),
            f"{n:,} order(s) dated before their customer's acquired_at: cohorts, tenure and "
            "first-year spend use acquired_at" + ("" if policy == "fail" else "; kept as they are"),
            fix="correct customers.acquired_at (or the order dates); or set "
            "data.orders_before_acquisition: adjust to take the first order as acquired_at",
            examples=examples,
        )
        return
    _replace_temp(
        con,
        "typed_customers",
        "SELECT c.* REPLACE (least(c.acquired_at, coalesce(f.first_deal, c.acquired_at)) "
        f"AS acquired_at) FROM typed_customers c LEFT JOIN ({first}) f USING (customer_id) "
        "ORDER BY c._row",
    )
    report.add(
        "warning",
        "orders",
        "order_date",
        "before_acquisition",
        int(n),
        f"{n:,} order(s) dated before their customer's acquired_at; acquired_at moved to "
        "the first order (data.orders_before_acquisition: adjust)",
        examples=examples,
    )


def _after_clean(con: Any, params: Params, report: ValidationReport) -> None:
    """Checks that need the clean tables: windows with data, customers without orders, tiers."""
    if not _window_checks(con, params, report):
        return
    _customers_without_orders(con, report)
    fill_tiers(con, params, report)


def _window_checks(con: Any, params: Params, report: ValidationReport) -> bool:
    """An as_of before all data, or a review period without data, is an error."""
    n_cust = con.raw_sql("SELECT count(*) FROM main.customers").fetchone()[0]
    if not n_cust:
        report.add(
            "error",
            "customers",
            "acquired_at",
            "window",
            0,
            f"no customer was acquired on or before as_of {params.as_of}",
            fix="set as_of to a date the data covers",
        )
        return False
    core, col = (
        ("orders", "order_date") if "orders" in report.present else ("contracts", "start_date")
    )
    if core not in report.present:
        return True
    lo, hi = con.raw_sql(f"SELECT min({col}), max({col}) FROM temp.main.typed_{core}").fetchone()
    span = f"{core}.{col} runs from {lo} to {hi}" if lo else f"{core} has no dates"
    n_in = con.raw_sql(f"SELECT count(*) FROM main.{core}").fetchone()[0]
    if not n_in:
        report.add(
            "error",
            core,
            col,
            "window",
            0,
            f"no {core} row is dated on or before as_of {params.as_of}: {span}",
            fix="set as_of to a date the data covers",
        )
        return False
    if core == "orders":
        where = f"order_date >= DATE '{params.period_start}'"
    else:
        where = f"end_date >= DATE '{params.period_start}'"
    n_period = con.raw_sql(f"SELECT count(*) FROM main.{core} WHERE {where}").fetchone()[0]
    if not n_period:
        report.add(
            "error",
            core,
            col,
            "window",
            0,
            f"the review period {params.period_start}..{params.as_of} holds no {core}: {span}",
            fix="set period_start and as_of to dates the data covers",
        )
        return False
    return True


def _customers_without_orders(con: Any, report: ValidationReport) -> None:
    """Count customers with no order up to as_of (they raise churn when counted as lost)."""
    if "orders" not in report.present:
        return
    n, total = con.raw_sql(
        "SELECT count(*) FILTER (WHERE o.customer_id IS NULL), count(*) FROM main.customers c "
        "LEFT JOIN (SELECT DISTINCT customer_id FROM main.orders) o USING (customer_id)"
    ).fetchone()
    share = n / total if total else 0.0
    prof = report.profile.setdefault("customers", {})
    prof["without_orders"] = int(n)
    prof["without_orders_share"] = float(share)
    if n:
        report.add(
            "warning" if share >= 0.2 else "info",
            "customers",
            None,
            "no_orders",
            int(n),
            f"{n:,} customer(s) ({share:.1%}) have no order on or before as_of; a "
            "non-contractual churn count treats them as lost once past the dormancy period",
            fix="check that the orders export covers every customer" if share >= 0.2 else "",
        )


def _check_param_references(params: Params, report: ValidationReport) -> None:
    """Values the params name that the run will look up: scenario target tiers, tier policies."""
    if "04_strategy_simulation" not in params.notebooks:
        return
    from fupan.core import scenarios
    from fupan.core.params import ParamsError

    try:
        scen = scenarios.load(params)
    except ParamsError as exc:
        report.add(
            "error",
            "(params)",
            None,
            "scenarios",
            0,
            f"chapter 4 would stop: {exc}",
            fix="name tiers of tiers.order in the scenarios' target.tiers (or remove the "
            "filter), or copy params/scenarios.yaml beside the params file and edit it",
        )
        return
    # chapter 4 reports such a scenario as not applicable and runs the rest: a warning
    for text in scenarios.check_against(params, params.tiers.order, scen):
        report.add("warning", "(params)", None, "scenarios", 0, text)
    b = params.benchmarks
    for s in scen:
        ch = s.change
        # a policy is looked up only where its table is there to move; without the table
        # chapter 4 skips the scenario and says so
        needs = []
        if (ch.first_response_days == "tier_sla" or ch.retier) and "tickets" in report.present:
            needs.append(("sla_first_response_days", b.sla_first_response_days))
        if (ch.touches_per_quarter == "tier_policy" or ch.retier) and "touches" in report.present:
            needs.append(("touch_policy_per_quarter", b.touch_policy_per_quarter))
        for key, policy in needs:
            missing = [t for t in params.tiers.order if t not in policy]
            if missing:
                report.add(
                    "warning",
                    "(params)",
                    None,
                    "scenarios",
                    0,
                    f"scenario '{s.name}' uses benchmarks.{key}, which has no entry for "
                    f"tier(s) {missing}; chapter 4 cannot hold those tiers to a policy",
                    fix=f"add benchmarks.{key}: {{{', '.join(f'{t}: <value>' for t in missing)}}}",
                )


def _profile(con: Any, params: Params, report: ValidationReport) -> None:
    as_of = pd.Timestamp(params.as_of)
    for name in report.present:
        table = TABLES[name]
        t = con.table(name)
        aggs: dict[str, ir.Value] = {"rows": t.count()}
        for col in table.columns:
            if col.name in t.columns:
                aggs[f"null__{col.name}"] = t[col.name].isnull().mean()
                if col.dtype in ("date", "datetime"):
                    aggs[f"min__{col.name}"] = t[col.name].min().cast("string")
                    aggs[f"max__{col.name}"] = t[col.name].max().cast("string")
        row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        prof = report.profile.setdefault(name, {})
        prof["clean_rows"] = int(row["rows"])
        prof["null_share"] = {
            k[6:]: (float(v) if v is not None else None)
            for k, v in row.items()
            if k.startswith("null__")
        }
        prof["date_range"] = {
            k[5:]: [row[f"min__{k[5:]}"], v] for k, v in row.items() if k.startswith("max__")
        }
        main_date = next((c.name for c in table.columns if c.not_after_as_of), None)
        if main_date and row.get(f"max__{main_date}"):
            latest = pd.Timestamp(row[f"max__{main_date}"])
            lag = int((as_of.normalize() - latest.normalize()).days)
            prof["latest"] = str(latest.date())
            prof["lag_days"] = lag
            if name in ("orders", "touches", "tickets", "activity") and lag > 31:
                report.add(
                    "warning",
                    name,
                    main_date,
                    "timeliness",
                    0,
                    f"the latest {main_date} is {latest.date()}, {lag} days before as_of: data may be stale",
                    fix="check that the export covers the period up to as_of",
                )


def load(
    params: Params, work_dir: str | Path | None = None, strict: bool = True, handoff: bool = True
) -> Dataset:
    """Read, check, type and clean every table of the data source.

    Parameters
    ----------
    params : run params (source, column mapping, orphan policy, as_of).
    work_dir : folder for the staging database; in memory when None.
    strict : raise :class:`DataValidationError` when any error is found.
    handoff : with ``engine: spark``, return a dataset on a Spark session (otherwise only
        stage the Parquet files for notebooks to open).

    Returns
    -------
    Dataset with the staged tables and the validation report.
    """
    report = ValidationReport()
    source = params.context.data
    work = Path(work_dir) if work_dir else None
    if work:
        work.mkdir(parents=True, exist_ok=True)
        db = work / STAGED_NAME
        if db.exists():
            db.unlink()
        con = _connect_staging(db)
    else:
        con = ibis.duckdb.connect()
    with tempfile.TemporaryDirectory(prefix="fupan-load-") as tmpdir:
        tmp = Path(tmpdir)
        staged, fingerprints, attached = _stage_source(con, params, source, tmp, report)
        _stage_tables(con, staged, params, report, sources.redact(source))
        if "customers" in report.present:
            _profile(con, params, report)
        _drop_intermediate(con)
        if attached:
            con.raw_sql(f"DETACH {_SOURCE_DB}")
    report.present = [n for n in TABLES if n in report.present]
    if params.engine == "spark" and report.ok:
        from fupan.io import engine

        folder = engine.export_parquet(
            con,
            report.present,
            (work or Path(tempfile.mkdtemp(prefix="fupan-pq-"))) / engine.PARQUET_DIR,
        )
        if handoff:
            con.disconnect()
            con = engine.spark_backend(folder, report.present)
    ds = Dataset(con=con, params=params, report=report, fingerprints=fingerprints)
    if work:
        (work / REPORT_NAME).write_text(
            json.dumps(
                {"report": report.to_dict(), "fingerprints": fingerprints},
                ensure_ascii=False,
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )
    if strict and not report.ok:
        ds.close()
        raise DataValidationError(report)
    return ds


def _connect_staging(db: Path) -> Any:
    """A new staging database file in the running DuckDB's own storage format.

    The default format stays readable by DuckDB releases back to 0.10, whose string
    compression makes writing the tables several times slower (13 s against 6 s for one
    69-million-row text column). The staged file is read by the same installation that wrote
    it; an older DuckDB, such as a separate command-line tool, cannot open it.
    """
    try:
        return ibis.duckdb.connect(str(db), storage_compatibility_version="latest")
    except Exception:  # noqa: BLE001 - a DuckDB too old for the setting: its default format
        if db.exists():
            db.unlink()
        return ibis.duckdb.connect(str(db))


def _drop_intermediate(con: Any) -> None:
    # Staging objects are temporary; dropping them frees their memory for the notebooks.
    objects = con.raw_sql(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_catalog = 'temp'"
    ).fetchall()
    prefixes = tuple(f"{p}{name}" for p in ("typed_", "raw_", "src_") for name in TABLES)
    for obj, kind in objects:
        if obj in prefixes:
            what = "VIEW" if kind == "VIEW" else "TABLE"
            con.raw_sql(f"DROP {what} IF EXISTS temp.main.{_sql_name(obj)}")


def open_staged(params: Params, work_dir: str | Path) -> Dataset:
    """Open the tables a run already staged (read-only; notebooks share one load)."""
    work = Path(work_dir)
    meta = json.loads((work / REPORT_NAME).read_text(encoding="utf-8"))
    present = meta["report"]["present"]
    if params.engine == "spark":
        from fupan.io import engine

        con = engine.spark_backend(work / engine.PARQUET_DIR, present)
    else:
        con = ibis.duckdb.connect(str(work / STAGED_NAME), read_only=True)
        # in a kernel DuckDB draws a progress widget (with a random id) for a query over
        # 2 s: the executed notebook would differ between runs and hold a useless widget
        con.raw_sql("SET enable_progress_bar = false")
        _limit_memory(con, params, work)
    report = ValidationReport.from_dict(meta["report"])
    apply_resolved_params(params, report)
    return Dataset(
        con=con,
        params=params,
        report=report,
        fingerprints=meta.get("fingerprints", {}),
        cache_dir=work / "cache",
    )


def apply_resolved_params(params: Params, report: ValidationReport) -> None:
    """Write what the load resolved from the data (spend floors) into ``params`` in place."""
    floors = report.tier_floors
    if floors.get("source") == "data" and len(floors.get("floors", [])) == len(params.tiers.order):
        params.tiers.spend_floors = [float(f) for f in floors["floors"]]


def _limit_memory(con: Any, params: Params, work: Path) -> None:
    """Cap what DuckDB holds in this process at ``params.engine_memory_gb``.

    By default each DuckDB instance may take 80% of the machine's memory, keeps the staged
    tables' blocks it has read cached up to that, and a review runs two kernels at once:
    at a million customers the two chapters' engines held several GB each. Beyond the cap,
    large joins and aggregations spill to disk, which costs time, not results. Each process
    spills into its own folder under the run's ``work/`` (DuckDB's temporary files have
    fixed names, and ``work/`` is deleted with the run: they hold customer data).
    """
    if params.engine_memory_gb is None:
        return
    spill = Path(tempfile.mkdtemp(prefix="spill-", dir=work))
    con.raw_sql(f"SET memory_limit = '{params.engine_memory_gb:g}GB'")
    con.raw_sql(f"SET temp_directory = '{spill.as_posix()}'")


def connect(params: Params, run_dir: str | Path | None = None) -> Dataset:
    """The dataset for a notebook: the run's staged tables, or a fresh load when run alone."""
    if run_dir:
        work = Path(run_dir) / "work"
        if (work / STAGED_NAME).exists() and (work / REPORT_NAME).exists():
            return open_staged(params, work)
    return load(params)


@contextmanager
def loaded(
    params: Params, work_dir: str | Path | None = None, strict: bool = True
) -> Iterator[Dataset]:
    ds = load(params, work_dir, strict)
    try:
        yield ds
    finally:
        ds.close()
