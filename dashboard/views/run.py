"""Run audit: choose targets, concepts, layers and the statistics, then run in the background
with a progress bar, an ETA and Cancel. Other pages stay usable while it runs."""

from __future__ import annotations

import streamlit as st

from attnxai.io.concepts import list_concept_sets
from attnxai.errors import UserInputError
from ui import options
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
# How the select boxes name the library's choices (the choices themselves are the library's).
TESTS = {"grouped": "random-effects test against the null CAVs (calibrated; default)",
         "empirical": "rank among the null CAVs (calibrated, very conservative)",
         "welch": "Welch t-test, concept vs random CAVs",
         "one_sample": "one-sample t-test vs 0.5 (reference code)"}
CORRECTIONS = {"bh": "Benjamini–Hochberg", "bonferroni": "Bonferroni", "none": "none"}
NEGATIVES = {"auto": "auto: counter-examples when paired, else the random pool",
             "random": "random pool", "relative": "the other concepts under test",
             "matched": "counter-examples (matched pairs)"}
STATISTICS = {"derivative": "mean directional derivative (default)",
              "tcav": "TCAV score (share of inputs with S(x) > 0)",
              "magnitude": "TCAV magnitude score"}
PAIR_ROWS = {"differing": "the tokens where a pair differs (default)", "all": "every token"}
POOLING = {None: "the model's own", "cls": "the [CLS] row", "mean": "the mean over query rows"}

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
            st.error(f"The audit failed: {esc(job.error)}")


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
        limit = options.number(st, "limit", "At most this many inputs per target (0 = all)",
                               most=100_000, key="w_run_limit")
    with c2:
        a, b = st.columns(2)
        num_cavs = options.number(a, "num_cavs", "CAVs per concept and layer", most=500,
                                  key="w_run_cavs")
        num_random = options.number(b, "num_random", "Random concepts (baseline)", most=500,
                                    key="w_run_random")
        weighting = options.select(a, "weighting", "Token weighting", key="w_run_weighting",
                                   help="attention: the paper's attention-weighted TCAV; plain: "
                                        "unweighted token-level TCAV; both: compare them.")
        seed = options.number(b, "seed", "Seed", key="w_run_seed")
        with st.expander("Statistics and negatives"):
            test = options.select(st, "test", "Test", TESTS, key="w_run_test")
            statistic = options.select(st, "statistic", "Statistic tested", STATISTICS,
                                       key="w_run_statistic")
            num_null = options.number(st, "num_null", "Random CAVs in the null", most=5000,
                                      key="w_run_null",
                                      help="The grouped and empirical tests compare the concept "
                                           "with these random-vs-random CAVs; the empirical "
                                           "test's p-values cannot go below 1/(n+1).")
            correction = options.select(st, "correction", "Multiple-testing correction",
                                        CORRECTIONS, key="w_run_correction")
            alpha = options.number(st, "alpha", "α", least=0.001, most=0.5, step=0.01,
                                   format="%.3f", key="w_run_alpha")
            min_accuracy = options.number(st, "min_accuracy", "Least CAV accuracy of a reliable "
                                          "layer", step=0.05, format="%.2f",
                                          key="w_run_min_accuracy")
            negatives = options.select(st, "negatives", "Negatives", NEGATIVES,
                                       key="w_run_negatives")
            pair_rows = options.select(st, "pair_rows", "Matched pairs train on", PAIR_ROWS,
                                       key="w_run_pair_rows")
        with st.expander("CAV training"):
            l2 = options.number(st, "l2", "L2 penalty", least=1e-6, most=100.0, step=0.01,
                                format="%.4f", key="w_run_l2")
            holdout = options.number(st, "holdout", "Held-out share of each CAV's examples",
                                     least=0.05, most=0.95, step=0.05, format="%.2f",
                                     key="w_run_holdout")
            pooling = options.select(st, "pooling", "Query row that weights the tokens",
                                     POOLING, key="w_run_pooling")
    submitted = st.form_submit_button("Start audit", type="primary", disabled=running,
                                      icon=":material/play_arrow:")

if running:
    st.caption("One audit at a time: wait for the running one, or cancel it.")
elif submitted:
    with guard("starting the audit"):
        from attnxai.audit.config import AuditConfig
        from attnxai.tcav.config import TCAVConfig

        if not targets or not chosen:
            raise UserInputError("Pick at least one target class and one concept.")

        tcav = TCAVConfig(
            layers=tuple(sorted(layers)) or None, num_cavs=int(num_cavs),
            num_random=int(num_random), num_null=int(num_null), weighting=weighting, test=test,
            statistic=statistic, correction=correction, alpha=float(alpha),
            negatives=negatives, pair_rows=pair_rows, min_accuracy=float(min_accuracy),
            l2=float(l2), holdout=float(holdout), pooling=pooling, seed=int(seed))
        config = AuditConfig(
            model=adapter.spec, datasets=(ss["data_ref"],), targets=tuple(targets),
            concepts=tuple(chosen), tcav=tcav, limit=int(limit), concept_dir=str(concept_root()),
            labels=ss.get("labels") if adapter.takes_label_descriptions else None)
        start_audit(config, f"{', '.join(chosen)} → {', '.join(targets)} on "
                            f"{adapter.spec} ({'demo data' if ss['data_ref'] == DEMO_REF else data_label()})",
                    store_path())
        st.rerun()
