"""The web UI in a real browser (Debian's chromium, headless, driven by Selenium through
Debian's chromedriver) against `interlock serve` on the lab, as a user goes: sign in with
the token, plan and apply a small deployment from the form and watch its node-role graph
turn green without reloading, open a node, run conformance on two sites and read the
matrix. A screenshot of each page, at a laptop's size and a phone's, is written to
$INTERLOCK_SCREENSHOTS (default build/screenshots)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.lab.conftest import Cli, Lab, Server, outstanding

SHOTS = Path(
    os.environ.get("INTERLOCK_SCREENSHOTS", Path(__file__).parents[2] / "build" / "screenshots")
)
SIZES = {"laptop": (1280, 800, False), "phone": (390, 844, True)}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("Debian's chromium and chromium-driver are needed (./install.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    # The driver named: Selenium Manager (which would download one) never runs.
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield b
    finally:
        b.quit()


def shoot(b: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (w, h, mobile) in SIZES.items():
        metrics = {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": mobile}
        b.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        b.save_screenshot(str(SHOTS / f"{name}-{size}.png"))
    b.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def until(b: WebDriver, what: Any, seconds: float = 120) -> Any:
    try:
        # The page re-renders from the server's stream: an element found a moment ago may
        # be replaced before it is read; the next poll finds the new one.
        wait = WebDriverWait(
            b, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(what)
    except TimeoutException:
        shoot(b, "timed-out")  # what the page showed when it did not come
        raise AssertionError(f"timed out at {b.current_url}: {b.page_source[:2000]}") from None


def text_of(b: WebDriver, css: str) -> str:
    return str(b.find_element(By.CSS_SELECTOR, css).text)


def test_a_user_signs_in_applies_watches_opens_a_node_and_reads_the_matrix(
    lab: Lab, cli: Cli, server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    before = outstanding(lab, "aws")
    b = browser
    b.get(f"{server.url}/sites/metal")
    until(b, ec.url_contains("/login"))
    b.find_element(By.ID, "token").send_keys("not the token")
    b.find_element(By.ID, "sign-in").click()
    assert (
        "not this server's token"
        in until(b, lambda d: d.find_element(By.CSS_SELECTOR, ".error")).text
    )
    shoot(b, "login")
    b.find_element(By.ID, "token").send_keys(server.token)
    b.find_element(By.ID, "sign-in").click()
    until(b, ec.title_contains("metal"))  # back to the page asked for
    b.get(f"{server.url}/")
    until(b, ec.title_contains("Dashboard"))
    shoot(b, "dashboard")

    # Plan, then apply, from the form.
    path = tmp_path / "hello.yaml"
    path.write_text(yaml.safe_dump({
        "name": "hello",
        "groups": {"web": {"count": 2, "traits": {"os": "ubuntu-24.04"}, "roles": ["motd"]}},
        "attributes": {"motd": {"banner": "from the browser"}},
    }))  # fmt: skip
    b.get(f"{server.url}/apply")
    b.find_element(By.ID, "file").send_keys(str(path))
    b.find_element(By.CSS_SELECTOR, "input[name=sites][value=aws]").click()
    b.find_element(By.ID, "plan-button").click()
    until(b, ec.text_to_be_present_in_element((By.ID, "plan"), "Group web"))
    shoot(b, "apply")
    b.find_element(By.ID, "apply-button").click()
    until(b, ec.url_contains("/deployments/hello"))
    b.execute_script("window.notReloaded = true")
    # The graph turns green on the page as it is, from the server's stream.
    until(b, lambda d: d.find_element(By.CSS_SELECTOR, "#graph .summary")
          .get_attribute("data-converged") == "yes", seconds=300)  # fmt: skip
    assert b.execute_script("return window.notReloaded") is True
    states = [e.get_attribute("data-state") for e in b.find_elements(By.CSS_SELECTOR, ".role")]
    assert states == ["active", "active"]
    shoot(b, "deployment")

    # A node's page.
    b.find_element(By.LINK_TEXT, "hello-web-1").click()
    until(b, ec.title_contains("hello-web-1"))
    assert "motd" in text_of(b, "ol.roles") and "aws" in text_of(b, "dl.facts")
    shoot(b, "node")

    # Conformance on two sites, from the form; then the matrix.
    b.get(f"{server.url}/conform")
    for site in ("aws", "metal"):
        b.find_element(By.CSS_SELECTOR, f"input[name=sites][value={site}]").click()
    b.find_element(By.ID, "conform-run").click()
    until(b, ec.url_contains("/jobs/"))
    until(b, lambda d: text_of(d, "#job-state") in ("done", "failed"), seconds=900)
    assert text_of(b, "#job-state") == "done", text_of(b, "#job-events")
    shoot(b, "job")
    b.get(f"{server.url}/conform")
    heads = [h.text.split("\n")[0] for h in b.find_elements(By.CSS_SELECTOR, "#matrix thead th")]
    assert heads == ["capability", "aws", "metal"]
    rows = {r.find_element(By.TAG_NAME, "th").text.split(" ")[0]: r.text
            for r in b.find_elements(By.CSS_SELECTOR, "#matrix tbody tr")}  # fmt: skip
    assert "public-address" in rows and "YES" in rows["public-address"]
    assert len(b.find_elements(By.CSS_SELECTOR, "figure.chart svg")) == 2
    shoot(b, "conform")
    b.get(f"{server.url}/sites/aws")
    assert b.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    shoot(b, "site")

    cli("down", "hello")
    assert outstanding(lab, "aws") == before
    assert server.token not in (tmp_path / "serve.log").read_text()
