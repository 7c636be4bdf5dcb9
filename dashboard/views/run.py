"""Run audit: choose targets, concepts, layers and the statistics, then run in the background
with a progress bar, an ETA and Cancel. Other pages stay usable while it runs."""

from __future__ import annotations

import streamlit as st

from attnxai.io.concepts import list_concept_sets
from attnxai.errors import UserInputError
from attnxai.tcav.scores import WEIGHTINGS
from ui.common import (
    DEMO_AUDITS,
    DEMO_REF,
    concept_root,
    data_label,
    esc,
    get_adapter,
    guard,
    store_path,
)
from ui.demo import demo_offer
from ui.jobs import current_job, fmt_seconds, start_audit
from ui import pages

ss = st.session_state
TESTS = {"grouped": "random-effects test against the null CAVs (calibrated; default)",
         "empirical": "rank among the null CAVs (calibrated, very conservative)",
         "welch": "Welch t-test, concept vs random CAVs",
         "one_sample": "one-sample t-test vs 0.5 (reference code)"}
CORRECTIONS = {"bh": "Benjamini–Hochberg", "bonferroni": "Bonferroni", "none": "none"}
NEGATIVES = {"auto": "auto: counter-examples when paired, else the random pool",
             "random": "random pool", "relative": "the other concepts under test",
             "matched": "counter-examples (matched pairs)"}

st.title("Run audit")


# -- progress of the session's audit ------------------------------------------------------------
def _progress_panel() -> None:
    job = current_job()
    if job is None:
        return
    with st.container(border=True):
        st.markdown(f"**{esc(job.description)}**")
        if job.running:
            frac = float(job.progress.get("fraction", 0.0))
            st.progress(frac, text=f"{frac:.0%} · {esc(job.progress.get('message', ''))}")
            c1, c2, c3 = st.columns([1, 1, 1])
            c1.metric("elapsed", fmt_seconds(job.elapsed()))
            c2.metric("time left (estimate)", fmt_seconds(job.eta()))
            with c3:
                if job.cancel.is_set():
                    st.caption("Cancelling… (stops within one batch)")
                elif st.button("Cancel", icon=":material/stop_circle:", key="cancel_audit"):
                    job.cancel.set()
                    st.rerun()
            st.caption("You can use the other pages meanwhile; the sidebar shows the progress.")
        elif job.status == "done":
            st.success(f"Finished in {fmt_seconds(job.elapsed())}: run {job.run_id}.",
                       icon=":material/check_circle:")
            ss["run_id"] = job.run_id
            st.page_link(pages.RESULTS, label="Open the results", icon=":material/monitoring:")
        elif job.status == "cancelled":
            st.warning("The audit was cancelled; no results were stored.")
        else:
            st.error(f"The audit failed: {job.error}")


job = current_job()
running = job is not None and job.running
st.fragment(run_every=1.0 if running else None)(_progress_panel)()

if not running:
    demo_offer("demo_run", switch=False)

# -- settings -----------------------------------------------------------------------------------
adapter = None
with guard("loading the model"):
    adapter = get_adapter()
if adapter is None:
    st.info("Fix the model on Setup first.")
    st.stop()

st.subheader("Settings")
st.caption(f"Model **{esc(adapter.spec)}** on **{esc(data_label())}** — change them on Setup.")
concepts = [i for i in list_concept_sets(concept_root(), modality=adapter.modality, kind="concept")
            if not i.error]
concept_names = [i.name for i in concepts]
if not concept_names:
    st.warning(f"There are no {adapter.modality} concept sets yet: create one in the Concept studio.")
    st.stop()

demo = DEMO_AUDITS.get(adapter.spec, {})
default_targets = [t for t in demo.get("targets", []) if t in adapter.labels] or adapter.labels[:1]
default_concepts = [c for c in demo.get("concepts", []) if c in concept_names] or concept_names[:1]

with st.form("audit_form", border=True):
    c1, c2 = st.columns(2, gap="large")
    with c1:
        targets = st.multiselect("Target classes", adapter.labels, default=default_targets,
                                 key="w_run_targets",
                                 help="Inputs of each class are picked by their label when the "
                                      "data's labels name it, else by the model's prediction.")
        chosen = st.multiselect("Concepts", concept_names, default=default_concepts,
                                key="w_run_concepts")
        layers = st.multiselect("Layers (empty = all)", list(range(adapter.num_layers)),
                                key="w_run_layers")
        limit = st.number_input("At most this many inputs per target (0 = all)", 0, 100_000, 0,
                                key="w_run_limit")
    with c2:
        a, b = st.columns(2)
        num_cavs = a.number_input("CAVs per concept and layer", 2, 500, 20, key="w_run_cavs")
        num_random = b.number_input("Random concepts (baseline)", 2, 500, 10, key="w_run_random")
        weighting = a.selectbox("Token weighting", ["both", *WEIGHTINGS], key="w_run_weighting",
                                help="attention: the paper's attention-weighted TCAV; plain: "
                                     "unweighted token-level TCAV; both: compare them.")
        seed = b.number_input("Seed", 0, 2**31 - 1, 0, key="w_run_seed")
        with st.expander("Statistics and negatives"):
            test = st.selectbox("Test", list(TESTS), format_func=TESTS.get, key="w_run_test")
            num_null = st.number_input("Random CAVs in the null", 20, 5000, 200,
                                       key="w_run_null",
                                       help="The grouped and empirical tests compare the concept "
                                            "with these random-vs-random CAVs; the empirical "
                                            "test's p-values cannot go below 1/(n+1).")
            correction = st.selectbox("Multiple-testing correction", list(CORRECTIONS),
                                      format_func=CORRECTIONS.get, key="w_run_correction")
            alpha = st.number_input("α", 0.001, 0.5, 0.05, step=0.01, format="%.3f",
                                    key="w_run_alpha")
            negatives = st.selectbox("Negatives", list(NEGATIVES), format_func=NEGATIVES.get,
                                     key="w_run_negatives")
    submitted = st.form_submit_button("Start audit", type="primary", disabled=running,
                                      icon=":material/play_arrow:")

if running:
    st.caption("One audit at a time: wait for the running one, or cancel it.")
elif submitted:
    with guard("starting the audit"):
        from attnxai.audit.runner import AuditConfig

        if not targets or not chosen:
            raise UserInputError("Pick at least one target class and one concept.")

        config = AuditConfig(
            model=adapter.spec, datasets=[ss["data_ref"]], targets=list(targets),
            concepts=list(chosen), layers=sorted(layers) or None, num_cavs=int(num_cavs),
            num_random=int(num_random), num_null=int(num_null), weighting=weighting,
            test=test, correction=correction, alpha=float(alpha), negatives=negatives,
            seed=int(seed), limit=int(limit), concept_dir=str(concept_root()),
            labels=ss.get("labels") if adapter.spec == "builtin:minilm-zeroshot" else None)
        start_audit(config, f"{', '.join(chosen)} → {', '.join(targets)} on "
                            f"{adapter.spec} ({'demo data' if ss['data_ref'] == DEMO_REF else data_label()})",
                    store_path())
        st.rerun()
