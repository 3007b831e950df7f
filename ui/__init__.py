"""Streamlit-side helpers shared by the pages (state keys, cached loaders, charts, job client).

Dependencies point one way: pages -> ui -> mfcore. Nothing in mfcore imports this.
"""


def _route_through_app() -> None:
    """Make a page opened by URL on a fresh server run under the router (``app.py``).

    Until ``st.navigation`` has run once in the server process, Streamlit treats the
    ``pages/`` folder as an old-style (v1) multipage app: a first request for ``/train``
    runs ``pages/train.py`` alone, with the folder's file names as navigation and no
    session defaults. Every page imports ``ui`` before drawing anything, so the first import
    during such a run switches the process to ``st.navigation`` and reruns; the rerun
    executes ``app.py``, which routes to the same page (a page's hash is its URL path in
    both modes). Once switched, Streamlit never goes back, so this fires at most once (a
    session whose first run began before the switch, at that very moment, gets the old
    navigation until its next rerun). Tested by tests/test_browser.py.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx(suppress_warning=True) is not None:
        import streamlit as st

        PagesManager.uses_pages_directory = False  # what st.navigation itself sets (Streamlit 1.67)
        st.rerun()


_route_through_app()
