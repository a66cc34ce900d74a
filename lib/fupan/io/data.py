"""Load a data source into the embedded engine, check it against the contract, stage it.

Every table arrives as text in a DuckDB staging database (through Ibis), is cast to the
contract's types there with ``TRY_CAST`` so bad values are counted and shown rather than
crashing, and is cleaned by the rules in params (orphans, rows after ``as_of``). pandas never
sees the raw event tables: notebooks query the staged tables through Ibis and pull one row
per customer.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.io import sources
from fupan.io.schema import CORE_TABLES, TABLES, Column, Table
from fupan.io.sources import SourceError
from fupan.io.validation import DataValidationError, Severity, ValidationReport

warnings.filterwarnings("ignore", message=".*infer_string.*")

FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".xlsx", ".xlsm", ".txt")
STAGED_NAME = "staged.duckdb"
REPORT_NAME = "validation.json"
_TRUE = ("true", "t", "1", "yes", "y", "是", "对", "true.")
_FALSE = ("false", "f", "0", "no", "n", "否", "错")
# DuckDB's per-file row counter column of read_parquet.
_FILE_ROW = "file_row_number"
# Catalog name of an attached DuckDB file source while it is read.
_SOURCE_DB = "fupan_source"


@dataclass
class Dataset:
    """The validated, typed tables of one data source, as Ibis expressions.

    Attributes
    ----------
    con : the Ibis backend (DuckDB by default) that holds the staged tables.
    params : the run's params.
    report : every validation finding, and a per-table profile.
    fingerprints : sha256 of every input file, for the manifest.
    cache_dir : where fitted models are kept for the other notebooks of the same run
        (:mod:`fupan.io.cache`); ``None`` outside a run.
    parent : for a :meth:`subset`, the whole dataset it was cut from.
    """

    con: Any
    params: Params
    report: ValidationReport
    fingerprints: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    parent: Dataset | None = None
    # Ibis asks the backend for a table's schema on every ``con.table``: ~1 ms each, and a
    # feature query alone names the tables ~20 times. The staged tables never change.
    _tables: dict[str, ir.Table] = field(default_factory=dict, repr=False, compare=False)

    @property
    def root(self) -> Dataset:
        """The whole dataset: ``self``, or the one a subset was cut from."""
        return self if self.parent is None else self.parent

    def subset(self, customer_ids: Any) -> Dataset:
        """Every table restricted to these customers, held in memory in DuckDB.

        For models fitted on a sample of customers: each of their queries then reads the
        sample's rows only, not every event of every customer (a 20,000-customer sample of
        a 1M-customer dataset is 2% of the rows). Per-customer results are the same as on
        the whole dataset; what depends on all customers (the activity period, the start
        of activity tracking) is read from :attr:`root`. Nothing is cached for a subset.
        """
        ids = pd.DataFrame({"customer_id": pd.unique(pd.Series(customer_ids, dtype=object))})
        keep = ibis.memtable(ids.astype({"customer_id": str}))
        con = ibis.duckdb.connect()
        for name in self.present:
            rows = self[name].semi_join(keep, "customer_id").to_pyarrow()
            con.create_table(name, rows)
        return Dataset(
            con=con,
            params=self.params,
            report=self.report,
            fingerprints=self.fingerprints,
            cache_dir=None,
            parent=self.root,
        )

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.params.as_of)

    @property
    def present(self) -> list[str]:
        return list(self.report.present)

    def has(self, table: str) -> bool:
        return table in self.report.present

    def supplied(self, table: str, column: str) -> bool:
        """Whether the source had ``table.column`` with at least one value.

        False for a column the loader derived or filled (a ``customers`` table derived from
        orders, ``customers.tier`` filled with the spend tier, a generated ``order_id``) and
        for a column that was absent or empty: the clean table still has it, so queries run,
        but a slide about it has nothing the business supplied to show.
        """
        return column in self.report.supplied.get(table, [])

    def __getitem__(self, table: str) -> ir.Table:
        return self.table(table)

    def table(self, table: str) -> ir.Table:
        if table not in TABLES:
            raise KeyError(f"'{table}' is not a contract table; known: {list(TABLES)}")
        if not self.has(table):
            raise MissingTableError(table)
        if table not in self._tables:
            self._tables[table] = self.con.table(table)
        return self._tables[table]

    def close(self) -> None:
        try:
            self.con.disconnect()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class MissingTableError(LookupError):
    """An optional table a section needs is not in the data source."""

    def __init__(self, table: str):
        self.table = table
        super().__init__(f"optional table '{table}' is not in the data source")


# --------------------------------------------------------------------------------------
# Reading sources


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def detect_encoding(path: str | Path, declared: str = "auto") -> str:
    """The codec a CSV file really uses: one its byte-order mark (or UTF-16 shape) proves,
    else UTF-8 or GB18030.

    A file declared UTF-8 that does not decode as UTF-8 is treated as GB18030 (the safe
    superset of GBK) when it decodes as that; the caller reports the mismatch.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    sniffed = sources.sniff_encoding(head)
    if sniffed:
        return sniffed
    if declared not in ("auto", "utf-8", "utf8"):
        return declared
    if _decodes(path, "utf-8"):
        return "utf-8"
    if _decodes(path, "gb18030"):
        return "gb18030"
    return "utf-8"  # let the reader report the bad bytes


def _decodes(path: str | Path, codec: str) -> bool:
    dec = codecs.getincrementaldecoder(codec)()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                dec.decode(block)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _transcode_to_utf8(path: Path, codec: str, out: Path) -> Path:
    # DuckDB decodes only UTF-8 offline: convert in streaming fashion, bounded memory.
    with (
        open(path, encoding=codec, newline="") as src,
        open(out, "w", encoding="utf-8", newline="") as dst,
    ):
        shutil.copyfileobj(src, dst, 1 << 22)
    return out


def find_source_files(params: Params) -> dict[str, Path]:
    """Map each contract table to its file in a source folder (absent tables are left out).

    A file is found by its table's name, case aside. A broken or looping link counts as
    found, so its problem is reported rather than the table called missing.
    """
    folder = Path(params.context.data)
    found: dict[str, Path] = {}
    for table in TABLES:
        if table in params.data.files:
            found[table] = folder / params.data.files[table]
            continue
        hits = _table_files(folder, table)
        if hits:
            found[table] = hits[0]
    return found


def _table_files(folder: Path, table: str) -> list[Path]:
    """Every file of ``folder`` named after ``table`` (any readable suffix, any case)."""
    exact = [folder / f"{table}{s}" for s in FILE_SUFFIXES]
    hits = [p for p in exact if os.path.lexists(p)]
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return hits
    for entry in entries:
        p = folder / entry
        if p not in hits and p.stem.lower() == table and p.suffix.lower() in FILE_SUFFIXES:
            hits.append(p)
    return hits


def _normalise_header(name: Any) -> str:
    return sources.normalise_header(name)


def _expected_headers(table: Table, params: Params) -> set[str]:
    return sources.expected_headers(table, params)


def _detect_header_row(rows: list[list[Any]], expected: set[str]) -> int:
    """First row of a sheet that looks like the header (title rows above it are skipped)."""
    return sources.detect_header_row(rows, expected)


def _sheet_head(path: Path, sheet: str | int) -> list[list[Any]]:
    head = pd.read_excel(path, sheet_name=sheet, header=None, nrows=15, dtype=str)
    return [[None if pd.isna(v) else v for v in r] for r in head.values.tolist()]


def _pick_sheet(path: Path, table: Table, params: Params, report: ValidationReport) -> str:
    """The sheet of a table's own workbook to read.

    The sheet data.sheets (or data.sheet) names; else the one named after the table; else
    the only sheet. In a workbook of several sheets, a first sheet without a single contract
    header (a cover or notes sheet) is skipped for the one sheet that holds the table's
    required columns; with none or several such sheets, one error asks for the setting.
    """
    names = sources.sheet_names(path)
    wanted = sources.sheet_setting(params, table.name)
    if wanted is not None:
        return sources.resolve_sheet(names, wanted, path.name, table.name)
    own = sources.table_sheet(names, table.name)
    if own is not None or len(names) == 1:
        return own or names[0]
    expected = _expected_headers(table, params)
    heads = {n: _sheet_head(path, n) for n in names}
    headers = {
        n: (rows[_detect_header_row(rows, expected)] if rows else []) for n, rows in heads.items()
    }
    fits = [n for n in names if sources.has_required(headers[n], table, params)]
    first_hits = sources.header_hits(headers[names[0]], expected)
    if names[0] in fits or (first_hits and not fits):
        return names[0]
    if len(fits) == 1:
        report.add(
            "warning",
            table.name,
            None,
            "sheet",
            0,
            f"{path.name}: read sheet '{fits[0]}', the only one with the columns of "
            f"{table.name}; its first sheet '{names[0]}' holds no table",
            fix=f"set data.sheets.{table.name}: '{fits[0]}' to say so in the params",
        )
        return fits[0]
    required = ", ".join(table.required_columns)
    if fits:
        raise SourceError(
            f"{path.name} has {len(fits)} sheets with the columns of {table.name} "
            f"({', '.join(map(repr, fits))}); fupan reads one sheet per table",
            f"set data.sheets.{table.name} to the sheet to read (or combine the sheets)",
            "sheet",
        )
    shown = "; ".join(
        f"'{n}' (first row: {', '.join(str(v) for v in headers[n][:4] if v is not None) or 'empty'})"
        for n in names[:6]
    )
    raise SourceError(
        f"no sheet of {path.name} holds the columns of {table.name} ({required}); "
        f"its sheets: {shown}",
        f"set data.sheets.{table.name} to the sheet that holds the table, and map its "
        f"headers in data.columns.{table.name} if they have other names",
        "sheet",
    )


def _read_excel_text(
    path: Path,
    table: Table,
    params: Params,
    report: ValidationReport | None = None,
    sheet: str | int | None = None,
) -> tuple[pd.DataFrame, int]:
    if sheet is None:
        sheet = _pick_sheet(path, table, params, report or ValidationReport())
    header_row = params.data.header_row
    rows = _sheet_head(path, sheet)
    if not rows:
        raise SourceError(
            f"sheet '{sheet}' of {path.name} is empty: no header, no rows",
            f"export the {table.name} table again, or set data.sheets.{table.name}",
            "empty_file",
        )
    if header_row is None:
        header_row = _detect_header_row(rows, _expected_headers(table, params))
    if report is not None and header_row < len(rows):
        header = [v for v in rows[header_row] if v is not None]
        if not _columns_unambiguous(header, table, params, report, f"{path.name} [{sheet}]"):
            raise _Reported
    frame = pd.read_excel(path, sheet_name=sheet, header=header_row, dtype=str)
    return frame, header_row


def _csv_header_row(path: Path, codec: str, table: Table, params: Params) -> int:
    expected = _expected_headers(table, params)
    return sources.text_header(path, codec, expected, params.data.header_row)[0]


class _Reported(Exception):
    """A problem already in the report: the table is not staged."""


def _columns_unambiguous(
    headers: list[Any], table: Table, params: Params, report: ValidationReport, where: str
) -> bool:
    """Report source columns that claim the same contract column; False if any do."""
    errors, notes = sources.ambiguous_columns([str(h) for h in headers], table, params)
    for dst, srcs in errors:
        report.add(
            "error",
            table.name,
            dst,
            "ambiguous_column",
            len(srcs),
            f"{where} has {len(srcs)} columns that would fill '{dst}': "
            f"{', '.join(map(repr, srcs))}; fupan will not pick one",
            fix="delete or rename all but one of them in the export, or map the one to use "
            f"in data.columns.{table.name}",
        )
    for dst, used, others in notes:
        report.add(
            "warning",
            table.name,
            dst,
            "ambiguous_column",
            len(others),
            f"{where}: '{dst}' is read from '{used}' as data.columns maps it; the column "
            f"{', '.join(map(repr, others))} of the same name is ignored",
            fix="remove or rename the ignored column in the export if it is not needed",
        )
    return not errors


@dataclass
class _RawTable:
    table: str
    path: str
    header_offset: int  # 1-based file line of the first data row, minus one
    note: str = ""


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_temp_view(con: Any, name: str, expr: ir.Table) -> None:
    # Staging objects are temporary: they never reach the staged database file.
    con.raw_sql(f"CREATE OR REPLACE TEMP VIEW {_sql_name(name)} AS {con.compile(expr)}")


def _materialise(con: Any, name: str, expr: ir.Table, temp: bool) -> ir.Table:
    """Write ``expr`` once as a table: temporary (in memory, spills to disk) or staged."""
    kind = "TEMP TABLE" if temp else "TABLE"
    con.raw_sql(f"CREATE OR REPLACE {kind} {_sql_name(name)} AS {con.compile(expr)}")
    return con.table(name)


def _stage_raw_file(
    con: Any,
    table: Table,
    path: Path,
    params: Params,
    tmp: Path,
    report: ValidationReport,
    sheet: str | int | None = None,
) -> _RawTable | None:
    """Expose one file as ``raw_<table>`` with a source row number ``_row``.

    Text formats arrive with every column as text. Parquet keeps its own column types: the
    typing step reads a column that already has the contract's type as it is and parses the
    others from their text form, so both give the same values. A file that cannot be read
    is reported (file, problem, fix) and None returned.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            return _stage_excel(con, table, path, params, report, sheet)
        if suffix in (".parquet", ".pq"):
            return _stage_parquet(con, table, path, params, report)
        return _stage_csv(con, table, path, params, tmp, report)
    except _Reported:
        return None
    except SourceError as err:
        _report_source_error(report, table, err)
        return None


def _report_source_error(report: ValidationReport, table: Table, err: SourceError) -> None:
    # An empty optional table is absent, as a header-only one is; a required one stops.
    optional_empty = err.check == "empty_file" and not table.required
    report.add(
        "warning" if optional_empty else "error",
        table.name,
        None,
        err.check,
        0,
        err.message + ("; the table is treated as absent" if optional_empty else ""),
        fix=err.fix,
    )


def _stage_excel(
    con: Any,
    table: Table,
    path: Path,
    params: Params,
    report: ValidationReport,
    sheet: str | int | None,
) -> _RawTable:
    if not (sources.signature(path) or ("",))[0].startswith("an Excel .xlsx"):
        sig = sources.signature(path)
        what = sig[0] if sig else "not a zip archive (perhaps CSV or HTML saved with .xlsx)"
        raise SourceError(
            f"{path.name} is not an Excel .xlsx workbook: it is {what}",
            "open it in Excel and save it as .xlsx (Excel Workbook), or export CSV",
        )
    frame, header_row = _read_excel_text(path, table, params, report, sheet)
    frame.columns = [_normalise_header(c) for c in frame.columns]
    header_line = header_row + 1
    frame.insert(0, "_row", range(header_line + 1, header_line + 1 + len(frame)))
    frame = frame.dropna(how="all", subset=[c for c in frame.columns if c != "_row"])
    con.create_table(f"raw_{table.name}", frame, temp=True, overwrite=True)
    return _RawTable(table.name, str(path), header_line)


def _stage_parquet(
    con: Any, table: Table, path: Path, params: Params, report: ValidationReport
) -> _RawTable:
    try:
        src = con.read_parquet(str(path), table_name=f"src_{table.name}")
        if _FILE_ROW not in src.columns:
            # The reader's own row counter runs in parallel; a window row_number() would
            # funnel the whole table through one thread.
            src = con.read_parquet(str(path), table_name=f"src_{table.name}", file_row_number=True)
            row = src[_FILE_ROW] + 1
        else:
            row = ibis.row_number() + 1
    except Exception as exc:  # noqa: BLE001 - DuckDB raises many kinds for a bad file
        raise SourceError(
            f"{path.name} could not be read as Parquet: {sources.short_detail(exc, 1)}",
            "write the file again (it may be cut short or not Parquet at all), or export CSV",
        ) from None
    names = [c for c in src.columns if c != _FILE_ROW]
    # DuckDB renames repeated names (amount, amount_1): the file's own schema has them.
    own = _parquet_names(path)
    if not _columns_unambiguous(
        own if len(own) == len(names) else names, table, params, report, path.name
    ):
        raise _Reported
    cols = {_normalise_header(c): src[c] for c in names}
    if _FILE_ROW in cols:
        cols[_FILE_ROW] = src[_FILE_ROW]
    _create_temp_view(con, f"raw_{table.name}", src.select(**cols, _row=row))
    return _RawTable(table.name, str(path), 0)


def _parquet_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return [n for n in pq.read_schema(path).names if n != _FILE_ROW]
    except Exception:  # noqa: BLE001 - DuckDB read the file: its names are enough
        return []


def _text_codec(path: Path, table: Table, params: Params, report: ValidationReport) -> str:
    """The codec of a text file: its byte-order mark, its declared encoding, or detected."""
    declared = sources.declared_encoding(params, table.name)
    low = declared.lower()
    auto = low in ("auto", "utf-8", "utf8")
    with open(path, "rb") as fh:
        sniffed = sources.sniff_encoding(fh.read(4096))
    if sniffed:
        if not auto and not sources.check_codec(declared, table.name).startswith(sniffed[:6]):
            report.add(
                "warning",
                table.name,
                None,
                "encoding",
                0,
                f"{path.name} is declared {declared} but is {sniffed} (its first bytes say so); "
                f"it was decoded as {sniffed}",
                fix=f"set data.encodings.{table.name}: {sniffed} (or auto)",
            )
        return sniffed
    if not auto:
        return sources.check_codec(declared, table.name)
    if _decodes(path, "utf-8"):
        return "utf-8"
    if _decodes(path, "gb18030"):
        if low != "auto":
            report.add(
                "warning",
                table.name,
                None,
                "encoding",
                0,
                f"{path.name} is declared UTF-8 but is GBK/GB18030; it was decoded as GB18030",
                fix=f"set data.encodings.{table.name}: gb18030 (or data.encoding: auto), "
                "or re-export the file as UTF-8",
            )
        return "gb18030"
    raise sources.undecodable(path, ["utf-8", "gb18030"], table.name)


def _stage_csv(
    con: Any, table: Table, path: Path, params: Params, tmp: Path, report: ValidationReport
) -> _RawTable | None:
    sig = sources.signature(path)
    if sig is not None:
        raise SourceError(
            f"{path.name} is {sig[0]}, not CSV text",
            f"rename it to {path.stem}{sig[1]}, or export the {table.name} table as CSV",
        )
    name = path.name
    codec = _text_codec(path, table, params, report)
    if codec not in ("utf-8", "utf-8-sig"):
        try:
            path = _transcode_to_utf8(path, codec, tmp / f"{table.name}.utf8.csv")
        except UnicodeDecodeError:
            raise sources.undecodable(path, [codec], table.name) from None
        codec = "utf-8"
    skip, header = sources.text_header(
        path, codec, _expected_headers(table, params), params.data.header_row
    )
    try:
        src = _read_csv(con, path, table, skip)
    except Exception as exc:  # noqa: BLE001 - DuckDB raises many kinds; report them all the same way
        report.add(
            "error",
            table.name,
            None,
            "unreadable",
            0,
            f"{name} could not be read as CSV: {sources.short_detail(exc)}",
            fix="check the delimiter, quoting and number of columns on the line named",
        )
        return None
    # DuckDB renames repeated headers (amount, amount_1); the file's own header row, when it
    # splits into the same number of cells, names them as the user sees them.
    names = [_normalise_header(h) for h in header]
    if len(names) != len(src.columns):
        names = [_normalise_header(c) for c in src.columns]
    if not _columns_unambiguous(names, table, params, report, name):
        return None
    cols = {_normalise_header(c): src[c] for c in src.columns}
    expr = src.select(**cols).mutate(_row=ibis.row_number() + 2 + skip)
    _create_temp_view(con, f"raw_{table.name}", expr)
    return _RawTable(table.name, str(path), 1 + skip)


def _read_csv(con: Any, path: Path, table: Table, skip: int) -> ir.Table:
    """The file as text columns; a line over DuckDB's 2 MB default is read with a larger limit."""
    limit: int | None = None
    for _ in range(4):
        try:
            # The sniffer reads a sample only: a quoted field after it would break the whole
            # load, so quoting is fixed to the CSV standard rather than guessed.
            return con.read_csv(
                str(path),
                table_name=f"src_{table.name}",
                all_varchar=True,
                header=True,
                skip=skip,
                quote='"',
                escape='"',
                **({"max_line_size": limit} if limit else {}),
            )
        except Exception as exc:  # noqa: BLE001 - retried only for the line-size error
            size = re.search(r"Actual Size:\s*(\d+)", sources.engine_message(exc))
            if not size:
                raise
            limit = 2 * int(size.group(1))
    raise RuntimeError(f"{path.name}: lines keep exceeding the line-size limit ({limit} bytes)")


def _kept_natively(dtype: dt.DataType) -> bool:
    """Column types another backend hands over as they are (the others arrive as its text)."""
    return (
        dtype.is_string()
        or dtype.is_date()
        or dtype.is_float64()
        or dtype.is_boolean()
        or (dtype.is_integer() and not dtype.is_uint64())
        or (dtype.is_timestamp() and dtype.timezone is None)
    )


def _stage_raw_from_backend(con: Any, other: Any, table: Table, name: str) -> None:
    """Copy a table from another Ibis backend (database URL) into the staging database.

    Columns of plain types keep them; any other column arrives as the source's own text.
    """
    src = other.table(name)
    cols = {
        _normalise_header(c): src[c] if _kept_natively(src[c].type()) else src[c].cast("string")
        for c in src.columns
    }
    con.create_table(
        f"src_{table.name}", src.select(**cols).to_pyarrow(), temp=True, overwrite=True
    )
    staged = con.table(f"src_{table.name}").mutate(_row=ibis.row_number() + 1)
    _create_temp_view(con, f"raw_{table.name}", staged)


def _stage_raw_from_duckdb(con: Any, catalog: str, table: Table, name: str) -> None:
    """Expose a table of an attached DuckDB file as ``raw_<table>``, read in place."""
    src = con.table(name, database=(catalog, "main"))
    cols = {_normalise_header(c): src[c] for c in src.columns}
    _create_temp_view(
        con, f"raw_{table.name}", src.select(**cols).mutate(_row=ibis.row_number() + 1)
    )


def _stage_source(
    con: Any, params: Params, source: str, tmp: Path, report: ValidationReport
) -> tuple[list[str], dict[str, str], bool]:
    """Expose every table the source holds as ``raw_<table>``.

    Returns the staged tables, the inputs' fingerprints and whether a DuckDB file is
    attached (to detach when done). A source that cannot be opened at all raises
    :class:`DataValidationError` with one entry naming it, the problem and the fix; a table
    that cannot be read is reported under its name and left out.
    """
    try:
        kind = sources.source_kind(source)
        if kind in ("url", "sqlite"):
            url = source if kind == "url" else f"sqlite://{Path(source).resolve()}"
            staged = _stage_from_url(con, params, url, report)
            return staged, {"url": hashlib.sha256(source.encode()).hexdigest()}, False
        if kind == "duckdb":
            staged = _stage_from_duckdb_file(con, params, Path(source), report)
            return staged, {Path(source).name: sha256_file(source)}, True
        if kind == "workbook":
            staged = _stage_from_workbook(con, params, Path(source), tmp, report)
            return staged, {Path(source).name: sha256_file(source)}, False
    except SourceError as err:
        report.add("error", "(source)", None, err.check, 0, err.message, fix=err.fix)
        raise DataValidationError(report) from None
    return _stage_from_folder(con, params, tmp, report)


def _stage_from_url(con: Any, params: Params, url: str, report: ValidationReport) -> list[str]:
    other = sources.connect_url(url)
    names = set(other.list_tables())
    staged = []
    for name, table in TABLES.items():
        if name not in names:
            continue
        try:
            if not _columns_unambiguous(
                other.table(name).columns, table, params, report, f"table {name}"
            ):
                continue
            _stage_raw_from_backend(con, other, table, name)
        except Exception as exc:  # noqa: BLE001 - every driver raises its own error types
            report.add(
                "error",
                name,
                None,
                "unreadable",
                0,
                f"table {name} of {sources.redact(url)} could not be read: "
                f"{type(exc).__name__}: {sources.short_detail(exc, 1)}",
                fix="check that the database user may read the table (SELECT permission) "
                "and that the server is still reachable",
            )
            continue
        staged.append(name)
    return staged


def _stage_from_duckdb_file(
    con: Any, params: Params, path: Path, report: ValidationReport
) -> list[str]:
    try:
        # Attached read-only and read in place: no copy through Python.
        con.raw_sql(f"ATTACH {_sql_string(str(path))} AS {_SOURCE_DB} (READ_ONLY)")
    except Exception as exc:  # noqa: BLE001 - IO, lock and format errors alike
        raise SourceError(
            f"{path.name} could not be opened as a DuckDB database: {sources.short_detail(exc, 1)}",
            "check that it is a DuckDB file (not another database or a CSV), that no other "
            "program holds it open for writing, and that this DuckDB can read its version",
        ) from None
    names = set(con.list_tables(database=(_SOURCE_DB, "main")))
    staged = []
    for name, table in TABLES.items():
        if name not in names:
            continue
        cols = con.table(name, database=(_SOURCE_DB, "main")).columns
        if _columns_unambiguous(cols, table, params, report, f"table {name}"):
            _stage_raw_from_duckdb(con, _SOURCE_DB, table, name)
            staged.append(name)
    return staged


def _stage_from_workbook(
    con: Any, params: Params, path: Path, tmp: Path, report: ValidationReport
) -> list[str]:
    """One .xlsx workbook, one sheet per table: named after the table, or by data.sheets."""
    names = sources.sheet_names(path)
    per_table = getattr(params.data, "sheets", None) or {}
    staged = []
    for name, table in TABLES.items():
        try:
            if name in per_table:
                sheet = sources.resolve_sheet(names, per_table[name], path.name, name)
            else:
                sheet = sources.table_sheet(names, name)
        except SourceError as err:
            _report_source_error(report, table, err)
            continue
        if sheet is None:
            # the minimum input is orders, unless a contractual business gives contracts
            needed = name == "orders" and sources.table_sheet(names, "contracts") is None
            if needed and not per_table.get("contracts"):
                report.add(
                    "error",
                    name,
                    None,
                    "missing_file",
                    0,
                    f"workbook {path.name} has no sheet for the required table '{name}' "
                    f"(its sheets: {', '.join(map(repr, names))})",
                    fix=f"name the sheet '{name}', or map it in params: data.sheets.{name}: "
                    "<sheet name>",
                )
            continue
        if _stage_raw_file(con, table, path, params, tmp, report, sheet=sheet):
            staged.append(name)
    return staged


def _stage_from_folder(
    con: Any, params: Params, tmp: Path, report: ValidationReport
) -> tuple[list[str], dict[str, str], bool]:
    folder = Path(params.context.data)
    fingerprints: dict[str, str] = {}
    staged = []
    for name, path in find_source_files(params).items():
        table = TABLES[name]
        if name not in params.data.files:
            others = _table_files(folder, name)
            if len(others) > 1:
                report.add(
                    "error",
                    name,
                    None,
                    "ambiguous_file",
                    len(others),
                    f"{len(others)} files could be the {name} table: "
                    f"{', '.join(p.name for p in others)}; fupan will not pick one",
                    fix=f"remove or rename all but one, or name the file in data.files.{name}",
                )
                continue
        problem = sources.file_problem(path, name)
        if problem is not None:
            if problem.check == "missing_file":
                problem.message = f"file {path} (from data.files) does not exist"
            _report_source_error(report, table, problem)
            continue
        fingerprints[path.name] = sha256_file(path)
        if _stage_raw_file(con, table, path, params, tmp, report):
            staged.append(name)
    return staged, fingerprints, False


# --------------------------------------------------------------------------------------
# Typing and checking


def _examples(
    t: ir.Table, pred: ir.BooleanValue, cols: list[str], n: int = 5
) -> list[dict[str, Any]]:
    # a table without its own key names customer_id twice (as key and as the column)
    keep = list(dict.fromkeys(c for c in ["_row", *cols] if c in t.columns))
    rows = t.filter(pred).select(keep).order_by("_row").limit(n).to_pyarrow().to_pylist()
    return [
        {("row" if k == "_row" else k.removeprefix("_raw_")): v for k, v in r.items()} for r in rows
    ]


def _blank(v: ir.StringValue) -> ir.BooleanValue:
    return v.isnull() | (v.strip() == "")


# Currency signs and spaces around or inside a number ("¥ 1 234").
_MONEY_JUNK = r"[¥$€£\s]"
# Without a number_format, a comma is accepted only as a thousands separator in full groups
# of three before an optional decimal point: "1,234.5" yes; "683,63" and "1.234,50" are
# comma decimals, which a cleaner that drops commas would read as 68,363 and 123,450.
_US_THOUSANDS = r"^[-+]?\d{1,3}([,，]\d{3})+(\.\d*)?$"
_SEPARATORS = r"[,，]"
_SEPARATED_NUMBER = r"^[-+]?[0-9.]*[,，][0-9.,，]*$"


def _parse_number(s: ir.StringValue, fmt: Any = None) -> ir.FloatingValue:
    """Parse number text; a value whose separators could mean two things is NULL.

    A plain number casts directly; only values that fail are cleaned (the clean-up is a
    regex, ~3x the cast). A value that casts directly has no separators inside it, so the
    result is the one the clean-up would give. ``fmt`` (a
    :class:`fupan.core.params.NumberFormat`) names the decimal and thousands marks; a value that
    does not follow it is NULL too.
    """
    cleaned = s.re_replace(_MONEY_JUNK, "")
    if fmt is None:
        alt = ibis.ifelse(
            cleaned.re_search(_US_THOUSANDS),
            cleaned.re_replace(_SEPARATORS, ""),
            cleaned,
        )
        return ibis.coalesce(s.try_cast("float64"), alt.try_cast("float64"))
    dec, th = re.escape(fmt.decimal), re.escape(fmt.thousands)
    grouped = rf"^[-+]?\d{{1,3}}({th}\d{{3}})+({dec}\d*)?$" if th else r"^$"
    plain = rf"^[-+]?\d*({dec}\d*)?$"
    ok = cleaned.re_search(grouped) | cleaned.re_search(plain)
    text = cleaned.re_replace(th, "") if th else cleaned
    if fmt.decimal != ".":
        text = text.replace(fmt.decimal, ".")
    return ibis.ifelse(ok, text.try_cast("float64"), ibis.null().cast("float64"))


def _typed(raw: ir.Value, col: Column, fmt: Any = None) -> tuple[ir.Value, bool]:
    """The contract-typed column, and whether a non-blank value can fail to type.

    A source column that already has the contract's type is used as it is: its text form
    would parse back to the same value, so no value can fail. Any other column is typed from
    its text.
    """
    native = _native(raw, col)
    if native is not None:
        return native, False
    if not raw.type().is_string():
        raw = raw.cast("string")
    s = raw.strip().nullif("")
    if col.dtype == "str":
        return s, False
    if col.dtype in ("date", "datetime"):
        # Accept 2026-01-05, 2026/1/5, 2026.01.05 and an optional time; other orders are
        # ambiguous (05/01/2026) and are reported instead of guessed. The pattern can only
        # match with a separator as fifth character, so other values skip the regex.
        norm = ibis.ifelse(
            s.substr(4, 1).isin(["/", ".", "年"]),
            s.re_replace(r"^(\d{4})[/.年](\d{1,2})[/.月](\d{1,2})日?", r"\1-\2-\3"),
            s,
        )
        return norm.try_cast("date" if col.dtype == "date" else "timestamp"), True
    if col.dtype == "float":
        return _parse_number(s, fmt), True
    if col.dtype == "int":
        f = _parse_number(s, fmt)
        # try_cast: a whole number beyond int64 (or nan/inf) is a bad value, not a crash.
        return ibis.ifelse(f % 1 == 0, f.try_cast("int64"), ibis.null().cast("int64")), True
    if col.dtype == "bool":
        low = s.lower()
        return ibis.ifelse(
            low.isin(_TRUE), True, ibis.ifelse(low.isin(_FALSE), False, ibis.null().cast("boolean"))
        ), True
    raise ValueError(col.dtype)


def _native(raw: ir.Value, col: Column) -> ir.Value | None:
    """``raw`` as the contract type when its own type is that type, else None."""
    t = raw.type()
    if col.dtype == "date" and t.is_date():
        return raw
    if col.dtype == "datetime" and t.is_timestamp() and t.timezone is None and t.scale in (None, 6):
        return raw
    if col.dtype == "float" and t.is_float64():
        return raw
    if col.dtype == "float" and t.is_integer() and not t.is_uint64():
        # An integer converts to the same double its digits parse to (both round to nearest).
        return raw.cast("float64")
    if col.dtype == "int" and t.is_integer() and not t.is_uint64():
        return raw.cast("int64")
    if col.dtype == "bool" and t.is_boolean():
        return raw
    return None


def _fix_for_type(col: Column) -> str:
    return {
        "date": "use ISO dates (YYYY-MM-DD); day-first or month-first dates are ambiguous",
        "datetime": "use ISO timestamps (YYYY-MM-DD HH:MM:SS)",
        "float": "use plain numbers (a decimal point, no currency text)",
        "int": "use whole numbers",
        "bool": "use true/false (or 1/0, yes/no, 是/否)",
    }.get(col.dtype, "")


def _map_columns(
    raw_cols: list[str], table: Table, params: Params, report: ValidationReport
) -> dict[str, str] | None:
    """contract column -> raw column name; reports missing required columns."""
    mapping = {src: dst for src, dst in params.data.columns.get(table.name, {}).items()}
    bad_targets = [dst for dst in mapping.values() if dst not in table.column_names]
    for dst in bad_targets:
        report.add(
            "error",
            table.name,
            dst,
            "mapping",
            0,
            f"data.columns maps a source column onto '{dst}', which is not a contract column",
            fix=f"map onto one of: {', '.join(table.column_names)}",
        )
    lower = {c.lower(): c for c in raw_cols}
    out: dict[str, str] = {}
    for src, dst in mapping.items():
        if src in raw_cols:
            out[dst] = src
        elif src.lower() in lower:
            out[dst] = lower[src.lower()]
    for name in table.column_names:
        if name not in out and name.lower() in lower:
            out[name] = lower[name.lower()]
    missing = [c for c in table.required_columns if c not in out]
    _warn_near_misses(raw_cols, table, out, report)
    if missing:
        import difflib

        available = [c for c in raw_cols if c != "_row"]
        # Only a column the contract does not already use can be the missing one renamed:
        # "order_date" is never a misspelt "order_id".
        used = {v.lower() for v in out.values()} | {c.lower() for c in table.column_names}
        spare = [c for c in available if c.lower() not in used]
        for m in missing:
            near = difflib.get_close_matches(m, spare, n=1, cutoff=0.6)
            hint = f"rename '{near[0]}' to '{m}'" if near else "add the column"
            report.add(
                "error",
                table.name,
                m,
                "missing_column",
                0,
                f"required column '{m}' is missing (columns found: {', '.join(available)})",
                fix=f"{hint}, or map the source's own name in params: data.columns.{table.name}: {{<source name>: {m}}}",
            )
        return None
    return out


def vocabulary(table: str, column: str, params: Params) -> tuple[list[str], str] | None:
    """The closed set of values a column may hold, and where it is defined.

    Tiers come from ``tiers.order``, churn reasons from ``churn_definition.reasons``,
    channels and priorities from the contract (:mod:`fupan.io.schema`).
    """
    if (table, column) == ("customers", "tier"):
        return list(params.tiers.order), "tiers.order"
    if (table, column) == ("churn_events", "reason"):
        return list(params.churn_definition.reasons), "churn_definition.reasons"
    col = TABLES[table]._by_name.get(column) if table in TABLES else None
    if col is not None and col.allowed:
        return list(col.allowed), f"the contract's {table}.{column}"
    return None


def _vocab_fix(table: str, column: str, where: str, unknown: list[str], allowed: list[str]) -> str:
    import difflib

    pairs = []
    for u in unknown[:8]:
        near = difflib.get_close_matches(u.lower(), allowed, n=1, cutoff=0.0)
        pairs.append(f"{u}: {near[0] if near else allowed[-1]}")
    fix = f"map them in params: data.values: {{{table}: {{{column}: {{{', '.join(pairs)}}}}}}}"
    if where.startswith(("tiers", "churn")):
        fix += f", or add them to {where}"
        if where == "tiers.order":
            fix += " (best first, with tiers.spend_floors)"
    return fix


def _check_value_maps(params: Params, report: ValidationReport) -> None:
    """Every ``data.values`` mapping names a contract table and maps into its vocabulary."""
    for table, cols in params.data.values.items():
        if table not in TABLES:
            report.add(
                "error",
                table,
                None,
                "mapping",
                0,
                f"data.values names '{table}', which is not a contract table",
                fix=f"use one of: {', '.join(TABLES)}",
            )
            continue
        for column, mapping in cols.items():
            vocab = vocabulary(table, column, params)
            if vocab is None:
                continue
            bad = sorted({v for v in mapping.values() if v not in vocab[0]})
            if bad:
                report.add(
                    "error",
                    table,
                    column,
                    "mapping",
                    len(bad),
                    f"data.values.{table}.{column} maps onto {bad}, outside {vocab[1]} {vocab[0]}",
                    fix=f"map onto one of {vocab[0]}",
                )


def _vocabulary_map(
    raw: ir.Table,
    src: ir.StringValue,
    table: Table,
    column: str,
    params: Params,
    report: ValidationReport,
) -> tuple[dict[str, str], bool]:
    """Case-only variants -> the vocabulary's spelling, and whether every value is known.

    Unknown values are an error listing them with their counts and the ``data.values``
    mapping to add; "Gold" for "gold" is normalised with a warning. Blank values are left
    to the null checks.
    """
    vocab = vocabulary(table.name, column, params)
    if vocab is None:
        return {}, True
    allowed, where = vocab
    v = src.strip()
    counts = (
        raw.mutate(_v=v)
        .filter(lambda t: t._v.notnull() & (t._v != "") & ~t._v.isin(allowed))
        .group_by("_v")
        .aggregate(n=lambda t: t.count())
        .order_by([ibis.desc("n"), "_v"])
        .limit(200)
        .to_pyarrow()
        .to_pylist()
    )
    if not counts:
        return {}, True
    lower = {a.lower(): a for a in allowed}
    case = {r["_v"]: lower[r["_v"].lower()] for r in counts if r["_v"].lower() in lower}
    if case:
        n = sum(r["n"] for r in counts if r["_v"] in case)
        report.add(
            "warning",
            table.name,
            column,
            "case_normalised",
            n,
            f"{n:,} value(s) differ from {where} only in case or spaces "
            f"({', '.join(f'{k!r}→{v!r}' for k, v in list(case.items())[:6])}); normalised",
            fix=f"write the values as in {where}",
        )
    unknown = [r for r in counts if r["_v"] not in case]
    if unknown:
        at = raw.mutate(**{column: v})
        examples = _examples(at, at[column].isin([r["_v"] for r in unknown]), [column])
        n = sum(r["n"] for r in unknown)
        listed = ", ".join(f"{r['_v']!r} ({r['n']:,})" for r in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        report.add(
            "error",
            table.name,
            column,
            "vocabulary",
            n,
            f"{n:,} value(s) outside {where} {allowed}: {listed}{more}",
            fix=_vocab_fix(table.name, column, where, [r["_v"] for r in unknown], allowed),
            examples=examples,
        )
    return case, not unknown


def _warn_near_misses(
    raw_cols: list[str], table: Table, out: dict[str, str], report: ValidationReport
) -> None:
    """A source column that looks like an optional contract column the source lacks.

    Optional columns are not errors when absent, so a misspelt "tire" would vanish without
    a word and every tier slide would say tiers were not supplied.
    """
    import difflib

    used = {v.lower() for v in out.values()}
    spare = [c for c in raw_cols if c != "_row" and c.lower() not in used]
    for col in table.columns:
        if col.name in out or col.required:
            continue
        near = difflib.get_close_matches(col.name, spare, n=1, cutoff=0.75)
        if near:
            report.add(
                "warning",
                table.name,
                col.name,
                "unused_column",
                0,
                f"optional column '{col.name}' is not supplied, but the source has "
                f"'{near[0]}', which is not used",
                fix=f"rename '{near[0]}' to '{col.name}', or map it in params: "
                f"data.columns.{table.name}: {{{near[0]}: {col.name}}}",
            )


def _drop_empty_optional(
    raw: ir.Table, table: Table, mapping: dict[str, str], report: ValidationReport
) -> None:
    """An optional column that must be filled when given, but is empty throughout, is
    treated as not supplied (an export with an empty tier column), not as an error per row.

    Customers only: the check reads the source once more, cheap for one row per customer
    but a second pass over a text file of events.
    """
    if table.name != "customers":
        return
    cols = [c.name for c in table.columns if not c.required and not c.nullable]
    cols = [c for c in cols if c in mapping]
    if not cols:
        return
    filled = {
        c: (~_blank(raw[mapping[c]].cast("string"))).cast("int64").sum().name(c) for c in cols
    }
    counts = raw.aggregate(**filled).to_pyarrow().to_pylist()[0]
    for c in cols:
        if not counts[c]:
            report.add(
                "info",
                table.name,
                c,
                "empty_column",
                0,
                f"column '{mapping[c]}' is empty throughout: {table.name}.{c} is treated as "
                "not supplied",
            )
            del mapping[c]


def _check_and_type(con: Any, table: Table, params: Params, report: ValidationReport) -> str:
    """Type one staged table and check it; returns "ok", "failed" or "empty".

    The typed table is the single materialisation of the source (a temporary table): every
    check reads it. It keeps a column's source text (``_raw_<column>``) only where a value
    can fail to type, for the error's example rows. Columns the contract makes optional and
    the source lacks: ``order_id`` is generated from the source row; every other customers
    column is added as typed NULLs, so downstream code never meets a missing column.
    """
    raw = con.table(f"raw_{table.name}")
    mapping = _map_columns(raw.columns, table, params, report)
    if mapping is None:
        return "failed"
    _drop_empty_optional(raw, table, mapping, report)
    value_maps = params.data.values.get(table.name, {})
    typed_cols: dict[str, ir.Value] = {"_row": raw["_row"]}
    raw_cols: dict[str, ir.Value] = {}
    ok = True
    for col in table.columns:
        if col.name not in mapping:
            if table.name == "orders" and col.name == "order_id":
                # Deterministic: the source row (file line, or row of a sheet or table).
                typed_cols[col.name] = raw["_row"].cast("string")
                report.derived["orders.order_id"] = "source_row"
            elif table.name == "customers":
                typed_cols[col.name] = ibis.null().cast(_IBIS_TYPE[col.dtype])
            continue
        src = raw[mapping[col.name]]
        if col.name in value_maps:
            if not src.type().is_string():
                src = src.cast("string")
            src = src.substitute(value_maps[col.name])
        fmt = params.data.number_format_for(table.name, col.name)
        typed_cols[col.name], can_fail = _typed(src, col, fmt)
        if can_fail:
            raw_cols[f"_raw_{col.name}"] = src if src.type().is_string() else src.cast("string")
    for extra in raw.columns:
        if any(extra.startswith(p) for p in table.extra_prefixes):
            typed_cols[extra], _ = _typed(raw[extra], Column(extra, "float", nullable=True))
    t = _materialise(con, f"typed_{table.name}", raw.select(**raw_cols, **typed_cols), temp=True)
    # Closed vocabularies are read from the typed table (in memory), not the source again.
    for col in table.columns:
        if col.name in mapping and vocabulary(table.name, col.name, params) is not None:
            case, known = _vocabulary_map(t, t[col.name], table, col.name, params, report)
            ok &= known
            if case:
                name, c = _sql_name(f"typed_{table.name}"), _sql_name(col.name)
                whens = " ".join(
                    f"WHEN {_sql_string(k)} THEN {_sql_string(v)}" for k, v in case.items()
                )
                con.raw_sql(
                    f"UPDATE temp.main.{name} SET {c} = CASE {c} {whens} END WHERE {c} IN "
                    f"({', '.join(_sql_string(k) for k in case)})"
                )
                t = con.table(f"typed_{table.name}")
    checks = _column_checks(t, table, mapping, params)
    aggs = {f"c{i}": c[3].cast("int64").sum() for i, c in enumerate(checks)}
    filled = {f"f__{c}": t[c].notnull().sum() for c in mapping if c in t.columns}
    counts = t.aggregate(rows=t.count(), **aggs, **filled).to_pyarrow().to_pylist()[0]
    n_rows = int(counts["rows"])
    if n_rows == 0:
        return "empty"
    report.supplied[table.name] = [c for c in mapping if int(counts.get(f"f__{c}") or 0) > 0]
    for i, (sev, col_name, check, pred, what, fix, ex_cols) in enumerate(checks):
        n_bad = int(counts[f"c{i}"] or 0)
        if n_bad:
            ok &= sev != "error"
            report.add(
                sev,
                table.name,
                col_name,
                check,
                n_bad,
                f"{n_bad:,} {what}",
                fix=fix,
                examples=_examples(t, pred, ex_cols),
            )
    if table.key and table.key in mapping:
        dup = t.group_by(table.key).aggregate(n=t.count()).filter(lambda g: g.n > 1)
        n_dup = int(dup.count().to_pyarrow().as_py())
        if n_dup:
            ok = False
            keys = dup.order_by(table.key).limit(5)[table.key].to_pyarrow().to_pylist()
            report.add(
                "error",
                table.name,
                table.key,
                "duplicate_key",
                n_dup,
                f"{n_dup:,} {table.key} value(s) appear more than once",
                fix=f"deduplicate the export so each {table.key} is unique",
                examples=_examples(t, t[table.key].isin(keys), [table.key]),
            )
    report.profile[table.name] = {"rows": n_rows, "columns": sorted(mapping)}
    return "ok" if ok else "failed"


_IBIS_TYPE = {
    "str": "string",
    "date": "date",
    "datetime": "timestamp",
    "float": "float64",
    "int": "int64",
    "bool": "boolean",
}

_Check = tuple[Severity, str, str, ir.BooleanValue, str, str, list[str]]


def _number_fix(table: str, column: str) -> str:
    return (
        "name the format in params: data.number_format: "
        f'{{{table}: {{{column}: {{decimal: ",", thousands: "."}}}}}} '
        '(or {decimal: ".", thousands: ","}), per table or for every column'
    )


def _column_checks(
    t: ir.Table, table: Table, mapping: dict[str, str], params: Params
) -> list[_Check]:
    """Every column check of a table as one predicate each, all counted in a single scan."""
    checks: list[_Check] = []
    drop_amounts = table.name == "orders" and params.data.bad_amounts == "drop"
    for col in table.columns:
        if col.name not in mapping:
            continue
        # with data.bad_amounts: drop, bad amounts are warned about (their rows dropped)
        lenient = drop_amounts and col.name == "amount"
        parsed, blank = _parse_checks(t, table, col, params)
        checks += parsed
        if col.dtype == "float":
            checks.append(_finite_check(t[col.name], table, col, lenient))
        if not col.nullable:
            checks.append(_null_check(blank, table, col, lenient))
        if col.min is not None or col.max is not None:
            checks.append(_range_check(t[col.name], table, col))
    return checks


def _parse_checks(
    t: ir.Table, table: Table, col: Column, params: Params
) -> tuple[list[_Check], ir.BooleanValue]:
    """Values the column's type could not parse (ambiguous number formats apart), and
    where the source is empty."""
    v = t[col.name]
    if f"_raw_{col.name}" not in t.columns:
        # Typed without parsing, or as trimmed text: empty exactly where the source is.
        return [], v.isnull()
    checks: list[_Check] = []
    r = t[f"_raw_{col.name}"]
    blank = _blank(r)
    bad = ~blank & v.isnull()
    if (
        col.dtype in ("float", "int")
        and params.data.number_format_for(table.name, col.name) is None
    ):
        # digits and separators only: a number whose marks could mean two things
        seps = bad & r.re_replace(_MONEY_JUNK, "").re_search(_SEPARATED_NUMBER)
        checks.append(
            (
                "error",
                col.name,
                "number_format",
                seps,
                "value(s) with a comma that is not a thousands separator "
                "(comma decimals such as '683,63' or '1.234,50'?); not guessed",
                _number_fix(table.name, col.name),
                [f"_raw_{col.name}"],
            )
        )
        bad = bad & ~seps
    checks.append(
        (
            "error",
            col.name,
            "type",
            bad,
            f"value(s) are not a valid {col.dtype}",
            _fix_for_type(col)
            if col.dtype != "float" or params.data.number_format_for(table.name, col.name) is None
            else "write the numbers as data.number_format says",
            [f"_raw_{col.name}"],
        )
    )
    return checks, blank


def _finite_check(v: ir.Value, table: Table, col: Column, lenient: bool) -> _Check:
    return (
        "warning" if lenient else "error",
        col.name,
        "not_finite",
        v.notnull() & (v.isnan() | v.isinf()),
        "value(s) are NaN or infinite" + ("; those rows were dropped" if lenient else ""),
        ""
        if lenient
        else "correct the values, or set data.bad_amounts: drop"
        if col.name == "amount"
        else "correct the values",
        [table.key or "customer_id", col.name],
    )


def _null_check(blank: ir.BooleanValue, table: Table, col: Column, lenient: bool) -> _Check:
    return (
        "warning" if lenient else "error",
        col.name,
        "nulls",
        blank,
        "empty value(s) in a column that must be filled"
        + ("; those rows were dropped" if lenient else ""),
        ""
        if lenient
        else "fill the column in the export or drop those rows"
        + (", or set data.bad_amounts: drop" if col.name == "amount" else ""),
        table.column_names[:3],
    )


def _range_check(v: ir.Value, table: Table, col: Column) -> _Check:
    cond = ibis.literal(False)
    if col.min is not None:
        cond = cond | (v < col.min)
    if col.max is not None:
        cond = cond | (v > col.max)
    return (
        "error",
        col.name,
        "range",
        v.notnull() & cond,
        f"value(s) outside [{col.min}, {col.max}]",
        "correct the values or the column mapping (e.g. a 5-point scale mapped onto nps)",
        [table.key or "customer_id", col.name],
    )


@dataclass
class _Finding:
    """A cleaning check: counted in one scan with the others, examples read only if hit."""

    severity: Severity
    column: str
    check: str
    flag: str  # boolean column of ``at``: the row is kept so far and has the problem
    at: ir.Table  # the table as it was when the check ran (later steps may blank columns)
    message: Callable[[int], str]
    fix: str
    example_cols: list[str]


class _Cleaning:
    """One table under the cleaning rules.

    The rules run in order (orphans, then each date column, then the consistency checks),
    each on the rows the earlier ones kept. Rather than filtering between steps, every row
    carries a ``_keep`` flag and every check a flag column, so one scan counts them all and
    one more writes the clean table.
    """

    def __init__(self, t: ir.Table):
        self.t = t.mutate(_keep=ibis.literal(True))
        self.findings: list[_Finding] = []

    def check(
        self,
        pred: ir.BooleanValue,
        severity: Severity,
        column: str,
        check: str,
        message: Callable[[int], str],
        fix: str,
        example_cols: list[str],
    ) -> None:
        flag = f"_flag{len(self.findings)}"
        self.t = self.t.mutate(**{flag: self.t._keep & pred})
        self.findings.append(
            _Finding(severity, column, check, flag, self.t, message, fix, example_cols)
        )

    def drop(self, pred: ir.BooleanValue) -> None:
        self.t = self.t.mutate(_keep=self.t._keep & ~pred)

    def counts(self) -> dict[str, Any]:
        t = self.t
        aggs = {f.flag: t[f.flag].cast("int64").sum() for f in self.findings}
        return (
            t.aggregate(rows=t.count(), kept=t._keep.cast("int64").sum(), **aggs)
            .to_pyarrow()
            .to_pylist()[0]
        )

    def clean(self, sort: bool) -> ir.Table:
        """The kept rows; ``sort`` restores source order after a join, which may shuffle it."""
        t = self.t
        keep = [c for c in t.columns if not c.startswith("_flag") and c not in ("_row", "_keep")]
        kept = t.filter(t._keep)
        return (kept.order_by("_row") if sort else kept).select(keep)


def _cleaning_rules(
    typed: ir.Table,
    table: Table,
    params: Params,
    ids: ir.Table,
    orphans: bool = True,
    kept_ids: ir.Table | None = None,
) -> _Cleaning:
    """The cleaning rules of one table, in order; ``orphans=False`` leaves out that check.

    ``ids`` are every customer of the source, ``kept_ids`` those the clean customers table
    kept: rows of a customer the run excluded (acquired after as_of) are excluded with them
    rather than counted, and are not orphans.
    """
    name = table.name
    c = _Cleaning(typed.select(*(x for x in typed.columns if not x.startswith("_raw_"))))
    if orphans and table.references_customers and name != "customers":
        _drop_orphans(c, table, params, ids, kept_ids)
    if name == "customers":
        _drop_without_acquisition(c)
    if name == "orders" and params.data.bad_amounts == "drop":
        # reported by the column checks; the policy drops them here
        a = c.t.amount
        c.drop(a.isnull() | a.isnan().fill_null(False) | a.isinf().fill_null(False))
    _exclude_after_as_of(c, table, params)
    _check_consistency(c, name)
    return c


def _drop_orphans(
    c: _Cleaning, table: Table, params: Params, ids: ir.Table, kept_ids: ir.Table | None
) -> None:
    """Rows of customers the source does not have (by policy), then of customers the run
    excluded."""
    orphan = ~c.t.customer_id.isin(ids.customer_id)
    sev: Severity = "error" if params.data.orphans == "fail" else "warning"
    action = "the run stops" if sev == "error" else "they were dropped"
    c.check(
        orphan,
        sev,
        "customer_id",
        "orphans",
        lambda n, a=action: f"{n:,} row(s) reference customers that are not in customers; {a}",
        "export customers and events from the same snapshot, or set data.orphans: drop",
        [table.key or "customer_id", "customer_id"],
    )
    c.drop(orphan)
    if kept_ids is not None:
        excluded = ~c.t.customer_id.isin(kept_ids.customer_id)
        c.check(
            excluded,
            "warning",
            "customer_id",
            "excluded_customer",
            lambda n: (
                f"{n:,} row(s) of customers excluded from this run "
                "(acquired after as_of, or without an acquisition date); excluded with them"
            ),
            "",
            [table.key or "customer_id", "customer_id"],
        )
        c.drop(excluded)


def _drop_without_acquisition(c: _Cleaning) -> None:
    # only a derived acquired_at can be empty here: a customer with no order or contract
    c.check(
        c.t.acquired_at.isnull(),
        "warning",
        "acquired_at",
        "no_acquired_at",
        lambda n: (
            f"{n:,} customer(s) without acquired_at and without any order or "
            "contract: no acquisition date; excluded"
        ),
        "supply customers.acquired_at",
        ["customer_id"],
    )
    c.drop(c.t.acquired_at.isnull())


def _exclude_after_as_of(c: _Cleaning, table: Table, params: Params) -> None:
    """Rows dated after as_of leave the run (a ticket's later answer is blanked instead)."""
    as_of = pd.Timestamp(params.as_of)
    name = table.name
    for col in table.columns:
        if col.not_after_as_of and col.name in c.t.columns:
            dtype = "timestamp" if col.dtype == "datetime" else "date"
            limit = ibis.literal(
                as_of + pd.Timedelta(days=1) if dtype == "timestamp" else as_of.date()
            )
            v = c.t[col.name]
            late = v.notnull() & ((v >= limit) if dtype == "timestamp" else (v > limit))
            c.check(
                late,
                "warning",
                col.name,
                "after_as_of",
                lambda n: f"{n:,} row(s) dated after as_of {params.as_of}; excluded from this run",
                "expected when re-running an earlier month; otherwise check the dates",
                [table.key or "customer_id", col.name],
            )
            if col.nullable and name == "tickets" and col.name != "opened_at":
                # A response after as_of was not yet known on as_of: the ticket was open.
                c.t = c.t.mutate(**{col.name: ibis.ifelse(late, ibis.null().cast("timestamp"), v)})
            else:
                c.drop(late)


def _check_consistency(c: _Cleaning, name: str) -> None:
    """Refunds and zero orders (kept), contracts and tickets whose dates run backwards."""
    if name == "orders":
        for op, check, msg in (
            (lambda a: a < 0, "refunds", "negative amounts (refunds)"),
            (lambda a: a == 0, "zero_amount", "zero amounts"),
        ):
            c.check(
                op(c.t.amount),
                "warning",
                "amount",
                check,
                lambda n, m=msg: f"{n:,} order(s) with {m}; kept and netted",
                "",
                ["order_id", "amount"],
            )
    if name == "contracts":
        c.check(
            c.t.end_date < c.t.start_date,
            "error",
            "end_date",
            "order",
            lambda n: f"{n:,} contract(s) end before they start",
            "swap or correct start_date / end_date",
            ["contract_id", "start_date", "end_date"],
        )
    if name == "tickets":
        c.check(
            c.t.resolved_at.notnull() & (c.t.resolved_at < c.t.opened_at),
            "error",
            "resolved_at",
            "order",
            lambda n: f"{n:,} ticket(s) resolved before they were opened",
            "check the time zone and column mapping of the ticket export",
            ["ticket_id", "opened_at", "resolved_at"],
        )
        c.check(
            c.t.first_response_at.notnull() & (c.t.first_response_at < c.t.opened_at),
            "error",
            "first_response_at",
            "order",
            lambda n: f"{n:,} ticket(s) answered before they were opened",
            "check the time zone and column mapping of the ticket export",
            ["ticket_id", "opened_at", "first_response_at"],
        )


def _clean_table(con: Any, name: str, params: Params, report: ValidationReport) -> None:
    """Create one final table: orphans and rows after as_of handled by policy.

    Runs as soon as the table has passed its checks (customers first), so only one event
    table is held typed in memory at a time.
    """
    ids = con.table("typed_customers").select("customer_id")
    kept_ids = con.table("customers").select("customer_id") if name != "customers" else None
    table = TABLES[name]
    typed = con.table(f"typed_{name}")
    c = _cleaning_rules(typed, table, params, ids, kept_ids=kept_ids)
    row = c.counts()
    for f in c.findings:
        n = int(row[f.flag] or 0)
        if n:
            p = report.add(
                f.severity,
                name,
                f.column,
                f.check,
                n,
                f.message(n),
                fix=f.fix,
                examples=_examples(f.at, f.at[f.flag], f.example_cols),
            )
            if f.check == "orphans":
                _judge_orphans(con, name, p, n, int(row["rows"]), params)
    has_orphans = any(
        f.check in ("orphans", "excluded_customer") and row[f.flag] for f in c.findings
    )
    if not has_orphans:
        # Without orphans the rest of the rules keep the same rows; leaving out the
        # anti-join lets the table stream to disk in source order.
        c = _cleaning_rules(typed, table, params, ids, orphans=False)
    _materialise(con, name, c.clean(sort=has_orphans), temp=False)
    if not int(row["kept"] or 0) and not table.required and name not in CORE_TABLES:
        report.add(
            "warning",
            name,
            None,
            "empty",
            0,
            "the table has no rows; sections that need it are skipped",
        )


def _id_norm(col: str) -> str:
    # "1.0", "001", " A1 " and "a1" all read as the same key
    return f"ltrim(regexp_replace(lower(trim({col})), '\\.0+$', ''), '0')"


_MIN_ORPHANS = 5


def _judge_orphans(con: Any, name: str, p: Any, n: int, rows: int, params: Params) -> None:
    """Orphans above ``data.orphan_threshold`` are an error; a key-format mismatch is named."""
    share = n / rows if rows else 0.0
    typed = _sql_name(f"typed_{name}")
    same = con.raw_sql(
        f"SELECT count(*) FROM {typed} o WHERE o.customer_id NOT IN "
        f"(SELECT customer_id FROM typed_customers) AND {_id_norm('o.customer_id')} IN "
        f"(SELECT {_id_norm('customer_id')} FROM typed_customers)"
    ).fetchone()[0]
    if same and same >= n / 2:
        ex = con.raw_sql(
            f"SELECT o.customer_id, c.customer_id FROM {typed} o JOIN typed_customers c "
            f"ON {_id_norm('o.customer_id')} = {_id_norm('c.customer_id')} "
            "WHERE o.customer_id <> c.customer_id LIMIT 1"
        ).fetchone()
        if ex:
            p.fix = (
                f"customer_id is written differently: {ex[0]!r} in {name}, {ex[1]!r} in customers "
                "(a number format such as '1.0', leading zeros, case or spaces); export both "
                "as the same text"
            )
    # A share from a handful of rows says little about the export (1 orphan in 10 orders):
    # those are reported and dropped; from five rows on, or when every row is orphaned, the
    # share decides.
    decisive = n >= _MIN_ORPHANS or n == rows
    if decisive and share > params.data.orphan_threshold and p.severity != "error":
        p.severity = "error"
        p.message = (
            f"{n:,} row(s) ({share:.1%}) reference customers that are not in customers: more "
            f"than data.orphan_threshold ({params.data.orphan_threshold:.0%}); the run stops"
        )
        if not p.fix.startswith("customer_id is written"):
            p.fix = (
                "export customers and events from the same snapshot, or raise "
                "data.orphan_threshold if the loss is understood"
            )


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


def default_floor_shares(k: int) -> list[float]:
    """Cumulative share of customers with spend at or above each tier's floor (best first).

    Four tiers: top 5%, next 15%, next 30%, the rest (cumulative 5%, 20%, 50%). Two tiers:
    top 20%; three: top 5%, next 25%. More than four: cumulative shares evenly spaced on a
    log scale from 5% to 50%. The last tier has no floor (it takes the rest).
    """
    import numpy as np

    table = {1: [], 2: [0.20], 3: [0.05, 0.30], 4: [0.05, 0.20, 0.50]}
    if k in table:
        return table[k]
    return [float(x) for x in np.geomspace(0.05, 0.5, k - 1)]


def resolve_floors(spend: Any, k: int) -> tuple[list[float], list[float]]:
    """Spend floors in the data's own scale: quantiles of positive trailing-12-month spend.

    Floor i is the ``1 - share_i`` quantile of the spend of customers who spent anything
    (:func:`default_floor_shares`), rounded to two significant digits; the last floor is 0.
    Without any positive spend no floor but the last is reachable.
    """
    import numpy as np

    shares = default_floor_shares(k)
    pos = np.asarray(spend, dtype=float)
    pos = pos[np.isfinite(pos) & (pos > 0)]
    if not len(pos):
        return [float("inf")] * (k - 1) + [0.0], shares
    floors: list[float] = []
    for sh in shares:
        q = float(np.quantile(pos, 1 - sh))
        q = float(f"{q:.2g}")
        floors.append(min(q, floors[-1]) if floors else q)
    return floors + [0.0], shares


def _spend_sql(params: Params, report: ValidationReport) -> str:
    """customer_id, trailing-12-month spend and days since last activity, per clean customer.

    The rule of :func:`fupan.measures.segments.customer_features` (net order amount in
    (as_of - 1 year, as_of], recency from the last order or else acquired_at). Without
    orders (a contractual business): the annual value of contracts running in that year,
    and days since the last contract ended.
    """
    from fupan.measures.segments import trailing_start

    as_of = pd.Timestamp(params.as_of).date()
    t12 = trailing_start(as_of)
    if "orders" in report.present:
        return (
            "SELECT c.customer_id, c.rowid AS _ord, coalesce(sum(o.amount) FILTER "
            f"(WHERE o.order_date >= DATE '{t12}'), 0) AS spend, date_diff('day', "
            f"coalesce(max(o.order_date), any_value(c.acquired_at)), DATE '{as_of}') AS recency "
            "FROM main.customers c LEFT JOIN main.orders o USING (customer_id) "
            "GROUP BY c.customer_id, c.rowid"
        )
    return (
        "SELECT c.customer_id, c.rowid AS _ord, coalesce(sum(k.annual_value) FILTER "
        f"(WHERE k.end_date >= DATE '{t12}'), 0) AS spend, greatest(date_diff('day', "
        f"coalesce(max(k.end_date), any_value(c.acquired_at)), DATE '{as_of}'), 0) AS recency "
        "FROM main.customers c LEFT JOIN main.contracts k USING (customer_id) "
        "GROUP BY c.customer_id, c.rowid"
    )


def tier_case_sql(order: list[str], floors: list[float], dormant_days: int) -> str:
    """The spend-floor rule of :func:`fupan.measures.segments.spend_tier` as a SQL CASE over
    ``spend`` and ``recency``: dormant customers take the last tier; otherwise the best
    tier whose floor the spend reaches."""
    import math

    whens = [f"WHEN recency >= {int(dormant_days)} THEN {_sql_string(order[-1])}"]
    for code, floor in zip(order[:-1], floors[:-1], strict=True):
        if math.isfinite(floor):
            whens.append(f"WHEN spend >= {float(floor)!r} THEN {_sql_string(code)}")
    return f"CASE {' '.join(whens)} ELSE {_sql_string(order[-1])} END"


def fill_tiers(con: Any, params: Params, report: ValidationReport) -> None:
    """Resolve ``tiers.spend_floors`` and fill ``customers.tier`` when the source has none.

    Floors the params file does not set come from the data (:func:`resolve_floors`) when the
    data has no tiers of its own or ``tiers.order`` is not the default four; they are
    written into ``params`` in place and recorded in ``report.tier_floors``. Without an
    assigned tier, every customer gets the tier the spend-floor rule gives.
    """
    tiers = params.tiers
    supplied = "tier" in report.supplied.get("customers", [])
    explicit = "spend_floors" in tiers.model_fields_set
    placeholder = not all(f < float("inf") for f in tiers.spend_floors)
    spend_sql = _spend_sql(params, report)
    if explicit:
        report.tier_floors = {"source": "params", "floors": list(tiers.spend_floors)}
    elif supplied and not placeholder:
        report.tier_floors = {"source": "default", "floors": list(tiers.spend_floors)}
        report.add(
            "info",
            "customers",
            "tier",
            "spend_floors",
            0,
            f"tiers.spend_floors is not set: the default floors {tiers.spend_floors} decide "
            "the recommended tier",
            fix="set tiers.spend_floors in the data's currency and scale",
        )
    else:
        spend = con.raw_sql(f"SELECT spend FROM ({spend_sql})").fetchnumpy()["spend"]
        floors, shares = resolve_floors(spend, len(tiers.order))
        tiers.spend_floors = floors
        report.tier_floors = {
            "source": "data",
            "floors": floors,
            "shares": shares,
            "rule": "quantiles of trailing-12-month net spend of customers with spend: "
            + ", ".join(f"top {s:.0%}" for s in shares)
            + ", rest; rounded to two significant digits",
        }
    if supplied:
        return
    case = tier_case_sql(tiers.order, tiers.spend_floors, tiers.dormant_days)
    con.raw_sql(
        "CREATE OR REPLACE TABLE main.customers__new AS SELECT c.* REPLACE (t.tier AS tier) "
        f"FROM main.customers c JOIN (SELECT customer_id, _ord, {case} AS tier FROM "
        f"({spend_sql})) t USING (customer_id) ORDER BY t._ord"
    )
    con.raw_sql("DROP TABLE main.customers")
    con.raw_sql("ALTER TABLE main.customers__new RENAME TO customers")
    report.derived["customers.tier"] = "spend_floors"


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
