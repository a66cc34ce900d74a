"""The run's name per language (issue 19): the English deck is titled in English."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest
import yaml
from fupan.core import params as fparams

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _write(tmp_path, **changes):
    raw = yaml.safe_load((ROOT / "params/annual_review.yaml").read_text(encoding="utf-8"))
    raw.update(changes)
    raw["data"]["source"] = str(tmp_path)
    (tmp_path / "benchmarks.yaml").write_text(
        (ROOT / "params/benchmarks.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_params_name_the_run_in_both_languages(tmp_path):
    path = _write(tmp_path)
    assert fparams.load(path).name == "2026 年度客户复盘"
    assert fparams.load(path, lang="en").name == "2026 customer review"
    monthly = yaml.safe_load((ROOT / "params/monthly.yaml").read_text(encoding="utf-8"))
    assert set(monthly["name"]) == {"zh", "en"}


def test_name_en_beside_a_single_name(tmp_path):
    path = _write(tmp_path, name="2026 年度客户复盘", name_en="Customer review 2026")
    assert fparams.load(path, lang="en").name == "Customer review 2026"
    assert fparams.load(path, lang="zh").name == "2026 年度客户复盘"


def test_chinese_name_on_an_english_deck_falls_back_and_warns(tmp_path):
    path = _write(tmp_path, name="2026 年度客户复盘")
    with pytest.warns(UserWarning, match="name_en"):
        p = fparams.load(path, lang="en")
    assert p.name == "Customer review 2026"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": {"zh": "复盘"}, "lang": "en"}, "no 'en' text"),
        ({"name": {"fr": "revue"}}, "unknown language"),
        ({"name": {"zh": "复盘", "en": "Review"}, "name_en": "Other"}, "not both"),
        ({"name": {"zh": "", "en": "Review"}}, "empty"),
    ],
)
def test_bad_names_are_refused_with_the_fix(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(fparams.ParamsError, match=message):
        fparams.load(path)


def test_run_name_function():
    day = dt.date(2026, 10, 31)
    assert fparams.run_name("Review", None, "en", "annual_review", day) == "Review"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fparams.run_name("月度看板", None, "en", "monthly", day) == "Monthly customer report"
