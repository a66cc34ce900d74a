"""Bad input, case by case, through `fupan validate` as a user meets it.

Each case asserts the outcome (exit code: 1 = stop, 0 = run with a reported warning) and
that the message names the table, the column, the rows and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import paramfile
import pytest
import tiny
from fupan.run import cli


def _frames():
    return {k: v.astype(object) for k, v in tiny.frames().items()}


def _case_missing_file(d: Path):
    (d / "orders.csv").unlink()


def _case_missing_column(d: Path):
    tiny.frames()["orders"].drop(columns=["amount"]).to_csv(d / "orders.csv", index=False)


def _case_wrong_type(d: Path):
    o = _frames()["orders"]
    o.loc[2, "amount"] = "一万"
    o.to_csv(d / "orders.csv", index=False)


def _case_unparseable_date(d: Path):
    c = _frames()["customers"]
    c.loc[1, "acquired_at"] = "last spring"
    c.to_csv(d / "customers.csv", index=False)


def _case_ambiguous_date(d: Path):
    o = _frames()["orders"]
    o.loc[0, "order_date"] = "03/04/2026"
    o.to_csv(d / "orders.csv", index=False)


def _case_mixed_iso_formats(d: Path):
    o = _frames()["orders"]
    o.loc[0, "order_date"] = "2023/1/10"
    o.loc[1, "order_date"] = "2024.06.01"
    o.to_csv(d / "orders.csv", index=False)


def _case_duplicate_keys(d: Path):
    c = _frames()["customers"]
    c.loc[4, "customer_id"] = "C1"
    c.to_csv(d / "customers.csv", index=False)


def _case_orphans(d: Path):
    o = _frames()["orders"]
    o.loc[3, "customer_id"] = "C404"
    o.to_csv(d / "orders.csv", index=False)


def _case_negative_and_zero(d: Path):
    o = _frames()["orders"]
    o.loc[3, "amount"] = 0.0
    o.to_csv(d / "orders.csv", index=False)


def _case_nps_out_of_range(d: Path):
    s = _frames()["surveys"]
    s.loc[1, "nps"] = 42
    s.to_csv(d / "surveys.csv", index=False)


def _case_after_as_of(d: Path):
    t = _frames()["touches"]
    t.loc[0, "touched_at"] = "2027-02-01 10:00:00"
    t.to_csv(d / "touches.csv", index=False)


def _case_empty_required(d: Path):
    tiny.frames()["orders"].head(0).to_csv(d / "orders.csv", index=False)


def _case_header_only_optional(d: Path):
    tiny.frames()["surveys"].head(0).to_csv(d / "surveys.csv", index=False)


def _case_gbk_declared_utf8(d: Path):
    tiny.frames()["customers"].to_csv(d / "customers.csv", index=False, encoding="gbk")


def _case_excel_title_row(d: Path):
    (d / "customers.csv").unlink()
    with pd.ExcelWriter(d / "customers.xlsx") as xw:
        pd.DataFrame([["客户清单 2026-10"], ["导出人：CRM"]]).to_excel(
            xw, index=False, header=False
        )
        tiny.frames()["customers"].to_excel(xw, index=False, startrow=3)


# case, exit code, words the output must contain
CASES = [
    (_case_missing_file, 1, ["orders", "missing", "add orders.csv"]),
    (_case_missing_column, 1, ["orders.amount", "missing", "data.columns.orders"]),
    (_case_wrong_type, 1, ["orders.amount", "not a valid float", "row=4", "一万"]),
    (
        _case_unparseable_date,
        1,
        ["customers.acquired_at", "not a valid date", "last spring", "YYYY-MM-DD"],
    ),
    (_case_ambiguous_date, 1, ["orders.order_date", "03/04/2026", "ambiguous"]),
    (_case_mixed_iso_formats, 0, ["ok:"]),
    (_case_duplicate_keys, 1, ["customers.customer_id", "more than once", "deduplicate"]),
    (_case_orphans, 0, ["orders.customer_id", "C404", "dropped"]),
    (_case_negative_and_zero, 0, ["refunds", "zero amounts", "O4"]),
    (_case_nps_out_of_range, 1, ["surveys.nps", "outside [0, 10]", "42", "5-point"]),
    (_case_after_as_of, 0, ["touches.touched_at", "after as_of", "excluded"]),
    (_case_empty_required, 1, ["orders", "header but no rows"]),
    (_case_header_only_optional, 0, ["surveys", "header but no rows", "missing optional: surveys"]),
    (_case_gbk_declared_utf8, 0, ["declared UTF-8", "GB18030"]),
    (_case_excel_title_row, 0, ["ok:"]),
]


@pytest.mark.parametrize(("case", "code", "words"), CASES, ids=[c[0].__name__[6:] for c in CASES])
def test_bad_input(tmp_path, capsys, case, code, words):
    data = tiny.write(tmp_path / "data")
    case(data)
    params = tiny.params_file(tmp_path, data)
    if case is _case_gbk_declared_utf8:
        paramfile.update(params, {"data": {"encoding": "utf-8"}})
    rc = cli.main(["validate", "--params", str(params)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == code, text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"
    assert "Traceback" not in text


def test_one_bad_row_at_the_end_of_a_million_row_csv(tmp_path, capsys):
    n = 1_000_000
    data = tiny.write(tmp_path / "data")
    with open(data / "orders.csv", "w", encoding="utf-8") as fh:
        fh.write("order_id,customer_id,order_date,amount,category\n")
        fh.writelines(f"X{i},C1,2025-01-01,10.5,x\n" for i in range(n - 1))
        fh.write(f"X{n - 1},C1,2025-13-01,10.5,x\n")
    rc = cli.main(["validate", "--params", str(tiny.params_file(tmp_path, data))])
    text = capsys.readouterr().out
    assert rc == 1
    assert "orders.order_date" in text and f"row={n + 1}" in text and "2025-13-01" in text


def test_a_database_url_source(tmp_path, capsys):
    import ibis

    db = tmp_path / "crm.duckdb"
    con = ibis.duckdb.connect(str(db))
    for name, df in tiny.frames().items():
        con.create_table(name, df)
    con.disconnect()
    params = tiny.params_file(tmp_path, tmp_path)
    paramfile.update(params, {"data": {"source": f"duckdb://{db}"}})
    assert cli.main(["validate", "--params", str(params)]) == 0, capsys.readouterr()
