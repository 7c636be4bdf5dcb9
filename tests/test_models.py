"""Adapters on tiny random HF BERT, HF ViT and timm ViT models loaded through the real paths.

Gradients are checked against an independent recomputation (autograd through zero
perturbations inserted by separate hooks) and by central finite differences.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import attnxai
from attnxai.errors import ModelLoadError, UserInputError
from conftest import LABELS, TEXTS


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def hf_vit(tiny_hf_vit_dir):
    return attnxai.load_model(str(tiny_hf_vit_dir), device="cpu")


@pytest.fixture(scope="module")
def timm_vit(tiny_timm_ckpt):
    return attnxai.load_model(f"timm:vit_tiny_patch16_224@{tiny_timm_ckpt}", device="cpu")


@pytest.fixture(params=["bert", "hf_vit", "timm_vit"])
def case(request, images):
    adapter = request.getfixturevalue(request.param)
    inputs = TEXTS if adapter.modality == "text" else images
    return adapter, inputs


# -- independent recomputation -------------------------------------------------------------------
@contextmanager
def attention_perturbation(adapter, deltas: list):
    """Add a zero tensor (a grad leaf) to every layer's attention probabilities.

    timm: a hook on ``attn.attn_drop``; Hugging Face: the module-level eager attention
    function is swapped for one that adds the perturbation before multiplying V.
    """
    def add(probs):
        d = torch.zeros_like(probs, requires_grad=True)
        deltas.append(d)
        return probs + d

    if adapter.card.get("kind") == "timm" or hasattr(adapter, "blocks"):
        handles = [b.attn.attn_drop.register_forward_hook(lambda m, i, o: add(o))
                   for b in adapter.block_modules()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
        return
    import importlib

    mod = importlib.import_module(type(adapter.model).__module__)
    original = mod.eager_attention_forward

    def patched(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        _, w = original(module, query, key, value, attention_mask, scaling=scaling, dropout=0.0, **kw)
        w = add(w)
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w

    mod.eager_attention_forward = patched
    try:
        yield
    finally:
        mod.eager_attention_forward = original


@contextmanager
def block_offsets(adapter, offsets: dict[int, torch.Tensor]):
    """Add a tensor to the output of chosen blocks (by forward hooks)."""
    def hook_for(layer):
        def hook(module, inputs, output):
            if isinstance(output, tuple):
                return (output[0] + offsets[layer],) + tuple(output[1:])
            return output + offsets[layer]
        return hook

    blocks = adapter.block_modules()
    handles = [blocks[l].register_forward_hook(hook_for(l)) for l in offsets]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def target_logit_sum(adapter, batch, target) -> torch.Tensor:
    logits = adapter.forward_logits(batch)
    return logits.gather(1, target[:, None]).sum()


def test_capture_shapes_and_attention_rows(case):
    adapter, inputs = case
    cap = adapter.capture(inputs)
    B = len(inputs)
    T = cap.valid_mask.shape[1]
    assert cap.logits.shape == (B, len(adapter.labels)) == cap.probs.shape
    assert len(cap.activations) == len(cap.attentions) == adapter.num_layers
    assert len(cap.grad_activations) == len(cap.grad_attentions) == adapter.num_layers
    for l in range(adapter.num_layers):
        assert cap.activations[l].shape[:2] == (B, T)
        assert cap.attentions[l].shape == (B, adapter.num_heads, T, T)
        assert cap.grad_activations[l].shape == cap.activations[l].shape
        assert cap.grad_attentions[l].shape == cap.attentions[l].shape
        rows = cap.attentions[l].sum(-1)  # [B,H,T]
        real_rows = cap.token_mask[:, None, :].expand_as(rows)
        torch.testing.assert_close(rows[real_rows], torch.ones(int(real_rows.sum())), atol=1e-5, rtol=0)
        # Padding keys get no attention from real queries.
        to_pad = ~cap.token_mask[:, None, None, :] & cap.token_mask[:, None, :, None]
        assert cap.attentions[l].masked_select(to_pad).abs().sum() < 1e-6
    torch.testing.assert_close(cap.probs.sum(-1), torch.ones(B))
    assert torch.equal(cap.target, cap.logits.argmax(-1))


def test_gradients_match_independent_autograd(case):
    adapter, inputs = case
    cap = adapter.capture(inputs, target=1)
    batch = adapter.prepare(inputs)
    target = torch.full((len(inputs),), 1)
    # Block outputs: autograd w.r.t. zero offsets added by separate hooks.
    L = adapter.num_layers
    act_shapes = [a.shape for a in cap.activations]
    offsets = {l: torch.zeros(act_shapes[l], requires_grad=True) for l in range(L)}
    with block_offsets(adapter, offsets):
        g_act = torch.autograd.grad(target_logit_sum(adapter, batch, target),
                                    [offsets[l] for l in range(L)], allow_unused=True)
    real = cap.token_mask[:, :, None]
    for l in range(L):
        expected = torch.zeros(act_shapes[l]) if g_act[l] is None else g_act[l]
        torch.testing.assert_close(cap.grad_activations[l], expected * real, atol=1e-6, rtol=1e-4)
    # Attention probabilities: same with perturbations added inside attention.
    deltas: list[torch.Tensor] = []
    with attention_perturbation(adapter, deltas):
        objective = target_logit_sum(adapter, batch, target)
    assert len(deltas) == L
    g_att = torch.autograd.grad(objective, deltas, allow_unused=True)
    pairs = (cap.token_mask[:, :, None] & cap.token_mask[:, None, :])[:, None]
    for l in range(L):
        expected = torch.zeros_like(deltas[l]) if g_att[l] is None else g_att[l]
        torch.testing.assert_close(cap.grad_attentions[l], expected * pairs, atol=1e-6, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in cap.grad_attentions)


def test_gradients_match_finite_differences(case):
    adapter, inputs = case
    cap = adapter.capture(inputs, target="positive")
    batch = adapter.prepare(inputs)
    target = torch.full((len(inputs),), LABELS.index("positive"))
    eps = 1e-2
    for layer in range(adapter.num_layers):
        g = cap.grad_activations[layer] * cap.valid_mask[..., None]
        if g.abs().max() == 0:
            continue
        b, t, j = (int(i) for i in torch.unravel_index(g.abs().argmax(), g.shape))
        values = []
        for sign in (1, -1):
            offset = torch.zeros(cap.activations[layer].shape)
            offset[b, t, j] = sign * eps
            with torch.no_grad(), block_offsets(adapter, {layer: offset}):
                values.append(adapter.forward_logits(batch)[b, target[b]].item())
        fd = (values[0] - values[1]) / (2 * eps)
        assert fd == pytest.approx(cap.grad_activations[layer][b, t, j].item(), rel=2e-2, abs=1e-4)


def test_valid_mask_excludes_specials_and_padding(bert):
    cap = bert.capture(TEXTS, grads=False)
    specials = {"[CLS]", "[SEP]", "[PAD]"}  # [UNK] stands for a real word and is a player
    for i, text in enumerate(TEXTS):
        pieces = bert.tokenizer.tokenize(text)
        assert int(cap.valid_mask[i].sum()) == len(pieces)
        valid_tokens = [tok for tok, v in zip(cap.tokens[i], cap.valid_mask[i]) if v]
        assert valid_tokens == pieces
        assert not specials & set(valid_tokens)
        # Specials ([CLS], [SEP]) are real tokens but not players; padding is neither.
        assert int(cap.token_mask[i].sum()) == len(pieces) + 2
    assert (cap.valid_mask <= cap.token_mask).all()


def test_valid_mask_vision_excludes_prefix_tokens(hf_vit, timm_vit, images):
    for adapter in (hf_vit, timm_vit):
        cap = adapter.capture(images[:2], grads=False)
        assert cap.grid == (4, 4)
        assert cap.valid_mask.shape == (2, 1 + 16)
        assert not cap.valid_mask[:, 0].any() and cap.valid_mask[:, 1:].all()


def test_batches_equal_single_items(case):
    adapter, inputs = case
    full = adapter.capture(inputs, batch_size=len(inputs))
    parts = adapter.capture(inputs, batch_size=1)
    torch.testing.assert_close(parts.logits, full.logits, atol=1e-5, rtol=1e-4)
    assert torch.equal(parts.valid_mask, full.valid_mask)
    # Padding is zeroed, so whole tensors agree, however the inputs were batched.
    for name in ("activations", "grad_activations", "attentions", "grad_attentions"):
        for a, b in zip(getattr(parts, name), getattr(full, name)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_targets_and_forward_only(bert):
    by_name = bert.capture(TEXTS[:2], target="neutral")
    by_index = bert.capture(TEXTS[:2], target=1)
    per_input = bert.capture(TEXTS[:2], target=["neutral", 1])
    for other in (by_index, per_input):
        for a, b in zip(by_name.grad_activations, other.grad_activations):
            assert torch.equal(a, b)
    assert by_name.target.tolist() == [1, 1]
    fwd = bert.capture(TEXTS[:2], grads=False)
    assert fwd.grad_activations is None and fwd.grad_attentions is None
    assert not fwd.activations[0].requires_grad
    torch.testing.assert_close(bert.predict(TEXTS[:2]), fwd.probs)
    with pytest.raises(UserInputError, match="Unknown class 'nope'.*negative, neutral, positive"):
        bert.capture(TEXTS[:1], target="nope")
    with pytest.raises(UserInputError, match="out of range"):
        bert.capture(TEXTS[:1], target=7)
    with pytest.raises(ValueError, match="2 targets for 1 inputs") as info:  # a caller's bug
        bert.capture(TEXTS[:1], target=[0, 1])
    assert not isinstance(info.value, UserInputError)


def test_adapter_attributes(bert, hf_vit, timm_vit):
    assert (bert.modality, bert.num_layers, bert.num_heads, bert.labels) == ("text", 3, 4, LABELS)
    assert (hf_vit.modality, hf_vit.num_layers, hf_vit.num_heads, hf_vit.labels) == ("image", 2, 2, LABELS)
    assert (timm_vit.modality, timm_vit.num_layers, timm_vit.labels) == ("image", 2, LABELS)
    assert bert.pooling == hf_vit.pooling == timm_vit.pooling == "cls"
    assert all(not b.attn.fused_attn for b in timm_vit.block_modules())


# -- bad inputs ---------------------------------------------------------------------------------
def test_bad_text_inputs(bert):
    with pytest.raises(UserInputError, match="Text input 1 is empty"):
        bert.capture(["fine", "   "])
    with pytest.raises(TypeError, match="not a single string"):  # a caller's bug
        bert.capture("just one string")
    with pytest.raises(UserInputError, match="No inputs"):
        bert.capture([])


def test_bad_image_inputs(timm_vit, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    with pytest.raises(attnxai.DataError, match="broken.png"):
        timm_vit.capture([bad])
    with pytest.raises(attnxai.DataError, match="missing.png"):
        timm_vit.capture([tmp_path / "missing.png"])


def test_bad_model_specs(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    cases = [
        ("", "No model given"),
        ("builtin:nope", "Unknown built-in model 'builtin:nope'"),
        (str(tmp_path / "nothing"), "No such model folder"),
        ("timm:not_a_model_xyz", "timm has no model named 'not_a_model_xyz'"),
        ("timm:vit_tiny_patch16_224@" + str(tmp_path / "w.safetensors"), "Checkpoint not found"),
        ("nobody-xyz/not-cached-model", "nor in the local Hugging Face cache.*never downloads"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((str(tmp_path / "empty"), "not a Hugging Face model folder"))
    pickle_dir = tmp_path / "pickled"
    pickle_dir.mkdir()
    (pickle_dir / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    (pickle_dir / "pytorch_model.bin").write_bytes(b"not loaded")
    cases.append((str(pickle_dir), "only pickle weights"))
    for spec, message in cases:
        with pytest.raises(ModelLoadError, match=message):
            attnxai.load_model(spec)


def test_bad_checkpoints(tmp_path, tiny_timm_ckpt):
    pkl = tmp_path / "w.pkl"
    pkl.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="Unsupported checkpoint type '.pkl'"):
        attnxai.load_model(f"timm:vit_tiny_patch16_224@{pkl}")
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelLoadError, match="Could not read checkpoint"):
        attnxai.load_model(f"timm:vit_tiny_patch16_224@{corrupt}")
    # Weights of another shape (no sidecar JSON): a clear mismatch message, not a stack trace.
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(tiny_timm_ckpt.read_bytes())
    with pytest.raises(ModelLoadError, match="does not fit timm model 'vit_tiny_patch16_224'"):
        attnxai.load_model(f"timm:vit_tiny_patch16_224@{bare}")
    # torch files load with weights_only=True: a pickled object is refused.
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, evil)
    with pytest.raises(ModelLoadError, match="Could not read checkpoint"):
        attnxai.load_model(f"timm:vit_tiny_patch16_224@{evil}")
