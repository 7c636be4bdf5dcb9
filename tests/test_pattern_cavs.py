"""Pattern CAVs and CAV step sizes against independent numpy computations, and the pattern
CAV's alignment with a planted direction where a filter (logistic) CAV is pulled off it."""

from __future__ import annotations

import numpy as np
import torch

from attnxai.tcav.cav import CAVSpec, TokenTable, projection_gaps, split_examples, train_cavs, train_pattern_cavs


def _table(rng, E=40, d=8):
    counts = rng.integers(1, 6, size=E)
    rows = rng.normal(size=(counts.sum(), d))
    example = np.repeat(np.arange(E), counts)
    return TokenTable(torch.tensor(rows, dtype=torch.float32), torch.tensor(example)), rows, example


def test_pattern_cav_is_the_difference_of_training_token_means():
    rng = np.random.default_rng(0)
    table, rows, example = _table(rng)
    specs = [CAVSpec("c", r, "concept", np.arange(20), np.arange(20, 40)) for r in range(4)]
    fit = train_pattern_cavs(table, specs, seed=5, holdout=0.25)
    split_rng = np.random.default_rng(5)  # the same splits, drawn independently
    for k, spec in enumerate(specs):
        pos_tr, pos_te, neg_tr, neg_te = split_examples(spec, 0.25, split_rng)
        v = rows[np.isin(example, pos_tr)].mean(0) - rows[np.isin(example, neg_tr)].mean(0)
        np.testing.assert_allclose(fit.directions[k].numpy(), v / np.linalg.norm(v), atol=1e-5)
        # Held-out accuracy: examples by mean projection against the training midpoint.
        proj = {e: rows[example == e].mean(0) @ (v / np.linalg.norm(v)) for e in range(40)}
        mid = (np.mean([proj[e] for e in pos_tr]) + np.mean([proj[e] for e in neg_tr])) / 2
        acc = (np.mean([proj[e] > mid for e in pos_te]) + np.mean([proj[e] <= mid for e in neg_te])) / 2
        assert abs(float(fit.accuracy[k]) - acc) < 1e-6


def test_projection_gap_by_hand():
    rng = np.random.default_rng(1)
    table, rows, example = _table(rng)
    specs = [CAVSpec("c", 0, "concept", np.arange(10), np.arange(10, 30)),
             CAVSpec("r", 0, "random", np.arange(30, 40), np.arange(0, 5))]
    V = torch.nn.functional.normalize(torch.randn(2, rows.shape[1]), dim=1)
    gaps = projection_gaps(table, specs, V)
    for k, spec in enumerate(specs):
        per = {e: rows[example == e].mean(0) @ V[k].numpy() for e in range(40)}
        expected = np.mean([per[e] for e in spec.positives]) - np.mean([per[e] for e in spec.negatives])
        assert abs(float(gaps[k]) - expected) < 1e-5


def test_pattern_cav_aligns_with_the_signal_where_the_filter_cav_does_not():
    """Pahde et al.'s setting: the concept adds a signal s; a distractor dimension carries large
    noise correlated with another feature. The logistic (filter) CAV cancels the distractor and
    points away from s; the pattern CAV points along s."""
    rng = np.random.default_rng(0)
    n, d = 400, 6
    s = np.zeros(d); s[0] = 1.0
    y = np.arange(n) < n // 2
    noise = rng.normal(size=(n, d))
    noise[:, 1] = 3.0 * rng.normal(size=n)
    noise[:, 0] += noise[:, 1]  # the distractor leaks into the signal's dimension
    X = noise + np.outer(y, s)
    table = TokenTable(torch.tensor(X, dtype=torch.float32), torch.arange(n))
    spec = [CAVSpec("c", 0, "concept", np.flatnonzero(y), np.flatnonzero(~y))]
    pattern = float(train_pattern_cavs(table, spec, 0).directions[0] @ torch.tensor(s, dtype=torch.float32))
    logistic = float(train_cavs(table, spec, 0, l2=1e-4).directions[0] @ torch.tensor(s, dtype=torch.float32))
    assert pattern > 0.9 and logistic < pattern - 0.1, (pattern, logistic)
