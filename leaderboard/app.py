"""The leaderboard site: Ranking, Submission, Compare and Queue pages.

Served by `mtlb leaderboard` (`streamlit run leaderboard/app.py`).  This
entry point checks the database, reads its data version (uncached: the
cached queries are keyed on it, so new results show at once), draws the
shared sidebar (benchmark version, Δm convention; both live in the URL) and
runs the page chosen in the navigation (`leaderboard/views/`).

Reads through `db.queries` on a read-only engine only, never writes; the Submit
page alone stores, through `submissions.intake.submit_spec` on its own connection.  Every
submitter string reaches the page through `st.dataframe`/`st.code`, through
`st.markdown` after `escape_markdown`, or through Plotly after `escape_plotly`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from db.session import database_url
from leaderboard import data, site

HOW_TO_SUBMIT = """\
No results yet. Train the single-task baselines, submit a method and run the queue:

```
mtlb baselines synthetic-scenes
mtlb validate my-method.yaml
mtlb submit my-method.yaml
mtlb run
```

Example specs are in `submissions/examples/`; results appear here as jobs finish.
With a token from the operator, a spec can also be uploaded on the Submit page.
"""


def welcome() -> None:
    st.title("MTL Leaderboard")
    st.info(HOW_TO_SUBMIT)


def missing_sqlite_file(url: str) -> bool:
    """True for a SQLite URL whose file does not exist (the site never creates it)."""
    parsed = make_url(url)
    name = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(name)
        and name != ":memory:"
        and not Path(str(name)).exists()
    )


def main() -> None:
    # An uncaught error shows a generic notice, not its message and traceback (server paths):
    # the details go to the server's log.  Set here, so every way of serving the site has it.
    # "none", not false: since Streamlit 1.5x false is the legacy spelling of "stacktrace".
    st.set_option("client.showErrorDetails", "none")
    st.set_page_config(page_title="MTL Leaderboard", page_icon=":material/leaderboard:",
                       layout="wide")  # fmt: skip
    url = database_url()
    try:
        version = None if missing_sqlite_file(url) else data.version(url)
    except (OperationalError, ProgrammingError):  # no schema: nothing was ever stored
        version = None
    versions = [] if version is None else data.benchmark_versions(url, version.results)
    if version is None or not versions:
        # Nothing to rank yet: the welcome, and the upload page (which needs no context).
        path, title, icon = site.PAGES["submit"]
        st.navigation(
            [
                st.Page(welcome, title="MTL Leaderboard", default=True),
                st.Page(path, title=title, icon=icon),
            ]
        ).run()
        return
    pages = {
        name: st.Page(path, title=title, icon=icon, default=name == "ranking")
        for name, (path, title, icon) in site.PAGES.items()
    }
    page = st.navigation(list(pages.values()))
    current = next(name for name, p in pages.items() if p.url_path == page.url_path)
    wanted = site.wanted_benchmark(
        current, st.query_params.to_dict(), data.submission_index(url, version.results)
    )
    benchmark, protocol_version, convention = site.sidebar(versions, wanted)
    with st.sidebar:
        st.caption("MTL Leaderboard: new results show on the next page load or interaction.")
    st.session_state[site.CONTEXT_KEY] = site.Context(
        url, version, benchmark, protocol_version, convention
    )
    page.run()


main()
