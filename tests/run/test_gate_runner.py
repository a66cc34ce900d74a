"""The gate in the runner: a review whose chapters quote one metric with two values fails
with exit 1, names both places and writes no deck.

Two stand-in chapters (real notebooks executed by the runner's kernels) record a planted
NRR each; the data is test_kpi's small fixture.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import paramfile
import pytest
from fupan.run import cli, runner
from test_kpi import write_fixture

PARAMETERS = (
    'params_file: str = ""\nrun_dir: str = ""\ndata: str = ""\nas_of: str = ""\n'
    'lang: str = ""\nseed: int = -1\n'
)


def _chapter(folder: Path, name: str, key: str, value: float) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    record = nbformat.v4.new_code_cell(
        f"from fupan.report.results import Recorder\nRecorder(run_dir).record({key!r}, {value!r})"
    )
    nb.cells = [params, record]
    nbformat.write(nb, str(folder / f"{name}.ipynb"))


def _review(tmp_path: Path, kpi_nrr: float, monkeypatch) -> tuple[int, Path]:
    data = write_fixture(tmp_path / "data")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _chapter(notebooks, "01_diagnosis", "diagnosis.net_revenue_retention", 0.96)
    _chapter(notebooks, "05_kpi_tracking", "kpi.values.nrr", kpi_nrr)
    params = paramfile.write(
        tmp_path,
        data,
        notebooks=("01_diagnosis", "05_kpi_tracking"),
        name="gate",
        kind="monthly",
        as_of="2026-10-31",
    )
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", notebooks)
    out = tmp_path / "reports"
    return cli.main(["review", "--params", str(params), "--out", str(out)]), out


def test_a_planted_mismatch_fails_the_run_naming_both_places(tmp_path, monkeypatch, capsys):
    code, out = _review(tmp_path, 1.114, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1
    assert "diagnosis.net_revenue_retention (01_diagnosis) = 0.96" in err
    assert "kpi.values.nrr (05_kpi_tracking) = 1.114" in err
    assert not list(out.glob("*/deck.html"))  # no deck but the failed run's folder
    assert all(p.name.endswith(".failed") for p in out.iterdir() if p.is_dir())


@pytest.mark.slow  # the passing side is covered in-process by test_gate_shapes
def test_agreeing_chapters_pass_the_gate(tmp_path, monkeypatch):
    code, out = _review(tmp_path, 0.96, monkeypatch)
    assert code == 0
    assert list(out.glob("*/deck.html"))
