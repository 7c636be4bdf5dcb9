"""History: every audit run in the store with its status, settings and duration; open, export
or delete one."""

from __future__ import annotations

import streamlit as st

from ui.common import download_button, esc, get_store, guard, list_runs, run_label
from ui.demo import demo_offer
from ui.report import report_button
from ui import pages

ss = st.session_state
st.title("History")

runs = None
with guard("reading the run history"):
    runs = list_runs()
if runs is None:
    st.stop()
if runs.empty:
    st.info("No audit has run yet.")
    demo_offer("demo_history", switch=True)
    st.stop()

for key in ("hist_flash",):
    if ss.get(key):
        st.success(esc(ss.pop(key)))

counts = runs["status"].value_counts()
m = st.columns(4)
for k, status in enumerate(["completed", "running", "failed", "cancelled"]):
    m[k].metric(status, int(counts.get(status, 0)))

shown = runs[["run_id", "status", "created", "model", "datasets", "targets", "concepts",
              "duration_s", "error"]].copy()
st.dataframe(shown, hide_index=True, width="stretch", height=min(38 * len(shown) + 40, 420),
             column_config={
                 "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                 "concepts": st.column_config.TextColumn(width="medium"),
                 "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f",
                                                             width="small"),
                 "error": st.column_config.TextColumn(width="small")})

ids = list(runs["run_id"])
labels = {r["run_id"]: f"{r['status']} · {run_label(r)}" for _, r in runs.iterrows()}
default = ids.index(ss["run_id"]) if ss.get("run_id") in ids else 0
run_id = st.selectbox("Run", ids, index=default, format_func=labels.get, key="w_hist_run")
row = runs[runs["run_id"] == run_id].iloc[0]

a1, a2, a3 = st.columns(3, gap="large")
with a1:
    if st.button("Open in Results", type="primary", disabled=row["status"] != "completed",
                 icon=":material/monitoring:"):
        ss["run_id"] = run_id
        st.switch_page(pages.RESULTS)
with a2:
    if row["status"] == "completed":
        with guard("preparing the CSV"):
            from attnxai.audit.report import summary_csv_bytes

            download_button(st, "Export summary CSV", summary_csv_bytes(get_store(), run_id),
                            file_name=f"attnxai-{run_id}.csv", mime="text/csv", key="dl_hist")
        report_button(st, str(get_store().path), run_id, key="dl_hist_report")
    else:
        st.caption(f"A {row['status']} run has no results to export.")
with a3:
    sure = st.checkbox("Yes, delete this run and its results", key=f"hist_sure_{run_id}")
    if st.button("Delete run", disabled=not sure or row["status"] == "running",
                 icon=":material/delete:"):
        with guard("deleting the run"):
            get_store().delete_run(run_id)
            if ss.get("run_id") == run_id:
                ss["run_id"] = None
            ss["hist_flash"] = f"Deleted run {run_id}."
            st.cache_data.clear()
            st.rerun()

if row["status"] in ("failed", "cancelled") and row["error"]:
    st.error(f"This run {row['status']}: {esc(row['error'])}")
with st.expander("Configuration and provenance"):
    with guard("reading the run"):
        st.json(get_store().get_run(run_id).provenance(), expanded=False)
