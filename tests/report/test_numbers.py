"""Numbers as a careful analyst writes them (issue 19): counts that agree in English, no
"-0", a value that crossed a threshold never reads equal to it, points vs percent named."""

from __future__ import annotations

import math

import pytest
from fupan.chapters import kpi
from fupan.core import i18n
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("key", "values", "expected"),
    [
        (
            "dc.accuracy.title",
            {"n": 1, "rows": 67},
            "Accuracy: 1 kind of issue found, affecting 67 rows",
        ),
        (
            "dc.accuracy.title",
            {"n": 2, "rows": 1},
            "Accuracy: 2 kinds of issue found, affecting 1 row",
        ),
        (
            "dc.overview.title",
            {"present": 9, "total": 9, "errors": 0, "warnings": 1},
            "Data usable: 9 of 9 tables present, 0 errors, 1 warning",
        ),
        (
            "dc.cap.title",
            {"runs": 25, "total": 26, "skipped": 1},
            "Capability map: 25 of 26 analyses can run; 1 is skipped for lack of data",
        ),
        ("deck.skipped_title", {"n": 1}, "1 section of this chapter was skipped for missing data"),
        (
            "deck.skipped_title",
            {"n": 3},
            "3 sections of this chapter were skipped for missing data",
        ),
        ("kpi.alerts.title", {"n": 1}, "1 alert needs attention this month"),
        ("run.incomplete_title", {"n": 1}, "This review is incomplete: 1 chapter failed"),
        ("run.incomplete_title", {"n": "2"}, "This review is incomplete: 2 chapters failed"),
    ],
)
def test_counts_agree_in_english(key, values, expected):
    assert i18n.t(key, "en", **values) == expected


def test_possessive_after_a_count_of_one():
    text = i18n.t("diag.funnel.rules", "en", risk=90, trend="1", ratio="50%", orders=2)
    assert "last 1 day's spend" in text and "the 1 day before" in text
    text = i18n.t("diag.funnel.rules", "en", risk=90, trend="30", ratio="50%", orders=2)
    assert "last 30 days' spend" in text


def test_count_given_as_formatted_text():
    # notebooks pass counts through Fmt.int: "1" agrees, "1,204" stays plural
    assert i18n.t("kpi.alert.new_red", "en", n="1").startswith("1 customer newly")
    assert i18n.t("kpi.alert.new_red", "en", n="1,204").startswith("1,204 customers newly")
    assert i18n.plural("1", "row", "rows") == "row"
    assert i18n.plural(0, "row", "rows") == "rows"
    assert i18n.plural("–", "row", "rows") == "rows"


def test_chinese_is_untouched_by_plural_rules():
    assert (
        i18n.t("dc.accuracy.title", "zh", n=1, rows=1)
        == "准确性：发现 1 类需要注意的问题，涉及 1 行"
    )


def test_no_english_label_says_one_with_a_plural_noun():
    """Every English label filled with 1 for each placeholder: no "1 customers"."""
    import re

    nouns = set(i18n._NOUNS)
    bad = []
    for key, texts in i18n.catalogue().items():
        names = set(re.findall(r"\{(\w+)\}", texts["en"]))
        text = i18n.t(key, "en", **{n: "1" for n in names})
        for m in re.finditer(r"(?<![\d.,%])\b1 (?:[a-z-]+ )?([a-z]+)\b", text):
            if m.group(1) in nouns and " of " not in m.group(0):
                bad.append(f"{key}: {m.group(0)!r}")
    assert not bad, bad


@given(st.floats(min_value=-0.0049, max_value=0.0049), st.sampled_from(["zh", "en"]))
def test_no_negative_zero_in_any_format(x, lang):
    f = i18n.Fmt(lang)
    for text in (
        f.num(x),
        f.num(x * 100, 0),
        f.pct(x / 100),
        f.pts(x / 100),
        f.rel(x / 100),
        f.days(x / 100),
        f.money(x),
    ):
        assert not text.lstrip("¥").startswith(("-0", "+0")), text
        assert "-0" not in text.replace("-0.", "X") or any(c in text for c in "123456789"), text


def test_nps_moving_to_minus_zero_reads_zero():
    f = i18n.Fmt("en")
    assert f.num(-0.4, 0) == "0"
    assert f.num(-4.2, 0) == "-4"


@given(st.floats(0, 1), st.floats(0, 1))
def test_apart_values_read_apart_and_keep_order(a, b):
    f = i18n.Fmt("en")
    ra, rb = f.pct_apart(a, b)
    if abs(a - b) >= 5e-6:  # three more decimals than the default can tell these apart
        assert ra != rb
        pa, pb = float(ra.rstrip("%")), float(rb.rstrip("%"))
        assert (pa > pb) == (a > b)
    if a == b:
        assert ra == rb


def test_alert_never_reads_equal_to_its_threshold():
    f = i18n.Fmt("en")
    alert = {
        "kind": "kpi",
        "kpi": "churn_rate_t12",
        "value": 0.1804,
        "threshold": 0.18,
        "relative": False,
        "direction": "lower",
        "change": None,
    }
    (msg,) = kpi.alert_messages([alert], "en", f)
    assert "18.04%" in msg and "18.00%" in msg, msg
    (zh,) = kpi.alert_messages([alert], "zh", i18n.Fmt("zh"))
    assert "18.04%" in zh and "18.00%" in zh, zh
    # far from the line: the usual one decimal
    (msg,) = kpi.alert_messages([{**alert, "value": 0.19}], "en", f)
    assert "19.0%" in msg and "18.0%" in msg, msg


def test_format_against_only_adds_digits_when_needed():
    f = i18n.Fmt("en")
    assert kpi.format_against("nps", 39.96, [45, 40], f) == ("39.96", ["45.00", "40.00"])
    assert kpi.format_against("nps", 30.0, [45, 40], f) == ("30.0", ["45.0", "40.0"])
    assert kpi.format_against("grr", 0.75, [0.9, None], f)[0] == "75.0%"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_rate_changes_in_points_money_changes_in_percent(lang):
    f = i18n.Fmt(lang)
    unit = "个百分点" if lang == "zh" else " pts"
    assert kpi.format_change("grr", -0.014, f) == f"-1.4{unit}"
    assert kpi.format_change("avg_clv", -0.022, f) == "-2.2%"
    assert kpi.format_change("avg_clv", -0.0001, f) == "0.0%"
    assert kpi.format_threshold("avg_clv", {"target": None, "target_yoy": 0.0}, "target", f) in (
        "同比 0%",
        "YoY 0%",
    )
    assert not math.isnan(f.decimals)


def test_value_and_threshold_for_a_title():
    import pandas as pd

    f = i18n.Fmt("en")
    row = pd.Series({"value": 0.1804, "target": 0.18, "target_yoy": None, "alert": 0.2})
    assert kpi.value_and_threshold("churn_rate_t12", row, "target", f) == ("18.04%", "18.00%")
    rel = {"value": 17400.0, "target": None, "target_yoy": 0.0}
    assert kpi.value_and_threshold("avg_clv", rel, "target", f) == ("¥17.4k", "YoY 0%")


def test_at_risk_reason_change_has_no_signed_zero():
    # a quarter-on-quarter change that rounds to zero reads "0%", never "+0%" or "-0%"
    from fupan.chapters import atrisk
    from fupan.core import i18n

    f = i18n.Fmt("en")
    shown = [atrisk._format_value("spend_change_qoq", v, "en", f) for v in (-0.004, 0.0, 0.25)]
    assert shown == ["0%", "0%", "+25%"]
