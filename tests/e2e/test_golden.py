"""Golden outputs (issue 22, "pin first"): the demo data, a review's results.json and
chapter 4's scenario table stay what ``tests/golden/`` recorded.

``tools/golden.py`` holds the comparison (numbers to 1e-9 relative or absolute, everything
else exact, the run-specific fields it lists left out); re-record with
``python tools/golden.py record`` (``make golden``) only when a change of output is meant.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fupan_golden", ROOT / "tools" / "golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


@pytest.fixture(autouse=True)
def _leave_no_path(monkeypatch):
    # golden.py puts its checkout's lib/ on PYTHONPATH for the kernels it starts; in this
    # process that would outlive the test (a later pip install saw fupan as installed)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def pinned() -> dict:
    return golden.load_golden()


def _first_float(x, path=""):
    """The dotted path and value of the first non-integer number in a JSON value."""
    if isinstance(x, dict):
        for k, v in x.items():
            hit = _first_float(v, f"{path}.{k}" if path else k)
            if hit:
                return hit
    elif isinstance(x, list):
        for i, v in enumerate(x):
            hit = _first_float(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(x, float) and x == x and abs(x) > 1e-3:
        return path, x
    return None


def _set(x, path, value):
    """Set the value at a path as :func:`_first_float` names it."""
    keys = []
    for part in path.split("."):
        name, *idx = part.replace("]", "").split("[")
        keys += [name, *map(int, idx)]
    for k in keys[:-1]:
        x = x[k]
    x[keys[-1]] = value


# ------------------------------------------------------------------------ the comparison


def test_compare_passes_identical_and_rounding_noise():
    a = {"x": 1.0, "n": 3, "s": "y", "l": [0.1, None, True], "nan": float("nan")}
    b = copy.deepcopy(a)
    assert golden.compare(a, b) == []
    b["x"] = 1.0 + 5e-10  # within 1e-9 relative
    b["l"][0] = 0.1 * (1 + 1e-12)
    assert golden.compare(a, b) == []
    assert golden.compare({"z": 0.0}, {"z": 5e-10}) == []  # within 1e-9 absolute near zero


def test_compare_fails_on_every_kind_of_change():
    a = {"x": 1.0, "n": 3, "s": "y", "l": [1, 2], "b": True, "d": {"k": None}}
    cases = {
        "x": 1.0 + 1e-8,  # a number beyond the tolerance
        "n": 3.0,  # an integer that became a float
        "s": "y ",  # a string, exactly
        "l": [1, 2, 3],  # a list's length
        "b": 1,  # a boolean that became a number
        "d": {"k": 0},  # None that became a number
    }
    for key, value in cases.items():
        b = copy.deepcopy(a)
        b[key] = value
        assert golden.compare(a, b), key
    assert golden.compare(a, {**a, "new": 1}) == ["new: new"]
    assert golden.compare(a, {k: v for k, v in a.items() if k != "s"}) == ["s: missing"]


def test_a_perturbed_golden_result_is_caught(pinned):
    """The test can fail: the recorded results with one number moved by 1e-6 relative, and
    the scenario table with one cell changed, no longer match the recording."""
    assert golden.differences(pinned, pinned) == {"demo": [], "results": [], "scenarios": []}
    moved = copy.deepcopy(pinned)
    path, value = _first_float(moved["results"])
    _set(moved["results"], path, value * (1 + 1e-6))
    lines = moved["scenarios"].splitlines(keepends=True)
    row = lines[1].split(",")
    customers = int(row[1])  # the first scenario's number of customers
    row[1] = str(customers + 1)
    moved["scenarios"] = "".join([lines[0], ",".join(row), *lines[2:]])
    moved["demo"]["orders.csv"] = "0" * 64
    diffs = golden.differences(pinned, moved)
    assert [line.split(":")[0] for line in diffs["results"]] == [path]
    assert diffs["scenarios"] == [f"scenarios[1][1]: {customers} became {customers + 1}"]
    assert diffs["demo"] == [
        f"demo.orders.csv: {pinned['demo']['orders.csv']!r} became {'0' * 64!r}"
    ]


def test_normalise_drops_volatile_fields_and_placeholders_folders(tmp_path):
    results = {
        "run": {"name": "x", "previous": str(tmp_path / "old")},
        "simulation": {"scenarios_file": str(golden.ROOT / "lib" / "s.yaml"), "generated_at": "t"},
        "data_check": {"source": str(tmp_path / "data"), "n": 1.5},
    }
    out = golden.normalise(results, {"<WORK>": tmp_path, "<ROOT>": golden.ROOT})
    assert out == {
        "run": {"name": "x"},
        "simulation": {"scenarios_file": "<ROOT>/lib/s.yaml"},
        "data_check": {"source": "<WORK>/data", "n": 1.5},
    }


def test_golden_files_are_recorded():
    readme = (golden.GOLDEN / "README.md").read_text(encoding="utf-8")
    assert "tools/golden.py record" in readme and "commit" in readme
    results = json.loads((golden.GOLDEN / "results.json").read_text(encoding="utf-8"))
    assert {"run", "data_check", "diagnosis", "churn", "ltv", "simulation", "kpi"} <= set(results)


# ------------------------------------------------------------------------ the outputs


def test_demo_data_is_unchanged(tmp_path, pinned):
    """The generator's files for 300 customers, seed 1, byte for byte (about 3 s)."""
    data = golden.make_demo(tmp_path / "data")
    assert golden.compare(pinned["demo"], golden.demo_hashes(data), "demo") == []


@pytest.mark.slow
def test_review_results_and_scenarios_are_unchanged(pinned, review_run):
    """The session's review of the pinned demo data with the shipped params (conftest's
    `review_run`, the run `tools/golden.py` makes): results.json to 1e-9 and the scenario
    table."""
    work = review_run.run_dir.parent.parent
    now = golden.outputs(review=review_run.run_dir, work=work)
    diffs = golden.differences(pinned, now)
    assert diffs == {"demo": [], "results": [], "scenarios": []}, json.dumps(
        diffs, indent=1, ensure_ascii=False
    )[:5000]
