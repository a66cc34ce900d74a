"""Pin the demo generator's output byte for byte (issue 22, "pin first").

``record`` runs :func:`fupan.demo.generate` for a set of configurations that between them
take every code path (both business models, csv and parquet, several chunkings including
the ``SIM_UNIT`` split, every intervention, a leap-day ``as_of``, partial blocks) and
writes the sha256 of every file written, plus of the returned truth dict, to
``tools/demo_pin.json``. ``check`` reruns them and compares; exit 1 on any difference.

Usage::

    PYTHONPATH=lib python tools/demo_pin.py record [--only NAME ...]
    PYTHONPATH=lib python tools/demo_pin.py check [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("demo_pin.json")

#: name -> keyword arguments of ``demo.generate`` (besides ``out_dir``)
CONFIGS: dict[str, dict[str, Any]] = {
    "nc_300_s3": {"customers": 300, "seed": 3},
    "nc_1000_s42": {"customers": 1000, "seed": 42},
    "c_300_s3": {"customers": 300, "seed": 3, "business_model": "contractual"},
    "c_1000_s5_parquet": {
        "customers": 1000,
        "seed": 5,
        "business_model": "contractual",
        "fmt": "parquet",
    },
    "nc_1000_s5_parquet": {"customers": 1000, "seed": 5, "fmt": "parquet"},
    "nc_1000_s7_chunk250": {"customers": 1000, "seed": 7, "chunk_customers": 250},
    "nc_12000_s1_simunit": {"customers": 12_000, "seed": 1},
    "nc_1000_s42_cap": {
        "customers": 1000,
        "seed": 42,
        "interventions": {"first_response_cap_days": 3.5, "tiers": ["platinum", "gold"]},
    },
    "nc_1000_s42_touch_region_chan": {
        "customers": 1000,
        "seed": 42,
        "interventions": {
            "touch_after_first_repeat": True,
            "region": "华东",
            "acquisition_channel": "referral",
        },
    },
    "c_500_s11_cap_all": {
        "customers": 500,
        "seed": 11,
        "business_model": "contractual",
        "interventions": {"first_response_cap_days": 2.0, "touch_after_first_repeat": True},
    },
    "nc_150_s9_leap_3y": {"customers": 150, "seed": 9, "as_of": "2024-02-29", "years": 3},
    "c_130_s0": {"customers": 130, "seed": 0, "business_model": "contractual"},
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(name: str) -> dict[str, str]:
    """sha256 of every file one configuration writes, and of its returned truth dict."""
    from fupan import demo

    with tempfile.TemporaryDirectory(prefix=f"demo_pin_{name}_") as tmp:
        truth = demo.generate(tmp, **CONFIGS[name])
        out = {p.name: _sha(p.read_bytes()) for p in sorted(Path(tmp).iterdir())}
    out["<returned truth>"] = _sha(json.dumps(truth, sort_keys=True, ensure_ascii=False).encode())
    return out


def versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {"numpy": numpy.__version__, "pyarrow": pyarrow.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("record", "check"))
    ap.add_argument("--only", nargs="*", default=None, help="configuration names")
    args = ap.parse_args(argv)
    names = args.only or list(CONFIGS)
    if args.action == "record":
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"configs": {}}
        golden["versions"] = versions()
        for name in names:
            golden["configs"][name] = run(name)
            print(f"recorded {name}", flush=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
        return 0
    golden = json.loads(GOLDEN.read_text())
    if golden["versions"] != versions():
        print(f"warning: recorded with {golden['versions']}, running {versions()}")
    bad = 0
    for name in names:
        got, want = run(name), golden["configs"][name]
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        bad += bool(diff)
        print(
            f"{'OK  ' if not diff else 'DIFF'} {name}" + (f": {diff}" if diff else ""), flush=True
        )
    print("all identical" if not bad else f"{bad} configuration(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
