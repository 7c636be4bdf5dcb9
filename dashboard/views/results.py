"""Results: the layer-wise TCAV charts of a stored run, its summary table, CSV export and HTML
report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from attnxai.audit.charts import (accuracy_chart, effect_chart, heatmap, layer_chart,
                                  significance_caption, weighting_chart)
from attnxai.audit.config import DEMO_TCAV
from attnxai.audit.verdicts import combined_verdict, with_relevance
from attnxai.schema import PAIRS
from ui.common import completed_runs, download_button, esc, get_store, guard, run_picker
from ui.demo import demo_offer, is_demo
from ui.jobs import current_job
from ui.report import report_button
from ui import pages

ss = st.session_state
st.title("Results")


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(path: str, run_id: str) -> pd.DataFrame:
    return get_store().summary(run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _effects(path: str, run_id: str) -> pd.DataFrame:
    return get_store().results("effects", run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _csv(path: str, run_id: str, detail: bool) -> bytes:
    from attnxai.audit.report import detail_csv_bytes, summary_csv_bytes

    return (detail_csv_bytes if detail else summary_csv_bytes)(get_store(), run_id)


runs = None
with guard("reading the run history"):
    runs = completed_runs()
if runs is None:
    st.stop()
job = current_job()
if job is not None and job.running:
    st.info(f"An audit is running ({job.progress.get('fraction', 0):.0%}); it will appear here "
            "when it finishes.", icon=":material/hourglass_top:")
    st.page_link(pages.RUN, label="Watch its progress", icon=":material/play_circle:")
if runs.empty:
    st.markdown("No finished audit yet. Results show the layer-wise TCAV scores of each concept "
                "for each target class, tested against random concepts, once an audit has run.")
    if job is None or not job.running:
        demo_offer("demo_results", switch=True)
    st.stop()

run_id = run_picker(runs, "w_results_run")

store = get_store()
summary = run = None
with guard("reading the run"):
    run = store.get_run(run_id)
    summary = _summary(str(store.path), run_id)
if summary is None or run is None:
    st.stop()
if summary.empty:
    st.warning("This run stored no summary rows.")
    st.stop()
tcav = run.config.tcav

n_sig = int(summary["significant"].sum())
m = st.columns(5)
m[0].metric("inputs per target", int(summary["n_inputs"].max()))
m[1].metric("CAVs per layer", int(summary["num_cavs"].max()))
m[2].metric("layers", len(summary["layer"].unique()))
m[3].metric("significant tests", f"{n_sig} of {len(summary)}")
m[4].metric("duration", f"{run.duration_s or 0:.0f} s")
st.caption(f"Model {esc(run.model)} · data {esc(', '.join(map(str, run.datasets)))} · "
           f"{summary['test'].iloc[0]} test on the {summary['statistic'].iloc[0]}, "
           f"{summary['correction'].iloc[0]} correction, α = {tcav.alpha:g} · "
           f"{int(summary['num_null'].max())} random CAVs in the null · seed {run.seed}")

if is_demo(run.config):
    st.info("This is the one-click demo audit: deliberately small (two layers, "
            f"{DEMO_TCAV.num_cavs} CAVs per concept, {DEMO_TCAV.num_null} in the null), so its "
            "tests have little power and a layer it does not flag is no finding. **Run audit** "
            "runs the full default audit.", icon=":material/science:")

# -- filters ------------------------------------------------------------------------------------
f = st.columns([1, 1, 1, 3])
datasets = list(dict.fromkeys(summary["dataset"]))
targets = list(dict.fromkeys(summary["target"]))
weightings = list(dict.fromkeys(summary["weighting"]))
dataset = f[0].selectbox("Dataset", datasets, key="w_results_dataset") if len(datasets) > 1 \
    else datasets[0]
target = f[1].selectbox("Target class", targets, key="w_results_target") if len(targets) > 1 \
    else targets[0]
weighting = f[2].selectbox("Weighting", weightings, key="w_results_weighting",
                           index=weightings.index("attention") if "attention" in weightings else 0)
concepts_all = list(dict.fromkeys(summary["concept"]))
# One widget per run: a choice made on another run's concepts would show as empty here.
concepts = f[3].multiselect("Concepts", concepts_all, default=concepts_all,
                            key=f"w_results_concepts_{run_id}")
if not concepts:
    f[3].caption("None picked: every concept is shown.")
    concepts = concepts_all
ss["results_view"] = {"run_id": run_id, "dataset": dataset, "target": target,
                      "weighting": weighting}

sel = summary[(summary["dataset"] == dataset) & (summary["target"] == target)
              & summary["concept"].isin(concepts)]
view = sel[sel["weighting"] == weighting]
if view.empty:
    st.warning("Nothing to show for this selection.")
    st.stop()

effects = pd.DataFrame()
with guard("reading the causal effects"):
    effects = _effects(str(store.path), run_id)
# The effects of this target: the concepts' own pairs, and interventions on this dataset.
mine = effects[(effects["target"] == target) & effects["dataset"].isin([PAIRS, dataset])
               & effects["concept"].isin(concepts)] if not effects.empty else effects
view = with_relevance(view, effects)

# -- verdicts -----------------------------------------------------------------------------------
st.subheader(f"Does the class “{esc(target)}” rely on these concepts?")
outputs = mine[mine["measure"] == "output_prob"] if not mine.empty else mine
if not outputs.empty:
    heads = st.columns(min(len(outputs), 4))
    for col, r in zip(heads, outputs.itertuples()):
        col.metric(f"{r.concept}: output effect on P({target})", f"{r.mean:+.3f}",
                   help=f"Mean change of P({target}) from each pair's counterexample to its "
                        f"example, 95% interval {r.ci_low:+.3f} to {r.ci_high:+.3f}, adjusted "
                        f"p {r.p_adjusted:.3g} ({r.n_pairs} pairs).")
rows = []
for c in concepts:
    g = view[view["concept"] == c].sort_values("layer")
    sig = g[g["significant"]]
    unreliable = g[~g["reliable"]]["layer"].tolist()
    if sig.empty:
        verdict = "no significant layer"
    else:
        verdict = ", ".join(f"layer {int(r.layer)} ({r.direction}{', ★ relies' if r.relies else ''})"
                            for r in sig.itertuples())
    sentence = combined_verdict(c, g, mine[mine["concept"] == c] if not mine.empty else None)
    # The page's key sentence, whole: a table cell would cut it.
    st.markdown(f"- **{esc(c)}**: {esc(sentence)}")
    rows.append({"concept": c,
                 "significant layers": verdict,
                 "max TCAV": g["mean"].max(), "max magnitude": g["magnitude_mean"].max(),
                 "min adjusted p": g["p_adjusted"].min(),
                 "unreliable layers": ", ".join(map(str, unreliable)) or "none"})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    "max TCAV": st.column_config.NumberColumn(format="%.3f"),
    "max magnitude": st.column_config.NumberColumn(format="%.3f"),
    "min adjusted p": st.column_config.NumberColumn(format="%.4f")})

# -- charts -------------------------------------------------------------------------------------
st.subheader("Layer-wise TCAV")
st.caption(significance_caption(view, tcav.alpha) +
           f" {weighting.capitalize()} token weighting; {int(view['n_inputs'].iloc[0])} inputs.")
layered = mine[mine["layer"] >= 0] if not mine.empty else mine
st.altair_chart(layer_chart(view, concepts), width="content")
if not layered.empty:
    # Below, not beside: the TCAV chart's two panels take the page's width at 1280 px.
    st.subheader("Layer-wise causal effect")
    st.caption("Logit effect (95% interval) that activation patching of the pairs' differing "
               "tokens restores or removes at each layer, or the CAV intervention's mean "
               "change; dashed: the pairs' whole output effect. ★: the effect relies, shown "
               "beyond the minimum relevant effect δ after the run's correction of its effect "
               "tests.")
    shown = [c for c in concepts if c in set(layered["concept"])]
    st.altair_chart(effect_chart(mine[mine["concept"].isin(shown)], shown), width="content")

tabs = st.tabs(["Concept × layer", "CAV accuracy", "Weighted vs plain", "Summary table",
                "Causal effects table"])
with tabs[0]:
    st.caption("Mean sign-count TCAV; 0.5 = no preference. ★ relies; ☆ TCAV alone is "
               "significant; n/t: not testable; "
               "faded cells: unreliable CAVs.")
    st.altair_chart(heatmap(view, concepts), width="stretch")
with tabs[1]:
    threshold = float(tcav.min_accuracy)
    acc = view[["concept", "layer", "cav_accuracy", "cav_accuracy_std"]].rename(
        columns={"cav_accuracy": "accuracy", "cav_accuracy_std": "sd"}).fillna({"sd": 0.0})
    st.caption("Held-out accuracy of each concept's CAVs (mean ± std over CAVs). Below the "
               f"threshold ({threshold:g}) a layer does not separate the concept from its "
               "negatives, and its scores mean nothing.")
    st.altair_chart(accuracy_chart(acc, threshold, concepts), width="stretch")
with tabs[2]:
    if set(sel["weighting"]) >= {"attention", "plain"}:
        st.caption("Attention-weighted against plain (unweighted) token-level TCAV, ± std.")
        st.altair_chart(weighting_chart(sel, concepts), width="content")
    else:
        st.info("This run used one weighting only; run with weighting “both” to compare.")
with tabs[3]:
    cols = ["concept", "layer", "weighting", "mean", "std", "magnitude_mean", "random_mean",
            "p_value", "p_adjusted", "significant", "direction", "cav_accuracy", "reliable",
            "n_inputs"]
    st.dataframe(sel[[c for c in cols if c in sel]], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("mean", "std", "magnitude_mean", "random_mean",
                                          "p_value", "p_adjusted", "cav_accuracy")})

with tabs[4]:
    if mine.empty:
        st.info("This run measured no causal effects (effects “none”, or no concept with matched "
                "pairs and no CAV interventions).")
    else:
        st.caption("Each effect is tested against the minimum relevant effect δ "
                   "(`min_effect`, in its measure's units): **relies** when shown to exceed δ "
                   "(`p_adjusted`), **negligible** when shown to stay within ±δ "
                   "(`p_negligible`), else **inconclusive** (`n_needed`: about how many pairs "
                   "would settle it). Output effects and patching test the pairs' differences; "
                   "a CAV intervention is tested against the null CAVs moved by the same step "
                   "(so its interval, over the concept's CAVs, can exclude 0 while its p is "
                   "large: the null moves the logit too).")
        st.dataframe(mine, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("mean", "ci_low", "ci_high", "p_value",
                                              "p_adjusted", "share", "min_effect",
                                              "p_negligible")})

# -- export -------------------------------------------------------------------------------------
st.subheader("Export")
e1, e2, e3 = st.columns(3)
with guard("preparing the CSV"):
    download_button(e1, "Download summary CSV", _csv(str(store.path), run_id, False),
                    file_name=f"attnxai-{run_id}.csv", mime="text/csv", type="primary",
                    key="dl_summary")
    download_button(e2, "Download per-input CSV", _csv(str(store.path), run_id, True),
                    file_name=f"attnxai-{run_id}.detail.csv", mime="text/csv", key="dl_detail")
report_button(e3, str(store.path), run_id, key="dl_report")
st.caption("The summary CSV holds every dataset, target, concept, layer and weighting of the run "
           "with its settings; the per-input CSV the score of each input; the HTML report the "
           "findings, charts and provenance in one file that opens offline.")
st.page_link(pages.DRILLDOWN, label="Drill down into single inputs", icon=":material/zoom_in:")
