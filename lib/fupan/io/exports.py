"""Tables written beside the deck (``exports/``): CSV for Excel and ``.xlsx``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: Customer attributes a table may carry beside ``customer_id``: each appears in a table,
#: an export or an at-risk list only when the data supplied it (see :func:`drop_unsupplied`).
CUSTOMER_ATTRIBUTES = ("customer_name", "account_manager", "tier", "industry", "region")

#: Tables longer than this get the CSV only. A workbook is for reading and filtering by
#: hand; a longer table is for analysis tools (the CSV opens in Excel too), and openpyxl
#: writes about 10,000 rows a second: a 35,000-row list of a 1M-customer review took 4-8 s
#: per table (Excel itself stops at 1,048,576 rows).
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


def _rows(df: pd.DataFrame) -> Iterable[tuple[Any, ...]]:
    yield tuple(str(c) for c in df.columns)
    yield from zip(*(_column(df.iloc[:, i]) for i in range(df.shape[1])), strict=True)


def write_workbook(path: Path, sheets: Mapping[str, pd.DataFrame]) -> Path:
    """Write one sheet per frame (header row, no index) with openpyxl's write-only mode.

    Write-only streams rows to the file: pandas' ``ExcelWriter`` keeps every cell as an
    object and looks every sheet up by name per call, which took minutes for a workbook
    with a sheet per account manager at 100,000 customers.
    """
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    for name, frame in sheets.items():
        ws = wb.create_sheet(str(name)[:31])
        # a filter on every column and the header kept in view: how these lists are read
        ws.freeze_panes = "A2"
        if frame.shape[1]:
            ws.auto_filter.ref = f"A1:{get_column_letter(frame.shape[1])}{len(frame) + 1}"
        for row in _rows(frame):
            ws.append(row)
    wb.save(path)
    return path
