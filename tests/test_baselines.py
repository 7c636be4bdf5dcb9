"""Baselines and input masking on tiny models: each checked against an independent
computation (manual formulas, string-level [MASK] replacement, completeness, efficiency)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import attnxai
from attnxai.explain.baselines import METHODS, PlayerMasker, explain, mean_fill
from attnxai.errors import UserInputError
from attnxai.explain.faithfulness import evaluate_methods
from attnxai.explain.shapley import aggregate_attention, attention_shapley
from conftest import LABELS, TEXTS


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu", batch_size=64)


@pytest.fixture(scope="module")
def vit64(tmp_path_factory):
    """A tiny timm ViT on 64x64 images with 8x8 patches: 64 patch players + [CLS]."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    d = tmp_path_factory.mktemp("vit64")
    kwargs = {"img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
              "num_classes": 3}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    save_file(model.state_dict(), str(d / "vit.safetensors"))
    (d / "vit.json").write_text(json.dumps({"labels": LABELS, "model_kwargs": kwargs}))
    return attnxai.load_model(f"timm:vit_tiny_patch16_224@{d / 'vit.safetensors'}", device="cpu")


def test_registry_lists_every_method():
    assert set(METHODS) == {"attention-shapley", "raw-attention", "rollout", "grad-sam",
                            "integrated-gradients", "input-shapley"}


# -- attention baselines -----------------------------------------------------------------------
def test_players_are_the_non_special_word_pieces(bert):
    attr = explain(bert, TEXTS, "attention-shapley")
    enc = bert.tokenizer(TEXTS)
    for b, ids in enumerate(enc["input_ids"]):
        assert attr.player_names(b) == bert.tokenizer.convert_ids_to_tokens(ids)[1:-1]
        assert torch.all(attr.values[b, len(ids) - 2:] == 0)


def test_raw_attention_is_the_cls_row_and_the_cls_game(bert):
    attr = explain(bert, TEXTS, "raw-attention")
    cap = bert.capture(TEXTS, grads=False)
    game = aggregate_attention(cap)
    assert torch.allclose(attr.values, attention_shapley(None, "cls", game.player_mask,
                                                         game.cls_row))
    b, n = 0, int(attr.player_mask[0].sum())
    manual = torch.stack([a[b].double().mean(0)[0, 1:n + 1] for a in cap.attentions]).mean(0)
    assert torch.allclose(attr.values[b, :n], manual, atol=1e-12)


def test_rollout_matches_a_loop(bert):
    attr = explain(bert, TEXTS, "rollout")
    cap = bert.capture(TEXTS, grads=False)
    b = 2
    T = int(cap.token_mask[b].sum())
    joint = torch.eye(T, dtype=torch.float64)
    for a in cap.attentions:
        step = 0.5 * a[b, :, :T, :T].double().mean(0) + 0.5 * torch.eye(T, dtype=torch.float64)
        step = step / step.sum(1, keepdim=True)
        joint = step @ joint
    assert torch.allclose(attr.values[b, :T - 2], joint[0, 1:T - 1], atol=1e-12)


def test_grad_sam_matches_the_formula(bert):
    attr = explain(bert, TEXTS, "grad-sam")
    cap = bert.capture(TEXTS)
    b = 0
    T = int(cap.token_mask[b].sum())
    L, H = len(cap.attentions), cap.attentions[0].shape[1]
    score = torch.zeros(T, dtype=torch.float64)
    for l in range(L):
        for h in range(H):
            prod = cap.attentions[l][b, h].double() * torch.relu(cap.grad_attentions[l][b, h].double())
            score += prod[:T, :T].sum(1)
    assert torch.allclose(attr.values[b, :T - 2], score[1:T - 1] / (L * H), atol=1e-12)


@pytest.mark.parametrize("method", ["attention-shapley", "raw-attention", "rollout", "grad-sam",
                                    "input-shapley", "integrated-gradients"])
def test_batch_equals_per_item(bert, method):
    opts = {"steps": 8} if method == "integrated-gradients" else {}
    batch = explain(bert, TEXTS[:4], method, **opts)
    for b, text in enumerate(TEXTS[:4]):
        single = explain(bert, [text], method, **opts)
        n = int(single.player_mask[0].sum())
        assert torch.allclose(batch.values[b, :n], single.values[0], atol=1e-6, rtol=1e-4)
        assert torch.all(batch.values[b, n:] == 0)


# -- input masking -----------------------------------------------------------------------------
def test_text_masking_equals_masked_strings(bert):
    texts = TEXTS[:3]
    masker = PlayerMasker(bert, bert.prepare(texts))
    keep = masker.player_mask.clone()
    keep[0, [1, 2]] = False  # "team", "won"
    keep[2, 0] = False  # "rain"
    probs = masker.probs(torch.arange(3), keep)
    manual = bert.predict(["the [MASK] [MASK] the cup final", "stocks fell",
                           "[MASK] is not good for the match"])
    assert torch.allclose(probs, manual, atol=1e-5)


def test_vision_masking_paints_patches(vit64, images):
    batch = vit64.prepare(images[:2])
    fill = torch.tensor([0.5, -1.0, 2.0])
    masker = PlayerMasker(vit64, batch, fill)
    keep = masker.player_mask.clone()
    keep[0, 9] = False  # patch (1, 1): rows and columns 8..15
    px = masker.masked_inputs(torch.arange(2), keep)["pixel_values"]
    orig = batch.model_inputs["pixel_values"]
    assert torch.allclose(px[0, :, 8:16, 8:16], fill.view(3, 1, 1).expand(3, 8, 8))
    changed = (px != orig).any(1)
    assert changed[0].sum() <= 64 and not changed[0, :8].any() and not changed[1].any()
    # Default fill: each image's own mean colour.
    own = PlayerMasker(vit64, batch).masked_inputs(torch.arange(2), keep)["pixel_values"]
    assert torch.allclose(own[0, :, 8, 8], orig[0].mean(dim=(1, 2)), atol=1e-6)


def test_input_shapley_is_efficient_both_exact_and_sampled(bert):
    texts = TEXTS[:2]  # 6 and 2 word pieces
    exact = explain(bert, texts, "input-shapley")
    sampled = explain(bert, texts, "input-shapley", exact_max=0, permutations=20)
    masker = PlayerMasker(bert, bert.prepare(texts))
    pm = masker.player_mask
    p = masker.probs_grid(torch.stack([pm, torch.zeros_like(pm)], 1))
    y = exact.target
    gap = (p[:, 0] - p[:, 1]).gather(1, y[:, None])[:, 0].double()
    assert torch.allclose(exact.values.sum(1), gap, atol=1e-6)
    assert torch.allclose(sampled.values.sum(1), gap, atol=1e-6)
    assert torch.allclose(sampled.values, exact.values, atol=0.3 * float(exact.values.abs().max()))


def test_integrated_gradients_completeness(bert):
    attr = explain(bert, TEXTS[:2], "integrated-gradients", steps=64)
    masker = PlayerMasker(bert, bert.prepare(TEXTS[:2]))
    base = masker.masked_inputs(torch.arange(2), torch.zeros_like(masker.player_mask))
    with torch.no_grad():
        full = bert.model(**masker.batch.model_inputs).logits
        empty = bert.model(**base).logits
    y = attr.target[:, None]
    gap = (full.gather(1, y) - empty.gather(1, y))[:, 0].double()
    assert torch.allclose(attr.values.sum(1), gap, rtol=0.02, atol=1e-4)


# -- vision ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_vision_methods_give_one_value_per_patch(vit64, images, method):
    opts = {"permutations": 2} if method == "input-shapley" else {}
    attr = explain(vit64, images[:2], method, **opts)
    assert attr.values.shape == (2, 64) and attr.player_mask.all()
    assert torch.isfinite(attr.values).all()
    assert attr.positions[0].tolist() == list(range(1, 65))
    rec = attr.records(0)
    assert (rec[9]["row"], rec[9]["col"]) == (1, 1) and rec[9]["player"] == "patch (1, 1)"


def test_vision_evaluation_uses_the_dataset_mean_colour(vit64, images):
    fill = mean_fill(vit64, images[:3])
    px = vit64.prepare(images[:3]).model_inputs["pixel_values"]
    assert torch.allclose(fill, px.mean(dim=(0, 2, 3)), atol=1e-5)
    rows = evaluate_methods(vit64, images[:3], None, ["rollout", "integrated-gradients"],
                            batch_size=2)
    assert [r.method for r in rows] == ["rollout", "integrated-gradients"]
    assert all(math.isfinite(r.comprehensiveness) and math.isfinite(r.sufficiency)
               and r.f1_at_20 is None for r in rows)


def test_vision_attention_shapley_efficiency(vit64, images):
    cap = vit64.capture(images[:2], grads=False)
    game = aggregate_attention(cap)
    attr = explain(vit64, images[:2], "attention-shapley", game="mutual")
    for b in range(2):
        M = game.matrix[b]
        total = (torch.triu(M + M.T, diagonal=1)).sum()
        assert torch.allclose(attr.values[b].sum(), total, atol=1e-9)


# -- errors ------------------------------------------------------------------------------------
def test_explain_errors(bert):
    with pytest.raises(UserInputError, match="Unknown method 'shap'"):
        explain(bert, TEXTS[:1], "shap")
    with pytest.raises(UserInputError, match="does not take game"):
        explain(bert, TEXTS[:1], "rollout", game="mutual")
    with pytest.raises(UserInputError, match="Unknown attention source"):
        explain(bert, TEXTS[:1], "raw-attention", source="value")
    with pytest.raises(UserInputError, match="Unknown game"):
        explain(bert, TEXTS[:1], "attention-shapley", game="sum")
