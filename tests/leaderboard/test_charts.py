"""The Plotly figures: the right traces, escaped submitter names, a zero line."""

from __future__ import annotations

import pandas as pd

from leaderboard.charts import cost_figure, curves_figure, task_deltas_figure

HOSTILE = "<a href='javascript:alert(1)'>x</a>"


def test_task_deltas_figure_groups_bars_by_task_and_escapes_names() -> None:
    frame = pd.DataFrame(
        {
            "submission": ["m1", "m1", HOSTILE, HOSTILE],
            "task": ["depth", "seg", "depth", "seg"],
            "delta": [6.0, 4.0, -1.0, 2.0],
        }
    )
    figure = task_deltas_figure(frame)
    assert figure.layout.barmode == "group"
    assert [t.name for t in figure.data] == ["depth", "seg"]
    escaped = "&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;"
    assert list(figure.data[0].x) == ["m1", escaped]
    assert list(figure.data[1].y) == [4.0, 2.0]
    assert [(s.y0, s.y1) for s in figure.layout.shapes] == [(0, 0)]


def test_cost_figure_has_error_bars() -> None:
    frame = pd.DataFrame(
        {"name": ["a", "b"], "role": ["method", "baseline"], "Δm": [1.0, 0.0],
         "std": [0.5, None], "parameters": [10.0, 30.0]}
    )  # fmt: skip
    figure = cost_figure(frame, higher_is_better=False)
    assert sorted(t.name for t in figure.data) == ["baseline", "method"]
    method = next(t for t in figure.data if t.name == "method")
    assert list(method.error_y.array) == [0.5] and list(method.hovertext) == ["a"]
    assert figure.layout.yaxis.title.text == "Δm (↓)"


def test_curves_figure_has_one_panel_per_curve() -> None:
    frame = pd.DataFrame(
        {"name": ["loss", "loss", "weight", "weight"], "task": ["seg"] * 4,
         "epoch": [0, 1, 0, 1], "value": [2.0, 1.0, 1.0, 1.0], "seeds": [3] * 4}
    )  # fmt: skip
    figure = curves_figure(frame)
    assert sorted(a.text for a in figure.layout.annotations) == ["loss", "weight"]
    assert sorted(t.xaxis for t in figure.data) == ["x", "x2"]
    assert figure.layout.yaxis.matches is None and figure.layout.yaxis2.matches is None
