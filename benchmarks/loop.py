"""`make bench-loop`: the analyst's loop and the CSV path (issue 23), against their targets.

Rows, each its own process measured whole (wall, CPU seconds and peak resident memory of
the process tree, kernels included; the mean load average while it ran):

- ``review_5k``: ``fupan review`` of the 5k demo (CSV, seed 42): < 45 s.
- ``rerun_5k``: ``fupan run 02_churn_root_cause`` into that run folder (the heaviest
  chapter): < 15 s.
- ``load_100k_csv``: load + validate of 100k customers from CSV (the review's params, a
  staging file) against its floor, DuckDB's own ``read_csv`` of the same files plus one
  aggregate per table, each in its own process: load / floor <= 1.5x (in-process seconds).
- ``review_100k_csv``: ``fupan review`` of 100k customers from CSV (seed 3): < 90 s and
  < 3 GB.

    python benchmarks/loop.py                       # every row, as the "after" column
    python benchmarks/loop.py --column before --code "main 8cd9776"
    python benchmarks/loop.py --rows review_5k rerun_5k --data-5k /work/main/data/demo

Data are generated into ``benchmarks/work`` when missing (``fupan demo-data``, CSV).
Results: ``results/loop-latest.json`` (one entry per column; a run replaces its column)
and ``results/loop-<time>.json``; the README table goes between ``<!-- loop -->`` and
``<!-- /loop -->``. Targets are judged here, never in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import measure
from readme import put_block

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
RESULTS = HERE / "results"
LATEST = RESULTS / "loop-latest.json"
README = HERE / "README.md"
PY = sys.executable
FUPAN = str(Path(PY).with_name("fupan"))
PARAMS = ROOT / "params" / "annual_review.yaml"
RERUN_CHAPTER = "02_churn_root_cause"
MARKS = ("<!-- loop -->", "<!-- /loop -->")

# (customers, seed) of each data set; the demo's default format (CSV)
DATA = {"5k": (5_000, 42), "100k": (100_000, 3)}
# row -> (what, {measure: limit}); seconds are wall seconds, MB the process tree's peak
TARGETS: dict[str, tuple[str, dict[str, float]]] = {
    "review_5k": ("5k demo review (CSV, seed 42)", {"seconds": 45}),
    "rerun_5k": (f"one-chapter rerun at 5k (`fupan run {RERUN_CHAPTER}`)", {"seconds": 15}),
    "load_100k_csv": (
        "100k CSV load + validate / DuckDB read_csv + one aggregate per table",
        {"ratio": 1.5},
    ),
    "review_100k_csv": ("100k review from CSV (seed 3)", {"seconds": 90, "peak_mb": 3072}),
}
ROWS = tuple(TARGETS)


def data_dir(size: str, given: str | None) -> tuple[Path, dict]:
    """The data folder of ``size`` ("5k", "100k"); generated (and timed) when missing."""
    folder = Path(given) if given else WORK / f"data-{size}-csv"
    if (folder / "truth.json").exists() or (folder / "customers.csv").exists():
        return folder, {}
    n, seed = DATA[size]
    cmd = [FUPAN, "demo-data", "--out", str(folder), "--customers", str(n), "--seed", str(seed)]
    print(f"  generate {size} …", flush=True)
    m = measure.run(cmd)
    if m.returncode != 0:
        raise SystemExit(f"generating {size} failed: {m.stderr.strip()[-400:]}")
    return folder, {"seconds": round(m.seconds, 1), "cpu_seconds": round(m.cpu_seconds, 1)}


def _measured(m: measure.Measurement) -> dict:
    out = {
        "seconds": round(m.seconds, 2),
        "cpu_seconds": round(m.cpu_seconds, 1),
        "peak_mb": round(m.peak_rss_mb, 1),
        "load_mean": round(m.load_mean, 2),
        "ok": m.returncode == 0,
    }
    if m.returncode != 0:
        tail = (m.stderr or m.stdout).strip().splitlines()[-3:]
        out["error"] = " / ".join(tail)[-600:]
    return out


def _timings(run_dir: Path) -> dict:
    """Per-notebook seconds (and load + validate) from the run folder's manifest."""
    manifest = run_dir / "manifest.json"
    if not manifest.exists():
        return {}
    timings = json.loads(manifest.read_text(encoding="utf-8")).get("timings_seconds", {})
    return {k: round(float(v), 2) for k, v in timings.items()}


def fupan_cmd(command: str, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    """A ``fupan review`` or ``fupan run`` command line on the repository's params."""
    return [
        FUPAN,
        command,
        *extra,
        "--params",
        str(PARAMS),
        "--data",
        str(data),
        "--out",
        str(out),
        "--name",
        name,
        "--quiet",
    ]


def review(data: Path, out: Path, name: str) -> dict:
    """A whole review into a fresh reports folder (06 then backtests: no earlier run)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = fupan_cmd("review", data, out, name)
    print(f"  fupan review {data} …", flush=True)
    res = _measured(measure.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
    res["notebooks"] = _timings(out / name)
    return res


def rerun(data: Path, out: Path, name: str) -> dict:
    """One chapter rerun into the run folder a review left (the deck is rendered again)."""
    if not (out / name / "manifest.json").exists():
        return {"ok": False, "error": f"no run folder {out / name} to rerun into"}
    cmd = fupan_cmd("run", data, out, name, RERUN_CHAPTER)
    print(f"  fupan run {RERUN_CHAPTER} …", flush=True)
    res = _measured(measure.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
    res["notebooks"] = {RERUN_CHAPTER: _timings(out / name).get(RERUN_CHAPTER)}
    return res


def _stage(name: str, *args: str) -> dict:
    m = measure.run([PY, str(HERE / "stages.py"), name, *args])
    out = _measured(m)
    for line in m.stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[7:]))
    return out


def load_vs_floor(data: Path) -> dict:
    """The review's load + validate and the read_csv floor, each in its own process.

    The ratio compares in-process seconds (the load's ``fupan.io.data.load`` call, the
    floor's median pass over every file): interpreter start and imports are not load work.
    """
    print("  CSV load + validate …", flush=True)
    load = _stage("review_load", str(data), str(PARAMS))
    print("  DuckDB read_csv floor …", flush=True)
    floor = _stage("csv_floor", str(data))
    res = {"load": load, "floor": floor, "ok": load["ok"] and floor["ok"]}
    if res["ok"]:
        res["ratio"] = round(load["load_seconds"] / floor["floor_seconds"], 2)
        # CPU seconds (all threads of each process) hardly move with the machine's load
        res["cpu_ratio"] = round(load["load_cpu_seconds"] / floor["floor_cpu_seconds"], 2)
        res["seconds"] = load["seconds"]
        res["load_mean"] = round((load["load_mean"] + floor["load_mean"]) / 2, 2)
        res["same_rows"] = load["rows"] == floor["rows"]
    return res


def measure_rows(rows: list[str], args: argparse.Namespace) -> dict:
    """Every row asked for, in an order that lets the rerun use the 5k review's folder."""
    out: dict = {}
    generated: dict = {}
    need = {"5k": {"review_5k", "rerun_5k"}, "100k": {"load_100k_csv", "review_100k_csv"}}
    folders = {}
    for size, uses in need.items():
        if uses & set(rows):
            folders[size], gen = data_dir(size, getattr(args, f"data_{size}"))
            if gen:
                generated[size] = gen
    reports = WORK / "loop-reports"
    steps: dict[str, Callable[[], dict]] = {
        "review_5k": lambda: review(folders["5k"], reports / "5k", "loop-5k"),
        "rerun_5k": lambda: rerun(folders["5k"], reports / "5k", "loop-5k"),
        "load_100k_csv": lambda: load_vs_floor(folders["100k"]),
        "review_100k_csv": lambda: review(folders["100k"], reports / "100k", "loop-100k"),
    }
    if "rerun_5k" in rows and "review_5k" not in rows:
        print("  (the rerun goes into the last 5k review's folder, when one is left)")
    for row in ROWS:
        if row in rows:
            out[row] = steps[row]()
            out[row]["judged"] = judge(row, out[row])
            print(f"  {row}: {cell(out[row])}", flush=True)
    if generated:
        out["_generated"] = generated
    out["_data"] = {k: str(v) for k, v in folders.items()}
    return out


def judge(row: str, res: dict) -> dict[str, bool | None]:
    """Each limit of the row: met (True), missed (False) or not measured (None)."""
    limits = TARGETS[row][1]
    if not res.get("ok"):
        return dict.fromkeys(limits)
    return {k: (res[k] <= v if res.get(k) is not None else None) for k, v in limits.items()}


def cell(res: dict | None) -> str:
    """One row's measurement in words, for a table cell."""
    if not res:
        return "–"
    if not res.get("ok"):
        return f"FAILED: {res.get('error', '')[:160]}"
    if "ratio" in res:
        ld, fl = res["load"], res["floor"]
        return (
            f"**{res['ratio']:.2f}×**: load {ld['load_seconds']:.1f} s "
            f"(process {ld['seconds']:.1f} s, {ld['cpu_seconds']:.0f} CPU s, "
            f"{ld['peak_mb']:,.0f} MB) / floor {fl['floor_seconds']:.2f} s "
            f"(median of {len(fl.get('runs', []))}); CPU {ld['load_cpu_seconds']:.1f} / "
            f"{fl['floor_cpu_seconds']:.2f} s = {res['cpu_ratio']:.2f}×; "
            + (
                f"every column into DuckDB tables {fl['tables_seconds']:.2f} s, "
                f"{fl['tables_cpu_seconds']:.2f} CPU s "
                f"({ld['load_seconds'] / fl['tables_seconds']:.2f}×, CPU "
                f"{ld['load_cpu_seconds'] / fl['tables_cpu_seconds']:.2f}×); "
                if fl.get("tables_seconds")
                else ""
            )
            + f"load {res['load_mean']:.1f}"
        )
    text = (
        f"**{res['seconds']:.1f} s**, {res['cpu_seconds']:.0f} CPU s, "
        f"{res['peak_mb']:,.0f} MB; load {res['load_mean']:.1f}"
    )
    nbs = {k: v for k, v in (res.get("notebooks") or {}).items() if v is not None}
    if nbs:
        # load + validate first, then the notebooks by number
        parts = [
            f"{'load+validate' if k == 'load_validate' else k.split('_')[0]} {v:.1f}"
            for k, v in sorted(nbs.items(), key=lambda kv: (kv[0] != "load_validate", kv[0]))
        ]
        text += f" ({', '.join(parts)} s)"
    return text


def table(result: dict) -> str:
    """Rows x columns (before, after), the targets and whether the latest column meets them."""
    cols = [c for c in ("before", "after") if c in result["columns"]]
    heads = [f"{c} ({result['columns'][c]['label']})" for c in cols]
    lines = [
        f"| row | target | {' | '.join(heads)} | met |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]
    for row, (what, limits) in TARGETS.items():
        target = ", ".join(
            f"≤ {v:g}×" if k == "ratio" else f"< {v:g} s" if k == "seconds" else f"< {v:,.0f} MB"
            for k, v in limits.items()
        )
        cells = [cell(result["columns"][c]["rows"].get(row)) for c in cols]
        last = next(
            (
                result["columns"][c]["rows"][row]
                for c in reversed(cols)
                if row in result["columns"][c]["rows"]
            ),
            None,
        )
        verdict = "–"
        if last is not None:
            j = last.get("judged", {})
            verdict = "–" if None in j.values() else "yes" if all(j.values()) else "**no**"
        lines.append(f"| {what} | {target} | {' | '.join(cells)} | {verdict} |")
    return "\n".join(lines)


def write_readme(result: dict, readme: Path = README) -> None:
    """The loop table between its markers, before the ladder's ``<!-- latest -->`` block."""
    block = (
        f"{MARKS[0]}\n### Measured ({result['machine']['cores']} cores; `benchmarks/loop.py`; "
        "in each cell: wall seconds, CPU seconds and peak MB of the process tree, the mean "
        "load average while it ran, then each notebook's seconds from the manifest; "
        '"met" judges the rightmost column)\n\n'
        f"{table(result)}\n{MARKS[1]}"
    )
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    readme.write_text(put_block(text, MARKS, block), encoding="utf-8")


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    ap.add_argument("--column", choices=("before", "after"), default="after")
    ap.add_argument("--code", default=None, help="what code ran, e.g. 'main 8cd9776'")
    ap.add_argument("--data-5k", default=None, help="5k CSV folder (default: generated)")
    ap.add_argument("--data-100k", default=None, help="100k CSV folder (default: generated)")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the README table")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = json.loads(LATEST.read_text()) if LATEST.exists() else {"columns": {}}
    result["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if not args.report_only:
        start = dt.datetime.now().isoformat(timespec="seconds")
        rows = measure_rows(args.rows, args)
        column = result["columns"].get(args.column, {}) if set(args.rows) != set(ROWS) else {}
        column.setdefault("rows", {}).update(rows)
        # the label's load: the mean over every row the column holds (some from earlier runs)
        loads = [
            r["load_mean"]
            for k, r in column["rows"].items()
            if not k.startswith("_") and r.get("load_mean") is not None
        ]
        load = sum(loads) / len(loads) if loads else os.getloadavg()[0]
        code = args.code or _commit()
        column.update(date=start, code=code, label=f"{code}, {start[:10]}, load {load:.1f}")
        result["columns"][args.column] = column
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        text = json.dumps(result, indent=1, default=float)
        (RESULTS / f"loop-{stamp}.json").write_text(text)
        LATEST.write_text(text)
    write_readme(result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
