"""The dashboard's pages, defined once: `app.py` hands them to `st.navigation`, and views link
to them with `st.switch_page` / `st.page_link` by these objects, never by file name."""

from __future__ import annotations

import streamlit as st

SETUP = st.Page("views/setup.py", title="Setup", icon=":material/tune:", default=True)
CONCEPTS = st.Page("views/concepts.py", title="Concept studio", icon=":material/category:")
RUN = st.Page("views/run.py", title="Run audit", icon=":material/play_circle:")
RESULTS = st.Page("views/results.py", title="Results", icon=":material/monitoring:")
DRILLDOWN = st.Page("views/drilldown.py", title="Drill-down", icon=":material/zoom_in:")
HISTORY = st.Page("views/history.py", title="History", icon=":material/history:")

#: Navigation sections in the order an audit goes: prepare, run, read.
SECTIONS: dict[str, list] = {
    "Prepare": [SETUP, CONCEPTS],
    "Audit": [RUN, RESULTS, DRILLDOWN],
    "Archive": [HISTORY],
}
