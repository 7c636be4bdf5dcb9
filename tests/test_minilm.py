"""The MiniLM zero-shot built-in: offline, hash-checked, and equal to an independent encoder."""

from __future__ import annotations

import shutil
import socket

import pytest
import torch

import attnxai
from attnxai.errors import ModelLoadError
from attnxai.models import loading

HEADLINES = ["Stocks tumble as the central bank raises interest rates",
             "Striker scores twice as United win the derby",
             "Astronomers spot water vapour on a distant planet",
             "Leaders meet in Geneva to negotiate a ceasefire"]


@pytest.fixture(scope="module")
def minilm():
    # Any attempt to open a connection while loading and running fails the test.
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    original = socket.socket.connect
    socket.socket.connect = refuse
    try:
        adapter = attnxai.load_model("builtin:minilm-zeroshot", device="cpu")
        adapter.capture(HEADLINES[:1])
    finally:
        socket.socket.connect = original
    return adapter


def test_card_and_attributes(minilm):
    assert minilm.modality == "text" and minilm.pooling == "mean"
    assert minilm.takes_label_descriptions  # the capability the dashboard and audits ask for
    assert (minilm.num_layers, minilm.num_heads) == (6, 12)
    assert minilm.labels == ["world", "sports", "business", "science/technology"]
    assert minilm.card["sha256"] == loading.MINILM_SHA256


def test_logits_equal_sentence_transformers_cosines(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(loading.minilm_dir()), device="cpu")
    emb = st.encode(HEADLINES, convert_to_tensor=True, normalize_embeddings=True)
    protos = []
    for descs in loading.NEWS_TOPICS.values():
        d = st.encode(descs, convert_to_tensor=True, normalize_embeddings=True)
        protos.append(torch.nn.functional.normalize(d.mean(0), dim=-1))
    expected = loading.ZERO_SHOT_SCALE * emb @ torch.stack(protos).T
    cap = minilm.capture(HEADLINES, grads=False)
    torch.testing.assert_close(cap.logits, expected.float(), atol=2e-4, rtol=1e-4)
    assert [minilm.labels[i] for i in cap.predictions] == [
        "business", "sports", "science/technology", "world"]


def test_custom_labels(minilm):
    adapter = attnxai.load_model("builtin:minilm-zeroshot", device="cpu",
                                 labels={"food": "Cooking, recipes and restaurants.",
                                         "music": ["Concerts, albums and bands."]})
    assert adapter.labels == ["food", "music"]
    probs = adapter.predict(["A new pasta recipe with garlic", "The band releases its new album"])
    assert probs.argmax(1).tolist() == [0, 1]
    with pytest.raises(attnxai.UserInputError, match="needs a name and a non-empty description"):
        attnxai.load_model("builtin:minilm-zeroshot", labels={"x": "  "})


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(loading.minilm_dir(), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(loading, "minilm_dir", lambda: copy)
    with pytest.raises(ModelLoadError, match="refusing to load them"):
        attnxai.load_model("builtin:minilm-zeroshot")


def test_bfloat16_stays_within_the_stated_tolerances(minilm):
    """--dtype bfloat16 on the shipped MiniLM, against float32, within the tolerances the
    README states: class probabilities within 0.03 (the same predicted class), the token
    derivatives along a concept's direction (what TCAV counts) within 5% and correlated at
    ≥ 0.999, a CAV intervention's mean effect within 0.03 logit (a fifth of the default
    minimum relevant effect)."""
    from attnxai.effects.intervention import cav_intervention
    from attnxai.io.concepts import load_concept_set
    from attnxai.io.datasets import demo_dataset

    half = attnxai.load_model("builtin:minilm-zeroshot", device="cpu", dtype="bfloat16")
    demo = demo_dataset("text")
    full_p, half_p = minilm.predict(demo.items), half.predict(demo.items)
    assert (full_p - half_p).abs().max() < 0.03
    assert torch.equal(full_p.argmax(1), half_p.argmax(1))
    sports = [t for t, label in zip(demo.items, demo.labels) if label == "sports"]
    a, b = minilm.capture(sports, target="sports"), half.capture(sports, target="sports")
    concept = minilm.capture(load_concept_set("sports-words").examples[:30], grads=False)
    pool = minilm.capture(load_concept_set("random-text").examples[:30], grads=False)
    m = a.valid_mask
    for layer in range(minilm.num_layers):
        v = (concept.activations[layer][concept.valid_mask].mean(0)
             - pool.activations[layer][pool.valid_mask].mean(0))
        da = a.grad_activations[layer][m] @ v
        db = b.grad_activations[layer][m] @ v
        assert (da - db).norm() < 0.05 * da.norm()
        assert torch.corrcoef(torch.stack([da, db]))[0, 1] > 0.999
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(8, minilm.width, generator=gen), dim=1)
    steps = torch.full((8,), 3.0)
    for layer in (0, 3):
        full_e = cav_intervention(minilm, sports, "sports", layer, directions, steps).mean(0)
        half_e = cav_intervention(half, sports, "sports", layer, directions, steps).mean(0)
        assert full_e.abs().max() > 0.3  # steps that move the logit, so the check has teeth
        assert (full_e - half_e).abs().max() < 0.03
