"""fupan.io.cache: models fitted once per run and shared by the notebooks."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.chapters import atrisk, clv
from fupan.core import params as fparams
from fupan.io import cache
from fupan.io import data as fdata


@pytest.fixture
def tiny_ds(tmp_path, tiny_params):
    ds = fdata.load(fparams.load(tiny_params))
    yield ds
    ds.close()


def test_no_cache_outside_a_run(tiny_ds):
    calls = []
    for _ in range(2):
        cache.memo(tiny_ds, "f", [1], lambda: calls.append(1) or len(calls))
    assert tiny_ds.cache_dir is None and len(calls) == 2


def test_memo_keys_on_name_arguments_and_params(tiny_ds, tmp_path):
    ds = dataclasses.replace(tiny_ds, cache_dir=tmp_path / "cache")
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    assert cache.memo(ds, "f", [1], compute) == {"n": 1}
    assert cache.memo(ds, "f", [1], compute) == {"n": 1}  # from the file
    assert cache.memo(ds, "f", [2], compute) == {"n": 2}
    assert cache.memo(ds, "g", [1], compute) == {"n": 3}
    later = dataclasses.replace(ds, params=ds.params.model_copy(update={"seed": 99}))
    assert cache.memo(later, "f", [1], compute) == {"n": 4}
    # an unreadable file (an interrupted write, another version) is a miss, then replaced
    path = ds.cache_dir / cache.key_of(ds, "f", [1])
    path.write_bytes(b"not a pickle")
    assert cache.memo(ds, "f", [1], compute) == {"n": 5}
    assert pickle.loads(path.read_bytes()) == {"n": 5}
    assert not list(ds.cache_dir.glob("*.tmp"))


def test_staged_run_datasets_cache_in_the_work_folder(tmp_path, tiny_params):
    params = fparams.load(tiny_params)
    work = tmp_path / "run" / "work"
    fdata.load(params, work).close()
    ds = fdata.connect(params, tmp_path / "run")
    try:
        assert ds.cache_dir == work / "cache"
    finally:
        ds.close()


def test_chapters_share_the_health_model_and_the_valuation(tmp_path, demo_small):
    params = fparams.load(tiny.params_file(tmp_path, demo_small))
    plain = fdata.load(params)
    try:
        ds = dataclasses.replace(plain, cache_dir=tmp_path / "cache")
        model = atrisk.train(ds, months=12)
        again = atrisk.train(ds, months=12)  # another notebook of the run: read, not refitted
        assert again is not model
        feats = atrisk.F.customer_features_before(ds, ds.as_of)
        assert np.array_equal(model.health(feats), again.health(feats))
        assert np.array_equal(model.health(feats), atrisk.train(plain, months=12).health(feats))
        kind, _ = clv.choose_model(ds.params, ds)
        now = pd.Timestamp(ds.params.as_of) + pd.Timedelta(days=1)
        first = clv.Valuer(ds, kind).valuation(now)
        second = clv.Valuer(ds, kind).valuation(now)
        pd.testing.assert_frame_equal(first.values, second.values)
        pd.testing.assert_frame_equal(first.values, clv.Valuer(plain, kind).valuation(now).values)
        assert len(list(ds.cache_dir.glob("atrisk.train-*.pkl"))) == 1
        assert len(list(ds.cache_dir.glob("clv.valuation-*.pkl"))) == 1
    finally:
        plain.close()


def _plain_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["a", None, "c"], dtype="str"),
            "acquired_at": pd.to_datetime(["2024-01-02", None, "2025-03-04"]).astype(
                "datetime64[s]"
            ),
            "stamp": pd.to_datetime(
                ["2024-01-02 03:04:05.123456789", None, "2025-01-01 00:00:00.000000001"]
            ),
            "orders": np.array([3, 0, -7], dtype="int64"),
            "value": [1.5, np.nan, -0.0],
            "churned": [True, False, True],
        }
    )


@pytest.mark.parametrize(
    "frame",
    [
        _plain_frame(),
        _plain_frame().iloc[:0],
        pd.DataFrame({"x": pd.Series(["中文", ""], dtype="str"), "n": np.array([1, 2], "uint8")}),
    ],
)
def test_plain_frames_are_kept_as_parquet_and_read_back_equal(tiny_ds, tmp_path, frame):
    ds = dataclasses.replace(tiny_ds, cache_dir=tmp_path / "cache")
    cache.memo(ds, "frame", [], lambda: frame)
    path = ds.cache_dir / cache.key_of(ds, "frame", [])
    assert path.read_bytes()[:4] == b"PAR1"
    back = cache.memo(ds, "frame", [], lambda: pytest.fail("recomputed"))
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.dtypes.to_dict() == frame.dtypes.to_dict()
    assert back.columns.dtype == frame.columns.dtype


def test_frames_parquet_cannot_hold_exactly_stay_pickles(tiny_ds, tmp_path):
    ds = dataclasses.replace(tiny_ds, cache_dir=tmp_path / "cache")
    mixed = pd.DataFrame({"tier": pd.Series(["gold", None, np.nan], dtype=object)})
    indexed = _plain_frame().set_index("customer_id")
    nullable = pd.DataFrame({"n": pd.array([1, None], dtype="Int64")})
    for k, frame in enumerate([mixed, indexed, nullable]):
        cache.memo(ds, "frame", [k], lambda f=frame: f)
        path = ds.cache_dir / cache.key_of(ds, "frame", [k])
        assert path.read_bytes()[:4] != b"PAR1"
        back = cache.memo(ds, "frame", [k], lambda: pytest.fail("recomputed"))
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert cache.memo(ds, "frame", [0], lambda: None).tier.tolist()[1] is None


def test_cached_churn_status_equals_a_fresh_one(tiny_ds, tmp_path):
    from fupan.measures import outcomes

    ds = dataclasses.replace(tiny_ds, cache_dir=tmp_path / "cache")
    fresh = outcomes.churn_status(tiny_ds)
    outcomes.churn_status(ds)  # computed and written
    assert [p.read_bytes()[:4] for p in ds.cache_dir.glob("*.pkl")] == [b"PAR1"]
    cached = outcomes.churn_status(ds)  # read back
    pd.testing.assert_frame_equal(cached, fresh, check_exact=True)
    assert cached.dtypes.to_dict() == fresh.dtypes.to_dict()
