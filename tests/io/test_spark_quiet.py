"""A local Spark session starts without filling the terminal with JVM log lines (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fupan.io import engine


def test_log_config_levels(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    quiet = engine.log4j2_config().read_text()
    # the root stays at WARN (else Spark announces "Setting default log level"); the console
    # shows errors only
    assert "rootLogger.level = warn" in quiet
    assert "appender.console.filter.threshold.level = error" in quiet
    monkeypatch.setenv(engine.LOG_LEVEL_ENV, "info")
    loud = engine.log4j2_config().read_text()
    assert "rootLogger.level = info" in loud and "threshold.level = info" in loud
    with pytest.raises(ValueError, match=engine.LOG_LEVEL_ENV):
        engine.log4j2_config("verbose")


START = """
from fupan.io import engine
s = engine.spark_session(conf=engine.SMALL_DATA_CONF)
assert s.range(3).count() == 3
print(s.sparkContext.getConf().get("spark.driver.extraJavaOptions"))
s.stop()
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(engine.spark_available() is not None, reason=str(engine.spark_available()))
def test_spark_session_starts_without_log_lines():
    run = subprocess.run(
        [sys.executable, "-c", START],
        capture_output=True,
        text=True,
        timeout=500,
        env={k: v for k, v in os.environ.items() if k != engine.LOG_LEVEL_ENV},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # the caller's JVM options are kept beside the log configuration
    assert "-XX:TieredStopAtLevel=1" in run.stdout and "log4j2.configurationFile" in run.stdout
    # Java's own notice about the incubator module Spark 4 adds is the one line left
    lines = [
        ln
        for ln in run.stderr.splitlines()
        if ln.strip() and not ln.startswith("WARNING: Using incubator modules")
    ]
    assert lines == [], lines
