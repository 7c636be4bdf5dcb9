"""The shapes generator, the shipped shapes-vit and its demo data and concept sets.

Accuracy and the planted-shortcut intervention are recomputed here on fresh seeded scenes,
independently of the training code, and compared with what the card claims.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from attnxai.shapes.model import load_builtin, preprocess
from attnxai.shapes.render import (
    SHAPES,
    non_red_color,
    red_color,
    render_scene,
    render_swatch,
    sample_scene,
    sample_swatch,
    scene_mask,
)

REPO = Path(__file__).resolve().parent.parent
SHAPES_CONCEPT_SETS = ("striped", "dotted", "zigzag", "checkered", "striped-objects", "red-objects")
SHAPES_POOLS = ("random-swatches", "random-scenes")


def test_generator_is_deterministic() -> None:
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(5):
        sa, sb = sample_scene(a), sample_scene(b)
        assert sa == sb
        assert np.array_equal(render_scene(sa), render_scene(sb))
        wa, wb = sample_swatch(a), sample_swatch(b)
        assert np.array_equal(render_swatch(wa), render_swatch(wb))
    image = render_scene(sample_scene(np.random.default_rng(0)))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_matched_pairs_differ_only_inside_the_object() -> None:
    rng = np.random.default_rng(3)
    for shape in SHAPES:
        spec = sample_scene(rng, shape=shape, texture="striped", color=red_color(rng))
        outside = ~scene_mask(spec)
        base = render_scene(spec).astype(int)
        for variant in (replace(spec, texture="plain"), replace(spec, color=non_red_color(rng))):
            diff = np.abs(render_scene(variant).astype(int) - base).sum(-1)
            assert diff[outside].max() == 0
            assert diff[~outside].max() > 0


@pytest.fixture(scope="module")
def builtin() -> tuple[torch.nn.Module, dict]:
    torch.set_num_threads(2)
    return load_builtin()


def _p(model: torch.nn.Module, images: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(preprocess([Image.fromarray(a) for a in images])), -1).numpy()


def test_builtin_loads_with_a_complete_card(builtin: tuple[torch.nn.Module, dict]) -> None:
    model, card = builtin
    assert type(model) is VisionTransformer and not model.training
    required = {
        "name", "description", "labels", "architecture", "preprocessing", "planted_class",
        "planted_concept", "control_concept", "training", "intervention",
        "test_accuracy_unbiased", "pooling",
    }
    assert required <= card.keys()
    assert card["name"] == "shapes-vit" and card["pooling"] == "cls"
    assert card["labels"] == list(SHAPES) and model.num_classes == len(SHAPES)
    assert card["planted_class"] in card["labels"]
    for key in ("planted_concept", "control_concept"):
        assert (REPO / "concept_sets" / card[key] / "concept.json").is_file()
    assert (REPO / "attnxai/resources/shapes_vit/model.safetensors").stat().st_size <= 10 * 2**20


def test_builtin_accuracy_and_planted_shortcut(builtin: tuple[torch.nn.Module, dict]) -> None:
    model, card = builtin
    rng = np.random.default_rng(2024)  # not a seed the training or the card used
    specs = [sample_scene(rng) for _ in range(300)]
    labels = np.array([SHAPES.index(s.shape) for s in specs])
    accuracy = float((_p(model, [render_scene(s) for s in specs]).argmax(1) == labels).mean())
    assert accuracy >= 0.85
    assert abs(accuracy - card["test_accuracy_unbiased"]) <= 0.06

    planted = card["labels"].index(card["planted_class"])
    others = [s for s in SHAPES if s != card["planted_class"]]
    scenes = [sample_scene(rng, shape=others[i % len(others)], color=non_red_color(rng)) for i in range(150)]
    striped = _p(model, [render_scene(replace(s, texture="striped")) for s in scenes])[:, planted]
    plain = _p(model, [render_scene(replace(s, texture="plain")) for s in scenes])[:, planted]
    gap = float(striped.mean() - plain.mean())
    assert gap >= 0.3
    assert abs(gap - card["intervention"]["planted"]["gap"]) <= 0.1

    # The control colour was independent of the class in training: painting objects red moves nothing.
    red = _p(model, [render_scene(replace(s, color=red_color(rng))) for s in scenes])[:, planted]
    non_red = _p(model, [render_scene(s) for s in scenes])[:, planted]
    control_gap = float(red.mean() - non_red.mean())
    assert abs(control_gap) <= 0.1
    assert abs(control_gap - card["intervention"]["control"]["gap"]) <= 0.1


@pytest.mark.parametrize("name", SHAPES_CONCEPT_SETS + SHAPES_POOLS)
def test_shipped_image_concept_sets(name: str) -> None:
    folder = REPO / "concept_sets" / name
    manifest = json.loads((folder / "concept.json").read_text(encoding="utf-8"))
    assert manifest["format"] == 1 and manifest["name"] == name and manifest["modality"] == "image"
    assert manifest["description"]
    examples = manifest["examples"]
    assert len(examples) >= (150 if name in SHAPES_POOLS else 30)
    paths = examples + manifest.get("counterexamples", [])
    for rel in paths:
        assert not Path(rel).is_absolute() and (folder / rel).is_file()
    if name in SHAPES_POOLS:
        assert manifest["kind"] == "random_pool" and manifest["default_pool"] is None
    else:
        assert manifest["kind"] == "concept"
        assert manifest["default_pool"] in SHAPES_POOLS
    if manifest.get("paired"):
        assert len(manifest["counterexamples"]) == len(examples) >= 40
    with Image.open(folder / examples[0]) as image:
        assert image.size == (64, 64)


def test_demo_images() -> None:
    root = REPO / "attnxai" / "resources" / "demo" / "demo_shapes"
    for shape in SHAPES:
        files = sorted((root / shape).glob("*.png"))
        assert len(files) >= 30
        with Image.open(files[0]) as image:
            assert image.size == (64, 64)
