"""What a visitor can make the site show (issue 12): odd URLs, job tracebacks, error details,
links of reported results.  Headless (AppTest) on a small hand-made database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from db.models import JobState, Role, Submission
from db.queue import campaign, claim_jobs, queue_jobs, record_failure
from db.reported import ReportedEntry, ReportedValue, store_reported
from db.session import URL_VARIABLE, transaction
from tests.conftest import PAIRED_BENCHMARK, PAIRED_DELTAS, paired_database

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"
WORKER_PATH = "/srv/ray/worker-7/runners/train.py"
TRACEBACK = (
    "ValueError: depth head produced NaN\n"
    "Traceback (most recent call last):\n"
    f'  File "{WORKER_PATH}", line 212, in train\n'
    "    loss = step(batch)\n"
    "ValueError: depth head produced NaN\n"
)


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run the app on a page with query parameters; the caller checks for exceptions."""
    before = config.get_option("client.showErrorDetails")

    def run(url: str, page: str = "ranking", **params: str) -> AppTest:
        monkeypatch.setenv(URL_VARIABLE, url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params)
        at.switch_page(f"views/{page}.py")
        at.run()
        return at

    st.cache_data.clear()
    yield run
    st.cache_data.clear()
    config.set_option("client.showErrorDetails", before)  # the app sets it process-wide


def database(path: Path) -> str:
    """The paired database, with one failed job whose error carries a worker's traceback."""
    url = f"sqlite:///{path}"
    ids = paired_database(url, PAIRED_DELTAS)
    with transaction(url) as session:
        submission = session.get(Submission, ids["equal"])
        assert submission is not None
        queue_jobs(session, submission, [7], campaign(session, "nightly"))
        [job] = claim_jobs(session, 1)
        record_failure(session, job, JobState.FAILED, TRACEBACK)
    return url


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`database`, shared by the tests that only read it."""
    return database(tmp_path_factory.mktemp("robustness") / "site.sqlite")


def shown_text(at: AppTest) -> str:
    """Every text element of the page a visitor reads (tables aside)."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "title", "subheader", "code", "warning", "info",
                 "error", "exception", "expander"):  # fmt: skip
        for element in at.get(kind):
            parts.append(str(getattr(element, "value", None) or getattr(element, "label", "")))
            parts.extend(str(line) for line in getattr(element, "stack_trace", []) or [])
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("page", "param", "value", "quoted"),
    [
        ("submission", "submission", "²", "²"),  # str.isdigit accepts it, int() does not
        ("submission", "submission", "9" * 5000, "9" * 39 + "…"),  # int() refuses 4300+ digits
        ("compare", "compare", "2,²", "²"),
        ("compare", "compare", "2,x,3", "x"),
    ],
)
def test_an_id_that_is_not_one_is_a_one_line_notice(
    url: str, site: Any, page: str, param: str, value: str, quoted: str
) -> None:
    at = site(url, page, **{param: value})
    assert not at.exception, [e.message for e in at.exception]
    [warning] = at.warning
    assert warning.value.startswith(f"Ignored ?{param}={quoted} in the URL: not a submission")
    assert "\n" not in warning.value
    # The page still works: the leader (or the URL's valid ids) is shown.
    assert at.selectbox or at.multiselect
    if page == "compare":
        assert 2 in at.multiselect(key="compare_choice").value


def test_valid_ids_give_no_notice(url: str, site: Any) -> None:
    at = site(url, "submission", submission="2")
    assert not at.exception and not at.warning
    assert at.selectbox(key="submission_choice").value == 2


@pytest.mark.parametrize(("page", "params"), [("queue", {}), ("submission", {"submission": "2"})])
def test_a_job_error_shows_its_last_line_not_the_traceback(
    url: str, site: Any, page: str, params: dict[str, str]
) -> None:
    at = site(url, page, **params)
    assert not at.exception, [e.message for e in at.exception]
    assert "ValueError: depth head produced NaN" in [c.value for c in at.code]
    text = shown_text(at)
    assert WORKER_PATH not in text and "Traceback" not in text
    # Nor in any table (the jobs table's reason is the error's first line).
    for frame in (d.value for d in at.dataframe):
        assert not frame.astype(str).apply(lambda c: c.str.contains("/srv/ray")).any().any()


def test_an_uncaught_error_shows_no_details(tmp_path: Path, site: Any) -> None:
    """A database Streamlit cannot read: the visitor gets Streamlit's generic notice, with no
    message, type or traceback (server paths); the server's log has them."""
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a SQLite database\n" * 200)
    at = site(f"sqlite:///{broken}")
    [exception] = at.exception
    assert config.get_option("client.showErrorDetails") == "none"
    assert list(exception.stack_trace) == [] and not exception.proto.type
    assert "redacted" in exception.message
    assert str(tmp_path) not in exception.message and ".py" not in exception.message


def test_a_stored_non_web_link_is_never_rendered(tmp_path: Path, site: Any) -> None:
    """Entries stored before the importer refused such links (it does now: see
    tests/submissions/test_reported.py): the site links http(s) only."""
    url = database(tmp_path / "site.sqlite")
    values = (ReportedValue("seg", "miou", 0.5, True, 0),)
    entries = [
        ReportedEntry(*PAIRED_BENCHMARK, name=name, architecture="hard-sharing",
                      weighting=name, backbone="small-cnn", role=Role.METHOD,
                      citation=f"{name} et al.", url=link, values=values)
        for name, link in (("evil", "javascript:alert(document.cookie)"),
                           ("data", "data:text/html,<script>alert(1)</script>"),
                           ("good", "https://arxiv.org/abs/2001.00001"))
    ]  # fmt: skip
    with transaction(url) as session:
        store_reported(session, entries)
    at = site(url, "ranking")
    assert not at.exception, [e.message for e in at.exception]
    ranking = at.dataframe[0].value.set_index("name")
    details = at.dataframe[1].value.set_index("name")  # the reported results' citations
    for frame, column in ((ranking, "page"), (details, "link")):
        assert frame.loc["good", column] == "https://arxiv.org/abs/2001.00001"
        assert pd.isna(frame.loc["evil", column]) and pd.isna(frame.loc["data", column])
