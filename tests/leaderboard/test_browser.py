"""The served site in a real browser: headless Chromium (Debian's chromium and chromium-driver).

Starts `mtlb leaderboard` on the pipeline's database, loads the ranking page,
waits for the table and a chart, checks the table's rows and saves a screenshot
in the test's temporary folder.  Chromium missing is a failure that says how to
install it (`scripts/test.sh` does), never a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import PIPELINE_METHODS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]  # fmt: skip

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"no healthy server at {url} within {timeout:.0f} s")


@pytest.fixture
def served(pipeline_db: str, tmp_path: Path) -> Iterator[str]:
    """`mtlb --database <pipeline db> leaderboard --port <free port>`, stopped afterwards."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mtlb")), "--database", pipeline_db, "leaderboard",
         "--port", str(port), "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        # mtlb runs Streamlit as a child: stop the whole process group this test started.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_the_ranking_page_in_chromium(served: str, tmp_path: Path) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"the real-browser test needs Debian's chromium and chromium-driver; missing: "
            f"{', '.join(missing)}. Install them: apt-get install chromium chromium-driver "
            "(scripts/test.sh does when they are absent)."
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(served)
        wait = WebDriverWait(driver, 90)
        table = wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame']"))
        )
        chart = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot")))
        # The grid's accessible cells carry the text drawn on its canvas.
        wait.until(lambda _: "hps-dwa" in table.get_attribute("textContent"))  # type: ignore[operator]
        text = table.get_attribute("textContent") or ""
        for name in ("stl-small-cnn", *PIPELINE_METHODS):
            assert name in text
        assert chart.size["width"] > 300 and chart.size["height"] > 200
        heading = driver.find_element(By.CSS_SELECTOR, "h1").text
        assert heading == "Ranking: synthetic-scenes-mini v2"
        time.sleep(1)  # let the chart finish drawing before the screenshot
        screenshot = tmp_path / "ranking.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert screenshot.stat().st_size > 20_000
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size[0] >= 1000
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 100  # a page, not a blank
