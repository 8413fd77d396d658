"""Session fixtures: one local Ray, and a database filled by the real pipeline.

The pipeline fixture does what a user does: `mtlb baselines`, `mtlb submit`,
`mtlb run` on the `synthetic-scenes-mini` benchmark (the same code path as
the full benchmark, at 32x32 with a few scenes), against a SQLite file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

# Before anything starts Ray: workers inherit the environment of ray.init.
_DATA = tempfile.mkdtemp(prefix="mtlb-test-data-")
os.environ["MTLB_DATA_ROOT"] = _DATA
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray Train's controller polls its workers every 2 s by default: data-parallel tests wait less.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

EXAMPLES = Path(__file__).resolve().parent.parent / "submissions" / "examples"
# The methods the pipeline fixture trains, besides the baseline.
PIPELINE_METHODS = ("hps-equal", "hps-dwa", "hps-pcgrad")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    import ray

    # address="local": a private cluster, never one that Ray's current-cluster file names
    # (a cluster started on this machine with `ray start`, maybe dead).
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 1024**2,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def mini_spec(name: str, directory: Path) -> Path:
    """An example spec moved onto the mini benchmark."""
    document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    document["benchmark"] = "synthetic-scenes-mini"
    document.pop("protocol_version", None)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def pipeline_db(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a SQLite database filled by baselines + submit + run through the CLI."""
    from typer.testing import CliRunner

    from submissions.cli import app

    directory = tmp_path_factory.mktemp("pipeline")
    url = f"sqlite:///{directory / 'pipeline.sqlite'}"
    runner = CliRunner()
    specs = [str(mini_spec(name, directory)) for name in PIPELINE_METHODS]
    for args in (
        ["baselines", "synthetic-scenes-mini"],
        ["submit", *specs],
        ["run"],
    ):
        result = runner.invoke(app, ["--database", url, *args])
        assert result.exit_code == 0, result.output
    return url


POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each supported kind; PostgreSQL gets a schema of its own per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite'}"
        return
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as e:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        from db.session import engine

        engine.cache_clear()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# Per-seed Δm (per task, in %) of a hand-made benchmark where, as with the protocol's common
# random numbers, each seed moves every method together (seed effects -20, -3.33, +23.33).
# Paired, `equal` and `uncertainty` tie, the baseline is below them and `mgda` below it;
# unpaired (Welch), the seed effect swamps every difference.  The baseline's own Δm is
# relative to its mean, so it is the seed effect itself.
SEED_EFFECT = (-20.0, -10.0 / 3.0, 70.0 / 3.0)
PAIRED_DELTAS = {
    "stl": list(SEED_EFFECT),
    "equal": [10.0 + e for e in SEED_EFFECT],
    "uncertainty": [11.0 + e + n for e, n in zip(SEED_EFFECT, (0.5, -1.0, 1.0), strict=True)],
    "mgda": [-8.0 + e + n for e, n in zip(SEED_EFFECT, (2.0, -3.0, 1.0), strict=True)],
}
PAIRED_BENCHMARK = ("paired-bench", 1)


# The provenance of hand-made runs (`db.queue.Outcome.provenance`).
PROVENANCE = {"code_version": "git:x", "torch_version": "t", "python_version": "p",
              "ray_version": "r", "device": "cpu", "wall_time_s": 1.0,
              "parameter_count": 10, "flops": 10}  # fmt: skip


def paired_database(url: str, deltas: dict[str, list[float]]) -> dict[str, int]:
    """Fill an empty database with one task (`seg`, metric `miou`, higher is better) whose
    values give each submission the per-seed Δm per task of `deltas` (seeds 0, 1, ...);
    the first name is the designated baseline.  Returns {name: submission id}."""
    from db.models import Role
    from db.queue import (
        Outcome,
        campaign,
        claim_jobs,
        designate_baseline,
        queue_jobs,
        record_success,
        store_submission,
    )
    from db.session import transaction

    names = list(deltas)
    baseline = 0.5  # the baseline's mean miou: its seeds' Δm average to 0
    assert abs(sum(deltas[names[0]])) < 1e-9, "the baseline's Δm must average to 0"
    provenance = PROVENANCE
    ids = {}
    with transaction(url) as session:
        for i, name in enumerate(names):
            spec = {"name": name, "benchmark": PAIRED_BENCHMARK[0],
                    "protocol_version": PAIRED_BENCHMARK[1],
                    "architecture": {"name": "single-task" if i == 0 else "hard-sharing",
                                     "backbone": "small-cnn"},
                    "weighting": {"name": name}, "optimizer": {"name": "adam"}}  # fmt: skip
            role = Role.BASELINE if i == 0 else Role.METHOD
            submission, _ = store_submission(
                session, spec=spec, spec_hash=f"{i:064d}", source="", role=role
            )
            if i == 0:
                designate_baseline(session, submission)
            queue_jobs(session, submission, range(len(deltas[name])), campaign(session))
            ids[name] = submission.id
        for job in claim_jobs(session):
            delta = deltas[job.submission.name][job.seed]
            miou = baseline * (1.0 + delta / 100.0)
            outcome = Outcome({"seg": {"miou": miou}}, {"seg": {"miou": True}}, [], provenance)
            record_success(session, job, outcome)
    return ids
