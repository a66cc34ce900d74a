"""The at-risk list for account managers: who, how healthy, which band, and why in words.

Used by chapter 2 (the annual review) and chapter 5 (the monthly report). Each live
customer is scored with the learned health model (:class:`fupan.models.health.LearnedHealth`) on
features as of the run's date; the three groups of metrics that add the most churn risk
become the customer's reasons, written out with the customer's own values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from fupan.core import i18n
from fupan.io import cache, engine, exports
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import outcomes
from fupan.models import health

COLUMNS = [
    "customer_id",
    "customer_name",
    "account_manager",
    "tier",
    "score",
    "band",
    "churn_probability",
    "reasons",
]


#: Fewest churn events in the labelled snapshots for a health model (as the simulation's
#: churn model, :data:`fupan.chapters.simulate.MIN_EVENTS`).
MIN_EVENTS = 20


def train(
    ds: Dataset, months: int | None = None, snapshots: pd.DataFrame | None = None
) -> health.LearnedHealth:
    """Fit the learned health model on every labelled monthly snapshot of ``ds``.

    Trained once per run (:mod:`fupan.io.cache`): chapter 2 trains it, chapters 4 and 5
    score with the same model. ``snapshots`` is :func:`fupan.measures.features.snapshots` for
    these dates when the caller has already built it (chapter 2 has).

    Raises
    ------
    ValueError
        with fewer than :data:`MIN_EVENTS` churn events to learn from (callers fall back to
        rules or to the CLV model's own view, and say so).
    """
    p = ds.params
    months = months or p.churn.snapshot_months

    def fit() -> health.LearnedHealth:
        snap = snapshots
        if snap is None:
            dates = F.monthly_snapshot_dates(p.as_of, months, p.churn.horizon_days)
            snap = F.snapshots(
                ds,
                dates,
                p.churn.horizon_days,
                max_customers=p.churn.max_model_customers,
                random_state=p.seed,
            )
        labelled = snap[snap.label_complete]
        events = int(labelled.label.sum()) if len(labelled) else 0
        if events < MIN_EVENTS:
            # without churn to learn from, every score (and the bands cut from them) would
            # be noise: a period with no churn once put every customer in the red band
            raise ValueError(
                f"the health score needs at least {MIN_EVENTS} churn events in its training "
                f"snapshots; there are {events} ({len(labelled)} labelled customer-months)"
            )
        return health.fit_health_model(labelled, p)

    return cache.memo(ds, "atrisk.train", [months], fit)


def _format_value(name: str, value: Any, lang: str, fmt: i18n.Fmt) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return i18n.t("churn.value.missing", lang)
    unit = F.feature(name).unit
    if unit == "days":
        return fmt.days(float(value), 0)
    if unit == "weeks":
        return i18n.t("churn.value.weeks", lang, n=f"{float(value):.0f}")
    if unit == "ratio" and name.endswith("_qoq"):
        return fmt.rel(float(value), 0)  # no "+0%" / "-0%"
    if unit == "ratio":
        return fmt.num(float(value), 1)
    if unit == "count":
        return fmt.int(float(value))
    if unit == "currency":
        return fmt.money(float(value))
    if unit == "flag":
        return i18n.t("churn.value.yes" if float(value) >= 0.5 else "churn.value.no", lang)
    if unit == "category":
        return str(value)
    return fmt.num(float(value), 1)


def feature_label(name: str, lang: str) -> str:
    """A feature's display name (``feat.<name>``; generic for unknown survey dimensions)."""
    try:
        return i18n.t(f"feat.{name}", lang)
    except i18n.MissingLabelError:
        if name.startswith(F.DIM_PREFIX):
            return i18n.t("feat.dim_generic", lang, name=name.removeprefix(F.DIM_PREFIX))
        raise


def reasons_in_words(
    model: health.LearnedHealth,
    df: pd.DataFrame,
    lang: str,
    fmt: i18n.Fmt,
    k: int = 3,
    tier_label: Any = None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """The ``k`` metric groups adding the most churn risk per row, as "label: value" text.

    Features in ``exclude`` (drivers the churn chapter found unsupported) are never quoted:
    they still move the score, but a reason must be one the evidence supports.

    Vectorised over rows (the monthly report words every live customer): the top ``k``
    positive contributions come from one sort of the contribution matrix, and each
    feature's values are formatted once per feature, not per row.
    """
    contrib = model.contributions(df)
    hidden = [c for c in contrib.columns if c in set(exclude)]
    if hidden:
        contrib = contrib.drop(columns=hidden)
    n = len(contrib)
    if n == 0:
        return []
    vals = contrib.to_numpy(dtype=float)
    ranked = np.where(vals > 0, vals, -np.inf)
    k = min(k, ranked.shape[1])
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(ranked, order, axis=1) > -np.inf
    texts = np.full((n, k), "", dtype=object)
    for j in np.unique(order[valid]):
        f = contrib.columns[j]
        rows, slots = np.nonzero((order == j) & valid)
        values = df[f].to_numpy(dtype=object)[rows] if f in df.columns else [None] * rows.size
        label = feature_label(f, lang)
        words: dict[Any, str] = {}
        for r, slot, value in zip(rows, slots, values, strict=True):
            key = value if value is None or value == value else "nan"  # NaN != NaN
            if key not in words:
                if f == "tier" and tier_label is not None and value is not None:
                    words[key] = tier_label(value)
                else:
                    words[key] = _format_value(f, value, lang, fmt)
            texts[r, slot] = f"{label}: {words[key]}"
    return ["; ".join(t for t in row if t) for row in texts.tolist()]


def live_features(
    ds: Dataset, live: Mapping[pd.Timestamp, pd.Series], names: list[str]
) -> dict[pd.Timestamp, pd.DataFrame]:
    """:func:`fupan.measures.features.customer_features_before` per day, for each day's live customers only.

    One feature query over every day's live (customer, day) pairs instead of every
    customer acquired before each day, one query per day: a customer's features use only
    their own events before the day, so each day's rows equal those of its full query
    (same columns, types and order by id), and the event tables are read once.

    Parameters
    ----------
    ds : the dataset.
    live : scoring day -> ids of the customers to compute (acquired before that day).
    names : the features.
    """
    days = list(live)
    pairs = pd.concat(
        [pd.DataFrame({"customer_id": live[d].to_numpy(), "snapshot_date": d}) for d in days],
        ignore_index=True,
    )
    expr = F.feature_expr(ds, pairs, names)
    df = F.to_frame(expr.order_by(["snapshot_date", "customer_id"]), names)
    at = df["snapshot_date"].to_numpy()
    return {d: df[at == np.datetime64(d)].reset_index(drop=True) for d in days}


def live_ids(ds: Dataset, day: str | dt.date | pd.Timestamp) -> pd.Series:
    """Customers live at ``day``: acquired before it and not churned at it.

    One churn status per customer per date (:func:`fupan.measures.outcomes.churn_status` at ``day``),
    so a customer whose dormancy completes on ``day`` is churned there and on no at-risk
    list, as every chapter counts them. Acquired before ``day``: the feature query's
    population (features use events strictly before the day).
    """
    day = pd.Timestamp(day).normalize()
    status = outcomes.churn_status(ds, day.date())
    keep = status.churned_at.isna().to_numpy() & (status.acquired_at < day).to_numpy()
    return status.customer_id[keep].reset_index(drop=True)


def unsupported_features(model: Any = None, drivers: Any = None) -> set[str]:
    """Features the churn chapter flagged as unsupported drivers, read defensively.

    Looks at the health model (``unsupported_``: names; or ``supported_``: name -> bool) and
    at a drivers result or table (an ``unsupported`` / ``supported`` flag column, indexed or
    keyed by ``feature``; ``attrs["unsupported"]``; or an ``unsupported`` attribute). What is
    absent counts as supported: the flag is the churn chapter's to set.
    """
    out: set[str] = set()
    for obj in (model, drivers):
        if obj is None:
            continue
        if isinstance(obj, pd.DataFrame):  # its columns are attributes too: read the flags only
            out |= _flagged(obj)
            continue
        names = getattr(obj, "unsupported_", None) or getattr(obj, "unsupported", None)
        if isinstance(names, str):
            names = [names]
        if isinstance(names, Iterable) and not isinstance(names, pd.DataFrame | pd.Series):
            out |= {str(n) for n in names}
        flags = getattr(obj, "supported_", None)
        if isinstance(flags, Mapping):
            out |= {str(k) for k, v in flags.items() if not v}
        table = getattr(obj, "table", None)
        if isinstance(table, pd.DataFrame):
            out |= _flagged(table)
    return out


def _flagged(table: pd.DataFrame) -> set[str]:
    """Feature names a drivers table marks unsupported (see :func:`unsupported_features`)."""
    out = {str(n) for n in table.attrs.get("unsupported", ()) or ()}
    names = table["feature"] if "feature" in table.columns else pd.Series(table.index)
    names = names.astype(str).to_numpy()
    if "unsupported" in table.columns:
        out |= set(names[table["unsupported"].fillna(False).astype(bool).to_numpy()])
    if "supported" in table.columns:
        out |= set(names[~table["supported"].fillna(True).astype(bool).to_numpy()])
    return out


def model_names(ds: Dataset, model: health.LearnedHealth) -> list[str]:
    """The available features the model scores with (and its reasons quote), in the
    catalogue's order."""
    used = {*model.numeric, *model.categorical}
    return [n for n in F.available(ds) if n in used]


def at_risk_list(
    ds: Dataset,
    as_of: str | dt.date | pd.Timestamp | None = None,
    model: health.LearnedHealth | None = None,
    bands: tuple[str, ...] = ("red",),
    lang: str | None = None,
    top_reasons: int = 3,
    reasons_for: tuple[str, ...] | None = None,
    exclude: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Live customers in the given health bands, riskiest first, with reasons in words.

    Parameters
    ----------
    ds : the dataset.
    as_of : scoring date (default: the run's ``as_of``); features use events before it.
    model : a fitted :class:`fupan.models.health.LearnedHealth`, its bands fitted with it
        (default: trained on the dataset's monthly snapshots with :func:`train`).
    bands : which bands to list (``("red", "amber", "green")`` lists everyone).
    lang : language of the reasons (default: the params').
    top_reasons : reasons per customer.
    reasons_for : the bands whose rows get reasons (default: all of ``bands``); other rows
        have an empty text. Wording every live customer costs more than scoring them, and a
        caller that lists everyone for the band counts may only show one band's reasons.
    exclude : features never quoted as reasons (besides :func:`unsupported_features`).

    Returns
    -------
    DataFrame ``customer_id, customer_name, account_manager, tier, score`` (0-100, higher
    is healthier), ``band, churn_probability`` (within the horizon), ``reasons``.
    """
    day = pd.Timestamp(as_of if as_of is not None else ds.params.as_of).normalize()
    return at_risk_lists(ds, {day: reasons_for}, model, bands, lang, top_reasons, exclude)[day]


def at_risk_lists(
    ds: Dataset,
    days: Mapping[str | dt.date | pd.Timestamp, tuple[str, ...] | None],
    model: health.LearnedHealth | None = None,
    bands: tuple[str, ...] = ("red",),
    lang: str | None = None,
    top_reasons: int = 3,
    exclude: Iterable[str] | None = None,
) -> dict[pd.Timestamp, pd.DataFrame]:
    """:func:`at_risk_list` at several dates, with one feature query for all of them.

    Parameters
    ----------
    days : scoring date -> ``reasons_for`` at that date (``None``: every listed band).
    model, bands, lang, top_reasons : as for :func:`at_risk_list`.
    exclude : features never quoted as reasons, on top of those the churn chapter found
        unsupported (:func:`unsupported_features`).

    Returns
    -------
    Scoring date (a normalised Timestamp) -> that date's list, as :func:`at_risk_list`
    gives it.
    """
    p = ds.params
    lang = lang or p.lang
    model = model if model is not None else train(ds)
    hidden = unsupported_features(model) | set(exclude or ())
    wanted = {pd.Timestamp(d).normalize(): r for d, r in days.items()}
    live: dict[pd.Timestamp, pd.Series] = {}
    for day in wanted:
        ids = live_ids(ds, day)
        if len(ids):
            live[day] = ids
    feats = live_features(ds, live, model_names(ds, model)) if live else {}
    c = ds["customers"]
    info_cols = [x for x in ("customer_name", "account_manager", "tier") if x in c.columns]
    info = (
        engine.to_pandas(c.select("customer_id", *info_cols)).set_index("customer_id")
        if live
        else None
    )
    fmt = i18n.Fmt(lang, p.format.currency_symbol, p.format.thousands, p.format.decimals)

    def tier_label(tier: str) -> str:
        return p.tiers.labels.get(tier, {}).get(lang, tier)

    out: dict[pd.Timestamp, pd.DataFrame] = {}
    for day, reasons_for in wanted.items():
        if day not in feats:
            out[day] = pd.DataFrame(columns=COLUMNS)
            continue
        out[day] = _listed(
            model, feats[day], info, bands, reasons_for, lang, fmt, top_reasons, tier_label, hidden
        )
    return out


def _listed(
    model: health.LearnedHealth,
    feats: pd.DataFrame,
    info: pd.DataFrame,
    bands: tuple[str, ...],
    reasons_for: tuple[str, ...] | None,
    lang: str,
    fmt: i18n.Fmt,
    top_reasons: int,
    tier_label: Any,
    hidden: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """One date's list from its live customers' features (see :func:`at_risk_list`)."""
    score = model.health(feats)
    band = health.band(score, model.thresholds_)
    keep = pd.Index(band).isin(list(bands))
    feats, score, band = feats[keep].reset_index(drop=True), score[keep], band[keep]
    prob = model.predict_proba(feats)[:, 1] if len(feats) else np.array([])
    out = pd.DataFrame({"customer_id": feats.customer_id})
    for col in ("customer_name", "account_manager", "tier"):
        out[col] = out.customer_id.map(info[col]) if col in info.columns else None
    out["score"] = score
    out["band"] = band
    out["churn_probability"] = prob
    worded = np.ones(len(feats), dtype=bool)
    if reasons_for is not None:
        worded = pd.Index(band).isin(list(reasons_for))
    words = np.full(len(feats), "", dtype=object)
    if worded.any():
        words[worded] = reasons_in_words(
            model, feats[worded], lang, fmt, top_reasons, tier_label=tier_label, exclude=hidden
        )
    out["reasons"] = words if len(feats) else []
    # Scores are percentiles and tie at 0 for the riskiest; the probability breaks the tie.
    out = out.sort_values(
        ["score", "churn_probability", "customer_id"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)
    return out[COLUMNS]


# --------------------------------------------------------------------------------------
# Chapter 2's at-risk slide and export


def list_words(
    listed: pd.DataFrame, n_live: int, model: health.LearnedHealth, lang: str, fmt: i18n.Fmt
) -> tuple[str, str]:
    """The at-risk slide's title (how many live customers are red, and their share) and
    finding (the red band's cut-off)."""
    n = int(len(listed))
    return (
        i18n.t("churn.atrisk.title", lang, n=fmt.int(n), share=fmt.pct(n / max(1, n_live))),
        i18n.t("churn.atrisk.finding", lang, red=fmt.num(model.thresholds_["red"], 0)),
    )


def deck_list(
    listed: pd.DataFrame, ds: Dataset
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The at-risk list as chapter 2 exports and shows it.

    Returns
    -------
    (the export: :data:`COLUMNS` the data supplied, tiers and bands in words, headers in
    words; the shown table: name (the id for a customer without one), manager, tier,
    score, reasons, leaving out a column the data does not hold; header words per column)
    """
    p, lang = ds.params, ds.params.lang
    words = listed.assign(
        tier=listed.tier.map(p.tier_label),
        band=listed.band.map(lambda b: i18n.t(f"churn.band.{b}", lang)),
    )
    headers = {c: i18n.t(f"churn.acol.{c}", lang) for c in COLUMNS}
    export = exports.drop_unsupplied(words[list(COLUMNS)], ds).rename(columns=headers)
    # a customer without a name is shown by id; a column the data does not hold is not shown
    words["customer_name"] = words.customer_name.where(
        words.customer_name.notna(), words.customer_id
    )
    shown = [
        c
        for c in ["customer_name", "account_manager", "tier", "score", "reasons"]
        if c in ("customer_name", "score", "reasons") or words[c].notna().any()
    ]
    return export, words[shown], headers
