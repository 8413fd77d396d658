"""The submission API over real HTTP: uvicorn on a free port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from db.models import Job, Submission, TokenSubmission
from db.session import transaction
from submissions import intake
from submissions.api import create_app
from submissions.cli import app as cli
from submissions.submit import QUOTA_VARIABLE
from submissions.tokens import create, revoke
from tests.submissions.test_tokens import INVALID, spec_text


@dataclass
class Served:
    url: str  # the API's base URL
    database: str
    throttle: intake.Throttle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[Served]:
    """`create_app` under uvicorn in a thread, logging into caplog (to check for tokens)."""
    monkeypatch.delenv(QUOTA_VARIABLE, raising=False)
    caplog.set_level(logging.INFO)
    throttle = intake.Throttle(free=2, base=60.0)
    port = free_port()
    config = uvicorn.Config(create_app(database_url, throttle), host="127.0.0.1", port=port,
                            log_config=None, log_level="info")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", database_url, throttle)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def token(served: Served, name: str, quota: int | None = None) -> str:
    with transaction(served.database) as session:
        return create(session, name, quota)


def post(
    served: Served, body: bytes, bearer: str | None, name: str = "spec.yaml"
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/yaml", "X-Spec-Filename": name}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(
        f"{served.url}/api/submissions", data=body, method="POST", headers=headers
    )
    return call(request)


def call(request: urllib.request.Request | str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def stored(served: Served) -> tuple[int, int, int]:
    with transaction(served.database) as session:
        return (
            session.scalar(select(func.count()).select_from(Submission)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(TokenSubmission)) or 0,
        )


def test_submit_check_state_and_every_refusal(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = token(served, "alice", quota=2), token(served, "bob")
    code, body = post(served, spec_text("first").encode(), alice, "first.yaml")
    assert code == 201, body
    assert body["submitter"] == "alice" and body["jobs_queued"] == 3
    assert body["queue_position"] == 1 and body["api_url"] == f"/api/submissions/{body['id']}"
    assert body["page"] == f"/submission?submission={body['id']}"
    code, state = call(f"{served.url}{body['api_url']}")
    assert code == 200 and state["name"] == "first" and state["submitter"] == "alice"
    assert state["submitted_at"].endswith("+00:00")
    assert [j["state"] for j in state["jobs"]] == ["queued"] * 3
    assert [j["seed"] for j in state["jobs"]] == [0, 1, 2]
    assert state["runs"] == [] and state["delta_m"] is None and state["queue_position"] == 1

    before = stored(served)
    assert before == (1, 3, 1)
    with transaction(served.database) as session:
        revoked = create(session, "dave")
        revoke(session, "dave")
    refusals = {
        "none": post(served, spec_text("x").encode(), None),
        "revoked": post(served, spec_text("x").encode(), revoked),
        "big": post(served, b"#" * (64 * 1024 + 1), bob),
        "invalid": post(served, INVALID, bob, "bad.yaml"),
        "duplicate": post(served, spec_text("first").encode(), bob),
    }
    assert {k: c for k, (c, _) in refusals.items()} == {
        "none": 401, "revoked": 401, "big": 413, "invalid": 422, "duplicate": 409,
    }  # fmt: skip
    assert refusals["revoked"][1]["error"].startswith("token refused: revoked on ")
    assert refusals["duplicate"][1]["existing_id"] == body["id"]
    assert refusals["duplicate"][1]["error"].startswith(f"already submitted as #{body['id']} ")
    problems = refusals["invalid"][1]["problems"]
    assert problems and all(line.startswith("bad.yaml: ") for line in problems)
    assert any("did you mean 'dwa'" in line for line in problems)
    for _, answer in refusals.values():
        assert "\n" not in answer["error"] and "nothing stored" in answer["error"]
    assert stored(served) == before

    # The quota counts per token: alice has one left, bob is unlimited.
    assert post(served, spec_text("second").encode(), alice)[0] == 201
    code, answer = post(served, spec_text("third").encode(), alice)
    assert code == 429 and answer["error"].startswith("quota reached: 'alice' has stored 2 new")
    assert post(served, spec_text("third").encode(), bob)[0] == 201
    assert stored(served) == (3, 9, 3)

    # Wrong tokens: with the revoked one, three failures (2 free); then the client waits,
    # whatever it sends (the throttle).
    wrong = bob[:-4] + "AAAA"
    assert [post(served, b"x: 1", wrong)[0] for _ in range(2)] == [401, 401]
    code, answer = post(served, spec_text("fourth").encode(), bob)
    assert code == 429 and answer["error"].startswith("too many wrong tokens from this client")
    assert stored(served) == (3, 9, 3)

    code, answer = call(f"{served.url}/api/submissions/999")
    assert (code, answer) == (404, {"error": "no submission #999"})
    code, answer = call(f"{served.url}/api/submissions/abc")
    assert code == 422 and "\n" not in answer["error"]
    # Tokens never reach the server's log (uvicorn's access log included).
    logged = caplog.text
    assert "POST /api/submissions" in logged
    for secret in (alice, bob, wrong, revoked):
        # The secret part (token_urlsafe may itself hold "_": split off the prefix and lookup).
        assert secret.split("_", 2)[-1] not in logged


def test_a_burst_from_two_tokens_stores_each_accepted_spec_once(served: Served) -> None:
    """Two tokens with a quota of 4 each send 8 specs each at once, 2 of them the same specs.

    Each token has at least 6 specs of its own, so each stores exactly 4: quota holds
    under concurrency, a shared spec lands once (the other gets 409), nothing twice.
    """
    tokens = {"t1": token(served, "t1", quota=4), "t2": token(served, "t2", quota=4)}
    work = [(who, f"{who}-{i}" if i < 6 else f"shared-{i}") for who in tokens for i in range(8)]
    with ThreadPoolExecutor(len(work)) as pool:
        answers = list(
            pool.map(lambda w: post(served, spec_text(w[1]).encode(), tokens[w[0]]), work)
        )
    accepted = [(w[0], a["id"]) for w, (c, a) in zip(work, answers, strict=True) if c == 201]
    refused = sorted({c for c, _ in answers if c != 201})
    assert refused in ([409, 429], [429]), answers
    assert sorted(who for who, _ in accepted) == ["t1"] * 4 + ["t2"] * 4
    assert len({i for _, i in accepted}) == 8
    assert stored(served) == (8, 24, 8)
    with transaction(served.database) as session:
        names = list(session.scalars(select(Submission.name)))
        by_submitter = dict(
            session.execute(
                select(Submission.submitter, func.count()).group_by(Submission.submitter)
            ).all()
        )
    assert len(names) == len(set(names)) == 8 and by_submitter == {"t1": 4, "t2": 4}


def test_openapi_lists_both_routes_and_errors_carry_no_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    code, spec = call(f"{served.url}/api/openapi.json")
    assert code == 200
    assert set(spec["paths"]) == {"/api/submissions", "/api/submissions/{submission_id}"}
    assert "post" in spec["paths"]["/api/submissions"]
    assert "get" in spec["paths"]["/api/submissions/{submission_id}"]
    # A body sent in chunks, with no length announced, is cut off at the limit.
    connection = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=30)
    chunks = iter([b"#" * 40_000, b"#" * 40_000])
    headers = {"Authorization": "Bearer x", "Transfer-Encoding": "chunked"}
    connection.request("POST", "/api/submissions", chunks, headers, encode_chunked=True)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert answer["error"] == "spec is over 65536 bytes; the limit is 65536; nothing stored"
    # A broken database: the client gets one line, the server's log the traceback.
    secret = token(served, "eve")
    with transaction(served.database) as session:
        session.execute(text("DROP TABLE token_submissions"))
    code, answer = post(served, spec_text("broken").encode(), secret)
    assert (code, answer) == (500, {"error": "internal error; nothing stored"})
    assert "Traceback" in caplog.text and secret.split("_", 2)[-1] not in caplog.text
    with transaction(served.database) as session:
        assert session.scalar(select(func.count()).select_from(Submission)) == 0


def test_mtlb_submit_server_uses_the_api(
    served: Served, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = token(served, "frank")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(spec_text("remote"))
    bad.write_bytes(INVALID)
    runner = CliRunner()
    monkeypatch.delenv("MTLB_TOKEN", raising=False)
    result = runner.invoke(cli, ["submit", "--server", served.url, str(good)])
    assert result.exit_code == 1
    assert (
        result.stderr == "error: --server needs a token in $MTLB_TOKEN (the operator issues it)\n"
    )
    monkeypatch.setenv("MTLB_TOKEN", secret)
    result = runner.invoke(cli, ["submit", "--server", served.url, str(good), str(bad)])
    assert result.exit_code == 1 and "nothing sent: " in result.stderr
    assert stored(served)[0] == 0
    result = runner.invoke(cli, ["submit", "--server", served.url, str(good)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{good}: stored as #1 remote (")
    assert result.stdout.endswith("3 job(s) queued, queue position 1\n")
    result = runner.invoke(cli, ["submit", "--server", served.url, str(good)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{good}: already submitted as #1 'remote' (")
    assert secret not in result.stdout + result.stderr
