"""The churn status run as one compiled DuckDB statement per dataset equals Ibis' own path,
values and dtypes, and the Ibis path is taken whenever the compiled SQL cannot be trusted."""

from __future__ import annotations

import gc
import types

import ibis
import pandas as pd
import pytest
import shapes
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import engine
from fupan.measures import outcomes

TINY_DATES = ["2022-12-31", "2023-01-10", "2024-06-30", "2025-02-14", "2025-06-30", tiny.AS_OF]
SHAPES = ["orders_only", "key_columns", "contractual", "same_day", "heavy_churn", "timezones"]


def _ibis_path(ds, cut) -> pd.DataFrame:
    """The status as it was computed before the compiled statement: built and compiled by
    Ibis for this one date."""
    query = outcomes._status_query(ds, ibis.literal(pd.Timestamp(cut).date()))
    return outcomes._status_frame(engine.to_pandas(query))


def _same(ds, dates) -> None:
    assert outcomes._prepared(ds) is not None, "the compiled statement was not used"
    for cut in dates:
        got = outcomes._status(ds, pd.Timestamp(cut).date())
        want = _ibis_path(ds, cut)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got.dtypes.to_dict() == want.dtypes.to_dict()


@pytest.mark.parametrize("model", ["non_contractual", "contractual"])
def test_tiny_equals_ibis_path(tmp_path, model):
    data = tiny.write(tmp_path / "d")
    p = fparams.load(tiny.params_file(tmp_path, data), business_model=model)
    with fdata.loaded(p) as ds:
        _same(ds, TINY_DATES)


def test_tiny_without_churn_events_equals_ibis_path(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("churn_events",))
    p = fparams.load(tiny.params_file(tmp_path, data), business_model="contractual")
    with fdata.loaded(p) as ds:
        assert not ds.has("churn_events")
        _same(ds, TINY_DATES)


@pytest.mark.filterwarnings("ignore:benchmarks_file")
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_equal_ibis_path(tmp_path, shape):
    p = fparams.load(shapes.SHAPES[shape](tmp_path))
    with fdata.loaded(p) as ds:
        as_of = pd.Timestamp(p.as_of)
        dates = [as_of - pd.DateOffset(months=k) for k in (0, 1, 7, 13, 30)]
        _same(ds, dates)


def test_count_mismatch_takes_ibis_path(tmp_path, monkeypatch):
    data = tiny.write(tmp_path / "d")
    p = fparams.load(tiny.params_file(tmp_path, data))
    monkeypatch.setattr(outcomes, "_cut_uses", lambda ds: 5)  # the SQL names the cut 4 times
    calls = []
    to_pandas = engine.to_pandas
    monkeypatch.setattr(engine, "to_pandas", lambda e: calls.append(e) or to_pandas(e))
    with fdata.loaded(p) as ds:
        assert outcomes._prepared(ds) is None
        got = outcomes._status(ds, pd.Timestamp("2025-06-30").date())
        assert len(calls) == 1, "the Ibis path ran"
        monkeypatch.undo()
        outcomes._PREPARED.pop(id(ds))
        compiled = outcomes._status(ds, pd.Timestamp("2025-06-30").date())
        assert outcomes._prepared(ds) is not None
        pd.testing.assert_frame_equal(got, compiled, check_exact=True)


def test_other_engine_takes_ibis_path():
    ds = types.SimpleNamespace(con=types.SimpleNamespace(name="pyspark"))
    assert outcomes._compile(ds) is None


def test_compiled_once_per_dataset_and_dropped_with_it(tmp_path):
    data = tiny.write(tmp_path / "d")
    p = fparams.load(tiny.params_file(tmp_path, data))
    ds = fdata.load(p)
    first = outcomes._prepared(ds)
    assert first is not None and outcomes._prepared(ds) is first
    assert first.sql.count("$1") == 4 and "1001" not in first.sql
    key = id(ds)
    ds.close()
    del ds, first
    gc.collect()
    assert key not in outcomes._PREPARED
