"""Causal concept effects: exactness of activation patching and CAV interventions on tiny
models of every adapter family, the paired tests' calibration on simulated nulls and their
exact enumeration, the text alignment rule, and planted ground truth (a text trigger trained
in the test; the shipped shapes-vit's planted stripes against its control colour).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import attnxai
from attnxai.effects.intervention import cav_intervention, first_order_intervention
from attnxai.effects.output import pair_outputs, summarise_pairs
from attnxai.effects.patching import patch_pairs
from attnxai.models.pairs import _text_alignment, batch_alignment
from attnxai.models.patching import patched_blocks, record_block_outputs
from attnxai.stats import paired_p_values
from conftest import LABELS


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def hf_vit(tiny_hf_vit_dir):
    return attnxai.load_model(str(tiny_hf_vit_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def timm_vit(tiny_timm_ckpt):
    return attnxai.load_model(f"timm:vit_tiny_patch16_224@{tiny_timm_ckpt}", device="cpu",
                              batch_size=4)


# Equal-length sentences that differ in one word: every token aligns.
WITH = ["the team won the cup final", "stocks rose", "rain is good for the match",
        "bank rates rose", "a new player scored the goal"]
WITHOUT = ["the team lost the cup final", "stocks fell", "rain is bad for the match",
           "bank rates fell", "a new player scored the match"]


@pytest.fixture(params=["bert", "hf_vit", "timm_vit"])
def pairs(request, images):
    adapter = request.getfixturevalue(request.param)
    if adapter.modality == "text":
        return adapter, WITH, WITHOUT
    return adapter, images[:3], images[2:5]


def test_patching_every_token_reproduces_the_donor(pairs):
    """Replacing block l's whole output by the other member's, at any layer, continues the
    other member's own computation: restore gives f(x_with), remove gives f(x_without)."""
    adapter, a, b = pairs
    res = patch_pairs(adapter, a, b, tokens="all", batch_size=2)
    L = adapter.num_layers
    assert res.restore_logits.shape == (len(a), L, len(adapter.labels))
    torch.testing.assert_close(res.restore_logits, res.with_logits[:, None].expand(-1, L, -1),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(res.remove_logits, res.without_logits[:, None].expand(-1, L, -1),
                               atol=1e-5, rtol=0)
    # And the plain logits are the adapter's own predictions.
    torch.testing.assert_close(res.with_logits.softmax(-1), adapter.predict(list(a)), atol=1e-5, rtol=0)


def test_patching_every_layer_at_once_and_patching_nothing(pairs):
    adapter, a, b = pairs
    batch_a, batch_b = adapter.prepare(list(a)), adapter.prepare(list(b))
    logits_a, rec_a = record_block_outputs(adapter, batch_a)
    logits_b, rec_b = record_block_outputs(adapter, batch_b)
    if adapter.modality == "text":  # equal token counts are needed to swap whole outputs
        assert batch_a.token_mask.shape == batch_b.token_mask.shape
    edits = {l: (lambda h, src=rec_a[l][0] if isinstance(rec_a[l], tuple) else rec_a[l]: src)
             for l in range(adapter.num_layers)}
    with torch.no_grad(), patched_blocks(adapter, edits):
        every = adapter.forward_logits(batch_b)
    torch.testing.assert_close(every, logits_a, atol=1e-5, rtol=0)
    # Nothing patched: an identity edit with the replayed prefix is the plain pass.
    for layer in range(adapter.num_layers):
        with torch.no_grad(), patched_blocks(adapter, {layer: lambda h: h}, replay=rec_b):
            same = adapter.forward_logits(batch_b)
        torch.testing.assert_close(same, logits_b, atol=1e-5, rtol=0)


def test_alpha_zero_changes_nothing_and_small_alpha_matches_the_derivative(pairs):
    """Δf(α)/α → Σ_t ∇_{h_t} f_k · v over player tokens (the token-level directional
    derivatives summed), to a relative error ≤ 1e-2 for a small step (one-sided and central)."""
    adapter, a, _ = pairs
    torch.manual_seed(0)
    d = adapter.capture(list(a[:2]), grads=False).activations[0].shape[-1]
    v = torch.nn.functional.normalize(torch.randn(3, d), dim=-1)
    for layer in range(adapter.num_layers - 1):  # the last block's patches may not matter
        zero = cav_intervention(adapter, a, "neutral" if adapter.modality == "text" else 0,
                                layer, v, torch.zeros(3))
        assert zero.abs().max() < 1e-5
        cap = adapter.capture(list(a), target=0)
        # The library's first-order prediction with a unit step: TCAV's token derivatives summed.
        derivative = first_order_intervention(cap.grad_activations[layer], cap.valid_mask, v,
                                              torch.ones(3))
        # Relative error over all (input, direction) values, for a step of 1% of the layer's
        # mean token norm: small against the activations, clear of float32 rounding.
        def rel(estimate):
            return float((estimate - derivative).norm() / derivative.norm())

        players = cap.valid_mask
        alpha = 0.01 * float(cap.activations[layer][players].norm(dim=-1).mean())
        up = cav_intervention(adapter, a, 0, layer, v, torch.full((3,), alpha))
        down = cav_intervention(adapter, a, 0, layer, v, torch.full((3,), -alpha))
        assert rel((up - down) / (2 * alpha)) <= 1e-2, (layer, rel((up - down) / (2 * alpha)))
        assert rel(up / alpha) <= 1e-2, (layer, rel(up / alpha))


def test_directions_stacked_into_one_pass_equal_one_pass_per_direction(pairs):
    """Every direction of a layer in one batched pass (chunks of up to ``max_tokens`` tokens, blocks
    before the layer replayed) gives what one pass per direction gives; padding included. One
    recording of the inputs serves every layer."""
    adapter, a, _ = pairs
    torch.manual_seed(2)
    cap = adapter.capture(list(a), grads=False)
    v = torch.nn.functional.normalize(torch.randn(5, cap.activations[0].shape[-1]), dim=-1)
    recordings: dict = {}  # one recording of the inputs, replayed at every layer
    for layer in range(adapter.num_layers - 1):  # the last block's patches may not matter
        # Steps up to the layer's mean token norm: large enough to move a tiny random model.
        norm = float(cap.activations[layer][cap.valid_mask].norm(dim=-1).mean())
        alphas = torch.linspace(-1.0, 1.0, 5) * norm
        one_by_one = cav_intervention(adapter, a, 0, layer, v, alphas, max_tokens=1)
        stacked = cav_intervention(adapter, a, 0, layer, v, alphas)
        chunked = cav_intervention(adapter, a, 0, layer, v, alphas,
                                   max_tokens=2 * cap.valid_mask.numel())  # two directions a pass
        shared = cav_intervention(adapter, a, 0, layer, v, alphas, recordings=recordings)
        scale = float(one_by_one.abs().max())
        assert scale > 0  # the directions do move the logit
        torch.testing.assert_close(stacked, one_by_one, atol=1e-4 * scale, rtol=0)
        torch.testing.assert_close(chunked, one_by_one, atol=1e-4 * scale, rtol=0)
        torch.testing.assert_close(shared, stacked, atol=1e-6 * scale, rtol=0)
        assert recordings and all(len(r.replay) == adapter.num_layers
                                  for r in recordings.values())


def test_the_last_block_in_the_read_rows_gives_the_whole_blocks_logits(pairs):
    """An edit's pass computes the last block in the rows the head reads only (BERT's and
    ViT's layouts; timm's runs whole): the same logits as the whole block at every edited
    layer, padding included, and the last block's feed-forward sees one row per input."""
    from attnxai.models import last_block
    from attnxai.models.last_block import read_positions

    adapter, a, _ = pairs
    batch = adapter.prepare(list(a))
    _, replay = record_block_outputs(adapter, batch)
    rows = read_positions(adapter.pooling, batch.token_mask)
    assert rows.shape == (len(a), 1)
    last = adapter.block_modules()[-1]
    layout = last_block.layout(last)
    kind = "timm" if adapter.spec.startswith("timm:") else adapter.modality
    assert layout == {"text": "post", "image": "pre", "timm": None}[kind]
    seen: list[int] = []
    ffn = None if layout is None else (last.intermediate if layout == "post" else last.mlp)
    hook = None if ffn is None else ffn.register_forward_hook(
        lambda m, i, o: seen.append(i[0].shape[1]))
    try:
        for layer in range(adapter.num_layers - 1):
            edit = {layer: lambda h: h + 0.5}
            with patched_blocks(adapter, edit, replay=replay):
                whole = adapter.forward_logits(batch)
            seen.clear()
            with patched_blocks(adapter, edit, replay=replay, rows=rows):
                read = adapter.forward_logits(batch)
            torch.testing.assert_close(read, whole, atol=1e-5 * float(whole.abs().max()), rtol=0)
            if layout is not None:  # (on first use, the whole block also ran: the check)
                assert seen[0] == 1 and seen[1:] in ([], [batch.token_mask.shape[1]])
                assert last_block._CHECKED[last] is True
        if layout is not None:  # checked once: from then on, the rows alone
            seen.clear()
            with patched_blocks(adapter, {0: lambda h: h + 0.5}, replay=replay, rows=rows):
                adapter.forward_logits(batch)
            assert seen == [1]
    finally:
        if hook is not None:
            hook.remove()


def test_the_block_after_an_edit_takes_its_projections_from_the_recording(bert, monkeypatch):
    """After an intervention's edit, BERT's next block gets its query, key and value from the
    recorded input's projections plus each direction's (they are linear in the input): the
    same effects as projecting every stacked row, padding included, checked on first use."""
    from contextlib import nullcontext

    from attnxai.effects import intervention
    from attnxai.models import shifted_input

    torch.manual_seed(3)
    texts = WITH + ["the market", "a goal"]  # of mixed length: padded
    v = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    cap = bert.capture(texts, grads=False)
    norm = float(cap.activations[0][cap.valid_mask].norm(dim=-1).mean())
    alphas = torch.tensor([1.0, -0.5, 0.25, 2.0]) * norm  # large enough to move a tiny model
    given = cav_intervention(bert, texts, "neutral", 0, v, alphas)
    own = bert.block_modules()[1].attention.self
    assert all(shifted_input._CHECKED[m] is True for m in (own.query, own.key, own.value))
    monkeypatch.setattr(intervention, "shifted_input", lambda *a: nullcontext())
    projected = cav_intervention(bert, texts, "neutral", 0, v, alphas)
    scale = float(projected.abs().max())
    assert scale > 0  # the directions do move the logit
    torch.testing.assert_close(given, projected, atol=1e-4 * scale, rtol=0)


def _broken(*args):
    raise RuntimeError("shape mismatch")


@pytest.mark.parametrize("how", ["differ", "raise"])
def test_a_last_block_whose_rows_differ_runs_whole(bert, monkeypatch, how):
    """Where the rows computed alone do not match the whole block on first use, or cannot be
    computed (a library version that changed the layout), the block runs whole from then on:
    same logits."""
    from attnxai.models import last_block
    from attnxai.models.last_block import read_positions

    last = bert.block_modules()[-1]
    monkeypatch.setattr(last_block, "_CHECKED", last_block.weakref.WeakKeyDictionary())
    real = last_block._rows
    monkeypatch.setattr(last_block, "_rows",
                        (lambda *a: real(*a) + 1.0) if how == "differ" else _broken)
    batch = bert.prepare(WITH)
    _, replay = record_block_outputs(bert, batch)
    edit = {0: lambda h: h + 0.5}
    with patched_blocks(bert, edit, replay=replay):
        whole = bert.forward_logits(batch)
    for _ in range(2):
        with patched_blocks(bert, edit, replay=replay,
                            rows=read_positions(bert.pooling, batch.token_mask)):
            torch.testing.assert_close(bert.forward_logits(batch), whole)
    assert last_block._CHECKED[last] is False


def test_intervention_moves_the_concept_and_its_null_by_the_concepts_step(bert):
    """intervention_values pushes every concept CAV and every null CAV by the concept's mean
    gap: each value equals a direct intervention along that CAV by that step, and not the
    null CAV's own gap."""
    from attnxai.effects.config import EffectsConfig
    from attnxai.effects.run import intervention_values, spread

    torch.manual_seed(1)
    d = bert.capture(WITH[:1], grads=False).activations[0].shape[-1]
    concept = torch.nn.functional.normalize(torch.randn(3, d), dim=-1)
    null = torch.nn.functional.normalize(torch.randn(4, d), dim=-1)
    gaps = torch.tensor([0.5, 1.0, 1.5])
    values, null_values = intervention_values(bert, WITH, "neutral", 1, concept, gaps, null,
                                              EffectsConfig(intervention_inputs=3))
    moved = [WITH[i] for i in spread(len(WITH), 3)]  # the first, the last and one between
    assert len(WITH) > 3 and moved[0] == WITH[0] and moved[-1] == WITH[-1]
    direct = cav_intervention(bert, moved, "neutral", 1, torch.cat([concept, null]),
                              torch.full((7,), 1.0)).mean(0).numpy()
    np.testing.assert_allclose(np.concatenate([values, null_values]), direct, atol=1e-6)
    smaller = cav_intervention(bert, moved, "neutral", 1, null, torch.full((4,), 0.1))
    assert not np.allclose(null_values, smaller.mean(0).numpy(), atol=1e-6)


def test_text_alignment_rule():
    """Substitutions align token by token; an insertion patches its aligned neighbours."""
    the, shop, is_, not_, open_ = 1, 2, 3, 4, 5
    a = [0, the, shop, is_, not_, open_, 9]  # [CLS] the shop is not open [SEP]
    b = [0, the, shop, is_, open_, 9]
    assert _text_alignment(a, b, "differing") == ([3, 5], [3, 4])
    assert _text_alignment(a, b, "all") == ([0, 1, 2, 3, 5, 6], [0, 1, 2, 3, 4, 5])
    assert _text_alignment([0, 1, 2, 9], [0, 1, 7, 9], "differing") == ([2], [2])


def test_aligned_positions_on_images_are_the_changed_patches(timm_vit, images):
    from PIL import Image

    img = Image.open(images[0]).convert("RGB").resize((32, 32))
    edited = img.copy()
    edited.paste((255, 0, 0), (0, 0, 8, 8))  # the top-left 8x8 patch only
    (pos_a, pos_b), = batch_alignment(timm_vit.prepare([edited]), timm_vit.prepare([img]))
    prefix = timm_vit.prepare([img]).token_mask.shape[1] - 16
    assert pos_a.tolist() == pos_b.tolist() == [prefix]


def test_sign_flip_exact_enumeration_matches_hand_count():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, size=8)
    means = np.array([np.mean(np.array(s) * d) for s in itertools.product([-1, 1], repeat=8)])
    expected = np.mean(np.abs(means) >= abs(d.mean()) - 1e-12)
    assert paired_p_values(d) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("test", ["sign_flip", "wilcoxon"])
def test_paired_tests_are_calibrated_on_symmetric_nulls_and_have_power(test):
    rng = np.random.default_rng(0)
    null = rng.standard_t(df=3, size=(30, 400))  # heavy-tailed, symmetric around 0
    p = paired_p_values(null, test)
    rate = float(np.mean(p < 0.05))
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)
    shifted = paired_p_values(rng.normal(0.8, 1.0, size=(30, 50)), test)
    assert np.mean(shifted < 0.05) > 0.9


def test_summary_interval_and_degenerate_pairs():
    s = summarise_pairs(np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]))
    assert s.mean.tolist() == [2.0, 0.0] and s.p_value[1] == 1.0
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert s.ci_low[0] == pytest.approx(2 - half) and s.ci_high[0] == pytest.approx(2 + half)


# -- planted ground truth ------------------------------------------------------------------------
TRIGGER, CONTROL, FILLER = "bank", "rain", ["the", "a", "team", "match", "city", "game", "new",
                                             "market", "player", "price", "share", "sun"]


def _sentences(rng, n, word=None):
    out = []
    for _ in range(n):
        words = list(rng.choice(FILLER, size=5))
        if word is not None:
            words[int(rng.integers(5))] = word
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="module")
def trigger_model(tiny_bert_dir, tmp_path_factory):
    """The tiny BERT trained here on a planted trigger: 'positive' iff the word 'bank' occurs;
    'rain' occurs as often in both classes and is never predictive."""
    from transformers import BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tok = BertTokenizer.from_pretrained(tiny_bert_dir)
    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    texts, labels = [], []
    for _ in range(600):
        trig, ctrl = rng.random() < 0.5, rng.random() < 0.5
        words = list(rng.choice(FILLER, size=5))
        if trig:
            words[int(rng.integers(5))] = TRIGGER
        if ctrl:
            words[int(rng.integers(5))] = CONTROL
        texts.append(" ".join(words))
        labels.append(2 if TRIGGER in words else 0)
    enc = tok(texts, padding=True, return_tensors="pt")
    y = torch.tensor(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(150):
        idx = torch.from_numpy(rng.choice(len(texts), 64, replace=False))
        loss = model(**{k: v[idx] for k, v in enc.items()}, labels=y[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = tmp_path_factory.mktemp("trigger_bert")
    model.eval().save_pretrained(d)
    tok.save_pretrained(d)
    return attnxai.load_model(str(d), device="cpu")


def test_text_trigger_pairs_are_significant_and_control_pairs_are_not(trigger_model):
    rng = np.random.default_rng(1)
    base = _sentences(rng, 30)
    k = LABELS.index("positive")

    def substituted(word):
        out = []
        for s in base:
            words = s.split()
            words[int(rng.integers(5))] = word
            out.append(" ".join(words))
        return out

    # Same sentence, one word replaced: by the trigger (with) or by a filler word (without).
    filler = substituted("city")
    for word, expect in ((TRIGGER, True), (CONTROL, False)):
        with_items = [f.replace("city", word, 1) for f in filler]
        out = pair_outputs(trigger_model, with_items, filler)
        s = summarise_pairs(out.delta_prob[:, k].numpy())
        assert (s.p_value < 0.01 and s.mean > 0.3) if expect else (s.p_value > 0.05), (word, s)
        # Against a minimum relevant effect of 0.02: the trigger is shown beyond it, the control
        # is not.
        relevant = summarise_pairs(out.delta_prob[:, k].numpy(), min_effect=0.02)
        assert (relevant.p_value < 0.01) if expect else (relevant.p_value > 0.05), word
    # Patching the trigger's token at layer 0 restores most of its effect.
    with_items = [f.replace("city", TRIGGER, 1) for f in filler]
    res = patch_pairs(trigger_model, with_items, filler)
    total = float((res.with_logits - res.without_logits)[:, k].mean())
    assert float(res.restored(k)[:, 0].mean()) / total > 0.5


@pytest.mark.slow
def test_shapes_vit_planted_stripes_have_an_output_effect_and_red_does_not():
    """Ground truth of the shipped model: striped-objects pairs raise P(triangle) significantly;
    the control red-objects pairs do not (docs/method.md §7)."""
    from attnxai.io.concepts import load_concept_set

    adapter = attnxai.load_model("builtin:shapes-vit", device="cpu")
    k = adapter.labels.index("triangle")
    striped, red = load_concept_set("striped-objects"), load_concept_set("red-objects")
    s = summarise_pairs(pair_outputs(adapter, striped.examples, striped.counterexamples)
                        .delta_prob[:, k].numpy())
    assert s.mean > 0.15 and s.p_value < 1e-3 and s.ci_low > 0
    c = summarise_pairs(pair_outputs(adapter, red.examples, red.counterexamples)
                        .delta_prob[:, k].numpy())
    assert c.p_value > 0.05
    layers = patch_pairs(adapter, striped.examples, striped.counterexamples)
    restored = layers.restored(k).mean(0)
    total = float((layers.with_logits - layers.without_logits)[:, k].mean())
    # Early layers carry the stripes on the object's patches; the last block's patch tokens
    # no longer reach the [CLS]-read head.
    assert float(restored[0]) / total > 0.5 and abs(float(restored[-1])) < 1e-6


def test_length_batches_cover_every_input_with_little_padding():
    from attnxai.models.lengths import length_batches

    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = rng.integers(3, 200, size=int(rng.integers(1, 80))).tolist()
        most = int(rng.integers(1, 33))
        batches = length_batches(counts, most, waste=0.1)
        assert sorted(i for b in batches for i in b) == list(range(len(counts)))
        for b in batches:
            lengths = [counts[i] for i in b]
            assert len(b) <= most
            assert 10 * sum(lengths) >= 9 * max(lengths) * len(b)  # at most 10% padding
    # Alike lengths share a batch; the long one is alone.
    assert length_batches([10, 50, 10, 11], 8) == [[0, 2, 3], [1]]


def test_interventions_on_inputs_of_mixed_length_equal_each_input_alone(bert):
    """Inputs are batched by length, not in the order given: each row is still its own
    input's, equal to intervening on that input alone (no padding at all)."""
    texts = ["stocks", "the team won the cup final after a long rain", "bank rates rose",
             "a new player scored the goal in the match", "rain", "the market fell"]
    gen = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(3, bert.width, generator=gen), dim=1)
    alphas = torch.tensor([2.0, -1.0, 3.0])
    targets = ["positive", 0, "neutral", 1, "negative", 2]
    calls = []
    batched = cav_intervention(bert, texts, targets, 1, v, alphas, batch_size=4,
                               progress=lambda done, total: calls.append((done, total)))
    # Reported per batch, counted in tokens: a pass's cost grows with them.
    tokens = sum(bert.token_counts(texts))
    assert len(calls) > 1 and all(t == tokens for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == tokens
    alone = torch.cat([cav_intervention(bert, [t], [k], 1, v, alphas)
                       for t, k in zip(texts, targets)])
    assert alone.abs().max() > 0
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
