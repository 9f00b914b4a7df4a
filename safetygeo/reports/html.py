"""A self-contained HTML report: headings, escaped text and tables, interactive plotly figures.

Everything user-supplied (prompts, completions, model ids, notes) is HTML-escaped; the plotly
JavaScript is embedded once, so the file opens offline; the file is written atomically.

Example:
    >>> import pandas as pd
    >>> r = HtmlReport("demo <1>")
    >>> r.heading("Numbers")
    >>> r.table(pd.DataFrame({"prompt": ["<script>x</script>"], "score": [0.5]}))
    >>> html = r.render(include_plotlyjs=False)
    >>> "&lt;script&gt;" in html and "<script>x" not in html, "demo &lt;1&gt;" in html
    (True, True)
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from safetygeo._io import atomic_write_text

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #333; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: .85rem; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { background: #fff8e1; border-left: 4px solid #f0ad4e; padding: .4rem .8rem; }
.kv td:first-child { font-weight: 600; }
caption { caption-side: bottom; font-size: .8rem; color: #666; text-align: left; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .6rem; font-size: .8rem;
      overflow-x: auto; }
"""


class HtmlReport:
    """Collects report blocks in order; :meth:`save` writes one HTML file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._blocks: list[str] = []
        self._has_figure = False

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (``level`` 2–4)."""
        level = min(max(level, 2), 4)
        self._blocks.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, *, note: bool = False) -> None:
        """A paragraph of plain text (escaped); ``note=True`` highlights it."""
        cls = ' class="note"' if note else ""
        self._blocks.append(f"<p{cls}>{html.escape(text)}</p>")

    def code(self, text: str) -> None:
        """A preformatted block (escaped), e.g. a protocol file."""
        self._blocks.append(f"<pre>{html.escape(text)}</pre>")

    def key_values(self, items: Mapping[str, Any]) -> None:
        """A two-column table of facts."""
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                       for k, v in items.items())
        self._blocks.append(f'<table class="kv">{rows}</table>')

    def table(self, frame: pd.DataFrame, *, caption: str | None = None, max_rows: int = 200,
              digits: int = 3) -> None:
        """A DataFrame as an escaped HTML table (first ``max_rows`` rows)."""
        shown = frame.head(max_rows).copy()
        for col in shown.columns:
            if pd.api.types.is_float_dtype(shown[col]):
                shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
            else:  # missing values read as blanks, not NaN / <NA> / None
                shown[col] = shown[col].astype(object).where(shown[col].notna(), "")
        body = shown.to_html(index=False, escape=True, border=0)
        if caption or len(frame) > max_rows:
            extra = f" (first {max_rows} of {len(frame)} rows)" if len(frame) > max_rows else ""
            body = body.replace("</table>",
                                f"<caption>{html.escape((caption or '') + extra)}</caption></table>")
        self._blocks.append(body)

    def figure(self, fig: Any, *, caption: str | None = None) -> None:
        """An interactive plotly figure."""
        self._has_figure = True
        div = fig.to_html(full_html=False, include_plotlyjs=False)
        cap = f"<p><small>{html.escape(caption)}</small></p>" if caption else ""
        self._blocks.append(f"<div>{div}{cap}</div>")

    def render(self, *, include_plotlyjs: bool = True) -> str:
        """The whole document as a string."""
        head = ""
        if include_plotlyjs and self._has_figure:
            from plotly.offline import get_plotlyjs

            head = f'<script type="text/javascript">{get_plotlyjs()}</script>'
        title = html.escape(self.title)
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}'
                f"</title><style>{_STYLE}</style>{head}</head><body><h1>{title}</h1>"
                + "\n".join(self._blocks) + "</body></html>")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, self.render())
        return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
