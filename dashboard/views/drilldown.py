"""Drill-down: one input at a time — attention-Shapley and baseline attributions side by side,
their faithfulness, and the per-layer concept sensitivity of a concept from a stored run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from attnxai.explain.baselines import METHODS, explain, get_method
from attnxai.explain.faithfulness import evaluate_methods
from attnxai.explain.shapley import GAMES, SOURCES
from ui.charts import faithfulness_chart, token_chips, token_layer_heatmap
from ui.common import (
    completed_runs,
    dataset_predictions,
    esc,
    get_adapter,
    get_dataset,
    get_store,
    guard,
    labels_key,
    model_lock,
    run_picker,
    short_path,
)
from ui.pairs import pairs_section
from ui.render import OVERLAY_LEGEND, overlay

ss = st.session_state
DEFAULT_METHODS = ["attention-shapley", "raw-attention", "rollout", "grad-sam"]
SLOW = {"integrated-gradients", "input-shapley"}

st.title("Drill-down")
st.caption("Pick an input, see which word pieces or patches each explanation method credits, how "
           "faithful each method is on it, and where in the network a concept acts on it.")


# -- cached computations ------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def _input_detail(path: str, run_id: str) -> pd.DataFrame:
    return get_store().input_detail(run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _inputs(path: str, run_id: str) -> pd.DataFrame:
    return get_store().inputs(run_id)


@st.cache_data(show_spinner="Explaining…", max_entries=128)
def _explain(_adapter: Any, _x: Any, mkey: str, xkey: str, method: str, target: int,
             opts_json: str) -> dict:
    opts = json.loads(opts_json)
    with model_lock(mkey):
        attr = explain(_adapter, [_x], method, target=target, **opts)
    return {"records": attr.records(0), "probs": attr.probs[0].tolist(),
            "grid": list(attr.grid) if attr.grid else None}


@st.cache_data(show_spinner="Measuring faithfulness…", max_entries=64)
def _faithfulness(_adapter: Any, _x: Any, mkey: str, xkey: str, methods: tuple[str, ...],
                  options_json: str) -> pd.DataFrame:
    with model_lock(mkey):
        rows = evaluate_methods(_adapter, [_x], None, list(methods), json.loads(options_json))
    return pd.DataFrame([r.as_dict() for r in rows])[["method", "comprehensiveness",
                                                       "sufficiency", "seconds_per_input"]]


@st.cache_resource(show_spinner=False, max_entries=8)
def _model_hash(mkey: str, _adapter: Any) -> str:
    from attnxai.audit.actcache import model_hash

    return model_hash(_adapter)


@st.cache_resource(show_spinner="Reading the run's CAVs…", max_entries=16)
def _run_cavs(path: str, run_id: str, concept: str, mkey: str, _adapter: Any) -> Any:
    from attnxai.audit.drilldown import run_cavs

    with model_lock(mkey):
        return run_cavs(get_store(), run_id, concept, _adapter, mhash=_model_hash(mkey, _adapter))


@st.cache_data(show_spinner="Computing concept sensitivity per layer…", max_entries=64)
def _heatmaps(_adapter: Any, _x: Any, _cavs: Any, key: str, mkey: str, target: int,
              weighting: str) -> dict:
    from attnxai.audit.drilldown import layer_heatmaps

    with model_lock(mkey):
        maps = layer_heatmaps(_adapter, _x, _cavs, target, weighting)
    out = {}
    for layer, hm in maps.items():
        out[layer] = {"values": hm.values[hm.valid].tolist(),
                      "tokens": [t for t, v in zip(hm.tokens, hm.valid.tolist()) if v]
                      if hm.tokens is not None else None,
                      "grid": hm.grid.tolist() if hm.grid is not None else None}
    return out


# -- which inputs -------------------------------------------------------------------------------
runs = pd.DataFrame()
with guard("reading the run history"):
    runs = completed_runs()

run = None
if not runs.empty:
    run_id = run_picker(runs, "w_drill_run")
    with guard("reading the run"):
        run = get_store().get_run(run_id)

store = get_store()
if run is not None:
    spec = run.model
    run_labels = run.config.labels  # stored only for a model that takes label descriptions
    adapter = None
    with guard("loading the run's model"):
        adapter = get_adapter(spec, run_labels)
    if adapter is None:
        st.stop()
    mkey = f"{spec}|{labels_key(run_labels)}"
    pairs_section(run.run_id)
    detail = _input_detail(str(store.path), run.run_id)
    inputs = _inputs(str(store.path), run.run_id)
    view = ss.get("results_view") or {}
    f = st.columns(4)
    datasets = list(dict.fromkeys(inputs["dataset"]))
    targets = list(dict.fromkeys(inputs["target"]))
    layers = sorted(detail["layer"].unique().tolist())
    weightings = list(dict.fromkeys(detail["weighting"]))
    dataset = f[0].selectbox("Dataset", datasets, key="w_drill_dataset",
                             index=datasets.index(view["dataset"])
                             if view.get("dataset") in datasets else 0)
    target = f[1].selectbox("Target class", targets, key="w_drill_target",
                            index=targets.index(view["target"]) if view.get("target") in targets else 0)
    # Open on the last layer that could be tested: where no gradient reaches the tokens (the
    # last block of a [CLS]-read ViT), every score is exactly 0.
    live = [l for l in layers if (detail.loc[detail["layer"] == l, "score_mean"] != 0).any()]
    layer = f[2].selectbox("Scores at layer", layers, index=layers.index((live or layers)[-1]),
                           key="w_drill_layer",
                           format_func=lambda l: f"{l}" if l in live or not live
                           else f"{l} (not testable)")
    weighting = f[3].selectbox("Weighting", weightings, key="w_drill_weighting",
                               index=weightings.index("attention") if "attention" in weightings else 0)
    rows = inputs[(inputs["dataset"] == dataset) & (inputs["target"] == target)].copy()
    d = detail[(detail["dataset"] == dataset) & (detail["target"] == target)
               & (detail["layer"] == layer) & (detail["weighting"] == weighting)]
    pivot = d.pivot_table(index="input_index", columns="concept", values="score_mean")
    pivot.columns = [f"S({c})" for c in pivot.columns]
    table = rows.set_index("input_index")[["input", "label", "prediction", "probability"]].join(pivot)
    if adapter.modality == "image":  # the file's name, not a path whose start hides it
        table["input"] = table["input"].map(short_path)
    st.caption(f"{len(table)} inputs of “{esc(target)}”. S(concept): mean attention-weighted "
               f"concept sensitivity over the concept's CAVs at layer {layer} (> 0: the concept "
               "pushes the class up). Click a column to sort, a row to open it.")
    run_concepts = list(run.config.concepts)
else:
    st.info("No finished audit yet: you can explain inputs of the current dataset; concept "
            "sensitivity needs an audit (Run audit).")
    adapter = None
    with guard("loading the model"):
        adapter = get_adapter()
    if adapter is None:
        st.stop()
    mkey = f"{ss['spec']}|{labels_key(ss.get('labels'))}"
    preds = pd.DataFrame()
    with guard("classifying the data"):
        preds = dataset_predictions()
    if preds.empty:
        st.stop()
    table = preds[[c for c in ("input", "label", "prediction", "probability") if c in preds]]
    target, dataset, run_concepts = None, None, []

event = st.dataframe(table, on_select="rerun", selection_mode="single-row", key="w_drill_table",
                     height=260, width="stretch",
                     column_config={"input": st.column_config.TextColumn(width="large"),
                                    "probability": st.column_config.NumberColumn(format="%.3f")}
                     | {c: st.column_config.NumberColumn(format="%.4f")
                        for c in table.columns if c.startswith("S(")})
positions = list(table.index)
picked = list(getattr(getattr(event, "selection", None), "rows", []) or [])
if picked and ss.get("_drill_last_pick") != picked[0]:
    ss["w_drill_input"] = positions[picked[0]]  # a click in the table picks the input
ss["_drill_last_pick"] = picked[0] if picked else None
if ss.get("w_drill_input") not in positions:
    ss.pop("w_drill_input", None)
choice = st.selectbox("Input", positions, key="w_drill_input",
                      format_func=lambda i: f"#{i} · {str(table.loc[i, 'input'])[:90]}")


def _resolve(i: int) -> Any:
    """The input itself: a text, an image path, or an in-memory image of the dataset."""
    if run is None:
        return get_dataset().items[int(i)]
    rec = rows[rows["input_index"] == i].iloc[0]
    value = str(rec["input"])
    if adapter.modality == "text":
        return value
    if Path(value).is_file():
        return Path(value)
    source, _, pos = value.rpartition("#")
    return get_dataset(source, "image").items[int(pos)]


x = None
with guard("reading the input"):
    x = _resolve(choice)
if x is None:
    st.stop()
xkey = f"{dataset}|{target}|{choice}|{str(table.loc[choice, 'input'])}"

# -- the input and its prediction ---------------------------------------------------------------
st.divider()
labels_list = list(adapter.labels)
default_cls = labels_list.index(target) if target in labels_list else \
    labels_list.index(table.loc[choice, "prediction"]) if table.loc[choice, "prediction"] in labels_list else 0
h1, h2 = st.columns([3, 2], gap="large")
with h1:
    if adapter.modality == "text":
        st.markdown("**Input**")
        st.text(str(x))
    else:
        from ui.render import thumbnail

        st.image(thumbnail(x, 192), caption=esc(str(table.loc[choice, "input"])), width=192)
with h2:
    cls = st.selectbox("Class to explain", range(len(labels_list)), index=default_cls,
                       format_func=lambda i: labels_list[i], key="w_drill_class")
    st.caption(f"Prediction: **{esc(table.loc[choice, 'prediction'])}** "
               f"(p = {float(table.loc[choice, 'probability']):.3f})"
               + (f" · label: {esc(table.loc[choice, 'label'])}"
                  if "label" in table and pd.notna(table.loc[choice, "label"]) else ""))

# -- attributions -------------------------------------------------------------------------------
st.subheader("Attributions")
o = st.columns([3, 1, 1])
methods = o[0].multiselect("Methods", list(METHODS), default=DEFAULT_METHODS, key="w_drill_methods",
                           format_func=lambda m: f"{m} (slow)" if m in SLOW else m,
                           help="\n".join(f"- **{m.name}**: {m.description}" for m in METHODS.values()))
game = o[1].selectbox("Game", list(GAMES), index=list(GAMES).index("max_mutual"),
                      key="w_drill_game", help="attention-Shapley's characteristic function")
source = o[2].selectbox("Attention source", list(SOURCES), key="w_drill_source",
                        help="attention: mean over heads and layers; grad_attention: "
                             "Grad-SAM style attention × ReLU(gradient)")
options = {}
for m in methods:
    takes = get_method(m).options
    options[m] = {k: v for k, v in (("game", game), ("source", source)) if k in takes}

results = {}
with guard("explaining the input"):
    for m in methods:
        results[m] = _explain(adapter, x, mkey, xkey, m, int(cls), json.dumps(options[m]))
if results:
    cols = st.columns(2, gap="large")
    for k, (m, res) in enumerate(results.items()):
        recs = res["records"]
        with cols[k % 2]:
            total = sum(r["value"] for r in recs)
            st.markdown(f"**{m}** · sum {total:.4g}")
            if adapter.modality == "text":
                st.altair_chart(token_chips([r["player"] for r in recs], [r["value"] for r in recs]),
                                width="content")
            else:
                rows_, cols_ = res["grid"]
                grid = np.zeros((rows_, cols_))
                for r in recs:
                    grid[r["row"], r["col"]] = r["value"]
                st.image(overlay(x, grid, 224), width=224)
    st.caption("Red: credited towards the explained class; blue: against it (colour scale per "
               "method). Players are word pieces ([CLS]/[SEP] excluded) or patches.")

    st.markdown("**Faithfulness on this input**")
    with guard("measuring faithfulness"):
        faith = _faithfulness(adapter, x, mkey, xkey, tuple(methods),
                              json.dumps({m: options[m] for m in methods}))
        st.altair_chart(faithfulness_chart(faith), width="content")
        fc1, fc2 = st.columns([3, 2], gap="large")
        fc1.dataframe(faith, hide_index=True, width="stretch",
                      column_config={c: st.column_config.NumberColumn(format="%.4f")
                                     for c in ("comprehensiveness", "sufficiency", "seconds_per_input")})
        fc2.caption("Comprehensiveness: drop in the predicted class's probability when the top "
                    "0/10/20/50% players are removed (higher is better). Sufficiency: drop when "
                    "only they are kept (lower is better).")

# -- concept sensitivity ------------------------------------------------------------------------
st.subheader("Concept sensitivity per layer")
if run is None or not run_concepts:
    st.info("Run an audit to see where a concept acts on this input.")
    st.stop()
c1, c2 = st.columns([1, 1])
concept = c1.selectbox("Concept", run_concepts, key="w_drill_concept")
hm_weighting = c2.selectbox("Weighting", ["attention", "plain"], key="w_drill_hm_weighting")
with guard("computing concept sensitivity"):
    cavs = _run_cavs(str(store.path), run.run_id, concept, mkey, adapter)
    if cavs.model_changed:
        st.warning("The model's weights differ from the run's; sensitivities are of the current model.")
    maps = _heatmaps(adapter, x, cavs, f"{run.run_id}|{concept}|{xkey}", mkey, int(cls),
                     hm_weighting)
    st.caption(f"s′ per word piece / patch and layer: attention-weighted directional derivative of "
               f"“{esc(labels_list[int(cls)])}” along the {esc(concept)} CAVs, mean over "
               f"{next(iter(cavs.cavs.values())).shape[0]} CAVs. Red: the concept pushes the class "
               "up there.")
    layer_ids = sorted(maps)
    if adapter.modality == "text":
        tokens = maps[layer_ids[0]]["tokens"]
        st.altair_chart(token_layer_heatmap(tokens, layer_ids,
                                            np.array([maps[l]["values"] for l in layer_ids]),
                                            concept), width="stretch")
    else:
        cols = st.columns(min(6, len(layer_ids)))
        for k, l in enumerate(layer_ids):
            with cols[k % len(cols)]:
                st.image(overlay(x, maps[l]["grid"], 160), caption=f"layer {l}", width=150)
        st.caption(OVERLAY_LEGEND)
