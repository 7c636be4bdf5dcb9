"""Faithfulness metrics: a hand-computed case, top-k% selection, and the batched masked passes
of a real model against per-variant forwards of [MASK]ed strings."""

from __future__ import annotations

import pytest
import torch

import attnxai
from attnxai.explain.baselines import PlayerMasker, explain
from attnxai.explain.faithfulness import KS, evaluate_methods, faithfulness, macro_f1, top_k_mask
from conftest import LABELS, TEXTS

WEIGHTS = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.7, 0.3, 0.0, 0.0]], dtype=torch.float64)


def toy(weights: torch.Tensor):
    """A probs_fn with two classes: p(class 1) = 0.2 + 0.6 · (summed weight of kept players)."""
    def probs(keep: torch.Tensor) -> torch.Tensor:
        p1 = 0.2 + 0.6 * (keep.double() * weights[:, None, :]).sum(-1)
        return torch.stack([1 - p1, p1], -1)

    return probs


def test_hand_computed_case():
    # Item 0: 4 players; values rank them 1, 2, 3, 0. Top-k% counts: 0, 1, 1, 2 players.
    # p_y(x) = 0.8 (y = 1).
    # comprehensiveness: removing {}, {1}, {1}, {1,2} leaves p = 0.8, 0.62, 0.62, 0.5
    #   -> (0 + 0.18 + 0.18 + 0.3) / 5 = 0.132
    # sufficiency: keeping {}, {1}, {1}, {1,2} gives p = 0.2, 0.38, 0.38, 0.5
    #   -> (0.6 + 0.42 + 0.42 + 0.3) / 5 = 0.348
    # F1@20 keeps {1}: p(1) = 0.38, so the prediction flips to class 0.
    # Item 1: 2 players (a ragged batch): counts 0, 1, 1, 1; values rank player 0 first.
    # p_y(x) = 0.8; comprehensiveness: p = 0.8, 0.38 x3 -> 1.26 / 5; sufficiency: keeping
    # {} gives 0.2, keeping {0} gives 0.62 -> (0.6 + 0.18 x3) / 5.
    values = torch.tensor([[0.1, 0.9, 0.5, 0.3], [2.0, 1.0, 99.0, 99.0]], dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    f = faithfulness(values, mask, toy(WEIGHTS))
    assert torch.allclose(f.full_probability, torch.tensor([0.8, 0.8], dtype=torch.float64))
    assert torch.allclose(f.comprehensiveness, torch.tensor([0.132, 1.26 / 5], dtype=torch.float64))
    assert torch.allclose(f.sufficiency, torch.tensor([0.348, 1.14 / 5], dtype=torch.float64))
    assert f.predicted.tolist() == [1, 1]
    assert f.predictions_at_f1k.tolist() == [0, 1]


def test_ragged_item_scores_equal_their_own_batch():
    values = torch.tensor([[0.1, 0.9, 0.5, 0.3], [2.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    both = faithfulness(values, mask, toy(WEIGHTS))
    one = faithfulness(values[1:, :2], mask[1:, :2], toy(WEIGHTS[1:, :2]))
    assert torch.allclose(both.comprehensiveness[1:], one.comprehensiveness)
    assert torch.allclose(both.sufficiency[1:], one.sufficiency)


def test_top_k_mask_counts_ties_and_padding():
    values = torch.tensor([[1.0, 3.0, 3.0, 2.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0],
                           [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5 + [False] * 5, [True] * 3 + [False] * 7])
    assert top_k_mask(values, mask, 0).sum().item() == 0
    # 20% of 5 = 1 player; ties go to the earlier token; padding is never picked.
    assert top_k_mask(values, mask, 20)[0].nonzero()[:, 0].tolist() == [1]
    assert top_k_mask(values, mask, 50)[0].nonzero()[:, 0].tolist() == [1, 2, 3]  # ceil(2.5)
    assert top_k_mask(values, mask, 10)[1].nonzero()[:, 0].tolist() == [0]  # ceil(0.3)
    assert top_k_mask(values, mask, 100).sum(1).tolist() == [5, 3]


def test_macro_f1():
    # Class 0: P = 1, R = 1/2 -> F1 2/3; class 1: P = R = 2/3 -> 2/3; class 2: predicted
    # once, never gold -> 0. Macro: the mean over the three classes.
    gold = [0, 0, 1, 1, 1]
    pred = [0, 1, 1, 1, 2]
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 0.0) / 3)


# -- on a model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu", batch_size=4)


def test_masked_passes_equal_per_variant_forwards_of_masked_strings(bert):
    texts = TEXTS[:2]
    attr = explain(bert, texts, "rollout")
    masker = PlayerMasker(bert, bert.prepare(texts))
    f = faithfulness(attr.values, attr.player_mask, masker.probs_grid)
    for b, text in enumerate(texts):
        words = text.split()  # every word of these texts is one word piece of the tiny vocab
        n = len(words)
        order = sorted(range(n), key=lambda j: (-float(attr.values[b, j]), j))

        def p(kept: set[int]) -> float:
            masked = " ".join(w if j in kept else "[MASK]" for j, w in enumerate(words))
            return float(bert.predict([masked])[0, int(f.predicted[b])])

        full = p(set(range(n)))
        counts = [-(-k * n // 100) for k in KS]  # ceil
        comp = sum(full - p(set(range(n)) - set(order[:c])) for c in counts) / (len(KS) + 1)
        suff = sum(full - p(set(order[:c])) for c in counts) / (len(KS) + 1)
        assert f.comprehensiveness[b] == pytest.approx(comp, abs=1e-5)
        assert f.sufficiency[b] == pytest.approx(suff, abs=1e-5)


def test_evaluate_methods_batch_size_does_not_change_scores(bert):
    labels = [LABELS[i % 3] for i in range(len(TEXTS))]
    methods = ["attention-shapley", "rollout"]
    a = evaluate_methods(bert, TEXTS, labels, methods, batch_size=2)
    b = evaluate_methods(bert, TEXTS, labels, methods, batch_size=6)
    for ra, rb in zip(a, b):
        assert ra.method == rb.method and ra.n_inputs == len(TEXTS)
        assert ra.comprehensiveness == pytest.approx(rb.comprehensiveness, abs=1e-6)
        assert ra.sufficiency == pytest.approx(rb.sufficiency, abs=1e-6)
        assert ra.f1_at_20 == pytest.approx(rb.f1_at_20)
        assert 0.0 <= ra.f1_at_20 <= 1.0 and ra.seconds_per_input > 0
    # Labels that are not the model's classes: no F1.
    rows = evaluate_methods(bert, TEXTS[:2], ["cat", "dog"], ["rollout"])
    assert rows[0].f1_at_20 is None and rows[0].f1_full is None
