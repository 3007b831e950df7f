"""Layout that reads at 800, 1280 and 1920 px (issue 10, "Narrow screens").

Two parts:

* :data:`CSS`, injected once per run by ``app.py`` (:func:`apply`): when the page's main
  column is narrow (a laptop at 800 px with the sidebar open leaves it ~470 px), rows of
  ``st.columns`` wrap instead of squeezing each column until its text is cut off: a column
  is never narrower than ~11 rem, one holding a chart never narrower than ~20 rem. It uses
  a CSS container query on the main block, so it follows the main column's own width
  (sidebar open or closed), not the window's. Metric values, button labels and toggle
  labels wrap rather than end in "…". Projector mode (``ui/projector.py``) adds its own
  block after this one; both only ever widen or wrap, so they combine.
* :func:`chart_frame`: the plotly layout every chart of the app's own pages uses: the legend
  *below* the plot (it never sits on the title or under plotly's toolbar, however many rows
  it needs at a narrow width), the title just above the plot area (below the toolbar; on two
  lines when long), and axes that make room for their labels. It takes a figure spec (dict)
  or a ``go.Figure``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

NARROW_PX = 760  # main column widths up to this wrap their rows of columns

CSS = f"""
<style>
/* narrow screens (ui/layout.py) */
[data-testid="stMainBlockContainer"] {{ container-type: inline-size; container-name: mfmain; }}
@container mfmain (max-width: {NARROW_PX}px) {{
  [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap !important; }}
  [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{ min-width: min(100%, 11rem) !important; }}
  [data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:has([data-testid="stPlotlyChart"]),
  [data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:has([data-testid="stDataFrame"]) {{
    min-width: min(100%, 20rem) !important; }}
  [data-testid="stMetricValue"] {{ font-size: 1.75rem !important; }}
}}
[data-testid="stMetricValue"] > div, [data-testid="stMetricDelta"] > div, [data-testid="stMetricLabel"] p,
[data-testid="stMain"] button p, [data-testid="stMain"] label p, [data-testid="stPageLink"] span {{
  white-space: normal !important; overflow-wrap: break-word; text-overflow: clip !important; }}
[data-testid="stMetricValue"] > div {{ overflow: visible !important; }}
[data-testid="stMain"] button {{ height: auto !important; }}
</style>
"""


def apply(before: str = "") -> None:
    """Inject :data:`CSS`, after the rules ``before`` (projector mode's; ours win ties), as the
    app's one style block (``app.py`` calls it once per run, before the page).

    One block, not one per concern: style-only ``st.html`` blocks go to Streamlit's event
    container, where of two such blocks one was now and then lost (projector text at 14 px
    in some full-suite runs of test_browser_teaching)."""
    st.html(before + CSS)


TITLE_GAP_PX = 8
TITLE_CHARS = 48  # a longer title is set on two lines: one line would run off a ~470 px chart
LINE_PX = 22  # the height a second title line adds


def wrap_title(text: str, chars: int = TITLE_CHARS) -> str:
    """``text`` on two lines (a ``<br>`` at the space nearest its middle) when longer than ``chars``."""
    if len(text) <= chars or "<br" in text or " " not in text:
        return text
    middle = len(text) // 2
    spaces = [i for i, c in enumerate(text) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return text[:cut] + "<br>" + text[cut + 1:]


def chart_frame(fig: Any, *, top: int = 64) -> Any:
    """``fig`` (a spec dict or a ``go.Figure``) with the legend below the plot, the title just
    above the plot area (clear of plotly's toolbar) and self-sizing axis margins. Returns it."""
    legend = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left"}
    if isinstance(fig, dict):
        layout = fig.setdefault("layout", {})
        _frame_dict(layout, legend, top)
        return fig
    if fig.layout.showlegend is not False:
        fig.update_layout(legend=legend)
    gap = TITLE_GAP_PX
    if fig.layout.title.text and wrap_title(fig.layout.title.text) != fig.layout.title.text:
        fig.update_layout(title_text=wrap_title(fig.layout.title.text))
        top += LINE_PX
    if fig.layout.title.text and "<br>" in fig.layout.title.text:
        gap += LINE_PX  # plotly anchors a title's first line: lift it by the second
    if fig.layout.annotations:  # subplot titles sit right above the plot area: the title stays at the top
        fig.update_layout(margin={"t": max(top + 20, int(fig.layout.margin.t or 0))})
    else:
        fig.update_layout(margin={"t": max(top, int(fig.layout.margin.t or 0))})
        if fig.layout.title.text:
            fig.update_layout(title={"yref": "paper", "y": 1, "yanchor": "bottom", "pad": {"b": gap}})
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _frame_dict(layout: dict[str, Any], legend: dict[str, Any], top: int) -> None:
    if layout.get("showlegend") is not False:
        layout["legend"] = {**(layout.get("legend") or {}), **legend}
    title = layout.get("title")
    if isinstance(title, str):
        title = layout["title"] = {"text": title}
    if isinstance(title, dict) and title.get("text") and wrap_title(title["text"]) != title["text"]:
        title["text"] = wrap_title(title["text"])
        top += LINE_PX
    gap = TITLE_GAP_PX + (LINE_PX if isinstance(title, dict) and "<br>" in str(title.get("text", "")) else 0)
    margin = layout.setdefault("margin", {})
    margin["t"] = max(top, int(margin.get("t", 0)))
    if layout.get("annotations"):  # subplot titles sit right above the plot area: the title stays at the top
        margin["t"] = max(top + 20, margin["t"])
        title = None
    if isinstance(title, str):
        title = layout["title"] = {"text": title}
    if isinstance(title, dict) and title.get("text"):
        title.update({"yref": "paper", "y": 1, "yanchor": "bottom", "pad": {"b": gap}})
    for key in list(layout):
        if key.startswith(("xaxis", "yaxis")) and isinstance(layout[key], dict):
            layout[key].setdefault("automargin", True)
    layout.setdefault("xaxis", {}).setdefault("automargin", True)
    layout.setdefault("yaxis", {}).setdefault("automargin", True)
