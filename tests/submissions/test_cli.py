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
        "ranking",
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
            2,
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


# ---------------------------------------------------------------------------
# mtlb ranking


def test_ranking_prints_what_the_site_computes(url: str) -> None:
    from db import queries
    from db.session import read_only_session_factory
    from leaderboard import tables
    from tests.conftest import PAIRED_BENCHMARK, PAIRED_DELTAS, paired_database

    ids = paired_database(url, PAIRED_DELTAS)
    result = runner.invoke(app, ["--database", url, "ranking"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("paired-bench v1: Δm per task (LibMTL)")
    assert "note:" not in result.output  # not everything ties
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "group"])
    cells = [line.split(maxsplit=9) for line in lines[header + 2 : header + 6]]
    assert [(c[0], c[1], c[2], c[4], c[6]) for c in cells] == [
        ("1", "1", "1–2", "uncertainty", "+11.17"), ("1", "1", "1–2", "equal", "+10.00"),
        ("3", "2", "3", "stl", "+0.00"), ("4", "3", "4", "mgda", "-8.00"),
    ]  # fmt: skip
    assert cells[1][9].startswith("vs uncertainty: paired t, 3 seeds, p = ")
    assert "paired comparisons" in result.output

    document = json.loads(
        runner.invoke(app, ["--database", url, "ranking", "--format", "json"]).output
    )
    assert (document["benchmark"], document["protocol_version"]) == PAIRED_BENCHMARK
    assert document["convention"] == "per_task" and document["notice"] is None
    rows = {row["name"]: row for row in document["rows"]}
    assert rows["mgda"]["rank"] == 4 and rows["mgda"]["tie group"] == 3
    per_seed = rows["equal"]["Δm per seed"]
    assert list(per_seed) == ["0", "1", "2"]
    assert [per_seed[s] for s in "012"] == pytest.approx(PAIRED_DELTAS["equal"], abs=1e-9)
    assert rows["equal"]["id"] == ids["equal"] and rows["equal"]["seeds"] == 3
    # The same numbers as the site's table, from the same function.
    with read_only_session_factory(url)() as session:
        site_rows = queries.ranking(session, *PAIRED_BENCHMARK)
    frame = tables.ranking_frame(site_rows, [], "per_task")
    assert [row["name"] for row in document["rows"]] == frame["name"].tolist()
    assert [row["rank"] for row in document["rows"]] == frame["rank"].tolist()
    assert [row["Δm"] for row in document["rows"]] == pytest.approx(frame["Δm"].tolist())
    assert [row["± 95% CI"] for row in document["rows"]] == pytest.approx(
        frame["± 95% CI"].tolist()
    )
    assert [row["rank test"] for row in document["rows"]] == frame["rank test"].tolist()

    csv_text = runner.invoke(
        app, ["--database", url, "ranking", "--format", "csv", "--convention", "per-metric"]
    ).output
    header, *lines = csv_text.splitlines()
    assert header == "rank,tie group,possible ranks,id,name,role,Δm,± 95% CI,seeds,rank test"
    # Per metric (a drop, lower is better; one metric: −Δm per task): the same order.
    assert [line.split(",")[4] for line in lines] == ["uncertainty", "equal", "stl", "mgda"]
    assert lines[0].startswith("1,1,1–2,")


def test_ranking_says_when_everything_ties(url: str) -> None:
    from tests.conftest import paired_database

    paired_database(url, {"stl": [-10.0, 0.0, 10.0], "a": [5.0, -9.0, 8.0]})
    table = runner.invoke(app, ["--database", url, "ranking"])
    assert table.exit_code == 0 and "note: All 2 entries tie at rank 1" in table.output
    csv = runner.invoke(app, ["--database", url, "ranking", "--format", "csv"])
    # The notice goes to stderr, so that stdout stays CSV.
    assert csv.stdout.startswith("rank,") and "All 2 entries tie" in csv.stderr
    document = json.loads(runner.invoke(app, ["--database", url, "ranking", "--format",
                                              "json"]).output)  # fmt: skip
    assert document["notice"].startswith("All 2 entries tie at rank 1")


def test_ranking_defaults_and_one_line_errors(url: str, tmp_path: Path) -> None:
    from db.models import Role
    from db.queue import campaign, queue_jobs, store_submission
    from tests.conftest import PAIRED_DELTAS, paired_database

    paired_database(url, PAIRED_DELTAS)
    # Version 2 has a submission but no runs yet: the default stays on version 1.
    with transaction(url) as session:
        spec = {"name": "later", "benchmark": "paired-bench", "protocol_version": 2,
                "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
                "weighting": {"name": "dwa"}, "optimizer": {"name": "adam"}}  # fmt: skip
        later, _ = store_submission(session, spec=spec, spec_hash="f" * 64, source="",
                                    role=Role.METHOD)  # fmt: skip
        queue_jobs(session, later, [0], campaign(session))
    default = runner.invoke(app, ["--database", url, "ranking", "--format", "json"])
    assert json.loads(default.output)["protocol_version"] == 1
    v2 = runner.invoke(app, ["--database", url, "ranking", "--version", "2", "--format", "json"])
    assert [row["name"] for row in json.loads(v2.output)["rows"]] == ["later"]
    assert json.loads(v2.output)["rows"][0]["rank"] is None  # no runs, no rank

    for args, message in (
        (["--benchmark", "paired-bnch"],
         "error: no submissions of benchmark 'paired-bnch' in this database; did you mean "
         "'paired-bench'?"),
        (["--benchmark", "nothing-like-it"],
         "error: no submissions of benchmark 'nothing-like-it' in this database; benchmarks: "
         "paired-bench"),
        (["--version", "7"], "error: paired-bench has no version 7 in this database; versions: "
         "2, 1"),
    ):  # fmt: skip
        result = runner.invoke(app, ["--database", url, "ranking", *args])
        assert result.exit_code == 1 and result.output.strip() == message, result.output
    missing = f"sqlite:///{tmp_path / 'absent.sqlite'}"
    result = runner.invoke(app, ["--database", missing, "ranking"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: nothing to rank: no results in {missing}"
    assert not (tmp_path / "absent.sqlite").exists()  # read only: nothing created
    bad = runner.invoke(app, ["--database", url, "ranking", "--format", "xml"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
