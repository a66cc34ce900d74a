from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import ROOT
from fupan.core import chapter_params
from fupan.core import params as fparams


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_params_validate():
    for name in ("annual_review.yaml", "monthly.yaml"):
        p = fparams.load(ROOT / "params" / name)
        assert p.benchmarks.churn_rate == pytest.approx(0.12)
        assert p.benchmarks.first_response_days == pytest.approx(3.5)
        assert p.benchmarks.nps_alert_below == 40


def test_dates_parsed_and_period_derived(tmp_path):
    p = fparams.load(
        _write(tmp_path, "as_of: 2026-10-31\nbenchmarks_file: null\ndata: {source: x}\n")
    )
    assert p.as_of == dt.date(2026, 10, 31)
    assert p.period_start == dt.date(2025, 11, 1)
    assert p.resolve("x") == str((tmp_path / "x").resolve())


def test_unknown_keys_name_the_nearest_valid_one_and_all_problems_at_once(tmp_path):
    text = "as_of: 2026-10-31\nbenchmarks_file: null\nlangg: en\ndata: {source: x, orphan: drop}\nseed: abc\n"
    with pytest.raises(fparams.ParamsError) as exc:
        fparams.load(_write(tmp_path, text))
    msg = str(exc.value)
    assert "3 problem" in msg
    assert "unknown key 'langg'" in msg and "did you mean 'lang'" in msg
    assert "data.orphan" in msg and "did you mean 'orphans'" in msg
    assert "seed" in msg


def test_bad_types_and_values(tmp_path):
    text = "as_of: 2026-13-45\nbenchmarks_file: null\nlang: fr\ndata: {source: x}\n"
    with pytest.raises(fparams.ParamsError) as exc:
        fparams.load(_write(tmp_path, text))
    assert "as_of" in str(exc.value) and "lang" in str(exc.value)


def test_overrides_are_values_not_code(tmp_path):
    p = fparams.load(
        _write(tmp_path, "as_of: 2026-10-31\nbenchmarks_file: null\ndata: {source: x}\n"),
        name="__import__('os').system('echo hacked')",
        **{"data.source": "y"},
    )
    assert p.name.startswith("__import__")  # kept as a plain string, never evaluated
    assert p.data.source == "y"


def test_core_tiers_must_be_known(tmp_path):
    text = "as_of: 2026-10-31\nbenchmarks_file: null\ndata: {source: x}\ntiers: {core: [diamond]}\n"
    with pytest.raises(fparams.ParamsError, match="core tiers"):
        fparams.load(_write(tmp_path, text))


def test_retired_touch_window_is_refused_with_the_fix():
    # touch coverage has one definition (fupan.measures.metrics); a second window would make two numbers
    with pytest.raises(ValueError, match="diagnosis.coverage_days"):
        chapter_params.KpiParams(touch_window_months=3)
