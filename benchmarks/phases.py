"""Where each notebook's time goes: kernel start + imports, queries, fits, charts, writing.

    python benchmarks/phases.py --data DIR [--params FILE] [NOTEBOOK ...]
    python benchmarks/profile_notebook.py --phases --data DIR [--params FILE] [NOTEBOOK ...]

Without notebook names, every notebook the params list, in their numbered order (each
chapter then finds the run cache the earlier ones left, as in a review). Per notebook:

- **kernel + imports**: a Jupyter kernel started as papermill starts it (``jupyter_client``,
  ``python3`` kernel, Unix sockets, the runner's one-BLAS-thread environment), then the
  notebook's ``import`` statements executed in it; median of ``--kernel-repeats`` (3).
- **the cells**, run in a fresh process (its imports done first, untimed), with a thread
  that samples the main thread's stack every ``--interval`` seconds (5 ms) and charges the
  time since its last sample to one category, by the innermost frame that matches one
  (:func:`classify`): **queries** (Ibis, DuckDB, sqlglot, pyarrow, ``fupan.io.engine``),
  **fits** (scikit-learn, statsmodels, scipy.optimize/linalg, numpy.linalg,
  ``fupan.models``), **charts** (matplotlib, seaborn, PIL, ``fupan.report.plots``/``charts``),
  **writing** (CSV/Excel/Parquet/JSON writers, openpyxl, nbformat, PIL's file save, functions
  named ``write*``/``save``/``dump``/``export``/``record``), **other** (the rest: pandas and
  Python work in fupan and the cells). Samples taken inside an import (a module imported
  on first use) count as imports, added to the kernel + imports column. While the main
  thread waits on a thread pool (a lock, a future, a queue), the sample goes to the first
  other thread that is not waiting (:func:`busiest`).

It is a sample: a C call that holds the GIL delays the next sample, and its time goes to
the stack seen then. Notebooks run one at a time here; a review runs two at a time, so its
per-notebook seconds (the manifest's) are larger. Writes ``<run-dir>/phases.json`` (adding
to the notebooks an earlier call profiled into the same folder) and,
with ``--readme TITLE``, the table into ``benchmarks/README.md`` (between
``<!-- phases-after -->`` markers, or ``phases-before`` with ``--column before``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ("queries", "fits", "charts", "writing", "other")
COLUMNS = ("kernel+imports", "queries", "fits", "charts", "writing", "other")


def marks(column: str) -> tuple[str, str]:
    """The README markers of the ``before`` or ``after`` table."""
    return f"<!-- phases-{column} -->", f"<!-- /phases-{column} -->"


# (category, path fragments, function names): a frame matches when its file path contains
# one of the fragments, or its function's name is one of the names. Checked in this order
# within one frame, so a writer inside pandas or PIL counts as writing.
WRITE_NAMES = frozenset(
    {
        "to_csv",
        "to_excel",
        "to_parquet",
        "to_json",
        "dump",
        "dumps",
        "save",
        "_save",
        "imsave",
        "export",
        "record",
    }
)
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "writing",
        (
            "/openpyxl/",
            "/xlsxwriter/",
            "/nbformat/",
            "/pandas/io/formats/csvs.py",
            "/pandas/io/excel/",
            "/json/encoder.py",
            "/PIL/PngImagePlugin.py",
        ),
    ),
    ("queries", ("/ibis/", "/duckdb/", "/sqlglot/", "/pyarrow/", "/fupan/io/engine.py")),
    (
        "fits",
        (
            "/sklearn/",
            "/statsmodels/",
            "/scipy/optimize/",
            "/scipy/linalg/",
            "/numpy/linalg/",
            "/fupan/models/",
            # chapter 4's discrete-time hazard model (its bootstrap refits) lives in its room
            "/fupan/chapters/simulate/hazard.py",
        ),
    ),
    (
        "charts",
        ("/matplotlib/", "/seaborn/", "/PIL/", "/fupan/report/plots/", "/fupan/report/charts.py"),
    ),
)


def _is_write(func: str) -> bool:
    return func in WRITE_NAMES or func.startswith("write")


def classify(stack: Sequence[tuple[str, str]]) -> str:
    """The category of one sampled stack, given innermost frame first.

    Parameters
    ----------
    stack : sequence of (file path, function name), innermost frame first.

    Returns
    -------
    str
        ``"imports"`` when any frame is the import machinery (a module body runs whatever it
        contains), else the category of the innermost frame that matches a rule (a writer's
        name or path first, then queries, fits, charts), else ``"other"``.
    """
    if any(path.startswith("<frozen importlib") for path, _ in stack):
        return "imports"
    for path, func in stack:
        path = path.replace("\\", "/")
        if _is_write(func):
            return "writing"
        for category, fragments in RULES:
            if any(f in path for f in fragments):
                return category
    return "other"


def frames_of(frame) -> list[tuple[str, str]]:
    """(file, function) of ``frame`` and every caller, innermost first."""
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    return out


# The main thread waits here while a pool's workers do the work (``fupan`` refits bootstrap
# replicates on two threads); an idle worker waits here for its next item.
WAIT_PATHS = ("/threading.py", "/concurrent/futures/", "/queue.py", "/multiprocessing/pool.py")


def waiting(stack: Sequence[tuple[str, str]]) -> bool:
    """Whether the innermost frame is a thread waiting on a lock, a future or a queue."""
    return bool(stack) and any(w in stack[0][0].replace("\\", "/") for w in WAIT_PATHS)


def busiest(main: list[tuple[str, str]], others: Sequence[list[tuple[str, str]]]):
    """The stack a sample is charged to: the main thread's, or, while it waits on other
    threads, the first of those that is not waiting itself."""
    if not waiting(main):
        return main
    return next((st for st in others if st and not waiting(st)), main)


def fupan_frame(stack: Sequence[tuple[str, str]], depth: int = 2) -> str:
    """``module.py:function < caller`` of the ``depth`` innermost frames in fupan's package
    (the caller says who asked ``io/engine.py:to_pandas``), else the notebook cell."""
    found = []
    for path, func in stack:
        path = path.replace("\\", "/")
        if "/fupan/" in path:
            found.append(f"{path.rsplit('/fupan/', 1)[1]}:{func}")
        elif path.endswith("]"):  # a notebook cell, "02_churn_root_cause[3]"
            found.append(path)
        if len(found) == depth or path.endswith("]"):
            break
    return " < ".join(found) or "(outside fupan)"


class PhaseSampler(threading.Thread):
    """Charges the main thread's time to categories while ``on`` is set.

    Every ``interval`` seconds the main thread's stack is read and the time since the last
    reading goes to its category (:func:`classify`), so the categories add up to the time
    sampled.
    """

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.main = threading.main_thread().ident
        self.seconds: dict[str, float] = dict.fromkeys((*CATEGORIES, "imports"), 0.0)
        self.samples = 0
        # (category, innermost fupan function) -> seconds: which of fupan's code paid it
        self.where: dict[tuple[str, str], float] = {}
        self.on = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        last = time.perf_counter()
        while not self.stop.wait(self.interval):
            now = time.perf_counter()
            if self.on.is_set():
                frames = sys._current_frames()
                others = [
                    frames_of(f) for t, f in frames.items() if t not in (self.main, self.ident)
                ]
                stack = busiest(frames_of(frames.get(self.main)), others)
                category = classify(stack)
                self.seconds[category] += now - last
                where = (category, fupan_frame(stack))
                self.where[where] = self.where.get(where, 0.0) + now - last
                self.samples += 1
            last = now


def import_code(cells: Sequence[str]) -> str:
    """The notebook's top-level ``import`` statements, one per line."""
    lines = []
    for code in cells:
        with contextlib.suppress(SyntaxError):
            for node in ast.parse(code).body:
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.append(ast.unparse(node))
    return "\n".join(lines)


def kernel_env() -> dict[str, str]:
    """A review's kernel environment: one BLAS thread (two notebooks at once), glibc's mmap
    threshold fixed (the runner's ``THREAD_VARS`` and ``MALLOC_VARS``)."""
    env = dict(os.environ)
    try:
        from fupan.run.execute import MALLOC_VARS, THREAD_VARS
    except ImportError:  # the runner moved: its values at the time of writing
        THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        MALLOC_VARS = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    for var in THREAD_VARS:
        env.setdefault(var, "1")
    for var, value in MALLOC_VARS.items():
        env.setdefault(var, value)
    return env


def kernel_once(code: str, cwd: Path) -> tuple[float, float]:
    """(seconds to a ready kernel, seconds for ``code`` in it), as papermill starts one."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="fupan-kernel-") as folder:
        ip = os.path.join(os.path.realpath(folder), "kernel")
        km = KernelManager(kernel_name="python3", transport="ipc", ip=ip)
        t0 = time.perf_counter()
        km.start_kernel(
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"], cwd=str(cwd), env=kernel_env()
        )
        kc = km.client()
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=300)
            t1 = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=600, output_hook=lambda msg: None)
            t2 = time.perf_counter()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"imports failed in the kernel: {reply['content'].get('evalue')}")
    return t1 - t0, t2 - t1


def kernel_imports(code: str, cwd: Path, repeats: int = 3) -> dict:
    """Median (over ``repeats`` fresh kernels) of kernel start, the imports, and both."""
    runs = [kernel_once(code, cwd) for _ in range(repeats)]
    return {
        "kernel_seconds": statistics.median(k for k, _ in runs),
        "import_seconds": statistics.median(i for _, i in runs),
        "seconds": statistics.median(k + i for k, i in runs),
        "runs": [[round(k, 3), round(i, 3)] for k, i in runs],
    }


def child(name: str, args: argparse.Namespace) -> dict:
    """Run one notebook's cells in this process under the sampler; its split."""
    import matplotlib
    import profile_notebook as pn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params_file, source, run_dir = pn.resolve(None, args.data, args.params, args.run_dir)
    params = pn.stage(params_file, source, run_dir)
    cells = pn.notebook_cells(name)
    t0 = time.perf_counter()
    exec(import_code([code for _, code in cells]), {})  # what the kernel column paid
    imports = time.perf_counter() - t0
    scope = pn.notebook_scope(params_file, run_dir, source, params)
    sampler = PhaseSampler(args.interval)
    sampler.start()
    cell_seconds = []
    for i, (_, code) in enumerate(cells):
        t0 = time.perf_counter()
        sampler.on.set()
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{name}[{i}]", "exec"), scope)
            finally:
                plt.close("all")
                sampler.on.clear()
        cell_seconds.append(round(time.perf_counter() - t0, 3))
    sampler.stop.set()
    sampler.join()
    return {
        "cells_seconds": sum(cell_seconds),
        "cell_seconds": cell_seconds,
        "in_process_import_seconds": imports,
        "sampled": sampler.seconds,
        "samples": sampler.samples,
        "top": [
            [category, where, round(sec, 3)]
            for (category, where), sec in sorted(sampler.where.items(), key=lambda kv: -kv[1])[:25]
        ],
    }


def split(kernel: dict, cells: dict) -> dict:
    """Seconds per column: kernel + imports (measured, plus imports sampled in the cells)
    and each category's share of the cells' time, scaled to the cells' measured seconds."""
    sampled = cells["sampled"]
    total_sampled = sum(sampled.values()) or 1.0
    scale = cells["cells_seconds"] / total_sampled
    out = {"kernel+imports": kernel["seconds"] + sampled.get("imports", 0.0) * scale}
    for c in CATEGORIES:
        out[c] = sampled.get(c, 0.0) * scale
    out["total"] = kernel["seconds"] + cells["cells_seconds"]
    return out


def table(rows: dict[str, dict], interval: float, review: dict | None = None) -> str:
    """One line per notebook: total, then each column's seconds and share of the total;
    with ``review`` (a run's manifest timings), that notebook's seconds in the review."""
    head = "| notebook | total s | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|---|---|" + "---|" * len(COLUMNS)]
    if review:
        lines = [head + " in the review s |", lines[1] + "---|"]
    sums = dict.fromkeys(("total", *COLUMNS), 0.0)
    for name, r in rows.items():
        s = r["split"]
        for k in sums:
            sums[k] += s[k]
        cells = [f"{s[c]:.1f} ({100 * s[c] / s['total']:.0f}%)" for c in COLUMNS]
        cells[0] += f"; start {r['kernel']['kernel_seconds']:.1f}"
        if review:
            cells.append(f"{review[name]:.1f}" if name in review else "–")
        lines.append(f"| {name} | {s['total']:.1f} | {' | '.join(cells)} |")
    if len(rows) > 1:
        cells = [f"{sums[c]:.1f} ({100 * sums[c] / sums['total']:.0f}%)" for c in COLUMNS]
        if review:
            cells.append(f"{sum(review.get(n, 0.0) for n in rows):.1f}")
        lines.append(f"| **all** | {sums['total']:.1f} | {' | '.join(cells)} |")
    lines.append(
        f"\nA sample: the main thread's stack every {interval * 1000:.0f} ms, each sample "
        "charged the time since the last one. Kernel + imports is the median of fresh kernels "
        '(start to ready, then the notebook\'s import lines; "start" is the kernel alone) '
        "plus imports sampled inside the cells. Notebooks one at a time, one BLAS thread"
        + (
            "; \"in the review\": the notebook's seconds in a review's manifest (papermill, "
            "its process, two notebooks at a time)."
            if review
            else "."
        )
    )
    return "\n".join(lines)


def write_readme(text: str, title: str, column: str, readme: Path | None = None) -> None:
    """The table, titled, between the README's markers of ``column`` (before or after)."""
    from readme import put_block

    readme = readme or HERE / "README.md"
    begin, end = marks(column)
    block = f"{begin}\n#### {title}\n\n{text}\n{end}"
    readme.write_text(
        put_block(readme.read_text(encoding="utf-8"), (begin, end), block), encoding="utf-8"
    )


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="default: every notebook the params list")
    ap.add_argument("--data", required=True, help="data folder")
    ap.add_argument("--params", default=None, help="default: params/annual_review.yaml")
    ap.add_argument("--run-dir", default=None, help="default: /tmp/fupan-profile-<data name>")
    ap.add_argument("--fresh", action="store_true", help="empty the run folder first")
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between samples")
    ap.add_argument("--kernel-repeats", type=int, default=3)
    ap.add_argument("--readme", default=None, help="write the table into the README, titled")
    ap.add_argument("--column", choices=("before", "after"), default="after", help="its table")
    ap.add_argument("--review", default=None, help="a review's run folder: its seconds beside")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _run_child(name: str, args: argparse.Namespace, run_dir: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--data", args.data]
    cmd += ["--run-dir", str(run_dir), "--interval", str(args.interval)]
    if args.params:
        cmd += ["--params", args.params]
    done = subprocess.run(cmd, capture_output=True, text=True, env=kernel_env())
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{name} failed:\n{done.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    sys.path.insert(0, str(HERE))
    import profile_notebook as pn

    params_file, source, run_dir = pn.resolve(None, args.data, args.params, args.run_dir)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args), default=float), flush=True)
        return 0
    if args.fresh:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    params = pn.stage(params_file, source, run_dir)
    names = args.notebooks or sorted(params.notebooks)
    rows: dict[str, dict] = {}
    for name in names:
        code = import_code([c for _, c in pn.notebook_cells(name)])
        kernel = kernel_imports(code, run_dir, args.kernel_repeats)
        cells = _run_child(name, args, run_dir)
        rows[name] = {"kernel": kernel, "cells": cells, "split": split(kernel, cells)}
        rows[name]["load"] = os.getloadavg()[0]
        s = rows[name]["split"]
        print(
            f"{name}: {s['total']:.1f}s = "
            + ", ".join(f"{c} {s[c]:.1f}" for c in COLUMNS)
            + f" ({cells['samples']} samples, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        for category, where, sec in cells["top"][:8]:  # where fupan's code paid it
            print(f"    {sec:7.2f}s  {category:8} {where}", flush=True)
    review = None
    if args.review:
        manifest = json.loads((Path(args.review) / "manifest.json").read_text(encoding="utf-8"))
        review = manifest.get("timings_seconds", {})
    text = table(rows, args.interval, review)
    out = run_dir / "phases.json"  # notebooks profiled earlier into this folder are kept
    kept = json.loads(out.read_text(encoding="utf-8"))["notebooks"] if out.exists() else {}
    out.write_text(
        json.dumps(
            {"interval": args.interval, "data": str(source), "notebooks": {**kept, **rows}},
            indent=1,
        ),
        encoding="utf-8",
    )
    print(text)
    if args.readme:
        load = statistics.mean(r["load"] for r in rows.values())
        write_readme(
            text, f"{args.readme} ({time.strftime('%Y-%m-%d')}, load {load:.1f})", args.column
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
