"""Progress bars: drawn only where someone watches, and never change a result (issue 20)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.core import params as fparams
from fupan.core import progress
from fupan.io import data as fdata
from fupan.measures import features as F
from fupan.models import health


@pytest.fixture
def headless(monkeypatch):
    """No terminal, no Jupyter front end, FUPAN_PROGRESS unset: as under the runner."""
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(sys, "__stderr__", None)


def test_headless_runs_draw_nothing(headless):
    items = [1, 2, 3]
    assert not progress.enabled()
    assert progress.bar(items, "x") is items  # the very iterable: nothing in between


@pytest.mark.parametrize(
    ("value", "on"), [("0", False), ("off", False), ("1", True), ("yes", True)]
)
def test_environment_variable_decides(headless, monkeypatch, value, on):
    monkeypatch.setenv(progress.ENV, value)
    assert progress.enabled() is on


def test_a_terminal_sees_bars_unless_switched_off(headless, monkeypatch):
    monkeypatch.setattr(sys, "__stderr__", types.SimpleNamespace(isatty=lambda: True))
    assert progress.enabled()
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.enabled()


def test_a_kernel_started_by_papermill_is_not_a_front_end(headless, monkeypatch):
    """papermill's kernel is an ipykernel like Lab's; only Jupyter's server names a session."""
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    assert not progress.enabled()
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/notebooks/02_churn_root_cause.ipynb")
    assert progress.enabled()


def test_a_bar_yields_the_same_items_in_order_and_reports(headless, monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)

    def gen():
        yield from range(5)

    assert list(progress.bar(gen(), "refits", total=5)) == [0, 1, 2, 3, 4]
    assert "refits" in capsys.readouterr().err


def test_results_are_the_same_with_and_without_bars(tmp_path, headless, monkeypatch):
    rng = np.random.default_rng(4)
    y = rng.random(800) < 0.2
    a = np.where(y, rng.normal(0, 1, 800), rng.normal(1, 1, 800))
    b = rng.normal(size=800)
    ids = np.arange(800) // 2
    d = tiny.write(tmp_path / "d")
    ds = fdata.load(fparams.load(tiny.params_file(tmp_path, d)))
    dates = ["2025-05-01", "2025-07-01", "2026-10-01"]
    try:
        off = (health.compare_auc(a, b, y, ids, n_boot=40), F.snapshots(ds, dates, 90))
        monkeypatch.setenv(progress.ENV, "1")
        on = (health.compare_auc(a, b, y, ids, n_boot=40), F.snapshots(ds, dates, 90))
    finally:
        ds.close()
    assert on[0] == off[0]
    pd.testing.assert_frame_equal(on[1], off[1])


def test_a_bar_outside_a_front_end_is_text_even_with_ipykernel_loaded(
    headless, monkeypatch, capsys
):
    # papermill kernels and test harnesses import ipykernel too; a widget bar there would
    # print nothing readable (seen in CI once the lab extra brought ipywidgets)
    import ipykernel  # noqa: F401

    monkeypatch.setenv(progress.ENV, "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    assert list(progress.bar(iter(range(3)), "snapshots", total=3)) == [0, 1, 2]
    assert "snapshots" in capsys.readouterr().err
