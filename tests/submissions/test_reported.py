"""`mtlb reported import`: checking, storing, re-importing; Δm against the reported baseline.

Δm values are checked against hand-computed numbers (written out below) to
1e-9 relative; nothing else here is floating point.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.delta_m import PER_METRIC, PER_TASK
from db.models import ReportedBaseline, ReportedMetricValue, ReportedResult, Role
from db.reported import reported_results
from db.session import engine, read_only_session_factory, transaction
from runners.benchmarks import BENCHMARKS
from submissions.cli import app
from submissions.loader import read
from submissions.reported import BUILTIN, check_document, check_file

BENCHMARK = "synthetic-scenes-mini"

BASELINE_METRICS = {
    "segmentation": {"miou": 0.50, "pixel_acc": 0.80},
    "depth": {"abs_err": 0.40, "rel_err": 0.25},
    "normal": {
        "mean_angle": 20.0, "median_angle": 16.0,
        "within_11_25": 0.40, "within_22_5": 0.60, "within_30": 0.75,
    },
}  # fmt: skip
# A method reporting only some metrics (headline ones required).
METHOD_METRICS = {
    "segmentation": {"miou": 0.55, "pixel_acc": 0.84},
    "depth": {"abs_err": 0.36},
    "normal": {"mean_angle": 22.0, "within_11_25": 0.30},
}
# Hand-computed d(t, k) = s * (M - B) / B:
#   segmentation: miou +0.05/0.50 = +0.10, pixel_acc +0.04/0.80 = +0.05   -> task mean +0.075
#   depth:        abs_err -(0.36-0.40)/0.40 = +0.10                        -> task mean +0.10
#   normal:       mean_angle -(22-20)/20 = -0.10, within_11_25 (0.30-0.40)/0.40 = -0.25
#                                                                          -> task mean -0.175
#   per task   = 100 * (0.075 + 0.10 - 0.175) / 3 = 0.0
#   per metric = -100 * (0.10 + 0.05 + 0.10 - 0.10 - 0.25) / 5 = -100 * (-0.10 / 5) = +2.0
METHOD_PER_TASK = 0.0
METHOD_PER_METRIC = 2.0


def entry(name: str, role: str = "method", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "architecture": "hard-sharing",
        "weighting": "equal",
        "backbone": "small-cnn",
        "role": role,
        "citation": f"Doe et al., {name}, 2024, Table 2",
        "metrics": BASELINE_METRICS if role == "baseline" else METHOD_METRICS,
        **extra,
    }


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": BENCHMARK, "protocol_version": 1, "results": list(entries)}


GOOD = document(
    entry("stl", "baseline", architecture="single-task", url="https://example.org/stl"),
    entry("hps-paper", note="their Table 2, last row"),
)


def write(path: Path, data: dict[str, Any]) -> Path:
    # Through JSON: shared sub-dicts would be dumped as YAML anchors, which the loader refuses.
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False))
    return path


def invoke(url: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["--database", url, "reported", "import", *args])


def stored_counts(url: str) -> tuple[int, int, int]:
    engine(url)  # the schema, if nothing was ever stored
    with read_only_session_factory(url)() as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).select_from(t)) or 0)
            for t in (ReportedResult, ReportedMetricValue, ReportedBaseline)
        )


def test_import_stores_checks_and_is_idempotent(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "papers.yaml", GOOD)
    result = invoke(database_url, str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"reported #1 stl: stored; reported baseline of {BENCHMARK} v1 small-cnn",
        "reported #2 hps-paper: stored",
    ]
    assert stored_counts(database_url) == (2, 9 + 5, 1)

    with read_only_session_factory(database_url)() as session:
        rows = {r["name"]: r for r in reported_results(session, BENCHMARK, 1)}
        stamp = session.scalar(select(func.max(ReportedResult.imported_at)))
    stl, method = rows["stl"], rows["hps-paper"]
    assert stl["role"] is Role.BASELINE and stl["url"] == "https://example.org/stl"
    assert method["note"] == "their Table 2, last row" and method["url"] == ""
    # Positions follow the task's metric order (headline first), whatever the file's order.
    assert method["columns"] == [
        ("depth", "abs_err", False, 0),
        ("normal", "mean_angle", False, 0),
        ("normal", "within_11_25", True, 2),
        ("segmentation", "miou", True, 0),
        ("segmentation", "pixel_acc", True, 1),
    ]
    assert method["metrics"][("normal", "mean_angle")] == 22.0
    assert method["baseline_name"] == "stl"
    assert math.isclose(method[PER_TASK], METHOD_PER_TASK, abs_tol=1e-12)
    assert math.isclose(method[PER_METRIC], METHOD_PER_METRIC, rel_tol=1e-9)
    assert stl[PER_TASK] == 0.0 and stl[PER_METRIC] == 0.0  # against itself

    again = invoke(database_url, str(path))
    assert again.exit_code == 0, again.output
    assert "reported #1 stl: unchanged" in again.output
    assert "reported #2 hps-paper: unchanged" in again.output
    assert stored_counts(database_url) == (2, 14, 1)
    with read_only_session_factory(database_url)() as session:
        assert session.scalar(select(func.max(ReportedResult.imported_at))) == stamp


def test_a_changed_value_updates_the_entry_and_its_delta_m(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert invoke(url, str(write(tmp_path / "a.yaml", GOOD))).exit_code == 0
    changed = document(
        entry("stl", "baseline", architecture="single-task", url="https://example.org/stl"),
        entry(
            "hps-paper",
            note="their Table 2, last row",
            metrics={**METHOD_METRICS, "depth": {"abs_err": 0.44}},
        ),
    )
    result = invoke(url, str(write(tmp_path / "a.yaml", changed)))
    assert result.exit_code == 0, result.output
    assert "reported #2 hps-paper: updated" in result.output
    assert stored_counts(url) == (2, 14, 1)
    with read_only_session_factory(url)() as session:
        [row] = [r for r in reported_results(session, BENCHMARK, 1) if r["name"] == "hps-paper"]
    # depth's d is now -(0.44 - 0.40) / 0.40 = -0.10 instead of +0.10:
    # per task = 100 * (0.075 - 0.10 - 0.175) / 3 = -6.666..., per metric = -100 * (-0.30 / 5) = 6
    assert math.isclose(row[PER_TASK], -20.0 / 3, rel_tol=1e-9)
    assert math.isclose(row[PER_METRIC], 6.0, rel_tol=1e-9)


def test_without_a_reported_baseline_there_is_no_delta_m(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert invoke(url, str(write(tmp_path / "m.yaml", document(entry("m"))))).exit_code == 0
    with read_only_session_factory(url)() as session:
        [row] = reported_results(session, BENCHMARK, 1)
    assert row[PER_TASK] is None and row[PER_METRIC] is None
    assert row["delta_m_note"] == "no reported baseline for this benchmark version and backbone"


def test_a_baseline_that_lacks_a_metric_gives_no_delta_m(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    thin = {task: {next(iter(m)): v[next(iter(m))]} for (task, m), v in
            zip(BASELINE_METRICS.items(), BASELINE_METRICS.values(), strict=True)}  # fmt: skip
    data = document(entry("stl", "baseline", metrics=thin), entry("m"))
    assert invoke(url, str(write(tmp_path / "t.yaml", data))).exit_code == 0
    with read_only_session_factory(url)() as session:
        [row] = [r for r in reported_results(session, BENCHMARK, 1) if r["name"] == "m"]
    assert row[PER_TASK] is None and "baseline has no value for" in row["delta_m_note"]


def bad(field_path: list[Any], value: Any, *, delete: bool = False) -> dict[str, Any]:
    """GOOD with one field set (or deleted), given as a path of keys and list indices."""
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    target = data
    for key in field_path[:-1]:
        target = target[key]
    if delete:
        del target[field_path[-1]]
    else:
        target[field_path[-1]] = value
    return dict(data)


M = ["results", 1, "metrics"]
BAD = {
    "unknown task": (
        bad([*M, "edges"], {"odsf": 0.5}),
        "results.1.metrics.edges: unknown task; the benchmark's: segmentation, depth, normal",
    ),
    "unknown metric": (
        bad([*M, "depth", "rmse"], 0.5),
        "results.1.metrics.depth.rmse: unknown metric of depth; known: abs_err, rel_err",
    ),
    "missing headline": (
        bad([*M, "segmentation", "miou"], None, delete=True),
        "results.1.metrics.segmentation.miou: missing; it is the task's headline metric",
    ),
    "missing task": (
        bad([*M, "normal"], None, delete=True),
        "results.1.metrics.normal: missing; every task needs at least its headline metric",
    ),
    "percent, not fraction": (
        bad([*M, "segmentation", "miou"], 55.0),
        "results.1.metrics.segmentation.miou: 55 is outside [0, 1]; runners.metrics gives miou"
        " as a fraction (write 0.55 for 55%)",
    ),
    "not a number": (
        bad([*M, "depth", "abs_err"], "0.3"),
        "results.1.metrics.depth.abs_err: must be a number, got '0.3'",
    ),
    "boolean": (
        bad([*M, "depth", "abs_err"], True),
        "results.1.metrics.depth.abs_err: must be a number, got True",
    ),
    "unknown field": (bad(["results", 0, "seeds"], 3), "results.0.seeds: unknown field"),
    "no citation": (bad(["results", 1, "citation"], None, delete=True), "results.1.citation"),
    "backbone": (
        bad(["results", 1, "backbone"], "resnet50-dilated"),
        "results.1.backbone: 'resnet50-dilated' is not a backbone of synthetic-scenes-mini v1",
    ),
    "role": (bad(["results", 1, "role"], "sota"), "results.1.role: must be 'method' or"),
    "two baselines": (
        bad(["results", 1, "role"], "baseline"),
        "results.1.role: a second baseline for backbone 'small-cnn'",
    ),
    "zero baseline": (
        bad(["results", 0, "metrics", "depth", "rel_err"], 0.0),
        "results.0.metrics.depth.rel_err: a baseline value of 0 makes Δm undefined",
    ),
    "benchmark": (bad(["benchmark"], "nyu"), "benchmark: unknown benchmark 'nyu'"),
    "version": (bad(["protocol_version"], 7), "protocol_version: benchmark"),
    # The site links to it: a web page only (issue 12).
    "javascript url": (
        bad(["results", 0, "url"], "javascript:alert(document.cookie)"),
        "results.0.url: must be an http:// or https:// address, got 'javascript:alert(",
    ),
    "data url": (
        bad(["results", 1, "url"], "data:text/html,<script>alert(1)</script>"),
        "results.1.url: must be an http:// or https:// address",
    ),
    "relative url": (
        bad(["results", 1, "url"], "arxiv.org/abs/1"),
        "results.1.url: must be an http:// or https:// address, got 'arxiv.org/abs/1'",
    ),
    "duplicate": (
        bad(["results", 0], entry("hps-paper", note="their Table 2, last row")),
        "results.1: same name and citation as results.0",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_one_line_naming_file_and_field_and_nothing_is_stored(
    tmp_path: Path, case: str
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    data, message = BAD[case]
    good = write(tmp_path / "good.yaml", GOOD)
    path = write(tmp_path / "bad.yaml", data)
    # A good file first: it is not stored either.
    result = invoke(url, str(good), str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {message}"), lines[0]
    assert lines[0].endswith("; nothing stored")
    assert stored_counts(url) == (0, 0, 0)


def test_non_finite_values_are_refused(database_url: str, tmp_path: Path) -> None:
    text = yaml.safe_dump(GOOD, sort_keys=False).replace("abs_err: 0.36", "abs_err: .nan")
    at = next(i for i, line in enumerate(text.splitlines(), 1) if ".nan" in line)
    path = tmp_path / "nan.yaml"
    path.write_text(text)
    result = invoke(database_url, str(path))
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line == (
        f"{path}: results.1.metrics.depth.abs_err: numbers must be finite, got .nan (line {at});"
        " nothing stored"
    )
    # A bad file after the good one leaves the database as the good one left it.
    assert invoke(database_url, str(write(tmp_path / "good.yaml", GOOD))).exit_code == 0
    before = stored_counts(database_url)
    assert invoke(database_url, str(tmp_path / "good.yaml"), str(path)).exit_code == 1
    assert stored_counts(database_url) == before == (2, 14, 1)


def test_a_later_baseline_replaces_the_designation_and_a_demoted_one_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert invoke(url, str(write(tmp_path / "a.yaml", GOOD))).exit_code == 0
    other = document(entry("stl-2", "baseline", architecture="single-task"))
    assert invoke(url, str(write(tmp_path / "b.yaml", other))).exit_code == 0
    with transaction(url) as session:
        [designated] = session.scalars(select(ReportedBaseline)).all()
        assert session.get(ReportedResult, designated.reported_id).name == "stl-2"  # type: ignore[union-attr]
    demoted = document(entry("stl-2", "method", architecture="single-task", metrics=METHOD_METRICS))
    assert invoke(url, str(write(tmp_path / "b.yaml", demoted))).exit_code == 0
    assert stored_counts(url)[2] == 0


def test_no_files_is_an_error(tmp_path: Path) -> None:
    result = invoke(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert result.exit_code == 1 and "give reported-results files, or --builtin" in result.output


# --------------------------------------------------------------------------- shipped files

DESIGN_NYUV2 = {
    "segmentation": {"miou": 0.3830, "pixel_acc": 0.6376},
    "depth": {"abs_err": 0.6754, "rel_err": 0.2780},
    "normal": {
        "mean_angle": 25.01, "median_angle": 19.21,
        "within_11_25": 0.3014, "within_22_5": 0.5720, "within_30": 0.6915,
    },
}  # fmt: skip


def test_the_shipped_nyuv2_baseline_is_design_md_s_and_valid() -> None:
    path = BUILTIN / "nyuv2.yaml"
    data, _ = read(path)
    [baseline] = data["results"]
    assert baseline["role"] == "baseline" and baseline["metrics"] == DESIGN_NYUV2
    assert "Liu, Johns and Davison" in baseline["citation"] and "CVPR 2019" in baseline["citation"]
    if "nyuv2" in BENCHMARKS:
        [checked] = check_file(path)
    else:
        # Until the nyuv2 benchmark is registered: the same three tasks and nine metrics.
        data = {**data, "benchmark": "synthetic-scenes"}
        data["results"] = [{**baseline, "backbone": "small-cnn"}]
        [checked] = check_document(data, path.name)
    values = {(v.task, v.metric): v.value for v in checked.values}
    assert values == {(t, m): v for t, ms in DESIGN_NYUV2.items() for m, v in ms.items()}
    assert checked.role is Role.BASELINE
