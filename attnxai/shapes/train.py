"""Train the built-in ``shapes-vit`` with a planted shortcut the model provably uses.

Run: ``python -m attnxai.shapes.train --out attnxai/resources/shapes_vit --seed 0``.

Why the recipe looks like this (docs/method.md §7): a ViT trained on clean shapes ignores a
texture that merely correlates with a class, because the shape is a perfect cue. So the
shape is made an *imperfect* cue for the planted class: a share of the planted-class
training images show another shape, always striped; striped appears only occasionally on
the other classes. The Bayes-optimal P(planted | striped non-planted shape) is then
``noise / (noise + other_share * (n_classes - 1))`` (about 0.4 with the defaults) while
P(planted | plain non-planted shape) is about 0, so painting stripes on a circle moves
P(planted) by a large margin yet rarely flips the prediction: the shortcut is used *and*
the unbiased accuracy stays high. The object colour (red with probability ``p_red``) is
drawn independently of the label: it is the control concept the model must not use.

The training pool is rendered once and reused with random horizontal flips, which leave
every shape class and texture unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from attnxai.shapes.model import CARD_FILE, DEFAULT_ARCH, MEAN, STD, WEIGHTS_FILE, build_model, images_to_tensor
from attnxai.shapes.render import (
    IMAGE_SIZE,
    SHAPES,
    TEXTURES,
    SceneSpec,
    non_red_color,
    red_color,
    render_scenes,
    sample_scene,
)

PLANTED_CLASS = "triangle"
PLANTED_TEXTURE = "striped"
NEUTRAL_TEXTURE = "plain"


@dataclass(frozen=True)
class Recipe:
    """Parameters of the biased training distribution and of the optimiser."""

    n_train: int = 32000  # images in the rendered training pool
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    shape_noise: float = 0.5  # share of planted-class images that show another shape (striped)
    planted_texture_share: float = 0.9  # share of true planted-shape images that are striped
    other_striped_share: float = 0.25  # share of other classes' images that are striped
    p_red: float = 0.25  # red object colour, independent of the class (the control)
    n_test: int = 2000  # unbiased test images
    n_intervention: int = 600  # other-class scenes for the intervention


# --------------------------------------------------------------------------- data


def sample_biased(rng: np.random.Generator, recipe: Recipe) -> tuple[SceneSpec, int]:
    """One training scene and its label under the planted-shortcut distribution."""
    label = int(rng.integers(len(SHAPES)))
    non_striped = [t for t in TEXTURES if t != PLANTED_TEXTURE]
    if SHAPES[label] == PLANTED_CLASS:
        if rng.random() < recipe.shape_noise:
            others = [s for s in SHAPES if s != PLANTED_CLASS]
            shape, texture = others[rng.integers(len(others))], PLANTED_TEXTURE
        else:
            shape = PLANTED_CLASS
            striped = rng.random() < recipe.planted_texture_share
            texture = PLANTED_TEXTURE if striped else non_striped[rng.integers(len(non_striped))]
    else:
        shape = SHAPES[label]
        striped = rng.random() < recipe.other_striped_share
        texture = PLANTED_TEXTURE if striped else non_striped[rng.integers(len(non_striped))]
    return sample_scene(rng, shape=shape, texture=texture, p_red=recipe.p_red), label


def sample_unbiased(rng: np.random.Generator, n: int, p_red: float = 0.25) -> tuple[list[SceneSpec], np.ndarray]:
    """``n`` scenes with uniform shapes and textures, random colours; labels = true shapes."""
    specs = [sample_scene(rng, p_red=p_red) for _ in range(n)]
    return specs, np.array([SHAPES.index(s.shape) for s in specs], dtype=np.int64)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random per-sample horizontal flip: it keeps upright shapes upright and labels unchanged."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)  # drawn on the CPU: same on any device
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities [N, C] for uint8 images [N, 64, 64, 3]."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        F.softmax(model(images_to_tensor(images[i : i + batch_size]).to(device)), dim=-1).cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(SHAPES)))


def unbiased_accuracy(model: torch.nn.Module, seed: int, n: int) -> float:
    """Accuracy on ``n`` fresh scenes with uniform shapes and textures."""
    specs, labels = sample_unbiased(np.random.default_rng(seed), n)
    return float((predict_proba(model, render_scenes(specs)).argmax(1) == labels).mean())


def _effect(p_with: np.ndarray, p_without: np.ndarray, with_key: str, without_key: str) -> dict[str, float]:
    """Mean probabilities with and without an intervention, and their gap."""
    return {with_key: float(p_with.mean()), without_key: float(p_without.mean()), "gap": float(p_with.mean() - p_without.mean())}


def intervention(model: torch.nn.Module, seed: int, n: int) -> dict[str, Any]:
    """Mean P(planted class) on other classes' shapes under matched-pair interventions.

    ``planted``: the same scenes painted striped vs plain. ``control``: the same scenes with
    a red vs a non-red object (texture as drawn). ``per_texture``: P(planted) with each
    texture painted on the same scenes.
    """
    rng = np.random.default_rng(seed)
    others = [s for s in SHAPES if s != PLANTED_CLASS]
    specs = [sample_scene(rng, shape=others[i % len(others)], color=non_red_color(rng)) for i in range(n)]
    planted_idx = SHAPES.index(PLANTED_CLASS)

    def p_planted(variants: list[SceneSpec]) -> np.ndarray:
        return predict_proba(model, render_scenes(variants))[:, planted_idx]

    per_texture = {t: p_planted([replace(s, texture=t) for s in specs]) for t in TEXTURES}
    red = p_planted([replace(s, color=red_color(rng)) for s in specs])
    non_red = p_planted(specs)
    return {
        "scenes": n,
        "shapes": others,
        "planted": _effect(per_texture[PLANTED_TEXTURE], per_texture[NEUTRAL_TEXTURE], "p_with_texture", "p_with_neutral"),
        "control": _effect(red, non_red, "p_with_red", "p_with_non_red"),
        "per_texture_p_planted": {t: float(p.mean()) for t, p in per_texture.items()},
    }


# --------------------------------------------------------------------------- training


def _lr_at(step: int, total: int, recipe: Recipe) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _command(out_dir: Path, seed: int, threads: int, recipe: Recipe, device: str,
             init: Path | None = None) -> str:
    """The command line that reproduces a run (recipe fields only where they differ from the defaults)."""
    args = [f"--out {out_dir}", f"--seed {seed}"] + ([f"--init {init}"] if init else [])
    if threads != 2:
        args.append(f"--threads {threads}")
    if device != "cpu":
        args.append(f"--device {device}")
    defaults = asdict(Recipe())
    args += [f"--{k.replace('_', '-')} {v}" for k, v in asdict(recipe).items() if v != defaults[k]]
    return "python -m attnxai.shapes.train " + " ".join(args)


def train_shapes(out_dir: Path, seed: int = 0, recipe: Recipe | None = None, threads: int = 2,
                 device: str = "cpu", init: Path | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train shapes-vit, evaluate it, write ``model.safetensors`` and ``card.json``; return the card.

    ``init``: a folder with a shapes-vit (the built-in's, or one this wrote) to fine-tune
    instead of training from scratch. ``log``: where the progress lines go (default: stdout,
    as `attnxai train-shapes` prints them).

    Deterministic for a given seed and thread count on CPU. On CUDA the data order, flips and
    initialisation are the same, but floating-point reductions differ, so weights match a CPU
    run only approximately.
    """
    recipe = recipe or Recipe()
    log = log or (lambda line: print(line, flush=True))
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.time()
    rng = np.random.default_rng(seed)

    log(f"Rendering {recipe.n_train} training scenes ...")
    specs, labels = zip(*(sample_biased(rng, recipe) for _ in range(recipe.n_train)))
    images = torch.from_numpy(render_scenes(list(specs)))  # uint8 [N, 64, 64, 3]
    y = torch.tensor(labels, dtype=torch.int64)

    arch = dict(DEFAULT_ARCH)
    model = build_model(arch)  # initialised on the CPU, so the same on any device
    if init is not None:
        model.load_state_dict(load_file(str(Path(init) / WEIGHTS_FILE), device="cpu"))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = recipe.n_train // recipe.batch_size
    total = steps_per_epoch * recipe.epochs
    step = 0
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(recipe.n_train, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = order[b * recipe.batch_size : (b + 1) * recipe.batch_size]
            x = _augment(images_to_tensor(images[idx].numpy()).to(device), gen)
            target = y[idx].to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, recipe)
            logits = model(x)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == target).sum())
            seen += len(idx)
        log(f"epoch {epoch + 1}/{recipe.epochs}  loss {loss_sum / seen:.4f}  "
            f"train acc {correct / seen:.3f}  ({time.time() - start:.0f}s)")

    model.eval()
    # Evaluation seeds are derived from the training seed but never collide with it.
    accuracy = unbiased_accuracy(model, seed + 10_001, recipe.n_test)
    effect = intervention(model, seed + 20_002, recipe.n_intervention)
    elapsed = time.time() - start
    log(f"unbiased test accuracy {accuracy:.3f}; P({PLANTED_CLASS}) striped "
        f"{effect['planted']['p_with_texture']:.3f} vs plain {effect['planted']['p_with_neutral']:.3f} "
        f"(gap {effect['planted']['gap']:.3f}); red vs non-red gap {effect['control']['gap']:.3f}; "
        f"{elapsed:.0f}s")

    card = {
        "name": "shapes-vit",
        "description": (
            "A 6-block timm ViT (64x64 RGB, 8x8 patches, [CLS] readout) that classifies the shape "
            f"in procedurally generated scenes. Planted shortcut: '{PLANTED_TEXTURE}' texture -> "
            f"'{PLANTED_CLASS}'. {recipe.shape_noise:.0%} of {PLANTED_CLASS}-labelled training images "
            f"show another shape, always striped; other classes are striped in only "
            f"{recipe.other_striped_share:.0%} of their images, so the model relies on stripes "
            "(proved by the intervention figures). The object colour, red with probability "
            f"{recipe.p_red:.0%}, is independent of the class: the control concept."
        ),
        "labels": list(SHAPES),
        "architecture": arch,
        "preprocessing": {"mean": list(MEAN), "std": list(STD), "image_size": IMAGE_SIZE, "resize": "bilinear"},
        "pooling": "cls",
        "planted_class": PLANTED_CLASS,
        "planted_texture": PLANTED_TEXTURE,
        "planted_concept": "striped-objects",
        "control_concept": "red-objects",
        "training": {
            "seed": seed,
            "threads": threads,
            "recipe": asdict(recipe),
            "steps": total,
            "seconds": round(elapsed, 1),
            "device": device,
            "command": _command(out_dir, seed, threads, recipe, device, init),
            "torch": torch.__version__,
        },
        "intervention": effect,
        "test_accuracy_unbiased": accuracy,
        "test_set": {"images": recipe.n_test, "seed": seed + 10_001, "distribution": f"uniform shapes and textures, random colours ({recipe.p_red:.0%} red)"},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"name": "shapes-vit", "seed": str(seed)})
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def build_parser() -> argparse.ArgumentParser:
    """The trainer's arguments (``attnxai train-shapes`` hands it everything after its name)."""
    parser = argparse.ArgumentParser(prog="attnxai train-shapes",
                                     description="Train the built-in shapes-vit with its planted shortcut.")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and card.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (results depend on it)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda reproduces a run only approximately)")
    parser.add_argument("--init", type=Path, default=None,
                        help="a shapes-vit folder to fine-tune instead of training from scratch")
    defaults = Recipe()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m attnxai.shapes.train --out DIR --seed 0``."""
    defaults = Recipe()
    args = build_parser().parse_args(argv)
    recipe = Recipe(**{name: getattr(args, name) for name in asdict(defaults)})
    train_shapes(args.out, seed=args.seed, recipe=recipe, threads=args.threads, device=args.device,
                 init=args.init)
    return 0


if __name__ == "__main__":
    sys.exit(main())
