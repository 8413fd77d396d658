"""Exports of the table on screen: CSV, JSON and a LaTeX (booktabs) table for a paper.

Pure functions from the DataFrame the ranking page shows (filtered, sorted,
its columns chosen) to text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd  # no pandas-stubs in dev deps

from leaderboard.tables import CI, DELTA_M, GPU_MEMORY, PAGE, ROLE, WALL_TIME

# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _defused(value: Any) -> Any:
    """A text cell that a spreadsheet would take for a formula, prefixed with a quote.

    >>> _defused("=HYPERLINK(1)"), _defused("-x"), _defused("ok"), _defused(-1.5)
    ("'=HYPERLINK(1)", "'-x", 'ok', -1.5)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _exported(frame: pd.DataFrame) -> pd.DataFrame:
    # The relative page link means nothing outside the site.
    return frame.drop(columns=[c for c in (PAGE,) if c in frame.columns])


def to_csv(frame: pd.DataFrame) -> str:
    """The table as CSV; text cells that could run as spreadsheet formulas are quoted with '."""
    out = _exported(frame).copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(_defused)
    return str(out.to_csv(index=False))


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


def to_json(frame: pd.DataFrame, meta: Mapping[str, Any]) -> str:
    """`{...meta, "columns": [...], "rows": [{column: value}]}`; blanks are null."""
    out = _exported(frame)
    rows = [
        {str(k): _json_value(v) for k, v in record.items()}
        for record in out.to_dict(orient="records")
    ]
    document = {**meta, "columns": [str(c) for c in out.columns], "rows": rows}
    return json.dumps(document, ensure_ascii=False, indent=2)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))
# Unicode that pdflatex cannot typeset, in the site's own headers.
_LATEX_SYMBOLS = {"Δm": r"$\Delta_m$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$",
                  "–": "--"}  # fmt: skip


def escape_latex(text: str) -> str:
    r"""`text` typeset literally by LaTeX: every special character escaped.

    >>> print(escape_latex(r"a_b & c%#$\{}~^"))
    a\_b \& c\%\#\$\textbackslash{}\{\}\textasciitilde{}\textasciicircum{}
    """
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def latex_text(column: str) -> str:
    r"""Text for LaTeX (a header, a caption): escaped, with the site's arrows, ± and Δm as maths.

    >>> print(latex_text("depth abs_err ↓"))
    depth abs\_err $\downarrow$
    """
    text = escape_latex(column)
    for symbol, latex in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, latex)
    return text


def _number(value: float, column: str, integer: bool) -> str:
    if integer:
        return f"{round(value):,}"
    if column == DELTA_M:
        return f"{value:+.2f}"
    if column == WALL_TIME:
        return f"{value:.1f}"
    if column == GPU_MEMORY:
        return f"{value:.0f}"
    return f"{value:.4f}"


def _is_blank(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def best_values(
    frame: pd.DataFrame, better: Mapping[str, bool], columns: Sequence[str]
) -> dict[str, float]:
    """The best value of each directed column, among the methods (the baselines when no method).

    Baselines are the reference, not competitors: a method's best is bolded,
    as in MTL papers.
    """
    methods = frame[frame[ROLE] == "method"] if ROLE in frame.columns else frame
    pool = methods if len(methods) else frame
    best = {}
    for column in columns:
        if column not in better:
            continue
        values = pd.to_numeric(pool[column], errors="coerce").dropna()
        if len(values):
            best[column] = float(values.max() if better[column] else values.min())
    return best


def to_latex(
    frame: pd.DataFrame, better: Mapping[str, bool], caption: str, label: str = "tab:mtl"
) -> str:
    r"""A booktabs table (\toprule, \midrule, \bottomrule) of the table on screen.

    Text is escaped (`escape_latex`); Δm is shown as `mean $\pm$ CI` when the
    CI column is there (and the CI column is folded into it); the best value of
    each column with a direction (`better`) is bold (`best_values`); a blank
    cell is `--`.  Needs `\usepackage{booktabs}`.
    """
    out = _exported(frame)
    columns = [c for c in out.columns if not (c == CI and DELTA_M in out.columns)]
    best = best_values(out, better, columns)
    numeric = {c for c in columns if pd.api.types.is_numeric_dtype(out[c])}
    integer = {c for c in numeric if pd.api.types.is_integer_dtype(out[c])}
    spec = "".join("r" if c in numeric else "l" for c in columns)
    lines = [
        "% Needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_text(caption)}}}",
        f"\\label{{{escape_latex(label)}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_text(c) for c in columns) + " \\\\",
        "\\midrule",
    ]
    for _, record in out.iterrows():
        cells = []
        for column in columns:
            value = record[column]
            if _is_blank(value):
                cells.append("--")
                continue
            if column in numeric:
                text = _number(float(value), column, column in integer)
                if column in best and float(value) == best[column]:
                    text = f"\\textbf{{{text}}}"
                if column == DELTA_M and CI in out.columns and not _is_blank(record[CI]):
                    text += f" $\\pm$ {float(record[CI]):.2f}"
                cells.append(text)
            else:
                cells.append(escape_latex(str(value)))
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def file_stem(*parts: str) -> str:
    """A safe file name from parts (benchmark, convention, submission name).

    >>> file_stem("synthetic-scenes v1", "../<x>")
    'synthetic-scenes-v1_x'
    """
    cleaned = [re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip(".-") for p in parts]
    return "_".join(c for c in cleaned if c) or "export"


__all__ = ["best_values", "escape_latex", "file_stem", "latex_text", "to_csv", "to_json",
           "to_latex"]  # fmt: skip
