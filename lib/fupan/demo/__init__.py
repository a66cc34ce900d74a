"""Demo data generator: eight contract tables with a known truth.

``generate`` writes a synthetic customer base (``customers``, ``orders``, ``contracts``,
``touches``, ``tickets``, ``surveys``, ``activity``, ``churn_events``) plus ``truth.json``,
the planted effects and calibration figures that tests and benchmarks check an analysis
against.

How the world works (weekly time steps, snapshot = Monday 00:00):

* Customers are acquired over the history with steadily growing intake. Each gets an
  initial expected annual spend; the tier is assigned from it once and never revised.
* A latent engagement process (AR(1) per customer) drives order frequency and logins.
  Planted small customers (``truth["planted_growth_customer_ids"]``) grow their spend ×10
  or more a year or more after acquisition while keeping their low tier.
* Tickets arise from orders; first-response time grows with how busy the account is (its
  order rate) and, for the largest accounts, with their size. Touches follow a cadence by
  tier plus a follow-up after the first repeat purchase. Surveys come about twice a year.
* Contracts are annual from acquisition. Contractual: churn is a contract not renewed at
  its end. Non-contractual: customers go dormant; a customer who goes dormant within
  ``RENEWAL_LOOKAHEAD_DAYS`` after a contract end lets it lapse (the world is simulated
  that far beyond ``as_of``; nothing after ``as_of`` is written).
* Churn is a weekly hazard, log-linear in *observable* trailing features computed from the
  event data strictly before the snapshot (plus one hidden segment flag). The full
  potential event history is simulated first, then cut at churn, so features at a
  snapshot are exactly the ones an analysis can recompute from the tables.

Randomness: customers are grouped into fixed blocks of ``BLOCK`` customers, each with its
own stream ``SeedSequence(seed, spawn_key=(block,))`` (the ``block``-th child of
``SeedSequence(seed).spawn``). All random variates are drawn from potential (pre-churn,
pre-policy) quantities, so the output does not depend on ``chunk_customers`` and an
intervention changes only deterministic transforms (common random numbers).

The package, in the order a run goes through it:

* :mod:`~fupan.demo.generator`: ``generate``, the arguments, the chunk loop, key numbering.
* :mod:`~fupan.demo.config`: vocabularies, planted effects, world parameters, run context.
* :mod:`~fupan.demo.arrays`: the random streams and numpy/arrow helpers.
* :mod:`~fupan.demo.world`: one chunk's world, step by step (draws ... churn).
* :mod:`~fupan.demo.tables`: the tables of a chunk, one function per table.
* :mod:`~fupan.demo.truth`: the planted truth written to ``truth.json``.
* :mod:`~fupan.demo.pilot`: the planted ``pilots`` table.
* :mod:`~fupan.demo.writer`: appending csv/parquet files chunk by chunk.
"""

# re-exported: every fupan.demo.<NAME> used before the split still resolves
from fupan.demo.config import (  # noqa: F401
    ACQ_CHANNELS,
    ARROW_TYPES,
    BLOCK,
    CHURN_REASONS,
    COMPETITORS,
    EFFECTS,
    FEATURES,
    GENERATOR_VERSION,
    INDUSTRIES,
    NULL_FEATURES,
    ORDER_CATEGORIES,
    PRIORITIES,
    REGIONS,
    RENEWAL_LOOKAHEAD_DAYS,
    SIM_UNIT,
    SIMULATED,
    SURVEY_DIMS,
    TICKET_CATEGORIES,
    TIER_THRESHOLDS,
    TIERS,
    TOUCH_CHANNELS,
    tier_of_spend,
)
from fupan.demo.generator import generate
from fupan.demo.pilot import (  # noqa: F401
    PILOT_DORMANCY_DAYS,
    PILOT_GRACE_DAYS,
    PILOT_NAME,
    PILOT_SEED_OFFSET,
    PILOT_SHARE,
    _churned_by,
    _plant_pilot,
)

__all__ = ["generate", "TIERS", "TIER_THRESHOLDS", "CHURN_REASONS", "tier_of_spend"]
