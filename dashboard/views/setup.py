"""Setup: the model (with its card and zero-shot labels) and the dataset, with a preview of the
model's predictions on it."""

from __future__ import annotations

import io
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from attnxai.io.datasets import (TEXT_EXTENSIONS, TextColumnError, load_dataset, load_image,
                                 verify_image_bytes)
from attnxai.errors import UserInputError
from attnxai.models import BUILTINS, NEWS_TOPICS
from ui.charts import probability_chart
from ui.common import (
    DEMO_AUDITS,
    DEMO_REF,
    data_label,
    dataset_predictions,
    esc,
    get_adapter,
    get_dataset,
    guard,
    model_key,
    model_lock,
    use_uploaded_column,
    use_uploaded_dataset,
)
from ui.demo import demo_offer
from ui.render import thumbnail

ss = st.session_state
CUSTOM = "Other: a Hugging Face id, a local folder or a timm: spec"
SOURCES = ["Demo data", "Upload a file", "A local path"]

st.title("Setup")
st.caption("Pick the model to audit and the data to audit it on. Everything runs locally; "
           "nothing is downloaded.")
# The page is laid out first and filled as the model and the preview become ready: the one-time
# loading and classifying show on this bar meanwhile (a model loads once per session).
boot = st.empty()


def _boot(fraction: float, text: str) -> None:
    boot.progress(min(max(fraction, 0.0), 1.0), text=text)


demo_offer("demo_setup")


# -- model -------------------------------------------------------------------------------------
def _pick_model() -> None:
    pick = ss["w_model_pick"]
    if pick != CUSTOM:
        ss["spec"] = pick


def _custom_model() -> None:
    spec = ss.get("w_model_custom", "").strip()
    if spec:
        ss["spec"] = spec


st.subheader("Model")
left, right = st.columns([2, 3], gap="large")
with left:
    options = [*BUILTINS, CUSTOM]
    current = ss["spec"]
    st.selectbox("Model", options, index=options.index(current) if current in BUILTINS else
                 len(BUILTINS), key="w_model_pick", on_change=_pick_model,
                 help="The built-ins run offline. Other models load from a local folder, the "
                      "local Hugging Face cache or timm.")
    if ss["w_model_pick"] == CUSTOM:
        st.text_input("Model spec", value="" if current in BUILTINS else current,
                      key="w_model_custom", on_change=_custom_model,
                      placeholder="path/to/folder · org/model · timm:vit_small_patch16_224@w.safetensors")
        if ss["spec"] in BUILTINS:
            st.info("Type a model spec and press Enter to load it.")
            st.stop()

card_slot = right.container()
labels_slot = st.container()


def _load_model() -> object | None:
    adapter = None
    with card_slot, guard("loading the model"):
        adapter = get_adapter(progress=lambda f, text: _boot(0.5 * f, text))
    if adapter is None:
        boot.empty()
        st.stop()
    return adapter


# A built-in's modality is known before it loads, so the data section shows at once.
modality = DEMO_AUDITS.get(ss["spec"], {}).get("modality")
adapter = None if modality else _load_model()
modality = modality or adapter.modality

# -- data --------------------------------------------------------------------------------------
st.divider()
st.subheader("Data")
kinds = ("CSV, TXT or JSONL of texts (column `text`, optional `label`)" if modality == "text"
         else "a zip of images (class sub-folders become labels)")
src_default = 0 if ss["data_ref"] == DEMO_REF else 2
dl, dr = st.columns([2, 3], gap="large")
with dl:
    source = st.radio("Source", SOURCES, index=src_default, horizontal=True, key="w_data_source")
    if source == "Demo data":
        if ss["data_ref"] != DEMO_REF:
            ss["data_ref"] = DEMO_REF
            st.rerun()
        st.caption("News headlines in four topics" if modality == "text"
                   else "Generated shape images in four classes")
    elif source == "Upload a file":
        types = [e.lstrip(".") for e in TEXT_EXTENSIONS] if modality == "text" else ["zip"]
        up = st.file_uploader(f"Upload {kinds}", type=types, key="w_data_upload")
        if up is not None:
            used, columns = False, None
            with guard("reading the upload"):
                try:
                    ds = use_uploaded_dataset(up.name, up.getvalue())
                except TextColumnError as exc:
                    ds, columns = None, exc.columns  # the user picks the texts' column below
                if ds is not None:
                    if ds.modality != modality:
                        raise UserInputError(f"{up.name} holds {ds.modality} data but the model "
                                             f"is a {modality} model; pick another file or model.")
                    path = str(Path(ds.source))
                    used = True
                    if ss["data_ref"] != path:
                        ss["data_ref"] = path
                        st.rerun()
            if columns:
                st.warning(f"{esc(up.name)} has no `text` column and several that could hold "
                           "the texts: pick the one that does.", icon=":material/table:")
                col = st.selectbox("Column with the texts", columns, key="w_data_text_column")
                if st.button("Use this column", key="w_data_use_column"):
                    with guard("reading the upload"):
                        ds = use_uploaded_column(up.name, up.getvalue(), col)
                        ss["data_ref"] = str(Path(ds.source))
                        st.rerun()
            if not used:  # the preview beside still shows the data in use: say which
                st.caption(f"{esc(up.name)} is not used yet; still using "
                           f"**{esc(data_label())}**.")
    else:
        path = st.text_input("Path on this machine", value="" if ss["data_ref"] == DEMO_REF
                             else ss["data_ref"], key="w_data_path",
                             placeholder="/data/reviews.csv or /data/images/ (folder or .zip)")
        if st.button("Use this path") and path.strip():
            with guard("reading the dataset"):
                p = Path(path.strip()).expanduser()
                ds = load_dataset(p)
                if ds.modality != modality:
                    raise UserInputError(f"{p.name} holds {ds.modality} data but the model is a "
                                         f"{modality} model.")
                ss["data_ref"] = str(p.resolve())
                st.rerun()

dataset = None
with dr, guard("reading the dataset"):
    dataset = get_dataset(modality=modality)
    if dataset.modality != modality:
        st.error(f"The selected data ({esc(data_label())}) holds {dataset.modality} inputs but "
                 f"the model reads {modality}. Pick matching data.")
        dataset = None
if dataset is None:
    boot.empty()
    st.stop()

with dr:
    c = st.columns(3)
    c[0].metric("inputs", len(dataset))
    c[1].metric("with labels", "yes" if dataset.labels else "no")
    c[2].metric("classes in data", len(set(dataset.labels)) if dataset.labels else "–")
    st.caption(f"Using **{esc(data_label())}**" + (f" · {len(dataset.skipped)} unreadable files "
                                                  "skipped" if dataset.skipped else ""))

st.subheader("Preview with the model's predictions")
preview_slot = st.container()
try_slot = st.container()

# -- the model, now that the page stands --------------------------------------------------------
if adapter is None:
    adapter = _load_model()

with card_slot:
    card = adapter.card if isinstance(getattr(adapter, "card", None), dict) else {}
    if card.get("description"):
        st.caption(esc(card["description"]))
    cols = st.columns(4)
    cols[0].metric("modality", adapter.modality)
    cols[1].metric("layers", adapter.num_layers)
    cols[2].metric("heads", adapter.num_heads)
    cols[3].metric("classes", len(adapter.labels))
    if "planted_class" in card:
        iv = card.get("intervention", {}).get("planted", {})
        st.info(
            f"Planted shortcut: the texture **{card['planted_concept']}** drives class "
            f"**{card['planted_class']}**. Painting it on other shapes moves "
            f"P({card['planted_class']}) from {iv.get('p_with_neutral', float('nan')):.2f} to "
            f"{iv.get('p_with_texture', float('nan')):.2f}. Control concept: "
            f"**{card['control_concept']}**. Unbiased test accuracy: "
            f"{card.get('test_accuracy_unbiased', float('nan')):.1%}.")
    with st.expander("Model card"):
        st.json(card or adapter.describe(), expanded=False)

with left:
    st.caption("Classes: " + ", ".join(esc(l) for l in adapter.labels))

# -- zero-shot labels --------------------------------------------------------------------------
if adapter.takes_label_descriptions:
    with labels_slot, st.expander("Zero-shot labels (editable)", expanded=False):
        st.caption("The MiniLM built-in classifies by similarity to each label's descriptions. "
                   "One row per description; repeat a label to give it several.")
        labels = ss.get("labels") or NEWS_TOPICS
        rows = [(name, d) for name, descs in labels.items()
                for d in ([descs] if isinstance(descs, str) else descs)]
        edited = st.data_editor(pd.DataFrame(rows, columns=["label", "description"]),
                                num_rows="dynamic", width="stretch", key="w_labels",
                                column_config={"description": st.column_config.TextColumn(width="large")})
        c1, c2, _ = st.columns([1, 1, 3])
        if c1.button("Apply labels", type="primary"):
            new: dict[str, list[str]] = {}
            problems = []
            for i, r in edited.fillna("").iterrows():
                name, desc = str(r["label"]).strip(), str(r["description"]).strip()
                if not name and not desc:
                    continue
                if not name or not desc:
                    problems.append(f"row {i + 1} needs both a label and a description")
                    continue
                new.setdefault(name, []).append(desc)
            if problems:
                st.error("Cannot apply: " + "; ".join(problems) + ".")
            elif len(new) < 2:
                st.error("Give at least two labels, each with a description.")
            else:
                ss["labels"] = new
                st.rerun()
        if c2.button("Reset to news topics"):
            ss["labels"] = None
            ss.pop("w_labels", None)
            st.rerun()

# -- preview -----------------------------------------------------------------------------------
with preview_slot, guard("classifying the data"):
    preds = dataset_predictions(progress=lambda f, text: _boot(0.5 + 0.5 * f, text))
    boot.empty()
    n_shown = len(preds)
    if dataset.labels is not None and set(dataset.labels) <= set(adapter.labels):
        agree = float((preds["label"] == preds["prediction"]).mean())
        st.caption(f"First {n_shown} inputs · agreement of predictions with the data's labels: "
                   f"**{agree:.1%}**")
    else:
        st.caption(f"First {n_shown} inputs")
    pl, pr = st.columns([3, 1], gap="medium")
    if adapter.modality == "image":
        shown = min(8, len(dataset))
        grid = pl.columns(8)
        for i in range(shown):
            with grid[i]:
                st.image(thumbnail(dataset.items[i], 96), width=80)
                st.caption(f"{esc(preds['prediction'][i])} {preds['probability'][i]:.2f}")
    base_cols = [c for c in ("input", "label", "prediction", "probability") if c in preds]
    pl.dataframe(preds[base_cols], width="stretch", height=320, hide_index=False,
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="%.2f"),
                     "input": st.column_config.TextColumn(width="medium")})
    counts = preds["prediction"].value_counts().rename_axis("class").reset_index(name="inputs")
    pr.altair_chart(alt.Chart(counts).mark_bar(color="#3b6e8f").encode(
        x=alt.X("inputs:Q"), y=alt.Y("class:N", sort="-x", title=None),
        tooltip=["class", "inputs"]).properties(height=30 * len(counts) + 90,
                                               title="predicted classes"), width="stretch")

boot.empty()

# -- try one input -----------------------------------------------------------------------------
with try_slot, st.expander("Try one input", expanded=False):
    if adapter.modality == "text":
        text = st.text_area("Text to classify", value=str(dataset.items[0])[:5000],
                            max_chars=5000, key="w_try_text")
        if text.strip():
            with guard("classifying the text"), model_lock(model_key()):
                probs = adapter.predict([text])[0].tolist()
            st.altair_chart(probability_chart(adapter.labels, probs), width="stretch")
        else:
            st.warning("Type a text to classify.")
    else:
        up = st.file_uploader("An image", type=["png", "jpg", "jpeg", "bmp", "webp"],
                              key="w_try_image")
        if up is not None:
            with guard("reading the image"):
                data = up.getvalue()
                verify_image_bytes(data, up.name)
                image = load_image(Image.open(io.BytesIO(data)))
                a, b = st.columns([1, 2])
                a.image(image.resize((192, 192)), caption=esc(up.name))
                with model_lock(model_key()):
                    probs = adapter.predict([image])[0].tolist()
                b.altair_chart(probability_chart(adapter.labels, probs), width="stretch")
