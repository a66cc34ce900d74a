"""The exported workbooks as openpyxl reads them back: values, types, number formats, frozen
header, filter, sheet names, and the errors for values a workbook cannot hold."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from fupan.io import exports
from openpyxl.utils.exceptions import IllegalCharacterError

D, DT = "yyyy-mm-dd", "yyyy-mm-dd h:mm:ss"


def _frame() -> pd.DataFrame:
    """Eight rows of every kind of column an export holds, with the awkward values."""
    return pd.DataFrame(
        {
            "text": pd.Series(
                ["plain", " lead", "trail ", "  ", "", "a&<>\"'\r\n", "中文🙂", None], dtype="str"
            ),
            "special": pd.Series(["=1+1", "=", "#N/A", "x", "#DIV/0!", "=A1", "'=b", None]),
            "float": [1.5, np.nan, np.inf, -np.inf, -0.0, 1e300, 0.1 + 0.2, 12345678901234567.0],
            "int": np.array([0, -1, 2**53 + 1, 12345678901234567, 7, 8, 9, 10], dtype="int64"),
            "Int64": pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64"),
            "bool": [True, False] * 4,
            "boolean": pd.array(
                [True, None, False, True, True, False, None, True], dtype="boolean"
            ),
            "dt": pd.to_datetime(
                [
                    "2026-01-02",
                    "2026-01-02 03:04:05.123456",
                    None,
                    "1900-02-28",
                    "1899-12-31",
                    "2026-10-31 23:59:59",
                    "2000-01-01",
                    "2000-01-01 12:00",
                ],
                format="ISO8601",
            ),
            "tz": pd.to_datetime(["2026-01-02 08:00"] * 8).tz_localize("Asia/Shanghai"),
            "date": pd.Series(
                [dt.date(2026, 1, 2), None, dt.date(1900, 3, 1), dt.date(2026, 1, 3)] * 2,
                dtype=object,
            ),
            "nested": pd.Series([[1, 2], {"a": 1}, (3,), {4}, "s", None, 1, 2.5], dtype=object),
            "cat": pd.Categorical(["a", "b", None, "a", "b", "a", "b", "a"]),
            "mixed": pd.Series(
                [1, "a", 2.5, None, np.int64(3), np.float64(4.5), True, dt.datetime(2026, 1, 1, 6)],
                dtype=object,
            ),
        }
    )


# Per column of _frame: (value, data_type) read back for each row, and the number format of
# its filled cells (blank cells read back as None, "n", "General").
_N = (None, "n")
EXPECTED: dict[str, tuple[list[tuple], str]] = {
    "text": (
        [
            ("plain", "s"),
            (" lead", "s"),
            ("trail ", "s"),
            ("  ", "s"),
            (None, "inlineStr"),  # an empty string: a text cell without text
            ("a&<>\"'\n", "s"),  # XML reads \r\n as \n
            ("中文🙂", "s"),
            _N,
        ],
        "General",
    ),
    "special": (
        # a leading "=" makes a formula and an error code an error cell: openpyxl's rule
        [("=1+1", "f"), ("=", "s"), ("#N/A", "e"), ("x", "s"), ("#DIV/0!", "e"), ("=A1", "f")]
        + [("'=b", "s"), _N],
        "General",
    ),
    "float": (
        [(1.5, "n"), _N, _N, _N, (0, "n"), (1e300, "n"), (0.3, "n")]
        + [(1.234567890123457e16, "n")],  # 16 significant digits
        "General",
    ),
    "int": (
        [(0, "n"), (-1, "n"), (9007199254740992, "n"), (1.234567890123457e16, "n")]
        + [(7, "n"), (8, "n"), (9, "n"), (10, "n")],
        "General",
    ),
    "Int64": (
        [(1, "n"), _N, (3, "n"), (4, "n"), (5, "n"), (6, "n"), (7, "n"), (8, "n")],
        "General",
    ),
    "bool": ([(True, "b"), (False, "b")] * 4, "General"),
    "boolean": (
        [(True, "b"), _N, (False, "b"), (True, "b"), (True, "b"), (False, "b"), _N, (True, "b")],
        "General",
    ),
    "dt": (
        [
            (dt.datetime(2026, 1, 2), "d"),
            (dt.datetime(2026, 1, 2, 3, 4, 5, 123000), "d"),  # Excel keeps milliseconds
            _N,
            (dt.datetime(1900, 2, 28), "d"),
            (dt.time(0, 0), "d"),  # serial 0: Excel's day zero reads back as a time
            (dt.datetime(2026, 10, 31, 23, 59, 59), "d"),
            (dt.datetime(2000, 1, 1), "d"),
            (dt.datetime(2000, 1, 1, 12), "d"),
        ],
        DT,
    ),
    # time zones dropped, the wall-clock time kept
    "tz": ([(dt.datetime(2026, 1, 2, 8), "d")] * 8, DT),
    "date": (
        [(dt.datetime(2026, 1, 2), "d"), _N, (dt.datetime(1900, 3, 1), "d")]
        + [(dt.datetime(2026, 1, 3), "d")]
        + [(dt.datetime(2026, 1, 2), "d"), _N, (dt.datetime(1900, 3, 1), "d")]
        + [(dt.datetime(2026, 1, 3), "d")],
        D,
    ),
    "nested": (
        [("[1, 2]", "s"), ("{'a': 1}", "s"), ("(3,)", "s"), ("{4}", "s"), ("s", "s"), _N]
        + [(1, "n"), (2.5, "n")],
        "General",
    ),
    "cat": ([("a", "s"), ("b", "s"), _N] + [("a", "s"), ("b", "s")] * 2 + [("a", "s")], "General"),
    "mixed": (
        [(1, "n"), ("a", "s"), (2.5, "n"), _N, (3, "n"), (4.5, "n"), (True, "b")]
        + [(dt.datetime(2026, 1, 1, 6), "d")],
        "General",
    ),
}


def _read_back(path: Path) -> dict[str, dict]:
    wb = openpyxl.load_workbook(path)
    return {
        ws.title: {
            "freeze": ws.freeze_panes,
            "filter": ws.auto_filter.ref,
            "dims": ws.dimensions,
            "cells": [[(c.value, c.data_type, c.number_format) for c in r] for r in ws.iter_rows()],
        }
        for ws in wb.worksheets
    }


def _write(tmp_path: Path, sheets: dict[str, pd.DataFrame], name: str = "w") -> Path:
    return exports.write_workbook(tmp_path / f"{name}.xlsx", sheets)


def test_every_kind_of_column_reads_back_as_pinned(tmp_path):
    df = _frame()
    got = _read_back(_write(tmp_path, {"all": df}))["all"]
    assert got["freeze"] == "A2" and got["filter"] == "A1:M9" and got["dims"] == "A1:M9"
    assert got["cells"][0] == [(c, "s", "General") for c in df.columns]
    for j, col in enumerate(df.columns):
        values, fmt = EXPECTED[col]
        read = [row[j] for row in got["cells"][1:]]
        want = [(v, t, "General" if (v, t) == _N else fmt) for v, t in values]
        # the one mixed column: its datetime has the datetime format
        if col == "mixed":
            want[-1] = (want[-1][0], "d", DT)
        assert read == want, col


def test_sheet_names_are_cut_to_31_characters_and_kept_apart(tmp_path):
    df = pd.DataFrame({"a": [1, 2]})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = _read_back(
            _write(tmp_path, {"S" * 40: df, "S" * 35: df.iloc[:1], "": df, "empty": df.iloc[:0]})
        )
    # openpyxl numbers a repeated name, which makes it 32 characters (and warns)
    assert list(got) == ["S" * 31, "S" * 31 + "1", "Sheet", "empty"]
    assert any("more than 31 characters" in str(w.message) for w in seen)
    assert [got[k]["filter"] for k in got] == ["A1:A3", "A1:A2", "A1:A3", "A1:A1"]
    assert all(got[k]["freeze"] == "A2" for k in got)
    assert got["empty"]["cells"] == [[("a", "s", "General")]]


def test_a_frame_without_columns_has_no_filter(tmp_path):
    got = _read_back(_write(tmp_path, {"none": pd.DataFrame(index=range(3))}))["none"]
    assert got["filter"] is None and got["freeze"] == "A2"
    assert got["cells"] == [] and got["dims"] == "A1:A1"


def test_headers_are_text_and_odd_dtypes_read_back_as_pinned(tmp_path):
    df = pd.DataFrame(
        {
            1: pd.to_timedelta(["1 day"]),
            2.5: pd.Series([dt.time(1, 2)], dtype=object),
            "big": np.array([2**64 - 1], dtype="uint64"),
            "f32": np.array([0.1], dtype="float32"),
            "np_bool": pd.Series([np.bool_(True)], dtype=object),
            "ts": pd.Series([pd.Timestamp("2026-01-01")], dtype=object),
            "bytes": pd.Series([b"ab"], dtype=object),
            "long": ["x" * 40_000],
        }
    )
    cells = _read_back(_write(tmp_path, {"odd": df}))["odd"]["cells"]
    assert [c[0] for c in cells[0]] == ["1", "2.5", "big", "f32", "np_bool", "ts", "bytes", "long"]
    row = cells[1]
    assert row[:6] == [
        (dt.timedelta(days=1), "d", "[hh]:mm:ss"),
        (dt.time(1, 2), "d", "h:mm:ss"),
        (1.844674407370955e19, "n", "General"),
        (0.1000000014901161, "n", "General"),
        (1, "n", "General"),  # a numpy bool is a number to openpyxl
        (dt.datetime(2026, 1, 1), "d", DT),
    ]
    assert row[6] == ("ab", "s", "General")
    assert row[7] == ("x" * 32_767, "s", "General")  # Excel's cell limit


@pytest.mark.parametrize(
    ("values", "error", "text"),
    [
        (["x\x01y"], IllegalCharacterError, "cannot be used in worksheets"),
        ([1 + 2j], ValueError, "^$"),  # openpyxl drops the message
        ([dt.datetime(2026, 1, 1, tzinfo=dt.UTC)], TypeError, "does not support timezones"),
    ],
)
def test_values_a_workbook_cannot_hold_raise(tmp_path, values, error, text):
    with pytest.raises(error, match=text):
        _write(tmp_path, {"bad": pd.DataFrame({"a": pd.Series(values, dtype=object)})})


@pytest.mark.parametrize("name", ["a/b", "a[b]", "a:b", "a?b", "a*b", "a\\b"])
def test_a_sheet_name_excel_forbids_raises(tmp_path, name):
    with pytest.raises(ValueError, match="Invalid character"):
        _write(tmp_path, {name: pd.DataFrame({"a": [1]})})


def test_several_sheets_keep_their_order_and_date_formats(tmp_path):
    dates = pd.DataFrame({"d": pd.Series([dt.date(2026, 1, 2)], dtype=object)})
    stamps = pd.DataFrame({"t": pd.to_datetime(["2026-01-02 03:04"]), "n": [None]})
    got = _read_back(_write(tmp_path, {"one": stamps, "two": dates, "three": stamps}))
    assert list(got) == ["one", "two", "three"]
    assert got["one"]["cells"][1][0] == (dt.datetime(2026, 1, 2, 3, 4), "d", DT)
    assert got["two"]["cells"][1][0] == (dt.datetime(2026, 1, 2), "d", D)
    assert got["three"]["cells"] == got["one"]["cells"]


def test_write_keeps_the_workbook_to_its_row_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 3)
    df = pd.DataFrame({"a": [1, 2, 3]})
    assert [p.name for p in exports.write(df, tmp_path, "t")] == ["t.csv", "t.xlsx"]
    assert _read_back(tmp_path / "exports" / "t.xlsx")["Sheet1"]["cells"][3] == [
        (3, "n", "General")
    ]
    # a longer table gets the CSV only, and the stale workbook is removed
    assert [p.name for p in exports.write(pd.concat([df, df]), tmp_path, "t")] == ["t.csv"]
    assert not (tmp_path / "exports" / "t.xlsx").exists()


def _openpyxl_rows(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    """The workbook as openpyxl's write-only mode writes it appending row after row (the
    writer before :func:`fupan.io.exports.write_workbook` wrote the rows' XML itself)."""
    from openpyxl.utils import get_column_letter

    wb = openpyxl.Workbook(write_only=True)
    for name, frame in sheets.items():
        ws = wb.create_sheet(str(name)[:31])
        ws.freeze_panes = "A2"
        if frame.shape[1]:
            ws.auto_filter.ref = f"A1:{get_column_letter(frame.shape[1])}{len(frame) + 1}"
        header, columns = exports._rows(frame)
        ws.append(header)
        for row in zip(*columns, strict=True):
            ws.append(row)
    wb.save(path)
    return path


def _parts(path: Path) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(path) as z:
        # core.xml holds the time of writing
        return {n: z.read(n) for n in z.namelist() if n != "docProps/core.xml"}


def _same_as_openpyxl(tmp_path: Path, sheets: dict[str, pd.DataFrame]) -> None:
    ours = _parts(_write(tmp_path, sheets, "ours"))
    theirs = _parts(_openpyxl_rows(tmp_path / "theirs.xlsx", sheets))
    assert list(ours) == list(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name


# the columns of _frame whose every value has its XML written by fupan (the others are
# written by openpyxl: formulas and error codes, infinities)
WRITTEN = ["text", "int", "Int64", "bool", "boolean", "dt", "tz", "date", "nested", "cat", "mixed"]


def _written(frame: pd.DataFrame) -> bool:
    header, columns = exports._rows(frame)
    return exports._sheet_rows(header, columns, {dt.datetime: 1, dt.date: 2}) is not None


def test_the_rows_written_are_byte_for_byte_openpyxls(tmp_path):
    df = _frame()
    assert all(_written(df[[c]]) for c in WRITTEN)
    assert not any(_written(df[[c]]) for c in set(df.columns) - set(WRITTEN))
    sheets = {c: df[[c]] for c in df.columns}
    _same_as_openpyxl(tmp_path, {"written": df[WRITTEN], "all": df, **sheets})


def test_date_styles_are_numbered_as_openpyxl_meets_them(tmp_path):
    # In the second sheet a date comes first in the third column's first row, then a
    # datetime in the second row, then the first column's date: openpyxl numbers the styles
    # as it meets them, row by row, not column by column.
    day, stamp = dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, 3, 4)
    sheets = {
        "plain": pd.DataFrame({"n": [1.5, 2.0]}),
        "mixed": pd.DataFrame(
            {
                "late": pd.Series([None, None, day], dtype=object),
                "stamp": pd.Series([None, stamp, None], dtype=object),
                "early": pd.Series([day, None, None], dtype=object),
            }
        ),
        "again": pd.DataFrame({"t": pd.to_datetime([stamp, None]), "d": [None, day]}),
    }
    assert all(_written(f) for f in sheets.values())
    _same_as_openpyxl(tmp_path, sheets)
    _same_as_openpyxl(tmp_path, dict(reversed(sheets.items())))


def test_sheets_of_every_shape_are_byte_for_byte_openpyxls(tmp_path):
    df = _frame()[WRITTEN]
    sheets = {
        "S" * 40: df,
        "S" * 35: df.iloc[:2],
        "": df.iloc[:1],
        "empty": df.iloc[:0],
        "none": pd.DataFrame(index=range(3)),
        "numbers": pd.DataFrame({1: [1, 2], 2.5: [0.5, None]}),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 32-character name
        _same_as_openpyxl(tmp_path, sheets)


def test_random_lists_are_byte_for_byte_openpyxls(tmp_path):
    """An at-risk list as chapter 5 writes it, a sheet per manager, from random values."""
    rng = np.random.default_rng(5)
    n = 3000
    words = np.array(
        ["南京远景医药有限公司", "a & b <c>", " x", "y ", "z", "合同已到期未续: 是; 天"]
    )
    df = pd.DataFrame(
        {
            "客户经理": pd.Series(rng.choice(["AM-1", "AM-2", "AM-3"], n), dtype="str"),
            "客户名称": pd.Series(rng.choice(words, n), dtype="str"),
            "健康度评分": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n) * 1e3),
            "最近下单": pd.Series(
                [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 3000, n)],
                dtype=object,
            ),
            "未下单天数": rng.integers(-(2**40), 2**40, n),
            "标记": rng.random(n) < 0.5,
            "时间": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 10**12, n), unit="us"),
        }
    )
    sheets = {"全部": df, **{k: g for k, g in df.groupby("客户经理")}}
    assert all(_written(f) for f in sheets.values())
    _same_as_openpyxl(tmp_path, sheets)


def test_a_value_outside_what_fupan_writes_gets_openpyxls_rows(tmp_path):
    # one formula among plain text: the sheet is openpyxl's, the others are fupan's
    sheets = {"f": pd.DataFrame({"a": ["x", "=1+1"]}), "g": pd.DataFrame({"a": ["x", "y"]})}
    assert not _written(sheets["f"]) and _written(sheets["g"])
    _same_as_openpyxl(tmp_path, sheets)
    assert _read_back(tmp_path / "ours.xlsx")["f"]["cells"][2] == [("=1+1", "f", "General")]


def test_a_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        _write(tmp_path, {"s": pd.DataFrame({"a": ["\ud800"]})})
    assert not (tmp_path / "w.xlsx").exists()
