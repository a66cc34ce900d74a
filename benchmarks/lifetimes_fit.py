"""Peer baseline: lifetimes' BG/NBD fitter on the same summary, in its own environment.

Runs under benchmarks/.venv-lifetimes (lifetimes 0.11.3); the project never imports lifetimes.
"""

import json
import sys
import time

import pandas as pd
from lifetimes import BetaGeoFitter

df = pd.read_csv(sys.argv[1])
t0 = time.perf_counter()
bgf = BetaGeoFitter(penalizer_coef=0.0)
bgf.fit(df["frequency"], df["recency"], df["T"])
seconds = time.perf_counter() - t0
params = {k: float(v) for k, v in bgf.params_.items()}
print("RESULT " + json.dumps({"seconds": seconds, "params": params, "customers": len(df)}))
