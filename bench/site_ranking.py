"""How fast the leaderboard's ranking page is with 10,000 runs in the database.

    python bench/site_ranking.py [--submissions 1000] [--seeds 10] [--database PATH] [--browser]

Fills a fresh SQLite database (bulk inserts shaped exactly like the
pipeline's rows: one designated single-task baseline and methods on
`synthetic-scenes` v1, 9 metrics and 60 curve points per run, plus failed
and queued jobs), then times

- the ranking page's queries, cold (a fresh engine, no Streamlit cache);
- the ranking page's script run by Streamlit's AppTest (what the server does
  for each page view): the process's first run, a run with an empty cache, a
  rerun (cached), a change of Δm convention, a filter, and a run right after a
  new run landed (the data version moved, so the queries run again);
- one first render of each other page, for reference;
- with `--browser`, full page loads of the served site in headless Chromium,
  until the table shows its rows and the chart is drawn.

The target is a ranking page under 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from db import queries
from db.models import (
    Baseline,
    Campaign,
    CurveValue,
    Job,
    JobState,
    MetricValue,
    Role,
    Run,
    Submission,
)
from db.session import URL_VARIABLE, engine, read_only_session_factory, transaction

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "leaderboard" / "app.py"
BENCHMARK, VERSION, BACKBONE = "synthetic-scenes", 1, "small-cnn"
# (task, metric, higher_is_better, baseline value): the synthetic-scenes metrics.
METRICS = [
    ("segmentation", "miou", True, 0.55),
    ("segmentation", "pixel_acc", True, 0.80),
    ("depth", "abs_err", False, 0.12),
    ("depth", "rel_err", False, 0.05),
    ("normal", "mean_angle", False, 18.0),
    ("normal", "median_angle", False, 12.0),
    ("normal", "within_11_25", True, 0.45),
    ("normal", "within_22_5", True, 0.70),
    ("normal", "within_30", True, 0.80),
]
TASKS = ("segmentation", "depth", "normal")
WEIGHTINGS = ("equal", "uncertainty", "dwa", "pcgrad", "mgda")
OPTIMIZERS = ("adam", "adamw", "sgd")
EPOCHS = 10


def fill(url: str, submissions: int, seeds: int, curves: bool, seed: int = 0) -> int:
    """Fill an empty database; return the number of runs."""
    rng = random.Random(seed)
    engine(url)  # the schema
    start = datetime(2026, 1, 1, tzinfo=UTC)
    subs: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for sid in range(1, submissions + 1):
        baseline = sid == 1
        weighting = "equal" if baseline else rng.choice(WEIGHTINGS)
        optimizer = rng.choice(OPTIMIZERS)
        name = "stl-small-cnn" if baseline else f"hps-{weighting}-{sid}"
        spec: dict[str, Any] = {
            "spec_version": 1,
            "name": name,
            "description": f"Bench submission {sid}.",
            "authors": ["Bench"],
            "benchmark": BENCHMARK,
            "protocol_version": VERSION,
            "architecture": {
                "name": "single-task" if baseline else "hard-sharing",
                "backbone": BACKBONE,
                "head_width": 16,
            },
            "weighting": {"name": weighting},
            "optimizer": {"name": optimizer, "lr": 1e-3, "weight_decay": 0.0},
            "scheduler": None,
        }
        submitted = start + timedelta(hours=sid)
        subs.append(
            {
                "id": sid,
                "spec_hash": f"{sid:064x}",
                "name": name,
                "description": spec["description"],
                "authors": spec["authors"],
                "benchmark": BENCHMARK,
                "protocol_version": VERSION,
                "architecture": spec["architecture"]["name"],
                "backbone": BACKBONE,
                "weighting": weighting,
                "optimizer": optimizer,
                "role": Role.BASELINE if baseline else Role.METHOD,
                "spec": spec,
                "source": f"name: {name}\n",
                "submitted_at": submitted,
            }
        )
        effect = 0.0 if baseline else rng.gauss(-0.02, 0.05)  # the method's relative gain
        parameters = 99_194 if baseline else 47_130 + 96 * rng.randrange(0, 50)
        for s in range(seeds):
            job_id = len(jobs) + 1
            finished = submitted + timedelta(minutes=5 * (s + 1))
            jobs.append(
                {
                    "id": job_id,
                    "submission_id": sid,
                    "campaign_id": 1,
                    "seed": s,
                    "state": JobState.SUCCEEDED,
                    "attempts": 1,
                    "created_at": submitted,
                    "started_at": finished - timedelta(minutes=5),
                    "finished_at": finished,
                }
            )
            run_id = len(runs) + 1
            runs.append(
                {
                    "id": run_id,
                    "job_id": job_id,
                    "submission_id": sid,
                    "seed": s,
                    "spec_hash": f"{sid:064x}",
                    "benchmark": BENCHMARK,
                    "protocol_version": VERSION,
                    "backbone": BACKBONE,
                    "code_version": "git:bench",
                    "torch_version": "2.13.0",
                    "ray_version": "2.60.0",
                    "python_version": "3.11.0",
                    "device": "cpu (x86_64, 1 threads)",
                    "wall_time_s": rng.uniform(60.0, 600.0),
                    "parameter_count": parameters,
                    "flops": 260 * parameters,
                    "finished_at": finished,
                }
            )
            noise = rng.gauss(0.0, 0.02)
            positions: dict[str, int] = {}
            for task, metric, higher, value in METRICS:
                gain = effect + noise + rng.gauss(0.0, 0.01)
                sign = 1.0 if higher else -1.0
                position = positions.get(task, 0)
                positions[task] = position + 1
                values.append(
                    {
                        "run_id": run_id,
                        "task": task,
                        "metric": metric,
                        "value": value * (1.0 + sign * gain),
                        "higher_is_better": higher,
                        "position": position,
                    }
                )
            if curves:
                for epoch in range(EPOCHS):
                    for task in TASKS:
                        loss = 2.0 / (1 + epoch) + rng.uniform(0.0, 0.1)
                        for curve, value in (("loss", loss), ("weight", 1.0)):
                            points.append(
                                {"run_id": run_id, "epoch": epoch, "task": task,
                                 "name": curve, "value": value}
                            )  # fmt: skip
        if not baseline and sid % 20 == 0:  # a failed job: its error shows on the queue page
            jobs.append(
                {
                    "id": len(jobs) + 1, "submission_id": sid, "campaign_id": 1, "seed": seeds,
                    "state": JobState.FAILED, "attempts": 1, "created_at": submitted,
                    "error": "RuntimeError: out of memory\nTraceback (most recent call last): ...",
                    "finished_at": submitted + timedelta(minutes=1),
                }
            )  # fmt: skip
        if not baseline and sid % 50 == 0:  # queued work
            jobs.append(
                {
                    "id": len(jobs) + 1, "submission_id": sid, "campaign_id": 1,
                    "seed": seeds + 1, "state": JobState.QUEUED, "attempts": 0,
                    "created_at": submitted,
                }
            )  # fmt: skip
    job_keys = ("error", "started_at", "finished_at")
    jobs = [{**dict.fromkeys(job_keys), **job} for job in jobs]
    with transaction(url) as session:
        session.execute(
            insert(Campaign), [{"id": 1, "name": "initial", "reason": "bench", "created_at": start}]
        )
        for model, rows in (
            (Submission, subs),
            (Job, jobs),
            (Run, runs),
            (MetricValue, values),
            (CurveValue, points),
        ):
            if rows:
                session.execute(insert(model), rows)
        session.execute(
            insert(Baseline),
            [{"benchmark": BENCHMARK, "protocol_version": VERSION, "backbone": BACKBONE,
              "submission_id": 1}],
        )  # fmt: skip
    return len(runs)


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = function()
    return time.perf_counter() - started, out


def land_a_run(url: str, submission_id: int) -> None:
    """A new run of a submission, as the dispatcher would record it (new seed)."""
    with transaction(url) as session:
        run = session.get(Run, 1)
        assert run is not None
        job = Job(submission_id=submission_id, campaign_id=1, seed=10_000,
                  state=JobState.SUCCEEDED)  # fmt: skip
        session.add(job)
        session.flush()
        copy = {c.name: getattr(run, c.name) for c in Run.__table__.columns if c.name != "id"}
        new = Run(**{**copy, "job_id": job.id, "submission_id": submission_id, "seed": 10_000})
        session.add(new)
        session.flush()
        for m in run.metric_values:
            session.add(
                MetricValue(run_id=new.id, task=m.task, metric=m.metric, value=m.value,
                            higher_is_better=m.higher_is_better, position=m.position)
            )  # fmt: skip


def browser_loads(url: str, loads: int = 3) -> list[tuple[str, float]]:
    """Serve the site (`mtlb leaderboard`) and time full page loads in headless Chromium:
    navigation until the ranking table shows its rows and the chart is drawn."""
    import signal
    import socket
    import subprocess
    import urllib.request

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mtlb")), "--database", url, "leaderboard",
         "--port", str(port), "--address", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--window-size=1400,1000",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='mtlb-chromium-')}"):  # fmt: skip
        options.add_argument(flag)
    driver = None
    out = []
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.25)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)

        def shown(d: Any) -> bool:
            tables = d.find_elements(By.CSS_SELECTOR, "[data-testid='stDataFrame']")
            charts = d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")
            return bool(tables and charts and "hps-" in (tables[0].get_attribute("textContent")))

        for i in range(loads):
            started = time.perf_counter()
            driver.get(f"http://127.0.0.1:{port}/")
            WebDriverWait(driver, 120).until(shown)
            what = "first load (server's first render)" if i == 0 else f"load {i + 1} (cached)"
            out.append((f"browser: ranking page, {what}", time.perf_counter() - started))
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--database", type=Path, help="SQLite file to create (default: a temp)")
    parser.add_argument("--no-curves", action="store_true", help="skip the training curves")
    parser.add_argument(
        "--browser", action="store_true",
        help="also serve the site and time full page loads in headless Chromium",
    )  # fmt: skip
    args = parser.parse_args()

    path = args.database or Path(tempfile.mkdtemp(prefix="mtlb-bench-")) / "site.sqlite"
    if path.exists():
        raise SystemExit(f"{path} exists: the bench fills a fresh database")
    url = f"sqlite:///{path}"
    fill_s, n_runs = timed(lambda: fill(url, args.submissions, args.seeds, not args.no_curves))

    rows: list[tuple[str, float]] = []
    factory = read_only_session_factory(url)
    with factory() as session:
        # What the ranking page asks, in its order (the per-task chart: the 20 best).
        top = tuple(range(1, 21))
        for label, query in (
            ("data_version", lambda: queries.data_version(session)),
            ("benchmark_versions", lambda: queries.benchmark_versions(session)),
            ("submission_index", lambda: queries.submission_index(session)),
            ("metric_columns", lambda: queries.metric_columns(session, BENCHMARK, VERSION)),
            ("ranking", lambda: queries.ranking(session, BENCHMARK, VERSION)),
            ("task_deltas of 20", lambda: queries.task_deltas(session, BENCHMARK, VERSION, top)),
        ):
            rows.append((f"query {label} (cold)", timed(query)[0]))
    rows.append(("queries of the ranking page, total", sum(s for _, s in rows)))

    os.environ[URL_VARIABLE] = url
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from leaderboard.text import CONVENTION_LABELS

    def run(at: AppTest) -> None:
        at.run()
        if at.exception:
            raise SystemExit(f"the page raised: {[e.message for e in at.exception]}")

    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    # The process's first run also imports pandas, Plotly and SciPy, and AppTest scans the
    # installed components (about 0.3 s here); a served site pays these once, at start.
    rows.append(("ranking page, first render of the process", timed(lambda: run(at))[0]))
    st.cache_data.clear()
    rows.append(("ranking page, empty cache", timed(lambda: run(at))[0]))
    shown = len(at.dataframe[0].value)
    rows.append(("ranking page, rerun (cached)", timed(lambda: run(at))[0]))
    at.sidebar.radio(key="convention").set_value(list(CONVENTION_LABELS)[1])
    rows.append(("ranking page, switch Δm convention", timed(lambda: run(at))[0]))
    at.sidebar.multiselect(key="weighting").set_value(["dwa"])
    rows.append(("ranking page, filter by weighting", timed(lambda: run(at))[0]))
    land_a_run(url, 2)
    rows.append(("ranking page, after a new run landed", timed(lambda: run(at))[0]))
    for page, params in (
        ("submission", {"submission": "2"}),
        ("compare", {"compare": "1,2,3"}),
        ("queue", {}),
    ):
        other = AppTest.from_file(str(APP), default_timeout=120)
        other.query_params.update(params)
        other.switch_page(f"views/{page}.py")
        seconds, _ = timed(lambda: run(other))  # noqa: B023
        rows.append((f"{page} page, first render (ranking data cached)", seconds))

    if args.browser:
        rows += browser_loads(url)

    print("$ python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    print(
        f"database: {path} ({path.stat().st_size / 2**20:.0f} MiB), {args.submissions} "
        f"submissions, {n_runs} runs, {len(METRICS)} metrics per run, filled in {fill_s:.1f} s; "
        f"ranking table shows {shown} rows"
    )
    width = max(len(label) for label, _ in rows)
    print(f"{'what':<{width}}  {'seconds':>8}")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:>8.3f}")


if __name__ == "__main__":
    main()
