"""Reading a data source into the staging database, every value as text.

Finds each contract table's file in a folder (any readable suffix, any case), detects the
text encoding and the header row, picks the Excel sheet, and stages CSV, Excel, Parquet,
DuckDB/SQLite files and database URLs as raw tables. Typing and checking them is
:mod:`fupan.io.contract`'s job.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.io import sources
from fupan.io.schema import TABLES, Table
from fupan.io.sources import SourceError
from fupan.io.validation import DataValidationError, ValidationReport

FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".xlsx", ".xlsm", ".txt")


# DuckDB's per-file row counter column of read_parquet.
_FILE_ROW = "file_row_number"


# A raw view without ``_row`` carries this constant instead: the source row of its n-th
# row (0-based) is n + the constant. The typed table, written in the view's order, numbers
# its rows from its own row ids (:func:`fupan.io.contract._check_and_type`).
ROW_BASE = "_row_base"


# Catalog name of an attached DuckDB file source while it is read.
_SOURCE_DB = "fupan_source"


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
    return _materialise_sql(con, name, con.compile(expr), temp)


def _materialise_sql(con: Any, name: str, sql: str, temp: bool) -> ir.Table:
    """:func:`_materialise` of a compiled query."""
    kind = "TEMP TABLE" if temp else "TABLE"
    con.raw_sql(f"CREATE OR REPLACE {kind} {_sql_name(name)} AS {sql}")
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
    # The source row is numbered after typing, by position (see ROW_BASE): a row_number()
    # window here would funnel reading and typing the whole file through one thread.
    expr = src.select(**cols, **{ROW_BASE: ibis.literal(2 + skip, "int64")})
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
