"""The phase split of benchmarks/phases.py: its classifier and arithmetic, not timings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import phases  # noqa: E402

SITE = "/venv/lib/python3.12/site-packages"
CELL = ("02_churn_root_cause[3]", "<module>")


def stack(*frames: tuple[str, str]) -> list[tuple[str, str]]:
    """Innermost first, ending in a notebook cell as a sampled stack does."""
    return [*frames, CELL]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # a query: DuckDB's Python side under Ibis under fupan's engine
        (
            [
                (f"{SITE}/ibis/backends/duckdb/__init__.py", "execute"),
                ("/repo/lib/fupan/io/engine.py", "to_pandas"),
            ],
            "queries",
        ),
        ([(f"{SITE}/sqlglot/generator.py", "sql")], "queries"),
        ([(f"{SITE}/pyarrow/pandas_compat.py", "table_to_dataframe")], "queries"),
        # numpy.linalg inside scikit-learn inside fupan.models: a fit
        (
            [
                (f"{SITE}/numpy/linalg/linalg.py", "solve"),
                (f"{SITE}/sklearn/linear_model/_logistic.py", "fit"),
                ("/repo/lib/fupan/models/logit.py", "fit"),
            ],
            "fits",
        ),
        # pandas work inside a model: the innermost matching frame is the model's
        (
            [
                (f"{SITE}/pandas/core/frame.py", "__getitem__"),
                ("/repo/lib/fupan/models/hazard.py", "design"),
            ],
            "fits",
        ),
        ([(f"{SITE}/scipy/optimize/_minimize.py", "minimize")], "fits"),
        # drawing inside savefig is a chart; PIL's file save inside savefig is writing
        (
            [
                (f"{SITE}/matplotlib/artist.py", "draw_wrapper"),
                (f"{SITE}/matplotlib/backends/backend_agg.py", "draw"),
                (f"{SITE}/matplotlib/figure.py", "savefig"),
            ],
            "charts",
        ),
        (
            [
                (f"{SITE}/PIL/ImageFile.py", "_save"),
                (f"{SITE}/PIL/Image.py", "save"),
                (f"{SITE}/matplotlib/image.py", "imsave"),
                (f"{SITE}/matplotlib/figure.py", "savefig"),
            ],
            "writing",
        ),
        ([(f"{SITE}/seaborn/categorical.py", "barplot")], "charts"),
        ([("/repo/lib/fupan/report/plots/churn.py", "drivers")], "charts"),
        # writers: pandas' CSV formatter, openpyxl, JSON, nbformat, fupan's exports
        (
            [
                (f"{SITE}/pandas/io/formats/csvs.py", "_save_chunk"),
                (f"{SITE}/pandas/core/generic.py", "to_csv"),
            ],
            "writing",
        ),
        ([(f"{SITE}/openpyxl/cell/_writer.py", "_set_attributes")], "writing"),
        ([("/usr/lib/python3.12/json/encoder.py", "iterencode")], "writing"),
        ([(f"{SITE}/nbformat/v4/nbjson.py", "writes")], "writing"),
        (
            [
                (f"{SITE}/pandas/core/frame.py", "itertuples"),
                ("/repo/lib/fupan/io/exports.py", "write_workbook"),
            ],
            "writing",
        ),
        # a parquet write goes through pyarrow but is writing (the writer's name is inner)
        (
            [
                (f"{SITE}/pyarrow/parquet/core.py", "write_table"),
                (f"{SITE}/pandas/io/parquet.py", "write"),
            ],
            "writing",
        ),
        # pandas work in fupan and the cells themselves: other
        (
            [
                (f"{SITE}/pandas/core/groupby/groupby.py", "sum"),
                ("/repo/lib/fupan/chapters/churn.py", "review"),
            ],
            "other",
        ),
        ([], "other"),
        # a module imported on first use: imports, whatever its body runs
        (
            [
                (f"{SITE}/sklearn/base.py", "<module>"),
                ("<frozen importlib._bootstrap>", "_call_with_frames_removed"),
                ("/repo/lib/fupan/models/trees.py", "fit"),
            ],
            "imports",
        ),
    ],
)
def test_each_sample_goes_to_the_innermost_matching_frame(frames, expected):
    assert phases.classify(stack(*frames)) == expected


def test_a_query_called_from_a_model_is_a_query():
    s = stack(
        (f"{SITE}/duckdb/__init__.py", "execute"),
        ("/repo/lib/fupan/models/design.py", "matrix"),
    )
    assert phases.classify(s) == "queries"


def test_windows_paths_are_classified_alike():
    s = stack(("C:\\venv\\Lib\\site-packages\\matplotlib\\axes\\_axes.py", "bar"))
    assert phases.classify(s) == "charts"


def test_the_import_lines_are_the_notebooks_top_level_imports_only():
    cells = [
        "from fupan.chapters import churn\nimport math\n\nnb = start(p)",
        "def f():\n    import os\n    return os.sep\nx = f()",
        "import numpy as np, pandas as pd",
        "this is not python (",
    ]
    assert phases.import_code(cells).splitlines() == [
        "from fupan.chapters import churn",
        "import math",
        "import numpy as np, pandas as pd",
    ]


def test_the_split_adds_up_to_the_measured_total():
    kernel = {"seconds": 3.0, "kernel_seconds": 1.0}
    cells = {
        "cells_seconds": 10.0,
        # 9.5 s sampled of 10 s measured: every category is scaled by 10/9.5
        "sampled": {
            "queries": 4.75,
            "fits": 1.9,
            "charts": 0.95,
            "writing": 0.95,
            "other": 0.475,
            "imports": 0.475,
        },
    }
    s = phases.split(kernel, cells)
    assert s["total"] == pytest.approx(13.0)
    assert sum(s[c] for c in phases.COLUMNS) == pytest.approx(13.0)
    assert s["queries"] == pytest.approx(5.0)
    assert s["kernel+imports"] == pytest.approx(3.5)


def test_the_table_gives_each_column_and_its_share():
    s = {"total": 10.0, "kernel+imports": 2.0, "queries": 5.0, "fits": 1.0}
    s.update(charts=1.0, writing=0.5, other=0.5)
    rows = {"02_churn_root_cause": {"split": s, "kernel": {"kernel_seconds": 1.2}}}
    text = phases.table(rows, 0.005)
    line = next(ln for ln in text.splitlines() if ln.startswith("| 02_churn"))
    assert "| 10.0 |" in line and "5.0 (50%)" in line and "start 1.2" in line
    assert "every 5 ms" in text and "sample" in text


def test_the_sampler_charges_a_busy_loop_to_its_category():
    # code compiled under a scikit-learn path: its frames look like a fit's
    code = compile(
        "def busy(sampler):\n"
        "    import time\n"
        "    end = time.perf_counter() + 10\n"
        "    while sampler.samples < 40 and time.perf_counter() < end:\n"
        "        sum(range(1000))\n",
        f"{SITE}/sklearn/fake_fit.py",
        "exec",
    )
    scope: dict = {}
    exec(code, scope)
    sampler = phases.PhaseSampler(interval=0.002)
    sampler.start()
    sampler.on.set()
    scope["busy"](sampler)
    sampler.on.clear()
    sampler.stop.set()
    sampler.join()
    total = sum(sampler.seconds.values())
    assert sampler.samples >= 40
    assert sampler.seconds["fits"] > 0.8 * total


def test_where_names_the_innermost_fupan_function_and_its_caller():
    s = stack(
        (f"{SITE}/ibis/expr/types/core.py", "execute"),
        ("/repo/lib/fupan/io/engine.py", "to_pandas"),
        ("/repo/lib/fupan/chapters/followup/cut.py", "as_of_cut"),
        ("/repo/lib/fupan/chapters/followup/review.py", "follow_up"),
    )
    assert phases.fupan_frame(s) == "io/engine.py:to_pandas < chapters/followup/cut.py:as_of_cut"
    assert phases.fupan_frame(stack((f"{SITE}/pandas/core/frame.py", "merge"))) == CELL[0]
    assert phases.fupan_frame([]) == "(outside fupan)"


def test_while_the_main_thread_waits_on_a_pool_a_busy_worker_is_charged():
    main = stack(
        ("/usr/lib/python3.12/threading.py", "wait"),
        ("/usr/lib/python3.12/concurrent/futures/_base.py", "result"),
        ("/repo/lib/fupan/chapters/simulate/common.py", "_in_order"),
    )
    idle = [
        ("/usr/lib/python3.12/threading.py", "wait"),
        ("/usr/lib/python3.12/concurrent/futures/thread.py", "_worker"),
    ]
    busy = [
        (f"{SITE}/numpy/linalg/linalg.py", "solve"),
        ("/repo/lib/fupan/models/logit.py", "fit"),
        ("/usr/lib/python3.12/concurrent/futures/thread.py", "run"),
    ]
    assert phases.waiting(main) and phases.waiting(idle) and not phases.waiting(busy)
    assert phases.classify(phases.busiest(main, [idle, busy])) == "fits"
    # no busy worker: the main thread's own stack (its innermost fupan frame decides)
    assert phases.busiest(main, [idle]) is main
    # the main thread working: its stack, whatever the workers do
    working = stack(("/repo/lib/fupan/report/plots/churn.py", "drivers"))
    assert phases.classify(phases.busiest(working, [busy])) == "charts"


def test_the_after_table_goes_between_its_markers_and_keeps_the_before_one(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# B\n\n<!-- phases-before -->\nOLD BEFORE\n<!-- /phases-before -->\n\n"
        "<!-- phases-after -->\n<!-- /phases-after -->\n\n<!-- latest -->\nladder\n",
        encoding="utf-8",
    )
    phases.write_readme("| table |", "merged code (load 1.0)", "after", readme)
    text = readme.read_text(encoding="utf-8")
    assert "OLD BEFORE" in text
    after = text.split("<!-- phases-after -->")[1].split("<!-- /phases-after -->")[0]
    assert "#### merged code (load 1.0)" in after and "| table |" in after
