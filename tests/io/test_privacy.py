from __future__ import annotations

import pandas as pd
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import privacy


def test_mask_pii_is_stable_keyed_and_complete():
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C1"],
            "customer_name": ["甲公司", "乙公司", "甲公司"],
            "x": [1, 2, 3],
        }
    )
    a = privacy.mask_pii(df, "salt-1")
    b = privacy.mask_pii(df, "salt-2")
    assert a.customer_id[0] == a.customer_id[2] != a.customer_id[1]
    assert a.customer_id[0] != b.customer_id[0], "a different salt must give different pseudonyms"
    assert "甲公司" not in a.to_string() and "C1" not in set(a.customer_id)
    assert list(a.x) == [1, 2, 3]
    assert df.customer_name[0] == "甲公司", "the input is not modified"


def test_salt_from_environment_wins(monkeypatch):
    monkeypatch.setenv(privacy.SALT_ENV, "env-key")
    assert privacy.resolve_salt("params-key") == "env-key"
    monkeypatch.delenv(privacy.SALT_ENV)
    with pytest.raises(ValueError, match="salt"):
        privacy.resolve_salt(None)


def test_contact_columns_never_pass_the_loader(tmp_path):
    cust = tiny.frames()["customers"].assign(
        phone="13800000000", email="a@b.cn", 联系人手机="13900000000"
    )
    data = tiny.write(tmp_path / "d", customers=cust)
    with fdata.loaded(fparams.load(tiny.params_file(tmp_path, data))) as ds:
        cols = set(ds["customers"].columns)
    assert not cols & {"phone", "email", "联系人手机"}


def test_a_parameter_holding_python_source_is_a_string_not_code(tmp_path, tiny_params):
    import papermill as pm
    from conftest import ROOT

    sentinel = tmp_path / "pwned"
    payload = f"zh\"); open({str(sentinel)!r}, 'w').write('x'); (\""
    with pytest.raises(pm.PapermillExecutionError) as exc:
        pm.execute_notebook(
            str(ROOT / "notebooks" / "00_data_check.ipynb"),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            parameters={"params_file": str(tiny_params), "run_dir": str(tmp_path), "lang": payload},
            progress_bar=False,
            cwd=str(ROOT / "notebooks"),
        )
    assert not sentinel.exists(), "a parameter value was executed as code"
    assert "lang" in str(exc.value)  # rejected by params validation as a bad language value
