"""Bad input, round two (issue 18): data that would give a confident deck with wrong numbers.

Each class is either refused (exit 1, naming table, column, example rows and the fix) or
loaded with the same numbers a direct computation from the clean data gives.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import paramfile
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.dataset import Dataset
from fupan.io.validation import DataValidationError
from fupan.run import cli


def _frames():
    return {k: v.astype(object) for k, v in tiny.frames().items()}


def _validate(tmp_path: Path, capsys, data: Path, extra: str = "") -> tuple[int, str]:
    path = tiny.params_file(tmp_path, data)
    if extra:
        paramfile.update(path, "data:\n" + extra)
    rc = cli.main(["validate", "--params", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return rc, text


def _load(tmp_path: Path, data: Path, extra: str = ""):
    path = tiny.params_file(tmp_path, data)
    if extra:
        paramfile.update(path, "data:\n" + extra)
    return fdata.loaded(fparams.load(path))


def _amount_total(ds: Dataset) -> float:
    return float(ds["orders"].amount.sum().to_pyarrow().as_py())


# --------------------------------------------------------------------------------------
# Numbers that refuse to guess


@pytest.mark.parametrize("value", ["683,63", "1.234,50", "12,5", "1234,5", "-0,75", "¥ 683,63"])
def test_comma_decimals_are_refused_with_the_number_format_fix(tmp_path, capsys, value):
    data = tiny.write(tmp_path / "d")
    o = _frames()["orders"]
    o.loc[4, "amount"] = value
    o.to_csv(data / "orders.csv", index=False)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1
    for w in ("orders.amount", "comma", value.strip(), "row=6", "data.number_format"):
        assert w in text, f"{w!r} not in {text}"


@pytest.mark.parametrize(
    ("text", "value"), [("1,234.5", 1234.5), ("12,345,678", 12345678.0), ("¥1,000", 1000.0)]
)
def test_thousands_commas_in_full_groups_parse(tmp_path, text, value):
    o = _frames()["orders"]
    o.loc[4, "amount"] = text
    data = tiny.write(tmp_path / "d", orders=o)
    with _load(tmp_path, data) as ds:
        got = ds["orders"].filter(ds["orders"].order_id == "O5").amount.to_pyarrow()[0].as_py()
        assert got == value


EU = [("1.234,50", 1234.5), ("683,63", 683.63), ("12.345.678", 12345678.0), ("-0,5", -0.5)]


@pytest.mark.parametrize(
    "fmt",
    [
        '  number_format: {decimal: ",", thousands: "."}\n',
        '  number_format: {orders: {decimal: ",", thousands: "."}}\n',
        '  number_format: {orders: {amount: {decimal: ",", thousands: "."}}}\n',
    ],
    ids=["global", "table", "column"],
)
def test_a_named_number_format_parses_like_a_direct_computation(tmp_path, fmt):
    o = _frames()["orders"]
    true = o.amount.astype(float).copy()
    for i, (text, value) in enumerate(EU):
        o.loc[i, "amount"] = text
        true[i] = value
    # the remaining amounts are written the same way
    for i in range(len(EU), len(o)):
        o.loc[i, "amount"] = f"{float(true[i]):.2f}".replace(".", ",")
    d = tmp_path / "d"
    # a global format applies to every number column: the other money tables are left out
    tiny.write(d, drop=("contracts", "churn_events"))
    o.to_csv(d / "orders.csv", index=False, sep=";")
    with _load(tmp_path, d, fmt) as ds:
        got = ds["orders"].order_by("order_id").to_pandas().set_index("order_id").amount
        exp = pd.Series(true.to_numpy(), index=o.order_id)
        pd.testing.assert_series_equal(
            got.sort_index(), exp.sort_index(), check_names=False, check_index_type=False
        )


def test_a_named_format_refuses_numbers_written_the_other_way(tmp_path):
    o = _frames()["orders"]
    o.loc[0, "amount"] = "1,234.50"
    data = tiny.write(tmp_path / "d", orders=o)
    with pytest.raises(DataValidationError) as exc:
        with _load(tmp_path, data, '  number_format: {decimal: ",", thousands: "."}\n'):
            pass
    assert "orders.amount" in str(exc.value) and "1,234.50" in str(exc.value)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", ""])
def test_empty_nan_and_infinite_amounts_are_errors(tmp_path, capsys, value):
    data = tiny.write(tmp_path / "d")
    o = _frames()["orders"]
    o.loc[2, "amount"] = value
    o.to_csv(data / "orders.csv", index=False)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1 and "orders.amount" in text and "bad_amounts: drop" in text


def test_nan_amounts_in_parquet_are_errors(tmp_path):
    o = tiny.frames()["orders"].copy()
    o.loc[1, "amount"] = math.nan
    o.loc[2, "amount"] = math.inf
    data = tiny.write(tmp_path / "d", fmt="parquet", orders=o)
    with pytest.raises(DataValidationError) as exc:
        with _load(tmp_path, data):
            pass
    # pyarrow writes pandas' NaN as null: one empty amount, one infinite
    got = {x.check: x.count for x in exc.value.report.errors if x.column == "amount"}
    assert got == {"not_finite": 1, "nulls": 1}


@pytest.mark.parametrize("value", ["nan", "inf", ""])
def test_bad_amounts_dropped_by_policy_and_reported(tmp_path, value):
    o = _frames()["orders"]
    o.loc[2, "amount"] = value
    data = tiny.write(tmp_path / "d", orders=o)
    with _load(tmp_path, data, "  bad_amounts: drop\n") as ds:
        exp = tiny.frames()["orders"].drop(index=2).amount.sum()
        assert _amount_total(ds) == pytest.approx(exp)
        assert ds["orders"].count().to_pyarrow().as_py() == len(o) - 1
        assert any(p.table == "orders" and p.column == "amount" for p in ds.report.warnings)


# --------------------------------------------------------------------------------------
# Closed vocabularies


@pytest.mark.parametrize(
    ("table", "column", "row", "variant", "canon"),
    [
        ("customers", "tier", 1, "Gold", "gold"),
        ("customers", "tier", 0, " PLATINUM ", "platinum"),
        ("touches", "channel", 0, "Visit", "visit"),
        ("tickets", "priority", 0, "HIGH", "high"),
        ("churn_events", "reason", 0, "Service", "service"),
    ],
)
def test_case_only_differences_are_normalised_with_a_warning(
    tmp_path, table, column, row, variant, canon
):
    f = _frames()[table]
    f.loc[row, column] = variant
    data = tiny.write(tmp_path / "d", **{table: f})
    with _load(tmp_path, data) as ds:
        vals = ds[table][column].to_pandas().tolist()
        assert variant not in vals and vals.count(canon) == list(
            tiny.frames()[table][column]
        ).count(canon) + (0 if tiny.frames()[table][column][row] == canon else 1)
        w = [p for p in ds.report.warnings if p.check == "case_normalised"]
        assert w and w[0].table == table and w[0].column == column


@pytest.mark.parametrize(
    ("table", "column", "value", "where"),
    [
        ("customers", "tier", "diamond", "tiers.order"),
        ("touches", "channel", "telegram", "touches.channel"),
        ("tickets", "priority", "P1", "tickets.priority"),
        ("churn_events", "reason", "budget cut", "churn_definition.reasons"),
    ],
)
def test_values_outside_a_closed_set_are_errors_with_the_mapping(
    tmp_path, capsys, table, column, value, where
):
    data = tiny.write(tmp_path / "d")
    f = _frames()[table]
    f.loc[0, column] = value
    f.to_csv(data / f"{table}.csv", index=False)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1
    for w in (f"{table}.{column}", repr(value), "(1)", where, f"data.values: {{{table}:"):
        assert w in text, f"{w!r} not in {text}"


def test_value_map_onto_an_unknown_target_is_an_error(tmp_path, capsys):
    data = tiny.write(tmp_path / "d")
    rc, text = _validate(tmp_path, capsys, data, "  values: {customers: {tier: {Gold: golden}}}\n")
    assert rc == 1 and "golden" in text and "tiers.order" in text


def test_core_churn_is_right_with_capitalised_tiers(tmp_path):
    # the silently-wrong case: "Gold" fell out of every tier filter
    c = _frames()["customers"]
    c["tier"] = c["tier"].str.capitalize()
    data = tiny.write(tmp_path / "d", customers=c)
    with _load(tmp_path, data) as ds:
        got = ds["customers"].to_pandas().set_index("customer_id").tier
        exp = tiny.frames()["customers"].set_index("customer_id").tier
        assert got.to_dict() == exp.to_dict()


# --------------------------------------------------------------------------------------
# Cross-table and temporal checks


def test_tickets_resolved_before_opened_are_errors(tmp_path, capsys):
    data = tiny.write(tmp_path / "d")
    t = _frames()["tickets"]
    t.loc[0, "resolved_at"] = "2026-08-31 08:00:00"
    t.to_csv(data / "tickets.csv", index=False)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1 and "tickets.resolved_at" in text and "S1" in text


def test_orders_before_acquisition_reported_stopped_or_adjusted(tmp_path, capsys):
    c = _frames()["customers"]
    c.loc[1, "acquired_at"] = "2024-01-01"  # C2's first order is 2023-05-01
    data = tiny.write(tmp_path / "d", customers=c)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 0 and "orders.order_date" in text and "before" in text and "O4" in text
    assert "orders_before_acquisition: adjust" in text
    rc, text = _validate(tmp_path, capsys, data, "  orders_before_acquisition: fail\n")
    assert rc == 1 and "[ERROR] orders.order_date" in text and "C2" in text
    with _load(tmp_path, data, "  orders_before_acquisition: adjust\n") as ds:
        got = ds["customers"].to_pandas().set_index("customer_id").acquired_at
        assert str(got["C2"])[:10] == "2023-05-01"
        assert str(got["C1"])[:10] == "2023-01-10"


def test_orders_of_customers_excluded_for_a_future_acquisition_are_excluded(tmp_path):
    c = _frames()["customers"]
    c.loc[4, "acquired_at"] = "2027-01-01"  # C5, who has two orders before as_of
    data = tiny.write(tmp_path / "d", customers=c)
    with _load(tmp_path, data) as ds:
        o = tiny.frames()["orders"]
        exp = o[o.customer_id != "C5"].amount.sum()
        assert _amount_total(ds) == pytest.approx(exp)
        p = [x for x in ds.report.problems if x.check == "excluded_customer"]
        assert p and p[0].table == "orders" and p[0].count == 2
        assert not any(x.check == "orphans" for x in ds.report.problems)


@pytest.mark.parametrize("n_orphans", [5, 7])
def test_orphan_share_above_the_threshold_is_an_error(tmp_path, capsys, n_orphans):
    data = tiny.write(tmp_path / "d")
    o = _frames()["orders"]
    o.loc[: n_orphans - 1, "customer_id"] = [f"X{i}" for i in range(n_orphans)]
    o.to_csv(data / "orders.csv", index=False)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1 and "orphan_threshold" in text and "X0" in text
    rc, text = _validate(tmp_path, capsys, data, "  orphan_threshold: 0.9\n")
    assert rc == 0


@pytest.mark.parametrize(("ours", "theirs"), [("{}.0", "{}"), ("00{}", "{}"), ("c{}", "C{}")])
def test_every_order_orphaned_by_an_id_format_names_the_format(tmp_path, capsys, ours, theirs):
    f = _frames()
    num = {f"C{i}": str(i) for i in range(1, 6)}
    c, o = f["customers"], f["orders"]
    c["customer_id"] = [theirs.format(num[x]) for x in c.customer_id]
    o["customer_id"] = [ours.format(num[x]) for x in o.customer_id]
    d = tmp_path / "d"
    d.mkdir()
    c.to_csv(d / "customers.csv", index=False)
    o.to_csv(d / "orders.csv", index=False)
    rc, text = _validate(tmp_path, capsys, d)
    assert rc == 1 and "written differently" in text and "orders.customer_id" in text


@pytest.mark.parametrize(
    ("as_of", "period_start", "words"),
    [
        ("2022-12-31", None, ["no customer", "as_of"]),
        ("2023-01-31", "2023-01-15", ["review period 2023-01-15..2023-01-31", "holds no"]),
    ],
)
def test_windows_without_data_are_errors(tmp_path, capsys, as_of, period_start, words):
    data = tiny.write(tmp_path / "d")
    path = tiny.params_file(tmp_path, data)
    paramfile.update(path, as_of=as_of, **({"period_start": period_start} if period_start else {}))
    rc = cli.main(["validate", "--params", str(path)])
    text = capsys.readouterr().out
    assert rc == 1
    for w in words:
        assert w in text, text


def test_as_of_before_every_order_is_an_error(tmp_path, capsys):
    o = _frames()["orders"]
    o["order_date"] = "2026-11-15"
    c = _frames()["customers"]
    c["acquired_at"] = "2022-01-01"
    data = tiny.write(tmp_path / "d", orders=o, customers=c)
    rc, text = _validate(tmp_path, capsys, data)
    assert rc == 1 and "no orders row is dated on or before as_of" in text


@pytest.mark.parametrize("extra_customers", [1, 4])
def test_customers_without_orders_are_counted(tmp_path, extra_customers):
    c = _frames()["customers"]
    extra = c.iloc[[0] * extra_customers].copy()
    extra["customer_id"] = [f"N{i}" for i in range(extra_customers)]
    data = tiny.write(tmp_path / "d", customers=pd.concat([c, extra], ignore_index=True))
    with _load(tmp_path, data) as ds:
        prof = ds.report.profile["customers"]
        assert prof["without_orders"] == extra_customers
        assert prof["without_orders_share"] == pytest.approx(
            extra_customers / (5 + extra_customers)
        )
        p = [x for x in ds.report.problems if x.check == "no_orders"]
        assert p and p[0].count == extra_customers
        assert p[0].severity == (
            "warning" if extra_customers / (5 + extra_customers) >= 0.2 else "info"
        )
