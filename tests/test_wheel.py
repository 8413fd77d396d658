"""The project as a user installs it: a built wheel, not the source tree.

`pip wheel` once left out `submissions/reported/*.yaml`, so on a regular
install `mtlb reported import --builtin` had nothing to import.  This test
builds the wheel from the tracked files, installs it into a fresh virtual
environment that sees the dependencies but not the source tree (its own
site-packages first, run from an empty folder, no PYTHONPATH), and runs the
installed `mtlb`: validate a shipped example, import the shipped reported
results, migrate a database, submit a spec and train one job on Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("submissions", "runners", "db", "leaderboard")
MINI_SPEC = """\
spec_version: 1
name: wheel-check
benchmark: synthetic-scenes-mini
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: equal}
optimizer: {name: adam, lr: 1.0e-3}
"""


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", *PACKAGES, "pyproject.toml", "README.md"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name]


@pytest.mark.slow
def test_the_installed_wheel_works_outside_the_source_tree(tmp_path: Path) -> None:
    started = time.perf_counter()
    source = tmp_path / "source"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dist), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = dist.glob("mtl_leaderboard-*.whl")

    # A fresh environment from the base interpreter; the dependencies through a path
    # entry (a .pth line adds the folder only: the editable install's finder there is
    # not run, so the source tree stays out of sight).
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # type: ignore[attr-defined]
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--no-deps", "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    mtlb = venv / "bin" / "mtlb"
    print(f"built and installed: {time.perf_counter() - started:.1f} s")

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MTLB_DATABASE_URL")}
    env["MTLB_DATA_ROOT"] = str(tmp_path / "data")

    def run(*args: str | Path) -> str:
        t = time.perf_counter()
        done = subprocess.run(
            [str(a) for a in args], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        print(f"{time.perf_counter() - t:.1f} s", *args[1:])
        return done.stdout

    where = run(python, "-c", "import submissions, db; print(submissions.__file__, db.__file__)")
    assert str(ROOT) not in where and all(p.startswith(str(site)) for p in where.split())

    example = site / "submissions" / "examples" / "hps-dwa.yaml"
    assert "hps-dwa.yaml: ok" in run(mtlb, "validate", example)
    assert '"title": "MTL Leaderboard spec"' in run(mtlb, "schema")
    assert "database upgraded from empty to" in run(mtlb, "db", "upgrade")
    imported = run(mtlb, "reported", "import", "--builtin")
    assert "reported baseline of nyuv2 v1 segnet" in imported, imported
    (work / "mini.yaml").write_text(MINI_SPEC)
    assert "stored as #" in run(mtlb, "submit", "--submitter", "wheel", "mini.yaml")
    trained = run(mtlb, "run", "--max-jobs", "1")
    assert "1 succeeded, 0 failed" in trained, trained
    print(f"wheel build, install and mini run: {time.perf_counter() - started:.1f} s")
