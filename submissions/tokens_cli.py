"""`mtlb token create|list|revoke` (the operator's) and `mtlb api` (serve the submission API).

Registered into `submissions.cli.app`; kept apart so that the CLI's own module stays small.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

# The database is imported where a verb runs (as in submissions/cli.py): `mtlb --help` and
# `mtlb validate` of a malformed spec load no SQLAlchemy.


token_app = typer.Typer(
    help="Submitter tokens: identities for the upload page and the submission API.",
    no_args_is_help=True,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the submitter name its submissions carry")],
    quota: Annotated[
        int | None,
        typer.Option(help="new submissions per 24 hours (default: $MTLB_SUBMISSIONS_PER_DAY)"),
    ] = None,
) -> None:
    """Issue a token: printed once, stored only as a salted hash."""
    from db.session import transaction
    from submissions.tokens import TokenError, create

    try:
        with transaction(ctx.obj) as session:
            token = create(session, name, quota)
    except TokenError as e:
        err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    err.print(
        "token for the submitter below; it is shown this once and cannot be recovered:",
        markup=False,
    )
    console.print(token, markup=False)


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """Every token's name, quota, creation, last use and revocation (never the token)."""
    from db.session import transaction
    from submissions.loader import printable
    from submissions.tokens import listed

    with transaction(ctx.obj) as session:
        rows = listed(session)
    table = Table(box=box.SIMPLE)
    for column in ("name", "quota/24h", "created", "last used", "revoked"):
        table.add_column(column)

    def when(moment: object) -> str:
        return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"

    for r in rows:
        quota = "default" if r.quota is None else str(r.quota)
        table.add_row(
            printable(r.name), quota, when(r.created_at), when(r.last_used_at), when(r.revoked_at)
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="the token's name")]
) -> None:
    """Revoke a token: refused from now on; its submissions stay."""
    from db.session import transaction
    from submissions.tokens import TokenError, revoke

    try:
        with transaction(ctx.obj) as session:
            revoke(session, name)
    except TokenError as e:
        err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"revoked the token of {name}", markup=False)


def api_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    address: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Serve the submission API (POST/GET /api/submissions, /api/openapi.json) with uvicorn.

    Run it next to `mtlb leaderboard` behind one TLS reverse proxy (README: Deployment).
    """
    import uvicorn

    from db.session import URL_VARIABLE, engine

    engine(ctx.obj)  # migrate an empty database now, not in the first request
    os.environ[URL_VARIABLE] = ctx.obj
    console.print(f"submission API: http://{address}:{port}/api/submissions", markup=False)
    # proxy_headers: behind the proxy, the throttle keys on the client's address, not the proxy's.
    uvicorn.run(
        "submissions.api:app_from_env", factory=True, host=address, port=port,
        proxy_headers=True, log_level="info",
    )  # fmt: skip
