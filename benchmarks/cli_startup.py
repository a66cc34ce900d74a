"""`make bench`: how long the CLI takes to answer before any work (issue 20).

Times ``fupan --help``, ``fupan validate --help`` and ``fupan run --help`` as a user types
them (a fresh process each, the installed ``fupan`` script when there is one), the median
of several tries, against the 1 s target. Also lists the heavy modules ``import fupan.run.cli``
loads (there should be none). Writes ``benchmarks/results/cli_startup.json``.

    python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_SECONDS = 1.0
COMMANDS = (["--help"], ["validate", "--help"], ["run", "--help"], ["review", "--help"])
HEAVY = ("papermill", "nbformat", "pandas", "numpy", "pydantic", "ibis", "duckdb")


def _fupan() -> list[str]:
    script = Path(sys.executable).with_name("fupan")
    if script.exists():
        return [str(script)]
    found = shutil.which("fupan")
    return [found] if found else [sys.executable, "-m", "fupan.run.cli"]


def time_command(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([*_fupan(), *argv], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def heavy_imports() -> list[str]:
    code = f"import sys, fupan.run.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="tries per command (default: 7)")
    args = ap.parse_args()
    rows = []
    print(f"{'command':<28} {'median s':>9} {'max s':>7}  target {TARGET_SECONDS:.0f} s")
    for argv in COMMANDS:
        times = time_command(argv, args.repeat)
        med = statistics.median(times)
        rows.append({"command": "fupan " + " ".join(argv), "median_s": med, "max_s": max(times)})
        mark = "ok" if med < TARGET_SECONDS else "SLOW"
        print(f"{rows[-1]['command']:<28} {med:>9.3f} {max(times):>7.3f}  {mark}")
    heavy = heavy_imports()
    print(f"heavy modules loaded by `import fupan.run.cli`: {', '.join(heavy) or 'none'}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "rows": rows,
        "heavy_imports": heavy,
        "target_seconds": TARGET_SECONDS,
        "load_1min": os.getloadavg()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (RESULTS / "cli_startup.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["median_s"] < TARGET_SECONDS for r in rows) and not heavy else 1


if __name__ == "__main__":
    raise SystemExit(main())
