"""The minimal input is a transaction log: orders with customer, date and amount (issue 17).

Everything else is derived (customers, acquired_at, order_id, the spend tier) or optional,
and ``Dataset.supplied`` says which columns the business really supplied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.schema import TABLES
from fupan.io.tiers import resolve_floors
from fupan.io.validation import DataValidationError
from fupan.measures import segments
from fupan.run import cli

ROOT = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, data: Path, extra: str = "", **kw) -> fparams.Params:
    return fparams.load(tiny.params_file(tmp_path, data, extra, **kw))


def _orders_only(folder: Path, keep_order_id: bool = False) -> Path:
    o = tiny.frames()["orders"]
    cols = ["customer_id", "order_date", "amount"] + (["order_id"] if keep_order_id else [])
    folder.mkdir(parents=True, exist_ok=True)
    o[cols].to_csv(folder / "orders.csv", index=False)
    return folder


def test_orders_alone_load_with_customers_derived(tmp_path):
    data = _orders_only(tmp_path / "d")
    with fdata.loaded(_params(tmp_path, data), work_dir=tmp_path / "w") as ds:
        assert ds.present == ["customers", "orders"]
        c = ds["customers"].to_pandas().set_index("customer_id")
        o = tiny.frames()["orders"]
        first = pd.to_datetime(o.groupby("customer_id").order_date.min())
        assert sorted(c.index) == sorted(first.index)
        assert (pd.to_datetime(c.acquired_at) == first.reindex(c.index)).all()
        # every contract column is there, typed, even though nothing supplied it
        assert set(TABLES["customers"].column_names) <= set(c.columns) | {"customer_id"}
        assert c.industry.isna().all() and c.region.isna().all()
        for col in ("tier", "industry", "region", "account_manager", "acquired_at"):
            assert not ds.supplied("customers", col)
        assert ds.supplied("orders", "amount") and not ds.supplied("orders", "order_id")
        assert ds.report.derived["customers"] == "orders"
        assert ds.report.derived["orders.order_id"] == "source_row"
        # generated order ids: unique and the CSV line of the order
        ids = ds["orders"].order_id.to_pandas()
        assert ids.is_unique and sorted(ids.astype(int)) == list(range(2, 2 + len(o)))
    # supplied() survives open_staged (the report is saved in the work folder)
    again = fdata.open_staged(_params(tmp_path, data), tmp_path / "w")
    try:
        assert again.supplied("orders", "amount") and not again.supplied("customers", "tier")
    finally:
        again.close()


def test_customers_without_acquired_at_take_the_first_order(tmp_path):
    c = tiny.frames()["customers"].drop(columns=["acquired_at", "tier"])
    data = tiny.write(tmp_path / "d", customers=c)
    with fdata.loaded(_params(tmp_path, data)) as ds:
        got = ds["customers"].to_pandas().set_index("customer_id").acquired_at
        o = tiny.frames()["orders"]
        exp = pd.to_datetime(o.groupby("customer_id").order_date.min())
        assert (pd.to_datetime(got) == exp.reindex(got.index)).all()
        assert ds.supplied("customers", "industry") and not ds.supplied("customers", "acquired_at")


def _demo(tmp_path: Path, n: int = 400) -> Path:
    from fupan import demo

    out = tmp_path / "demo"
    demo.generate(out, customers=n, seed=3)
    return out


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return _demo(tmp_path_factory.mktemp("demo"))


def _demo_params(folder: Path, data: Path, floors: bool) -> fparams.Params:
    text = (ROOT / "params" / "annual_review.yaml").read_text(encoding="utf-8")
    if not floors:
        text = text.replace("  spend_floors: [200000, 50000, 10000, 0]\n", "")
    (folder / "p.yaml").write_text(text, encoding="utf-8")
    for f in ("benchmarks.yaml", "scenarios.yaml"):
        shutil.copy(ROOT / "params" / f, folder / f)
    return fparams.load(folder / "p.yaml", **{"data.source": str(data)})


@pytest.mark.parametrize("floors", [True, False])
def test_filled_tier_equals_the_segments_spend_tier(tmp_path, demo_dir, floors):
    data = tmp_path / "d"
    shutil.copytree(demo_dir, data)
    c = pd.read_csv(data / "customers.csv", dtype=str)
    c.drop(columns=["tier"]).to_csv(data / "customers.csv", index=False)
    params = _demo_params(tmp_path, data, floors)
    with fdata.loaded(params) as ds:
        assert not ds.supplied("customers", "tier")
        feats = segments.customer_features_as_of(ds, engagement=False)
        exp = segments.spend_tier(
            feats.spend_12m,
            feats.recency_days,
            params.tiers.order,
            params.tiers.spend_floors,
            params.tiers.dormant_days,
        )
        got = feats.tier
        assert (got.to_numpy() == exp.to_numpy()).all()
        assert got.nunique() > 1
        src = ds.report.tier_floors["source"]
        assert src == ("params" if floors else "data")


def test_floors_from_data_follow_the_published_shares(tmp_path, demo_dir):
    data = tmp_path / "d"
    shutil.copytree(demo_dir, data)
    c = pd.read_csv(data / "customers.csv", dtype=str)
    c.drop(columns=["tier"]).to_csv(data / "customers.csv", index=False)
    params = _demo_params(tmp_path, data, floors=False)
    with fdata.loaded(params, work_dir=tmp_path / "w") as ds:
        tf = ds.report.tier_floors
        assert tf["source"] == "data" and tf["shares"] == [0.05, 0.20, 0.50]
        # applied in place
        assert params.tiers.spend_floors == tf["floors"]
        feats = segments.customer_features_as_of(ds, engagement=False)
        pos = feats.spend_12m[feats.spend_12m > 0].to_numpy()
        for floor, share in zip(tf["floors"][:-1], tf["shares"], strict=True):
            exact = np.quantile(pos, 1 - share)
            assert floor == pytest.approx(exact, rel=0.05)  # two significant digits
            assert (pos >= floor).mean() == pytest.approx(share, abs=0.03)
    fresh = _demo_params(tmp_path, data, floors=False)
    again = fdata.open_staged(fresh, tmp_path / "w")
    try:
        assert fresh.tiers.spend_floors == tf["floors"]
    finally:
        again.close()


@pytest.mark.parametrize(
    ("k", "shares"),
    [(1, []), (2, [0.2]), (3, [0.05, 0.30]), (4, [0.05, 0.20, 0.50])],
)
def test_resolve_floors_shares(k, shares):
    rng = np.random.default_rng(0)
    spend = np.concatenate([rng.lognormal(6, 1, 5000), np.zeros(300), -np.ones(10)])
    floors, got = resolve_floors(spend, k)
    assert got == shares and len(floors) == k and floors[-1] == 0.0
    pos = spend[spend > 0]
    for f, s in zip(floors[:-1], shares, strict=True):
        assert (pos >= f).mean() == pytest.approx(s, abs=0.02)
    assert all(a >= b for a, b in zip(floors, floors[1:], strict=False))


def test_explicit_floors_and_supplied_tiers_are_untouched(tmp_path):
    data = tiny.write(tmp_path / "d")
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert ds.supplied("customers", "tier")
        got = ds["customers"].to_pandas().set_index("customer_id").tier
        exp = tiny.frames()["customers"].set_index("customer_id").tier
        assert got.to_dict() == exp.to_dict()
        assert ds.report.tier_floors["source"] == "default"


def test_contracts_without_orders_load_for_a_contractual_business(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("orders", "customers"))
    p = _params(tmp_path, data, "business_model: contractual\n")
    with fdata.loaded(p) as ds:
        assert ds.has("contracts")
        c = ds["customers"].to_pandas().set_index("customer_id")
        assert sorted(c.index) == ["C1", "C2"]
        assert str(c.acquired_at["C1"])[:10] == "2024-01-01"
        assert ds.report.derived["customers"] == "orders+contracts"
        # every chapter reads revenue from orders: one invoice per contract year, by hand
        # from tiny's contracts (K2 runs two years; as_of 2026-10-31 keeps both invoices)
        assert ds.report.derived["orders"] == "contracts"
        o = ds["orders"].to_pandas().sort_values("order_id")
        assert o.order_id.tolist() == ["K1#0", "K2#0", "K2#1", "K3#0"]
        assert [str(d)[:10] for d in o.order_date] == [
            "2024-01-01",
            "2025-01-01",
            "2026-01-01",
            "2024-06-01",
        ]
        assert o.amount.tolist() == [100000.0, 110000.0, 110000.0, 40000.0]


def test_contracts_only_is_refused_for_a_non_contractual_business(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("orders",))
    with pytest.raises(DataValidationError) as exc:
        fdata.load(_params(tmp_path, data))
    assert "business_model: contractual" in str(exc.value)


def test_neither_orders_nor_contracts_names_the_minimum(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("orders", "contracts"))
    with pytest.raises(DataValidationError) as exc:
        fdata.load(_params(tmp_path, data))
    assert "customer_id, order_date and amount" in str(exc.value)


def test_params_copied_alone_fall_back_to_packaged_files(tmp_path):
    text = (ROOT / "params" / "annual_review.yaml").read_text(encoding="utf-8")
    text += "simulation:\n  scenarios_file: scenarios.yaml\n"
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    with pytest.warns(UserWarning, match="packaged default"):
        p = fparams.load(tmp_path / "p.yaml")
    assert p.benchmarks.kpi_targets  # read from the packaged benchmarks.yaml
    from fupan.core import scenarios

    path, fallback = scenarios.scenarios_path(p)
    assert fallback and path.name == "scenarios.yaml"
    assert fparams.packaged_default("benchmarks.yaml").exists()
    assert fparams.packaged_default("scenarios.yaml").exists()


def test_validate_catches_scenario_tiers_the_params_do_not_have(tmp_path, capsys):
    data = tiny.write(tmp_path / "d")
    c = tiny.frames()["customers"].assign(tier="member")
    tiny.write(tmp_path / "d", customers=c)
    path = tiny.params_file(tmp_path, data, notebooks=("00_data_check", "04_strategy_simulation"))
    paramfile.update(path, {"tiers": {"order": ["member"], "core": ["member"]}})
    # chapter 4 reports the scenario as not applicable and runs the rest: validate warns
    assert cli.main(["validate", "--params", str(path)]) == 0
    err = capsys.readouterr().out
    assert "sla_core" in err and "platinum" in err and "[WARNING]" in err


@pytest.mark.parametrize(("table", "column"), [("customers", "tier")])
def test_an_optional_column_empty_throughout_is_not_supplied(tmp_path, table, column):
    f = tiny.frames()[table].assign(**{column: ""})
    data = tiny.write(tmp_path / "d", **{table: f})
    with fdata.loaded(_params(tmp_path, data)) as ds:
        assert not ds.supplied(table, column)
        assert ds[table][column].notnull().all().to_pyarrow().as_py()
        assert any(p.check == "empty_column" and p.column == column for p in ds.report.problems)


def test_a_custom_named_benchmarks_file_must_exist(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "as_of: 2026-10-31\nbenchmarks_file: ours.yaml\ndata: {source: x}\n", encoding="utf-8"
    )
    with pytest.raises(fparams.ParamsError, match="ours.yaml"):
        fparams.load(tmp_path / "p.yaml")
