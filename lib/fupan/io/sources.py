"""What a data source really is, before the engine reads it: files, encodings, sheets, URLs.

Every problem found here is a :class:`SourceError` with the file (or source), the problem
and the fix in words, which the loader turns into one report entry. A messy export should
meet one clear sentence, never a parser's traceback or a cascade of follow-on errors.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import errno
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fupan.core.params import Params
from fupan.io.schema import Table

# Header cells like "客户编号 " or "\ufeffcustomer_id" are normal in CRM exports.
HEADER_JUNK = re.compile(r"^[\s\ufeff\"']+|[\s\"']+$")
# How much of a text file is read to find its header: bounded, whatever a field holds.
HEAD_CHARS = 1 << 20
HEAD_ROWS = 15
# Byte signatures of formats that are not text, and what a user would call them.
_SIGNATURES = (
    (b"PK\x03\x04", "an Excel .xlsx workbook (or another zip archive)", ".xlsx"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook", ".xlsx"),
    (b"PAR1", "a Parquet file", ".parquet"),
    (b"SQLite format 3\x00", "a SQLite database", ".db"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_FIX = (
    "set the file's encoding in params, e.g. data.encodings: {{{table}: gb18030}} "
    "(or utf-16, big5, latin-1), or save the file again as UTF-8"
)


class SourceError(Exception):
    """A source, file or table that cannot be read as it is: the problem and its fix."""

    def __init__(self, message: str, fix: str, check: str = "unreadable"):
        self.message = message
        self.fix = fix
        self.check = check
        super().__init__(message)


def normalise_header(name: Any) -> str:
    return HEADER_JUNK.sub("", str(name))


# --------------------------------------------------------------------------------------
# Files


def file_problem(path: Path, table: str) -> SourceError | None:
    """Why a table's file cannot be read (missing, a link loop, a folder, no permission,
    0 bytes), or None when it can be opened and has content."""
    name = str(path)
    try:
        os.lstat(path)
    except OSError:
        return SourceError(
            f"file {name} does not exist",
            f"correct data.files.{table} or add the file",
            "missing_file",
        )
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SourceError(
                f"{name} is a symbolic link that loops back on itself ({exc.strerror})",
                "point the link at the real file, or replace the link with the file",
            )
        if exc.errno == errno.ENOENT:
            target = os.readlink(path) if os.path.islink(path) else "?"
            return SourceError(
                f"{name} is a symbolic link to {target}, which does not exist",
                "point the link at the real file, or replace the link with the file",
            )
        return _os_problem(name, exc)
    if os.path.isdir(path):
        return SourceError(
            f"{name} is a folder, not a file",
            f"put the {table} table's file there, or name it in data.files.{table}",
        )
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return _os_problem(name, exc)
    if st.st_size == 0:
        return SourceError(
            f"{name} is an empty file (0 bytes): no header, no rows",
            f"export the {table} table again, or remove the file if the table has no data",
            "empty_file",
        )
    return None


def _os_problem(name: str, exc: OSError) -> SourceError:
    if isinstance(exc, PermissionError):
        return SourceError(
            f"{name} cannot be read: permission denied",
            "give the user running fupan read permission (e.g. chmod a+r), or copy the "
            "file to a folder you own",
        )
    why = exc.strerror or str(exc)
    return SourceError(
        f"{name} cannot be read: {why}",
        "check that the file is on a mounted, readable disk and copy it somewhere local",
    )


def signature(path: Path) -> tuple[str, str] | None:
    """(what the file is, the suffix it should have) when its bytes say it is not text."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    for magic, what, suffix in _SIGNATURES:
        if head.startswith(magic):
            return what, suffix
    return None


# --------------------------------------------------------------------------------------
# Encodings


def sniff_encoding(head: bytes) -> str | None:
    """A codec the first bytes prove: a byte-order mark, or UTF-16 without one.

    UTF-16 text of a CSV (ASCII digits, separators, Latin or CJK headers) has a zero byte in
    nearly every other position; no UTF-8 or GB18030 text has any.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    sample = head[: len(head) - len(head) % 2]
    if len(sample) < 8:
        return None
    even = sample[0::2].count(0) / (len(sample) / 2)
    odd = sample[1::2].count(0) / (len(sample) / 2)
    if odd > 0.3 and even < 0.05:
        return "utf-16-le"
    if even > 0.3 and odd < 0.05:
        return "utf-16-be"
    return None


def declared_encoding(params: Params, table: str) -> str:
    """data.encodings.<table>, else data.encoding (read defensively: older params lack it)."""
    per_table = getattr(params.data, "encodings", None) or {}
    return str(per_table.get(table, params.data.encoding))


def check_codec(name: str, table: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise SourceError(
            f"'{name}' is not an encoding Python knows",
            "use a codec name such as utf-8, gb18030, utf-16, big5 or latin-1 in "
            f"data.encodings.{table} (or data.encoding)",
            "encoding",
        ) from None


def first_bad_bytes(path: Path, codec: str) -> tuple[int, bytes] | None:
    """Offset and bytes of the first sequence ``codec`` cannot decode, or None."""
    dec = codecs.getincrementaldecoder(codec)()
    offset = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 22)
            # The error's position counts the bytes the decoder kept back from the last
            # block (a character cut in two) before this block's.
            pending = len(dec.getstate()[0])
            try:
                dec.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                start = max(exc.start, 0)
                return offset - pending + start, exc.object[start : start + 8]
            if not block:
                return None
            offset += len(block)


def undecodable(path: Path, tried: list[str], table: str) -> SourceError:
    bad = first_bad_bytes(path, tried[0])
    where = f" (first bad bytes at byte {bad[0]:,}: {bad[1]!r})" if bad else ""
    names = " or ".join(tried)
    return SourceError(
        f"{path.name} is not valid {names} text{where}; the file's encoding must be named",
        _ENCODING_FIX.format(table=table),
        "encoding",
    )


# --------------------------------------------------------------------------------------
# Text headers


@contextlib.contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    # The csv module's limit is process-wide; it is raised only while a bounded sample is
    # parsed, so one long text field near the top cannot break header detection.
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, min(limit, sys.maxsize)))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def head_rows(path: Path, codec: str, delimiter: str) -> list[list[str]]:
    """The first rows of a text file, split by ``delimiter`` (at most ~1 MB is read)."""
    with open(path, encoding=codec, newline="", errors="replace") as fh:
        text = fh.read(HEAD_CHARS)
        truncated = bool(fh.read(1))
    if truncated and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # the last line may be cut: leave it out
    with _field_limit(len(text) + 1):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        return [row for _, row in zip(range(HEAD_ROWS), reader, strict=False)]


def header_hits(row: list[Any], expected: set[str]) -> int:
    return sum(1 for v in row if v is not None and normalise_header(v).lower() in expected)


def detect_header_row(rows: list[list[Any]], expected: set[str]) -> int:
    """First row of a sheet that looks like the header (title rows above it are skipped)."""
    best, best_hits = 0, 0
    for i, row in enumerate(rows[:HEAD_ROWS]):
        hits = header_hits(row, expected)
        if hits > best_hits:
            best, best_hits = i, hits
    return best


def text_header(
    path: Path, codec: str, expected: set[str], header_row: int | None
) -> tuple[int, list[str]]:
    """(0-based header line, header cells) of a delimited text file.

    The delimiter is the one of ``,;\\t|`` whose split finds the most contract headers
    (a comma on a tie), so a semicolon export's header is found and its cells compared.
    """
    best: tuple[int, int, list[list[str]]] | None = None
    for delim in (",", ";", "\t", "|"):
        rows = head_rows(path, codec, delim)
        row = header_row if header_row is not None else detect_header_row(rows, expected)
        hits = header_hits(rows[row], expected) if row < len(rows) else 0
        if best is None or hits > best[0]:
            best = (hits, row, rows)
    assert best is not None
    _, row, rows = best
    return row, (rows[row] if row < len(rows) else [])


# --------------------------------------------------------------------------------------
# Columns


def expected_headers(table: Table, params: Params) -> set[str]:
    mapped = params.data.columns.get(table.name, {})
    return {c.lower() for c in table.column_names} | {src.lower() for src in mapped}


def ambiguous_columns(
    headers: list[str], table: Table, params: Params
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str, list[str]]]]:
    """Source columns that would fill the same contract column.

    Returns (errors, notes). An error is a contract column two or more headers claim on an
    equal footing: the same name twice, names that differ only in case or spacing, or two
    sources data.columns maps onto it. A note is a column data.columns maps explicitly while
    the contract's own name is also present: the mapping decides, and the other is named.
    """
    mapping = params.data.columns.get(table.name, {})
    explicit = {src.lower(): dst for src, dst in mapping.items()}
    contract = {c.lower(): c for c in table.column_names}
    by_explicit: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for raw in headers:
        h = normalise_header(raw)
        if h.lower() in explicit:
            by_explicit.setdefault(explicit[h.lower()], []).append(h)
        elif h.lower() in contract:
            by_name.setdefault(contract[h.lower()], []).append(h)
    errors: list[tuple[str, list[str]]] = []
    notes: list[tuple[str, str, list[str]]] = []
    for dst in table.column_names:
        ex, named = by_explicit.get(dst, []), by_name.get(dst, [])
        if len(ex) > 1 or (not ex and len(named) > 1):
            errors.append((dst, ex or named))
        elif ex and named:
            notes.append((dst, ex[0], named))
    return errors, notes


# --------------------------------------------------------------------------------------
# Excel


def sheet_setting(params: Params, table: str) -> str | int | None:
    """data.sheets.<table>, else data.sheet (read defensively: older params lack sheets)."""
    per_table = getattr(params.data, "sheets", None) or {}
    return per_table.get(table, params.data.sheet)


def sheet_names(path: Path) -> list[str]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, XML and openpyxl errors alike
        raise SourceError(
            f"{path.name} is not a readable Excel .xlsx workbook ({type(exc).__name__}: "
            f"{_first_line(exc)})",
            "open it in Excel and save it again as .xlsx (Excel Workbook), or export CSV",
        ) from None
    try:
        return list(wb.sheetnames)
    finally:
        wb.close()


def resolve_sheet(names: list[str], wanted: str | int, where: str, table: str) -> str:
    """The sheet a setting names (by name, case and spaces aside, or 0-based index)."""
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if 0 <= wanted < len(names):
            return names[wanted]
    else:
        for n in names:
            if n == wanted or n.strip().lower() == str(wanted).strip().lower():
                return n
    raise SourceError(
        f"{where} has no sheet {wanted!r}; its sheets are: {', '.join(map(repr, names))}",
        f"set data.sheets.{table} to one of those sheet names (or a 0-based index)",
        "sheet",
    )


def table_sheet(names: list[str], table: str) -> str | None:
    """The sheet named after the table (case and spaces aside), if any."""
    for n in names:
        if n.strip().lower() == table:
            return n
    return None


def has_required(headers: list[Any], table: Table, params: Params) -> bool:
    """Whether a header row holds every required column (by name or by data.columns)."""
    mapping = {s.lower(): d for s, d in params.data.columns.get(table.name, {}).items()}
    got = set()
    for h in headers:
        if h is None:
            continue
        low = normalise_header(h).lower()
        got.add(mapping.get(low, low))
    return all(c.lower() in got for c in table.required_columns)


# --------------------------------------------------------------------------------------
# Databases


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)([^@/]*)(@)")


def redact(url: str) -> str:
    """A URL safe to print: its password replaced by ***."""
    return _URL_PASSWORD.sub(r"\1***\3", url)


def connect_url(url: str) -> Any:
    """An Ibis backend for a database URL, or a SourceError naming the source and fix."""
    import ibis

    scheme = url.split("://", 1)[0].lower()
    shown = redact(url)
    local = _local_file(url, scheme)
    if local is not None and not Path(local).exists():
        raise SourceError(
            f"database file not found: {local} (from {shown})",
            "correct the path in data.source (duckdb:///absolute/path.duckdb has three slashes)",
            "missing_source",
        )
    try:
        con = ibis.connect(url)
        con.list_tables()  # a lazy driver connects only here
    except ImportError as exc:
        pip = re.search(r"pip install[^\n]*", str(exc))
        extra = (
            pip.group(0).split("#")[0].strip() if pip else f'pip install "ibis-framework[{scheme}]"'
        )
        raise SourceError(
            f"data source {shown}: the {scheme} driver is not installed ({_first_line(exc)})",
            f"install it into fupan's environment: {extra}",
            "driver",
        ) from None
    except ValueError as exc:
        if "know how to connect" not in str(exc):
            raise _connection_error(shown, exc) from None
        raise SourceError(
            f"data source {shown}: '{scheme}://' is not a database fupan can connect to",
            "use a URL Ibis supports (duckdb://, sqlite://, postgres://, mysql://, mssql://, "
            "snowflake://, bigquery://, ...), a .duckdb file or a folder of files",
            "driver",
        ) from None
    except Exception as exc:  # noqa: BLE001 - every driver raises its own error types
        raise _connection_error(shown, exc) from None
    return con


def _connection_error(shown: str, exc: BaseException) -> SourceError:
    return SourceError(
        f"could not connect to the data source {shown}: {type(exc).__name__}: {_first_line(exc)}",
        "check that the database server is running and reachable from this machine (host, "
        "port, firewall), and the database name, user and password in data.source",
        "connection",
    )


def _local_file(url: str, scheme: str) -> str | None:
    if scheme not in ("duckdb", "sqlite"):
        return None
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest in ("", ":memory:") or rest.startswith(":memory:"):
        return None
    return rest


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def engine_message(exc: BaseException) -> str:
    """An engine error's text. DuckDB quotes the offending line cut at a byte count: when
    the cut splits a character, the message itself fails to decode and the exception is a
    UnicodeDecodeError holding the message's bytes."""
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        return exc.object.decode("utf-8", errors="replace")
    return str(exc)


def short_detail(exc: BaseException, n: int = 3, width: int = 200) -> str:
    """The first lines of an engine error, each cut to ``width`` (a CSV line may be MBs)."""
    lines = [ln.strip() for ln in engine_message(exc).splitlines() if ln.strip()]
    return "; ".join(ln if len(ln) <= width else ln[: width - 3] + "..." for ln in lines[:n])


# --------------------------------------------------------------------------------------
# The source itself


def source_kind(source: str) -> str:
    """url, duckdb, sqlite, workbook or folder; a SourceError for anything else."""
    if "://" in source:
        return "url"
    path = Path(source)
    if not os.path.lexists(path):
        near = difflib.get_close_matches(
            path.name, [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else [], 1
        )
        hint = f" (did you mean {path.parent / near[0]}?)" if near else ""
        raise SourceError(
            f"data source not found: {source}{hint}",
            "set data.source in the params (a folder, a .duckdb file or a database URL)",
            "missing_source",
        )
    problem = None if path.is_dir() else file_problem(path, "(source)")
    if problem is not None and problem.check != "missing_file":
        problem.fix = problem.fix.replace("data.files.(source)", "data.source")
        raise problem
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    sig = signature(path)
    if sig and sig[1] == ".db":
        return "sqlite"
    if suffix in (".duckdb", ".ddb", ".db"):
        return "duckdb"
    if suffix in (".xlsx", ".xlsm"):
        return "workbook"
    if suffix in (".csv", ".txt", ".parquet", ".pq"):
        raise SourceError(
            f"data.source is one {suffix} file ({path.name}); fupan reads a folder of table files",
            f"set data.source to its folder ({path.parent}) and, if the file is not named "
            f"after its table, name it in data.files (e.g. data.files.orders: {path.name})",
            "source_type",
        )
    raise SourceError(
        f"data.source {path.name} is a file of a type fupan cannot read ({suffix or 'no suffix'})",
        "point data.source at a folder of CSV/Parquet/Excel files (one per table, named by "
        "table), an .xlsx workbook with one sheet per table, a .duckdb file or a database URL",
        "source_type",
    )
