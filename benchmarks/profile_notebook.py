"""Profile notebooks cell by cell, in this process, on the bench data.

    python benchmarks/profile_notebook.py 100000 02_churn_root_cause 05_kpi_tracking

Stages the data of ``benchmarks/work/data-<size>`` once into ``--run-dir`` (reused on later
calls, so the run cache in ``<run-dir>/work/cache`` fills as it would in a review: profile
chapters in review order), runs each notebook's code cells under cProfile with the
parameters the runner would pass, prints the slowest cells, and writes
``<run-dir>/<notebook>.prof`` and ``.txt`` (top functions by cumulative time). Slide output is
swallowed. This is how the 2026-11 speed work found its targets; ``make bench`` times whole
commands, this says where the time goes inside them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", help="bench size: 10000, 100000 or 1000000")
    ap.add_argument("notebooks", nargs="+", help="notebook names, e.g. 02_churn_root_cause")
    ap.add_argument("--run-dir", default=None, help="default: /tmp/fupan-profile-<size>")
    ap.add_argument("--top", type=int, default=45, help="functions listed per notebook")
    args = ap.parse_args()

    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fupan import data as fdata
    from fupan import params as fparams

    work = HERE / "work"
    params_file = work / f"params-{args.size}" / "annual_review.yaml"
    source = work / f"data-{args.size}"
    run_dir = Path(args.run_dir or f"/tmp/fupan-profile-{args.size}")
    run_dir.mkdir(parents=True, exist_ok=True)
    params = fparams.load(params_file, **{"data.source": str(source)})
    if not (run_dir / "work" / fdata.STAGED_NAME).exists():
        t0 = time.perf_counter()
        fdata.load(params, run_dir / "work").close()
        print(f"staged in {time.perf_counter() - t0:.1f}s", flush=True)
    for name in args.notebooks:
        nb = nbformat.read(HERE.parent / "notebooks" / f"{name}.ipynb", as_version=4)
        scope = {
            "__name__": "__main__",
            "params_file": str(params_file),
            "run_dir": str(run_dir),
            "data": str(source),
            "as_of": "",
            "lang": params.lang,
            "seed": params.seed,
        }
        cells = [c for c in nb.cells if c.cell_type == "code"][1:]  # after the parameters
        prof = cProfile.Profile()
        times = []
        for i, cell in enumerate(cells):
            code = "\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("%"))
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                prof.enable()
                try:
                    exec(compile(code, f"{name}[{i}]", "exec"), scope)
                finally:
                    prof.disable()
            plt.close("all")
            times.append((time.perf_counter() - t0, i, cell.source.splitlines()[0][:70]))
        print(f"== {name}: {sum(t for t, *_ in times):.1f}s", flush=True)
        for t, i, first in sorted(times, reverse=True)[:5]:
            print(f"  {t:7.1f}s  cell {i}: {first}")
        prof.dump_stats(run_dir / f"{name}.prof")
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumtime").print_stats(args.top)
        (run_dir / f"{name}.txt").write_text(text.getvalue(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
