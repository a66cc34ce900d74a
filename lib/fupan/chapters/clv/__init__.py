"""Chapter 3: what a customer is worth, what churn cost, and what is at risk now.

The business model in params chooses the CLV model:

``non_contractual``
    BG/NBD (or Pareto/NBD) for how often a customer buys and whether she is still active,
    times Gamma-Gamma for how much she spends per purchase (:mod:`fupan.models.ltv`), summed month
    by month over ``ltv.horizon_years``, discounted at ``ltv.discount_rate_annual`` and
    multiplied by ``ltv.margin``. Time in the transaction model is in ``ltv.time_unit``.
``contractual``
    a shifted-beta-geometric (sBG) renewal model per tier (or start-year cohort), fitted on
    contract renewal chains (``renewal_of``): a customer's value is the discounted expected
    margin of her future renewals, ``margin x annual_value x period x sum_k S(n+k)/S(n) /
    (1+d)^t_k``, where ``n`` is the renewals she has made and ``t_k`` the years until her
    ``k``-th next renewal (within the horizon). The running contract is already booked and is
    not counted: it cannot be lost to churn. Without a ``contracts`` table the chapter falls
    back to the non-contractual model and says so.

Every valuation is strictly as of a snapshot date ``s``: models are fitted on, and customers
described by, data dated before ``s`` only. LTV lost to churn values each customer who
churned in the review period at the last monthly snapshot before her churn date; the loss
rate divides it by the value of every customer in the period's base, taken when she entered
it (the period start, or the first snapshot after her first purchase or contract).

The rooms, by the question each answers:

``valuation``    what a valuation is: model choice, snapshot calendar, :class:`Valuation`
``transactions`` non-contractual CLV (BG/NBD or Pareto/NBD x Gamma-Gamma)
``contracts``    contractual CLV (sBG on renewal chains)
``check``        is the model right on the review period?
``loss``         what did churn cost? (the period ledger, loss by group, largest accounts)
``risk``         what is at risk now?
``groups``       who the customers are, and CLV by tier, industry or cohort
``review``       the chapter in one call: :func:`review`
``slides``       what each slide of notebook 03 says and shows, from a :class:`Review`

This package's names below are the chapter's public face: ``from fupan.chapters import clv``
then ``clv.review(ds, status)``.
"""

from fupan.chapters.clv.check import holdout_check, renewal_check
from fupan.chapters.clv.contracts import (
    contract_chains,
    contract_period_years,
    fit_sbg,
    renewal_value,
    sbg_cohorts,
    segment_of,
    value_contracts,
)
from fupan.chapters.clv.groups import (
    COHORT_UNITS,
    breakdown_gap,
    clv_by_group,
    cohort_unit,
    customer_attributes,
)
from fupan.chapters.clv.loss import (
    LostSummary,
    loss_by,
    material,
    period_ledger,
    summarise_loss,
    top_lost,
)
from fupan.chapters.clv.review import Review, Valuer, model_parameters, params_record, review
from fupan.chapters.clv.risk import PROBABILITY_COLUMNS, at_risk, churn_scores, normalise_scores
from fupan.chapters.clv.slides import ValuationSlides, valuation_slides
from fupan.chapters.clv.transactions import (
    TransactionModels,
    discounted_purchases,
    fit_transactions,
    transaction_summary,
    value_transactions,
)
from fupan.chapters.clv.valuation import (
    CONTRACTS,
    MODEL_NAMES,
    POOLED,
    TRANSACTIONS,
    UNRECORDED,
    YEAR_DAYS,
    Valuation,
    choose_model,
    horizon_months,
    model_name,
    month_starts,
)

__all__ = [
    "COHORT_UNITS",
    "CONTRACTS",
    "MODEL_NAMES",
    "POOLED",
    "PROBABILITY_COLUMNS",
    "TRANSACTIONS",
    "UNRECORDED",
    "YEAR_DAYS",
    "LostSummary",
    "Review",
    "TransactionModels",
    "Valuation",
    "Valuer",
    "ValuationSlides",
    "valuation_slides",
    "at_risk",
    "breakdown_gap",
    "choose_model",
    "churn_scores",
    "clv_by_group",
    "cohort_unit",
    "contract_chains",
    "contract_period_years",
    "customer_attributes",
    "discounted_purchases",
    "fit_sbg",
    "fit_transactions",
    "holdout_check",
    "horizon_months",
    "loss_by",
    "material",
    "model_name",
    "model_parameters",
    "month_starts",
    "normalise_scores",
    "params_record",
    "period_ledger",
    "renewal_check",
    "renewal_value",
    "review",
    "sbg_cohorts",
    "segment_of",
    "summarise_loss",
    "top_lost",
    "transaction_summary",
    "value_contracts",
    "value_transactions",
]
