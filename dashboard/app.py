"""attnxai dashboard: a thin Streamlit UI over the attnxai library.

`streamlit run dashboard/app.py` (or `make run`). Six pages: Setup (model and data), Concept
studio, Run audit, Results, Drill-down, History. Every number on them comes from attnxai.
"""

from __future__ import annotations

import sys

import streamlit as st

st.set_page_config(page_title="attnxai — concept audits", page_icon=":mag:", layout="wide")
# The first page of a fresh server imports PyTorch and the libraries (seconds on a slow
# machine): say so at once rather than show a blank page.
_boot = None
if "ui.common" not in sys.modules:
    _boot = st.empty()
    _boot.progress(0.0, text="Starting attnxai: loading PyTorch and the libraries (once per "
                             "server start) …")

# `streamlit run` puts this file's folder on sys.path, so `ui` and `views` import as packages.
from ui.common import check_server_settings, data_label, esc, init_state  # noqa: E402
from ui.jobs import current_job, fmt_eta, open_finished_run  # noqa: E402
from ui.pages import RUN, SECTIONS  # noqa: E402

if _boot is not None:
    _boot.empty()
init_state()
check_server_settings()

page = st.navigation(SECTIONS)
open_finished_run()  # before the page runs, so Results opens the run that just finished


def _job_status() -> None:
    job = current_job()
    if job is None:
        return
    if job.running:
        st.progress(job.progress.get("fraction", 0.0),
                    text=f"Audit running · time left: {fmt_eta(job.eta())}")
        st.caption(esc(job.progress.get("message", "")))
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
    # Every 2 s: often enough to follow, rare enough not to slow the audit (see the README).
    # The Run page shows the progress in its own panel: one refreshing panel is enough there.
    if job is not None and job.running and page.url_path == RUN.url_path:
        st.caption("An audit is running: its progress is on this page.")
    else:
        st.fragment(run_every=2.0 if job is not None and job.running else None)(_job_status)()

page.run()
