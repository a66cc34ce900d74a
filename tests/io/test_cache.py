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
