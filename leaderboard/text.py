"""Text for the site: escaping submitter strings, formatting numbers and headers.

Pure functions, no Streamlit: everything here is unit-tested.
"""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime

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


def first_line(text: str, limit: int = 200) -> str:
    r"""The first non-blank line of `text`, cut to `limit` characters (an error's summary).

    >>> first_line("\n  RuntimeError: boom\nTraceback ...")
    'RuntimeError: boom'
    """
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def last_line(text: str, limit: int = 200) -> str:
    r"""The last non-blank line of `text`, cut to `limit` characters: what a visitor sees of
    a job's error.  A traceback ends with the exception; its frames name files on the
    workers, which stay in the database for the operator.

    >>> last_line('ValueError: bad\nTraceback (most recent call last):\n  File "/srv/x.py",'
    ...           ' line 1, in f\nValueError: bad\n\n')
    'ValueError: bad'
    """
    line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def format_time(value: datetime | None) -> str:
    """A stored time as 'YYYY-MM-DD HH:MM:SS UTC' (the database stores UTC; SQLite drops the zone).

    >>> format_time(datetime(2026, 1, 2, 3, 4, 5, 678)), format_time(None)
    ('2026-01-02 03:04:05 UTC', '')
    """
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")
