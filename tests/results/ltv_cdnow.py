"""Published estimates of the buy-till-you-die models, to check fupan.models.ltv against.

How generated: copied by hand from the publications below (moved here unchanged from
``test_ltv_reference.py``); none was computed by fupan or by another library. Data the
CDNOW numbers refer to: the CDNOW sample (2,357 customers who first bought in Q1 1997,
39-week calibration period) as distributed with the ``lifetimes`` 0.11.3 wheel and by Fader
and Hardie; copies in ``tests/data/cdnow/``. The tolerances are in the test (0.5%, or 1%
where the publication rounds more coarsely).

- BG/NBD on CDNOW: Fader, Hardie & Lee (2005), "Counting your customers the easy way",
  Marketing Science: parameters, log-likelihood, and their worked example
  E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226.
- Pareto/NBD on CDNOW: Fader & Hardie (2005), note on the Pareto/NBD.
- Gamma-Gamma on the 946 CDNOW customers with a repeat purchase: Fader, Hardie & Lee (2005),
  Journal of Marketing Research; Fader & Hardie (2013) note (their gamma is our ``v``).
- shifted-beta-geometric: Fader & Hardie (2007), "How to project customer retention":
  survivors of two cohorts of 1,000 customers in years 1-7 and the estimates fitted on them.
"""

BGNBD_PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BGNBD_LL = -9582.4
BGNBD_EXAMPLE = 1.226

PNBD_PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PNBD_LL = -9595.0

GG_PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.44}
GG_N_REPEAT = 946

SBG_COHORTS = {
    "regular": ([631, 468, 382, 326, 289, 262, 241], {"alpha": 0.704, "beta": 1.182}),
    "high end": ([869, 743, 653, 593, 551, 517, 491], {"alpha": 0.668, "beta": 3.806}),
}
