"""Pin the health, driver and at-risk models' numbers on fixed inputs (issue 22).

Fits the driver analysis and the learned health model the way notebook 02 does (its
seed, its snapshots), and either records every number or compares against a recording
at 1e-12. Used while the estimators moved to scikit-learn's conventions: every step must
leave the numbers identical.

Usage::

    $PY -m fupan.run.cli demo-data --out /tmp/est/demo --customers 600 --seed 5
    $PY tools/pin_estimators.py record /tmp/est/demo /tmp/est/pin.pkl
    $PY tools/pin_estimators.py check /tmp/est/demo /tmp/est/pin.pkl
"""

from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pandas as pd


def _proba(model, df):
    p = np.asarray(model.predict_proba(df))
    return p[:, 1] if p.ndim == 2 else p


def outputs(data: str) -> dict:
    from fupan.chapters import atrisk
    from fupan.core import params as fparams
    from fupan.io import data as fdata
    from fupan.measures import features, outcomes
    from fupan.models import drivers, health
    from fupan.report.notebook import find_params

    P = fparams.load(find_params("params/annual_review.yaml"), **{"data.source": data})
    ds = fdata.connect(P, None)
    cp, H, SEED = P.churn, P.churn.horizon_days, P.seed
    status = outcomes.churn_status(ds)
    dates = features.monthly_snapshot_dates(P.as_of, cp.snapshot_months, H)
    snap_all = features.snapshots(
        ds, dates, H, max_customers=cp.max_model_customers, random_state=SEED
    )
    snap = snap_all[snap_all.label_complete].reset_index(drop=True)
    train, test, _ = features.split(snap, cp.test_months, H)
    names = [
        c
        for c in snap.columns
        if c not in ("customer_id", "snapshot_date", "label", "label_churned_at", "label_complete")
    ]
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dd = drivers.driver_data(
            ds,
            status,
            train,
            test,
            P,
            max_customers=cp.max_model_customers,
            seed=SEED,
            min_events=20,
        )
    assert dd.reason is None, dd.reason
    dn, dc = drivers.model_features(names, P, for_drivers=True)
    dr = drivers.analyse(
        dd.train,
        dd.test,
        dn,
        dc,
        definitional=drivers.definitional_features(P),
        group_correlation=cp.group_correlation,
        permutation_rows=cp.permutation_rows,
        random_state=SEED,
        step_days=dd.step_days,
    )
    out["drivers.table"] = dr.table
    out["drivers.top"] = dr.top
    out["drivers.forest"] = dr.forest
    out["drivers.groups"] = dr.groups
    out["drivers.auc"] = dr.auc
    out["drivers.agreement"] = dr.agreement
    out["drivers.logit"] = dr.logit
    out["drivers.cox"] = dr.cox
    out["drivers.rows"] = (dr.train_rows, dr.test_rows, dr.permutation_rows, dr.adjusted_for)
    out["drivers.contributions"] = drivers.contributions(dr, dd.test)
    learned = health.fit_health_model(train, P, exclude=dr.unsupported)
    out["health.proba"] = _proba(learned, test)
    out["health.coef"] = learned.coef_
    out["health.intercept"] = learned.intercept_
    out["health.C"] = learned.C_
    out["health.cv_loss"] = learned.cv_loss_
    out["health.weights"] = learned.weights_
    out["health.thresholds"] = learned.thresholds_
    out["health.health"] = learned.health(test)
    out["health.band"] = learned.band(test)
    out["health.contributions"] = learned.contributions(test)
    out["health.screened_out"] = learned.screened_out_
    hand = health.HandHealth.from_params(P).fit(train)
    out["hand.health"] = hand.health(test)
    h = learned.health(test)
    red = health.band(h, learned.thresholds_) == "red"
    out["health.backtest"] = health.backtest(h, test.label, red, test.customer_id, 50, SEED)
    out["health.compare"] = health.compare_auc(
        h, hand.health(test), test.label, test.customer_id, 50, SEED
    )
    model = atrisk.train(ds, snapshots=snap_all)
    out["atrisk.list"] = atrisk.at_risk_list(ds, model=model)
    out["atrisk.thresholds"] = model.thresholds_
    return out


def same(a, b, path="") -> list[str]:
    if isinstance(a, pd.DataFrame | pd.Series):
        try:
            pd.testing.assert_frame_equal(
                a if isinstance(a, pd.DataFrame) else a.to_frame(),
                b if isinstance(b, pd.DataFrame) else b.to_frame(),
                rtol=1e-12,
                atol=1e-12,
                check_dtype=False,
            )
        except AssertionError as e:
            return [f"{path}: {str(e)[:400]}"]
        return []
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"]
        return [m for k in a for m in same(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list | tuple) and not (a and isinstance(a[0], float)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [
            m for i, (x, y) in enumerate(zip(a, b, strict=True)) for m in same(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, np.ndarray) and a.dtype.kind not in "fiu":
        return [] if np.array_equal(a, b) else [f"{path}: arrays differ"]
    if isinstance(a, float | int | np.ndarray | list | tuple) and not isinstance(a, bool):
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if x.shape != y.shape or not np.allclose(x, y, rtol=1e-12, atol=1e-12, equal_nan=True):
            return [f"{path}: {a!r} vs {b!r}"[:400]]
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"[:400]]


if __name__ == "__main__":
    mode, data, path = sys.argv[1:4]
    got = outputs(data)
    if mode == "record":
        with open(path, "wb") as fh:
            pickle.dump(got, fh)
        print(f"recorded {len(got)} outputs to {path}")
    else:
        with open(path, "rb") as fh:
            want = pickle.load(fh)
        bad = same(want, got)
        print("\n".join(bad) if bad else f"all {len(want)} outputs identical at 1e-12")
        sys.exit(1 if bad else 0)
