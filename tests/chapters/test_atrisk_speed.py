"""The at-risk list's faster scoring against the code it replaced, on generated data.

``at_risk_list`` now asks the feature query for live customers and the model's features
only, and words reasons only for the bands asked; the reference below is the previous
implementation (features of every customer, filtered to the live ones afterwards).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.chapters import atrisk
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import features as F
from fupan.measures import outcomes

EVERYONE = ("red", "amber", "green")


def _reference(ds, as_of, model, bands, lang=None, top_reasons=3):
    p = ds.params
    day = pd.Timestamp(as_of).normalize()
    lang = lang or p.lang
    # live: acquired before the day and not churned AT the day (one status per date; a
    # customer whose dormancy completes on the day is churned there, issue 17)
    status = outcomes.churn_status(ds, day.date())
    live = set(status.customer_id[status.churned_at.isna() & (status.acquired_at < day)])
    feats = F.customer_features_before(ds, day, list(F.available(ds)))
    feats = feats[feats.customer_id.isin(live)].reset_index(drop=True)
    if feats.empty:
        return pd.DataFrame(columns=atrisk.COLUMNS)
    from fupan.models import health

    score = model.health(feats)
    band = health.band(score, model.thresholds_)
    keep = pd.Index(band).isin(list(bands))
    feats, score, band = feats[keep].reset_index(drop=True), score[keep], band[keep]
    prob = model.predict_proba(feats)[:, 1] if len(feats) else np.array([])
    c = ds["customers"]
    cols = [x for x in ("customer_name", "account_manager", "tier") if x in c.columns]
    info = c.select("customer_id", *cols).to_pandas().set_index("customer_id")
    out = pd.DataFrame({"customer_id": feats.customer_id})
    for col in ("customer_name", "account_manager", "tier"):
        out[col] = out.customer_id.map(info[col]) if col in info.columns else None
    out["score"], out["band"], out["churn_probability"] = score, band, prob
    fmt = i18n.Fmt(lang, p.format.currency_symbol, p.format.thousands, p.format.decimals)

    def tier_label(tier):
        return p.tiers.labels.get(tier, {}).get(lang, tier)

    out["reasons"] = (
        atrisk.reasons_in_words(model, feats, lang, fmt, top_reasons, tier_label=tier_label)
        if len(feats)
        else []
    )
    out = out.sort_values(
        ["score", "churn_probability", "customer_id"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)
    return out[atrisk.COLUMNS]


@pytest.fixture(scope="module")
def scored(tmp_path_factory, demo_small):
    tmp = tmp_path_factory.mktemp("atrisk")
    ds = fdata.load(fparams.load(tiny.params_file(tmp, demo_small)))
    model = atrisk.train(ds, months=12)
    yield ds, model
    ds.close()


@pytest.mark.parametrize("back_days", [0, 45])
def test_at_risk_list_equals_the_full_feature_query(scored, back_days):
    ds, model = scored
    day = pd.Timestamp(ds.params.as_of) - pd.Timedelta(days=back_days)
    for bands in (EVERYONE, ("red",), ("amber", "green")):
        want = _reference(ds, day, model, bands, lang="en")
        got = atrisk.at_risk_list(ds, day, model=model, bands=bands, lang="en")
        assert len(want) > 20
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    # reasons for the red band only: the same frame, other bands' reasons left empty
    red_only = atrisk.at_risk_list(
        ds, day, model=model, bands=EVERYONE, lang="en", reasons_for=("red",)
    )
    want = _reference(ds, day, model, EVERYONE, lang="en")
    red = want.band == "red"
    assert red.any() and (~red).any()
    want.loc[~red, "reasons"] = ""
    pd.testing.assert_frame_equal(red_only, want, check_exact=True)


def test_live_features_equal_customer_features(scored):
    ds, model = scored
    day = pd.Timestamp(dt.date.fromisoformat(str(ds.params.as_of)))
    status = outcomes.churn_status(ds, (day - pd.Timedelta(days=1)).date())
    live = status.customer_id[status.churned_at.isna().to_numpy()]
    names = list(F.available(ds))
    full = F.customer_features_before(ds, day, names)
    want = full[full.customer_id.isin(set(live))].reset_index(drop=True)
    got = atrisk.live_features(ds, {day: live}, names)[day]
    assert 0 < len(got) < len(full)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert atrisk.model_names(ds, model) == [
        n for n in names if n in {*model.numeric, *model.categorical}
    ]


def test_two_dates_in_one_feature_query_equal_each_alone(scored):
    ds, model = scored
    now = pd.Timestamp(ds.params.as_of)
    before = now - pd.Timedelta(days=31)
    lists = atrisk.at_risk_lists(
        ds, {now: ("red",), before.date(): ()}, model=model, bands=EVERYONE, lang="en"
    )
    assert set(lists) == {now, before}
    for day, worded in ((now, ("red",)), (before, ())):
        want = _reference(ds, day, model, EVERYONE, lang="en")
        want.loc[~want.band.isin(worded), "reasons"] = ""
        assert (want.reasons != "").any() == bool(worded)
        pd.testing.assert_frame_equal(lists[day], want, check_exact=True)
