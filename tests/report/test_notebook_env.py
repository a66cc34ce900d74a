"""Notebooks as an analyst runs them: from any folder, quiet, with their scratch output
where the docs say (issue 20)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from conftest import ROOT
from fupan.io import exports
from fupan.report import notebook
from fupan.report.results import Recorder

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# --- params found from any folder -----------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("cwd", ["", "notebooks"], ids=["repo-root", "notebooks"])
def test_default_params_file_is_found_from_root_and_notebooks(path, cwd, monkeypatch):
    default = pm.inspect_notebook(str(path))["params_file"]["default"].strip("\"'")
    monkeypatch.chdir(ROOT / cwd)
    found = notebook.find_params(default)
    assert found.is_file() and found.parent == ROOT / "params", found


def test_relative_params_file_is_looked_for_upwards(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    target = tmp_path / "cfg" / "mine.yaml"
    target.write_text("x: 1\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert notebook.find_params("cfg/mine.yaml") == target.resolve()
    # the working folder wins over a folder above it
    (deep / "cfg").mkdir()
    (deep / "cfg" / "mine.yaml").write_text("x: 2\n")
    assert notebook.find_params("cfg/mine.yaml") == (deep / "cfg" / "mine.yaml").resolve()


def test_empty_params_file_takes_the_environment_variable(tmp_path, monkeypatch):
    target = tmp_path / "p.yaml"
    target.write_text("x: 1\n")
    monkeypatch.setenv(notebook.PARAMS_ENV, str(target))
    assert notebook.find_params("") == target.resolve()
    monkeypatch.delenv(notebook.PARAMS_ENV)
    with pytest.raises(FileNotFoundError, match="FUPAN_PARAMS"):
        notebook.find_params("")


def test_missing_params_file_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        notebook.find_params("params/nope.yaml")
    msg = str(err.value)
    assert str(tmp_path / "params" / "nope.yaml") in msg
    assert "-p params_file" in msg and notebook.PARAMS_ENV in msg


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_markdown_cell_says_how_to_use_other_data(path):
    first = nbformat.read(str(path), as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert f"papermill notebooks/{path.name}" in first.source
    assert "-p params_file" in first.source and "fupan-scratch" in first.source


def test_scratch_folder_is_one_folder():
    """A notebook run on its own: results.json and exports/ in the folder its docs name."""
    assert notebook.SCRATCH_DIR.name == "fupan-scratch"
    assert Recorder(None).run_dir == notebook.SCRATCH_DIR
    assert exports.export_dir(None) == notebook.SCRATCH_DIR / "exports"


# --- quiet: no stray outputs, no font warnings ----------------------------------------------

#: calls that return what they wrote or recorded: a cell ending in one shows it as output
RETURNS_A_VALUE = ("nb.record(", "nb.show(", "exports.write(", "kpi.save_month(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_ends_in_a_value_it_would_display(path):
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        body = ast.parse(cell.source).body
        last = body[-1] if body else None
        if isinstance(last, ast.Expr) and not cell.source.rstrip().endswith(";"):
            assert not ast.unparse(last).startswith(RETURNS_A_VALUE), (
                f"{path.name} cell {i} ends in {ast.unparse(last)[:60]!r}: its value would be "
                "the cell's output; end it with ';'"
            )


def test_export_returns_nothing(tmp_path):
    import pandas as pd

    ctx = notebook.Context(None, None, None, None, str(tmp_path))  # type: ignore[arg-type]
    assert ctx.export(pd.DataFrame({"a": [1]}), "x", xlsx=False) is None
    assert (tmp_path / "exports" / "x.csv").is_file()


def test_show_records_a_slide_then_shows_its_parts_in_order(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    import pandas as pd
    from fupan.chapters.slide import Slide
    from fupan.report import show

    shown = []
    monkeypatch.setattr(show, "_display", lambda data, kind: shown.append(kind))
    monkeypatch.setattr(show, "_tile_style", lambda: None)
    results = Recorder(str(tmp_path))
    ctx = notebook.Context(SimpleNamespace(lang="en"), None, results, None, str(tmp_path))  # type: ignore[arg-type]
    drawn = []

    def plot(frame):
        drawn.append(frame)
        fig, ax = plt.subplots()
        ax.set_title("Churn by tier")
        return ax

    s = Slide(
        "Churn is up",
        "Gold churns most.",
        records={"churn.x": 1},
        skips={"y": "No survey was given in the year."},
        missing="surveys",
        tiles=[("churn", "12%", None)],
        table=pd.DataFrame({"a": [1, 2]}),
        columns={"a": "A"},
        chart=pd.DataFrame({"rate": [0.1]}),
        notes=["Rates over 12 months."],
        exports={"x": pd.DataFrame({"a": [1]})},
    )
    with pytest.raises(ValueError, match="nb.section"):
        ctx.show(s, plot)
    ctx.section = "churn"
    shown.clear()
    assert ctx.show(s, plot) is True
    assert shown == ["slide", "missing", "tiles", "table", "figure", "note"]
    assert len(drawn) == 1 and drawn[0] is s.chart
    assert results["churn.x"] == 1
    assert results["churn.skipped"]["y"] == "No survey was given in the year."
    assert (tmp_path / "exports" / "x.csv").is_file()
    # a slide that cannot be made: its words and the reason, nothing else
    shown.clear()
    no = Slide("No drivers", "Two years of history would allow them.", skip="no_slide")
    assert ctx.show(no, plot) is False and shown == ["slide"] and len(drawn) == 1
    assert results["churn.skipped"]["no_slide"] == no.reason


FONT_CHECK = """
import logging, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("matplotlib").addHandler(Keep())
from fupan.report import charts
if sys.argv[1] == "mplfonts-only":
    # a machine without Debian's CJK fonts: matplotlib's own scan of the system folders
    # (3.11 lists every face of a .ttc) must not find them either
    from matplotlib import font_manager
    charts.SYSTEM_CJK_DIRS = ()
    font_manager.fontManager.ttflist = [
        f for f in font_manager.fontManager.ttflist if "CJK" not in f.name
    ]
charts.setup()
fig, ax = charts.new("流失率 churn rate", "月份", "客户")
fig.suptitle("年度复盘 review", fontweight="bold")
fig.savefig(sys.argv[2])
print(charts._has_bold(charts.CJK_FAMILY))
print("\\n".join(records))
"""


@pytest.mark.parametrize("fonts", ["installed", "mplfonts-only"])
def test_bold_chinese_titles_draw_without_font_warnings(fonts, tmp_path):
    if fonts == "installed":
        from fupan.report import charts

        if not charts.system_cjk_fonts():
            pytest.skip("Debian's fonts-noto-cjk is not installed (make browser-deps)")
    out = subprocess.run(
        [sys.executable, "-c", FONT_CHECK, fonts, str(tmp_path / "c.png")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert out.returncode == 0, out.stderr
    has_bold, *logged = out.stdout.splitlines()
    assert has_bold == ("True" if fonts == "installed" else "False")
    assert not [m for m in logged if "findfont" in m], logged
    assert "findfont" not in out.stderr


def _quiet_problems(path: Path) -> list[str]:
    """Font warnings, errors and displayed path lists in an executed notebook."""
    problems = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        for o in cell.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            if "findfont" in text or "PosixPath(" in text or o["output_type"] == "error":
                problems.append(f"cell {i} {o['output_type']}: {text[:120]}")
    return problems


@pytest.mark.slow
def test_papermill_from_the_repo_root_runs_quietly(demo_small, tmp_path):
    """The command the README shows, typed at the repository root: no --cwd."""
    out = tmp_path / "00.ipynb"
    run = subprocess.run(
        [sys.executable, "-m", "papermill", "notebooks/00_data_check.ipynb", str(out)]
        + ["-p", "lang", "en", "-p", "data", str(demo_small)]
        + ["-p", "run_dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert _quiet_problems(out) == []
    assert (tmp_path / "run" / "results.json").is_file()
    assert "findfont" not in run.stderr


@pytest.mark.slow
def test_every_notebook_of_a_review_is_quiet(review_run):
    """No font warning, no error, no displayed return value in any executed chapter."""
    executed = sorted((review_run.run_dir / "notebooks").glob("*.ipynb"))
    assert executed
    for path in executed:
        assert _quiet_problems(path) == [], path.name
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            kinds = {o["output_type"] for o in cell.get("outputs", [])}
            assert "execute_result" not in kinds, (path.name, cell["source"][-80:])


# --- KPI tiles styled in Lab as on the slide ------------------------------------------------


def test_tiles_bring_the_decks_style_and_the_deck_skips_it(monkeypatch, tmp_path):
    from fupan.report import deck, show

    shown = []
    monkeypatch.setattr(
        "IPython.display.display",
        lambda data, raw=False, metadata=None: shown.append((data, metadata)),
    )
    show.slide("Churn is up")
    show.kpis([("churn", "12%", "red"), ("customers", "1,200", None)])
    style = [d["text/html"] for d, meta in shown if meta is None]
    assert len(style) == 1 and style[0].startswith("<style>")
    css = show.DECK_CSS.read_text(encoding="utf-8")
    for rule in (line for line in css.splitlines() if line.startswith(".fupan-tiles")):
        assert rule in style[0]
    assert "--red: #c0392b" in style[0]  # the status colours the rules refer to
    # the executed notebook as the deck reads it: the style output is not slide content
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data=d, metadata=m or {}) for d, m in shown
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(path))
    section = deck.slides_from_notebook(path, "k", "t", "q")
    (only,) = section.slides
    assert "fupan-tiles" in "".join(only.body) and "<style>" not in "".join(only.body)


# --- git hygiene: the nbstripout filter `make setup` installs ---------------------------------


def _strip_command() -> list[str]:
    """The filter's arguments, as the Makefile's hooks target gives them to git."""
    import shlex

    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "--eval", "_nbstrip: ; $(info $(NBSTRIP))@:", "_nbstrip"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [sys.executable, *shlex.split(out)]


def _strip(text: str) -> str:
    run = subprocess.run(_strip_command(), input=text, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_filter_leaves_committed_notebooks_as_they_are(path):
    """Installing the filter must not make every notebook look modified."""
    pytest.importorskip("nbstripout")
    text = path.read_text(encoding="utf-8")
    assert _strip(text) == text


def test_a_notebook_saved_in_lab_is_committed_as_it_was(tmp_path):
    """Outputs, execution counts, the kernel's language details and papermill's cell: gone."""
    pytest.importorskip("nbstripout")
    path = ROOT / "notebooks" / "00_data_check.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.metadata["execution"] = {"iopub.status.busy": "2026-12-07T18:00:00Z"}
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stderr", text="working\n"),
            nbformat.v4.new_output(
                "execute_result", data={"text/plain": "1"}, execution_count=n + 1
            ),
        ]
    injected = nbformat.v4.new_code_cell('lang = "en"', metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(2, injected)
    nb.metadata.language_info.update(
        version="3.11.7", mimetype="text/x-python", file_extension=".py", pygments_lexer="ipython3"
    )
    nb.metadata["papermill"] = {"duration": 1.0}
    assert _strip(nbformat.writes(nb) + "\n") == path.read_text(encoding="utf-8")
