from __future__ import annotations

import re
import warnings

import pytest
from fupan.core import i18n
from fupan.report import charts


def test_catalogue_complete_in_both_languages():
    cat = i18n.catalogue()
    assert cat
    for key, texts in cat.items():
        assert texts["zh"].strip() and texts["en"].strip(), key
        # the same placeholders in both languages, so a sentence never loses a number
        ph = {lang: set(re.findall(r"{(\w+)", texts[lang])) for lang in ("zh", "en")}
        assert ph["zh"] == ph["en"], f"{key}: placeholders differ {ph}"


def test_missing_label_raises():
    with pytest.raises(i18n.MissingLabelError):
        i18n.t("no.such.label", "zh")


@pytest.mark.parametrize(
    ("lang", "value", "expected"),
    [
        ("zh", 123456789, "¥1.2亿"),
        ("zh", 56789, "¥5.7万"),
        ("en", 56789, "¥56.8k"),
        ("en", 1.5e6, "¥1.5M"),
        ("en", -2500, "-¥2.5k"),
        ("zh", 999, "¥999"),
    ],
)
def test_money(lang, value, expected):
    assert i18n.Fmt(lang).money(value) == expected


def test_pct_and_points():
    f = i18n.Fmt("en")
    assert f.pct(0.1834) == "18.3%"
    assert f.pts(0.06) == "+6.0 pts"
    assert i18n.Fmt("zh").pts(-0.012) == "-1.2个百分点"
    assert f.pct(float("nan")) == "–"


def test_chinese_chart_renders_without_missing_glyphs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    charts.setup()
    sns.set_theme()  # what a user might call later: the fupan style must be re-appliable
    charts.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = charts.new("客户流失率 −5% 与行业基准", xlabel="区域", ylabel="流失率")
        ax.bar(["华东", "华南"], [-0.1, 0.2])
        fig.savefig(tmp_path / "c.png")
        plt.close(fig)
    missing = [w for w in caught if "Glyph" in str(w.message) or "missing from" in str(w.message)]
    assert not missing, [str(w.message) for w in missing]
