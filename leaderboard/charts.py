"""Plotly figures for the site, from the DataFrames of `leaderboard.tables`.

Plotly renders a subset of HTML in labels, so submitter names are escaped here.
"""

from __future__ import annotations

import pandas as pd  # no pandas-stubs in dev deps
import plotly.express as px
import plotly.graph_objects as go

from leaderboard.tables import DELTA_M, PARAMETERS
from leaderboard.text import escape_plotly


def _escaped(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].map(escape_plotly)
    return out


def task_deltas_figure(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars: x = submission, one bar per task, y = relative gain over the baseline (%)."""
    data = _escaped(frame, "submission")
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


def cost_figure(frame: pd.DataFrame, higher_is_better: bool) -> go.Figure:
    """Δm (mean ± std over seeds) against the parameter count."""
    data = _escaped(frame, "name")
    figure = px.scatter(
        data,
        x=PARAMETERS,
        y=DELTA_M,
        error_y="std",
        color="role",
        hover_name="name",
        labels={DELTA_M: f"Δm ({'↑' if higher_is_better else '↓'})", PARAMETERS: "parameters"},
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
