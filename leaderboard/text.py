"""Text for the site: escaping submitter strings, formatting numbers and headers.

Pure functions, no Streamlit: everything here is unit-tested.
"""

from __future__ import annotations

import html
import math
import re

from db.delta_m import PER_METRIC, PER_TASK

# Sidebar labels of the two Δm conventions (db.delta_m.CONVENTIONS has the long help text).
CONVENTION_LABELS = {
    PER_TASK: "per task (LibMTL), higher is better",
    PER_METRIC: "per metric drop (CAGrad/Nash-MTL), lower is better",
}
HIGHER_IS_BETTER = {PER_TASK: True, PER_METRIC: False}

# Every ASCII character that can start or end markdown syntax in Streamlit's renderer
# (CommonMark + GFM tables/strikethrough + `$` maths + `:emoji:` / `:color[...]` directives).
# `<`, `>` and `&` are left to html.escape so that no tag survives even as `\<`.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-=.!|~:$])")


def escape_markdown(text: str) -> str:
    r"""`text` made inert for `st.markdown`: markdown punctuation backslash-escaped, HTML escaped.

    Use on every string that came from a submitter (name, description, authors).

    >>> escape_markdown("<b>*x*</b> [a](b)")
    '&lt;b&gt;\\*x\\*&lt;/b&gt; \\[a\\]\\(b\\)'
    """
    return html.escape(_MARKDOWN_PUNCTUATION.sub(r"\\\1", text), quote=False)


def escape_plotly(text: str) -> str:
    """`text` for a Plotly label, which renders a subset of HTML (`<b>`, `<br>`, `<a href>`).

    Plotly decodes `&lt;`, `&gt;` and `&amp;` back to characters when it draws text.

    >>> escape_plotly("<a href='x'>me</a> & co")
    "&lt;a href='x'&gt;me&lt;/a&gt; &amp; co"
    """
    return html.escape(text, quote=False)


def arrow(higher_is_better: bool) -> str:
    """↑ when higher is better, ↓ when lower is better."""
    return "↑" if higher_is_better else "↓"


def metric_header(task: str, metric: str, higher_is_better: bool) -> str:
    """Column header of a metric, with its direction.

    >>> metric_header("depth", "abs_err", False)
    'depth abs_err ↓'
    """
    return f"{task} {metric} {arrow(higher_is_better)}"


def _rounded(value: float, digits: int) -> float:
    # `+ 0.0` turns -0.0 into 0.0, so a baseline's Δm of -4e-15 prints as +0.00, not -0.00.
    return round(value, digits) + 0.0


def format_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """Δm over seeds as 'mean ± std' (signed mean); the mean alone for one seed; '' for none.

    >>> format_mean_std(30.35027, 6.45999)
    '+30.35 ± 6.46'
    >>> format_mean_std(-4.1e-15, None)
    '+0.00'
    """
    if mean is None or not math.isfinite(mean):
        return ""
    text = f"{_rounded(mean, digits):+.{digits}f}"
    if std is not None and math.isfinite(std):
        text += f" ± {_rounded(std, digits):.{digits}f}"
    return text


def seeds_text(seeds: int, pending_jobs: int) -> str:
    """Seeds done, with the queued or running jobs when there are any.

    >>> seeds_text(3, 0), seeds_text(1, 2)
    ('3', '1 (+2 pending)')
    """
    return f"{seeds} (+{pending_jobs} pending)" if pending_jobs > 0 else str(seeds)
