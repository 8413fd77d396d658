"""`mtlb` verbs, run through Typer's test runner against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Baseline, Job, Submission
from db.session import transaction
from submissions.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.sqlite'}"


def counts(url: str) -> tuple[int, int]:
    with transaction(url) as session:
        return (
            session.scalar(select(func.count()).select_from(Submission)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
        )


def test_every_verb_has_help() -> None:
    for verb in (
        "validate",
        "submit",
        "run",
        "status",
        "leaderboard",
        "baselines",
        "rerun",
        "schema",
        "delta-m",
    ):
        result = runner.invoke(app, [verb, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_submitting_twice_stores_once(url: str) -> None:
    spec = str(EXAMPLES / "hps-dwa.yaml")
    first = runner.invoke(app, ["--database", url, "submit", spec])
    assert first.exit_code == 0, first.output
    assert "stored as #1 hps-dwa" in first.output and "3 job(s) queued" in first.output
    second = runner.invoke(app, ["--database", url, "submit", spec])
    assert second.exit_code == 0
    assert "already submitted as #1 hps-dwa" in second.output and "0 job(s) queued" in second.output
    assert counts(url) == (1, 3)


def test_a_typo_is_rejected_with_a_suggestion_and_nothing_is_stored(
    url: str, tmp_path: Path
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        (EXAMPLES / "hps-pcgrad.yaml").read_text().replace("name: pcgrad", "name: pcgard")
    )
    result = runner.invoke(
        app, ["--database", url, "submit", str(EXAMPLES / "hps-dwa.yaml"), str(typo)]
    )
    assert result.exit_code == 1
    # The closest name first (others may follow as weighting methods are added).
    assert (
        f"{typo}: weighting.name: unknown weighting 'pcgard'; did you mean 'pcgrad'"
        in result.output
    )
    assert "Traceback" not in result.output
    assert counts(url) == (0, 0)  # the valid file was not stored either


def test_validate_exit_codes(tmp_path: Path) -> None:
    assert runner.invoke(app, ["validate", *map(str, EXAMPLES.glob("*.yaml"))]).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"name: [unclosed")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 1 and f"{broken}: malformed YAML" in result.output
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_baselines_are_designated_and_status_lists_jobs(url: str) -> None:
    result = runner.invoke(app, ["--database", url, "baselines", "synthetic-scenes"])
    assert result.exit_code == 0, result.output
    with transaction(url) as session:
        baseline = session.scalars(select(Baseline)).one()
        assert (baseline.benchmark, baseline.protocol_version, baseline.backbone) == (
            "synthetic-scenes",
            1,
            "small-cnn",
        )
    # The example baseline file is the same spec: no new submission.
    again = runner.invoke(app, ["--database", url, "submit", str(EXAMPLES / "stl-small-cnn.yaml")])
    assert "already submitted as #1 stl-small-cnn" in again.output
    status = runner.invoke(app, ["--database", url, "status"])
    assert "stl-small-cnn" in status.output and "3 queued" in status.output
    unknown = runner.invoke(app, ["--database", url, "baselines", "synthetic-scene"])
    assert unknown.exit_code == 1 and "did you mean 'synthetic-scenes'" in unknown.output


def test_schema_is_json() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "MTL Leaderboard spec"


def test_delta_m_command_on_hand_computed_values(tmp_path: Path) -> None:
    baseline = {
        "segmentation": {"miou": 0.5, "pixel_acc": 0.8},
        "depth": {"abs_err": 0.4, "rel_err": 0.2},
        "normal": {
            "mean_angle": 20.0,
            "median_angle": 15.0,
            "within_11_25": 0.4,
            "within_22_5": 0.6,
            "within_30": 0.7,
        },
    }
    result = json.loads(json.dumps(baseline))
    command = ["delta-m", "--benchmark", "synthetic-scenes", str(tmp_path / "b.json")]
    command.append(str(tmp_path / "r.yaml"))
    result["segmentation"]["miou"] = 0.55  # +10% on one of two metrics: +5% for the task
    result["depth"]["abs_err"] = 0.3  # -25% error: +25% on one of two metrics: +12.5%
    (tmp_path / "b.json").write_text(json.dumps(baseline))
    (tmp_path / "r.yaml").write_text(json.dumps(result))
    out = runner.invoke(app, command)
    assert out.exit_code == 0, out.output
    # per task: (5 + 12.5 + 0) / 3 = 5.8333; per metric: -(10 + 25) / 9 = -3.8889
    assert "+5.8333%" in out.output and "-3.8889%" in out.output
    del result["normal"]["within_30"]
    (tmp_path / "r.yaml").write_text(json.dumps(result))
    out = runner.invoke(app, command)
    assert out.exit_code == 1 and "result has no value for normal.within_30" in out.output
