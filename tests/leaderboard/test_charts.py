"""The Plotly figures: the right traces, escaped submitter names, a zero line."""

from __future__ import annotations

import pandas as pd

from leaderboard.charts import (
    cost_figure,
    curves_figure,
    seeds_figure,
    task_deltas_figure,
    timeline_figure,
)

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


def test_cost_figure_has_error_bars_and_the_pareto_front() -> None:
    frame = pd.DataFrame(
        {"name": ["a", "b", HOSTILE], "role": ["method", "baseline", "method"],
         "Δm": [1.0, 0.0, -2.0], "± 95% CI": [0.5, None, 0.1], "cost": [10.0, 30.0, 5.0],
         "front": [True, False, True]}
    )  # fmt: skip
    figure = cost_figure(frame, "FLOPs per image", higher_is_better=False, log_x=True)
    assert [t.name for t in figure.data] == ["method", "baseline", "Pareto front"]
    method = figure.data[0]
    assert list(method.error_y.array) == [0.5, 0.1]
    assert list(method.hovertext) == ["a", "&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;"]
    front = figure.data[2]
    assert list(front.x) == [5.0, 10.0] and list(front.y) == [-2.0, 1.0]  # by cost
    assert front.line.shape == "hv" and front.mode == "lines+markers"
    assert figure.layout.yaxis.title.text == "Δm (%, ↓)"
    assert figure.layout.xaxis.title.text == "FLOPs per image"
    assert figure.layout.xaxis.type == "log"


def test_timeline_figure_draws_the_best_so_far() -> None:
    frame = pd.DataFrame(
        {"name": ["stl", "m"], "role": ["baseline", "method"],
         "last result": pd.to_datetime(["2026-01-01", "2026-01-02"]), "Δm": [0.0, 2.0],
         "± 95% CI": [1.0, 1.0], "best": [None, 2.0]}
    )  # fmt: skip
    figure = timeline_figure(frame, higher_is_better=True)
    assert [t.name for t in figure.data] == ["baseline", "method", "best method so far"]
    assert figure.data[2].line.shape == "hv"
    assert figure.layout.xaxis.title.text == "results landed"


def test_seeds_figure_shows_every_run() -> None:
    frame = pd.DataFrame(
        {"submission": ["m", "m", HOSTILE], "role": ["method"] * 3, "seed": [0, 1, 0],
         "Δm": [1.0, 2.0, 3.0]}
    )  # fmt: skip
    figure = seeds_figure(frame, higher_is_better=True)
    [box] = figure.data
    assert box.type == "box" and box.boxpoints == "all"
    assert list(box.x) == ["m", "m", "&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;"]
    assert list(box.y) == [1.0, 2.0, 3.0]


def test_curves_figure_has_one_panel_per_curve() -> None:
    frame = pd.DataFrame(
        {"name": ["loss", "loss", "weight", "weight"], "task": ["seg"] * 4,
         "epoch": [0, 1, 0, 1], "value": [2.0, 1.0, 1.0, 1.0], "seeds": [3] * 4}
    )  # fmt: skip
    figure = curves_figure(frame)
    assert sorted(a.text for a in figure.layout.annotations) == ["loss", "weight"]
    assert sorted(t.xaxis for t in figure.data) == ["x", "x2"]
    assert figure.layout.yaxis.matches is None and figure.layout.yaxis2.matches is None


def test_forty_tasks_are_a_heatmap_not_forty_bars() -> None:
    """Grouped bars overlap past a few tasks: a submission x task heatmap instead."""
    import pandas as pd

    from leaderboard.charts import MAX_TASK_BARS, task_deltas_figure

    few = pd.DataFrame(
        [{"submission": s, "task": f"t{t}", "delta": float(t)} for s in "xy" for t in range(3)]
    )
    assert {trace.type for trace in task_deltas_figure(few).data} == {"bar"}
    many = pd.DataFrame(
        [{"submission": s, "task": f"t{t:02d}", "delta": t - 20.0} for s in "xy" for t in range(40)]
    )
    assert MAX_TASK_BARS < 40
    [heatmap] = task_deltas_figure(many).data
    assert heatmap.type == "heatmap"
    assert list(heatmap.x) == [f"t{t:02d}" for t in range(40)] and list(heatmap.y) == ["x", "y"]
    assert heatmap.z[0][0] == -20.0 and heatmap.z[1][39] == 19.0
