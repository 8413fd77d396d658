"""`mtlb submit --server URL FILE...`: submit through a leaderboard's API with `$MTLB_TOKEN`.

Every file is validated here first, by the same code as `mtlb validate`: any
problem is printed and nothing is sent.  Then each file is sent on its own
(`POST /api/submissions`) and the server's answer printed, one line per file.
The token travels in the `Authorization` header only, never in a URL or a message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from submissions import loader
from submissions.submit import check_file

TOKEN_VARIABLE = "MTLB_TOKEN"
TIMEOUT_S = 60


def _post(server: str, token: str, path: Path, data: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{server.rstrip('/')}/api/submissions",
        data=data,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json" if path.suffix.lower() == ".json"
            else "application/yaml",
            "X-Spec-Filename": path.name,
        },
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": f"HTTP {e.code} {loader.one_line(str(e.reason))}"}


def submit_remote(
    server: str,
    files: list[Path],
    say: Callable[[str], None],
    warn: Callable[[str], None],
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Send `files` to `server`; returns the exit status (1 if anything was refused)."""
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        warn(f"error: --server needs a token in ${TOKEN_VARIABLE} (the operator issues it)")
        return 1
    if not server.startswith(("http://", "https://")):
        warn(f"error: --server is an http(s) URL, got {loader.shown(server)}")
        return 1
    checked = [check_file(path) for path in files]
    problems = [line for c in checked for line in c.lines()]
    for line in problems:
        warn(line)
    if problems:
        warn(f"nothing sent: {len(problems)} problem(s)")
        return 1
    status = 0
    for c in checked:
        shown = loader.printable(str(c.path))
        try:
            code, answer = _post(server, token, c.path, c.source.encode("utf-8"))
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            warn(f"{shown}: cannot reach {loader.shown(server)}: {loader.one_line(str(reason))}")
            return 1
        if code == 201:
            say(
                f"{shown}: stored as #{answer['id']} {answer['name']}"
                f" ({str(answer['spec_hash'])[:12]}); {answer['jobs_queued']} job(s) queued,"
                f" queue position {answer['queue_position']}"
            )
            continue
        status = 1
        for line in answer.get("problems") or []:  # type: ignore[attr-defined]
            warn(str(line))
        warn(f"{shown}: {loader.one_line(str(answer.get('error', f'HTTP {code}')))}")
    return status
