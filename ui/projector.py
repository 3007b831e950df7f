"""Projector mode: readable from the back of a classroom on a 1280×720 projector.

On with the sidebar toggle or ``?projector=1`` in the URL (``?projector=0`` turns it off);
kept for the session. It is one CSS block (larger text, wrapping instead of cut-off
metric values and buttons, thicker chart lines, fewer controls: Streamlit's toolbar,
plotly's mode bar and the expanders' secondary panels are hidden) and one plotly
template that pages apply to their figures with :func:`figure`.

``app.py`` calls :func:`apply` once per run, before the page.
"""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st

KEY = "projector_mode"  # session state (the toggle's key)

FONT_PX = 20
LINE_WIDTH = 4
MARKER_SIZE = 10

CSS = f"""
<style>
/* projector mode (ui/projector.py) */
html, body, [data-testid="stAppViewContainer"] {{ font-size: {FONT_PX}px; }}
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li,
[data-testid="stCaptionContainer"], label, button, input, [data-testid="stAlertContainer"] {{
  font-size: {FONT_PX}px !important; line-height: 1.35 !important; }}
h1 {{ font-size: 2.2rem !important; }}
h2, h3 {{ font-size: 1.6rem !important; }}
h1, h2, h3, button p, [data-testid="stMetricValue"] > div, [data-testid="stMetricLabel"] p {{
  white-space: normal !important; overflow-wrap: anywhere !important; text-overflow: clip !important; }}
[data-testid="stMetricValue"] {{ font-size: 1.9rem !important; }}
[data-testid="stMetricValue"] > div {{ overflow: visible !important; }}
button {{ height: auto !important; min-height: 2.6rem; }}
.js-plotly-plot .scatterlayer .js-line {{ stroke-width: {LINE_WIDTH}px !important; }}
.modebar-container, [data-testid="stToolbar"], [data-testid="stDecoration"],
[data-testid="stMainMenu"], [data-testid="stElementToolbar"] {{ display: none !important; }}
.block-container {{ padding-left: 1.5rem !important; padding-right: 1.5rem !important; }}
</style>
"""

TEMPLATE: dict[str, Any] = {
    "layout": {
        "font": {"size": FONT_PX},
        "title": {"font": {"size": FONT_PX + 4}},
        "legend": {"font": {"size": FONT_PX - 2}},
        "xaxis": {"title": {"font": {"size": FONT_PX}}, "tickfont": {"size": FONT_PX - 2}},
        "yaxis": {"title": {"font": {"size": FONT_PX}}, "tickfont": {"size": FONT_PX - 2}},
    },
}


def _from_url() -> bool | None:
    value = st.query_params.get("projector")
    if value is None:
        return None
    return str(value).strip().lower() not in ("0", "false", "off", "no", "")


def apply() -> bool:
    """Read the URL and draw the sidebar toggle; returns whether the mode is on (``app.py``
    then puts :data:`CSS` into the app's one style block, ``ui.layout.apply``)."""
    url = _from_url()
    if url is not None and st.session_state.get(f"{KEY}__url") != url:
        st.session_state[KEY] = url  # a new ?projector= value wins once, then the toggle rules
        st.session_state[f"{KEY}__url"] = url
    st.session_state.setdefault(KEY, False)
    st.sidebar.toggle("Projector mode", key=KEY, persist_state="session", help="Large text and thick lines for a classroom projector "
                      "(also ?projector=1 in the URL).")
    return bool(st.session_state.get(KEY))


def active() -> bool:
    """Whether projector mode is on in this session."""
    try:
        return bool(st.session_state.get(KEY))
    except Exception:  # noqa: BLE001 - outside a Streamlit run
        return False


def style(fig: dict[str, Any]) -> dict[str, Any]:
    """A copy of a figure spec with the projector template: bigger text, thicker lines, bigger markers."""
    out = copy.deepcopy(fig)
    layout = out.setdefault("layout", {})
    for key, value in TEMPLATE["layout"].items():
        current = layout.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged = {**current}
            for k, v in value.items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else (
                    merged.get(k, v) if k == "text" else v)
            layout[key] = merged
        elif current is None:
            layout[key] = copy.deepcopy(value)
    layout["height"] = max(int(layout.get("height", 340)), 420)
    layout.setdefault("margin", {})["t"] = max(int(layout.get("margin", {}).get("t", 40)), 70)
    for trace in out.get("data", []):
        line = trace.get("line")
        if isinstance(line, dict) and line.get("width", 2) != 0:
            line["width"] = max(float(line.get("width", 2)), LINE_WIDTH)
        marker = trace.get("marker")
        if isinstance(marker, dict) and "size" in marker:
            marker["size"] = max(marker["size"], MARKER_SIZE)
    return out


def figure(fig: dict[str, Any]) -> dict[str, Any]:
    """``fig`` styled for the projector when the mode is on, else unchanged."""
    return style(fig) if active() else fig
