"""Bounded memory: example activations on disk a layer at a time, the activation cache's cap
on a whole audit's activations, captures split to stay within their budget, and passes that
halve when the device runs out of memory."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import torch

from attnxai.effects.intervention import cav_intervention
from attnxai.effects.patching import patch_pairs
from attnxai.errors import DeviceMemoryError, UserInputError
from attnxai.models.oom import in_parts

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


# -- out of memory: halve and retry ----------------------------------------------------------
def _fits(most: int):
    """A pass over rows ``start .. stop`` that runs out of memory above ``most`` rows."""
    def run(start, stop):
        if stop - start > most:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {stop - start}")
        return list(range(start, stop))
    return run


def test_parts_that_run_out_of_memory_are_halved_and_the_size_kept():
    device = SimpleNamespace(device=torch.device("cpu"), pass_limits={})
    parts = list(in_parts(device, "k", 21, 16, _fits(3)))
    assert [i for part in parts for i in part] == list(range(21))  # all, in order, once
    assert max(map(len, parts)) <= 3 and device.pass_limits == {"k": 2}  # 16 -> 8 -> 4 -> 2
    # A later pass starts at the size that fitted: it never fails again.
    calls = []
    later = list(in_parts(device, "k", 5, 16,
                          lambda a, b: calls.append(b - a) or _fits(3)(a, b)))
    assert calls == [2, 2, 1] and [i for p in later for i in p] == list(range(5))
    # The last, shorter part failing halves it as well (no retry at the same size).
    tail = SimpleNamespace(device=torch.device("cpu"), pass_limits={})
    assert [len(p) for p in in_parts(tail, "k", 10, 8, _fits(1))] == [1] * 10


def test_other_errors_pass_through_and_one_input_too_many_is_said():
    device = SimpleNamespace(device=torch.device("cpu"), pass_limits={})

    def broken(start, stop):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(in_parts(device, "k", 4, 4, broken))
    assert device.pass_limits == {}
    with pytest.raises(DeviceMemoryError, match="one input per pass.*--dtype bfloat16") as e:
        list(in_parts(device, "k", 4, 4, _fits(0)))
    assert isinstance(e.value, UserInputError)  # the CLI's exit code 2
    # An inner part that fails at one still lets its outer part halve: 2 inputs x 1 direction
    # did not fit, 1 x 1 does.
    device.pass_limits.clear()
    outer = list(in_parts(device, "inputs", 4, 2, lambda a, b: list(in_parts(
        device, "directions", 3, 3, lambda c, d: _fits(1)(0, (b - a) * (d - c))))))
    assert len(outer) == 4 and device.pass_limits == {"inputs": 1, "directions": 1}


@pytest.fixture
def tight(tiny_bert_dir):
    """The tiny BERT on a 'device' whose passes run out of memory above 3 rows."""
    adapter = load_model(str(tiny_bert_dir), device="cpu", batch_size=8)

    def check(module, args):
        if args[0].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    handle = adapter.block_modules()[-1].register_forward_pre_hook(check)
    yield adapter
    handle.remove()


def test_every_pass_kind_gives_the_same_results_after_halving(tiny_bert_dir, tight):
    """Captures, predictions, CAV interventions and patching on a device that fits 3 rows a
    pass equal the same work done in passes of 8 (up to float32 rounding)."""
    roomy = load_model(str(tiny_bert_dir), device="cpu", batch_size=8)
    a, b = roomy.capture(TEXTS, target="positive"), tight.capture(TEXTS, target="positive")
    assert tight.pass_limits == {"capture with gradients": 3}  # 6 inputs -> 3
    m = a.valid_mask
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    for x, y in zip(b.grad_activations, a.grad_activations):
        torch.testing.assert_close(x[m], y[m], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tight.predict(TEXTS), roomy.predict(TEXTS), atol=1e-6, rtol=1e-5)
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(5, roomy.width, generator=gen), dim=1)
    steps = torch.full((5,), 2.0)
    torch.testing.assert_close(cav_intervention(tight, TEXTS, "positive", 1, directions, steps),
                               cav_intervention(roomy, TEXTS, "positive", 1, directions, steps),
                               atol=1e-5, rtol=1e-4)
    # Batches of alike length of at most 3 inputs fit; 5 directions stacked on them do not.
    assert tight.pass_limits.get("intervention", 3) <= 3
    assert tight.pass_limits["intervention directions"] == 1
    with_, without = TEXTS[:4], ["the team lost the cup final", "stocks rose",
                                 "rain is good for the match", "bank rates fell"]
    p, q = patch_pairs(tight, with_, without), patch_pairs(roomy, with_, without)
    torch.testing.assert_close(p.restore_logits, q.restore_logits, atol=1e-5, rtol=1e-4,
                               equal_nan=True)
    torch.testing.assert_close(p.remove_logits, q.remove_logits, atol=1e-5, rtol=1e-4,
                               equal_nan=True)


def test_a_model_that_fits_no_input_is_a_clear_cli_error(tiny_bert_dir, monkeypatch, capsys):
    """One input per pass still out of memory: exit code 2 and a sentence on what to change,
    not an internal error."""
    from attnxai.cli.main import main
    from attnxai.models.text import HFTextClassifier

    def full(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(HFTextClassifier, "forward_recording", full)
    monkeypatch.setattr(HFTextClassifier, "forward_logits", full)
    code = main(["explain", "--model", str(tiny_bert_dir), "--text", TEXTS[0], "--device",
                 "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "ran out of memory on cpu with one input per pass" in err
    assert "--dtype bfloat16" in err and "internal error" not in err
