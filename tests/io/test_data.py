"""Loading every source kind, and validation that names table, column, rows and the fix."""

from __future__ import annotations

import string
from pathlib import Path

import ibis
import pandas as pd
import paramfile
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.dataset import MissingTableError
from fupan.io.validation import DataValidationError


def _params(tmp_path: Path, data_dir: Path, extra: str = "") -> fparams.Params:
    return fparams.load(tiny.params_file(tmp_path, data_dir, extra))


def _problem(report, check, table=None):
    hits = [p for p in report.problems if p.check == check and (table is None or p.table == table)]
    assert hits, f"no '{check}' problem in:\n{report.format()}"
    return hits[0]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_every_file_format_loads_the_same_tables(tmp_path, fmt):
    data = tiny.write(tmp_path / fmt, fmt=fmt)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert ds.present == list(fdata.TABLES)
        orders = ds["orders"].to_pandas()
        assert len(orders) == 10
        assert orders.amount.sum() == pytest.approx(tiny.frames()["orders"].amount.sum())
        assert str(ds["orders"].schema()["order_date"]).startswith("date")
        touches = ds["touches"].to_pandas().set_index("touch_id")
        assert touches.loc["T1", "responded"] == True  # noqa: E712
        assert pd.isna(touches.loc["T4", "responded"])
        tickets = ds["tickets"].to_pandas().set_index("ticket_id")
        assert pd.isna(tickets.loc["S3", "first_response_at"])
        assert "dim_need_fit" in ds["surveys"].columns


def test_duckdb_file_source(tmp_path):
    db = tmp_path / "crm.duckdb"
    con = ibis.duckdb.connect(str(db))
    for name, df in tiny.frames().items():
        con.create_table(name, df)
    con.disconnect()
    with fdata.loaded(_params(tmp_path, db)) as ds:
        assert ds.present == list(fdata.TABLES)
        assert ds["customers"].count().to_pyarrow().as_py() == 5


def test_gbk_csv_with_chinese_headers_mapped_by_params(tmp_path):
    data = tiny.write(tmp_path / "d")
    cust = tiny.frames()["customers"].rename(
        columns={"customer_id": "客户编号", "tier": "客户等级", "region": "区域"}
    )
    cust.to_csv(data / "customers.csv", index=False, encoding="gbk")
    extra = "  columns:\n    customers: {客户编号: customer_id, 客户等级: tier, 区域: region}\n"
    p = fparams.load(tiny.params_file(tmp_path, data).with_name("params.yaml"))
    paramfile.update(tmp_path / "params.yaml", "data:\n" + extra)
    p = fparams.load(tmp_path / "params.yaml")
    with fdata.loaded(p) as ds:
        c = ds["customers"].to_pandas().set_index("customer_id")
        assert c.loc["C1", "region"] == "华东"
        assert c.loc["C3", "customer_name"] == "丙公司"


def test_gbk_declared_as_utf8_is_decoded_and_reported(tmp_path):
    data = tiny.write(tmp_path / "d")
    tiny.frames()["customers"].to_csv(data / "customers.csv", index=False, encoding="gb18030")
    path = tiny.params_file(tmp_path, data)
    paramfile.update(path, {"data": {"encoding": "utf-8"}})
    with fdata.loaded(fparams.load(path)) as ds:
        assert _problem(ds.report, "encoding").severity == "warning"
        assert (
            ds["customers"].filter(ds["customers"].customer_id == "C2").to_pandas().customer_name[0]
            == "乙公司"
        )


def test_utf8_bom_headers(tmp_path):
    data = tiny.write(tmp_path / "d")
    tiny.frames()["orders"].to_csv(data / "orders.csv", index=False, encoding="utf-8-sig")
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert "order_id" in ds["orders"].columns


def test_excel_title_row_above_header_is_skipped(tmp_path):
    data = tiny.write(tmp_path / "d")
    (data / "customers.csv").unlink()
    cust = tiny.frames()["customers"]
    with pd.ExcelWriter(data / "customers.xlsx") as xw:
        pd.DataFrame([["2026 客户名单（导出）"]]).to_excel(
            xw, index=False, header=False, startrow=0
        )
        cust.to_excel(xw, index=False, startrow=2)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert ds["customers"].count().to_pyarrow().as_py() == 5


def test_missing_required_column_names_it_and_the_fix(tmp_path):
    data = tiny.write(
        tmp_path / "d", orders=tiny.frames()["orders"].rename(columns={"amount": "amonut"})
    )
    with pytest.raises(DataValidationError) as exc:
        fdata.load(_params(tmp_path, data))
    p = _problem(exc.value.report, "missing_column", "orders")
    assert p.column == "amount" and "rename 'amonut' to 'amount'" in p.fix
    assert "orders.amount" in str(exc.value)


def test_misspelt_optional_column_is_named_not_silently_dropped(tmp_path):
    # tier is optional now: a misspelt tier column would otherwise vanish without a word
    data = tiny.write(
        tmp_path / "d", customers=tiny.frames()["customers"].rename(columns={"tier": "tire"})
    )
    ds = fdata.load(_params(tmp_path, data))
    p = _problem(ds.report, "unused_column", "customers")
    assert p.severity == "warning" and "rename 'tire' to 'tier'" in p.fix
    assert not ds.supplied("customers", "tier")


def test_missing_column_hint_never_suggests_a_contract_column(tmp_path):
    o = tiny.frames()["orders"].drop(columns=["customer_id"])
    data = tiny.write(tmp_path / "d", orders=o)
    with pytest.raises(DataValidationError) as exc:
        fdata.load(_params(tmp_path, data))
    p = _problem(exc.value.report, "missing_column", "orders")
    assert p.column == "customer_id" and "rename" not in p.fix


def test_every_problem_reported_at_once_with_rows(tmp_path):
    o = tiny.frames()["orders"].astype(object)
    o.loc[3, "order_date"] = "05/01/2026"  # ambiguous day/month order
    o.loc[4, "amount"] = "abc"
    o.loc[5, "order_id"] = "O1"
    s = tiny.frames()["surveys"].astype(object)
    s.loc[0, "nps"] = 11
    data = tiny.write(tmp_path / "d", orders=o, surveys=s)
    report = fdata.load(_params(tmp_path, data), strict=False).report
    checks = {(p.table, p.column, p.check) for p in report.errors}
    assert ("orders", "order_date", "type") in checks
    assert ("orders", "amount", "type") in checks
    assert ("orders", "order_id", "duplicate_key") in checks
    assert ("surveys", "nps", "range") in checks
    bad_date = _problem(report, "type", "orders")
    assert bad_date.examples[0]["row"] == 5 and bad_date.examples[0]["order_date"] == "05/01/2026"


def test_mixed_but_unambiguous_date_formats_are_accepted(tmp_path):
    o = tiny.frames()["orders"].astype(object)
    o.loc[0, "order_date"] = "2023/1/10"
    o.loc[1, "order_date"] = "2024.06.01"
    o.loc[2, "order_date"] = "2026年9月15日"
    data = tiny.write(tmp_path / "d", orders=o)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        dates = ds["orders"].order_by("order_id").order_date.to_pandas()
        assert str(dates.iloc[0])[:10] == "2023-01-10"


def test_orphans_dropped_or_fatal_by_policy(tmp_path):
    o = tiny.frames()["orders"].copy()
    o.loc[6, "customer_id"] = "C99"
    data = tiny.write(tmp_path / "d", orders=o)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert _problem(ds.report, "orphans").severity == "warning"
        assert ds["orders"].count().to_pyarrow().as_py() == 9
    path = tiny.params_file(tmp_path, data)
    paramfile.update(path, {"data": {"orphans": "fail"}})
    with pytest.raises(DataValidationError, match="C99|orphan"):
        fdata.load(fparams.load(path))


@pytest.mark.parametrize("table", ["churn_events", "activity"])
def test_orphans_of_tables_without_their_own_key_are_reported(tmp_path, table):
    # these tables name customer_id as their example key: it must appear once, not crash
    frame = tiny.frames()[table].copy()
    frame = pd.concat([frame, frame.iloc[[0]].assign(customer_id="C99")], ignore_index=True)
    data = tiny.write(tmp_path / "d", **{table: frame})
    with fdata.loaded(_params(tmp_path, data)) as ds:
        p = _problem(ds.report, "orphans")
        assert p.severity == "warning" and p.table == table
        assert p.examples[0]["customer_id"] == "C99" and p.examples[0]["row"] == len(frame) + 1
        assert ds[table].count().to_pyarrow().as_py() == len(frame) - 1


def test_rows_after_as_of_are_excluded_and_reported(tmp_path):
    o = tiny.frames()["orders"].copy()
    o.loc[0, "order_date"] = "2027-01-01"
    data = tiny.write(tmp_path / "d", orders=o)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert _problem(ds.report, "after_as_of").count == 1
        assert ds["orders"].count().to_pyarrow().as_py() == 9


def test_missing_optional_table_is_absent_not_an_error(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("touches", "surveys"))
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert not ds.has("touches") and ds.report.missing_optional == ["touches", "surveys"]
        with pytest.raises(MissingTableError):
            ds["touches"]


def test_missing_required_file_and_header_only_file(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("orders",))
    tiny.frames()["tickets"].head(0).to_csv(data / "tickets.csv", index=False)
    report = fdata.load(_params(tmp_path, data), strict=False).report
    assert _problem(report, "missing_file", "orders").severity == "error"
    assert _problem(report, "empty", "tickets").severity == "warning"


def test_empty_required_table_is_an_error(tmp_path):
    data = tiny.write(tmp_path / "d", customers=tiny.frames()["customers"].head(0))
    with pytest.raises(DataValidationError, match="header but no rows"):
        fdata.load(_params(tmp_path, data))


def test_value_mapping_for_channel_vocabulary(tmp_path):
    t = tiny.frames()["touches"].copy()
    t.loc[0, "channel"] = "拜访"
    data = tiny.write(tmp_path / "d", touches=t)
    report = fdata.load(_params(tmp_path, data), strict=False).report
    assert _problem(report, "vocabulary", "touches").examples[0]["channel"] == "拜访"
    path = tiny.params_file(tmp_path, data)
    paramfile.update(path, {"data": {"values": {"touches": {"channel": {"拜访": "visit"}}}}})
    with fdata.loaded(fparams.load(path)) as ds:
        assert ds.report.ok


def test_refunds_kept_and_flagged(tmp_path, tiny_params):
    with fdata.loaded(fparams.load(tiny_params)) as ds:
        assert _problem(ds.report, "refunds").count == 1
        assert ds["orders"].filter(ds["orders"].amount < 0).count().to_pyarrow().as_py() == 1


def test_last_bad_row_of_a_large_csv_is_found(tmp_path):
    n = 200_000
    data = tiny.write(tmp_path / "d")
    big = pd.DataFrame(
        {
            "order_id": [f"X{i}" for i in range(n)],
            "customer_id": "C1",
            "order_date": "2025-01-01",
            "amount": "10.5",
            "category": "x",
        }
    )
    big.loc[n - 1, "amount"] = "12,3O"  # letter O, not zero
    big.to_csv(data / "orders.csv", index=False)
    report = fdata.load(_params(tmp_path, data), strict=False).report
    p = _problem(report, "type", "orders")
    assert p.count == 1 and p.examples[0]["row"] == n + 1


def test_staged_dataset_reopens_read_only(tmp_path, tiny_params):
    params = fparams.load(tiny_params)
    fdata.load(params, work_dir=tmp_path / "work").close()
    ds = fdata.connect(params, tmp_path)
    assert ds["orders"].count().to_pyarrow().as_py() == 10
    assert ds.report.present == list(fdata.TABLES)
    ds.close()


def _native_frames() -> dict[str, pd.DataFrame]:
    """The tiny tables with the column types a CRM database or Parquet export would carry."""
    f = tiny.frames()
    out = {k: v.copy() for k, v in f.items()}
    for name, cols in {
        "customers": ["acquired_at"],
        "orders": ["order_date"],
        "contracts": ["start_date", "end_date"],
        "surveys": ["surveyed_at"],
        "activity": ["period_start"],
        "churn_events": ["churned_at"],
    }.items():
        for c in cols:
            out[name][c] = pd.to_datetime(out[name][c]).dt.date
    for c in ("opened_at", "first_response_at", "resolved_at"):
        out["tickets"][c] = pd.to_datetime(out["tickets"][c].replace("", None))
    out["touches"]["touched_at"] = pd.to_datetime(out["touches"]["touched_at"])
    out["touches"]["responded"] = pd.array([True, False, True, None], dtype="boolean")
    out["orders"]["amount"] = out["orders"]["amount"].astype("int64")  # whole numbers
    out["surveys"]["nps"] = out["surveys"]["nps"].astype("float64")  # 9.0: a whole number
    return out


def _tables(ds) -> dict[str, pd.DataFrame]:
    return {name: ds[name].to_pandas() for name in ds.present}


def _findings(report) -> list[dict]:
    # Example rows name the file line in a CSV and the row index in Parquet or a database.
    out = report.to_dict()["problems"]
    return [
        {**p, "examples": [{k: v for k, v in e.items() if k != "row"} for e in p["examples"]]}
        for p in out
    ]


@pytest.mark.parametrize("source", ["parquet", "duckdb"])
def test_typed_sources_load_the_same_tables_as_text(tmp_path, source):
    # Columns that already carry the contract's type are read as they are; the result must
    # be what their text would have parsed to.
    with fdata.loaded(_params(tmp_path, tiny.write(tmp_path / "csv"))) as ds:
        expected, report = _tables(ds), _findings(ds.report)
    if source == "parquet":
        src = tmp_path / "pq"
        src.mkdir()
        for name, df in _native_frames().items():
            df.to_parquet(src / f"{name}.parquet", index=False)
    else:
        src = tmp_path / "crm.duckdb"
        con = ibis.duckdb.connect(str(src))
        for name, df in _native_frames().items():
            con.create_table(name, df)
        con.disconnect()
    with fdata.loaded(_params(tmp_path, src)) as ds:
        got = _tables(ds)
        assert _findings(ds.report) == report
    assert got.keys() == expected.keys()
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=False)


def test_unrepresentable_whole_numbers_are_type_errors_not_a_crash(tmp_path):
    a = tiny.frames()["activity"].astype(object)
    a.loc[0, "logins"] = "1e30"
    a.loc[1, "logins"] = "nan"
    data = tiny.write(tmp_path / "d", activity=a)
    report = fdata.load(_params(tmp_path, data), strict=False).report
    p = _problem(report, "type", "activity")
    assert p.count == 2 and [e["logins"] for e in p.examples] == ["1e30", "nan"]


def test_clean_tables_keep_source_order_when_orphans_are_dropped(tmp_path):
    n = 3000
    o = pd.DataFrame(
        {
            "order_id": [f"X{i:05d}" for i in range(n)][::-1],
            "customer_id": ["C99" if i % 7 == 0 else f"C{i % 5 + 1}" for i in range(n)],
            "order_date": "2026-01-01",
            "amount": 1.0,
        }
    )
    data = tiny.write(tmp_path / "d", orders=o)
    # 14% orphans: above the default share that stops a run
    params = _params(tmp_path, data)
    params.data.orphan_threshold = 0.2
    with fdata.loaded(params, work_dir=tmp_path / "work") as ds:
        assert _problem(ds.report, "orphans").count == len(range(0, n, 7))
        got = ds["orders"].order_id.to_pandas().tolist()
    assert got == [x for x, c in zip(o.order_id, o.customer_id, strict=True) if c != "C99"]


def test_strip_skips_the_trim_only_where_it_changes_nothing():
    from fupan.io.contract import _strip

    values = ["", " ", "a", " a", "a ", "\ta\n", "中", " 中 ", "\u3000a\u3000", "a\x0b", "\x0ca"]
    values += ["x\ry", None, "\x01a", "\x01", "a\x01 ", "a\r", "1,234 ", " 2026-01-05"]
    t = ibis.memtable({"x": values}, schema={"x": "string"})
    got = ibis.duckdb.connect().to_pyarrow(t.select(a=_strip(t.x), b=t.x.strip())).to_pydict()
    assert (
        got["a"] == got["b"] == [None if v is None else v.strip(string.whitespace) for v in values]
    )


def test_typing_keeps_the_rows_in_source_order(tmp_path, monkeypatch):
    """A CSV table's ``_row`` is its typed row's position (plus the header lines): the
    typing query must keep the rows in order, so it holds no join. DuckDB turns an IN list of
    five or more constants into one (the bool column's true/false spellings did), and a join
    does not keep order once the file is read in parallel: a 100k touches table came out in
    four swapped blocks."""
    from fupan.io import contract

    joins = {}
    has_join = contract._has_join

    def spy(con, sql):
        joins[sql.split(" FROM ")[-1]] = found = has_join(con, sql)
        return found

    monkeypatch.setattr(contract, "_has_join", spy)
    data = tiny.write(tmp_path / "d")
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert sorted(joins) == sorted(f'"raw_{t}" AS "t0"' for t in ds.present)
    assert not any(joins.values())
    con = ibis.duckdb.connect()
    con.raw_sql("CREATE TABLE t AS SELECT 'x' AS s")
    assert has_join(con, "SELECT s IN ('a', 'b', 'c', 'd', 'e') FROM t")
    assert not has_join(con, "SELECT s = 'a' OR s = 'b' FROM t")


def _staged(ds) -> dict[str, list]:
    return {t: ds.con.raw_sql(f"SELECT * FROM {t}").fetchall() for t in ds.present}


def test_a_typing_query_with_a_join_numbers_rows_by_a_window(tmp_path, monkeypatch):
    """Should a typing query join, rows are numbered before typing: the same tables (and
    the same order_id derived from source rows)."""
    from fupan.io import contract

    data = tiny.write(tmp_path / "d")
    orders = pd.read_csv(data / "orders.csv", dtype=str)
    orders.drop(columns="order_id").to_csv(data / "orders.csv", index=False)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        by_position, report = _staged(ds), ds.report.to_dict()
        assert ds.report.derived["orders.order_id"] == "source_row"
    monkeypatch.setattr(contract, "_has_join", lambda con, sql: True)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert _staged(ds) == by_position and ds.report.to_dict() == report


def test_a_large_csv_keeps_its_order_and_source_rows(tmp_path):
    """A touches file large enough for DuckDB to read in parallel (~25 MB): staged in the
    file's order, and an example row names its file line."""
    data = tiny.write(tmp_path / "d")
    n = 500_000
    ids = [f"T{i:08d}" for i in range(n)]
    touches = pd.DataFrame(
        {
            "touch_id": ids,
            "customer_id": ["C1", "C2", "C3", "C4", "C5"] * (n // 5),
            "touched_at": "2026-01-05 10:00:00",
            "channel": "email",
            "responded": ["true", "no", "", "是"] * (n // 4),
        }
    )
    late = n - 3
    touches.loc[late, "touched_at"] = "2099-01-01 00:00:00"  # after as_of: excluded, shown
    touches.to_csv(data / "touches.csv", index=False)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        example = _problem(ds.report, "after_as_of", "touches").examples[0]
        staged = ds.con.raw_sql("SELECT touch_id, responded FROM touches").fetchall()
    assert (example["row"], example["touch_id"]) == (late + 2, ids[late])  # header: line 1
    assert [r[0] for r in staged] == ids[:late] + ids[late + 1 :]
    assert [r[1] for r in staged[:4]] == [True, False, None, True]
