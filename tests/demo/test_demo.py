"""fupan.demo: the demo data generator and its planted truth."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fupan import demo
from fupan.io.schema import TABLES

N = 4000
SEED = 42
AS_OF = pd.Timestamp("2026-10-31")
SLA = {"first_response_cap_days": 3.5, "tiers": ["platinum", "gold"]}


def _gen(root: Path, name: str, **kw) -> tuple[Path, dict]:
    out = root / name
    truth = demo.generate(out, **kw)
    return out, truth


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("demo")
    base = {"customers": N, "seed": SEED}
    return {
        "csv": _gen(root, "csv", **base),
        "again": _gen(root, "again", **base),
        "chunked": _gen(root, "chunked", chunk_customers=700, **base),
        "parquet": _gen(root, "parquet", fmt="parquet", chunk_customers=1500, **base),
        "other_seed": _gen(root, "other_seed", customers=N, seed=SEED + 1),
        "sla": _gen(root, "sla", interventions=SLA, **base),
        "touch": _gen(root, "touch", interventions={"touch_after_first_repeat": True}, **base),
        "region": _gen(root, "region", interventions={"region": "华东"}, **base),
        "contractual": _gen(root, "contractual", business_model="contractual", **base),
    }


def _read_csv(folder: Path, table: str) -> pd.DataFrame:
    t = TABLES[table]
    dates = [c.name for c in t.columns if c.dtype in ("date", "datetime")]
    df = pd.read_csv(
        folder / f"{table}.csv", dtype={c.name: "string" for c in t.columns if c.dtype == "str"}
    )
    for c in dates:
        df[c] = pd.to_datetime(df[c])
    return df


def _arrow_schema(table: str, extra: list[str]) -> pa.Schema:
    types = demo.ARROW_TYPES
    fields = [pa.field(c.name, types[c.dtype]) for c in TABLES[table].columns]
    return pa.schema(fields + [pa.field(x, pa.float64()) for x in extra])


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


PATTERNS = {
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "datetime": re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"),
    "int": re.compile(r"^-?\d+$"),
    "float": re.compile(r"^-?\d+(\.\d+)?$"),
    "bool": re.compile(r"^(true|false)$"),
}


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("table", list(TABLES))
def test_csv_columns_and_types_match_the_contract(runs, table):
    folder, _ = runs["csv"]
    t = TABLES[table]
    raw = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)
    expected = t.column_names
    extra = [c for c in raw.columns if c not in expected]
    assert list(raw.columns[: len(expected)]) == expected
    if table == "surveys":
        assert extra == ["dim_need_fit", "dim_resolution", "dim_intimacy"]
    else:
        assert extra == []
    assert len(raw) > 0
    for c in t.columns:
        col = raw[c.name]
        empty = col == ""
        if not c.nullable:
            assert not empty.any(), f"{table}.{c.name} has empty values"
        pat = PATTERNS.get(c.dtype)
        if pat is not None:
            bad = col[~empty & ~col.str.match(pat)]
            assert bad.empty, f"{table}.{c.name}: {bad.head().tolist()}"
        if c.allowed:
            assert set(col[~empty]) <= set(c.allowed)
        if c.min is not None or c.max is not None:
            v = pd.to_numeric(col[~empty])
            assert c.min is None or v.min() >= c.min
            assert c.max is None or v.max() <= c.max
    for x in extra:
        v = pd.to_numeric(raw[x])
        assert v.between(1, 5).all()


def test_parquet_schema_matches_the_contract(runs):
    folder, _ = runs["parquet"]
    for table in TABLES:
        extra = ["dim_need_fit", "dim_resolution", "dim_intimacy"] if table == "surveys" else []
        schema = pq.read_schema(folder / f"{table}.parquet").remove_metadata()
        expected = _arrow_schema(table, extra)
        assert schema.names == expected.names, table
        for got, want in zip(schema, expected, strict=True):
            if pa.types.is_timestamp(want.type):  # Parquet has no second unit: stored as ms
                assert pa.types.is_timestamp(got.type) and got.type.tz is None, (table, got)
            else:
                assert got.type == want.type, (table, got)


def test_csv_is_plain_utf8_with_cjk(runs):
    folder, _ = runs["csv"]
    head = (folder / "customers.csv").read_bytes().split(b"\n")[0]
    assert (
        head
        == b"customer_id,acquired_at,customer_name,industry,region,tier,account_manager,acquisition_channel"
    )
    customers = _read_csv(folder, "customers")
    assert set(customers["region"]) == {"华东", "华南", "华北", "西南", "华中"}
    assert customers["customer_name"].str.endswith("有限公司").all()


def test_keys_unique_and_foreign_keys_resolve(runs):
    folder, _ = runs["csv"]
    customers = _read_csv(folder, "customers")
    ids = set(customers["customer_id"])
    assert customers["customer_id"].is_unique
    assert customers["customer_id"].iloc[0] == "C000001"
    for table, t in TABLES.items():
        df = _read_csv(folder, table)
        if t.key:
            assert df[t.key].is_unique, table
        if t.references_customers:
            assert set(df["customer_id"]) <= ids, table
    contracts = _read_csv(folder, "contracts")
    ren = contracts["renewal_of"].dropna()
    assert set(ren) <= set(contracts["contract_id"])
    assert ren.is_unique
    prev = contracts.set_index("contract_id").loc[ren.values]
    cur = contracts.dropna(subset=["renewal_of"])
    assert (prev["customer_id"].values == cur["customer_id"].values).all()
    assert (prev["end_date"].values + np.timedelta64(1, "D") == cur["start_date"].values).all()
    orders = _read_csv(folder, "orders")
    assert orders["order_id"].iloc[0] == "O00000001"
    for table, prefix in (("contracts", "K"), ("touches", "T"), ("tickets", "S"), ("surveys", "V")):
        key = TABLES[table].key
        assert _read_csv(folder, table)[key].str.startswith(prefix).all()


def test_no_date_after_as_of_except_running_contract_ends(runs):
    for name in ("csv", "contractual"):
        folder, _ = runs[name]
        for table, t in TABLES.items():
            df = _read_csv(folder, table)
            for c in t.columns:
                if c.dtype == "date" and c.name != "end_date":
                    assert df[c.name].max() <= AS_OF, (name, table, c.name)
                if c.dtype == "datetime":
                    assert df[c.name].max() < AS_OF + pd.Timedelta(days=1), (name, table, c.name)
        contracts = _read_csv(folder, "contracts")
        assert (contracts["end_date"] > AS_OF).any()
        history_start = pd.Timestamp(runs[name][1]["history_start"])
        assert _read_csv(folder, "customers")["acquired_at"].min() >= history_start
        assert history_start <= AS_OF - pd.DateOffset(years=3)


def test_dynamics_look_like_a_real_book(runs):
    folder, truth = runs["csv"]
    customers = _read_csv(folder, "customers")
    orders = _read_csv(folder, "orders")
    # acquisitions grow year on year
    per_year = customers.groupby(customers["acquired_at"].dt.to_period("Y")).size()
    yearly = customers.set_index("acquired_at").sort_index()
    first, last = yearly.loc[:"2023-10-30"], yearly.loc["2025-10-31":]
    assert len(last) > 1.4 * len(first), per_year
    # every customer's first order is its acquisition deal
    first_order = orders.groupby("customer_id")["order_date"].min()
    acq = customers.set_index("customer_id")["acquired_at"]
    assert (first_order.reindex(acq.index) == acq).all()
    # about 1% refunds
    assert 0.005 < (orders["amount"] < 0).mean() < 0.02
    assert set(orders["category"]) == {"hardware", "software", "service", "consumables"}
    # tiers from the initial spend, core tiers a minority
    shares = customers["tier"].value_counts(normalize=True)
    assert shares["platinum"] < shares["gold"] < shares["attention"] < shares["silver"]
    assert 0.1 < shares["platinum"] + shares["gold"] < 0.3
    n_am = customers["account_manager"].nunique()
    assert abs(n_am - N / 60) < 10
    assert customers["account_manager"].str.match(r"^AM-\d{3}$").all()
    # weekly activity on Mondays, touches by tier
    activity = _read_csv(folder, "activity")
    assert (activity["period_start"].dt.day_of_week == 0).all()
    assert not activity.duplicated(["customer_id", "period_start"]).any()
    assert (activity["logins"] >= 0).all()
    touches = _read_csv(folder, "touches").merge(customers[["customer_id", "tier"]])
    per_cust = touches.groupby("tier").size() / customers.groupby("tier").size()
    assert per_cust["platinum"] > per_cust["gold"] > per_cust["silver"] > per_cust["attention"]
    # surveys about twice a year, NPS and dimensions on their scales
    surveys = _read_csv(folder, "surveys")
    assert surveys["nps"].between(0, 10).all()
    assert surveys["csat"].dropna().between(1, 5).all()
    # churn reasons and competitors from the vocabulary
    churn = _read_csv(folder, "churn_events")
    assert set(churn["reason"].dropna()) <= set(demo.CHURN_REASONS)
    assert set(churn["competitor"].dropna()) <= set(demo.COMPETITORS)
    assert churn["competitor"].isna().any()
    assert (churn["lost_value"] >= 0).mean() > 0.95
    # lost_value is the trailing-12-month spend at churn
    row = churn.iloc[len(churn) // 2]
    o = orders[(orders["customer_id"] == row["customer_id"])]
    win = o[
        (o["order_date"] >= row["churned_at"] - pd.Timedelta(days=365))
        & (o["order_date"] < row["churned_at"])
    ]
    assert row["lost_value"] == pytest.approx(win["amount"].sum(), abs=0.02)
    # no activity after churn
    last_act = activity.groupby("customer_id")["period_start"].max()
    churned_at = churn.set_index("customer_id")["churned_at"]
    assert (last_act.reindex(churned_at.index) < churned_at).all()
    # the price-sensitive segment churns for price
    ps = set(truth["price_sensitive_customer_ids"])
    price = churn[churn["customer_id"].isin(ps)]["reason"].value_counts(normalize=True)
    assert price.index[0] == "price"


# ----------------------------------------------------------------------------- seeds


def test_same_seed_same_bytes(runs):
    assert _hashes(runs["csv"][0]) == _hashes(runs["again"][0])


def test_chunked_output_equals_unchunked(runs):
    assert _hashes(runs["csv"][0]) == _hashes(runs["chunked"][0])


def test_different_seed_different_data(runs):
    a, b = _hashes(runs["csv"][0]), _hashes(runs["other_seed"][0])
    for name in ("customers.csv", "orders.csv", "tickets.csv", "truth.json"):
        assert a[name] != b[name]


def test_parquet_and_csv_hold_the_same_data(runs):
    csv_dir, parquet_dir = runs["csv"][0], runs["parquet"][0]
    for table in TABLES:
        extra = ["dim_need_fit", "dim_resolution", "dim_intimacy"] if table == "surveys" else []
        schema = _arrow_schema(table, extra)
        from_csv = pacsv.read_csv(
            csv_dir / f"{table}.csv",
            convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True),
        )
        from_parquet = pq.read_table(parquet_dir / f"{table}.parquet").cast(schema)
        assert from_csv.num_rows == from_parquet.num_rows, table
        assert from_csv.equals(from_parquet), table
    t_csv, t_pq = runs["csv"][1], runs["parquet"][1]
    for key in ("effects", "calibration", "misclassified_customer_ids", "rows"):
        assert t_csv[key] == t_pq[key]


# ----------------------------------------------------------------------------- truth


def test_truth_file_schema(runs):
    folder, truth = runs["csv"]
    assert json.loads((folder / "truth.json").read_text(encoding="utf-8")) == truth
    for key in ("seed", "as_of", "customers", "business_model", "effects", "effect_ranking",
                "null_features", "misclassified_customer_ids", "price_sensitive_share",
                "calibration", "interventions"):  # fmt: skip
        assert key in truth
    assert truth["seed"] == SEED and truth["customers"] == N and truth["as_of"] == "2026-10-31"
    assert truth["business_model"] == "non_contractual"
    assert set(truth["null_features"]) == {"region", "acquisition_channel", "dim_intimacy"}
    for e in truth["effects"].values():
        assert set(e) >= {"log_hazard_ratio", "unit", "std", "standardized", "description"}
        assert e["standardized"] == pytest.approx(e["log_hazard_ratio"] * e["std"], abs=1e-5)
    assert truth["effect_ranking"][:3] == [
        "median_first_response_days",
        "no_touch_after_first_repeat",
        "spend_change_qoq",
    ]
    assert set(truth["effect_ranking"][3:]) == {
        "weeks_without_login",
        "detractor",
        "price_sensitive",
    }
    sizes = [abs(truth["effects"][k]["standardized"]) for k in truth["effect_ranking"]]
    assert all(a - b > 0.05 for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    assert 0.3 < truth["price_sensitive_share"] < 0.4
    assert truth["calibration"]["sla_days"] == 3.5
    assert truth["interventions"] == {}


def test_calibration_near_the_review_figures(runs):
    folder, truth = runs["csv"]
    cal = truth["calibration"]
    assert 0.15 <= cal["core_annual_churn"] <= 0.21
    assert 0.15 <= cal["overall_annual_churn"] <= 0.25
    assert 0.55 <= cal["top100_renewal_rate"] <= 0.75
    assert 6.0 <= cal["busy_first_response_days"] <= 7.6
    assert 0.2 <= cal["price_sensitive_annual_churn"] <= 0.32
    assert cal["price_sensitive_annual_churn"] > cal["not_price_sensitive_annual_churn"]
    assert 0.6 <= cal["churn_recorded_share"] <= 0.8
    # busy-customer first response, recomputed from the tables
    orders, tickets = _read_csv(folder, "orders"), _read_csv(folder, "tickets")
    ys = AS_OF - pd.Timedelta(days=365)
    n12 = orders[orders["order_date"] > ys].groupby("customer_id").size()
    busy = n12[n12 >= n12.quantile(0.8)].index
    t = tickets[(tickets["opened_at"] > ys) & tickets["first_response_at"].notna()]
    t = t[t["customer_id"].isin(busy)]
    days = (t["first_response_at"] - t["opened_at"]).dt.total_seconds() / 86400
    assert days.mean() == pytest.approx(cal["busy_first_response_days"], rel=1e-6)
    # top-100 renewal, recomputed from the contracts
    c = _read_csv(folder, "contracts")
    due = c[(c["end_date"] >= ys) & (c["end_date"] < AS_OF)]
    top = due.sort_values(["annual_value", "customer_id"], ascending=[False, True]).head(100)
    assert top["contract_id"].isin(c["renewal_of"]).mean() == pytest.approx(
        cal["top100_renewal_rate"]
    )


def test_contractual_mode(runs):
    folder, truth = runs["contractual"]
    cal = truth["calibration"]
    assert truth["business_model"] == "contractual"
    assert 0.12 <= cal["core_annual_churn"] <= 0.24
    assert 0.12 <= cal["overall_annual_churn"] <= 0.25
    # churn happens at a contract end that was not renewed; every churner is recorded
    churn = _read_csv(folder, "churn_events")
    contracts = _read_csv(folder, "contracts")
    last = contracts.sort_values("end_date").groupby("customer_id").tail(1).set_index("customer_id")
    assert (last.loc[churn["customer_id"], "end_date"].values == churn["churned_at"].values).all()
    assert len(churn) == truth["churned_customers"]


def test_misclassification_rule_finds_the_planted_customers(runs):
    folder, truth = runs["csv"]
    customers = _read_csv(folder, "customers").set_index("customer_id")
    orders = _read_csv(folder, "orders").merge(customers["acquired_at"].reset_index())
    first12 = orders[orders["order_date"] < orders["acquired_at"] + pd.Timedelta(days=365)]
    trailing = orders[orders["order_date"] > AS_OF - pd.Timedelta(days=365)]
    f12 = first12.groupby("customer_id")["amount"].sum().reindex(customers.index, fill_value=0.0)
    t12 = trailing.groupby("customer_id")["amount"].sum().reindex(customers.index, fill_value=0.0)
    rank = {"platinum": 0, "gold": 1, "silver": 2, "attention": 3}
    spend_tier = np.select([t12 >= 200_000, t12 >= 50_000, t12 >= 10_000], [0, 1, 2], 3)
    assigned = customers["tier"].map(rank).to_numpy()
    found = set(customers.index[(spend_tier <= assigned - 1) & (t12 >= 4 * f12)])
    planted = set(truth["misclassified_customer_ids"])
    assert 0.02 * N <= len(planted) <= 0.06 * N
    assert set(truth["planted_growth_customer_ids"]) >= planted
    hits = len(found & planted)
    assert hits / len(planted) >= 0.9, (hits, len(planted), len(found))
    assert hits / len(found) >= 0.8, (hits, len(planted), len(found))
    # the planted customers still sit in a low tier
    assert customers.loc[sorted(planted), "tier"].isin(["silver", "attention"]).all()


# ----------------------------------------------------------------------------- counterfactuals


def test_sla_intervention_lowers_core_churn_with_common_random_numbers(runs):
    base_dir, base = runs["csv"]
    sla_dir, sla = runs["sla"]
    assert sla["interventions"] == SLA
    assert sla["calibration"]["core_annual_churn"] < base["calibration"]["core_annual_churn"] - 0.03
    assert (
        sla["calibration"]["busy_first_response_days"]
        < base["calibration"]["busy_first_response_days"]
    )
    # identical draws for everything the policy does not change
    assert _hashes(base_dir)["customers.csv"] == _hashes(sla_dir)["customers.csv"]
    tb, ts = _read_csv(base_dir, "tickets"), _read_csv(sla_dir, "tickets")
    merged = tb.merge(ts, on=["customer_id", "opened_at"], suffixes=("_b", "_s"))
    assert len(merged) > 0.8 * min(len(tb), len(ts))
    core = _read_csv(base_dir, "customers").query("tier in ['platinum', 'gold']")["customer_id"]
    m = merged[merged["customer_id"].isin(core) & merged["first_response_at_s"].notna()]
    cap = (m["first_response_at_s"] - m["opened_at"]).dt.total_seconds() / 86400
    assert cap.max() <= 3.5 + 1e-6
    other = merged[~merged["customer_id"].isin(core)]
    assert other["first_response_at_b"].equals(other["first_response_at_s"])


def test_touch_intervention_lowers_churn(runs):
    base, touch = runs["csv"][1], runs["touch"][1]
    assert (
        touch["calibration"]["overall_annual_churn"]
        < base["calibration"]["overall_annual_churn"] - 0.03
    )
    assert touch["effects"]["no_touch_after_first_repeat"]["std"] == 0.0


def test_null_intervention_changes_nothing_about_churn(runs):
    base_dir, base = runs["csv"]
    reg_dir, reg = runs["region"]
    hb, hr = _hashes(base_dir), _hashes(reg_dir)
    for name in ("orders.csv", "churn_events.csv", "tickets.csv", "touches.csv", "activity.csv"):
        assert hb[name] == hr[name], name
    assert reg["calibration"] == base["calibration"]
    assert set(_read_csv(reg_dir, "customers")["region"]) == {"华东"}


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown intervention"):
        demo.generate(tmp_path, customers=10, interventions={"discount": 0.1})
    with pytest.raises(ValueError, match="business_model"):
        demo.generate(tmp_path, customers=10, business_model="subscription")
    with pytest.raises(ValueError, match="years"):
        demo.generate(tmp_path, customers=10, years=2)


def test_small_and_odd_sizes(tmp_path):
    truth = demo.generate(
        tmp_path / "a", customers=137, seed=3, years=3, as_of="2025-02-28", chunk_customers=50
    )
    assert truth["rows"]["customers"] == 137
    demo.generate(tmp_path / "b", customers=137, seed=3, years=3, as_of="2025-02-28")
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    orders = pd.read_csv(tmp_path / "a" / "orders.csv", parse_dates=["order_date"])
    assert orders["order_date"].max() <= pd.Timestamp("2025-02-28")
    # parquet is byte-identical run to run as well
    kw = {"customers": 300, "seed": 9, "fmt": "parquet", "business_model": "contractual"}
    demo.generate(tmp_path / "p1", **kw)
    demo.generate(tmp_path / "p2", chunk_customers=100, **kw)
    demo.generate(tmp_path / "p3", **kw)
    assert _hashes(tmp_path / "p1") == _hashes(tmp_path / "p3")
    for table in TABLES:
        t1 = pq.read_table(tmp_path / "p1" / f"{table}.parquet")
        assert t1.equals(pq.read_table(tmp_path / "p2" / f"{table}.parquet")), table
