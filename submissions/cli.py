"""`mtlb`, the one console entry point; each verb dispatches to a package."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from enum import StrEnum
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit

# Only what parsing needs is imported here; each verb imports its packages when it runs, so
# that `mtlb --help`, `mtlb schema` and rejecting a malformed spec load neither SQLAlchemy nor
# torch (`python bench/reject_time.py`).
from submissions.arguments import (
    DEFAULT_URL,
    MAX_ID,
    MAX_VERSION,
    URL_VARIABLE,
    ArgumentProblem,
    database_problem,
    database_url,
    parse_lease,
    writable_file,
)


class _Commands(TyperGroup):
    """Every verb answers bad input with one line and exit status 1 or 2, never a traceback.

    Usage errors (click's) are one line and exit 2; a database this code cannot
    use or reach, and any other exception escaping a verb, one line and exit 1.
    `MTLB_DEBUG=1` shows the traceback of the latter.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # `mtlb` or `mtlb db` alone: the help, as asked
            e.show()
            code = e.exit_code
        except ClickException as e:
            hint = ""
            if isinstance(e, UsageError) and e.ctx is not None:
                hint = f" (see `{e.ctx.command_path} --help`)"
            _one_line(f"error: {e.format_message()}{hint}")
            code = e.exit_code
        except Abort:
            _one_line("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    # `ctx` is Typer's own (vendored) click Context.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickException, Exit, Abort, KeyboardInterrupt):
            raise
        except ArgumentProblem as e:
            _one_line(f"error: {e}")
        except Exception as e:
            session = sys.modules.get("db.session")  # loaded by every verb that can raise it
            if session is not None and isinstance(e, session.SchemaVersionError):
                _one_line(f"error: {e}")
                raise Exit(1) from None
            if os.environ.get("MTLB_DEBUG"):
                raise
            _one_line(f"error: {_failure(e, ctx.obj)}")
        raise Exit(1)


def _transaction(url: str) -> Any:
    from db.session import transaction

    return transaction(url)


def _one_line(text: str) -> None:
    err.print(" ".join(text.split()), markup=False)


def _failure(e: Exception, url: Any) -> str:
    """One line for an exception no verb expected: a database's, or an internal error."""
    if type(e).__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
        from sqlalchemy.engine import make_url

        cause = getattr(e, "orig", None) or e
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except Exception:  # a URL SQLAlchemy cannot read: say so without its text
            shown = "(unreadable URL)"
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return f"database {shown}: {reason}"
    reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return (
        f"internal error: {type(e).__name__}: {reason}"
        " (MTLB_DEBUG=1 shows the traceback; please report it)"
    )


app = typer.Typer(
    cls=_Commands,
    help="MTL Leaderboard: submit multi-task learning methods, train them on Ray, rank them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Files = Annotated[list[Path], typer.Argument(help="spec files (YAML or JSON)", show_default=False)]
GPUS_PER_JOB_HELP = (
    "GPUs each job asks for instead of its protocol's: a fraction such as 0.25 packs"
    " several jobs on one GPU (each sees only that device), a whole number gives each"
    " job that many, 0 none"
)


@app.callback()
def main(
    ctx: typer.Context,
    database: Annotated[
        str | None,
        typer.Option(help=f"database URL (default: ${URL_VARIABLE}, else sqlite:///mtlb.sqlite)"),
    ] = None,
) -> None:
    url = database_url(database)
    source = "--database" if database else f"${URL_VARIABLE}" if url != DEFAULT_URL else "database"
    problem = database_problem(url, source)
    if problem is not None:
        _one_line(f"error: {problem}")
        raise typer.Exit(1)
    ctx.obj = url


@app.command("validate")
def validate_command(files: Files) -> None:
    """Check spec files: one line per problem naming the file and field; exit 1 on any.

    A file that cannot be read, or names an unknown key, component or parameter,
    is answered from `submissions/components.json` without loading the
    registries (and torch); the others are validated in full.
    """
    from submissions.structure import problem_lines, quick_check

    failed = False
    for path in files:
        document, _, problems = quick_check(path)
        if document is not None and not problems:
            from submissions.spec import validate

            spec, problems = validate(document)
            if spec is not None:
                console.print(f"{path}: ok ({spec.spec_hash[:12]})", markup=False)
        for line in problem_lines(path, problems):
            err.print(line, markup=False)
        failed |= bool(problems)
    raise typer.Exit(1 if failed else 0)


@app.command()
def submit(
    ctx: typer.Context,
    files: Files,
    submitter: Annotated[
        str | None,
        typer.Option(help="who submits (default: $MTLB_SUBMITTER, else your user name)"),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="submit through this leaderboard's API instead, with $MTLB_TOKEN"),
    ] = None,
) -> None:
    """Validate specs, store them with their content hash, queue one job per protocol seed.

    Nothing is stored unless every file is valid and within the submitter's
    quota ($MTLB_SUBMISSIONS_PER_DAY new submissions per 24 hours, if the
    operator sets it).
    """
    from submissions.loader import printable
    from submissions.submit import (
        QuotaExceeded,
        SubmitError,
        check_file,
        quota_from_env,
        resolve_submitter,
        store,
    )

    if server is not None:
        from submissions.client import submit_remote

        say, warn = (
            (lambda line: console.print(line, markup=False)),
            (lambda line: err.print(line, markup=False)),
        )
        raise typer.Exit(submit_remote(server, files, say, warn))
    try:
        who = resolve_submitter(submitter)
        quota = quota_from_env()
    except SubmitError as e:
        err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    checked = [check_file(path) for path in files]
    problems = [line for c in checked for line in c.lines()]
    for line in problems:
        err.print(line, markup=False)
    if problems:
        err.print(f"nothing stored: {len(problems)} problem(s)", markup=False)
        raise typer.Exit(1)
    report = []
    try:
        # One transaction: over the quota at the last file, the first ones are not stored either.
        with _transaction(ctx.obj) as session:
            for c in checked:
                assert c.spec is not None
                stored = store(session, c.spec, c.source, who, quota)
                report.append(f"{c.path}: {stored.describe()}")
    except QuotaExceeded as e:
        err.print(f"{printable(str(c.path))}: {e}; nothing stored", markup=False)
        raise typer.Exit(1) from None
    for line in report:
        console.print(line, markup=False)


@app.command()
def baselines(
    ctx: typer.Context,
    benchmark: Annotated[str, typer.Argument(help="benchmark name")],
    version: Annotated[
        int | None, typer.Option(help="protocol version (default: latest)", min=1, max=MAX_VERSION)
    ] = None,
) -> None:
    """Queue the single-task baselines of a benchmark (one per allowed backbone)."""
    from runners.benchmarks import BENCHMARKS
    from runners.registry import UnknownComponentError
    from submissions.submit import queue_baselines

    try:
        bench = BENCHMARKS.get(benchmark)
        bench.protocol(version or bench.latest_version)
    except (UnknownComponentError, KeyError) as e:
        err.print(f"error: {e.args[0]}", markup=False)
        raise typer.Exit(1) from None
    with _transaction(ctx.obj) as session:
        for stored in queue_baselines(session, benchmark, version):
            console.print(
                f"baseline #{stored.submission_id} {stored.name}:"
                f" {stored.jobs_queued} job(s) queued",
                markup=False,
            )


@app.command()
def front(
    ctx: typer.Context,
    benchmark: Annotated[str, typer.Argument(help="benchmark name")],
    version: Annotated[int | None, typer.Option(help="protocol version (default: latest)")] = None,
    tune: Annotated[
        bool, typer.Option(help="tune each point's learning rate (the protocol's trial budget)")
    ] = False,
) -> None:
    """Queue the scalarisation front: hard sharing with fixed weights on the task simplex."""
    from runners.benchmarks import BENCHMARKS
    from runners.registry import UnknownComponentError
    from submissions.front import FrontError, queue_front

    try:
        bench = BENCHMARKS.get(benchmark)
        bench.protocol(version or bench.latest_version)
        with _transaction(ctx.obj) as session:
            stored = queue_front(session, benchmark, version, tune)
    except (UnknownComponentError, KeyError, FrontError) as e:
        err.print(f"error: {e.args[0]}", markup=False)
        raise typer.Exit(1) from None
    for s in stored:
        console.print(
            f"front #{s.submission_id} {s.name}: {s.jobs_queued} job(s) queued", markup=False
        )


@app.command()
def run(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local one)")
    ] = None,
    max_jobs: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="run at most this many jobs")
    ] = None,
    timings: Annotated[
        Path | None, typer.Option(help="write 'ray_start_s training_s' to this file")
    ] = None,
    lease: Annotated[
        str,
        typer.Option(
            help="how long a claimed job stays reserved to this dispatcher without renewal"
            " (renewed every third of it while running), e.g. 90s, 10m, 1h"
        ),
    ] = "10m",
    storage: Annotated[
        Path | None,
        typer.Option(
            help="checkpoint folder every Ray node reaches"
            " (default: $MTLB_STORAGE, else <data root>/checkpoints)"
        ),
    ] = None,
    gpus_per_job: Annotated[
        float | None,
        typer.Option(help=GPUS_PER_JOB_HELP, show_default=False),
    ] = None,
) -> None:
    """Execute queued jobs on Ray, writing each result as it finishes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from runners.benchmarks.base import gpu_share
    from runners.reach import cluster_problem

    # Every argument is checked before Ray starts or a job is claimed.
    try:
        lease_length = parse_lease(lease)
        if gpus_per_job is not None:
            gpu_share(gpus_per_job, "--gpus-per-job")
        if timings is not None:
            writable_file(timings, "--timings")
    except ValueError as e:
        _one_line(f"error: {e}")
        raise typer.Exit(1) from None
    problem = None if address is None else cluster_problem(address)
    if problem is not None:
        _one_line(f"error: {problem}")
        raise typer.Exit(1)

    from runners.dispatch import ClusterUnreachable, JobReport, run_jobs

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("jobs", total=None)

        def started(count: int) -> None:
            progress.update(bar, total=count)
            if count == 0:
                progress.console.print("no queued jobs")

        def report(r: JobReport) -> None:
            note = "" if r.error is None else f": {r.error.splitlines()[0]}"
            progress.console.print(
                f"job {r.job_id} {r.submission} seed {r.seed}: {r.state.value}{note}", markup=False
            )
            progress.advance(bar)

        try:
            summary = run_jobs(
                ctx.obj,
                address=address,
                max_jobs=max_jobs,
                on_start=started,
                on_report=report,
                lease=lease_length,
                storage=storage,
                gpus_per_job=gpus_per_job,
            )
        except ClusterUnreachable as e:  # it went away since the check above
            _one_line(f"error: {e}")
            raise typer.Exit(1) from None
    bad = [r for r in summary.reports if r.error is not None and r.recorded]
    # Results of jobs whose lease had passed to another attempt: stored by that attempt.
    dropped = sum(not r.recorded for r in summary.reports)
    if summary.requeued:
        console.print(f"requeued {summary.requeued} job(s) whose dispatcher's lease had expired")
    console.print(
        f"{len(summary.reports) - len(bad) - dropped} succeeded, {len(bad)} failed or diverged"
        + (f", {dropped} not recorded" if dropped else "")
        + f" (data {summary.data_s:.1f} s, Ray start {summary.ray_start_s:.1f} s,"
        f" training {summary.training_s:.1f} s)"
    )
    if timings is not None:
        timings.write_text(f"{summary.ray_start_s:.1f} {summary.training_s:.1f}\n")


@app.command()
def status(ctx: typer.Context) -> None:
    """The queue: job states per submission."""
    from db.models import JobState
    from db.queue import STALLED, job_counts, stalled_jobs

    with _transaction(ctx.obj) as session:
        rows = job_counts(session)
        stalled = [(j.id, j.lease_owner, j.lease_expires_at) for j in stalled_jobs(session)]
    from rich.table import Table
    from rich.text import Text

    table = Table("#", "submission", "submitter", "benchmark", "jobs")
    for column in table.columns[1:4]:
        column.no_wrap = True
    table.columns[2].max_width = 20
    for sid, name, submitter, benchmark, counts in rows:
        states = [*(s.value for s in JobState), STALLED]
        jobs = ", ".join(f"{counts[s]} {s}" for s in states if s in counts)
        # Text, not str: a cell string would be read as Rich markup, and names are the
        # submitters' ("[/]" would raise, "[link=...]" would render).
        table.add_row(str(sid), Text(name), Text(submitter), Text(benchmark), jobs)
    console.print(table)
    for job_id, owner, expired in stalled:
        when = "" if expired is None else f" at {expired:%Y-%m-%d %H:%M:%S} UTC"
        console.print(
            Text(
                f"job {job_id} stalled: the lease of its dispatcher ({owner or 'unknown'})"
                f" expired{when}; the next `mtlb run` requeues it"
            )
        )


@app.command()
def leaderboard(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port to serve on", min=1, max=65535)] = 8501,
    address: Annotated[str, typer.Option(help="interface to bind")] = "localhost",
) -> None:
    """Serve the leaderboard site (Streamlit)."""
    spec = find_spec("leaderboard.app")
    assert spec is not None and spec.origin is not None
    console.print(f"leaderboard: http://{address}:{port}/", markup=False)
    env = {**os.environ, URL_VARIABLE: ctx.obj}
    command = [
        sys.executable, "-m", "streamlit", "run", spec.origin,
        "--server.headless", "true", "--server.port", str(port), "--server.address", address,
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    raise typer.Exit(subprocess.call(command, env=env))


class Convention(StrEnum):
    PER_TASK = "per-task"
    PER_METRIC = "per-metric"


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@app.command("ranking")
def ranking_command(
    ctx: typer.Context,
    benchmark: Annotated[
        str | None, typer.Option(help="benchmark (default: the one the site opens on)")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(
            help="protocol version (default: the latest with runs)", min=1, max=MAX_VERSION
        ),
    ] = None,
    convention: Annotated[
        Convention,
        typer.Option(help="Δm convention: per-task (higher is better) or per-metric (a drop)"),
    ] = Convention.PER_TASK,
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.TABLE,
) -> None:
    """Print the ranking the site shows: rank, tie group, Δm with its 95% interval, seeds.

    Computed by the site's own functions (`leaderboard.tables`): ranks and tie
    groups from paired comparisons over shared seeds.  JSON adds each entry's
    per-seed Δm.  Reads the database only.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from db import queries
    from db.delta_m import CONVENTIONS
    from db.session import read_only_session_factory
    from leaderboard import exports, tables

    key = convention.value.replace("-", "_")  # db.delta_m.PER_TASK / PER_METRIC
    try:
        with read_only_session_factory(ctx.obj)() as session:
            chosen = _ranking_version(
                queries.benchmark_versions(session),
                queries.versions_with_runs(session),
                benchmark,
                version,
            )
            rows = queries.ranking(session, *chosen)
    except (OperationalError, ProgrammingError):  # no file, no tables
        err.print(f"error: nothing to rank: no results in {ctx.obj}", markup=False)
        raise typer.Exit(1) from None
    except ValueError as e:
        err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    placed = tables.placements(rows, key)
    frame = tables.ranking_summary(rows, key, placed)
    notice = tables.tie_notice(placed)
    label = f"{chosen[0]} v{chosen[1]}"
    if output is Format.JSON:
        meta = {
            "benchmark": chosen[0],
            "protocol_version": chosen[1],
            "convention": key,
            "delta_m": CONVENTIONS[key],
            "interval": "95% t interval over seeds: mean ± t(0.975, n-1) · s / √n",
            "ranks": tables.RANKS_EXPLAINED,
            "notice": notice,
        }
        sys.stdout.write(exports.to_json(frame, meta) + "\n")
        return
    if output is Format.CSV:
        if notice is not None:
            err.print(notice, markup=False)
        sys.stdout.write(exports.to_csv(frame.drop(columns=[tables.PER_SEED])))
        return
    console.print(f"{label}: {CONVENTIONS[key]}", markup=False)
    if notice is not None:
        console.print(f"note: {notice}", markup=False)
    console.print(_ranking_table(frame))
    console.print(
        "Δm: mean over seeds ± the half-width of its 95% t interval. "
        + tables.RANKS_EXPLAINED
        + " group: the tie group; range: the ranks it could take (best: 1 + the entries "
        "significantly better; worst: the number of entries − those significantly worse).",
        markup=False,
    )


def _ranking_version(
    versions: list[tuple[str, int]],
    with_runs: set[tuple[str, int]],
    benchmark: str | None,
    version: int | None,
) -> tuple[str, int]:
    """The (benchmark, version) to rank: the site's first benchmark by default; the latest
    version with runs by default.  One-line ValueError for an unknown one."""
    import difflib

    if not versions:
        raise ValueError("nothing to rank: no submissions in this database")
    names = list(dict.fromkeys(b for b, _ in versions))
    if benchmark is None:
        benchmark = names[0]  # the benchmark the site opens on
    elif benchmark not in names:
        close = difflib.get_close_matches(benchmark, names, n=3)
        hint = (
            f"; did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else f"; benchmarks: {', '.join(names)}"
        )
        raise ValueError(f"no submissions of benchmark {benchmark!r} in this database{hint}")
    listed = [v for b, v in versions if b == benchmark]  # newest first
    if version is None:
        return benchmark, next((v for v in listed if (benchmark, v) in with_runs), listed[0])
    if version not in listed:
        raise ValueError(
            f"{benchmark} has no version {version} in this database; versions: "
            + ", ".join(str(v) for v in listed)
        )
    return benchmark, version


def _ranking_table(frame: Any) -> Any:
    """`tables.ranking_summary` as a Rich table; blank cells where there is no value.

    The numbers are never cut: on a narrow terminal the names and the rank test wrap.
    """
    import pandas as pd
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from leaderboard import tables

    def cell(value: Any, pattern: str = "{}") -> str:
        return "" if pd.isna(value) else pattern.format(value)

    rows = [
        [
            cell(row[tables.RANK]),
            cell(row[tables.TIE_GROUP]),
            row[tables.RANK_RANGE],
            str(row[tables.ID]),
            row[tables.NAME],
            row[tables.ROLE],
            cell(row[tables.DELTA_M], "{:+.2f}"),
            cell(row[tables.CI], "{:.2f}"),
            str(row[tables.SEEDS]),
            row[tables.RANK_TEST],
        ]
        for _, row in frame.iterrows()
    ]
    # Short headers (tie group, possible ranks, ± 95% CI) keep the table narrow.
    headers = ["rank", "group", "range", "#", "name", "role", "Δm", "±95%", "seeds", "rank test"]
    table = Table(box=box.SIMPLE)
    for i, header in enumerate(headers):
        if header in ("name", "rank test"):
            table.add_column(header, ratio=1, min_width=8)
            continue
        widest = max([len(header), *(len(r[i]) for r in rows)])
        table.add_column(
            header, justify="left" if header == "role" else "right", no_wrap=True, min_width=widest
        )
    for r in rows:
        # Text, not str, for names: a cell string would be read as Rich markup.
        table.add_row(*r[:4], Text(r[4]), *r[5:9], Text(r[9]))
    return table


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec format (for editors)."""
    from submissions.structure import SCHEMA

    # Generated from the registries (`python -m submissions.structure --write`; a test keeps it
    # current), so that printing it loads no component.
    sys.stdout.write(SCHEMA.read_text(encoding="utf-8"))


@app.command()
def rerun(
    ctx: typer.Context,
    campaign: Annotated[
        str, typer.Option(help="name of the new campaign (an existing name is an error)")
    ],
    reason: Annotated[str, typer.Option(help="why: shown with the campaign's results")],
    submission: Annotated[
        list[int] | None,
        typer.Option(help="a submission id (repeatable)", show_default=False, min=1, max=MAX_ID),
    ] = None,
    benchmark: Annotated[str | None, typer.Option(help="submissions of this benchmark")] = None,
    weighting: Annotated[str | None, typer.Option(help="submissions with this weighting")] = None,
    architecture: Annotated[
        str | None, typer.Option(help="submissions with this architecture")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="every submission")] = False,
    seeds: Annotated[
        str | None, typer.Option(help="seeds, e.g. 3,4,5 (default: the protocol's)")
    ] = None,
    protocol_version: Annotated[
        int | None,
        typer.Option(
            help="rerun under this version of the benchmark's protocol", min=1, max=MAX_VERSION
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="print the selection, write nothing")] = False,
    every: Annotated[
        str | None,
        typer.Option(help="run as a scheduler: a cycle every 30m, 6h, 24h, 7d, ..."),
    ] = None,
    cycles: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="scheduler: stop after this many cycles")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="scheduler: Ray cluster address (default: a local one)")
    ] = None,
    gpus_per_job: Annotated[
        float | None,
        typer.Option(help=f"scheduler: {GPUS_PER_JOB_HELP}", show_default=False),
    ] = None,
) -> None:
    """Queue submissions again in a new campaign; existing jobs and runs are kept as they are.

    Selectors (--submission, --benchmark, --weighting, --architecture, --all)
    combine with AND; at least one is required.  Without --every or --cycles
    the jobs are only queued (`mtlb run` runs them), in campaign CAMPAIGN.
    With --every (and/or --cycles) it is a scheduler: each cycle creates the
    campaign CAMPAIGN-<UTC start, e.g. 20261127T030000Z>, queues the jobs and
    runs them on Ray, then sleeps until the next cycle; Ctrl-C stops it.
    """
    from db.reruns import RerunError, Selection
    from submissions.reruns import parse_every, parse_seeds, plan_rerun, report, schedule

    if gpus_per_job is not None:
        from runners.benchmarks.base import gpu_share

        try:
            gpu_share(gpus_per_job, "--gpus-per-job")
        except ValueError as e:
            _one_line(f"error: {e}")
            raise typer.Exit(1) from None
    if address is not None and (every is not None or cycles is not None):
        from runners.reach import cluster_problem

        problem = cluster_problem(address)
        if problem is not None:
            _one_line(f"error: {problem}")
            raise typer.Exit(1)

    selection = Selection(
        submission_ids=tuple(submission or ()),
        benchmark=benchmark,
        weighting=weighting,
        architecture=architecture,
        everything=everything,
    )

    def say(line: str) -> None:
        console.print(line, markup=False)

    def warn(line: str) -> None:
        err.print(line, markup=False)

    try:
        chosen_seeds = None if seeds is None else parse_seeds(seeds)
        interval = None if every is None else parse_every(every)
        if dry_run or (interval is None and cycles is None):
            with _transaction(ctx.obj) as session:
                # The campaign a scheduler would create first is checked under its real name.
                name = campaign if interval is None and cycles is None else _cycle_name(campaign)
                if dry_run:
                    plan = plan_rerun(
                        session, selection, name, reason, chosen_seeds, protocol_version
                    )
                else:
                    from submissions.reruns import queue_rerun

                    plan = queue_rerun(
                        session, selection, name, reason, chosen_seeds, protocol_version
                    )
            report(plan, say, dry_run=dry_run, warn=warn)
            return

        def run_once(url: str) -> str:
            from runners.dispatch import run_jobs

            summary = run_jobs(
                url,
                address=address,
                gpus_per_job=gpus_per_job,
                on_report=lambda r: say(
                    f"job {r.job_id} {r.submission} seed {r.seed}: {r.state.value}"
                ),
            )
            bad = sum(r.error is not None for r in summary.reports)
            return f"{len(summary.reports) - bad} succeeded, {bad} failed or diverged"

        done = schedule(
            ctx.obj, selection, campaign, reason, run_once, every=interval, cycles=cycles,
            seeds=chosen_seeds, protocol_version=protocol_version, echo=say, warn=warn,
        )  # fmt: skip
    except RerunError as e:
        err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        # The dispatcher has put unfinished jobs back in the queue.
        err.print("stopped (Ctrl-C); unfinished jobs are back in the queue", markup=False)
        raise typer.Exit(130) from None
    say(f"{done} cycle(s) done")


def _cycle_name(campaign: str) -> str:
    from db.models import utcnow
    from submissions.reruns import cycle_campaign

    return cycle_campaign(campaign, utcnow())


@app.command("delta-m")
def delta_m_command(
    benchmark: Annotated[str, typer.Option(help="benchmark whose metric directions apply")],
    baseline: Annotated[Path, typer.Argument(help="{task: {metric: value}} file, JSON or YAML")],
    result: Annotated[Path, typer.Argument(help="{task: {metric: value}} file, JSON or YAML")],
) -> None:
    """Δm of RESULT against BASELINE in both conventions."""
    from db.delta_m import delta_m
    from runners.benchmarks import BENCHMARKS
    from runners.registry import UnknownComponentError
    from submissions.loader import SpecError, read

    try:
        directions = BENCHMARKS.get(benchmark).metric_directions
        values = [read(path)[0] for path in (baseline, result)]
        for path, data in zip((baseline, result), values, strict=True):
            check_metric_file(path, data)
        d = delta_m(values[1], values[0], directions)
    except (UnknownComponentError, SpecError, ValueError) as e:
        err.print(f"error: {e.args[0] if e.args else e}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"Δm per task   (higher is better): {d.per_task:+.4f}%")
    console.print(f"Δm per metric (drop, lower is better): {d.per_metric:+.4f}%")


def check_metric_file(path: Path, data: dict[str, object]) -> None:
    for task, metrics in data.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: {task}: expected a mapping of metric -> value")
        for metric, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{path}: {task}.{metric}: expected a number, got {value!r}")


reported_app = typer.Typer(
    help="Results reported in papers: shown on the site marked 'reported', with their citation.",
    no_args_is_help=True,
)
app.add_typer(reported_app, name="reported")


@reported_app.command("import")
def reported_import(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="reported-results files (YAML or JSON)", show_default=False),
    ] = None,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="also the files shipped in submissions/reported/")
    ] = False,
) -> None:
    """Check and store reported results (format: submissions/reported/README.md).

    Nothing is stored unless every entry of every file is valid; importing a
    file again changes nothing.
    """
    from submissions.reported import ReportedError, builtin_files, import_files

    paths = [*(builtin_files() if builtin else []), *(files or [])]
    if not paths:
        err.print("error: give reported-results files, or --builtin", markup=False)
        raise typer.Exit(1)
    try:
        with _transaction(ctx.obj) as session:
            stored = import_files(session, paths)
    except ReportedError as e:
        err.print(f"{e}; nothing stored", markup=False)
        raise typer.Exit(1) from None
    for s in stored:
        baseline = f"; reported baseline of {s.baseline_of}" if s.baseline_of else ""
        console.print(f"reported #{s.reported_id} {s.name}: {s.outcome}{baseline}", markup=False)


db_app = typer.Typer(
    help="The database schema: Alembic migrations to the revision this code needs.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Option(help="the revision to migrate to")] = "head",
) -> None:
    """Migrate the database to a revision, in one transaction.

    A database made before migrations (tables, no alembic_version) is checked
    against the first revision's tables, stamped there, then upgraded.
    """
    from db.migrate import INITIAL, upgrade

    done = upgrade(ctx.obj, revision)
    if done.stamped:
        console.print(f"tables made before migrations match {INITIAL}: stamped at {INITIAL}")
    start = INITIAL if done.stamped else done.before
    if done.after == start:
        console.print(f"database at {done.after}: nothing to do", markup=False)
    else:
        console.print(f"database upgraded from {start or 'empty'} to {done.after}", markup=False)


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's revision, and what to do when it is not the one this code needs."""
    from db.migrate import current

    console.print(current(ctx.obj).describe(), markup=False)


# Submitter tokens and the submission API (issue 16): their own module.
from submissions.tokens_cli import api_command, token_app  # noqa: E402

app.add_typer(token_app, name="token")
app.command("api")(api_command)

if __name__ == "__main__":
    app(prog_name="mtlb")
