"""Profile notebooks cell by cell, in this process, on the bench data.

    python benchmarks/profile_notebook.py 100000 02_churn_root_cause 05_kpi_tracking

Stages the data of ``benchmarks/work/data-<size>`` once into ``--run-dir`` (reused on later
calls, so the run cache in ``<run-dir>/work/cache`` fills as it would in a review: profile
chapters in review order), runs each notebook's code cells under cProfile with the
parameters the runner would pass, prints the slowest cells, and writes
``<run-dir>/<notebook>.prof`` and ``.txt`` (top functions by cumulative time). Slide output is
swallowed. Each cell's peak resident memory is printed too (the kernel's high-water mark,
reset before every cell through ``/proc/self/clear_refs``; Linux only), and, with
``--memory``, where inside the package memory peaks: a thread samples the resident size every
0.1 s with the line of ``fupan`` code the main thread is on; the lines seen at the highest
sizes are listed and every sample goes to ``<run-dir>/<notebook>.memory.tsv``. This is how
the 2026-11 speed work found its targets; ``make bench`` times whole commands, this says
where the time goes inside them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import re
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def _rss_gb() -> tuple[float, float]:
    """(peak since the last reset, current) resident memory of this process, in GB."""
    status = Path("/proc/self/status").read_text()
    kb = [int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmHWM", "VmRSS")]
    return kb[0] / 1e6, kb[1] / 1e6


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


class _MemorySampler(threading.Thread):
    """Highest resident size seen while the main thread was on each line of ``fupan``."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.main = threading.main_thread().ident
        self.peaks: dict[str, float] = {}
        self.timeline: list[tuple[float, float, str]] = []
        self.stop = threading.Event()

    def where(self) -> str:
        frame = sys._current_frames().get(self.main)
        lines = []
        while frame is not None:
            path = frame.f_code.co_filename
            if "/fupan/" in path or path.endswith("]"):  # package or notebook cell
                lines.append(f"{Path(path).name}:{frame.f_lineno} {frame.f_code.co_name}")
            frame = frame.f_back
        return " < ".join(lines[:3]) or "(outside fupan)"

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            now = _rss_gb()[1]
            key = self.where()
            if now > self.peaks.get(key, 0.0):
                self.peaks[key] = now
            self.timeline.append((time.perf_counter(), now, key))

    def report(self, path: Path, top: int = 25) -> str:
        """The top lines; the whole timeline (one row per sample) is written to ``path``."""
        rows = sorted(self.peaks.items(), key=lambda kv: -kv[1])[:top]
        t0 = self.timeline[0][0] if self.timeline else 0.0
        path.write_text(
            "".join(f"{t - t0:.1f}\t{gb:.2f}\t{key}\n" for t, gb, key in self.timeline),
            encoding="utf-8",
        )
        self.peaks.clear()
        self.timeline.clear()
        return "\n".join(f"  {gb:6.2f} GB  {key}" for key, gb in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", help="bench size: 10000, 100000 or 1000000")
    ap.add_argument("notebooks", nargs="+", help="notebook names, e.g. 02_churn_root_cause")
    ap.add_argument("--run-dir", default=None, help="default: /tmp/fupan-profile-<size>")
    ap.add_argument("--top", type=int, default=45, help="functions listed per notebook")
    ap.add_argument("--memory", action="store_true", help="list the lines where memory peaks")
    args = ap.parse_args()
    sampler = _MemorySampler() if args.memory else None
    if sampler is not None:
        sampler.start()

    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fupan.core import params as fparams
    from fupan.io import data as fdata

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
            _reset_peak()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                prof.enable()
                try:
                    exec(compile(code, f"{name}[{i}]", "exec"), scope)
                finally:
                    prof.disable()
            plt.close("all")
            peak, now = _rss_gb()
            first = cell.source.splitlines()[0][:60]
            times.append((time.perf_counter() - t0, i, first, peak, now))
        print(f"== {name}: {sum(t[0] for t in times):.1f}s", flush=True)
        for t, i, first, *_ in sorted(times, reverse=True)[:5]:
            print(f"  {t:7.1f}s  cell {i}: {first}")
        print("  peak/after GB per cell:", flush=True)
        for _t, i, first, peak, now in times:
            print(f"  {peak:6.2f} {now:6.2f}  cell {i}: {first}")
        if sampler is not None:
            print(
                "  highest resident size per line:\n"
                + sampler.report(run_dir / f"{name}.memory.tsv"),
                flush=True,
            )
        prof.dump_stats(run_dir / f"{name}.prof")
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumtime").print_stats(args.top)
        (run_dir / f"{name}.txt").write_text(text.getvalue(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
