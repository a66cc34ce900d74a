"""Shared fixtures: params files (make_params), the tiny hand-made dataset, generated demos
and the session's end-to-end review, each made once per session where tests only read it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

TESTS = Path(__file__).parent
ROOT = TESTS.parent
# tests/ is on sys.path through `pythonpath` in pyproject.toml (also for tests in subfolders)
warnings.filterwarnings("ignore", message=".*infer_string.*")

import paramfile  # noqa: E402
import tiny  # noqa: E402

# Property tests draw the same examples on every run, so CI's verdict depends on the commit
# alone: a new random draw could otherwise turn a landed commit red. To search afresh while
# developing, run with FUPAN_HYPOTHESIS=explore.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("FUPAN_HYPOTHESIS", "deterministic"))


@pytest.fixture
def make_params(tmp_path: Path):
    """Write a params file: `make_params(data, extra, *, folder, load, **fields)`.

    The one way tests build params (see `paramfile.write` for the fields). It writes into
    `folder` (default: the test's tmp_path) and returns the path, or the loaded `Params`
    with `load=True`. `data=None` points `data.source` at the folder itself.
    """
    from fupan.core import params as fparams

    def make(
        data=None, extra: str = "", *, folder: Path | None = None, load: bool = False, **fields
    ):
        folder = Path(folder) if folder is not None else tmp_path
        path = paramfile.write(folder, folder if data is None else data, extra, **fields)
        return fparams.load(path) if load else path

    return make


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return tiny.write(tmp_path / "data")


@pytest.fixture
def tiny_params(tmp_path: Path, tiny_data: Path) -> Path:
    return tiny.params_file(tmp_path, tiny_data)


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 generated customers (all eight tables, truth.json), made once per session."""
    demo = pytest.importorskip("fupan.demo")
    out = tmp_path_factory.mktemp("demo") / "data"
    demo.generate(out, customers=1500, seed=7)
    return out


@pytest.fixture(scope="session")
def demo_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo (5,000 customers, seed 42: what `make data` writes), made once per
    session for the chapters' acceptance tests. Read-only: copy it before changing a table."""
    demo = pytest.importorskip("fupan.demo")
    out = tmp_path_factory.mktemp("demo5k") / "data"
    demo.generate(out, customers=5000, seed=42)
    return out


def _golden_tool():
    """tools/golden.py as a module (its CUSTOMERS, DEMO_SEED and comparison)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fupan_golden", ROOT / "tools" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden_tool():
    return _golden_tool()


@pytest.fixture(scope="session")
def review_run(tmp_path_factory: pytest.TempPathFactory, golden_tool):
    """One full `fupan review` with the shipped params/annual_review.yaml (every notebook it
    lists) on the golden demo data (300 customers, seed 1; `work/data`), run once per session.

    It is the run `tools/golden.py` pins, so tests/test_golden.py compares this run with
    tests/golden/ instead of running its own; the reproducibility test runs it a second time.
    """
    from fupan import demo
    from fupan.core import params as fparams
    from fupan.run import runner

    work = tmp_path_factory.mktemp("review")
    data = work / "data"
    demo.generate(data, customers=golden_tool.CUSTOMERS, seed=golden_tool.DEMO_SEED)
    pf = ROOT / "params" / "annual_review.yaml"
    params = fparams.load(pf, **{"data.source": str(data)})
    return runner.run(params, pf, reports_dir=work / "reports", log=lambda m: None)


def assign_by_frame(frame: pd.DataFrame, rules: list) -> pd.Series:
    """segments.assign_rules as first written (the reference its replacement must equal): a frame of masks reduced row by row."""
    masks = pd.DataFrame(
        {r.code: r.predicate(frame).fillna(False).astype(bool) for r in rules}, index=frame.index
    )
    hits = masks.sum(axis=1)
    if len(frame) and not (hits == 1).all():
        bad = frame.index[hits != 1][:5].tolist()
        raise ValueError(f"segment rules are not mutually exclusive and exhaustive (rows {bad})")
    return masks.idxmax(axis=1) if len(frame) else pd.Series([], dtype=object, index=frame.index)
