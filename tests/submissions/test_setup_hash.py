"""Honest submissions: one training set-up is trained once, whatever its name or description.

The spec hash covers name, description and authors, so relabelling a spec made
it a new submission, trained and ranked again.  The set-up hash covers what the
workers train only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from db import migrate
from db.models import Job, Submission
from db.session import transaction
from submissions.cli import app
from submissions.loader import parse
from submissions.spec import setup_hash, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
runner = CliRunner()


def normalised(text: str) -> dict[str, Any]:
    spec, problems = validate(parse(text.encode(), ".yaml"))
    assert spec is not None, problems
    return spec.normalised


def test_the_setup_hash_ignores_what_a_spec_says_about_itself_only() -> None:
    base = (EXAMPLES / "hps-dwa.yaml").read_text()
    relabelled = (
        base.replace("name: hps-dwa", "name: my-new-method")
        .replace("authors: [MTL Leaderboard]", "authors: [Someone Else]")
        .replace("description: Hard", "description: A brand new idea, not hard")
    )
    a, b = normalised(base), normalised(relabelled)
    assert setup_hash(a) == setup_hash(b)
    for changed in (
        base.replace("temperature: 2.0", "temperature: 2.5"),
        base.replace("lr: 3.0e-3", "lr: 2.0e-3"),
        base.replace("scheduler: {name: cosine}", ""),
        base.replace(
            "benchmark: synthetic-scenes", "benchmark: synthetic-scenes\nprotocol_version: 1"
        ),
    ):
        assert setup_hash(normalised(changed)) != setup_hash(a)


def test_a_relabelled_spec_is_reported_and_not_trained_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'setup.sqlite'}"
    original = EXAMPLES / "hps-dwa.yaml"
    relabelled = tmp_path / "mine.yaml"
    relabelled.write_text(
        original.read_text()
        .replace("name: hps-dwa", "name: totally-new")
        .replace("description: Hard", "description: Not at all hard")
    )
    first = runner.invoke(app, ["--database", url, "submit", "--submitter", "a", str(original)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["--database", url, "submit", "--submitter", "b", str(relabelled)])
    assert second.exit_code == 0, second.output
    assert (
        f"{relabelled}: identical training set-up to submission #1 (hps-dwa);"
        " not stored, not trained again"
    ) in second.output
    with transaction(url) as session:
        rows = session.scalars(sa.select(Submission)).all()
        jobs = session.scalar(sa.select(sa.func.count()).select_from(Job))
    assert [r.name for r in rows] == ["hps-dwa"] and jobs == 3
    assert rows[0].setup_hash == setup_hash(rows[0].spec)


def test_the_migration_fills_in_stored_set_ups_as_the_code_computes_them(tmp_path: Path) -> None:
    """Rows stored at 0003 get the hash `setup_hash` gives; a legacy `seed: 0` is dropped."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate.upgrade(url, "0003")
    spec = normalised((EXAMPLES / "hps-rlw.yaml").read_text())
    legacy = {**spec, "weighting": {**spec["weighting"], "seed": 0}}  # as stored before
    engine = sa.create_engine(url)
    submissions = sa.Table("submissions", sa.MetaData(), autoload_with=engine)
    with engine.begin() as connection:
        connection.execute(
            submissions.insert().values(
                id=1, spec_hash="x" * 64, name="hps-rlw", description="", authors=[],
                benchmark="synthetic-scenes", protocol_version=2, architecture="hard-sharing",
                backbone="small-cnn", weighting="rlw", optimizer="adam", role="method",
                spec=legacy, source="", submitter="", submitted_at=sa.func.now(),
            )
        )  # fmt: skip
    migrate.upgrade(url)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT setup_hash FROM submissions")).scalar_one()
    engine.dispose()
    assert stored == setup_hash(legacy) == setup_hash(spec)


def test_a_seed_for_a_stochastic_method_is_refused_with_the_reason(tmp_path: Path) -> None:
    spec = tmp_path / "lucky.yaml"
    spec.write_text(
        (EXAMPLES / "hps-pcgrad.yaml").read_text().replace("name: pcgrad", "name: pcgrad, seed: 7")
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{spec}: weighting.seed: not a parameter: a method's own randomness is seeded by the"
        " platform, the same for every submission, so that no submitter can choose a lucky seed"
    )


def test_stored_specs_with_a_seed_train_as_they_did() -> None:
    """A spec stored with `seed: 0` (the old default) builds the generator a spec without one
    builds now; one stored with another seed keeps it on rerun."""
    import torch

    from runners.benchmarks import BENCHMARKS
    from runners.train import build

    benchmark = BENCHMARKS.get("synthetic-scenes-mini")
    now = normalised((EXAMPLES / "hps-rlw.yaml").read_text())
    now["benchmark"] = benchmark.name
    protocol = benchmark.protocol(now["protocol_version"])

    def generator_state(weighting: dict[str, Any]) -> torch.Tensor:
        return build({**now, "weighting": weighting}, benchmark, protocol, 0)[
            1
        ]._generator.get_state()

    current = generator_state(now["weighting"])
    assert torch.equal(current, torch.Generator().manual_seed(0).get_state())
    assert torch.equal(generator_state({**now["weighting"], "seed": 0}), current)
    assert torch.equal(
        generator_state({**now["weighting"], "seed": 5}),
        torch.Generator().manual_seed(5).get_state(),
    )
