"""The cobalt-style Love plot, tested by rendering it (Agg) and reading back what was drawn."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ml.reporting.love_plot import love_figure, love_plot


def _balance() -> pd.DataFrame:
    terms = ["age", "ecog=1", "ecog=2", "site=b"]
    confounder = ["age", "ecog", "ecog", "site"]
    before = pd.DataFrame({"term": terms, "confounder": confounder, "smd": [0.40, -0.25, 0.05, 0.12],
                           "variance_ratio": [1.8, np.nan, np.nan, np.nan], "ks": [0.2, 0.1, 0.02, 0.06]})
    after = before.assign(smd=[0.0, 0.0, 0.0, 0.11], variance_ratio=[1.1, np.nan, np.nan, np.nan],
                          ks=[0.05, 0.0, 0.0, 0.06])
    return pd.concat([before.assign(sample="unadjusted"), after.assign(sample="ebal")],
                     ignore_index=True)


def test_one_row_per_term_ordered_by_the_unadjusted_imbalance():
    fig, ax = plt.subplots()
    love_plot(ax, _balance(), confounders=["age", "ecog"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # largest unadjusted |SMD| at the top (highest y), confounders starred and bold
    assert labels == ["ecog=2 *", "site=b", "ecog=1 *", "age *"]
    bold = {t.get_text(): t.get_fontweight() for t in ax.get_yticklabels()}
    assert bold["age *"] == "bold" and bold["site=b"] != "bold"
    before, after = ax.collections[:2]
    np.testing.assert_allclose(before.get_offsets()[:, 0], [0.05, 0.12, 0.25, 0.40])
    np.testing.assert_allclose(after.get_offsets()[:, 0], [0.0, 0.11, 0.0, 0.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["unadjusted", "ebal"]
    dashed = [ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--"]
    assert dashed == [0.1]
    plt.close(fig)


def test_variance_ratio_panel_has_continuous_terms_on_a_log_axis():
    fig, ax = plt.subplots()
    love_plot(ax, _balance(), stat="variance_ratio")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age"]
    assert ax.get_xscale() == "log"
    assert sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--") == [0.5, 2.0]
    plt.close(fig)


def test_signed_smd_gets_the_threshold_on_both_sides():
    fig, ax = plt.subplots()
    love_plot(ax, _balance(), absolute=False, threshold=0.2)
    assert sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--") == [-0.2, 0.2]
    assert -0.25 in ax.collections[0].get_offsets()[:, 0]
    plt.close(fig)


def test_figure_renders_three_panels_to_png():
    fig = love_figure(_balance(), confounders=["age", "ecog"])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 3
    plt.close(fig)


def test_unknown_statistic_is_named():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="stat must be one of"):
        love_plot(ax, _balance(), stat="ovl")
    plt.close(fig)
