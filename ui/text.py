"""User-supplied strings shown as text, never as markup (issue 11).

Titles, genres and labels from an uploaded CSV, run labels, owner names and file names
can hold Markdown (``![x](http://host/beacon.png)`` makes every browser that draws it
fetch the URL) or HTML. Everything that draws such a string goes through one of these:

- :func:`md` inside ``st.markdown``/``caption``/``info``/``warning``/``error``, widget
  labels, expander and tab titles: every Markdown-significant character backslash-escaped,
  URLs (``http://``, ``https://``, ``www.``) in code spans so that GitHub-flavoured
  Markdown does not autolink them, and line breaks flattened, so the literal text is shown;
- :func:`html` inside plotly titles, axis and category labels, legend names and hover
  text (plotly renders a subset of HTML there): ``html.escape``d.

Tables (``st.dataframe``) and select/multiselect options already show plain text.
"""

from __future__ import annotations

import html as _html
import re

__all__ = ["md", "html", "short"]

# CommonMark's escapable ASCII punctuation; Streamlit's directives (:red[..], :material/..:)
# and LaTeX ($) are covered by [ ] : $.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&^=\"'@%/])")


def _flat(value: object) -> str:
    return " ".join(str(value).split())


# What GitHub-flavoured Markdown turns into a link even when every character is escaped: its
# autolink transform runs on the parsed text (after the escapes are gone), so URLs and www.
# names are put in code spans, which it leaves alone (and which show the text unchanged).
_AUTOLINK = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)


def _code(text: str) -> str:
    """``text`` as a Markdown code span (its literal text, never a link)."""
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md(value: object) -> str:
    """``value`` as Markdown that renders as its literal text (one line): Markdown characters
    backslash-escaped, URLs in code spans (no autolink)."""
    text = _flat(value)
    out, pos = [], 0
    for m in _AUTOLINK.finditer(text):
        out.append(_MD_SPECIAL.sub(r"\\\1", text[pos:m.start()]))
        out.append(_code(m.group(0)))
        pos = m.end()
    out.append(_MD_SPECIAL.sub(r"\\\1", text[pos:]))
    return "".join(out)


def html(value: object) -> str:
    """``value`` as plotly text that renders literally (HTML-escaped, one line)."""
    return _html.escape(_flat(value), quote=True)


def short(value: object, n: int) -> str:
    """``value`` cut to ``n`` characters (an ellipsis marks the cut), then HTML-escaped for plotly."""
    text = _flat(value)
    return html(text if len(text) <= n else text[: n - 1] + "…")
