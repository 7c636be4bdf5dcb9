"""attnxai dashboard: a thin Streamlit UI over the attnxai library.

This first page picks a model (the offline built-ins by default, or any supported spec),
shows its card, and classifies a text or an image with it.
"""

from __future__ import annotations

import io

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from attnxai.data import demo_dataset, load_image, verify_image_bytes
from attnxai.errors import UserInputError
from attnxai.models import BUILTINS, load_model

st.set_page_config(page_title="attnxai", page_icon=":mag:", layout="wide")

CUSTOM = "Other model (Hugging Face id, folder or timm: spec)…"


@st.cache_resource(show_spinner="Loading model…")
def get_model(spec: str):
    return load_model(spec)


@st.cache_data(show_spinner=False)
def get_demo(modality: str) -> tuple[list, list[str] | None]:
    ds = demo_dataset(modality)
    return [str(x) for x in ds.items], ds.labels


def probability_chart(labels: list[str], probs: list[float]) -> alt.Chart:
    df = pd.DataFrame({"class": labels, "probability": probs})
    return (
        alt.Chart(df)
        .mark_bar(cornerRadiusEnd=3)
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
            y=alt.Y("class:N", sort="-x", title=None),
            color=alt.condition(alt.datum.probability == max(probs), alt.value("#3b6e8f"),
                                alt.value("#b9c7d0")),
            tooltip=["class", alt.Tooltip("probability:Q", format=".3f")],
        )
        .properties(height=34 * len(labels) + 20)
    )


def show_card(adapter) -> None:
    card = adapter.card
    st.caption(card.get("description", adapter.spec))
    cols = st.columns(4)
    cols[0].metric("modality", adapter.modality)
    cols[1].metric("layers", adapter.num_layers)
    cols[2].metric("heads", adapter.num_heads)
    cols[3].metric("classes", len(adapter.labels))
    if "planted_class" in card:
        iv = card.get("intervention", {}).get("planted", {})
        st.info(
            f"Planted shortcut: the texture **{card['planted_concept']}** drives class "
            f"**{card['planted_class']}**. Painting it on other shapes moves P({card['planted_class']}) "
            f"from {iv.get('p_with_neutral', float('nan')):.2f} to "
            f"{iv.get('p_with_texture', float('nan')):.2f}. Control concept: "
            f"**{card['control_concept']}**. Unbiased test accuracy: "
            f"{card.get('test_accuracy_unbiased', float('nan')):.1%}."
        )
    with st.expander("Model card"):
        st.json(card, expanded=False)


def text_panel(adapter) -> None:
    demo, _ = get_demo("text")
    choice = st.selectbox("A demo headline", demo, index=0)
    text = st.text_area("Text to classify", value=choice, max_chars=5000)
    if not text.strip():
        st.warning("Type a text to classify.")
        return
    probs = adapter.predict([text])[0].tolist()
    st.altair_chart(probability_chart(adapter.labels, probs), width="stretch")


def image_panel(adapter) -> None:
    demo, labels = get_demo("image")
    upload = st.file_uploader("Upload an image", type=["png", "jpg", "jpeg", "bmp", "webp"])
    if upload is not None:
        image = load_image_upload(upload)
        if image is None:
            return
        caption = upload.name
    else:
        names = [f"{lab} · {p.rsplit('/', 1)[-1]}" if labels else p for p, lab in
                 zip(demo, labels or demo)]
        idx = st.selectbox("A demo image", range(len(demo)), format_func=lambda i: names[i])
        image, caption = load_image(demo[idx]), names[idx]
    left, right = st.columns([1, 2])
    left.image(image.resize((192, 192), resample=0), caption=caption)
    probs = adapter.predict([image])[0].tolist()
    right.altair_chart(probability_chart(adapter.labels, probs), width="stretch")


def load_image_upload(upload):
    data = upload.getvalue()
    try:
        verify_image_bytes(data, upload.name)
        return load_image(Image.open(io.BytesIO(data)))
    except UserInputError as e:
        st.error(str(e))
        return None


def main() -> None:
    st.title("attnxai")
    st.write("Audit transformer models with attention-weighted concept sensitivity (TCAV) "
             "and exact attention-Shapley explanations — offline, on your own models and data.")
    with st.sidebar:
        st.header("Model")
        pick = st.selectbox("Model", [*BUILTINS, CUSTOM], index=0)
        spec = pick
        if pick == CUSTOM:
            spec = st.text_input("Model spec", placeholder="path/to/folder, org/model or timm:vit_small_patch16_224@weights.safetensors").strip()
            if not spec:
                st.info("Enter a model spec to load it.")
                return
    try:
        adapter = get_model(spec)
        show_card(adapter)
        st.subheader("Try it")
        (text_panel if adapter.modality == "text" else image_panel)(adapter)
    except UserInputError as e:
        st.error(str(e))


main()
