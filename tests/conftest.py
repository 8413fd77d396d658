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

    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, log_to_driver=False
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
