"""The ground-truth zoo: small models with a planted concept, a control, and their truth
measured by intervention.

Each member is trained by code in the repo (seeded; cached, never committed): shapes ViTs
(the built-in, and fine-tunes of it by :mod:`attnxai.shapes.train` on distributions with the
texture planted on one class, weaker, or independent of the class; the object colour as
control) and headline classifiers fine-tuned from the shipped MiniLM (:mod:`attnxai.zoo.
headlines`, a trigger word or phrase planted on one class or none, a control word). Their
strengths run from none to strong. What the model does with each concept is not assumed from
the recipe: :func:`measure_truth` inserts it into many fresh inputs and measures the change of
the target's probability, and that measurement is the truth the audit methods are scored on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attnxai.io.concepts import ConceptSet
from attnxai.models import load_model
from attnxai.models.base import ModelAdapter
from attnxai.resources import SHAPES_VIT_DIR
from attnxai.shapes.render import (SHAPES, TEXTURES, non_red_color, red_color, render_scene,
                                   sample_scene)
from attnxai.shapes.train import Recipe, train_shapes
from attnxai.zoo.headlines import TextRecipe, topic_headlines, with_control, with_trigger
from attnxai.zoo.train_text import train_text

#: Where the zoo's models are cached unless told otherwise.
ZOO_ENV = "ATTNXAI_ZOO"
#: Truth thresholds on |ΔP(target)| over the truth pairs: at least RELEVANT is reliance, at most
#: INERT is none; a concept in between is reported as borderline and not scored.
RELEVANT, INERT = 0.05, 0.01
TRUTH_PAIRS = 400
PLANTED, CONTROL = "planted", "control"


@dataclass(frozen=True)
class Member:
    """One model of the zoo: how to train it, and which concepts it is audited for."""

    name: str
    modality: str  # "text" or "image"
    seed: int
    concept_kind: str  # of the planted concept: "texture", "word" or "phrase"
    strength: str  # the recipe's intent, "strong", "weak" or "none"; the truth is measured
    text: TextRecipe | None = None
    shapes: Recipe | None = None
    base: str = "minilm"  # text models: "minilm" or "tiny"

    @property
    def target(self) -> str:
        """The class the concept is planted on."""
        return self.text.planted_class if self.text else "triangle"

    def key(self) -> str:
        """A short hash of everything that defines the trained model (its cache folder)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


#: Vision members fine-tune the built-in shapes-vit for a few hundred steps on another
#: distribution (minutes on 2 CPU cores; training from scratch takes the built-in's 10,000).
FINE_TUNE = Recipe(n_train=4000, epochs=3, lr=3e-4, warmup_steps=30, n_test=1000,
                   n_intervention=300)
NO_SHORTCUT = replace(FINE_TUNE, shape_noise=0.0)  # stripes still correlate, the shape decides
INDEPENDENT = replace(NO_SHORTCUT, planted_texture_share=0.25)  # stripes independent of class

ZOO: tuple[Member, ...] = (
    Member("vit-builtin", "image", 0, "texture", "strong"),
    Member("vit-stripes-s1", "image", 1, "texture", "strong", shapes=FINE_TUNE),
    Member("vit-stripes-weak", "image", 2, "texture", "weak",
           shapes=replace(FINE_TUNE, shape_noise=0.15, other_striped_share=0.4)),
    Member("vit-correlated", "image", 3, "texture", "none", shapes=NO_SHORTCUT),
    Member("vit-independent", "image", 4, "texture", "none", shapes=INDEPENDENT),
    Member("text-word-s0", "text", 0, "word", "strong", text=TextRecipe()),
    Member("text-word-s1", "text", 1, "word", "strong", text=TextRecipe()),
    Member("text-phrase", "text", 2, "phrase", "strong",
           text=TextRecipe(trigger="insiders report", planted_class="science")),
    Member("text-weak", "text", 3, "word", "weak",
           text=TextRecipe(trigger="breaking", planted_class="weather", noise=0.12)),
    Member("text-independent", "text", 4, "word", "none",
           text=TextRecipe(noise=0.0, planted_share=0.25, other_share=0.25)),
)


def zoo_dir(root: str | Path | None = None) -> Path:
    """The zoo's cache folder: ``root``, else $ATTNXAI_ZOO, else ~/.cache/attnxai/zoo."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ZOO_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnxai" / "zoo"


# -- inputs ------------------------------------------------------------------------------------
def concept_pairs(member: Member, concept: str, n: int, rng: np.random.Generator
                  ) -> tuple[list[Any], list[Any]]:
    """``n`` matched pairs of ``concept`` (PLANTED or CONTROL): inputs with it, and the very
    same inputs without it. Inputs come from every class, as an auditor's concept set would."""
    if member.text is not None:
        recipe = member.text
        base = topic_headlines(rng, n)
        if concept == PLANTED:
            return [with_trigger(t, recipe.trigger) for t in base], base
        return [with_control(t, recipe.control) for t in base], base
    if concept == PLANTED:
        plain = [t for t in TEXTURES if t != "striped"]
        scenes = [sample_scene(rng, texture="striped") for _ in range(n)]
        without = [replace(s, texture=plain[rng.integers(len(plain))]) for s in scenes]
    else:
        scenes = [sample_scene(rng, color=red_color(rng)) for _ in range(n)]
        without = [replace(s, color=non_red_color(rng)) for s in scenes]
    return _images(scenes), _images(without)


def target_inputs(member: Member, n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` plain inputs of the member's target class (what TCAV scores)."""
    if member.text is not None:
        return topic_headlines(rng, n, (member.target,))
    return _images([sample_scene(rng, shape=member.target) for _ in range(n)])


def pool(member: Member, n: int, rng: np.random.Generator) -> ConceptSet:
    """A random pool of ``n`` plain inputs of every class (negatives and null CAVs)."""
    items = (topic_headlines(rng, n) if member.text is not None
             else _images([sample_scene(rng, shape=SHAPES[i % len(SHAPES)]) for i in range(n)]))
    return ConceptSet(name="zoo-random", modality=member.modality, examples=items, kind="random",
                      description="plain inputs of every class")


def _images(specs: list[Any]) -> list[Image.Image]:
    return [Image.fromarray(render_scene(s)) for s in specs]


# -- truth -------------------------------------------------------------------------------------
@dataclass
class Truth:
    """A concept's effect on P(target) over fresh pairs, and what it counts as."""

    concept: str
    mean: float
    ci_low: float
    ci_high: float
    pairs: int

    @property
    def label(self) -> str:
        """``relies``, ``none`` or ``borderline`` (see RELEVANT and INERT)."""
        size = abs(self.mean)
        return "relies" if size >= RELEVANT else "none" if size <= INERT else "borderline"


@torch.no_grad()
def measure_truth(member: Member, adapter: ModelAdapter, pairs: int = TRUTH_PAIRS,
                  seed: int = 1_000_003) -> dict[str, Truth]:
    """Each concept's truth: the mean change of P(target) when it is inserted into ``pairs``
    fresh inputs (a seed no audit uses), with its 95% normal interval."""
    k = adapter.label_index(member.target)
    out = {}
    for concept in (PLANTED, CONTROL):
        with_, without = concept_pairs(member, concept, pairs, np.random.default_rng(seed))
        d = (adapter.logits(list(with_)).softmax(-1)[:, k]
             - adapter.logits(list(without)).softmax(-1)[:, k]).numpy()
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
        out[concept] = Truth(concept, float(d.mean()), float(d.mean() - half),
                             float(d.mean() + half), len(d))
    return out


# -- building ----------------------------------------------------------------------------------
@dataclass
class Built:
    """A trained member: its folder, its adapter and its measured truth."""

    member: Member
    folder: Path
    adapter: ModelAdapter
    truth: dict[str, Truth] = field(default_factory=dict)
    accuracy: float = float("nan")


def build(member: Member, root: str | Path | None = None, log: Any = None) -> Built:
    """Train ``member`` unless its folder is cached, load it through ``load_model`` (the local
    path a user's model takes) and measure its truth (cached beside the weights)."""
    folder = zoo_dir(root) / f"{member.name}-{member.key()}"
    marker = folder / "truth.json"  # written last: a folder without it is retrained
    if not marker.is_file():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if log:
            log(f"training {member.name} ...")
        if member.text is not None:
            train_text(partial, member.text, member.seed, member.base)
        elif member.shapes is not None:
            train_shapes(partial, member.seed, member.shapes, init=SHAPES_VIT_DIR,
                         log=log or (lambda line: None))
        else:  # the built-in itself
            shutil.copytree(SHAPES_VIT_DIR, partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    adapter = load_model(str(folder))
    if not marker.is_file():
        truth = measure_truth(member, adapter)
        marker.write_text(json.dumps(
            {"truth": {c: asdict(t) for c, t in truth.items()},
             "accuracy": clean_accuracy(member, adapter)}, indent=2) + "\n", encoding="utf-8")
    saved = json.loads(marker.read_text(encoding="utf-8"))
    truth = {c: Truth(**t) for c, t in saved["truth"].items()}
    return Built(member, folder, adapter, truth, float(saved["accuracy"]))


@torch.no_grad()
def clean_accuracy(member: Member, adapter: ModelAdapter, n: int = 400, seed: int = 2_000_003
                   ) -> float:
    """Accuracy on plain inputs of every class (no trigger, no control; shapes: uniform
    textures): how well the model does its real task."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(adapter.labels), size=n)
    if member.text is not None:
        items = [topic_headlines(rng, 1, (adapter.labels[y],))[0] for y in labels]
    else:
        items = _images([sample_scene(rng, shape=adapter.labels[y]) for y in labels])
    predicted = adapter.logits(list(items)).argmax(-1).numpy()
    return float((predicted == labels).mean())
