"""Profile notebooks cell by cell, in this process, on the bench data.

    python benchmarks/profile_notebook.py 100000 02_churn_root_cause 05_kpi_tracking
    python benchmarks/profile_notebook.py --data DIR --params FILE 02_churn_root_cause
    python benchmarks/profile_notebook.py --phases --data DIR --params FILE  # see phases.py

Stages the data of ``benchmarks/work/data-<size>`` (or ``--data DIR`` with ``--params
FILE``, default the repository's ``params/annual_review.yaml``) once into ``--run-dir`` (reused on later
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


def resolve(
    size: str | None, data: str | None, params: str | None, run_dir: str | None
) -> tuple[Path, Path, Path]:
    """(params file, data folder, run folder) from a bench SIZE or ``--data``/``--params``."""
    work = HERE / "work"
    if data:
        source = Path(data).resolve()
        params_file = Path(params or HERE.parent / "params" / "annual_review.yaml").resolve()
        name = source.name
    else:
        if size is None:
            raise SystemExit("give a bench SIZE or --data DIR (and --params FILE)")
        params_file = work / f"params-{size}" / "annual_review.yaml"
        source = work / f"data-{size}"
        name = size
    return params_file, source, Path(run_dir or f"/tmp/fupan-profile-{name}")


def stage(params_file: Path, source: Path, run_dir: Path):
    """The run's params; the data staged into ``run_dir`` once (later calls reuse it)."""
    from fupan.core import params as fparams
    from fupan.io import data as fdata

    run_dir.mkdir(parents=True, exist_ok=True)
    params = fparams.load(params_file, **{"data.source": str(source)})
    if not (run_dir / "work" / fdata.STAGED_NAME).exists():
        t0 = time.perf_counter()
        fdata.load(params, run_dir / "work").close()
        print(f"staged in {time.perf_counter() - t0:.1f}s", flush=True)
    return params


def notebook_cells(name: str) -> list[tuple[str, str]]:
    """(first line, code without magics) of each code cell after the parameters cell."""
    import nbformat

    nb = nbformat.read(HERE.parent / "notebooks" / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"][1:]
    return [
        (
            (c.source.splitlines() or [""])[0][:60],
            "\n".join(ln for ln in c.source.splitlines() if not ln.startswith("%")),
        )
        for c in cells
    ]


def notebook_scope(params_file: Path, run_dir: Path, source: Path, params) -> dict:
    """The globals a cell sees: the parameters the runner would pass."""
    return {
        "__name__": "__main__",
        "params_file": str(params_file),
        "run_dir": str(run_dir),
        "data": str(source),
        "as_of": "",
        "lang": params.lang,
        "seed": params.seed,
    }


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "names",
        nargs="*",
        help="SIZE (10000, 100000, 1000000; without --data) then notebook names, e.g. "
        "02_churn_root_cause; with --data only notebook names",
    )
    ap.add_argument("--data", default=None, help="data folder instead of a bench SIZE")
    ap.add_argument("--params", default=None, help="params file with --data")
    ap.add_argument("--run-dir", default=None, help="default: /tmp/fupan-profile-<size>")
    ap.add_argument("--top", type=int, default=45, help="functions listed per notebook")
    ap.add_argument("--memory", action="store_true", help="list the lines where memory peaks")
    args = ap.parse_args(argv)
    args.size = None
    if not args.data:
        if not args.names:
            ap.error("give a bench SIZE or --data DIR")
        args.size, args.names = args.names[0], args.names[1:]
    if not args.names:
        ap.error("name at least one notebook")
    return args


def main(argv: list[str] | None = None) -> int:
    if "--phases" in (argv if argv is not None else sys.argv[1:]):
        import phases

        return phases.main([a for a in (argv or sys.argv[1:]) if a != "--phases"])
    args = _args(argv)
    sampler = _MemorySampler() if args.memory else None
    if sampler is not None:
        sampler.start()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params_file, source, run_dir = resolve(args.size, args.data, args.params, args.run_dir)
    params = stage(params_file, source, run_dir)
    for name in args.names:
        scope = notebook_scope(params_file, run_dir, source, params)
        prof = cProfile.Profile()
        times = []
        for i, (first, code) in enumerate(notebook_cells(name)):
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
