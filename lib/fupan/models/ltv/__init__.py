"""Customer-lifetime-value models that reproduce the published literature.

Non-contractual repeat buying
    :class:`BetaGeo` (BG/NBD, Fader, Hardie & Lee 2005) and :class:`ParetoNBD`
    (Schmittlein, Morrison & Colombo 1987) model how often customers buy and when they
    silently leave; :class:`GammaGamma` models how much they spend per purchase, and
    :meth:`GammaGamma.clv` combines the two into discounted CLV.
Contractual renewal
    :class:`ShiftedBetaGeometric` (sBG, Fader & Hardie 2007) models period-by-period
    retention of a cohort and gives DEL / DERL (Fader & Hardie 2010).
Data
    :func:`summary_from_orders` turns an order log (Ibis table or pandas DataFrame) into
    the per-customer frequency / recency / T / monetary summary, aggregating in the query
    engine; :func:`holdout_by_frequency` compares predictions with a holdout period.

Time units are explicit everywhere: a summary records its unit in ``attrs['time_unit']``,
a fitted model in ``time_unit_``, and CLV refuses data whose unit disagrees with the model.
"""

from ._core import UNIT_DAYS, normalize_unit, to_model_time
from .bgnbd import BetaGeo, bgnbd_loglik
from .data import holdout_by_frequency, summary_from_orders
from .gammagamma import GammaGamma, gamma_gamma_loglik
from .paretonbd import ParetoNBD, pareto_nbd_loglik
from .sbg import ShiftedBetaGeometric
from .simulate import simulate_bgnbd, simulate_gamma_gamma, simulate_pareto_nbd, simulate_sbg

__all__ = [
    "UNIT_DAYS",
    "BetaGeo",
    "GammaGamma",
    "ParetoNBD",
    "ShiftedBetaGeometric",
    "bgnbd_loglik",
    "gamma_gamma_loglik",
    "holdout_by_frequency",
    "normalize_unit",
    "pareto_nbd_loglik",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_pareto_nbd",
    "simulate_sbg",
    "summary_from_orders",
    "to_model_time",
]
