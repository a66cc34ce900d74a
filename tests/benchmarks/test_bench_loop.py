"""The loop rows of `make bench` (benchmarks/loop.py): their verdicts and tables, not timings."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import loop  # noqa: E402
from readme import put_block  # noqa: E402


def review_row(seconds: float, peak_mb: float, ok: bool = True) -> dict:
    return {
        "ok": ok,
        "seconds": seconds,
        "cpu_seconds": seconds * 1.4,
        "peak_mb": peak_mb,
        "load_mean": 1.0,
        "notebooks": {"load_validate": 2.0, "02_churn_root_cause": 19.7},
    }


def test_a_row_meets_its_target_only_when_every_limit_holds():
    assert loop.judge("review_100k_csv", review_row(80, 2000)) == {
        "seconds": True,
        "peak_mb": True,
    }
    assert loop.judge("review_100k_csv", review_row(80, 3500)) == {
        "seconds": True,
        "peak_mb": False,
    }
    assert loop.judge("review_5k", review_row(54.5, 650)) == {"seconds": False}
    assert loop.judge("load_100k_csv", {"ok": True, "ratio": 1.4}) == {"ratio": True}


def test_a_failed_row_is_neither_met_nor_missed():
    assert loop.judge("rerun_5k", {"ok": False, "error": "boom"}) == {"seconds": None}


def result(before: dict, after: dict | None = None) -> dict:
    cols = {"before": {"label": "main 8cd9776, load 1.0", "rows": before}}
    if after is not None:
        cols["after"] = {"label": "abc1234, load 1.2", "rows": after}
    return {"columns": cols, "machine": {"cores": 2}}


def test_the_table_judges_the_rightmost_column():
    before = {"review_5k": review_row(54.5, 650)}
    before["review_5k"]["judged"] = loop.judge("review_5k", before["review_5k"])
    after = {"review_5k": review_row(40.0, 600)}
    after["review_5k"]["judged"] = loop.judge("review_5k", after["review_5k"])
    text = loop.table(result(before, after))
    line = next(ln for ln in text.splitlines() if ln.startswith("| 5k demo review"))
    assert "**54.5 s**" in line and "**40.0 s**" in line and line.endswith("| yes |")
    assert "02 19.7" in line  # each notebook's seconds from the manifest
    assert "before (main 8cd9776, load 1.0)" in text and "after (abc1234" in text
    text = loop.table(result(before))
    line = next(ln for ln in text.splitlines() if ln.startswith("| 5k demo review"))
    assert line.endswith("| **no** |")


def test_rows_not_measured_say_so():
    text = loop.table(result({}))
    line = next(ln for ln in text.splitlines() if ln.startswith("| one-chapter rerun"))
    assert line.endswith("| – | – |")


def test_the_load_row_gives_both_processes_and_both_ratios():
    res = {
        "ok": True,
        "ratio": 4.9,
        "cpu_ratio": 3.1,
        "load_mean": 1.1,
        "load": {
            "load_seconds": 14.7,
            "seconds": 17.0,
            "cpu_seconds": 20,
            "peak_mb": 900,
            "load_cpu_seconds": 19.0,
        },
        "floor": {"floor_seconds": 3.0, "floor_cpu_seconds": 6.1, "runs": [3.1, 3.0, 2.9]},
    }
    text = loop.cell(res)
    assert text.startswith("**4.90×**") and "14.7 s" in text and "3.00 s" in text
    assert "3.10×" in text and "median of 3" in text


def test_the_block_replaces_its_old_self_or_goes_before_the_ladder():
    marks = ("<!-- loop -->", "<!-- /loop -->")
    text = "# B\n\nintro\n\n<!-- latest -->\n## Latest\nladder\n"
    once = put_block(text, marks, "<!-- loop -->\nONE\n<!-- /loop -->")
    assert once.index("ONE") < once.index("<!-- latest -->")
    twice = put_block(once, marks, "<!-- loop -->\nTWO\n<!-- /loop -->")
    assert "ONE" not in twice and "TWO" in twice and twice.endswith("ladder\n")
    assert put_block("# B\n", marks, "<!-- loop -->\nX\n<!-- /loop -->").endswith(
        "X\n<!-- /loop -->\n"
    )
