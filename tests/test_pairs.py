"""Matched pairs: the tokens where the two members differ, and CAV rows restricted to them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import attnxai
from attnxai.tcav.cav import TokenTable
from attnxai.io.concepts import ConceptSet
from attnxai.models.pairs import _token_changes, differing_players
from attnxai.tcav.run import TCAVConfig, pair_row_masks, plan_cavs


@pytest.fixture(scope="module")
def shapes():
    return attnxai.load_model("builtin:shapes-vit", device="cpu")


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return attnxai.load_model(str(tiny_bert_dir), device="cpu")


def test_image_pair_differs_exactly_in_the_painted_patches(shapes):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    changed = base.copy()
    changed[8:16, 16:24] = 255 - changed[8:16, 16:24]  # exactly patch (row 1, col 2) of 8x8
    changed[60, 63] ^= 1  # one pixel of the last patch (row 7, col 7)
    a, b = differing_players(shapes, [Image.fromarray(base)], [Image.fromarray(changed)])
    expected = torch.zeros(64, dtype=torch.bool)
    expected[[1 * 8 + 2, 7 * 8 + 7]] = True
    assert torch.equal(a[0], expected) and torch.equal(b[0], expected)


def test_identical_pair_keeps_every_player(shapes):
    image = Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8))
    a, b = differing_players(shapes, [image], [image.copy()])
    assert a[0].all() and b[0].all() and len(a[0]) == 64


def test_token_changes_mark_substitutions_and_the_sides_of_an_insertion():
    # substitution: both sides mark their own tokens
    assert _token_changes([1, 2, 9, 4], [1, 2, 3, 4]) == ([0, 0, 1, 0], [0, 0, 1, 0])
    # insertion of "2" in a: b marks the tokens around the gap
    assert _token_changes([1, 2, 3, 4], [1, 3, 4]) == ([0, 1, 0, 0], [1, 1, 0])


def test_text_pair_masks_follow_the_players(bert):
    a, b = differing_players(bert, ["the team is not good", "rain fell"],
                             ["the team is good", "rain fell"])
    # players exclude [CLS]/[SEP]: "the team is not good" -> not differs, good/is flank the gap
    assert a[0].tolist() == [False, False, False, True, False]
    assert b[0].tolist() == [False, False, True, True]
    assert a[1].all() and b[1].all()  # identical pair: every player kept


def test_table_select_keeps_only_masked_rows_of_named_examples():
    rows = torch.arange(10, dtype=torch.float32)[:, None]
    table = TokenTable(rows=rows, example=torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3]))
    out = table.select({0: torch.tensor([True, False, True]), 2: torch.tensor([False, False, False, True])})
    assert out.rows[:, 0].tolist() == [0, 2, 3, 4, 8, 9]
    assert out.example.tolist() == [0, 0, 1, 1, 2, 3]
    with pytest.raises(ValueError):
        table.select({1: torch.tensor([True])})


def test_matched_plan_trains_on_differing_tokens_only(bert):
    ex = ["the team is not good", "the match is not new", "stocks rose not"] * 4
    counter = ["the team is good", "the match is new", "stocks rose"] * 4
    pair = ConceptSet(name="neg", modality="text", examples=ex, counterexamples=counter,
                      paired=True, default_pool="pool")
    pool = ConceptSet(name="pool", modality="text", kind="random_pool",
                      examples=[f"{w} {v}" for w in ("the", "a", "an", "new", "bad", "good")
                                for v in ("team", "match", "bank", "city")])
    cfg = TCAVConfig(num_cavs=2, num_random=2, num_null=20)
    plan = plan_cavs([pair], {"pool": pool}, cfg)
    keep = pair_row_masks(bert, plan, None)
    pos, neg = plan.pairs[0]
    assert set(keep) == set(pos.tolist()) | set(neg.tolist())
    assert keep[int(pos[0])].tolist() == [False, False, False, True, False]
    # with pair_rows="all" nothing is restricted
    assert plan_cavs([pair], {"pool": pool}, TCAVConfig(num_cavs=2, num_random=2, num_null=20,
                                                        pair_rows="all")).pairs == []
