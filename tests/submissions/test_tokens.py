"""Submitter tokens: issued once, stored hashed, refused when wrong or revoked; the throttle."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Job, Submission, SubmitterToken, TokenSubmission
from db.session import transaction
from submissions import intake, tokens
from submissions.cli import app
from submissions.submit import QUOTA_VARIABLE, check_file

runner = CliRunner()

SPEC = """\
spec_version: 1
name: {name}
benchmark: synthetic-scenes-mini
architecture: {{name: hard-sharing, backbone: small-cnn}}
weighting: {{name: equal}}
optimizer: {{name: adam, lr: {lr}}}
"""


def spec_text(name: str) -> str:
    """A mini spec called `name`.  Its learning rate differs per name: the same training
    set-up under two names is refused as one (`submissions.spec.setup_hash`)."""
    lr = 1e-4 * (1 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100)
    return SPEC.format(name=name, lr=f"{lr:.6g}")


INVALID = b"spec_version: 1\nname: bad\nbenchmark: synthetic-scenes-mini\nweighting: {name: dwaa}\n"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(QUOTA_VARIABLE, raising=False)
    return f"sqlite:///{tmp_path / 'tokens.sqlite'}"


def mtlb(url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--database", url, *args])
    return result.exit_code, result.stdout, result.stderr


def counts(url: str) -> tuple[int, int, int]:
    with transaction(url) as session:
        return (
            session.scalar(select(func.count()).select_from(Submission)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(TokenSubmission)) or 0,
        )


def test_create_prints_the_token_once_and_stores_only_a_salted_hash(url: str) -> None:
    code, out, err = mtlb(url, "token", "create", "alice", "--quota", "5")
    assert code == 0, err
    token = out.strip()
    match = tokens.TOKEN_PATTERN.fullmatch(token)
    assert match is not None and "shown this once" in err
    lookup, secret = match.groups()
    with transaction(url) as session:
        row = session.scalars(select(SubmitterToken)).one()
        assert (row.name, row.quota, row.lookup) == ("alice", 5, lookup)
        # SHA-256 over the salt's bytes then the secret, by hand; the secret is nowhere.
        expected = hashlib.sha256(bytes.fromhex(row.salt) + secret.encode()).hexdigest()
        assert row.token_hash == expected
        assert secret not in repr([row.name, row.lookup, row.salt, row.token_hash])
        assert tokens.authenticate(session, token).name == "alice"
    code, out, _ = mtlb(url, "token", "list")
    assert code == 0 and "alice" in out and "5" in out and secret not in out and lookup not in out


def test_wrong_revoked_and_malformed_tokens_are_refused_in_one_line(url: str) -> None:
    token = mtlb(url, "token", "create", "bob")[1].strip()
    lookup = tokens.TOKEN_PATTERN.fullmatch(token).groups()[0]  # type: ignore[union-attr]
    wrong = f"mtlb_{lookup}_{'A' * 43}"
    with transaction(url) as session:
        for bad, message in ((wrong, "unknown token"), ("hunter2", "not a token issued")):
            with pytest.raises(tokens.TokenError, match=message) as caught:
                tokens.authenticate(session, bad)
            assert bad not in str(caught.value) and "\n" not in str(caught.value)
    assert mtlb(url, "token", "revoke", "bob")[:2] == (0, "revoked the token of bob\n")
    with transaction(url) as session, pytest.raises(tokens.TokenError, match=r"revoked on 20"):
        tokens.authenticate(session, token)
    code, _, err = mtlb(url, "token", "revoke", "bob")
    assert code == 1 and err == "error: the token of 'bob' is revoked already\n"
    code, _, err = mtlb(url, "token", "create", "bob")
    assert code == 1 and "exists already" in err and err.count("\n") == 1
    code, _, err = mtlb(url, "token", "revoke", "nobody")
    assert (code, err) == (1, "error: no token named 'nobody'\n")
    code, _, err = mtlb(url, "token", "create", "x\ty")
    assert code == 1 and "1 to 100 printable characters" in err


def test_submit_spec_stores_under_the_token_name_and_refuses_cleanly(url: str) -> None:
    token = mtlb(url, "token", "create", "carol", "--quota", "2")[1].strip()
    ok = intake.submit_spec(url, token, "a.yaml", spec_text("a").encode())
    assert isinstance(ok, intake.Accepted), ok
    assert (ok.submitter, ok.jobs_queued, ok.queue_position) == ("carol", 3, 1)
    second = intake.submit_spec(url, token, "b.yaml", spec_text("b").encode())
    # Three jobs of `a` are queued ahead of `b`'s first.
    assert isinstance(second, intake.Accepted) and second.queue_position == 4
    assert counts(url) == (2, 6, 2)
    with transaction(url) as session:
        assert set(session.scalars(select(Submission.submitter))) == {"carol"}

    refusals = {
        "none": intake.submit_spec(url, None, "c.yaml", spec_text("c").encode()),
        "wrong": intake.submit_spec(url, token[:-3] + "AAA", "c.yaml", b"x: 1"),
        "big": intake.submit_spec(url, token, "c.yaml", b"#" * (64 * 1024 + 1)),
        "invalid": intake.submit_spec(url, token, "dir/bad.yaml", INVALID),
        "duplicate": intake.submit_spec(url, token, "a.yaml", spec_text("a").encode()),
        "setup": intake.submit_spec(
            url, token, "a2.yaml", spec_text("a").replace("name: a\n", "name: a2\n").encode()
        ),
        "quota": intake.submit_spec(url, token, "c.yaml", spec_text("c").encode()),
    }
    statuses = {k: r.status for k, r in refusals.items() if isinstance(r, intake.Refused)}
    assert statuses == {"none": 401, "wrong": 401, "big": 413, "invalid": 422,
                        "duplicate": 409, "setup": 409, "quota": 429}  # fmt: skip
    for refused in refusals.values():
        assert isinstance(refused, intake.Refused)
        assert "\n" not in refused.reason and token not in refused.reason
        assert "nothing stored" in refused.reason
    assert refusals["duplicate"].reason.startswith(f"already submitted as #{ok.submission_id} 'a'")
    assert refusals["duplicate"].existing_id == ok.submission_id  # type: ignore[union-attr]
    assert refusals["setup"].reason.startswith(
        f"identical training set-up to submission #{ok.submission_id} 'a'"
    )
    assert "65537 bytes; the limit is 65536" in refusals["big"].reason
    assert counts(url) == (2, 6, 2)


def test_upload_problems_are_the_lines_mtlb_validate_prints(url: str, tmp_path: Path) -> None:
    token = mtlb(url, "token", "create", "dan")[1].strip()
    path = tmp_path / "bad.yaml"
    path.write_bytes(INVALID)
    refused = intake.submit_spec(url, token, "/home/someone/bad.yaml", INVALID)
    assert isinstance(refused, intake.Refused)
    # Named by the file's name only (a client's folders are not echoed back).
    assert refused.problems == [
        line.replace(str(path), "bad.yaml") for line in check_file(path).lines()
    ]
    assert any("did you mean 'dwa'" in line for line in refused.problems), refused.problems
    assert refused.reason == f"nothing stored: {len(refused.problems)} problem(s)"


def test_the_operator_default_quota_applies_to_tokens_without_their_own(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mtlb(url, "token", "create", "erin")[1].strip()
    monkeypatch.setenv(QUOTA_VARIABLE, "1")
    assert isinstance(intake.submit_spec(url, token, "a.yaml", spec_text("a").encode()),
                      intake.Accepted)  # fmt: skip
    refused = intake.submit_spec(url, token, "b.yaml", spec_text("b").encode())
    assert isinstance(refused, intake.Refused) and refused.status == 429
    assert "'erin' has stored 1 new submission(s) in the last 24 hours" in refused.reason


def test_the_throttle_slows_repeated_failures_from_one_client() -> None:
    now = [1000.0]
    throttle = intake.Throttle(free=2, base=1.0, cap=4.0, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("a")
    assert throttle.wait("a") == 0.0  # the free failures cost nothing
    throttle.failed("a")
    assert throttle.wait("a") == 1.0 and throttle.wait("b") == 0.0
    refused = throttle.refusal("a")
    assert refused is not None and refused.status == 429
    assert re.fullmatch(r"too many wrong tokens from this client: try again in 1 s; nothing stored",
                        refused.reason)  # fmt: skip
    now[0] += 1.0
    assert throttle.wait("a") == 0.0 and throttle.refusal("a") is None
    throttle.failed("a")
    assert throttle.wait("a") == 2.0  # doubles
    for _ in range(5):
        throttle.failed("a")
    assert throttle.wait("a") == 4.0  # capped
    now[0] += 15 * 60 + 1  # the window passed: forgotten
    assert throttle.wait("a") == 0.0


def test_the_throttle_forgets_expired_clients_under_a_flood() -> None:
    now = [0.0]
    throttle = intake.Throttle(clock=lambda: now[0])
    throttle.SWEEP_ABOVE = 100
    for i in range(100):
        throttle.failed(f"10.0.0.{i}")
    assert throttle.clients() == 100
    now[0] += 15 * 60 + 1
    throttle.failed("10.0.1.1")  # the sweep drops the 100 expired ones
    assert throttle.clients() == 1
