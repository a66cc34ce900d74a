"""Statistical models shaped like estimators: lifetime value (``ltv/``: BG/NBD,
Pareto/NBD, Gamma-Gamma, sBG), churn drivers (``drivers``) and the health score
(``health``)."""
