"""The Spark row of `make bench` (benchmarks/spark_row.py): its logic, not its timings.

Without Java the row must say why it was skipped and run nothing; a stage stopped at its
limit must be reported with its partial figures; the limit must end the whole process tree.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import measure  # noqa: E402
import spark_row  # noqa: E402


@pytest.fixture
def bench_dirs(tmp_path, monkeypatch):
    """Results and README in a temporary folder; the repository's stay untouched."""
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n\n<!-- latest -->\n## Latest results\nladder\n")
    monkeypatch.setattr(spark_row, "WORK", tmp_path / "work")
    monkeypatch.setattr(spark_row, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(spark_row, "LATEST", tmp_path / "results" / "spark-latest.json")
    monkeypatch.setattr(spark_row, "README", readme)
    return tmp_path


def test_without_java_the_row_says_why_and_runs_nothing(bench_dirs, monkeypatch):
    why = "no Java runtime found (java not on PATH and JAVA_HOME unset); Spark needs Java 17+"
    monkeypatch.setattr(spark_row, "spark_missing", lambda: why)

    def no_stage(*a, **k):
        raise AssertionError("a stage ran although Spark is unavailable")

    monkeypatch.setattr(spark_row.measure, "run", no_stage)
    assert spark_row.main(["--sizes", "10000"]) == 0
    text = (bench_dirs / "README.md").read_text()
    assert f"skipped: {why}" in text
    # the Spark block sits before the ladder's block, which run.py rewrites from its marker
    assert text.index(spark_row.MARK_END) < text.index("<!-- latest -->")
    assert text.endswith("## Latest results\nladder\n")
    saved = json.loads((bench_dirs / "results" / "spark-latest.json").read_text())
    assert saved["skipped"] == why and saved["sizes"] == {}


def test_spark_missing_names_java(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    why = spark_row.spark_missing()
    assert why is not None and ("Java" in why or "pyspark" in why)


def test_readme_block_is_replaced_not_repeated(bench_dirs):
    result = {"date": "2026-12-07T22:00:00", "machine": {"cores": 2}, "sizes": {}}
    result["skipped"] = "first"
    spark_row.write_readme(result)
    result["skipped"] = "second"
    spark_row.write_readme(result)
    text = (bench_dirs / "README.md").read_text()
    assert text.count(spark_row.MARK_BEGIN) == 1 and "second" in text and "first" not in text


def test_parts_and_result_lines_merge():
    out = 'noise\nPART {"session_seconds": 5.0}\nPART {"load_seconds": 40.5}\nRESULT {"a": 1}'
    assert spark_row.parse_output(out) == {"session_seconds": 5.0, "load_seconds": 40.5, "a": 1}


def test_a_stopped_stage_reports_its_limit_and_partial_times():
    r = {
        "duckdb_features": {"seconds": 80.0, "feature_seconds": 20.0, "ok": True},
        "spark_features": {
            "seconds": 2400.4,
            "peak_mb": 6100.0,
            "cpu_seconds": 3900.0,
            "load_mean": 9.5,
            "ok": False,
            "stopped": "time limit 2,400 s",
            "session_seconds": 12.0,
            "load_seconds": 300.0,
        },
    }
    rows = spark_row.table({"sizes": {"1000000": r}}).splitlines()
    spark = next(row for row in rows if "| Spark |" in row)
    assert "> 2,400, stopped" in spark
    assert "JVM + session 12.0s" in spark and "load 300.0s" in spark
    assert "time limit 2,400 s: feature query unfinished" in spark
    assert "× DuckDB" not in spark  # no ratio without a finished query


def test_finished_stage_states_the_comparison_and_ratio():
    r = {
        "duckdb_features": {"seconds": 8.0, "cpu_seconds": 5.0, "feature_seconds": 2.0, "ok": True},
        "spark_features": {
            "seconds": 60.0,
            "cpu_seconds": 40.0,
            "ok": True,
            "feature_seconds": 30.0,
            "features": 32,
            "check": {"equal": False, "mismatched_values": {"nps_change": 3}, "rows": [5, 5]},
        },
    }
    note = spark_row.note("spark_features", r["spark_features"], r)
    assert "VALUES DIFFER: values in {'nps_change': 3}" in note
    assert "feature query 15.0× DuckDB's" in note
    assert "process 7.5× DuckDB's wall time, 8.0× its CPU" in note
    r["spark_features"]["check"] = {"equal": True, "columns_compared": 32}
    note = spark_row.note("spark_features", r["spark_features"], r)
    assert "same values as DuckDB (32 columns, rtol 1e-9)" in note


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_time_limit_stops_the_whole_tree():
    # a command whose child outlives it, as a Spark JVM outlives its Python driver
    code = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '120']); "
        "print('CHILD', p.pid, flush=True); time.sleep(120)"
    )
    m = measure.run([sys.executable, "-c", code], timeout=2.0)
    assert m.stopped == "time limit 2 s"
    child = int(next(ln for ln in m.stdout.splitlines() if ln.startswith("CHILD")).split()[1])
    deadline = time.time() + 10
    while not _gone(child) and time.time() < deadline:
        time.sleep(0.1)
    assert _gone(child)


def test_memory_limit_stops_the_command():
    cmd = [sys.executable, "-c", "import time; x = bytearray(300 * 2**20); time.sleep(60)"]
    m = measure.run(cmd, max_rss_mb=100)
    assert m.stopped == "memory limit 100 MB"
    assert m.seconds < 30 and m.peak_rss_mb > 100


def test_cpu_seconds_count_a_grandchild_nobody_waits_for(tmp_path):
    # the grandchild burns CPU and is never waited for by its parent (like a Spark JVM)
    flag = tmp_path / "burnt"
    burn = (
        "import pathlib, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.4: pass\n"
        f"pathlib.Path({str(flag)!r}).touch()\n"
        "time.sleep(120)\n"
    )
    code = (
        "import pathlib, subprocess, sys, time\n"
        # the grandchild's output goes nowhere: holding the pipes, it would keep measure's
        # readers waiting their 10 s each, which is not what this test is about
        f"p = subprocess.Popen([sys.executable, '-c', {burn!r}], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)\n"
        "print('CHILD', p.pid, flush=True)\n"
        f"while not pathlib.Path({str(flag)!r}).exists(): time.sleep(0.05)\n"
        "time.sleep(2.5)\n"  # at least two of measure's one-second CPU samples
    )
    m = measure.run([sys.executable, "-c", code])
    child = int(next(ln for ln in m.stdout.splitlines() if ln.startswith("CHILD")).split()[1])
    psutil.Process(child).kill()
    assert m.returncode == 0
    assert m.cpu_seconds >= 0.35


def test_error_lines_skip_java_stack_frames():
    err = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "py4j.protocol.Py4JJavaError: An error occurred while calling o42.count.\n"
        ": java.lang.OutOfMemoryError: Java heap space\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.run(DAGScheduler.scala:3141)\n"
        "\t... 12 more\n"
    )
    assert spark_row.error_lines(err, 2) == [
        "py4j.protocol.Py4JJavaError: An error occurred while calling o42.count.",
        ": java.lang.OutOfMemoryError: Java heap space",
    ]
