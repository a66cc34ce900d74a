"""Faults mid-run: a dying kernel, a cell past its timeout, SIGINT/SIGTERM.

Each must end with a non-zero exit naming the notebook and cell, no temporary files, and
the previous good report untouched.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from fupan.core import params as fparams
from fupan.run import execute, runner

pytestmark = pytest.mark.slow


def _notebook_with(tmp_path: Path, code: str, at: int = 4) -> Path:
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir(exist_ok=True)
    nb = nbformat.read(str(ROOT / "notebooks" / "00_data_check.ipynb"), as_version=4)
    nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    nbformat.write(nb, str(nb_dir / "00_data_check.ipynb"))
    return nb_dir


@pytest.fixture
def good_run(tmp_path, tiny_params):
    params = fparams.load(tiny_params)
    res = runner.run(params, tiny_params, reports_dir=tmp_path / "reports", log=lambda m: None)
    return params, res, hashlib.sha256(res.deck.read_bytes()).hexdigest()


def _assert_clean(res, digest):
    assert hashlib.sha256(res.deck.read_bytes()).hexdigest() == digest
    assert not list(res.run_dir.parent.glob(".*tmp-*")), "temporary folder left behind"
    assert not (res.run_dir.parent / "annual_review-2026-10-31.failed" / "work").exists()


def test_kernel_death_names_notebook_and_cell(tmp_path, tiny_params, good_run):
    params, res, digest = good_run
    nb_dir = _notebook_with(tmp_path, "import os\nos._exit(1)")
    with pytest.raises(execute.RunError) as exc:
        runner.run(
            params,
            tiny_params,
            reports_dir=res.run_dir.parent,
            notebook_dir=nb_dir,
            log=lambda m: None,
        )
    msg = str(exc.value)
    assert "00_data_check" in msg and "kernel" in msg and "import os" in msg
    _assert_clean(res, digest)


def test_cell_timeout_names_notebook_and_cell(tmp_path, tiny_params, good_run):
    params, res, digest = good_run
    # The sleeping cell runs first, so no cell of the notebook's own (imports, loading:
    # seconds on a busy machine) has to finish within the short timeout; the test waits
    # 3 s for it instead of 20.
    params.cell_timeout_seconds = 3
    nb_dir = _notebook_with(tmp_path, "import time\ntime.sleep(60)", at=0)
    with pytest.raises(execute.RunError) as exc:
        runner.run(
            params,
            tiny_params,
            reports_dir=res.run_dir.parent,
            notebook_dir=nb_dir,
            log=lambda m: None,
        )
    msg = str(exc.value)
    assert "timeout" in msg and "import time" in msg
    _assert_clean(res, digest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_mid_run(tmp_path, tiny_params, good_run, sig):
    params, res, digest = good_run
    marker = tmp_path / "cell-started"
    nb_dir = _notebook_with(
        tmp_path, f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(120)"
    )
    script = (
        "import sys\nfrom fupan.run import cli, runner\n"
        f"runner.NOTEBOOK_DIR = __import__('pathlib').Path({str(nb_dir)!r})\n"
        f"sys.exit(cli.main(['review', '--params', {str(tiny_params)!r}, '--out', {str(res.run_dir.parent)!r}]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A job started in the background (`cmd &`, as CI may start this suite) inherits
        # SIGINT ignored, and a program rightly keeps ignoring it; the test is about Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait for the sleeping cell itself: on a loaded machine the kernel can take longer
    # than any fixed pause to start and run the cells before it.
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists():
        time.sleep(0.5)
    assert marker.exists(), "the run never reached the sleeping cell"
    time.sleep(1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, (out, err)
    assert "interrupted" in err and "00_data_check" in err
    _assert_clean(res, digest)
