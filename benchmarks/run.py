"""`make bench`: the scale ladder (10k, 100k, 1M customers) and peer baselines.

Each stage runs as its own process and is measured whole (wall time, peak resident memory of
the process tree, kernels and JVMs included). Results go to benchmarks/results/ as JSON and a
chart; benchmarks/README.md keeps the latest table. Targets are checked here, never in tests.

    python benchmarks/run.py [--sizes 10000 100000 1000000] [--skip-review] [--keep-data]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import measure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
RESULTS = HERE / "results"
PY = sys.executable
FUPAN = str(Path(PY).with_name("fupan"))
LIFETIMES_VENV = HERE / ".venv-lifetimes"

TARGETS = {  # seconds, peak MB
    100_000: {"review_seconds": 180, "review_peak_mb": 4096},
    1_000_000: {"review_seconds": 900, "review_peak_mb": 12288},
}


def _result(m: measure.Measurement) -> dict:
    for line in m.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {}


def stage(name: str, cmd: list[str]) -> dict:
    print(f"  {name} …", flush=True)
    m = measure.run(cmd)
    out = {"seconds": round(m.seconds, 2), "peak_mb": round(m.peak_rss_mb, 1), "ok": m.returncode == 0}
    out.update(_result(m))
    if m.returncode != 0:
        out["error"] = (m.stderr or m.stdout).strip().splitlines()[-3:]
    print(f"  {name}: {out['seconds']:.1f}s, {out['peak_mb']:.0f} MB{'' if out['ok'] else ' FAILED'}", flush=True)
    return out


def lifetimes_env() -> Path | None:
    py = LIFETIMES_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([PY, "-m", "venv", str(LIFETIMES_VENV)], check=True)
        done = subprocess.run([str(py), "-m", "pip", "install", "-q", "lifetimes==0.11.3", "setuptools<81"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print("  lifetimes baseline unavailable:", done.stderr.strip()[-300:])
            return None
    return py


def compare_lifetimes(data: Path, ours: dict) -> dict:
    py = lifetimes_env()
    if py is None or not (data / "_bench_summary.csv").exists():
        return {"ok": False, "error": "lifetimes environment or summary missing"}
    res = stage("lifetimes BG/NBD", [str(py), str(HERE / "lifetimes_fit.py"), str(data / "_bench_summary.csv")])
    if res.get("params"):
        import pandas as pd

        sys.path.insert(0, str(ROOT / "lib"))
        from fupan.ltv import bgnbd_loglik

        s = pd.read_csv(data / "_bench_summary.csv")
        p = res["params"]
        theirs = float(bgnbd_loglik((p["r"], p["alpha"], p["a"], p["b"]), s.frequency, s.recency, s["T"]))
        res["log_likelihood_under_fupan"] = theirs
        res["relative_ll_difference"] = abs(theirs - ours["bgnbd_log_likelihood"]) / abs(ours["bgnbd_log_likelihood"])
        res["speedup_vs_lifetimes"] = res["seconds"] and res["seconds"] / max(ours["bgnbd_fit_seconds"], 1e-9)
    return res


def review(n: int, data: Path) -> dict:
    folder = WORK / f"params-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    src = (ROOT / "params" / "annual_review.yaml").read_text(encoding="utf-8")
    (folder / "annual_review.yaml").write_text(src, encoding="utf-8")
    shutil.copy(ROOT / "params" / "benchmarks.yaml", folder / "benchmarks.yaml")
    reports = WORK / f"reports-{n}"
    res = stage("full review", [FUPAN, "review", "--params", str(folder / "annual_review.yaml"), "--data", str(data),
                                "--out", str(reports), "-q"])
    runs = sorted(reports.glob("annual_review-*/manifest.json"))
    if runs:
        manifest = json.loads(runs[-1].read_text())
        res["notebooks"] = manifest.get("timings_seconds", {})
        deck = runs[-1].parent / "deck.html"
        res["deck_mb"] = round(deck.stat().st_size / 2**20, 2)
    return res


def ladder(sizes: list[int], skip_review: bool, keep: bool) -> dict:
    out: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": {"cores": os.cpu_count()},
                 "sizes": {}}
    for n in sizes:
        print(f"== {n:,} customers", flush=True)
        data = WORK / f"data-{n}"
        r: dict = {}
        if not (data / "truth.json").exists():
            r["generate"] = stage("generate", [FUPAN, "demo-data", "--out", str(data), "--customers", str(n),
                                               "--format", "parquet", "--seed", "42"])
        stages = [PY, str(HERE / "stages.py")]
        r["load_validate"] = stage("load + validate", [*stages, "load", str(data)])
        r["features"] = stage("features", [*stages, "features", str(data)])
        r["duckdb_floor"] = stage("plain DuckDB query", [*stages, "duckdb_floor", str(data)])
        if r["features"].get("feature_seconds") and r["duckdb_floor"].get("query_seconds"):
            r["features_vs_floor"] = round(r["features"]["feature_seconds"] / r["duckdb_floor"]["query_seconds"], 2)
        r["ltv_fit"] = stage("BG/NBD + Gamma-Gamma", [*stages, "ltv_fit", str(data)])
        if r["ltv_fit"].get("ok"):
            r["lifetimes"] = compare_lifetimes(data, r["ltv_fit"])
        if not skip_review:
            r["review"] = review(n, data)
            tgt = TARGETS.get(n)
            if tgt and r["review"].get("ok"):
                r["targets"] = {
                    "review_seconds": [r["review"]["seconds"], tgt["review_seconds"],
                                       r["review"]["seconds"] <= tgt["review_seconds"]],
                    "review_peak_mb": [r["review"]["peak_mb"], tgt["review_peak_mb"],
                                       r["review"]["peak_mb"] <= tgt["review_peak_mb"]],
                    "deck_under_10mb": [r["review"].get("deck_mb"), 10, (r["review"].get("deck_mb") or 0) < 10],
                }
        out["sizes"][str(n)] = r
        if not keep:
            shutil.rmtree(WORK / f"reports-{n}", ignore_errors=True)
    return out


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(k) for k in result["sizes"])
    names = ["generate", "load_validate", "features", "duckdb_floor", "ltv_fit", "review"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        ys = [result["sizes"][str(n)].get(name, {}).get("seconds") for n in sizes]
        if any(y is not None for y in ys):
            ax.plot(sizes, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("customers")
    ax.set_ylabel("seconds (whole process)")
    ax.set_title("fupan scale ladder, 2 cores")
    ax.legend()
    fig.savefig(path, bbox_inches="tight", dpi=110)


def table(result: dict) -> str:
    rows = ["| customers | stage | seconds | peak MB | note |", "|---|---|---|---|---|"]
    for n, r in sorted(result["sizes"].items(), key=lambda kv: int(kv[0])):
        for name, v in r.items():
            if isinstance(v, dict) and "seconds" in v:
                note = ""
                if name == "features" and "features_vs_floor" in r:
                    note = f"{r['features_vs_floor']}× the plain DuckDB query (target ≤ 2×)"
                if name == "lifetimes" and "speedup_vs_lifetimes" in v:
                    note = f"fupan BG/NBD {v['speedup_vs_lifetimes']:.1f}× faster; LL rel. diff {v['relative_ll_difference']:.1e}"
                if name == "review" and "deck_mb" in v:
                    note = f"deck {v['deck_mb']} MB; " + ", ".join(f"{k} {s:.0f}s" for k, s in v.get("notebooks", {}).items())
                rows.append(f"| {int(n):,} | {name} | {v['seconds']:.1f} | {v['peak_mb']:.0f} | {'' if v.get('ok', True) else 'FAILED '}{note} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--skip-review", action="store_true")
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = ladder(args.sizes, args.skip_review, args.keep_data)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"ladder-{stamp}.json").write_text(json.dumps(result, indent=1, default=float))
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=1, default=float))
    chart(result, RESULTS / "latest.png")
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    marker = "<!-- latest -->"
    head = text.split(marker)[0] if marker in text else text
    readme.write_text(f"{head.rstrip()}\n\n{marker}\n## Latest run ({result['date']})\n\n{table(result)}\n", encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
