"""MF Studio: the router. Run with ``streamlit run app.py``.

This file only configures the page, fills in session-state defaults and lists the pages;
everything else lives in ``pages/`` (drawing) and ``ui/`` (shared helpers).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import health, identity, layout, projector
from ui.state import init_state

ROOT = Path(__file__).resolve().parent

# (file relative to this folder, title, Material icon). Icons come from the Material
# Symbols font that Streamlit bundles, so nothing is fetched from the internet.
WORKFLOW_PAGES = [
    ("pages/data.py", "Data", ":material/table_chart:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/history:"),
    ("pages/sweeps.py", "Sweeps", ":material/stacked_line_chart:"),
]

# ---------------------------------------------------------------- inspection pages
# Add one row per inspection page here; a file that does not exist yet is skipped.
INSPECT_PAGES: list[tuple[str, str, str]] = [
    ("pages/embeddings.py", "Embeddings & biases", ":material/grid_on:"),
    ("pages/user.py", "One user", ":material/person:"),
    ("pages/movie.py", "One movie", ":material/movie:"),
    ("pages/map.py", "2D map", ":material/scatter_plot:"),
    ("pages/new_user.py", "Rate movies yourself", ":material/star:"),
]
# ---------------------------------------------------------------------------------

DEFAULT_PAGE = "pages/data.py"


def _section(rows: list[tuple[str, str, str]]) -> list[st.Page]:
    """``st.Page`` objects for the rows whose file exists."""
    return [
        st.Page(ROOT / path, title=title, icon=icon, default=path == DEFAULT_PAGE)
        for path, title, icon in rows
        if (ROOT / path).is_file()
    ]


# An explicit emoji favicon: otherwise the current page's Material icon becomes the
# favicon, which the browser would fetch from fonts.gstatic.com.
st.set_page_config(page_title="MF Studio", page_icon="🎬", layout="wide")
init_state()
if not health.banner():  # settings or the run store unusable: one box says what and how to fix it
    st.navigation({"Workflow": _section(WORKFLOW_PAGES), "Inspect": _section(INSPECT_PAGES)})  # the menu only
    st.stop()
identity.establish()  # who this is: survives reloads through the URL token (or sign-in)
identity.apply_run_link()  # ?run=<id> opens that run read-only
identity.sidebar()
# one style block: projector mode's rules (?projector=1 or the sidebar toggle) and the narrow-screen ones
layout.apply(before=projector.CSS if projector.apply() else "")

sections = {"Workflow": _section(WORKFLOW_PAGES), "Inspect": _section(INSPECT_PAGES)}
identity.save_prefs()  # choices made by the last run's callbacks
try:
    st.navigation({name: pages for name, pages in sections.items() if pages}).run()
finally:
    identity.save_prefs()  # and those made while drawing this page
