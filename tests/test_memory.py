"""Bounded memory: example activations on disk a layer at a time, the activation cache's cap
on a whole audit's activations, captures split to stay within their budget."""

from __future__ import annotations

import gc

import pytest
import torch

from attnxai.models import base as base_mod
from attnxai.models import load_model
from attnxai.tcav.run import example_tables
from attnxai.tcav.spill import LayerTables, MappedTables

from conftest import TEXTS


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_model(str(tiny_bert_dir), device="cpu", batch_size=4)


def test_spilled_tables_hold_each_layers_player_rows(bert):
    tables = example_tables(bert, TEXTS, [2, 0], batch_size=4, progress=None)
    assert isinstance(tables, LayerTables) and len(tables) == 2
    cap = bert.capture(TEXTS, grads=False, batch_size=len(TEXTS))
    want_owner = torch.arange(len(TEXTS))[:, None].expand_as(cap.valid_mask)[cap.valid_mask]
    for table, layer in zip(tables, [2, 0]):
        torch.testing.assert_close(table.rows, cap.activations[layer][cap.valid_mask],
                                   atol=1e-5, rtol=1e-5)
        assert torch.equal(table.example, want_owner)
    # A lazy edit applies per layer, when that layer is asked for.
    seen = []
    edited = MappedTables(tables, lambda t: seen.append(1) or t.select({0: torch.tensor(
        [True] + [False] * (int((t.example == 0).sum()) - 1))}))
    assert seen == [] and int((edited[1].example == 0).sum()) == 1 and seen == [1]


def test_spilled_files_go_with_their_tables(bert):
    tables = example_tables(bert, TEXTS, [0, 1], batch_size=4, progress=None)
    folder = tables.folder
    assert sorted(p.name for p in folder.iterdir()) == ["0.f32", "1.f32"]
    del tables
    gc.collect()
    assert not folder.exists()


def test_a_split_capture_equals_one_pass(bert, monkeypatch):
    """Over its memory budget a batch is captured in smaller passes; the activations, the
    gradients and the logits are those of one pass."""
    whole = bert.capture(TEXTS, target="positive", batch_size=len(TEXTS))
    one = base_mod.capture_bytes(bert.num_layers, bert.width, bert.num_heads,
                                 whole.valid_mask.shape[1], True, True)
    monkeypatch.setattr(base_mod, "CAPTURE_BUDGET_BYTES", 2 * one)  # two inputs a pass
    calls = []
    real = bert.forward_recording
    monkeypatch.setattr(bert, "forward_recording",
                        lambda batch: calls.append(len(batch.valid_mask)) or real(batch))
    split = bert.capture(TEXTS, target="positive", batch_size=len(TEXTS))
    assert calls and max(calls) <= 2 and sum(calls) == len(TEXTS)
    torch.testing.assert_close(split.logits, whole.logits, atol=1e-5, rtol=1e-5)
    m = whole.valid_mask
    assert torch.equal(split.valid_mask, m)
    for name in ("activations", "grad_activations"):
        for a, b in zip(getattr(split, name), getattr(whole, name)):
            torch.testing.assert_close(a[m], b[m], atol=1e-5, rtol=1e-4)


def test_activations_over_the_cache_cap_are_not_cached(bert, tmp_path):
    """An audit whose activations exceed the cap would evict its own first layers to store
    its last: none are stored, a note says why, and the tables are complete anyway."""
    from attnxai.audit.actcache import CachedActivations
    from attnxai.audit.store import Store

    items, layers = TEXTS, [0, 1, 2]
    one_layer = len(example_tables(bert, items, [0], 4, None)[0].rows) * bert.width * 4
    small = Store(tmp_path / "small.duckdb", cache_max_bytes=2 * one_layer)
    acts = CachedActivations(small, bert, "m", batch_size=4)
    tables = acts(items, layers)
    assert acts.computed == len(items) and len(acts.notes) == 1 and "cap" in acts.notes[0]
    assert small.cached_keys("m", [], layers) == set()
    assert small.cache_info().empty
    roomy = Store(tmp_path / "roomy.duckdb", cache_max_bytes=4 * one_layer)
    first = CachedActivations(roomy, bert, "m", batch_size=4)(items, layers)
    again = CachedActivations(roomy, bert, "m", batch_size=4)
    served = again(items, layers)
    assert again.cached == len(items) and again.computed == 0 and again.notes == []
    for a, b, c in zip(tables, first, served):
        assert torch.equal(a.rows, b.rows) and torch.equal(b.rows, c.rows)
        assert torch.equal(a.example, c.example)


def test_capture_estimate_grows_with_what_is_kept():
    plain = base_mod.capture_bytes(12, 768, 12, 197, grads=False, full_attention=False)
    assert plain == 12 * 197 * 768 * 4  # the activations alone
    assert base_mod.capture_bytes(12, 768, 12, 197, False, True) == plain + 12 * 197 * 12 * 197 * 4
    # ViT-B/16 with gradients: some 190 MB an image, so a 1 GiB pass holds 5 images.
    grads = base_mod.capture_bytes(12, 768, 12, 197, grads=True, full_attention=False)
    assert 150e6 < grads < 250e6
