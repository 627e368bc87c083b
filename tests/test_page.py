"""The clinician's page in a real headless browser (Debian's chromium + chromedriver)."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from features.patient import EXAMPLE_PATIENT
from ml.serving import app as serve

# Selenium's manager otherwise reports usage statistics over the network; the driver is Debian's
os.environ["SE_AVOID_STATS"] = "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver binary (Debian: chromium, chromium-driver; .ci/run installs them)",
)


@pytest.fixture(scope="module")
def server(fitted_scorer):
    with serve.BackgroundServer(serve.create_app(scorer=fitted_scorer("cox"))) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


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


def test_form_shows_curve_group_and_explanation(server, browser, tmp_path):
    browser.get(server.url + "/")
    changes = {"age": 71, "prior_response": "PD", "liver_mets": "yes", "ecog": "2", "pdl1": ""}
    _fill(browser, changes)
    _submit(browser)
    WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "result")))

    expected = httpx.post(server.url + "/score", json={**EXAMPLE_PATIENT, "age": 71,
                                                       "prior_response": "PD", "liver_mets": "yes",
                                                       "ecog": 2, "pdl1": None}).json()["results"][0]
    group = browser.find_element(By.ID, "risk-group")
    assert group.text.lower() == expected["risk_group"] == "high"
    assert "high" in group.get_attribute("class")
    assert browser.find_element(By.ID, "median").text == expected["median_pfs"]
    path = browser.find_element(By.ID, "curve-line").get_attribute("d")
    assert path.startswith("M ") and path.count(" H ") > 50
    ups = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#explain-up li")]
    assert ups and ups[0].startswith(expected["top_up"][0]["feature"])
    assert "pdl1" in browser.find_element(By.ID, "model-note").text  # the missing value is said imputed
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_form_shows_the_field_of_a_bad_value(server, browser):
    browser.get(server.url + "/")
    _fill(browser, {"age": 300})
    _submit(browser)
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20).until(lambda _: error.text)
    assert error.text.startswith("age: Input should be less than or equal to 110")
    assert not browser.find_element(By.ID, "result").is_displayed()
