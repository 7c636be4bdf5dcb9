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
    data_label,
    esc,
    get_adapter,
    guard,
    model_lock,
    store_path,
)
from ui.demo import demo_offer
from ui.jobs import PANEL_BELOW, current_job, fmt_eta, fmt_seconds, start_audit
from ui import pages

ss = st.session_state
# How the select boxes name the library's choices (the choices themselves are the library's):
# short, so a select box shows them whole; the help says more.
TESTS = {"grouped": "grouped (default)", "empirical": "empirical rank",
         "welch": "Welch t-test", "one_sample": "one-sample t-test vs 0.5"}
TEST_HELP = ("**grouped**: random-effects test against the null CAVs (calibrated; the default). "
             "**empirical**: the concept's rank among the null CAVs (calibrated, very "
             "conservative). **welch**: Welch t-test, concept vs random CAVs. **one-sample**: "
             "t-test of the scores vs 0.5, as the reference code does.")
CORRECTIONS = {"hierarchical": "two-level (default)", "bh": "Benjamini–Hochberg",
               "bonferroni": "Bonferroni", "none": "none"}
CORRECTION_HELP = ("**two-level**: each concept is first tested as a whole (Simes), concepts by "
                   "Benjamini–Hochberg, then the layers of the concepts found (Benjamini and "
                   "Bogomolov), so one concept's findings cannot lower another's bar. "
                   "**Benjamini–Hochberg**: one false-discovery-rate correction over every test "
                   "of the run. **Bonferroni**: family-wise, over every test.")
NEGATIVES = {"auto": "auto (pairs, else random)", "random": "random pool",
             "relative": "other concepts", "matched": "counter-examples"}
NEGATIVES_HELP = ("**auto**: a concept's counter-examples when it has matched pairs, else its "
                  "random pool. **random pool**: examples of the concept's random pool. **other "
                  "concepts**: the other concepts under test. **counter-examples**: the "
                  "concept's own counter-examples (matched pairs).")
STATISTICS = {"derivative": "mean derivative (default)", "tcav": "TCAV score",
              "magnitude": "TCAV magnitude"}
STATISTICS_HELP = ("**mean derivative**: the mean directional derivative S(x) over the inputs "
                   "(default). "
                   "**TCAV score**: the share of inputs with S(x) > 0. **TCAV magnitude**: the "
                   "magnitude-weighted score.")
PAIR_ROWS = {"differing": "differing tokens (default)", "all": "every token"}
CAV_KINDS = {"logistic": "logistic (default)", "pattern": "pattern (difference of means)"}
MATCHED_NULLS = {"sign_flip": "sign-flipped pairs (default)", "pool": "the random pool"}
EFFECTS = {"all": "all (default)", "output": "output effect only",
           "layers": "output + layer patching", "none": "none"}
EFFECTS_HELP = ("What the matched pairs' causal effects include. **output**: the mean change of "
                "the target's logit and probability from counterexample to example, with a "
                "paired test. **layers**: also layer-wise activation patching, both ways. "
                "**all**: also CAV interventions for concepts without pairs.")
PAIRED_TESTS = {"sign_flip": "sign-flip permutation (default)", "wilcoxon": "Wilcoxon signed-rank"}
PATCH_TOKENS = {"differing": "differing tokens (default)", "all": "every aligned token"}
POOLING = {None: "the model's own", "cls": "the [CLS] row", "mean": "mean over rows",
           "last": "the last token's row", "patches": "mean over the patches' rows",
           "cls+patches": "[CLS] and the patches' mean", "cls+dist": "[CLS] and distillation"}
#: The settings' widget keys. Streamlit drops a widget's value when another page shows, so the
#: values are also kept under FORM (a plain session key) and put back when this page returns.
FORM = "run_form"
FORM_KEYS = ("w_run_concepts", "w_run_targets", "w_run_layers", "w_run_limit", "w_run_cavs",
             "w_run_random", "w_run_seed", "w_run_weighting", "w_run_test", "w_run_statistic",
             "w_run_null", "w_run_correction", "w_run_alpha", "w_run_min_accuracy",
             "w_run_negatives", "w_run_pair_rows", "w_run_l2", "w_run_holdout", "w_run_pooling",
             "w_run_cav", "w_run_matched_null", "w_run_effects", "w_run_paired_test",
             "w_run_patch_tokens", "w_run_min_effect", "w_run_min_logit_effect")
#: How often the progress panel refreshes while an audit runs (seconds).
REFRESH_S = 2.0

st.title("Run audit")


# -- progress of the session's audit ------------------------------------------------------------
def _progress_panel() -> None:
    job = current_job()
    if job is None:
        return
    if not job.running and ss.get("_run_panel_live"):
        # It ended since the panel last showed it running: redraw the whole page once (the
        # Start button, the sidebar), so nothing of the running panel stays behind.
        ss["_run_panel_live"] = False
        job.announced = True
        st.rerun()
    ss["_run_panel_live"] = job.running
    with st.container(border=True):
        st.markdown(f"**{esc(job.description)}**")
        if job.running:
            frac = float(job.progress.get("fraction", 0.0))
            st.progress(frac, text=f"{frac:.0%} · {esc(job.progress.get('message', ''))}")
            c1, c2, c3 = st.columns([1, 1, 1])
            c1.metric("elapsed", fmt_seconds(job.elapsed()))
            c2.metric("time left", fmt_eta(job.eta()),
                      help="The work still to do at the speed each kind of work has run at so far.")
            with c3:
                if job.cancel.is_set():
                    st.caption("Cancelling… (stops within one batch)")
                else:
                    st.button("Cancel", icon=":material/stop_circle:", key="cancel_audit",
                              on_click=job.request_cancel)
            st.caption("You can use the other pages meanwhile; the sidebar shows the progress.")
        elif job.status == "done":
            st.success(f"Finished in {fmt_seconds(job.elapsed())}: run {job.run_id}.",
                       icon=":material/check_circle:")
            st.page_link(pages.RESULTS, label="Open the results", icon=":material/monitoring:")
        elif job.status == "cancelled":
            latency = job.cancel_latency()
            st.warning("The audit was cancelled" + (f" (it stopped {latency:.1f} s after Cancel)"
                                                     if latency is not None else "")
                       + "; no results were stored. Your settings are kept below.")
        else:
            st.error(f"The audit failed: {esc(job.error)}")


job = current_job()
running = job is not None and job.running
# The panel goes where the user's eyes are: under the Start button when the audit was started
# there (at the foot of a long form), else at the top (the demo offer starts it up there).
panel = st.fragment(run_every=REFRESH_S if running else None)(_progress_panel)
below = bool(ss.get(PANEL_BELOW)) and job is not None
if not below:
    panel()

if not running:
    demo_offer("demo_run", switch=False)

# -- settings -----------------------------------------------------------------------------------
adapter = None
boot = st.empty()
with guard("loading the model"):
    adapter = get_adapter(progress=lambda f, text: boot.progress(f, text=text))
boot.empty()
if adapter is None:
    st.info("Fix the model on Setup first.")
    st.stop()

st.subheader("Settings")
st.caption(f"Model **{esc(adapter.spec)}** on **{esc(data_label())}** — change them on Setup.")
concepts = [i for i in list_concept_sets(modality=adapter.modality, kind="concept") if not i.error]
concept_names = [i.name for i in concepts]
if not concept_names:
    st.warning(f"There are no {adapter.modality} concept sets yet: create one in the Concept studio.")
    st.stop()

demo = DEMO_AUDITS.get(adapter.spec, {})
default_targets = [t for t in demo.get("targets", []) if t in adapter.labels] or adapter.labels[:1]
default_concepts = [c for c in demo.get("concepts", []) if c in concept_names] or concept_names[:1]
choices_of = {"w_run_concepts": concept_names, "w_run_targets": list(adapter.labels),
              "w_run_layers": list(range(adapter.num_layers))}
# Put back what the user set before another page showed (or the model changed): the choices
# that still exist.
for key, value in ss.get(FORM, {}).items():
    if key not in ss:
        ss[key] = value
for key, allowed in choices_of.items():
    if key in ss:
        kept = [v for v in ss[key] if v in allowed]
        if kept or key == "w_run_layers":
            ss[key] = kept
        else:
            del ss[key]


def _multi(where, label: str, values: list, key: str, default: list, **kw):
    """A multiselect showing the session's choice when it has one, else ``default``."""
    if key in ss:
        return where.multiselect(label, values, key=key, **kw)
    return where.multiselect(label, values, default=default, key=key, **kw)


with st.container(border=True):
    chosen = _multi(st, "Concepts", concept_names, "w_run_concepts", default_concepts,
                    help="Concept sets of this modality: yours and the shipped ones (Concept "
                         "studio lists them).")
    c1, c2 = st.columns(2, gap="large")
    targets = _multi(c1, "Target classes", list(adapter.labels), "w_run_targets", default_targets,
                     help="Inputs of each class are picked by their label when the data's labels "
                          "name it, else by the model's prediction.")
    layers = _multi(c2, "Layers (empty = all)", list(range(adapter.num_layers)), "w_run_layers",
                    [])
    n = st.columns(4)
    num_cavs = options.number(n[0], "num_cavs", "CAVs per concept", most=500, key="w_run_cavs",
                              help="CAVs trained per concept and layer.")
    num_random = options.number(n[1], "num_random", "Random concepts", most=500,
                                key="w_run_random", help="Random concepts of the baseline.")
    limit = options.number(n[2], "limit", "Inputs per target", most=100_000, key="w_run_limit",
                           help="At most this many inputs per target class (0 = all).")
    seed = options.number(n[3], "seed", "Seed", key="w_run_seed")
    with st.expander("Statistics and negatives"):
        e = st.columns(3)
        test = options.select(e[0], "test", "Test", TESTS, key="w_run_test", help=TEST_HELP)
        statistic = options.select(e[1], "statistic", "Statistic tested", STATISTICS,
                                   key="w_run_statistic", help=STATISTICS_HELP)
        correction = options.select(e[2], "correction", "Multiple-testing correction",
                                    CORRECTIONS, key="w_run_correction",
                                    help=CORRECTION_HELP)
        f = st.columns(3)
        num_null = options.number(f[0], "num_null", "Random CAVs in the null", most=5000,
                                  key="w_run_null",
                                  help="The grouped and empirical tests compare the concept with "
                                       "these random-vs-random CAVs; the empirical test's "
                                       "p-values cannot go below 1/(n+1).")
        alpha = options.number(f[1], "alpha", "α", least=0.001, most=0.5, step=0.01,
                               format="%.3f", key="w_run_alpha")
        min_accuracy = options.number(f[2], "min_accuracy", "Least CAV accuracy", step=0.05,
                                      format="%.2f", key="w_run_min_accuracy",
                                      help="A layer whose CAVs are less accurate is unreliable.")
        g = st.columns(3)
        negatives = options.select(g[0], "negatives", "Negatives", NEGATIVES,
                                   key="w_run_negatives", help=NEGATIVES_HELP)
        pair_rows = options.select(g[1], "pair_rows", "Matched pairs train on", PAIR_ROWS,
                                   key="w_run_pair_rows",
                                   help="The tokens where a pair differs (default), or every "
                                        "token.")
        weighting = options.select(g[2], "weighting", "Token weighting", key="w_run_weighting",
                                   help="attention: the paper's attention-weighted TCAV; plain: "
                                        "unweighted token-level TCAV; both: compare them.")
    with st.expander("CAV training"):
        h = st.columns(3)
        l2 = options.number(h[0], "l2", "L2 penalty", least=1e-6, most=100.0, step=0.01,
                            format="%.4f", key="w_run_l2")
        holdout = options.number(h[1], "holdout", "Held-out share", least=0.05, most=0.95,
                                 step=0.05, format="%.2f", key="w_run_holdout",
                                 help="The share of each CAV's examples held out to measure its "
                                      "accuracy.")
        pooling = options.select(h[2], "pooling", "Query row", POOLING, key="w_run_pooling",
                                 help="The attention row that weights the tokens.")
        k = st.columns(3)
        cav = options.select(k[0], "cav", "CAV kind", CAV_KINDS, key="w_run_cav",
                             help="**logistic**: a linear classifier of examples vs negatives. "
                                  "**pattern**: the difference of their means (Pahde et al.); "
                                  "the README compares the two.")
        matched_null = options.select(k[1], "matched_null", "Null of matched pairs",
                                      MATCHED_NULLS, key="w_run_matched_null",
                                      help="A paired concept is tested against CAVs of its own "
                                           "pairs with random signs (default), or against the "
                                           "random pool's CAVs.")
    with st.expander("Causal effects (matched pairs)"):
        m = st.columns(3)
        effects_level = options.select(m[0], "level", "Effects", EFFECTS, key="w_run_effects",
                                       help=EFFECTS_HELP)
        paired_test = options.select(m[1], "paired_test", "Paired test", PAIRED_TESTS,
                                     key="w_run_paired_test",
                                     help="The test of the pairs' differences against zero.")
        patch_tokens = options.select(m[2], "patch_tokens", "Patched tokens", PATCH_TOKENS,
                                      key="w_run_patch_tokens",
                                      help="Layer patching replaces the tokens where a pair "
                                           "differs (default), or every aligned token.")
        d = st.columns(3)
        min_effect = options.number(d[0], "min_effect", "Minimum relevant Δ probability",
                                    step=0.01, format="%.3f", key="w_run_min_effect",
                                    help="An effect counts as reliance only when it is shown to "
                                         "exceed this change of the class probability, and as "
                                         "negligible when shown to stay below it; 0 tests "
                                         "only whether it is non-zero.")
        min_logit_effect = options.number(d[1], "min_logit_effect", "Minimum relevant Δ logit",
                                          most=100.0, step=0.05, format="%.3f",
                                          key="w_run_min_logit_effect",
                                          help="The same for effects measured on the logit: "
                                               "output effects on the logit, patching and CAV "
                                               "interventions.")
    submitted = st.button("Start audit", type="primary", disabled=running,
                          icon=":material/play_arrow:")
ss[FORM] = {k: ss[k] for k in FORM_KEYS if k in ss}

if below:
    panel()
if running:
    st.caption("One audit at a time: wait for the running one, or cancel it.")
elif submitted:
    with guard("starting the audit"):
        from attnxai.audit.config import AuditConfig
        from attnxai.effects.config import EffectsConfig
        from attnxai.tcav.config import TCAVConfig

        if not targets or not chosen:
            raise UserInputError("Pick at least one target class and one concept.")

        tcav = TCAVConfig(
            layers=tuple(sorted(layers)) or None, num_cavs=int(num_cavs),
            num_random=int(num_random), num_null=int(num_null), weighting=weighting, test=test,
            statistic=statistic, correction=correction, alpha=float(alpha),
            negatives=negatives, pair_rows=pair_rows, min_accuracy=float(min_accuracy),
            l2=float(l2), holdout=float(holdout), pooling=pooling, seed=int(seed), cav=cav,
            matched_null=matched_null)
        effects = EffectsConfig(level=effects_level, paired_test=paired_test,
                                patch_tokens=patch_tokens, min_effect=float(min_effect),
                                min_logit_effect=float(min_logit_effect))
        config = AuditConfig(  # concept_dir None: your sets, then the shipped ones
            model=adapter.spec, datasets=(ss["data_ref"],), targets=tuple(targets),
            concepts=tuple(chosen), tcav=tcav, effects=effects, limit=int(limit),
            labels=ss.get("labels") if adapter.takes_label_descriptions else None)
        start_audit(config, f"{', '.join(chosen)} → {', '.join(targets)} on "
                            f"{adapter.spec} ({'demo data' if ss['data_ref'] == DEMO_REF else data_label()})",
                    store_path(), adapter=adapter, lock=model_lock())
        ss[PANEL_BELOW] = True
        st.rerun()
