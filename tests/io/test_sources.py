"""Reading sources as messy exports arrive: encodings, sheets, workbooks, long fields,
ambiguous columns, unreadable files, database URLs and source paths.

Each class of input has parametrised variants. A case either loads the same values as the
clean files, or stops with one message naming the file (or source), the problem and the fix,
and never a traceback or a follow-on error ("table missing", "column0", delimiters).
"""

from __future__ import annotations

import os
from pathlib import Path

import ibis
import openpyxl
import pandas as pd
import paramfile
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import sources
from fupan.io.validation import DataValidationError
from fupan.run import cli


def _params_file(tmp_path: Path, source: Path | str, data_lines: str = "") -> Path:
    path = tiny.params_file(tmp_path, tmp_path)
    # as YAML text: the source is written as a user would type it (a glob, a URL, a path)
    paramfile.update(path, f"data:\n  source: {source}\n{data_lines}")
    return path


def _validate(params: Path, capsys) -> tuple[int, str]:
    rc = cli.main(["validate", "--params", str(params)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    return rc, text


def _load(params: Path):
    return fdata.loaded(fparams.load(params))


def _report(params: Path):
    try:
        with _load(params) as ds:
            return ds.report
    except DataValidationError as exc:
        return exc.report


def _problems(report, table: str, severity: str = "error"):
    return [p for p in report.problems if p.table == table and p.severity == severity]


# --------------------------------------------------------------------------------------
# Encodings


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-16", True),  # little-endian with BOM (what Excel's "Unicode text" writes)
        ("utf-16-le", True),
        ("utf-16-be", True),
        ("utf-16-le", False),
        ("utf-16-be", False),
        ("utf-32", True),
        ("utf-8-sig", True),
    ],
)
def test_unicode_files_with_and_without_bom_load_the_same_values(tmp_path, codec, bom):
    data = tiny.write(tmp_path / "d")
    text = tiny.frames()["customers"].to_csv(index=False)
    raw = text.encode(codec)
    if bom and codec in ("utf-16-le", "utf-16-be"):
        raw = ("\ufeff" + text).encode(codec)
    (data / "customers.csv").write_bytes(raw)
    with _load(_params_file(tmp_path, data)) as ds:
        c = ds["customers"].to_pandas().set_index("customer_id").sort_index()
    want = tiny.frames()["customers"].set_index("customer_id")
    assert list(c.index) == list(want.index)
    assert list(c.customer_name) == list(want.customer_name)  # Chinese survives
    assert list(c.region) == list(want.region)


@pytest.mark.parametrize(
    ("payload", "data_lines", "words"),
    [
        # Latin-1 bytes: neither UTF-8 nor GB18030 (é then a comma is invalid in both)
        ("latin", "", ["customers.csv", "not valid utf-8 or gb18030", "data.encodings"]),
        ("latin", "  encoding: utf-8\n", ["customers.csv", "not valid", "data.encodings"]),
        # A declared codec the file does not fit
        ("chinese", "  encodings: {customers: ascii}\n", ["not valid ascii", "byte"]),
        ("chinese", "  encodings: {customers: klingon}\n", ["'klingon' is not an encoding"]),
    ],
)
def test_an_undecodable_file_names_the_file_and_the_encoding_fix(
    tmp_path, capsys, payload, data_lines, words
):
    data = tiny.write(tmp_path / "d")
    c = tiny.frames()["customers"]
    if payload == "latin":
        c.loc[0, "customer_name"] = "Café Müller, Zürich"
        (data / "customers.csv").write_bytes(c.to_csv(index=False).encode("latin-1", "replace"))
    else:
        (data / "customers.csv").write_bytes(c.to_csv(index=False).encode("utf-8"))
    rc, text = _validate(_params_file(tmp_path, data, data_lines), capsys)
    assert rc == 1
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"
    assert "delimiter" not in text
    assert "customers" in text and "encoding" in text


@pytest.mark.parametrize(
    ("global_line", "per_table"),
    [
        ("", {"customers": "gb18030", "orders": "utf-16"}),
        ("  encoding: utf-8\n", {"customers": "gb18030", "orders": "utf-16"}),
        # latin-1 decodes any bytes: without the per-file setting Chinese would be mojibake
        ("  encoding: latin-1\n", {"customers": "gb18030", "orders": "latin-1"}),
        ("  encoding: latin-1\n", {"customers": "cp936", "orders": "utf_16_le"}),
    ],
)
def test_per_file_encoding(tmp_path, capsys, global_line, per_table):
    data = tiny.write(tmp_path / "d")
    for table, codec in per_table.items():
        text = tiny.frames()[table].to_csv(index=False)
        (data / f"{table}.csv").write_bytes(text.encode(codec))
    lines = global_line + "  encodings: {" + ", ".join(f"{k}: {v}" for k, v in per_table.items())
    params = _params_file(tmp_path, data, lines + "}\n")
    with _load(params) as ds:
        c = ds["customers"].to_pandas().set_index("customer_id")
        o = ds["orders"].to_pandas()
        assert not [p for p in ds.report.problems if p.check == "encoding"]
    assert c.loc["C1", "customer_name"] == "甲公司"
    assert c.loc["C4", "region"] == "华北"
    assert o.amount.sum() == pytest.approx(tiny.frames()["orders"].amount.sum())


def test_a_bom_beats_a_wrong_declared_encoding_with_a_warning(tmp_path):
    data = tiny.write(tmp_path / "d")
    text = tiny.frames()["customers"].to_csv(index=False)
    (data / "customers.csv").write_bytes(text.encode("utf-16"))
    params = _params_file(tmp_path, data, "  encodings: {customers: gb18030}\n")
    with _load(params) as ds:
        c = ds["customers"].to_pandas().set_index("customer_id")
        warn = [p for p in ds.report.warnings if p.check == "encoding"]
    assert c.loc["C2", "customer_name"] == "乙公司"
    assert warn and "utf-16" in warn[0].message and "data.encodings.customers" in warn[0].fix


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"PK\x03\x04rest-of-zip", "Excel .xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old", "old Excel .xls"),
        (b"PAR1\x15\x04", "Parquet"),
    ],
)
def test_a_binary_file_with_a_csv_name_says_what_it_is(tmp_path, capsys, head, what):
    data = tiny.write(tmp_path / "d")
    (data / "orders.csv").write_bytes(head + bytes(range(256)) * 4)
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1
    assert "orders.csv" in text and what in text and "rename it" in text
    assert "delimiter" not in text


# --------------------------------------------------------------------------------------
# Long text fields


@pytest.mark.parametrize("size", [140_000, 1_500_000, 3_000_000])
@pytest.mark.parametrize("title_rows", [0, 2])
def test_a_huge_text_field_near_the_top_loads(tmp_path, size, title_rows):
    data = tiny.write(tmp_path / "d")
    c = tiny.frames()["customers"].astype(object)
    c.loc[0, "customer_name"] = "备注" * (size // 2)
    body = c.to_csv(index=False)
    title = "".join(f"客户清单 第{i}行\n" for i in range(title_rows))
    (data / "customers.csv").write_text(title + body, encoding="utf-8")
    with _load(_params_file(tmp_path, data)) as ds:
        got = ds["customers"].to_pandas().set_index("customer_id")
    assert len(got) == 5
    assert len(got.loc["C1", "customer_name"]) == size // 2 * 2
    assert got.loc["C5", "region"] == "西南"


def test_header_reading_leaves_the_csv_field_limit_as_it_was(tmp_path):
    import csv

    before = csv.field_size_limit()
    path = tmp_path / "x.csv"
    path.write_text("a,b\n" + "1," + "x" * 300_000 + "\n", encoding="utf-8")
    rows = sources.head_rows(path, "utf-8", ",")
    assert rows[0] == ["a", "b"] and len(rows[1][1]) == 300_000
    assert csv.field_size_limit() == before


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_the_header_below_title_rows_is_found_whatever_the_delimiter(tmp_path, delim):
    data = tiny.write(tmp_path / "d")
    body = tiny.frames()["orders"].to_csv(index=False, sep=delim)
    (data / "orders.csv").write_text("订单导出\n导出人：CRM\n" + body, encoding="utf-8")
    with _load(_params_file(tmp_path, data)) as ds:
        o = ds["orders"].to_pandas()
    assert len(o) == 10
    assert o.amount.sum() == pytest.approx(tiny.frames()["orders"].amount.sum())


# --------------------------------------------------------------------------------------
# Excel: sheets and workbooks


def _workbook(path: Path, sheets: dict[str, pd.DataFrame | list[list[str]] | None]) -> Path:
    with pd.ExcelWriter(path) as xw:
        for name, content in sheets.items():
            if content is None:
                pd.DataFrame().to_excel(xw, sheet_name=name, index=False)
            elif isinstance(content, list):
                pd.DataFrame(content).to_excel(xw, sheet_name=name, index=False, header=False)
            else:
                content.to_excel(xw, sheet_name=name, index=False)
    return path


_NOTES = [["本表为客户清单"], ["导出时间：2026-10-31"], ["说明：金额单位为元"]]


@pytest.mark.parametrize(
    ("setting", "sheet_names"),
    [
        ("  sheets: {customers: 客户}\n", ["说明", "客户", "汇总"]),
        ("  sheets: {customers: 1}\n", ["说明", "客户", "汇总"]),
        ("  sheets: {customers: ' 客户 '}\n", ["说明", "客户", "汇总"]),
        ("  sheet: 客户\n", ["说明", "客户", "汇总"]),
        ("", ["说明", "customers", "汇总"]),  # a sheet named after the table
    ],
)
def test_per_table_sheet(tmp_path, setting, sheet_names):
    data = tiny.write(tmp_path / "d")
    (data / "customers.csv").unlink()
    cust = tiny.frames()["customers"]
    summary = pd.DataFrame({"customer_id": ["C9"], "acquired_at": ["2020-01-01"]})
    _workbook(
        data / "customers.xlsx",
        {sheet_names[0]: _NOTES, sheet_names[1]: cust, sheet_names[2]: summary},
    )
    with _load(_params_file(tmp_path, data, setting)) as ds:
        c = ds["customers"].to_pandas().set_index("customer_id").sort_index()
    assert list(c.index) == ["C1", "C2", "C3", "C4", "C5"]
    assert c.loc["C3", "customer_name"] == "丙公司"


@pytest.mark.parametrize(
    "setting", ["  sheets: {customers: 客户表}\n", "  sheets: {customers: 7}\n"]
)
def test_a_sheet_setting_that_names_no_sheet_lists_the_sheets(tmp_path, capsys, setting):
    data = tiny.write(tmp_path / "d")
    (data / "customers.csv").unlink()
    _workbook(data / "customers.xlsx", {"说明": _NOTES, "客户": tiny.frames()["customers"]})
    rc, text = _validate(_params_file(tmp_path, data, setting), capsys)
    assert rc == 1
    assert "customers.xlsx has no sheet" in text and "'说明', '客户'" in text
    assert "data.sheets.customers" in text


@pytest.mark.parametrize(
    ("sheets", "rc", "words"),
    [
        # a notes sheet first, one data sheet: read it, and say so
        ({"Notes": _NOTES, "Data": "orders"}, 0, ["read sheet 'Data'", "data.sheets.orders"]),
        ({"封面": _NOTES, "说明": _NOTES, "订单": "orders"}, 0, ["read sheet '订单'"]),
        # a notes sheet first, two data sheets: one error asking which
        (
            {"Notes": _NOTES, "2025": "orders", "2026": "orders"},
            1,
            ["2 sheets with the columns of orders", "'2025', '2026'", "data.sheets.orders"],
        ),
        # a notes sheet first, the data under headers fupan does not know: one error
        (
            {"Notes": _NOTES, "订单": "chinese"},
            1,
            ["no sheet of orders.xlsx holds the columns of orders", "'Notes'", "data.columns"],
        ),
    ],
)
def test_a_notes_sheet_first_gives_one_clear_message(tmp_path, capsys, sheets, rc, words):
    data = tiny.write(tmp_path / "d")
    (data / "orders.csv").unlink()
    o = tiny.frames()["orders"]
    content = {
        k: (
            o
            if v == "orders"
            else o.rename(columns={"customer_id": "客户", "order_date": "日期", "amount": "金额"})
            if v == "chinese"
            else v
        )
        for k, v in sheets.items()
    }
    _workbook(data / "orders.xlsx", content)
    params = _params_file(tmp_path, data)
    got, text = _validate(params, capsys)
    assert got == rc, text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"
    errors = _problems(_report(params), "orders")
    assert len(errors) == rc  # one error, or none
    assert "required column" not in text


@pytest.mark.parametrize(
    ("names", "mapping"),
    [
        ({t: t for t in tiny.frames()}, ""),
        ({t: t.capitalize() for t in tiny.frames()}, ""),
        (
            {
                **{t: t for t in tiny.frames()},
                "orders": "订单",
                "customers": "客户",
            },
            "  sheets: {orders: 订单, customers: 客户}\n",
        ),
    ],
)
def test_one_workbook_with_one_sheet_per_table(tmp_path, names, mapping):
    frames = tiny.frames()
    book = _workbook(
        tmp_path / "crm.xlsx", {"说明": _NOTES, **{names[t]: frames[t] for t in frames}}
    )
    with _load(_params_file(tmp_path, book, mapping)) as ds:
        assert ds.present == list(fdata.TABLES)
        o = ds["orders"].to_pandas()
        c = ds["customers"].to_pandas().set_index("customer_id")
    assert o.amount.sum() == pytest.approx(frames["orders"].amount.sum())
    assert c.loc["C1", "customer_name"] == "甲公司"


def test_a_workbook_without_an_orders_sheet_names_its_sheets(tmp_path, capsys):
    frames = tiny.frames()
    book = _workbook(tmp_path / "crm.xlsx", {"客户": frames["customers"], "Sheet2": _NOTES})
    rc, text = _validate(_params_file(tmp_path, book), capsys)
    assert rc == 1
    assert "crm.xlsx has no sheet for the required table 'orders'" in text
    assert "'客户', 'Sheet2'" in text and "data.sheets.orders" in text


@pytest.mark.parametrize(
    ("table", "fmt", "rc"),
    [
        ("orders", "csv", 1),
        ("orders", "xlsx", 1),
        ("orders", "parquet", 1),
        ("orders", "txt", 1),
        ("surveys", "csv", 0),
        ("surveys", "xlsx", 0),
    ],
)
def test_a_zero_byte_file_says_empty_file(tmp_path, capsys, table, fmt, rc):
    data = tiny.write(tmp_path / "d")
    (data / f"{table}.csv").unlink()
    (data / f"{table}.{fmt}").write_bytes(b"")
    got, text = _validate(_params_file(tmp_path, data), capsys)
    assert got == rc, text
    assert f"{table}.{fmt} is an empty file (0 bytes)" in text
    assert "column0" not in text
    if rc == 0:
        assert f"missing optional: {table}" in text


def test_an_empty_sheet_says_so(tmp_path, capsys):
    data = tiny.write(tmp_path / "d")
    (data / "orders.csv").unlink()
    _workbook(data / "orders.xlsx", {"orders": None})
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1 and "sheet 'orders' of orders.xlsx is empty" in text
    assert "column0" not in text


@pytest.mark.parametrize("content", [b"order_id,customer_id\nO1,C1\n", b"<html><table>"])
def test_a_text_file_named_xlsx_says_it_is_not_a_workbook(tmp_path, capsys, content):
    data = tiny.write(tmp_path / "d")
    (data / "orders.csv").unlink()
    (data / "orders.xlsx").write_bytes(content)
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1 and "orders.xlsx is not an Excel .xlsx workbook" in text


# --------------------------------------------------------------------------------------
# Ambiguous columns


def _orders_with(columns: list[str], fmt: str, data: Path) -> None:
    o = tiny.frames()["orders"]
    rows = [
        [r.order_id, r.customer_id, r.order_date, *([r.amount] * (len(columns) - 3))]
        for r in o.itertuples()
    ]
    # the second copy differs, so taking either one silently would be a wrong number
    rows = [[*r[:4], *(v * 10 for v in r[4:])] for r in rows]
    (data / "orders.csv").unlink()
    if fmt == "csv":
        text = ",".join(columns) + "\n" + "\n".join(",".join(map(str, r)) for r in rows)
        (data / "orders.csv").write_text(text + "\n", encoding="utf-8")
    elif fmt == "xlsx":
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(columns)
        for r in rows:
            ws.append(r)
        wb.save(data / "orders.xlsx")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [
            pa.array([str(r[i]) if i < 3 else r[i] for r in rows]) for i in range(len(columns))
        ]
        pq.write_table(pa.Table.from_arrays(arrays, names=columns), data / "orders.parquet")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
@pytest.mark.parametrize(
    ("header", "mapping", "named"),
    [
        (["order_id", "customer_id", "order_date", "amount", "amount"], "", "'amount', 'amount'"),
        (["order_id", "customer_id", "order_date", "Amount", "amount"], "", "'Amount', 'amount'"),
        (["order_id", "customer_id", "order_date", "amount", " AMOUNT "], "", "'amount', 'AMOUNT'"),
        (
            ["order_id", "customer_id", "order_date", "金额", "总额"],
            "  columns: {orders: {金额: amount, 总额: amount}}\n",
            "'金额', '总额'",
        ),
    ],
)
def test_two_columns_for_one_contract_column_is_an_error_naming_both(
    tmp_path, capsys, fmt, header, mapping, named
):
    data = tiny.write(tmp_path / "d")
    _orders_with(header, fmt, data)
    rc, text = _validate(_params_file(tmp_path, data, mapping), capsys)
    assert rc == 1, text
    assert "orders.amount" in text and "would fill 'amount'" in text and named in text
    assert "will not pick one" in text


def test_an_explicit_mapping_wins_over_a_same_named_column_and_says_so(tmp_path):
    data = tiny.write(tmp_path / "d")
    _orders_with(["order_id", "customer_id", "order_date", "amount", "含税金额"], "csv", data)
    params = _params_file(tmp_path, data, "  columns: {orders: {含税金额: amount}}\n")
    with _load(params) as ds:
        o = ds["orders"].to_pandas()
        warn = [p for p in ds.report.warnings if p.check == "ambiguous_column"]
    assert o.amount.sum() == pytest.approx(10 * tiny.frames()["orders"].amount.sum())
    assert warn and "'amount'" in warn[0].message and "ignored" in warn[0].message


@pytest.mark.parametrize("second", ["orders.xlsx", "orders.parquet", "Orders.csv"])
def test_two_files_for_one_table_is_an_error(tmp_path, capsys, second):
    data = tiny.write(tmp_path / "d")
    if second == "Orders.csv" and (data / "orders.CSV").exists():
        pytest.skip("case-insensitive file system")
    if second.endswith(".csv"):
        tiny.frames()["orders"].to_csv(data / second, index=False)
    else:
        tiny.write(tmp_path / "other", fmt=second.split(".")[1])
        os.replace(tmp_path / "other" / second, data / second)
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1
    assert "2 files could be the orders table" in text and second in text
    assert "data.files.orders" in text


def test_a_file_named_in_another_case_is_found(tmp_path):
    data = tiny.write(tmp_path / "d")
    os.replace(data / "orders.csv", data / "ORDERS.CSV")
    with _load(_params_file(tmp_path, data)) as ds:
        assert ds["orders"].count().to_pyarrow().as_py() == 10


# --------------------------------------------------------------------------------------
# Unreadable files


def _loop(p: Path) -> None:
    p.unlink()
    os.symlink(p.name, p)  # a link to itself


def _loop_of_two(p: Path) -> None:
    p.unlink()
    os.symlink(p.with_name("b.csv"), p)
    os.symlink(p, p.with_name("b.csv"))


def _dangling(p: Path) -> None:
    p.unlink()
    os.symlink(p.with_name("gone.csv"), p)


def _folder(p: Path) -> None:
    p.unlink()
    p.mkdir()


@pytest.mark.parametrize("table", ["orders", "touches"])
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_loop, ["symbolic link that loops", "replace the link with the file"]),
        (_loop_of_two, ["symbolic link that loops"]),
        (_dangling, ["symbolic link to", "gone.csv", "does not exist"]),
        (_folder, ["is a folder, not a file"]),
    ],
)
def test_an_unreadable_table_file_is_reported_as_that(tmp_path, capsys, table, make, words):
    data = tiny.write(tmp_path / "d")
    make(data / f"{table}.csv")
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1  # even an optional table's file that is there but broken stops the run
    assert f"{table}.csv" in text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"
    assert "is missing from" not in text and "missing optional" not in text


@pytest.mark.parametrize("table", ["orders", "tickets"])
def test_permission_denied(tmp_path, capsys, monkeypatch, table):
    data = tiny.write(tmp_path / "d")
    target = data / f"{table}.csv"
    if os.geteuid() != 0:
        target.chmod(0)
    else:  # root reads everything: deny the open the way the kernel would
        real = open

        def fake_open(file, *a, **k):
            if Path(file) == target:
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, *a, **k)

        monkeypatch.setattr("builtins.open", fake_open)
    rc, text = _validate(_params_file(tmp_path, data), capsys)
    assert rc == 1
    assert f"{table}.csv cannot be read: permission denied" in text and "chmod" in text


def test_a_file_named_in_data_files_that_does_not_exist(tmp_path, capsys):
    data = tiny.write(tmp_path / "d")
    params = _params_file(tmp_path, data, "  files: {orders: 订单2026.csv}\n")
    rc, text = _validate(params, capsys)
    assert rc == 1 and "订单2026.csv (from data.files) does not exist" in text


# --------------------------------------------------------------------------------------
# Database URLs


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://analyst:s3cret@127.0.0.1:1/crm", ["postgres driver is not installed"]),
        ("mysql://analyst:s3cret@127.0.0.1:1/crm", ["mysql driver is not installed"]),
        ("mssql://analyst:s3cret@127.0.0.1:1/crm", ["mssql driver is not installed"]),
    ],
)
def test_a_database_url_whose_driver_is_missing(tmp_path, capsys, url, words):
    scheme = url.split("://")[0]
    try:
        ibis.connect(url)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - installed after all: the server is what fails
        pytest.skip(f"the {scheme} driver is installed here")
    rc, text = _validate(_params_file(tmp_path, url), capsys)
    assert rc == 1
    for w in words:
        assert w in text
    assert f'pip install -U "ibis-framework[{scheme}]"' in text
    assert "s3cret" not in text and "analyst:***@" in text


class OperationalError(Exception):
    """What psycopg and pymysql raise for a server that does not answer."""


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError(
            'connection to server at "127.0.0.1", port 5432 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?"
        ),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
    ],
)
def test_a_database_server_that_is_down(tmp_path, capsys, monkeypatch, exc):
    def refuse(url, **kw):
        raise exc

    monkeypatch.setattr(ibis, "connect", refuse)
    url = "postgres://analyst:s3cret@db.example:5432/crm"
    rc, text = _validate(_params_file(tmp_path, url), capsys)
    assert rc == 1
    assert "could not connect to the data source postgres://analyst:***@db.example:5432/crm" in text
    assert type(exc).__name__ in text
    assert "server is running" in text and "s3cret" not in text


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("foo://somewhere/db", ["'foo://' is not a database fupan can connect to"]),
        ("duckdb:///nowhere/crm.duckdb", ["database file not found: /nowhere/crm.duckdb"]),
        ("sqlite:///nowhere/crm.db", ["database file not found: /nowhere/crm.db"]),
    ],
)
def test_a_database_url_that_cannot_work(tmp_path, capsys, url, words):
    rc, text = _validate(_params_file(tmp_path, url), capsys)
    assert rc == 1
    for w in words:
        assert w in text
    assert not Path("/nowhere").exists()  # nothing was created on the way


def test_a_sqlite_file_with_a_db_suffix_is_read_as_sqlite(tmp_path):
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as con:
        for name, df in tiny.frames().items():
            df.to_sql(name, con, index=False)
    with _load(_params_file(tmp_path, db)) as ds:
        assert ds.present == list(fdata.TABLES)
        assert ds["orders"].amount.sum().to_pyarrow().as_py() == pytest.approx(
            tiny.frames()["orders"].amount.sum()
        )


@pytest.mark.parametrize("content", [b"order_id,customer_id\n", b"\x00" * 4096])
def test_a_duckdb_file_that_is_not_one(tmp_path, capsys, content):
    db = tmp_path / "crm.duckdb"
    db.write_bytes(content)
    rc, text = _validate(_params_file(tmp_path, db), capsys)
    assert rc == 1 and "crm.duckdb could not be opened as a DuckDB database" in text


# --------------------------------------------------------------------------------------
# The source path itself


def test_a_source_that_does_not_exist_suggests_a_near_name(tmp_path, capsys):
    tiny.write(tmp_path / "exports")
    rc, text = _validate(_params_file(tmp_path, tmp_path / "export"), capsys)
    assert rc == 1
    assert "data source not found" in text and "did you mean" in text and "exports" in text


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("crm.json", b"{}", ["type fupan cannot read (.json)"]),
        ("crm.zip", b"PK\x03\x04", ["type fupan cannot read (.zip)"]),
        ("crm", b"abc", ["(no suffix)"]),
        ("orders.csv", b"a,b\n1,2\n", ["one .csv file", "set data.source to its folder"]),
        ("orders.parquet", b"PAR1", ["one .parquet file", "data.files"]),
        ("empty.xlsx", b"", ["empty file (0 bytes)"]),
    ],
)
def test_a_source_file_of_an_unknown_type(tmp_path, capsys, name, content, words):
    path = tmp_path / "src" / name
    path.parent.mkdir()
    path.write_bytes(content)
    rc, text = _validate(_params_file(tmp_path, path), capsys)
    assert rc == 1
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"


def test_a_password_in_a_url_never_reaches_the_message():
    assert sources.redact("postgres://u:p%40ss@h:5/db") == "postgres://u:***@h:5/db"
    assert sources.redact("duckdb:///x.duckdb") == "duckdb:///x.duckdb"
    assert sources.redact("snowflake://u@acct/db") == "snowflake://u@acct/db"


@pytest.mark.parametrize(
    ("head", "codec"),
    [
        ("a,b\n1,2\n".encode("utf-16-le"), "utf-16-le"),
        ("客户,金额\n".encode("utf-16-be"), "utf-16-be"),
        (b"a,b\n", None),
        ("客户,金额\n".encode("gb18030"), None),
        ("\ufeffa".encode("utf-8"), "utf-8-sig"),
        ("\ufeffa,b".encode("utf-32-le"), "utf-32"),
    ],
)
def test_sniff_encoding(head, codec):
    assert sources.sniff_encoding(head) == codec


def test_data_files_may_name_one_workbook_for_several_tables(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("orders", "customers"))
    frames = tiny.frames()
    _workbook(
        data / "crm.xlsx", {"说明": _NOTES, "Orders": frames["orders"], "客户": frames["customers"]}
    )
    lines = "  files: {orders: crm.xlsx, customers: crm.xlsx}\n  sheets: {customers: 客户}\n"
    with _load(_params_file(tmp_path, data, lines)) as ds:
        assert ds["orders"].count().to_pyarrow().as_py() == 10
        c = ds["customers"].to_pandas().set_index("customer_id")
        assert not ds.report.warnings or all(p.check != "sheet" for p in ds.report.warnings)
    assert c.loc["C5", "customer_name"] == "戊公司"
