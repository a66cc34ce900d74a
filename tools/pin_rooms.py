"""Pin the outputs of the functions cut into named steps (issue 22, "small rooms").

Usage::

    python tools/pin_rooms.py record DIR   # write DIR/golden.pkl from the current code
    # (record from the base commit: git archive 1e4d0f3 lib | tar -x -C BASE, then
    # PYTHONPATH=BASE/lib python tools/pin_rooms.py record DIR)
    python tools/pin_rooms.py check DIR    # compare the current code against it (1e-12)

``DIR`` holds (or receives) two demos of 600 customers, seed 5: ``demo`` (non-contractual)
and ``demo_c`` (contractual), plus ``demo_bad``, a copy of ``demo`` with planted errors for
the column checks. Every output is compared column by column, floats to 1e-12 (relative and
absolute); everything else must be equal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-12


def _demo(folder: Path, model: str) -> None:
    if not (folder / "orders.csv").exists():
        subprocess.run(
            [sys.executable, "-m", "fupan.run.cli", "demo-data", "--out", str(folder)]
            + ["--customers", "600", "--seed", "5", "--business-model", model],
            check=True,
            capture_output=True,
        )


def _bad(src: Path, folder: Path) -> None:
    """The demo with errors and warnings planted in orders and customers."""
    if folder.exists():
        return
    shutil.copytree(src, folder)
    o = pd.read_csv(folder / "orders.csv", dtype=str)
    o.loc[3, "amount"] = "abc"
    o.loc[5, "amount"] = "-12"
    o.loc[7, "order_date"] = "2021-02-30"
    o.loc[9, "customer_id"] = ""
    o.loc[11, "order_date"] = ""
    o.loc[13, "amount"] = ""
    o.loc[15, "order_id"] = o.loc[16, "order_id"]
    o.to_csv(folder / "orders.csv", index=False)
    c = pd.read_csv(folder / "customers.csv", dtype=str)
    c.loc[2, "acquired_at"] = "not a date"
    c.loc[4, "tier"] = "diamond"
    c.loc[6, "customer_id"] = c.loc[7, "customer_id"]
    c.to_csv(folder / "customers.csv", index=False)


def _params(data: Path, model: str) -> Any:
    from fupan.core import params as fparams

    return fparams.load(
        ROOT / "params" / "annual_review.yaml",
        **{"data.source": str(data), "business_model": model},
    )


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _simulation(ds: Any) -> dict[str, Any]:
    from fupan.chapters import simulate
    from fupan.core import scenarios as fsc
    from fupan.measures import outcomes

    scen = fsc.load(ds.params, fsc.scenarios_path(ds.params)[0])
    status = outcomes.churn_status(ds)
    res = simulate.simulate(ds, scen, status=status)
    return _plain(res) | {"records": res.records()}


def _others(ds: Any) -> dict[str, Any]:
    from fupan.chapters import funnel
    from fupan.measures import features as F
    from fupan.measures import outcomes, segments
    from fupan.models.ltv.data import summary_from_orders

    as_of = pd.Timestamp(ds.params.as_of).date()
    early = as_of - dt.timedelta(days=400)
    names = F.available(ds)
    ids = ds["customers"].select("customer_id").to_pandas().customer_id.sort_values()
    pairs = pd.DataFrame(
        {
            "customer_id": np.repeat(ids.to_numpy()[::7], 3),
            "snapshot_date": np.tile(
                pd.to_datetime([early, as_of - dt.timedelta(days=90), as_of]), len(ids[::7])
            ),
        }
    )
    orders = ds["orders"].to_pandas()
    return {
        # the query's row order is the engine's: sorted, so that only values are compared
        "features.pairs": F.to_frame(F.feature_expr(ds, pairs, names), names)
        .sort_values(["customer_id", "snapshot_date"], kind="stable")
        .reset_index(drop=True),
        "features.as_of": F.customer_features_before(ds, as_of, names),
        "features.early": F.customer_features_before(ds, early, names),
        "segments.as_of": segments.customer_features_as_of(ds),
        "segments.early_noeng": segments.customer_features_as_of(ds, early, engagement=False),
        "funnel": funnel.stage_snapshots(ds, funnel.month_end_dates(as_of, 12)),
        "outcomes.as_of": outcomes.churn_status(ds),
        "outcomes.early": outcomes.churn_status(ds, early),
        "ltv.W": summary_from_orders(orders, as_of, freq="W"),
        "ltv.D_cal": summary_from_orders(ds["orders"], as_of, freq="D", calibration_end=early),
        "ltv.M_count": summary_from_orders(orders, as_of, freq="M", amount_col=None),
    }


def _checks(data: Path) -> dict[str, Any]:
    from fupan.io import data as fdata

    ds = fdata.load(_params(data, "non_contractual"), strict=False)
    rep = ds.report
    out = {
        "problems": [_plain(p) for p in rep.problems],
        "profile": _plain(rep.profile),
        "supplied": _plain(rep.supplied),
    }
    for name in ("orders", "customers"):
        # with errors found the tables are not staged; the report is the output
        out[name] = ds[name].to_pandas() if not rep.errors else None
    ds.close()
    return out


def _tiny(folder: Path) -> dict[str, Any]:
    """The tests' hand-made dataset (tests/tiny.py): every output, the simulation's error
    included when it has too few churns."""
    from fupan.chapters import simulate
    from fupan.core import params as fparams
    from fupan.io import data as fdata

    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    folder.mkdir(parents=True, exist_ok=True)
    pf = tiny.params_file(folder, tiny.write(folder / "data"))
    ds = fdata.load(fparams.load(pf), strict=False)
    out: dict[str, Any] = {"problems": [_plain(p) for p in ds.report.problems]}
    out["others"] = _others(ds)
    try:
        out["simulation"] = _simulation(ds)
    except simulate.SimulationError as exc:
        out["simulation"] = str(exc)
    ds.close()
    return out


def collect(base: Path) -> dict[str, Any]:
    from fupan.io import data as fdata

    _demo(base / "demo", "non_contractual")
    _demo(base / "demo_c", "contractual")
    _bad(base / "demo", base / "demo_bad")
    out: dict[str, Any] = {}
    for key, model in [("demo", "non_contractual"), ("demo_c", "contractual")]:
        ds = fdata.load(_params(base / key, model))
        out[f"{key}.others"] = _others(ds)
        out[f"{key}.simulation"] = _simulation(ds)
        ds.close()
    out["tiny"] = _tiny(base / "tiny")
    out["checks.demo"] = _checks(base / "demo")
    out["checks.bad"] = _checks(base / "demo_bad")
    return out


def compare(a: Any, b: Any, where: str, diffs: list[str]) -> None:
    if isinstance(a, pd.DataFrame):
        try:
            pd.testing.assert_frame_equal(
                a, b, check_exact=False, rtol=TOL, atol=TOL, check_dtype=True
            )
        except AssertionError as exc:
            diffs.append(f"{where}: {str(exc)[:400]}")
    elif isinstance(a, pd.Series):
        try:
            pd.testing.assert_series_equal(a, b, check_exact=False, rtol=TOL, atol=TOL)
        except AssertionError as exc:
            diffs.append(f"{where}: {str(exc)[:400]}")
    elif isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            diffs.append(f"{where}: keys {list(a)} != {list(b) if isinstance(b, dict) else b}")
            return
        for k in a:
            compare(a[k], b[k], f"{where}.{k}", diffs)
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            diffs.append(f"{where}: list lengths differ")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            compare(x, y, f"{where}[{i}]", diffs)
    elif isinstance(a, np.ndarray):
        if a.dtype.kind == "f":
            ok = a.shape == b.shape and np.allclose(a, b, rtol=TOL, atol=TOL, equal_nan=True)
        else:
            ok = a.shape == b.shape and bool(np.all(a == b))
        if not ok:
            diffs.append(f"{where}: arrays differ")
    elif isinstance(a, float) and isinstance(b, float):
        if not (np.isnan(a) and np.isnan(b)) and not np.isclose(a, b, rtol=TOL, atol=TOL):
            diffs.append(f"{where}: {a!r} != {b!r}")
    elif type(a) is not type(b) or a != b:
        diffs.append(f"{where}: {a!r} != {b!r}")


def main() -> int:
    mode, base = sys.argv[1], Path(sys.argv[2])
    base.mkdir(parents=True, exist_ok=True)
    got = collect(base)
    golden = base / "golden.pkl"
    if mode == "record":
        golden.write_bytes(pickle.dumps(got))
        print(f"recorded {golden}")
        return 0
    want = pickle.loads(golden.read_bytes())
    diffs: list[str] = []
    compare(want, got, "", diffs)
    for d in diffs:
        print(d)
    print("IDENTICAL" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
