"""Plotly figures for the site, from the DataFrames of `leaderboard.tables`.

Plotly renders a subset of HTML in labels, so submitter names are escaped here.
"""

from __future__ import annotations

import pandas as pd  # no pandas-stubs in dev deps
import plotly.express as px
import plotly.graph_objects as go

from leaderboard.tables import CI, DELTA_M, LAST_RESULT, NAME, ROLE
from leaderboard.text import arrow, escape_plotly

ROLE_COLOURS = {"method": "#1f77b4", "baseline": "#ff7f0e"}
FRONT_COLOUR = "#2ca02c"


def _escaped(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].map(escape_plotly)
    return out


def _delta_label(higher_is_better: bool) -> str:
    return f"Δm (%, {arrow(higher_is_better)})"


# Beyond this many tasks grouped bars overlap: a heatmap (submission x task) instead.
MAX_TASK_BARS = 8


def task_deltas_figure(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars: x = submission, one bar per task, y = relative gain over the baseline (%).

    With more than `MAX_TASK_BARS` tasks (40 attributes), a heatmap: a row per
    submission, a column per task, diverging colours centred on 0.
    """
    data = _escaped(frame, "submission")
    if data["task"].nunique() > MAX_TASK_BARS:
        grid = data.pivot_table(index="submission", columns="task", values="delta", sort=False)
        limit = float(max(abs(grid.min().min()), abs(grid.max().max()), 1e-9))
        figure = px.imshow(
            grid,
            color_continuous_scale="RdBu",
            zmin=-limit,
            zmax=limit,
            aspect="auto",
            labels={"color": "gain (%), ↑", "x": "task", "y": ""},
        )
        figure.update_xaxes(tickangle=-60)
        return figure
    figure = px.bar(
        data,
        x="submission",
        y="delta",
        color="task",
        barmode="group",
        category_orders={"submission": list(dict.fromkeys(data["submission"]))},
        labels={"delta": "relative gain over baseline (%), ↑", "submission": ""},
    )
    figure.add_hline(y=0, line_color="grey", line_width=1)
    return figure


def cost_figure(
    frame: pd.DataFrame, cost_label: str, higher_is_better: bool, log_x: bool = False
) -> go.Figure:
    """Δm (mean ± 95% CI over seeds) against a cost, the Pareto front drawn as a line.

    `frame` is `tables.cost_frame`'s: name, role, Δm, CI, cost, front.
    """
    data = _escaped(frame, NAME)
    figure = px.scatter(
        data,
        x="cost",
        y=DELTA_M,
        error_y=CI,
        color=ROLE,
        color_discrete_map=ROLE_COLOURS,
        hover_name=NAME,
        log_x=log_x,
        labels={DELTA_M: _delta_label(higher_is_better), "cost": cost_label, ROLE: "role"},
    )
    front = data[data["front"]].sort_values("cost")
    figure.add_trace(
        go.Scatter(
            x=front["cost"],
            y=front[DELTA_M],
            mode="lines+markers",
            line={"color": FRONT_COLOUR, "shape": "hv", "width": 2},
            marker={"size": 12, "symbol": "circle-open", "color": FRONT_COLOUR,
                    "line": {"width": 2}},
            hovertext=front[NAME],
            hoverinfo="text+x+y",
            name="Pareto front",
        )
    )  # fmt: skip
    figure.add_hline(y=0, line_color="grey", line_width=1)
    return figure


def timeline_figure(frame: pd.DataFrame, higher_is_better: bool) -> go.Figure:
    """Δm of each submission at the time its last result landed, and the best method so far.

    `frame` is `tables.timeline_frame`'s.
    """
    data = _escaped(frame, NAME)
    figure = px.scatter(
        data,
        x=LAST_RESULT,
        y=DELTA_M,
        error_y=CI,
        color=ROLE,
        color_discrete_map=ROLE_COLOURS,
        # The legend in a fixed order, not in the order the results happened to land.
        category_orders={ROLE: ["baseline", "method"]},
        hover_name=NAME,
        labels={DELTA_M: _delta_label(higher_is_better), LAST_RESULT: "results landed"},
    )
    figure.add_trace(
        go.Scatter(
            x=data[LAST_RESULT],
            y=data["best"],
            mode="lines",
            line={"shape": "hv", "color": FRONT_COLOUR},
            name="best method so far",
            connectgaps=True,
        )
    )
    figure.add_hline(y=0, line_color="grey", line_width=1)
    return figure


def seeds_figure(frame: pd.DataFrame, higher_is_better: bool) -> go.Figure:
    """The spread of Δm over seeds: a box and every run, per submission.

    `frame` is `tables.seeds_frame`'s: submission, role, seed, Δm.
    """
    data = _escaped(frame, "submission")
    figure = px.box(
        data,
        x="submission",
        y=DELTA_M,
        color=ROLE,
        color_discrete_map=ROLE_COLOURS,
        points="all",
        hover_data=["seed"],
        category_orders={"submission": list(dict.fromkeys(data["submission"]))},
        labels={DELTA_M: _delta_label(higher_is_better), "submission": ""},
    )
    figure.add_hline(y=0, line_color="grey", line_width=1)
    return figure


def curves_figure(frame: pd.DataFrame) -> go.Figure:
    """Loss and task weight per epoch, one line per task, one panel per curve."""
    figure = px.line(
        frame,
        x="epoch",
        y="value",
        color="task",
        facet_col="name",
        markers=True,
        hover_data=["seeds"],
    )
    figure.update_yaxes(matches=None, showticklabels=True)
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    return figure


def front_figure(frame: pd.DataFrame, x: str, y: str) -> go.Figure:
    """Entries against the scalarisation front in the plane of two tasks.

    `frame` is `tables.front_frame`'s: submission, kind ("front" or the
    entry's verdict), and one column per task (relative gain x100, higher is
    better).  The front's points are grey; its non-dominated ones are joined.
    """
    data = _escaped(frame, "submission")
    figure = px.scatter(
        data,
        x=x,
        y=y,
        size_max=10,
        color="kind",
        symbol="kind",
        hover_name="submission",
        color_discrete_map={
            "front": "lightgrey",
            "beats the front": "seagreen",
            "dominated": "firebrick",
        },
        labels={x: f"{x}: gain (%), ↑", y: f"{y}: gain (%), ↑", "kind": ""},
    )
    points = data[data["kind"] == "front"].sort_values(x)
    best = [
        (a, b)
        for a, b in zip(points[x], points[y], strict=True)
        if not any(
            (c >= a and d >= b) and (c > a or d > b)
            for c, d in zip(points[x], points[y], strict=True)
        )
    ]
    if best:
        xs, ys = zip(*sorted(best), strict=True)
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": "dimgrey", "dash": "dot"},
                name="front (non-dominated points)",
            )
        )
    return figure
