"""The clinician's page in a real headless browser (Debian's chromium + chromedriver), at a desktop
(1280 x 800) and a phone (390 x 844) window; screenshots are kept in pytest's temporary directory."""

from __future__ import annotations

import copy
import math
import os
import shutil

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from features.contract import BY_NAME
from features.patient import EXAMPLE_PATIENT
from ml.serving import app as serve
from ml.serving import model_card
from ml.serving.results import median_ci_text

# Selenium's manager otherwise reports usage statistics over the network; the driver is Debian's
os.environ["SE_AVOID_STATS"] = "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver binary (Debian: chromium, chromium-driver; .ci/run installs them)",
)
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
CHANGES = {"age": 71, "prior_response": "PD", "liver_mets": "yes", "ecog": "2", "pdl1": ""}


@pytest.fixture(scope="module")
def server(fitted_scorer, twin_data):
    scorer = copy.deepcopy(fitted_scorer("cox"))  # the card is added to a copy of the shared scorer
    model_card.card_tags(scorer, twin_data, simulated=True, n_bootstrap=10)
    with serve.BackgroundServer(serve.create_app(scorer=scorer, contrast_bootstrap=20)) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("page-screenshots")


def _open(browser, server, size):
    browser.set_window_size(*SIZES[size])
    browser.get(server.url + "/")
    card = browser.find_element(By.ID, "model-card")
    WebDriverWait(browser, 20).until(lambda _: "Trained on" in card.text)
    return card


def _fill(browser, values):
    for name, value in values.items():
        field = browser.find_element(By.ID, f"f-{name}")
        if field.tag_name == "select":
            Select(field).select_by_value(str(value))
        else:
            field.clear()
            field.send_keys(str(value))


def _submit(browser):
    browser.find_element(By.ID, "submit").click()


def _no_overflow(browser):
    width, inner = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page is {width} px wide in a {inner} px window"


def _check_curves(browser):
    for arm in ("CI", "CIA"):
        path = browser.find_element(By.ID, f"curve-{arm}").get_attribute("d")
        assert path.startswith("M ") and path.count(" H ") > 50
        band = browser.find_element(By.ID, f"band-{arm}").get_attribute("d")
        assert band.startswith("M ") and band.endswith("Z") and band.count(" L ") > 100
    # the whole chart is on screen, and the curves end inside the drawing (at the last month)
    right, inner, ends = browser.execute_script(
        "const s = document.getElementById('curve'); const b = document.getElementById('curve-CI').getBBox();"
        "return [s.getBoundingClientRect().right, window.innerWidth, b.x + b.width];")
    assert right <= inner and 500 < ends <= 560


@pytest.mark.slow
@pytest.mark.parametrize("size", list(SIZES))
def test_page_scores_both_regimens_with_bands_and_the_card(server, browser, shots, size):
    card = _open(browser, server, size)
    assert "simulated cohort, not patients" in card.text and "Validated C-index" in card.text
    assert "Intended use" in card.text and "not a randomised comparison" in card.text
    label = browser.find_element(By.CSS_SELECTOR, "label[for=f-pfs1_months]").text
    assert label == "First-line PFS, months"
    assert "Allowed: (0, 600] months" in browser.find_element(By.ID, "h-pfs1_months").text
    _fill(browser, CHANGES)
    _submit(browser)
    WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.ID, "result")))

    body = httpx.post(server.url + "/score", params={"both_arms": "true"}, timeout=30,
                      json={**EXAMPLE_PATIENT, "age": 71, "prior_response": "PD", "liver_mets": "yes",
                            "ecog": 2, "pdl1": None}).json()
    expected, both = body["results"][0], body["both_arms"][0]
    group = browser.find_element(By.ID, "risk-group")
    assert group.text.lower() == expected["risk_group"] == "high"
    limits = [math.nan if v is None else v for v in expected["median_pfs_ci"]]
    shown = browser.find_element(By.ID, "median").text
    assert shown == median_ci_text(expected["median_pfs_months"], *limits)
    diff = both["difference"]["median_pfs_months"]
    median_diff = browser.find_element(By.ID, "median-diff").text
    assert median_diff.startswith(f"{diff['estimate']:+.1f} months (95% CI ")
    assert "not a randomised comparison" in browser.find_element(By.ID, "caveat").text
    _check_curves(browser)
    ups = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#explain-up li")]
    top = expected["top_up"][0]
    assert ups[0] == f"{BY_NAME[top['feature']].label}: {top['value']}, hazard ratio {top['clinical']:.2f}"
    assert "hazard ratio" in browser.find_element(By.ID, "effect-scale").text
    assert "SHAP" not in browser.find_element(By.TAG_NAME, "body").text
    assert "pdl1" in browser.find_element(By.ID, "model-note").text  # the missing value is said imputed
    _no_overflow(browser)
    browser.execute_script("document.getElementById('result-panel').scrollIntoView()")
    shot = shots / f"page-{size}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("size", list(SIZES))
def test_a_failed_submission_clears_the_previous_result(server, browser, shots, size):
    _open(browser, server, size)
    _submit(browser)
    WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.ID, "result")))
    _fill(browser, {"age": 300})
    _submit(browser)
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20).until(lambda _: error.text)
    assert error.text.startswith("age: Input should be less than or equal to 110")
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert browser.find_element(By.ID, "placeholder").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#curve path") == []
    assert browser.find_element(By.ID, "median").get_attribute("textContent") == ""
    _no_overflow(browser)
    assert browser.save_screenshot(str(shots / f"page-error-{size}.png"))


@pytest.mark.slow
def test_docs_render_from_the_apps_own_assets(server, browser):
    browser.set_window_size(*SIZES["desktop"])
    browser.get(server.url + "/docs")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert "/score" in browser.find_element(By.ID, "swagger-ui").text
    scripts = browser.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
    assert scripts and all(src.startswith(server.url + "/") for src in scripts)
