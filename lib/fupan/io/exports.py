"""Tables written beside the deck (``exports/``): CSV for Excel and ``.xlsx``."""

from __future__ import annotations

import datetime as dt
import io
import math
import tempfile
from collections.abc import Iterable, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Customer attributes a table may carry beside ``customer_id``: each appears in a table,
#: an export or an at-risk list only when the data supplied it (see :func:`drop_unsupplied`).
CUSTOMER_ATTRIBUTES = ("customer_name", "account_manager", "tier", "industry", "region")

#: Tables longer than this get the CSV only. A workbook is for reading and filtering by
#: hand; a longer table is for analysis tools (the CSV opens in Excel too), and openpyxl
#: wrote about 10,000 rows a second: a 35,000-row list of a 1M-customer review took 4-8 s
#: per table (Excel itself stops at 1,048,576 rows). :func:`write_workbook` now writes the
#: rows' XML itself, 3-5x faster.
XLSX_MAX_ROWS = 20_000


def supplied(ds: Any, table: str, column: str) -> bool:
    """Whether the data source supplied ``table.column`` (rather than the loader filling it).

    Uses ``ds.supplied(table, column)`` when the dataset has it; otherwise a column counts
    as supplied when the table is present and the column holds at least one value (the
    loader fills an absent optional column with nulls).
    """
    fn = getattr(ds, "supplied", None)
    if callable(fn):
        return bool(fn(table, column))
    if not ds.has(table):
        return False
    t = ds[table]
    if column not in t.columns:
        return False
    from fupan.io import cache, engine

    def count() -> bool:
        n = engine.to_pandas(t.aggregate(n=t[column].count()))
        return bool(int(n["n"].iloc[0]) > 0)

    return cache.memo(ds, "exports.supplied", [table, column], count)


def unsupplied(
    df: pd.DataFrame, ds: Any, columns: Iterable[str] = CUSTOMER_ATTRIBUTES
) -> list[str]:
    """The customer attribute columns of ``df`` the data did not supply.

    ``tier`` counts as supplied when it holds values: without an assigned tier the loader
    fills the recommended one, which the reader should still see (labelled as recommended).
    """
    out = []
    for col in columns:
        if col not in df.columns or supplied(ds, "customers", col):
            continue
        if col == "tier" and df[col].notna().any():
            continue
        out.append(col)
    return out


def drop_unsupplied(
    df: pd.DataFrame, ds: Any, columns: Iterable[str] = CUSTOMER_ATTRIBUTES
) -> pd.DataFrame:
    """``df`` without the customer attribute columns the data did not supply: such a column
    would show as blanks (or "None") in every row of a table or an export."""
    return df.drop(columns=unsupplied(df, ds, columns))


def export_dir(run_dir: str | Path | None) -> Path:
    base = Path(run_dir) if run_dir else Path(tempfile.gettempdir()) / "fupan-scratch"
    out = base / "exports"
    out.mkdir(parents=True, exist_ok=True)
    return out


def write(df: pd.DataFrame, run_dir: str | Path | None, name: str, xlsx: bool = True) -> list[Path]:
    """Write ``exports/<name>.csv`` (UTF-8 with BOM, so Excel reads Chinese) and, for tables
    of at most :data:`XLSX_MAX_ROWS` rows, ``exports/<name>.xlsx``."""
    out = export_dir(run_dir)
    paths = [out / f"{name}.csv"]
    df.to_csv(paths[0], index=False, encoding="utf-8-sig")
    stale = out / f"{name}.xlsx"
    if xlsx and len(df) <= XLSX_MAX_ROWS:
        paths.append(stale)
        write_workbook(stale, {"Sheet1": df})
    elif stale.exists():  # never leave a workbook that no longer matches its CSV
        stale.unlink()
    return paths


def _column(col: pd.Series) -> list[Any]:
    """A column as values openpyxl writes as Excel would show them: blanks for missing
    values, naive datetimes (Excel has no time zones; the wall-clock value is kept), plain
    Python numbers. Converted per column, not per cell: this is most of the writing time."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return [None if v is pd.NaT else v.to_pydatetime() for v in col]
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=object, na_value=None)
        if pd.api.types.is_float_dtype(col.dtype):
            return [None if v is None or v != v else v for v in values.tolist()]
        return values.tolist()
    out = col.astype(object).where(col.notna(), None).tolist()
    return [str(v) if isinstance(v, list | tuple | dict | set) else v for v in out]


def _rows(df: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """The header, and each column's values as openpyxl takes them (see :func:`_column`)."""
    header = [str(c) for c in df.columns]
    return header, [_column(df.iloc[:, i]) for i in range(df.shape[1])]


def write_workbook(path: Path, sheets: Mapping[str, pd.DataFrame]) -> Path:
    """Write one sheet per frame (header row, no index, header frozen, a filter on every
    column): the workbook openpyxl's write-only mode writes, cell for cell.

    openpyxl serialises a cell in ~10 µs of pure Python (no lxml here), most of an export's
    time. It still writes the workbook (styles, sheet settings, the package) with each sheet
    empty; the rows are then written as the XML text it writes for them, a column at a time
    (:func:`_cells`), into each sheet's empty ``<sheetData>``. A sheet holding a value that
    :func:`_cells` does not write (formulas, error codes, times, other types) gets openpyxl's
    own rows, so it keeps openpyxl's handling and errors. (Write-only, not pandas'
    ``ExcelWriter``: that keeps every cell as an object and looks every sheet up by name per
    call, minutes for a sheet per account manager at 100,000 customers.)
    """
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    parts = []
    for name, frame in sheets.items():
        ws = wb.create_sheet(str(name)[:31])
        # a filter on every column and the header kept in view: how these lists are read
        ws.freeze_panes = "A2"
        if frame.shape[1]:
            ws.auto_filter.ref = f"A1:{get_column_letter(frame.shape[1])}{len(frame) + 1}"
        parts.append((ws, *_rows(frame)))
    styles = _date_styles(parts)
    filled = {}
    for ws, header, columns in parts:
        xml = _sheet_rows(header, columns, styles)
        if xml is None:
            ws.append(header)
            for row in zip(*columns, strict=True):
                ws.append(row)
        else:
            filled[ws] = xml
    buffer = io.BytesIO()
    wb.save(buffer)  # numbers the sheets: their paths are known from here on
    _fill_sheets(buffer, path, {ws.path.lstrip("/"): xml for ws, xml in filled.items()})
    return path


def _date_styles(parts: list[tuple[Any, list[str], list[list[Any]]]]) -> dict[type, int]:
    """The cell style of each date and time type in the sheets, registered with the workbook
    in the order openpyxl meets them writing row by row, so the style ids are its own."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import TIME_TYPES

    first: dict[type, tuple[int, int, int]] = {}
    for s, (_, _, columns) in enumerate(parts):
        for j, values in enumerate(columns):
            for kind in {type(v) for v in values}:
                if issubclass(kind, TIME_TYPES):
                    i = next(i for i, v in enumerate(values) if type(v) is kind)
                    first[kind] = min(first.get(kind, (s, i, j)), (s, i, j))
    styles = {}
    for kind, (s, i, j) in sorted(first.items(), key=lambda kv: kv[1]):
        styles[kind] = WriteOnlyCell(parts[s][0], value=parts[s][2][j][i]).style_id
    return styles


def _text(v: str) -> str | None:
    """The ``<is>`` of a text cell as openpyxl writes it; None for text it writes otherwise
    (a formula, an error code, text it cuts to 32,767 characters or refuses)."""
    from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE

    if len(v) > 32767 or (len(v) > 1 and v[0] == "=") or v in ERROR_CODES:
        return None
    if ILLEGAL_CHARACTERS_RE.search(v):
        return None
    stripped = v.strip()
    space = ' xml:space="preserve"' if stripped and stripped != v else ""
    if "&" in v:
        v = v.replace("&", "&amp;")
    if "<" in v:
        v = v.replace("<", "&lt;")
    if ">" in v:
        v = v.replace(">", "&gt;")
    return f"<is><t{space}>{v}</t></is>"


_NUMBERS = (int, float, np.int64, np.float64)


def _number(v: float) -> str:
    return "%.16g" % v  # noqa: UP031 - openpyxl's own formatting (compat.safe_string)


def _cells(letter: str, values: list[Any], styles: dict[type, int]) -> list[str] | None:
    """The XML openpyxl writes for one column's cells (rows from 1), "" for a blank; None
    when a value is not one of: text, bool, finite number, naive datetime, date."""
    from openpyxl.utils.datetime import to_excel

    out = []
    for r, v in enumerate(values, 1):
        kind = type(v)
        if v is None:
            out.append("")
        elif kind is str:
            if v == "":
                out.append(f'<c r="{letter}{r}" t="inlineStr" />')
                continue
            text = _text(v)
            if text is None:
                return None
            out.append(f'<c r="{letter}{r}" t="inlineStr">{text}</c>')
        elif kind is bool:
            out.append(f'<c r="{letter}{r}" t="b"><v>{v:d}</v></c>')
        elif kind in _NUMBERS:
            if v != v or v in (math.inf, -math.inf):
                return None
            out.append(f'<c r="{letter}{r}" t="n"><v>{_number(v)}</v></c>')
        elif kind is dt.datetime or kind is dt.date:
            if kind is dt.datetime and v.tzinfo is not None:
                return None
            serial = _number(to_excel(v))
            out.append(f'<c r="{letter}{r}" s="{styles[kind]}" t="n"><v>{serial}</v></c>')
        else:
            return None
    return out


def _sheet_rows(
    header: list[str], columns: list[list[Any]], styles: dict[type, int]
) -> tuple[int, list[list[str]]] | None:
    """The sheet's rows (header first) as the XML of each column's cells, with their
    number; None when a value needs openpyxl (see :func:`_cells`)."""
    from openpyxl.utils import get_column_letter

    cells = []
    for j, (name, values) in enumerate(zip(header, columns, strict=True), 1):
        column = _cells(get_column_letter(j), [name, *values], styles)
        if column is None:
            return None
        cells.append(column)
    # openpyxl writes the header row even without columns, and no row under it
    return (len(cells[0]) if cells else 1), cells


_EMPTY_SHEET_DATA = b"<sheetData></sheetData>"


def _fill_sheets(
    workbook: io.BytesIO, path: Path, filled: dict[str, tuple[int, list[list[str]]]]
) -> None:
    """Copy the workbook to ``path`` with the rows of ``filled`` (by part name) in their
    sheets. Assembled in memory: a failure leaves no partial file (as openpyxl's own
    write fails before the file is opened)."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(workbook) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename not in filled:
                dst.writestr(info, data)
                continue
            head, found, tail = data.partition(_EMPTY_SHEET_DATA)
            if not found or _EMPTY_SHEET_DATA in tail:
                raise RuntimeError(f"{info.filename}: no single empty <sheetData> to fill")
            n, cells = filled[info.filename]
            # Excel reads ZIP64 records only where they are needed: set them for a part
            # that may pass 2 GB (four UTF-8 bytes a character at most)
            size = 4 * sum(sum(map(len, c)) for c in cells) + 30 * n * (len(cells) + 1)
            with dst.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT) as part:
                part.write(head + b"<sheetData>")
                for start in range(0, n, _CHUNK_ROWS):
                    part.write(_row_xml(cells, start, min(n, start + _CHUNK_ROWS)).encode())
                part.write(b"</sheetData>" + tail)
    Path(path).write_bytes(out.getvalue())


#: Rows encoded at a time into a sheet (bounds the text held beside the cells).
_CHUNK_ROWS = 5000


def _row_xml(cells: list[list[str]], start: int, stop: int) -> str:
    """Rows ``start`` to ``stop`` (0-based) as openpyxl writes them."""
    opens = [f'<row r="{r}">' for r in range(start + 1, stop + 1)]
    closes = ["</row>"] * (stop - start)
    return "".join(
        chain.from_iterable(zip(opens, *(c[start:stop] for c in cells), closes, strict=True))
    )
