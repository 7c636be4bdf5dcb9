"""attnxai dashboard: a thin Streamlit UI over the attnxai library.

`streamlit run dashboard/app.py` (or `make run`). Six pages: Setup (model and data), Concept
studio, Run audit, Results, Drill-down, History. Every number on them comes from attnxai.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `ui` and `views` live beside this file
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402

from ui.common import data_label, esc, init_state  # noqa: E402
from ui.jobs import current_job, fmt_seconds  # noqa: E402

st.set_page_config(page_title="attnxai — concept audits", page_icon=":mag:", layout="wide")
init_state()

PAGES = [
    st.Page("views/setup.py", title="Setup", icon=":material/tune:", default=True),
    st.Page("views/concepts.py", title="Concept studio", icon=":material/category:"),
    st.Page("views/run.py", title="Run audit", icon=":material/play_circle:"),
    st.Page("views/results.py", title="Results", icon=":material/monitoring:"),
    st.Page("views/drilldown.py", title="Drill-down", icon=":material/zoom_in:"),
    st.Page("views/history.py", title="History", icon=":material/history:"),
]
page = st.navigation(PAGES)


def _job_status() -> None:
    job = current_job()
    if job is None:
        return
    if job.running:
        st.progress(job.progress.get("fraction", 0.0),
                    text=f"Audit running · ETA {fmt_seconds(job.eta())}")
        st.caption(job.progress.get("message", ""))
    elif not job.announced:
        # The run just ended: refresh the whole page once so every view sees it.
        job.announced = True
        st.rerun()
    elif job.status == "done":
        st.success("Last audit finished.", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning("Last audit was cancelled; nothing was stored.")
    else:
        st.error("Last audit failed; see Run audit.")


with st.sidebar:
    st.markdown("**attnxai** · concept audits of transformers")
    st.caption(f"Model: {esc(st.session_state['spec'])}  \nData: {esc(data_label())}")
    job = current_job()
    st.fragment(run_every=1.0 if job is not None and job.running else None)(_job_status)()

page.run()
