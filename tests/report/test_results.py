"""fupan.report.results.Recorder: figures recorded by several notebooks into one results.json."""

from __future__ import annotations

import json

import pytest
from fupan.report.results import Recorder, write_json_atomic


def test_recorders_of_one_run_see_each_others_figures(tmp_path):
    a, b = Recorder(tmp_path), Recorder(tmp_path)  # two notebooks of the run
    a.record("churn.rate", 0.12)
    b.record("ltv.total", 1.5e6)  # b reads a's figure before adding its own
    a.record("churn.count", 7)  # and a sees b's
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data == {"churn": {"rate": 0.12, "count": 7}, "ltv": {"total": 1.5e6}}
    assert b.get("churn.count") == 7 and a["ltv.total"] == 1.5e6


def test_values_handed_out_are_copies(tmp_path):
    rec = Recorder(tmp_path)
    rec.record("kpi.alerts", [{"kpi": "nps"}])
    rec.get("kpi.alerts").append("mutated")
    rec.all()["kpi"]["alerts"] = None
    assert rec.get("kpi.alerts") == [{"kpi": "nps"}]


def test_recorded_compact_then_indented_by_the_runner(tmp_path):
    rec = Recorder(tmp_path)
    rec.record("a.b", 1)
    path = tmp_path / "results.json"
    assert "\n" not in path.read_text(encoding="utf-8").strip()
    write_json_atomic(path, json.loads(path.read_text(encoding="utf-8")))
    assert path.read_text(encoding="utf-8").count("\n") >= 3
    assert rec.get("a.b") == 1  # the rewritten file is read again


def test_skip_records_a_sentence_for_the_figure_and_the_slide_it_is_shown_on(tmp_path):
    from fupan.report import results as fr

    rec = Recorder(tmp_path)
    rec.record("diagnosis.churn_rate", None)
    why = "The review period starts before the first customer was acquired."
    assert rec.skip("diagnosis", "churn_rate", why) == why
    skipped = rec.get("diagnosis.skipped")
    # the headline slide also carries the churn gap and the core churn rate
    assert skipped == dict.fromkeys(["churn_rate", "churn_gap", "core_churn_rate"], why)
    # a figure with its own reason keeps it when its slide is skipped later
    rec.skip("diagnosis", "touches", "No touches table: coverage needs one touch per customer.")
    own = "A touches table with touched_at and channel would enable coverage."
    rec.skip("diagnosis", "touch_coverage", own)
    rec.skip("diagnosis", "touches", "The touches slide cannot be made without a table.")
    assert rec.get("diagnosis.skipped.touch_coverage") == own
    # ALL explains every headline figure not explained yet, and nothing else
    rec.skip("ltv", fr.ALL, "The CLV model could not be fitted: no repeat purchases.")
    assert set(rec.get("ltv.skipped")) == set(fr.HEADLINE["ltv"])


@pytest.mark.parametrize("reason", [None, "", "one_group", "missing:surveys", "–", "n/a"])
def test_skip_refuses_a_code_or_placeholder_for_a_reason(tmp_path, monkeypatch, reason):
    from fupan.report.show import STRICT_ENV

    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ValueError, match="not a reason in words"):
        Recorder(tmp_path).skip("ltv", "lost_by_tier", reason)
    monkeypatch.delenv(STRICT_ENV)
    # outside strict mode the chapter goes on; the gap stays visible to results.unexplained
    with pytest.warns(UserWarning, match="not a reason in words"):
        Recorder(tmp_path).skip("ltv", "lost_by_tier", reason)
    from fupan.report import results as fr

    assert "ltv.lost_by_tier" in fr.unexplained(Recorder(tmp_path).all())


def test_unexplained_names_each_headline_figure_without_a_value_or_a_sentence():
    from fupan.report import results as fr

    results = {
        "diagnosis": {"churn_rate": 0.2, "segments": [], "skipped": {"rfm": "one_group"}},
        "kpi": {"values": {"nps": None, "churn": 0.1}, "skipped": {"values.nps": "No surveys."}},
        "simulation": {"skipped": [{"name": "sla_core", "reason": "missing_table"}]},
        "run": {"name": "x"},
    }
    out = fr.unexplained(results)
    assert "diagnosis.churn_rate" not in out  # a value
    assert "diagnosis.segments" in out  # an empty list is no value
    assert "diagnosis.skipped.rfm = 'one_group' (not a sentence)" in out
    assert "kpi.values.nps" in out  # "No surveys." is two words: not a sentence
    assert "kpi.values.churn" not in out
    assert any(x.startswith("simulation.skipped (a list") for x in out)
    assert "simulation.scenarios" in out
    assert not any(x.startswith(("ltv", "run", "churn")) for x in out)  # not recorded
    results["kpi"]["skipped"]["values.nps"] = "The surveys table is missing: NPS needs it."
    assert "kpi.values.nps" not in fr.unexplained(results)
    assert fr.is_sentence("没有问卷表，无法计算净推荐值")
