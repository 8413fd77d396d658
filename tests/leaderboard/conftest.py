"""The site under Streamlit's AppTest, for the page tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.session import URL_VARIABLE

APP = Path(__file__).resolve().parents[2] / "leaderboard" / "app.py"


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`site(url, page="ranking", **query)`: the app run on a page; it must not raise."""

    def run(url: str, page: str = "ranking", **params: str) -> AppTest:
        monkeypatch.setenv(URL_VARIABLE, url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params)
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    st.cache_data.clear()
    yield run
    st.cache_data.clear()
