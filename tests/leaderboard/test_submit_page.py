"""The Submit page: in headless Chromium against a served site, and headless (AppTest).

The browser test does what a researcher does: opens the page, types the token
the operator issued, uploads a spec file and submits; then an invalid spec
(its problems shown, nothing stored) and a wrong token (refused in one line);
and finds the stored submission on the Queue page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from streamlit.testing.v1 import AppTest

from db.models import Job, Submission
from db.session import URL_VARIABLE, transaction
from leaderboard.views.submit import client_key
from submissions.submit import QUOTA_VARIABLE, check_file
from submissions.tokens import create
from tests.conftest import PAIRED_DELTAS, paired_database
from tests.leaderboard.test_browser import CHROMEDRIVER, CHROMIUM, FLAGS, free_port, wait_healthy

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"
SPEC = """\
spec_version: 1
name: uploaded-method
benchmark: synthetic-scenes-mini
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: equal}
optimizer: {name: adam, lr: 1.0e-3}
"""
PASSWORD = "input[type='password']"
UPLOADER = "[data-testid='stFileUploader']"
ALERT = "[data-testid='stAlert']"
INVALID = "spec_version: 1\nname: bad\nbenchmark: synthetic-scenes-mini\nweighting: {name: dwaa}\n"


def counts(url: str) -> tuple[int, int]:
    with transaction(url) as session:
        return (
            session.scalar(select(func.count()).select_from(Submission)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
        )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """(site URL, database URL, token): `mtlb leaderboard` on a database with one token."""
    monkeypatch.delenv(QUOTA_VARIABLE, raising=False)
    database = f"sqlite:///{tmp_path / 'site.sqlite'}"
    with transaction(database) as session:
        token = create(session, "web-user")
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mtlb")), "--database", database, "leaderboard",
         "--port", str(port), "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, database, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert token.split("_", 2)[-1] not in (tmp_path / "server.log").read_text()


@pytest.mark.browser
def test_upload_on_the_submit_page_in_chromium(site: tuple[str, str, str], tmp_path: Path) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"the real-browser test needs Debian's chromium and chromium-driver; missing: "
            f"{', '.join(missing)}. Install them: apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, database, token = site
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SPEC)
    bad.write_text(INVALID)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    wait = WebDriverWait(driver, 60)

    def upload(path: Path, secret: str) -> str:
        """Fill the form, submit, and return the text of the alert it answers with."""
        field = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, PASSWORD)))
        if field.get_attribute("value") != secret:  # React keeps it between runs: retype it
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(Keys.DELETE)
            field.send_keys(secret)
        driver.find_element(By.CSS_SELECTOR, f"{UPLOADER} input[type='file']").send_keys(str(path))
        wait.until(lambda d: path.name in d.find_element(By.CSS_SELECTOR, UPLOADER).text)
        before = alert_text()
        driver.find_element(By.CSS_SELECTOR, "[data-testid='stFormSubmitButton'] button").click()
        # Streamlit updates the page in place: wait for the answer's text to change.
        wait.until(lambda _: alert_text() not in ("", before))
        return alert_text()

    def alert_text() -> str:
        try:
            return "\n".join(a.text for a in driver.find_elements(By.CSS_SELECTOR, ALERT))
        except StaleElementReferenceException:
            return ""

    try:
        driver.get(f"{url}/submit")
        answer = upload(good, token)
        assert answer.startswith("Stored as #1 uploaded-method (") and "for web-user" in answer
        assert answer.endswith("3 job(s) queued, queue position 1.")
        assert counts(database) == (1, 3)

        answer = upload(bad, token)
        expected = [line.replace(str(bad), "bad.yaml") for line in check_file(bad).lines()]
        assert answer == f"nothing stored: {len(expected)} problem(s)"
        code = (By.CSS_SELECTOR, "[data-testid='stCode']")
        shown = wait.until(ec.visibility_of_element_located(code)).text
        assert shown.splitlines() == expected
        assert counts(database) == (1, 3)

        answer = upload(good, token[:-4] + "AAAA")
        assert answer == "token refused: unknown token; nothing stored"
        assert counts(database) == (1, 3)

        driver.get(f"{url}/queue")
        table = wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame']"))
        )
        wait.until(lambda _: "uploaded-method" in (table.get_attribute("textContent") or ""))
        assert driver.save_screenshot(str(tmp_path / "queue.png"))
    finally:
        driver.quit()


def test_the_submit_page_only_reads_until_a_spec_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headless: the page (listed on an empty database too) sends only SELECTs when opened,
    and a submit without a file stores nothing."""
    database = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with transaction(database) as session:
        create(session, "someone")
    monkeypatch.setenv(URL_VARIABLE, database)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.switch_page("views/submit.py")
        at.run()
        assert not at.exception and at.title[0].value == "Submit"
        assert [t.label for t in at.text_input] == ["Token"]
        at.text_input[0].input("not-a-token")
        at.button[0].click()
        at.run()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert not at.exception
    assert [e.value for e in at.error] == ["no spec file: choose one to upload; nothing stored"]
    assert statements and set(statements) == {"SELECT"}
    assert counts(database) == (0, 0)

    # With results to rank, the page is one of the full site's, beside the sidebar.
    paired_database(database, PAIRED_DELTAS)
    statements.clear()
    event.listen(Engine, "before_cursor_execute", record)
    try:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.switch_page("views/submit.py")
        at.run()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert not at.exception and at.title[0].value == "Submit"
    assert at.sidebar.selectbox[0].label == "Benchmark"
    assert statements and set(statements) == {"SELECT"}


def test_client_key_trusts_only_a_local_proxy() -> None:
    assert client_key("203.0.113.9", "1.2.3.4") == "page:203.0.113.9"
    assert client_key("127.0.0.1", "6.6.6.6, 198.51.100.7") == "page:198.51.100.7"
    assert client_key("::1", None) == "page:::1"
    assert client_key(None, "1.2.3.4") == "page:unknown"
