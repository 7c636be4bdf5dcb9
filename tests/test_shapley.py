"""Attention-Shapley: the closed form against brute-force enumeration, the Shapley axioms,
permutation sampling against exact values, ragged batches, and aggregation from a capture."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import attnxai
from attnxai.errors import UserInputError
from attnxai.explain.shapley import (
    aggregate_attention,
    attention_shapley,
    enumerate_shapley,
    game_value_fn,
    player_positions,
    sample_shapley,
)
from conftest import TEXTS

PAIRWISE = ("mutual", "max_mutual")


def rand_matrix(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def value(M: torch.Tensor, game: str, S: set[int]) -> float:
    """v(S) written out from docs/method.md §1, one coalition at a time (independent of the code)."""
    if not S:
        return 0.0
    if len(S) == 1:
        (i,) = S
        return float(M[i, i])
    w = (lambda i, j: M[i, j] + M[j, i]) if game == "mutual" else (
        lambda i, j: max(M[i, j], M[j, i]))
    return float(sum(w(i, j) for i, j in itertools.combinations(sorted(S), 2)))


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu", batch_size=8)


# -- closed form == enumeration ---------------------------------------------------------------
@pytest.mark.parametrize("game", PAIRWISE)
def test_closed_form_equals_enumeration_on_random_matrices(game):
    for n in range(1, 13):
        M = rand_matrix(n, seed=n)
        exact = enumerate_shapley(game_value_fn(M, game), n).values
        assert torch.allclose(attention_shapley(M, game), exact, atol=1e-9, rtol=0), (game, n)


def test_game_value_fn_matches_the_definition():
    M = rand_matrix(5, seed=7)
    for game in PAIRWISE:
        v = game_value_fn(M, game)
        for bits in itertools.product([False, True], repeat=5):
            S = {i for i, b in enumerate(bits) if b}
            got = float(v(torch.tensor([bits])))
            assert math.isclose(got, value(M, game, S), abs_tol=1e-12)


def test_enumeration_is_right_on_a_game_with_known_values():
    # v(S) = (Σ_{i∈S} x_i)²: a sum of unanimity games whose Shapley values are x_i · Σ_j x_j.
    x = torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0], dtype=torch.float64)
    est = enumerate_shapley(lambda S: (S.double() @ x) ** 2, 5)
    assert torch.allclose(est.values, x * x.sum(), atol=1e-12)
    assert est.num_evaluations == 32


def test_cls_game_is_the_cls_row():
    c = torch.rand(6, dtype=torch.float64)
    assert torch.equal(attention_shapley(None, "cls", cls_row=c), c)
    exact = enumerate_shapley(game_value_fn(None, "cls", cls_row=c), 6).values
    assert torch.allclose(exact, c, atol=1e-12)


@pytest.mark.parametrize("source", ["attention", "grad_attention"])
def test_closed_form_equals_enumeration_on_captured_attention(bert, source):
    cap = bert.capture(TEXTS)
    game = aggregate_attention(cap, source)
    batched = {g: attention_shapley(game.matrix, g, player_mask=game.player_mask)
               for g in PAIRWISE}
    for b in range(len(TEXTS)):
        n = int(game.player_mask[b].sum())
        M = game.matrix[b, :n, :n]
        for g in PAIRWISE:
            exact = enumerate_shapley(game_value_fn(M, g), n).values
            assert torch.allclose(batched[g][b, :n], exact, atol=1e-9, rtol=0)


# -- axioms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("game", PAIRWISE)
def test_efficiency(game):
    for n in (1, 2, 3, 10, 64, 200):
        M = rand_matrix(n, seed=100 + n)
        phi = attention_shapley(M, game)
        v_N = float(game_value_fn(M, game)(torch.ones(1, n, dtype=torch.bool)))
        assert math.isclose(float(phi.sum()), v_N, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("game", PAIRWISE)
def test_symmetry(game):
    # Make players 1 and 3 interchangeable: M is invariant under swapping them.
    M = rand_matrix(6, seed=3)
    perm = torch.tensor([0, 3, 2, 1, 4, 5])
    M = (M + M[perm][:, perm]) / 2
    phi = attention_shapley(M, game)
    assert math.isclose(float(phi[1]), float(phi[3]), abs_tol=1e-12)


@pytest.mark.parametrize("game", PAIRWISE)
def test_null_player(game):
    # With a zero diagonal, a player that attends to nobody and is attended by nobody adds
    # nothing to any coalition: it must get exactly 0, and the others are unaffected.
    M = rand_matrix(7, seed=4)
    M.fill_diagonal_(0.0)
    M[2, :] = 0.0
    M[:, 2] = 0.0
    phi = attention_shapley(M, game)
    assert float(phi[2]) == 0.0
    keep = [0, 1, 3, 4, 5, 6]
    assert torch.allclose(phi[keep], attention_shapley(M[keep][:, keep], game), atol=1e-12)


# -- sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("game", PAIRWISE)
def test_sampling_within_three_standard_errors(game):
    n = 9
    M = rand_matrix(n, seed=11)
    exact = attention_shapley(M, game)
    v = game_value_fn(M, game)
    est = sample_shapley(v, n, num_permutations=400, seed=5)
    assert est.num_evaluations == 400 * (n + 1)
    assert torch.all(est.stderr > 0)
    assert torch.all((est.values - exact).abs() <= 3 * est.stderr)
    # Every permutation is efficient, so the estimate is too.
    v_N = float(v(torch.ones(1, n, dtype=torch.bool)))
    assert math.isclose(float(est.values.sum()), v_N, rel_tol=1e-12)
    # More permutations, smaller error bars.
    assert est.stderr.mean() < sample_shapley(v, n, 50, seed=5).stderr.mean()


def test_sampling_is_seeded():
    v = game_value_fn(rand_matrix(5, 1), "mutual")
    a, b = sample_shapley(v, 5, 20, seed=3), sample_shapley(v, 5, 20, seed=3)
    assert torch.equal(a.values, b.values)


def test_estimator_input_errors():
    v = game_value_fn(rand_matrix(3, 1), "mutual")
    with pytest.raises(UserInputError, match="over the limit"):
        enumerate_shapley(lambda S: S.double().sum(1), 17)
    with pytest.raises(UserInputError, match="at least 2 permutations"):
        sample_shapley(v, 3, 1)
    for bug, message in ((lambda: enumerate_shapley(lambda S: torch.zeros(3), 3), "one per row"),
                         (lambda: attention_shapley(rand_matrix(3, 1), "cls"), "cls_row")):
        with pytest.raises(ValueError, match=message) as info:  # a caller's bug, not bad input
            bug()
        assert not isinstance(info.value, UserInputError)
    with pytest.raises(UserInputError, match="Unknown game"):
        attention_shapley(rand_matrix(3, 1), "sum")


# -- batches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("game", ["cls", "mutual", "max_mutual"])
def test_ragged_batch_equals_per_item_and_padding_gets_zero(game):
    counts = [5, 1, 3, 0]
    n = max(counts)
    # Padding entries hold junk (NaN) that must not leak into the real players' values.
    M = torch.full((len(counts), n, n), math.nan, dtype=torch.float64)
    c = torch.full((len(counts), n), math.nan, dtype=torch.float64)
    mask = torch.zeros(len(counts), n, dtype=torch.bool)
    for b, k in enumerate(counts):
        M[b, :k, :k] = rand_matrix(k, seed=20 + b)
        c[b, :k] = torch.rand(k, dtype=torch.float64)
        mask[b, :k] = True
    phi = attention_shapley(M, game, player_mask=mask, cls_row=c)
    for b, k in enumerate(counts):
        assert torch.all(phi[b, k:] == 0.0)
        if k:
            single = attention_shapley(M[b, :k, :k], game, cls_row=c[b, :k])
            assert torch.allclose(phi[b, :k], single, atol=1e-12, rtol=0)


def test_float32_input_is_computed_in_float64():
    M = rand_matrix(50, seed=9)
    phi32 = attention_shapley(M.float(), "mutual")
    assert phi32.dtype == torch.float64
    assert torch.allclose(phi32, attention_shapley(M.float().double(), "mutual"), atol=1e-12)


def test_player_positions_keep_token_order():
    valid = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    positions, mask = player_positions(valid)
    assert positions.tolist() == [[1, 2, 4], [1, -1, -1]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


# -- aggregation -------------------------------------------------------------------------------
def test_aggregate_attention_matches_a_direct_computation(bert):
    cap = bert.capture(TEXTS)
    layers, heads = [0, -1], [1, 3]
    game = aggregate_attention(cap, "grad_attention", layers=layers, heads=heads)
    assert game.layers == [0, 2] and game.heads == [1, 3]
    for b in range(len(TEXTS)):
        idx = cap.valid_mask[b].nonzero()[:, 0]
        n = len(idx)
        total = torch.zeros(cap.attentions[0].shape[-1], cap.attentions[0].shape[-1],
                            dtype=torch.float64)
        for l in (0, 2):
            for h in (1, 3):
                a = cap.attentions[l][b, h].double()
                g = cap.grad_attentions[l][b, h].double()
                total += a * torch.relu(g)
        total /= 4
        assert torch.allclose(game.matrix[b, :n, :n], total[idx][:, idx], atol=1e-8, rtol=1e-6)
        assert torch.allclose(game.cls_row[b, :n], total[0, idx], atol=1e-8, rtol=1e-6)
        assert game.positions[b, :n].tolist() == idx.tolist()
        assert torch.all(game.matrix[b, n:] == 0) and torch.all(game.cls_row[b, n:] == 0)
    # Specials are never players: position 0 is [CLS].
    assert torch.all(game.positions != 0)


def test_aggregate_attention_errors(bert):
    cap = bert.capture(TEXTS[:2], grads=False)
    with pytest.raises(ValueError, match="grads=True") as info:  # the caller's capture
        aggregate_attention(cap, "grad_attention")
    assert not isinstance(info.value, UserInputError)
    with pytest.raises(UserInputError, match="Unknown attention source"):
        aggregate_attention(cap, "values")
    with pytest.raises(UserInputError, match="layer 5 does not exist"):
        aggregate_attention(cap, layers=[5])
