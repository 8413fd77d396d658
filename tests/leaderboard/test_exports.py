"""Exports of the table on screen: CSV, JSON, LaTeX (booktabs), with hostile submitter strings."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pandas as pd
import pytest

from leaderboard.exports import best_values, escape_latex, file_stem, to_csv, to_json, to_latex

HOSTILE = r"a_b & c%#$\{}~^"
BETTER = {"Δm": True, "depth abs_err ↓": False, "parameters": False}


def frame() -> pd.DataFrame:
    """A ranking table as shown: baseline, a hostile method, a plain one."""
    out = pd.DataFrame(
        {
            "rank": pd.array([2, 1, None], dtype="Int64"),
            "name": ["stl", HOSTILE, "=cmd|' /C calc'!A0"],
            "role": ["baseline", "method", "method"],
            "Δm": [0.0, 3.25, None],
            "± 95% CI": [1.5, 0.75, None],
            "depth abs_err ↓": [0.10, 0.125, 0.25],
            "parameters": pd.array([300, 100, 100], dtype="Int64"),
            "last result": [datetime(2026, 1, 2, 3, 4, 5), None, None],
            "page": ["submission?submission=1", "submission?submission=2", "x"],
        }
    )
    out["last result"] = pd.to_datetime(out["last result"])
    return out


def test_escape_latex_of_a_hostile_name() -> None:
    assert escape_latex(HOSTILE) == (
        r"a\_b \& c\%\#\$\textbackslash{}\{\}\textasciitilde{}\textasciicircum{}"
    )
    assert escape_latex("<x|y>") == r"\textless{}x\textbar{}y\textgreater{}"


def test_latex_is_a_booktabs_table_with_escaped_text() -> None:
    tex = to_latex(frame(), BETTER, caption="Δm on bench v1 (100% ± CI)")
    lines = tex.splitlines()
    assert lines[0] == "% Needs \\usepackage{booktabs}."
    assert r"\caption{$\Delta_m$ on bench v1 (100\% $\pm$ CI)}" in lines
    start = lines.index(r"\begin{tabular}{rllrrrl}")  # CI folded into Δm; page dropped
    assert lines[start + 1 : start + 4] == [
        r"\toprule",
        r"rank & name & role & $\Delta_m$ & depth abs\_err $\downarrow$ & parameters & "
        r"last result \\",
        r"\midrule",
    ]
    body = lines[start + 4 : start + 7]
    assert (
        body[0] == r"2 & stl & baseline & +0.00 $\pm$ 1.50 & 0.1000 & 300 & 2026-01-02 03:04:05 \\"
    )
    # The best method per column is bold, the baseline is not a competitor: the best
    # abs_err among the methods is 0.125 (lower is better), not the baseline's 0.100.
    assert body[1] == (
        r"1 & a\_b \& c\%\#\$\textbackslash{}\{\}\textasciitilde{}\textasciicircum{} & method & "
        r"\textbf{+3.25} $\pm$ 0.75 & \textbf{0.1250} & \textbf{100} & -- \\"
    )
    assert body[2].startswith(r"-- & =cmd\textbar{}' /C calc'!A0 & method & -- & 0.2500 & ")
    assert body[2].endswith(r"\textbf{100} & -- \\")  # a tie for the best: both bold
    assert lines[start + 7 :] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    assert tex.endswith("\\end{table}\n")
    assert "submission?" not in tex


def test_best_values_respect_direction() -> None:
    assert best_values(frame(), BETTER, list(frame().columns)) == {
        "Δm": 3.25, "depth abs_err ↓": 0.125, "parameters": 100.0,
    }  # fmt: skip
    baselines_only = frame().iloc[:1]
    assert best_values(baselines_only, BETTER, ["depth abs_err ↓"]) == {"depth abs_err ↓": 0.1}


def test_csv_round_trips_and_defuses_formulas() -> None:
    text = to_csv(frame())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["rank", "name", "role", "Δm", "± 95% CI", "depth abs_err ↓",
                             "parameters", "last result"]  # fmt: skip
    assert [r["name"] for r in rows] == ["stl", HOSTILE, "'=cmd|' /C calc'!A0"]
    assert rows[1]["Δm"] == "3.25" and rows[2]["Δm"] == "" and rows[0]["Δm"] == "0.0"


def test_json_has_meta_columns_and_nulls() -> None:
    document = json.loads(to_json(frame(), {"benchmark": "bench", "convention": "per_task"}))
    assert document["benchmark"] == "bench" and document["convention"] == "per_task"
    assert document["columns"][:3] == ["rank", "name", "role"]
    first, second, third = document["rows"]
    assert first["rank"] == 2 and first["last result"] == "2026-01-02T03:04:05"
    assert second["name"] == HOSTILE and second["Δm"] == 3.25 and second["last result"] is None
    assert third["rank"] is None and third["Δm"] is None and "page" not in third


@pytest.mark.parametrize(
    ("parts", "stem"),
    [(("synthetic-scenes v1", "per_task"), "synthetic-scenes-v1_per-task"),
     (("../../etc/passwd",), "etc-passwd"), (("<>",), "export")],
)  # fmt: skip
def test_file_stem_is_safe(parts: tuple[str, ...], stem: str) -> None:
    assert file_stem(*parts) == stem
