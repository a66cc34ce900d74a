"""Run a review's notebooks inside the test process, for the data-shape matrix.

A kernel start and the package imports cost seconds per notebook; the shape matrix runs a
dozen small reviews, so most of its time would go there. This harness executes each
notebook's code cells in one IPython shell in this process (a fresh namespace per
notebook), keeps what the cells displayed as notebook outputs, and builds the deck from
them with the runner's own pieces: the data's strict load, the run section of results.json,
the consistency gate, the summary and the deck. The runner's own path (kernels, warm
processes, the manifest, the swap into place) stays covered by the session's review
(``review_run``), the installed wheel's review, one shape of ``tests/e2e/test_shapes.py``
and ``tests/run``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat


@dataclass
class InProcessRun:
    run_dir: Path
    deck: Path
    results: dict[str, Any]
    inputs: dict[str, Any]  # the input files' fingerprints, as a manifest's "inputs"


class CellError(RuntimeError):
    pass


def _shell() -> Any:
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class Capture(DisplayPublisher):
        outputs: list[dict[str, Any]] = []

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False):  # noqa: ARG002
            type(self).outputs.append(
                nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})
            )

        def clear_output(self, wait=False):  # noqa: ARG002
            pass

    shell = InteractiveShell.instance()
    if not isinstance(shell.display_pub, Capture):
        shell.display_pub = Capture(shell=shell)
        # a cell's last expression is a notebook's execute_result; the deck ignores it
        shell.displayhook.write_output_prompt = lambda: None
        shell.displayhook.write_format_data = lambda *a, **k: None
    return shell


def execute(src: Path, out: Path, parameters: dict[str, Any]) -> None:
    """Execute ``src`` with ``parameters`` injected after its parameters cell; write ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    shell = _shell()
    shell.reset(new_session=False)
    nb = nbformat.read(str(src), as_version=4)
    injected = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        code = cell.source + ("\n" + injected if "parameters" in tags else "")
        shell.display_pub.outputs = []
        type(shell.display_pub).outputs = shell.display_pub.outputs
        res = shell.run_cell(code, store_history=False, silent=False)
        cell.outputs = list(shell.display_pub.outputs)
        err = res.error_before_exec or res.error_in_exec
        if err is not None:
            nbformat.write(nb, str(out))
            raise CellError(f"{src.name} cell {i}: {type(err).__name__}: {err}") from err
    nbformat.write(nb, str(out))


def review(params_path: Path, reports: Path, **overrides: Any) -> InProcessRun:
    """The review of ``params_path`` (with ``overrides`` of its fields, as
    ``params.load`` takes them) with every notebook run in this process."""
    import matplotlib.pyplot as plt
    from fupan.core import params as fparams
    from fupan.core import paths
    from fupan.io import data as fdata
    from fupan.report import deck, gate, summary
    from fupan.report.results import RESULTS_NAME, Recorder
    from fupan.run import render, runner
    from threadpoolctl import threadpool_limits

    params = fparams.load(params_path, **overrides)
    run_dir = reports / params.context.run_name
    (run_dir / "notebooks").mkdir(parents=True)
    (run_dir / "exports").mkdir()
    ds = fdata.load(params, work_dir=paths.work_dir(run_dir), strict=True, handoff=False)
    inputs = dict(ds.fingerprints)
    ds.close()
    # the run section as runner.record_run_section writes it, so results.json compares
    # equal with a `fupan review` of the same params (tests/e2e/test_reproducible.py)
    Recorder(run_dir).record(
        "run",
        {
            "name": params.name,
            "kind": params.kind,
            "as_of": params.as_of,
            "period_start": params.period_start,
            "lang": params.lang,
        },
    )
    passed = runner.notebook_parameters(params, params_path, run_dir)
    sections = []
    # the runner's kernels get one BLAS/OpenMP thread when notebooks run side by side
    # (execute._env); the same here, so a sum comes out to the same last bit
    threads = 1 if params.parallel_notebooks > 1 else None
    with threadpool_limits(threads):
        for nb in params.notebooks:
            out = run_dir / "notebooks" / f"{nb}.ipynb"
            execute(runner.NOTEBOOK_DIR / f"{nb}.ipynb", out, passed)
            plt.close("all")
            title, question = render._chapter_labels(nb, params.lang)
            sections.append(deck.slides_from_notebook(out, nb, title, question))
    results = json.loads((run_dir / RESULTS_NAME).read_text(encoding="utf-8"))
    gate.enforce(results, params)  # as the runner does: shared metrics agree
    if params.kind == "annual_review":
        sections = summary.sections(results, params) + sections
    meta = {
        "name": params.name,
        "as_of": params.as_of.isoformat(),
        "period_start": params.period_start.isoformat() if params.period_start else "",
    }
    path = deck.render(
        sections, meta, render.deck_labels(params.lang), params.lang, run_dir / "deck.html"
    )
    return InProcessRun(run_dir, path, results, inputs)
