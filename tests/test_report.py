"""`rechallenge report`: the known answers of its new statistics (decision curves, nomogram), the
HTML document (sections, figures, no external reference), the browser and PDF views, bad input."""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import datasets, schema, twin
from ml.cli import report as report_cli
from ml.cli.runner import app
from ml.evaluation.decision_curve import decision_curves, net_benefit
from ml.reporting import nomogram as nomo
from ml.reporting.report import BANNER, SECTIONS, render, tripod
from ml.workflows import report_parts
from ml.workflows.report import ReportSettings, build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MINIMAL = ReportSettings(analysis_bootstrap=10, km_band_bootstrap=10, benchmark_models=("cox", "coxnet"),
                         benchmark_folds=3, benchmark_repeats=1, validate_model="cox", validate_bootstrap=3,
                         explain_models=("cox",), dca_models=("cox",), nomogram_model="cox")


# ------------------------------------------------------------------ decision curves


def _km_survival(time, event, at):
    """Product-limit S(at) by hand (distinct event times up to `at`)."""
    s = 1.0
    for t in np.unique(time[event.astype(bool)]):
        if t > at:
            break
        s *= 1 - np.sum((time == t) & event.astype(bool)) / np.sum(time >= t)
    return s


def _survival_sample(n=200, seed=3):
    rng = np.random.default_rng(seed)
    risk = rng.uniform(0.05, 0.9, n)
    t_event = rng.exponential(12 / (0.2 + 2 * risk))
    t_cens = rng.uniform(2, 30, n)
    return risk, np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [0.2, 0.45])
def test_net_benefit_equals_the_hand_formula_and_dcurves(threshold):
    risk, time, event = _survival_sample()
    horizon = 6.0
    positive = risk >= threshold
    p_event = 1 - _km_survival(time[positive], event[positive], horizon)
    share = positive.mean()
    hand = share * p_event - share * (1 - p_event) * threshold / (1 - threshold)  # TP/n - FP/n pt/(1-pt)
    ours = net_benefit(risk, time, event, horizon, np.array([threshold]))[0]
    assert ours == pytest.approx(hand, abs=1e-12)
    dcurves = pytest.importorskip("dcurves")
    frame = pd.DataFrame({"time": time, "event": event, "risk": risk})
    theirs = dcurves.dca(data=frame, outcome="event", modelnames=["risk"], thresholds=[threshold],
                         time=horizon, time_to_outcome_col="time")
    by_model = theirs.set_index("model")["net_benefit"]
    assert ours == pytest.approx(float(by_model["risk"]), abs=1e-9)
    curves = decision_curves({"risk": risk}, time, event, horizon, np.array([threshold]))
    treat_all = curves.loc[curves["model"] == "treat all", "net_benefit"].iloc[0]
    assert treat_all == pytest.approx(float(by_model["all"]), abs=1e-9)
    assert curves.loc[curves["model"] == "treat none", "net_benefit"].iloc[0] == 0


# ------------------------------------------------------------------ nomogram


@pytest.mark.parametrize("model", ["cox", pytest.param("cox_ridge_cv", marks=pytest.mark.slow)])
def test_nomogram_points_reproduce_the_linear_predictor(model):
    data = datasets.twin()
    # cox_ridge_cv is the served model; "cox" takes the same code path without the penalty search
    nomogram, pipeline = report_parts.nomogram(data, model, seed=0)
    complete = data.X.dropna().iloc[[0, 17, 42]]
    for _, row in complete.iterrows():
        total = nomo.total_points(nomogram, row.to_dict())
        lp = nomo.linear_predictor(nomogram, total)
        assert lp == pytest.approx(float(pipeline.predict(row.to_frame().T.astype(complete.dtypes))[0]),
                                   abs=1e-8)
    assert max(max(axis[3]) for axis in nomogram.axes) == pytest.approx(100)
    # the S(12) scale: a tick's total points give back that survival through the model
    labels, positions = nomogram.outcomes["S(12)"]
    s_ref = pipeline.predict_survival_function(data.X.iloc[:1])[0]
    lp_row = float(pipeline.predict(data.X.iloc[:1])[0])
    lp_tick = nomo.linear_predictor(nomogram, positions[4])
    assert float(s_ref(12.0)) ** np.exp(lp_tick - lp_row) == pytest.approx(float(labels[4]), abs=1e-8)


def test_tripod_lists_every_item_once_with_an_answer():
    items = [row["item"] for row in tripod.rows({})]
    assert len(items) == len(set(items)) and {"1", "14", "27c"} <= set(items)
    assert all(row["answer"] for row in tripod.rows({}))


# ------------------------------------------------------------------ bad input (before any work)


def test_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("ml.workflows.report.build_report", lambda *a, **k: called.append(1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["report", "--out", str(blocker / "report.html"), "--no-mlflow"])
    assert result.exit_code == 2 and "--out" in result.output and not called
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "report.txt"), "--no-mlflow"])
    assert result.exit_code == 2 and ".html" in result.output


def test_pdf_without_chromium_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(report_cli, "find_chromium", lambda: None)
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "r.html"), "--pdf", "--no-mlflow"])
    assert result.exit_code == 2 and "Chromium" in result.output


# ------------------------------------------------------------------ the document


class _Doc(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.svgs, self.refs, self.classes, self.tables = set(), 0, [], [], 0
        self.all_ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs and tag in ("div", "section"):  # the document's own ids (not the SVGs' inner ones)
            self.all_ids.append(attrs["id"])
        if "id" in attrs and tag == "section":
            self.ids.add(attrs["id"])
        self.svgs += tag == "svg"
        self.tables += tag == "table"
        self.classes.append(attrs.get("class") or "")
        self.refs += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href") and v]


@pytest.fixture(scope="module")
def report_html():
    df = twin.generate().data
    content = build_report(df, MINIMAL, source="twin", command="rechallenge report --test")
    return content, render(content)


@pytest.mark.slow
def test_every_section_figure_and_table_present_and_nothing_external(report_html):
    content, html = report_html
    doc = _Doc()
    doc.feed(html)
    assert doc.ids == {key for key, _ in SECTIONS}
    assert len(doc.all_ids) == len(set(doc.all_ids))  # a table's id never shadows a section's
    assert not content.unavailable
    # 4 KM, Love, overlap, 2 forests, 2 PH, leaderboard, calibration, DCA, nomogram, SHAP
    assert doc.svgs >= 14
    assert doc.tables >= 10
    assert all(ref.startswith("#") for ref in doc.refs), [r for r in doc.refs if not r.startswith("#")][:5]
    assert "@import" not in html and "url(http" not in html and "<script" not in html
    # the only URLs left are the SVG and XLink namespace names, which nothing fetches
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg",
                                                               "http://www.w3.org/1999/xlink"}
    assert doc.classes.count("reading") == len(SECTIONS)
    assert BANNER in html and "not computed by this version of analyze" not in html  # analyze's causal block
    assert 'id="evalues-pfs"' in html or "evalues-pfs" in html
    assert render(content) == html  # the same content gives the same bytes (fixed ids, no dates)


@pytest.mark.slow
def test_a_cohort_without_events_in_one_arm_gets_statements(tmp_path):
    df = twin.generate().data
    df.loc[df[schema.TREATMENT] == schema.TREATED, schema.ENDPOINTS["os"][1]] = 0
    content = build_report(df, MINIMAL, source="twin", command="rechallenge report")
    assert "no OS events in CIA" in content.unavailable["analysis"]
    html = render(content)
    assert html.count('class="statement"') >= 4 and content.leaderboard is not None


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="no chromium/chromedriver")
def test_in_chromium_nothing_overflows_at_1280_px(report_html, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    page = tmp_path / "report.html"
    page.write_text(report_html[1], encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(page.as_uri())
        assert driver.save_screenshot(str(tmp_path / "first_screen.png"))
        wide = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert wide[0] <= wide[1]
        overflowing = driver.execute_script(
            "return [...document.querySelectorAll('section *')].filter(e => "
            "e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && "
            "!e.closest('.block')).length")
        assert overflowing == 0
    finally:
        driver.quit()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium")
def test_pdf_has_a_page_per_section(report_html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report_html[1], encoding="utf-8")
    report_cli.print_to_pdf(CHROMIUM, page, tmp_path / "report.pdf")
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
    assert pages >= len(SECTIONS)


def _causal_endpoint(tau=20.0):
    """A `causal` endpoint block shaped as analyze writes it (ml.workflows.causal._endpoint_dict)."""
    at = {"6": {"survival": 0.7, "ci_low": 0.6, "ci_high": 0.8}, "12": {"survival": 0.5, "ci_low": 0.4,
                                                                        "ci_high": 0.6}}
    arm = {"rmst": 11.2, "se": 1.0, "ci_low": 9.2, "ci_high": 13.2}
    stats = {"estimate": 2.5, "se": 1.1, "ci_low": 0.3, "ci_high": 4.7, "p": 0.02}
    return {"estimand": "ATE", "tau": tau, "tau_chosen": "survRM2 rule",
            "adjusted_survival": {"g-formula": {"CIA": at, "CI": at}},
            "adjusted_differences": {"g-formula": {"6": {"difference": 0.1, "ci_low": 0.0, "ci_high": 0.2}}},
            "difference": "CIA minus CI", "rmst": {"unadjusted": {"CIA": arm, "CI": arm}},
            "rmst_contrasts": {"unadjusted": {"difference": stats, "ratio": stats}},
            "rmst_by_tau": {"unadjusted": [
                {"tau": t, "difference": 0.1 * t, "ci_low": 0.0, "ci_high": 0.2 * t}
                for t in (6.0, 12.0, 18.0)]},
            "evalues": {"rmst_ratio": {"evalue": 1.8, "evalue_ci": 1.1}}}


def test_the_causal_block_of_analyze_is_shown_when_present():
    from ml.reporting.report.causal import ABSENT, causal_blocks

    assert ABSENT in causal_blocks(None)[0]
    html = "".join(causal_blocks({"pfs": _causal_endpoint(), "os": _causal_endpoint(),
                                  "methods": {"rmst": "area under the KM curve up to tau"}}))
    assert "11.20 (9.20 to 13.20)" in html and "0.020" in html and "<svg" in html
    assert "E-values" in html and "area under the KM curve" in html and "0.700 (0.600 to 0.800)" in html
    assert "unexpected shape" in causal_blocks({"pfs": {"rmst": {"x": {"CIA": 1}}}})[0]


def test_reverse_km_follow_up_matches_lifelines():
    from lifelines import KaplanMeierFitter

    from ml.stats.km_band import reverse_km_median

    _, time, event = _survival_sample(n=150, seed=8)
    theirs = KaplanMeierFitter().fit(time, 1 - event).median_survival_time_
    assert reverse_km_median(time, event) == pytest.approx(theirs, abs=1e-12)


def test_weighted_km_band_surrounds_the_weighted_curve():
    from ml.stats import km
    from ml.stats.km_band import weighted_km_band
    from ml.stats.weighting import estimate_iptw

    df = twin.generate().data
    iptw = estimate_iptw(df)
    tcol, ecol = schema.ENDPOINTS["pfs"]
    time, event = df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool)
    grid = np.array([3.0, 6.0, 9.0, 12.0])
    band = weighted_km_band(df, iptw, time, event, grid, replicates=60, seed=1)
    for flag in (True, False):
        m = iptw.treated == flag
        times, surv = km.weighted_km(time[m], event[m], iptw.weights[m])
        estimate = km.step_at(times, surv, grid)
        low, high = band[flag]
        assert np.all(low <= estimate + 1e-12) and np.all(estimate <= high + 1e-12)
        assert np.all(high - low > 0.02)  # a real interval, not the point estimate repeated


def test_reuse_of_outputs_from_another_cohort_is_refused(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("ml.workflows.report.build_report", lambda *a, **k: called.append(1))
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "benchmark.json").write_text('{"n": 686, "dataset": "gbsg2"}')
    (tmp_path / "benchmark" / "leaderboard.csv").write_text("model,harrell_c\ncox,0.68\n")
    args = ["report", "--out", str(tmp_path / "r.html"), "--no-mlflow", "--reuse"]
    result = CliRunner().invoke(app, [*args, str(tmp_path)])
    assert result.exit_code == 2 and "686" in result.output and "--reuse" in result.output and not called
    result = CliRunner().invoke(app, [*args, str(tmp_path / "benchmark")])
    assert result.exit_code == 2 and "no benchmark/benchmark.json" in result.output


@pytest.mark.slow
def test_the_command_writes_the_report_and_logs_it_to_mlflow(mlflow_store, monkeypatch):
    import dataclasses

    import mlflow

    monkeypatch.setattr("ml.workflows.report.ReportSettings",
                        lambda **given: dataclasses.replace(MINIMAL, **given))
    out = mlflow_store / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--analysis-bootstrap", "5",
                                      "--validate-bootstrap", "2", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    run = mlflow.search_runs(experiment_names=["report"], output_format="list")[0]
    text = out.read_text(encoding="utf-8")
    assert run.info.run_id in text and "git commit" in text
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert "report.html" in artifacts


def test_a_report_of_nothing_computed_still_has_every_section_with_a_statement():
    from ml.reporting.report import ReportContent, Study

    study = Study(title="t", source="tiny", is_twin=False, n=5, groups=("CIA", "CI"),
                  group_sizes={"CIA": 5, "CI": 0}, events={"PFS": 0}, follow_up={"PFS": float("nan")},
                  missing=pd.DataFrame({"variable": ["age"], "missing": [0], "percent": [0.0]}))
    content = ReportContent(study=study, command="rechallenge report", settings={},
                            unavailable={"analysis": "not computed on this cohort: no PFS events"},
                            forest={"pfs": (pd.DataFrame(), pd.DataFrame())})  # a broken part
    html = render(content)
    doc = _Doc()
    doc.feed(html)
    assert doc.ids == {key for key, _ in SECTIONS}
    assert "no PFS events" in html and "could not be made from this cohort" in html
    assert BANNER not in html  # not the twin
    assert all(ref.startswith("#") for ref in doc.refs)
