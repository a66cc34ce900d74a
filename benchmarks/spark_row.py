"""`make bench`'s Spark row: the engine-heavy stages on Spark beside DuckDB, by size.

A full review on Spark is far too slow on one small machine (3,000 customers: 1,238 s against
239 s on DuckDB), so this times the stages where the engine does the work, on the ladder's
data (parquet, seed 42): load + validate (with Spark: DuckDB validates, then the tables go
to Spark as Parquet) and the feature catalogue at ``as_of``
(``fupan.measures.features.customer_features``). Each stage is its own process, measured
whole: wall time, CPU seconds and peak resident memory of the process tree (the JVM
included), and the mean load average. The Spark features are compared value by value with
DuckDB's (rtol 1e-9, as the floor query is).

A stage over ``--timeout`` seconds or ``--max-mb`` of memory is stopped; the table then
gives the limit, how far the stage got and its partial times. Without Java or pyspark the
row says so and nothing runs.

    python benchmarks/spark_row.py [--sizes 10000 100000 1000000] [--timeout 2400]
                                   [--max-mb 12288] [--keep-data] [--regenerate]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import measure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
RESULTS = HERE / "results"
LATEST = RESULTS / "spark-latest.json"
README = HERE / "README.md"
PY = sys.executable
FUPAN = str(Path(PY).with_name("fupan"))
SEED = 42
TIMEOUT = 2400.0  # seconds per stage
MAX_MB = 12288.0  # peak memory of a stage's process tree
MARK_BEGIN, MARK_END = "<!-- spark -->", "<!-- /spark -->"

# (key, engine, label, stages.py stage), in the table's order
STAGES = (
    ("duckdb_load", "DuckDB", "load + validate", "load"),
    ("spark_load", "Spark", "load + validate + hand-off", "spark_load"),
    ("duckdb_features", "DuckDB", "features (process: load + features)", "features"),
    ("spark_features", "Spark", "features (process: load + hand-off + features)", "spark_features"),
)
# The order they run in: the feature stages first (Spark's is compared with DuckDB's frame,
# and at 1M it is the long one the row is about).
RUN_ORDER = ("duckdb_features", "spark_features", "duckdb_load", "spark_load")


def spark_missing() -> str | None:
    """Why Spark cannot run here (no Java, no pyspark), or None."""
    sys.path.insert(0, str(ROOT / "lib"))
    from fupan.io import engine

    return engine.spark_available()


def parse_output(stdout: str) -> dict:
    """Every ``PART {json}`` line and the ``RESULT {json}`` line of a stage, merged in order."""
    out: dict = {}
    for line in stdout.splitlines():
        for tag in ("PART ", "RESULT "):
            if line.startswith(tag):
                out.update(json.loads(line[len(tag) :]))
    return out


def error_lines(text: str, n: int = 3) -> list[str]:
    """The last ``n`` lines of a failure that say what happened: a JVM's stack frames
    ("\tat org.apache…", "... 12 more") are left out."""
    said = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith(("\t", " ")) and not ln.strip().startswith("...")
    ]
    return said[-n:]


def stage(name: str, cmd: list[str], timeout: float, max_mb: float) -> dict:
    print(f"  {name} …", flush=True)
    m = measure.run(cmd, timeout=timeout, max_rss_mb=max_mb)
    out = {
        "seconds": round(m.seconds, 2),
        "peak_mb": round(m.peak_rss_mb, 1),
        "ok": m.returncode == 0 and not m.stopped,
        "cpu_seconds": round(m.cpu_seconds, 1),
        "load_mean": round(m.load_mean, 2),
        **parse_output(m.stdout),
    }
    if m.stopped:
        out["stopped"] = m.stopped
    elif m.returncode != 0:
        out["error"] = error_lines(m.stderr or m.stdout or "")
    state = f" STOPPED ({m.stopped})" if m.stopped else ("" if out["ok"] else " FAILED")
    print(f"  {name}: {out['seconds']:.1f}s, {out['peak_mb']:.0f} MB{state}", flush=True)
    return out


def ensure_data(n: int, regenerate: bool) -> tuple[Path, dict | None]:
    """The ladder's data for ``n`` customers (generated and timed when absent)."""
    data = WORK / f"data-{n}"
    if regenerate:
        shutil.rmtree(data, ignore_errors=True)
    if (data / "truth.json").exists():
        return data, None
    cmd = [FUPAN, "demo-data", "--out", str(data), "--customers", str(n)]
    cmd += ["--format", "parquet", "--seed", str(SEED)]
    return data, stage("generate", cmd, TIMEOUT, MAX_MB)


def one_size(n: int, args: argparse.Namespace, save) -> dict:
    print(f"== {n:,} customers (DuckDB and Spark)", flush=True)
    r: dict = {"date": dt.datetime.now().isoformat(timespec="seconds")}
    data, gen = ensure_data(n, args.regenerate)
    if gen is not None:
        r["generate"] = gen
    # a frame left by an earlier run must not stand in for this run's
    for f in ("_bench_features.parquet", "_bench_features_spark.parquet"):
        (data / f).unlink(missing_ok=True)
    stages = {s[0]: s for s in STAGES}
    for key in RUN_ORDER:
        _, _, label, name = stages[key]
        if key in args.skip:
            continue
        shutil.rmtree(WORK / "spark-tmp" / data.name, ignore_errors=True)
        cmd = [PY, str(HERE / "stages.py"), name, str(data)]
        r[key] = stage(f"{key.split('_')[0]} {label}", cmd, args.timeout, args.max_mb)
        save(r)
    shutil.rmtree(WORK / "spark-tmp" / data.name, ignore_errors=True)
    if not args.keep_data:
        shutil.rmtree(data, ignore_errors=True)
    return r


# --------------------------------------------------------------------------------------
# The table


def _secs(v: dict) -> str:
    if v.get("stopped"):
        return f"> {v['seconds']:,.0f}, stopped"
    return f"{v['seconds']:,.1f}"


def _parts(v: dict) -> list[str]:
    """What a stage's parts took, as far as it got."""
    out = []
    if "session_seconds" in v:
        out.append(f"JVM + session {v['session_seconds']:.1f}s")
    if "load_seconds" in v:
        out.append(f"load {v['load_seconds']:.1f}s")
    if "spark_count_seconds" in v:
        out.append(f"Spark reads every table {v['spark_count_seconds']:.1f}s")
    if "feature_seconds" in v:
        out.append(f"{v.get('features', '?')} features {v['feature_seconds']:.1f}s")
    return out


def _check(v: dict) -> str:
    chk = v.get("check")
    if not chk:
        return ""
    if chk.get("equal"):
        return f"same values as DuckDB ({chk.get('columns_compared')} columns, rtol 1e-9)"
    parts = []
    if chk.get("mismatched_values"):
        parts.append(f"values in {chk['mismatched_values']}")
    if chk.get("missing_in_floor"):
        parts.append(f"not from Spark: {chk['missing_in_floor']}")
    if chk.get("extra_in_floor"):
        parts.append(f"only from Spark: {chk['extra_in_floor']}")
    if chk.get("same_customers") is False:
        parts.append(f"different customers (rows {chk.get('rows')})")
    return "VALUES DIFFER: " + "; ".join(parts)


def note(key: str, v: dict, r: dict) -> str:
    """The table's note for one stage: parts, limits, failure, comparison, ratio."""
    out = _parts(v)
    if key == "duckdb_load" and v.get("rows"):
        out.append(f"{sum(v['rows'].values()):,} rows in {len(v['rows'])} tables")
    if v.get("stopped"):
        unfinished = "feature query" if "load_seconds" in v else "load"
        if key == "spark_load" and "load_seconds" in v:
            unfinished = "Spark's read of the tables"
        out.append(f"stopped at the {v['stopped']}: {unfinished} unfinished")
    elif v.get("error"):
        out.append("FAILED: " + " / ".join(v["error"])[-300:])
    if key == "spark_features":
        if c := _check(v):
            out.append(c)
        duck = r.get("duckdb_features", {})
        if v.get("feature_seconds") and duck.get("feature_seconds"):
            ratio = v["feature_seconds"] / duck["feature_seconds"]
            out.append(f"feature query {ratio:,.1f}× DuckDB's")
    if key.startswith("spark_") and v.get("ok"):
        duck = r.get(key.replace("spark_", "duckdb_"), {})
        if duck.get("ok") and duck.get("seconds") and duck.get("cpu_seconds"):
            # CPU seconds hardly depend on how busy the machine was; wall time does
            out.append(
                f"process {v['seconds'] / duck['seconds']:,.1f}× DuckDB's wall time, "
                f"{v['cpu_seconds'] / duck['cpu_seconds']:,.1f}× its CPU"
            )
    return "; ".join(out)


def table(result: dict) -> str:
    rows = [
        "| customers | engine | stage | seconds | CPU s | peak MB | load | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if result.get("skipped"):
        rows.append(f"| – | Spark | – | – | – | – | – | skipped: {result['skipped']} |")
    for n, r in sorted(result["sizes"].items(), key=lambda kv: int(kv[0])):
        for key, eng, label, _ in STAGES:
            v = r.get(key)
            if not v:
                continue
            cpu = f"{v['cpu_seconds']:,.0f}" if v.get("cpu_seconds") is not None else "–"
            rows.append(
                f"| {int(n):,} | {eng} | {label} | {_secs(v)} | {cpu} | {v.get('peak_mb', 0):,.0f} "
                f"| {v.get('load_mean', 0):.1f} | {note(key, v, r)} |"
            )
    return "\n".join(rows)


def write_readme(result: dict, readme: Path | None = None) -> None:
    """Put the table between the Spark markers of the README (added before the ladder's
    ``<!-- latest -->`` block when absent, which run.py rewrites from its marker on)."""
    readme = readme or README
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    dates = sorted({r.get("date", result["date"])[:10] for r in result["sizes"].values()})
    when = ", ".join(dates) or result["date"][:10]
    block = (
        f"{MARK_BEGIN}\n### Measured ({when}; {result['machine']['cores']} cores; "
        f"`benchmarks/spark_row.py`)\n\n{table(result)}\n{MARK_END}"
    )
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    elif "<!-- latest -->" in text:
        head, rest = text.split("<!-- latest -->", 1)
        text = f"{head.rstrip()}\n\n{block}\n\n<!-- latest -->{rest}"
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    readme.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per stage")
    ap.add_argument("--max-mb", type=float, default=MAX_MB, help="peak MB per stage")
    ap.add_argument("--skip", nargs="*", default=[], choices=[s[0] for s in STAGES])
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--merge", action="store_true", help="keep other sizes of spark-latest.json")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the README table")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "nice": os.nice(0),
        },
        "sizes": {},
    }
    if args.report_only:
        write_readme(json.loads(LATEST.read_text()))
        return 0
    if why := spark_missing():
        result["skipped"] = why
        print(f"Spark row skipped: {why}", flush=True)
        if not args.keep_data:  # `make bench` keeps the ladder's data for this row
            for n in args.sizes:
                shutil.rmtree(WORK / f"data-{n}", ignore_errors=True)
        LATEST.write_text(json.dumps(result, indent=1))
        write_readme(result)
        return 0
    if args.merge and LATEST.exists():
        result["sizes"] = json.loads(LATEST.read_text()).get("sizes", {})
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    this_run: dict = {**result, "sizes": {}}

    def save(n: int, r: dict) -> None:
        result["sizes"][str(n)] = this_run["sizes"][str(n)] = r
        (RESULTS / f"spark-{stamp}.json").write_text(json.dumps(this_run, indent=1, default=float))
        LATEST.write_text(json.dumps(result, indent=1, default=float))

    for n in args.sizes:
        save(n, one_size(n, args, lambda r, n=n: save(n, r)))
    write_readme(result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
