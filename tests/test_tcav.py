"""TCAV: CAV solver vs scikit-learn, directional derivatives vs finite differences, masking,
the weighting formula, a planted text trigger, and calibration of the default test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnxai
from attnxai.tcav.cav import CAVSpec, TokenTable, split_examples, train_cavs
from attnxai.io.concepts import ConceptSet
from attnxai.tcav.scores import (capture_scores, directional_derivatives, input_scores, tcav_magnitude,
                          tcav_sign, token_weights, weighted_token_scores)
from attnxai.tcav.run import TCAVConfig, run_tcav
from conftest import TEXTS, VOCAB


def test_batched_cavs_match_sklearn():
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    E, T, d = 90, 10, 24
    acts = torch.randn(E, T, d) * torch.linspace(0.2, 3.0, d)  # anisotropic, like real activations
    acts[:30] += 0.5 * torch.randn(d)
    table = TokenTable.from_examples(acts, torch.rand(E, T) > 0.3)
    rng = np.random.default_rng(0)
    specs = [CAVSpec("c", r, "concept", np.arange(30), rng.choice(np.arange(30, 90), 30, replace=False))
             for r in range(5)]
    specs += [CAVSpec("r", r, "random", *np.split(rng.choice(np.arange(30, 90), 40, replace=False), 2))
              for r in range(5)]
    l2 = 1e-2
    fit = train_cavs(table, specs, seed=7, l2=l2)
    assert fit.converged
    X = table.rows - table.rows.mean(0)
    X = (X / (X.pow(2).sum(1).mean().sqrt() / np.sqrt(d))).numpy()
    ex = table.example.numpy()
    split_rng = np.random.default_rng(7)
    for k, spec in enumerate(specs):
        pos_tr, _, neg_tr, _ = split_examples(spec, 0.25, split_rng)
        rows = np.isin(ex, np.concatenate([pos_tr, neg_tr]))
        # Same objective: balanced class weights, penalty l2/2 |w|^2 on the mean loss.
        ref = LogisticRegression(C=1.0 / (l2 * rows.sum()), class_weight="balanced", tol=1e-8,
                                 max_iter=10000).fit(X[rows], np.isin(ex[rows], pos_tr))
        w = torch.tensor(ref.coef_[0], dtype=torch.float32)
        assert torch.nn.functional.cosine_similarity(w, fit.directions[k], dim=0) >= 0.99
    # The planted concept is separable on held-out data; random-vs-random CAVs are not.
    assert fit.accuracy[:5].min() > 0.75 and fit.accuracy[5:].mean() < 0.65


@pytest.mark.parametrize("d", [32, 256])
def test_few_row_problems_beside_wide_ones_reach_sklearns_optimum(d):
    """Problems on a few rows (matched pairs' differing tokens) are solved in their own group
    with their own preconditioner, not scored over the whole table, and at d = 256 in their 60
    rows' span: each problem, narrow or wide, reaches the optimum sklearn finds for it alone
    in all d dimensions."""
    from sklearn.linear_model import LogisticRegression

    from attnxai.tcav.cav import _row_space, _span_groups, fit_logistic_batched

    torch.manual_seed(1)
    N, l2 = 600, 1e-2
    X = torch.randn(N, d) * torch.linspace(0.1, 4.0, d)  # anisotropic
    X[:30] += 1.5 * torch.randn(d)  # the narrow problems' positives
    gen = np.random.default_rng(1)
    idx = [np.arange(60)] * 3 + [gen.choice(N, 300, replace=False) for _ in range(3)]
    n = max(len(i) for i in idx)
    rows = torch.zeros(len(idx), n, dtype=torch.long)
    y, w = torch.zeros(len(idx), n), torch.zeros(len(idx), n)
    labels = []
    for k, i in enumerate(idx):
        lab = (np.arange(len(i)) < 30) if k < 3 else gen.random(len(i)) < 0.5
        labels.append(lab)
        rows[k, :len(i)] = torch.from_numpy(np.sort(i) if k >= 3 else i)
        y[k, :len(i)] = torch.from_numpy(lab.astype(np.float32))
        pos = lab.sum()
        w[k, :len(i)] = torch.from_numpy(np.where(lab, 0.5 / pos, 0.5 / (len(i) - pos)))
    groups = _span_groups(rows, w, 2**25)
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 1, 2], [3, 4, 5]]
    assert (_row_space(X[:60])[1] is not None) == (d == 256)
    coef, _, converged = fit_logistic_batched(X, rows, y, w, l2)
    assert converged
    for k, i in enumerate(idx):
        picked = X[rows[k, :len(i)]].numpy()
        ref = LogisticRegression(C=1.0 / (l2 * len(i)), class_weight="balanced", tol=1e-10,
                                 max_iter=100000).fit(picked, labels[k])
        cos = torch.nn.functional.cosine_similarity(
            torch.tensor(ref.coef_[0], dtype=torch.float32), coef[k], dim=0)
        assert cos >= 0.999, (k, float(cos))


def test_weighting_formula_by_hand():
    s = torch.tensor([[1.0, -2.0, 3.0, 0.0]])
    a = torch.tensor([[0.5, 0.25, 0.25, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    expected = a * s * (a.norm() / (s.norm() + 1e-12))
    torch.testing.assert_close(weighted_token_scores(s, a, mask), expected)
    torch.testing.assert_close(input_scores(s, a, mask), expected.sum(-1) / 3)
    S = torch.tensor([[0.5, -0.25, 1.0, 0.0]])
    assert tcav_sign(S).item() == 0.5
    assert tcav_magnitude(S).item() == pytest.approx(1.5 / 1.75)


def test_token_weights_cls_and_mean_rows():
    A = torch.rand(2, 3, 4, 4).softmax(-1)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    a_cls = token_weights(A, mask, "cls")
    torch.testing.assert_close(a_cls[0], A[0].mean(0)[0])
    a_mean = token_weights(A, mask, "mean")
    torch.testing.assert_close(a_mean[1, :3], A[1].mean(0)[:3, :3].mean(0))
    assert a_mean[1, 3] == 0 and a_cls[1, 3] == 0


@pytest.fixture(scope="module")
def bert64(tiny_bert_dir):
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    adapter.model.double()
    return adapter


def test_directional_derivatives_equal_finite_differences(bert64):
    texts = TEXTS[:3]
    cap = bert64.capture(texts, target="positive")
    torch.manual_seed(3)
    d = cap.activations[0].shape[-1]
    cavs = torch.nn.functional.normalize(torch.randn(bert64.num_layers, 2, d), dim=-1)
    s = directional_derivatives(torch.stack(cap.grad_activations), cavs)  # [L, K, B, T]
    batch = bert64.prepare(texts)
    blocks = bert64.block_modules()
    eps = 1e-4
    for layer in range(bert64.num_layers):
        for b, t in [(0, 1), (1, 2), (2, 0)]:
            v = cavs[layer, 1].double()
            values = []
            for sign in (1, -1):
                def hook(module, inputs, output, sign=sign):
                    out = output[0] if isinstance(output, tuple) else output
                    out = out.clone()
                    out[b, t] += sign * eps * v
                    return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out
                h = blocks[layer].register_forward_hook(hook)
                with torch.no_grad():
                    values.append(bert64.forward_logits(batch)[b, 2].item())
                h.remove()
            fd = (values[0] - values[1]) / (2 * eps)
            assert s[layer, 1, b, t].item() == pytest.approx(fd, rel=1e-3, abs=1e-7)


def test_padding_changes_nothing(tiny_bert_dir):
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    short, long_ = "stocks fell", "the team won the cup final and the market rose"
    alone = adapter.capture([short], target=0)
    padded = adapter.capture([short, long_], target=0)
    assert padded.token_mask[0].sum() < padded.token_mask.shape[1]  # really padded
    torch.manual_seed(0)
    cavs = torch.nn.functional.normalize(torch.randn(adapter.num_layers, 3, 32), dim=-1)
    layers = list(range(adapter.num_layers))
    for weighting in ("attention", "plain"):
        for pooling in ("cls", "mean"):
            S1, D1 = capture_scores(alone, cavs, layers, pooling, weighting)
            S2, D2 = capture_scores(padded, cavs, layers, pooling, weighting)
            torch.testing.assert_close(S1[..., 0], S2[..., 0], atol=1e-6, rtol=1e-4)
            torch.testing.assert_close(D1[..., 0], D2[..., 0], atol=1e-7, rtol=1e-4)


# -- planted ground truth on a tiny text model trained here --------------------------------------
WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
TRIGGER, CONTROL = "goal", "rain"


def _sentence(rng: np.random.Generator, include: str | None = None) -> list[str]:
    filler = [w for w in WORDS if w not in (TRIGGER, CONTROL)]
    words = list(rng.choice(filler, size=int(rng.integers(5, 9))))
    if include:
        words[int(rng.integers(len(words)))] = include
    return words


@pytest.fixture(scope="module")
def trigger_model(tmp_path_factory):
    """A 3-layer BERT trained in seconds: class 1 iff the trigger word occurs."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                     num_labels=2, id2label={0: "other", 1: "triggered"},
                     label2id={"other": 0, "triggered": 1})
    model = BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        labels = rng.integers(0, 2, size=32)
        texts = []
        for y in labels:
            words = _sentence(rng, TRIGGER if y else None)
            if rng.random() < 0.3:  # the control word, independent of the class
                free = [i for i, w in enumerate(words) if w != TRIGGER]
                words[free[int(rng.integers(len(free)))]] = CONTROL
            texts.append(" ".join(words))
        enc = tok(texts, padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor(labels)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = tmp_path_factory.mktemp("trigger_bert")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return attnxai.load_model(str(d), device="cpu")


def _text_set(name: str, examples: list[str], counter: list[str] | None = None) -> ConceptSet:
    return ConceptSet(name=name, modality="text", examples=examples, default_pool="pool",
                      counterexamples=counter or [], paired=counter is not None)


def test_planted_text_trigger_is_found_and_control_is_not(trigger_model):
    rng = np.random.default_rng(1)
    inputs = [" ".join(_sentence(rng, TRIGGER)) for _ in range(40)]
    assert (trigger_model.predict(inputs).argmax(1) == 1).float().mean() > 0.9
    trig, trig_cf, ctrl, ctrl_cf = [], [], [], []
    for _ in range(30):
        words = _sentence(rng)
        i = int(rng.integers(len(words)))
        trig.append(" ".join(words[:i] + [TRIGGER] + words[i + 1:]))
        trig_cf.append(" ".join(words))
        words = _sentence(rng)
        ctrl.append(" ".join(words[:i] + [CONTROL] + words[i + 1:]))
        ctrl_cf.append(" ".join(words))
    pool = ConceptSet(name="pool", modality="text", kind="random_pool",
                      examples=[" ".join(_sentence(rng)) for _ in range(200)])
    concepts = [_text_set("trigger", trig, trig_cf), _text_set("control", ctrl, ctrl_cf)]
    result = run_tcav(trigger_model, inputs, "triggered", concepts, {"pool": pool},
                      TCAVConfig(num_cavs=10, num_null=200, seed=0))
    s = result.summary
    trigger = s[s.concept == "trigger"]
    # Significant with positive direction at some layer (it may read negative at another: the
    # trigger direction pushed into every token is not the same as the trigger being present).
    assert (trigger.significant & (trigger["mean"] > 0.5)).any()
    assert not s[s.concept == "control"].significant.any()
    assert set(s.columns) >= {"target", "concept", "layer", "weighting", "mean", "std", "p_value",
                              "p_adjusted", "significant", "cav_accuracy", "n_inputs"}


def test_default_test_is_calibrated_on_random_concepts(trigger_model):
    """Random-vs-random: 100 random 'concepts' from the pool, each tested as a concept."""
    rng = np.random.default_rng(5)
    pool_texts = [" ".join(_sentence(rng, TRIGGER if rng.random() < 0.3 else None)) for _ in range(400)]
    pool = ConceptSet(name="pool", modality="text", kind="random_pool", examples=pool_texts)
    concepts = [_text_set(f"random{i}", list(rng.choice(pool_texts, 20, replace=False)))
                for i in range(100)]
    inputs = [" ".join(_sentence(rng, TRIGGER)) for _ in range(20)]
    cfg = TCAVConfig(num_cavs=4, num_null=100, weighting="attention", correction="none",
                     min_accuracy=0.0, seed=1)
    s = run_tcav(trigger_model, inputs, "triggered", concepts, {"pool": pool}, cfg).summary
    false_positive_rate = (s.p_value < 0.05).mean()
    assert len(s) == 100 * trigger_model.num_layers and false_positive_rate <= 0.05


def test_concept_heatmap_text_and_vision(tiny_bert_dir, tiny_timm_ckpt, images):
    from attnxai.tcav.scores import concept_heatmap

    torch.manual_seed(0)
    bert = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    cavs = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    hm = concept_heatmap(bert, "the team won the cup", cavs, layer=1, target=0)
    assert hm.tokens == ["[CLS]", "the", "team", "won", "the", "cup", "[SEP]"]
    assert hm.valid.tolist() == [False, True, True, True, True, True, False]
    # Equal to the per-CAV maps averaged, each from the formula.
    cap = bert.capture(["the team won the cup"], target=0)
    a = token_weights(cap.attentions[1], cap.token_mask, "cls") * cap.valid_mask
    s = torch.einsum("btd,kd->kbt", cap.grad_activations[1], cavs) * cap.valid_mask
    expected = (a * s * (a.norm() / (s.norm(dim=-1, keepdim=True) + 1e-12))).mean(0)[0]
    torch.testing.assert_close(hm.values, expected)
    vit = attnxai.load_model(f"timm:vit_tiny_patch16_224@{tiny_timm_ckpt}", device="cpu")
    hm = concept_heatmap(vit, images[0], cavs, layer=0)
    assert hm.grid.shape == (4, 4) and hm.tokens is None
    torch.testing.assert_close(hm.grid.reshape(-1), hm.values[1:])
