"""Committed notebooks: no outputs, no injected parameters, and a parameters contract."""

from __future__ import annotations

import json

import papermill as pm
import pytest
from conftest import ROOT
from fupan.core import params as fparams
from fupan.run import execute, runner

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_injected_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"].get("kernelspec", {}).get("name"), "papermill needs a kernelspec"
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        assert "injected-parameters" not in tags, f"{path.name} carries injected parameters"
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} carries outputs"
            assert cell.get("execution_count") is None, f"{path.name} carries execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_declares_exactly_what_the_runner_passes(path):
    declared = pm.inspect_notebook(str(path))
    assert set(declared) == set(runner.NOTEBOOK_PARAMETERS), f"{path.name}: {sorted(declared)}"
    for name, typ in runner.NOTEBOOK_PARAMETERS.items():
        assert declared[name]["inferred_type_name"] == typ.__name__, (
            f"{path.name}: {name} is not annotated {typ.__name__}"
        )
        assert declared[name]["help"], f"{path.name}: parameter {name} has no comment"


@pytest.mark.parametrize("name", ["annual_review.yaml", "monthly.yaml"])
def test_params_files_match_their_notebooks(name, tmp_path):
    p = fparams.load(ROOT / "params" / name)
    passed = runner.notebook_parameters(p, ROOT / "params" / name, tmp_path)
    for nb in p.notebooks:
        path = ROOT / "notebooks" / f"{nb}.ipynb"
        assert path.exists(), f"{name} lists {nb}, which is not in notebooks/"
        declared = pm.inspect_notebook(str(path))
        assert set(passed) <= set(declared)
        for key, value in passed.items():
            assert declared[key]["inferred_type_name"] == type(value).__name__


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(execute.RunError, match="not declared"):
        runner.check_notebook_parameters(NOTEBOOKS[0], {"params_file": "x", "surprise": 1})
