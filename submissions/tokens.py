"""Submitter tokens: identities the operator issues for the upload page and the API.

A token reads `mtlb_<lookup>_<secret>`: `lookup` (12 hex digits) is public and
finds the row; the secret (32 random bytes, URL-safe base64) is checked against
SHA-256(salt + secret) with a constant-time comparison.  A fast hash suffices
because the secret has 256 bits of entropy (nothing to guess from a leaked
table), and a slow one would hand every request a CPU cost to abuse.  The token
itself is printed once by `mtlb token create` and stored nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import SubmitterToken, utcnow
from submissions import loader

PREFIX = "mtlb"
TOKEN_PATTERN = re.compile(r"mtlb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class TokenError(ValueError):
    """A token command that cannot be done, or a token that is refused: one line."""


@dataclass(frozen=True)
class TokenInfo:
    """What `mtlb token list` shows: never the token or its hash."""

    name: str
    quota: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


def check_name(name: str) -> str:
    """A token's name is the submitter name of its submissions: 1 to 100 printable characters."""
    if not (1 <= len(name) <= 100 and name.isprintable() and name.strip()):
        raise TokenError(f"a token name is 1 to 100 printable characters, got {loader.shown(name)}")
    return name


def create(session: Session, name: str, quota: int | None = None) -> str:
    """Store a new token for submitter `name`; return the token (shown once, stored hashed)."""
    check_name(name)
    if quota is not None and quota < 1:
        raise TokenError(f"a quota is 1 or more submissions per 24 hours, got {quota}")
    if session.scalar(select(SubmitterToken.id).where(SubmitterToken.name == name)) is not None:
        raise TokenError(
            f"a token named {loader.shown(name)} exists already (revoked tokens keep their name)"
        )
    lookup, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    session.add(
        SubmitterToken(
            name=name, lookup=lookup, salt=salt, token_hash=_hash(salt, secret), quota=quota
        )
    )
    session.flush()
    return f"{PREFIX}_{lookup}_{secret}"


def listed(session: Session) -> list[TokenInfo]:
    rows = session.scalars(select(SubmitterToken).order_by(SubmitterToken.name))
    return [TokenInfo(r.name, r.quota, r.created_at, r.last_used_at, r.revoked_at) for r in rows]


def revoke(session: Session, name: str) -> None:
    """Revoke the token of `name`: it is refused from now on; its submissions stay."""
    row = session.scalar(select(SubmitterToken).where(SubmitterToken.name == name))
    if row is None:
        raise TokenError(f"no token named {loader.shown(name)}")
    if row.revoked_at is not None:
        raise TokenError(f"the token of {loader.shown(name)} is revoked already")
    row.revoked_at = utcnow()
    session.flush()


def authenticate(session: Session, token: str, *, lock: bool = False) -> SubmitterToken:
    """The live token row that `token` opens, else TokenError (one line, without the token).

    `lock=True` first marks the row used with an UPDATE, so that within the
    caller's transaction the row is locked (PostgreSQL) and the database write
    lock is held (SQLite): one token's submissions, and their quota, go one at a time.
    """
    match = TOKEN_PATTERN.fullmatch(token.strip())
    if match is None:
        raise TokenError("token refused: not a token issued by this leaderboard")
    lookup, secret = match.groups()
    if lock:
        session.execute(
            update(SubmitterToken)
            .where(SubmitterToken.lookup == lookup, SubmitterToken.revoked_at.is_(None))
            .values(last_used_at=utcnow())
        )
    row = session.scalar(select(SubmitterToken).where(SubmitterToken.lookup == lookup))
    # Compared even when no row matched, so that timing does not tell the two apart.
    expected = row.token_hash if row is not None else "0" * 64
    salt = row.salt if row is not None else "00" * 16
    if not hmac.compare_digest(_hash(salt, secret), expected) or row is None:
        raise TokenError("token refused: unknown token")
    if row.revoked_at is not None:
        raise TokenError(f"token refused: revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    return row
