"""fupan.results.Recorder: figures recorded by several notebooks into one results.json."""

from __future__ import annotations

import json

from fupan.results import Recorder, write_json_atomic


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
