"""``python -m fupan`` is the ``fupan`` command (issue 22)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fupan(*args: str, module: str = "fupan") -> subprocess.CompletedProcess:
    # this checkout's lib first: the venv's editable install may point at another checkout
    path = os.pathsep.join(p for p in (str(ROOT / "lib"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )


def test_python_m_fupan_runs_a_command_like_the_cli(tiny_params: Path):
    via_package = _fupan("validate", "--params", str(tiny_params))
    via_cli = _fupan("validate", "--params", str(tiny_params), module="fupan.run.cli")
    assert via_package.returncode == 0, via_package.stderr
    assert via_package.stdout == via_cli.stdout
    assert "usage: fupan " in _fupan("--help").stdout


def test_python_m_fupan_keeps_the_exit_codes(tmp_path: Path):
    assert _fupan().returncode == 2  # no command: usage error
    missing = _fupan("validate", "--params", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("fupan: ")
    assert "Traceback" not in missing.stderr
