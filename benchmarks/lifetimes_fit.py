"""Peer baseline: lifetimes' BG/NBD and Gamma-Gamma fitters on the same summary.

Runs under benchmarks/.venv-lifetimes (lifetimes 0.11.3); the project never imports lifetimes.
Prints one ``RESULT {json}`` line with, per attempt, the seconds, whether it converged and
the parameters (in the summary's own time unit); run.py evaluates every parameter set with
fupan's log-likelihood so both fitters are judged by the same function.

Why the default BG/NBD call fails and what this does about it
    ``BetaGeoFitter.fit`` minimises the *mean* negative log-likelihood with scipy's BFGS at
    ``gtol = tol = 1e-7`` on log-parameters (start 0.1 each), time rescaled so max(T) = 1.
    On the demo data ``a`` and ``b`` are weakly identified: the likelihood is a long flat
    ridge (BFGS's inverse-Hessian entries for log a, log b are ~900 against ~4 for log r,
    log alpha). On 10k customers BFGS gets to a gradient of ~2e-7 in 32 iterations, where
    the decrease still available (~1e-13) is as small as the rounding noise of the summed
    mean objective, so the line search fails, scipy returns status 2 ("precision loss")
    and lifetimes raises ConvergenceError. The point it stopped at agrees with fupan's
    optimum to the four digits scipy prints. Not the cause: the time unit (days or
    weeks fail alike, lifetimes rescales T), nor a wrong optimum (started at fupan's optimum
    it stops at once, successfully). A penalizer would change the likelihood being compared,
    so instead the fit is repeated with ``tol=1e-6``, which only relaxes the stopping rule;
    both attempts are reported, and the timed comparison uses the successful one.
    lifetimes is also run on the rows compressed to unique (frequency, recency, T) with
    ``weights`` - its documented way to fit large data - since fupan compresses internally.
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter


def _attempt(make, fit) -> dict:
    model = make()
    t0 = time.perf_counter()
    try:
        fit(model)
    except Exception as exc:  # ConvergenceError, or a scipy failure
        return {
            "ok": False,
            "seconds": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}",
        }
    return {
        "ok": True,
        "seconds": time.perf_counter() - t0,
        "params": {k: float(v) for k, v in model.params_.items()},
    }


def main(path: str) -> dict:
    df = pd.read_csv(path)
    f, r, T = df["frequency"].to_numpy(), df["recency"].to_numpy(), df["T"].to_numpy()
    out: dict = {"customers": len(df)}

    def bg(tol, **kw):
        return lambda m: m.fit(f, r, T, tol=tol, **kw)

    out["bgnbd_default"] = _attempt(BetaGeoFitter, bg(1e-7))
    out["bgnbd_tol_1e-6"] = _attempt(BetaGeoFitter, bg(1e-6))
    grouped = df.groupby(["frequency", "recency", "T"], sort=False).size().reset_index(name="w")
    out["unique_rows"] = len(grouped)
    out["bgnbd_weighted_tol_1e-6"] = _attempt(
        BetaGeoFitter,
        lambda m: m.fit(
            grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["w"], tol=1e-6
        ),
    )
    rep = df[(df.frequency > 0) & (df.monetary > 0)]
    out["repeat_customers"] = len(rep)
    out["gamma_gamma_default"] = _attempt(
        GammaGammaFitter, lambda m: m.fit(rep["frequency"], rep["monetary"])
    )
    if not out["gamma_gamma_default"]["ok"]:
        out["gamma_gamma_tol_1e-6"] = _attempt(
            GammaGammaFitter, lambda m: m.fit(rep["frequency"], rep["monetary"], tol=1e-6)
        )
    out["numpy"] = np.__version__
    return out


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print("RESULT " + json.dumps(main(sys.argv[1])))
