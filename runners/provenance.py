"""Where a result came from: the code version of the dispatcher."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def code_version() -> str:
    """`git describe` of the checkout (with -dirty), else the installed package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        try:
            return f"mtl-leaderboard {metadata.version('mtl-leaderboard')}"
        except metadata.PackageNotFoundError:
            return "unknown"
