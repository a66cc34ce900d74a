"""Statistical models shaped like estimators: lifetime value (``ltv/``: BG/NBD,
Pareto/NBD, Gamma-Gamma, sBG), churn drivers (``drivers``, which runs the logit of
``logit``, the Cox model of ``hazard`` and the boosted trees of ``trees`` on the design
columns of ``design``) and the health score (``health``)."""
