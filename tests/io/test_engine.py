"""engine.to_pandas gives exactly what Ibis' own to_pandas gives, faster where nulls are."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import engine
from fupan.measures import outcomes
from hypothesis import given, settings
from hypothesis import strategies as st


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for col in a.columns:  # object columns: the same Python types, not only equal values
        if a[col].dtype == object:
            assert [type(v) for v in a[col]] == [type(v) for v in b[col]], col


def pa_col(values, with_nulls):
    s = pd.Series(list(values), dtype=object)
    if with_nulls:
        s.iloc[[1, 4]] = None
    return s


@pytest.mark.parametrize("with_nulls", [False, True])
def test_every_column_type_converts_as_ibis_does(with_nulls):
    n = 7
    rng = np.random.default_rng(0)
    cols = {
        "i": pa_col(rng.integers(0, 9, n), with_nulls),
        "f": pa_col(rng.normal(size=n), with_nulls),
        "s": pa_col([f"c{k}" for k in range(n)], with_nulls),
        "d": pa_col(
            [dt.date(2026, 1, 1) + dt.timedelta(days=int(k)) for k in range(n)], with_nulls
        ),
        "ts": pa_col(
            [dt.datetime(2026, 1, 1, 8) + dt.timedelta(hours=int(k)) for k in range(n)], with_nulls
        ),
        "b": pa_col([k % 2 == 0 for k in range(n)], with_nulls),
    }
    con = ibis.duckdb.connect()
    t = con.create_table("t", pd.DataFrame(cols))
    exprs = [
        t,
        t.mutate(i2=t.i * 2, d2=t.d + ibis.interval(days=1), s2=t.s.upper()),
        # a hash aggregate returns groups in any order: each run may differ
        t.group_by("b").aggregate(n=t.count(), last=t.d.max(), f=t.f.mean()).order_by("b"),
        t.select(none=ibis.null().cast("date"), nd=ibis.null().cast("string"), k=t.i),
    ]
    for e in exprs:
        _same(engine.to_pandas(e), e.to_pandas())


def test_churn_status_query_converts_as_ibis_does(tmp_path):
    data = tiny.write(tmp_path / "d")
    p = fparams.load(tiny.params_file(tmp_path, data))
    with fdata.loaded(p) as ds:
        cust = ds["customers"]
        expr = cust.left_join(ds["churn_events"], "customer_id").order_by("customer_id")
        _same(engine.to_pandas(expr), expr.to_pandas())
        assert len(outcomes.churn_status(ds)) > 0


@pytest.mark.parametrize("dtype", ["str", object])
def test_isin_answers_as_pandas_does(dtype):
    ids = pd.Series(["C1", "C2", None, "C10", "C2", "é客户"], dtype=dtype)
    cases = [
        {"C2", "é客户"},
        ["C10", None],
        pd.Series(["C1", "C9"], dtype="str"),
        pd.Index(["C2"], dtype=object),
        np.array(["C1", "C10"], dtype=object),
        [],
        [1, 2, "C1"],  # not all text: pandas decides
    ]
    for members in cases:
        want = pd.Index(ids).isin(list(members) if isinstance(members, set) else members)
        np.testing.assert_array_equal(engine.isin(ids, members), np.asarray(want, dtype=bool))
    import pyarrow as pa

    got = engine.isin(ids, pa.array(["C1", "C2"]))
    np.testing.assert_array_equal(got, [True, True, False, False, True, False])
    np.testing.assert_array_equal(engine.isin(pd.Series([1, 2, 3]), {2, 5}), [False, True, False])


@pytest.mark.parametrize(
    "values, of",
    [
        (pd.Index(["b", "a", None, "中", "c"]), ["a", "中", "x"]),
        (pd.Index(["b", "a", None, "c"]), pd.Index([None, "c"])),
        (pd.Index(["b", "a"], dtype=object), np.array(["a"], dtype=object)),
        (pd.Index([3, 1, 2]), [2, 5]),
        (pd.Index(["1", "2"], dtype=object), [1, "2"]),
        (pd.Index([], dtype=str), ["a"]),
    ],
)
def test_isin_on_indexes_equals_pandas(values, of):
    got = engine.isin(values, of)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, values.isin(of))


@pytest.mark.parametrize("dtype", ["str", object])
def test_isin_with_nulls_and_arrow_members_equals_pandas(dtype):
    rng = np.random.default_rng(7)
    pool = np.array([f"C{i}" for i in range(300)] + ["客户", ""], dtype=object)
    values = pd.Series(rng.choice(pool, 500), dtype=dtype)
    values[::37] = None
    for allowed in (
        pd.Series(rng.choice(pool, 80), dtype=dtype),
        pd.Series([None, "C1"], dtype=dtype),
        pd.Series([], dtype=dtype),
    ):
        want = values.isin(allowed).to_numpy()
        assert engine.isin(values, allowed).tolist() == want.tolist()
        assert engine.isin(values, pa.array(allowed, from_pandas=True)).tolist() == want.tolist()
    ints = pd.Series([1, 2, 3])
    assert engine.isin(ints, pd.Series([3, 1])).tolist() == [True, False, True]


_ID = st.one_of(st.none(), st.sampled_from(["C1", "C2", "C3", "é4", ""]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_ID, max_size=30),
    st.lists(st.one_of(_ID, st.just(float("nan")), st.integers(0, 3)), max_size=10),
    st.sampled_from(["list", "set", "series", "index", "object", "array"]),
    st.sampled_from(["str", "object"]),
)
def test_isin_equals_pandas(values, members, kind, dtype):
    s = pd.Series(values, dtype=dtype)
    if kind in ("series", "index"):
        members = [m for m in members if not isinstance(m, int)]  # a str column of them
        members = (pd.Series if kind == "series" else pd.Index)(members, dtype="str")
    elif kind == "object":
        members = pd.Series(members, dtype=object)
    elif kind == "array":
        members = np.array(members, dtype=object)
    elif kind == "set":
        members = set(members)
    got = engine.isin(s, members)
    assert got.dtype == bool and got.tolist() == s.isin(members).tolist()


# ---- engine_memory_gb: DuckDB's memory cap in a run's notebooks ------------------------


def _big_aggregate(con) -> ibis.expr.types.Table:
    """Three million rows grouped into two million: some 100 MB of hash table in DuckDB."""
    t = con.sql("SELECT (range * 7919) % 2000003 AS k, range::DOUBLE AS v FROM range(3000000)")
    return t.group_by("k").agg(total=t.v.sum(), n=t.count()).order_by("k")


def test_staged_dataset_caps_duckdb_and_spills_inside_the_run(tmp_path):
    params = fparams.load(tiny.params_file(tmp_path, tiny.write(tmp_path / "data")))
    fdata.load(params, work_dir=tmp_path / "work").close()
    capped = params.model_copy(update={"engine_memory_gb": 0.25})
    ds = fdata.connect(capped, tmp_path)
    limit, spill = ds.con.raw_sql(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchone()
    assert limit.endswith("MiB") and 230 <= float(limit.split()[0]) <= 250  # 0.25 GB
    # one folder per process: two kernels must not share DuckDB's fixed temp-file names
    assert Path(spill).parent == tmp_path / "work" and Path(spill).name.startswith("spill-")
    ds.close()
    default = fdata.connect(params.model_copy(update={"engine_memory_gb": None}), tmp_path)
    limit = default.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert float(limit.split()[0]) > 250 or limit.endswith("GiB")
    default.close()


def test_a_query_over_the_cap_spills_to_the_same_result(tmp_path):
    free = ibis.duckdb.connect()
    expected = engine.to_pandas(_big_aggregate(free))
    capped = ibis.duckdb.connect(str(tmp_path / "x.duckdb"))
    capped.raw_sql("SET memory_limit = '64MB'")
    capped.raw_sql(f"SET temp_directory = '{tmp_path / 'spill'}'")
    got = engine.to_pandas(_big_aggregate(capped))
    _same(got, expected)


def test_a_query_that_cannot_fit_the_cap_runs_without_it(tmp_path):
    capped = ibis.duckdb.connect(str(tmp_path / "x.duckdb"))
    capped.raw_sql("SET memory_limit = '20MB'")
    capped.raw_sql(f"SET temp_directory = '{tmp_path / 'spill'}'")
    with pytest.warns(RuntimeWarning, match="engine_memory_gb"):
        got = engine.to_pandas(_big_aggregate(capped))
    assert len(got) == 2000003 and got.n.sum() == 3000000
    assert got.total.sum() == pytest.approx(3000000 * 2999999 / 2, rel=1e-12)
