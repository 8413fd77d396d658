"""Submit page: upload a spec file with a submitter token.

The one page that writes, and only through `submissions.intake.submit_spec`
(token -> validate -> store -> queue, on its own read-write connection); every
other page keeps the read-only engine.  Problems are shown one per line as
`mtlb validate` prints them.  The token is a password field: never in the URL.
"""

from __future__ import annotations

import ipaddress

import streamlit as st

from db.session import database_url
from leaderboard.text import escape_markdown
from submissions import intake

# Streamlit refuses larger files itself (megabytes); the spec's own limit is 64 KiB,
# refused by the loader with one line.
UPLOAD_LIMIT_MB = 1


@st.cache_resource
def throttle() -> intake.Throttle:
    """One throttle per server process, shared by every browser session."""
    return intake.Throttle()


def client_key(peer: str | None, forwarded_for: str | None) -> str:
    """Who the throttle counts: the peer, or behind a local reverse proxy the address it saw.

    Only the last X-Forwarded-For entry (added by our own proxy) is trusted,
    and only when the peer is that proxy on this machine.

    >>> client_key("203.0.113.9", "1.2.3.4"), client_key("127.0.0.1", "1.2.3.4, 198.51.100.7")
    ('page:203.0.113.9', 'page:198.51.100.7')
    """
    address = peer or "unknown"
    try:
        local = ipaddress.ip_address(address).is_loopback
    except ValueError:
        local = False
    if local and forwarded_for:
        address = forwarded_for.split(",")[-1].strip() or address
    return f"page:{address}"


def render() -> None:
    st.title("Submit")
    st.caption(
        "Upload a spec file with the token the operator issued you. It is validated,"
        " stored under the token's submitter name and queued, one job per protocol seed."
        " Scripts can use `mtlb submit --server URL` or `POST /api/submissions` instead."
    )
    with st.form("submit"):
        token = st.text_input("Token", type="password", autocomplete="off")
        upload = st.file_uploader(
            "Spec file", type=["yaml", "yml", "json"], max_upload_size=UPLOAD_LIMIT_MB
        )
        sent = st.form_submit_button("Submit", type="primary")
    if not sent:
        return
    if upload is None:
        st.error("no spec file: choose one to upload; nothing stored")
        return
    client = client_key(st.context.ip_address, st.context.headers.get("X-Forwarded-For"))
    guard = throttle()
    result = guard.refusal(client) or intake.submit_spec(
        database_url(), token, upload.name, upload.getvalue()
    )
    if isinstance(result, intake.Refused):
        if result.status == 401 and token:
            guard.failed(client)
        st.error(escape_markdown(result.reason))
        if result.problems:
            st.code("\n".join(result.problems), language=None)
        return
    st.success(
        f"Stored as #{result.submission_id} {escape_markdown(result.name)}"
        f" ({result.spec_hash[:12]}) for {escape_markdown(result.submitter)}:"
        f" {result.jobs_queued} job(s) queued, queue position {result.queue_position}."
    )
    # A plain link: the page list grows once the database holds a submission.
    st.markdown(f"[Open its page](submission?submission={result.submission_id})")


if __name__ == "__main__":
    render()
