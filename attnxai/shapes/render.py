"""Procedural 64x64 RGB scenes and texture swatches for the built-in ``shapes-vit`` model.

A *scene* is one textured shape on a noisy background; a *swatch* is one texture filling
the whole frame. Everything random is drawn once into a frozen spec (:class:`SceneSpec`,
:class:`SwatchSpec`), and rendering a spec is a pure function of it. Matched pairs follow:
``dataclasses.replace(spec, texture="plain")`` re-renders the very same scene (same
background, same noise, same shape, same texture geometry) with only the texture changed,
and ``replace(spec, color=...)`` changes only the object colour. Pixels outside the object
mask are then bit-identical.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "zigzag", "checkered")

RGB = tuple[float, float, float]

# Hue windows in degrees. "Red" is a narrow window around 0; non-red hues keep well away
# from it (no orange, no magenta) so that "the object is red" is never ambiguous.
RED_HUE_HALF_WIDTH = 10.0
NON_RED_HUE_RANGE = (50.0, 310.0)

MAX_CENTER_OFFSET = 8.0  # pixels from the image centre
MAX_ROTATION_DEG = 12.0

# Coordinates of pixel centres, shared by every render.
_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) + 0.5


@dataclass(frozen=True)
class TextureGeometry:
    """Geometry of a texture pattern, independent of which texture is drawn.

    Keeping it separate from the texture name is what lets a matched pair swap the
    texture while everything else stays the same.
    """

    period: float  # pixels between repeats of the pattern
    angle: float  # radians, orientation of the pattern
    phase: float  # in [0, 1), shift of the pattern along its period


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene deterministically."""

    shape: str
    texture: str
    color: RGB  # object colour, RGB in [0, 1]
    center: tuple[float, float]  # (x, y) in pixels
    size: float  # circumradius-like size in pixels
    rotation: float  # radians
    geometry: TextureGeometry
    background: RGB  # base background colour, RGB in [0, 1]
    gradient: tuple[float, float]  # background brightness slope along (x, y), per image width
    noise_std: float  # std of the per-pixel Gaussian noise, in [0, 1] units
    noise_seed: int  # seed of the noise field, so a re-render has the very same noise


@dataclass(frozen=True)
class SwatchSpec:
    """Everything needed to render one full-frame texture swatch deterministically."""

    texture: str
    color: RGB
    geometry: TextureGeometry
    noise_std: float
    noise_seed: int


# --------------------------------------------------------------------------- colours


def hsv_color(hue_deg: float, saturation: float, value: float) -> RGB:
    """RGB in [0, 1] from a hue in degrees and saturation/value in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, saturation, value)
    return (float(r), float(g), float(b))


def red_color(rng: np.random.Generator) -> RGB:
    """A random saturated red (the control colour)."""
    hue = rng.uniform(-RED_HUE_HALF_WIDTH, RED_HUE_HALF_WIDTH)
    return hsv_color(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))


def non_red_color(rng: np.random.Generator) -> RGB:
    """A random colour whose hue is far from red."""
    hue = rng.uniform(*NON_RED_HUE_RANGE)
    return hsv_color(hue, rng.uniform(0.55, 1.0), rng.uniform(0.65, 1.0))


def random_color(rng: np.random.Generator, p_red: float) -> tuple[RGB, bool]:
    """A red colour with probability ``p_red``, else a non-red one; returns (colour, is_red)."""
    is_red = bool(rng.random() < p_red)
    return (red_color(rng) if is_red else non_red_color(rng)), is_red


# --------------------------------------------------------------------------- sampling


def sample_geometry(rng: np.random.Generator) -> TextureGeometry:
    """Random texture geometry: period 5-9 px, any orientation, any phase."""
    return TextureGeometry(
        period=float(rng.uniform(5.0, 9.0)),
        angle=float(rng.uniform(0.0, np.pi)),
        phase=float(rng.uniform(0.0, 1.0)),
    )


def sample_scene(
    rng: np.random.Generator,
    shape: str | None = None,
    texture: str | None = None,
    color: RGB | None = None,
    center: tuple[float, float] | None = None,
    size: float | None = None,
    rotation: float | None = None,
    p_red: float = 0.25,
) -> SceneSpec:
    """Draw a random scene; every parameter left as None is drawn at random.

    ``shape`` and ``texture`` are uniform over :data:`SHAPES` and :data:`TEXTURES`. With
    ``color=None`` the object is red with probability ``p_red`` (independently of everything
    else), otherwise a non-red colour. ``size`` is 12-19 px, ``center`` lies within 8 px of
    the image centre (the whole shape stays inside the frame) and ``rotation`` is a small
    jitter of +-12 degrees: shapes are upright, which a small ViT learns in far fewer steps
    than arbitrarily rotated ones.
    """
    shape = SHAPES[rng.integers(len(SHAPES))] if shape is None else _check(shape, SHAPES)
    texture = TEXTURES[rng.integers(len(TEXTURES))] if texture is None else _check(texture, TEXTURES)
    if color is None:
        color, _ = random_color(rng, p_red)
    if size is None:
        size = float(rng.uniform(12.0, 19.0))
    if center is None:
        # Every shape fits in a circle of radius 1.16 * size: keep it inside the frame.
        reach = min(MAX_CENTER_OFFSET, IMAGE_SIZE / 2 - (1.2 * size + 1.0))
        offset = rng.uniform(-reach, reach, size=2)
        center = (float(IMAGE_SIZE / 2 + offset[0]), float(IMAGE_SIZE / 2 + offset[1]))
    if rotation is None:
        rotation = float(np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
    gray = rng.uniform(0.15, 0.45)
    # A faint tint of the gray background: never saturated enough to read as a colour.
    background = tuple(float(np.clip(gray + t, 0.0, 1.0)) for t in rng.uniform(-0.04, 0.04, size=3))
    return SceneSpec(
        shape=shape,
        texture=texture,
        color=color,
        center=(float(center[0]), float(center[1])),
        size=float(size),
        rotation=float(rotation),
        geometry=sample_geometry(rng),
        background=background,  # type: ignore[arg-type]
        gradient=(float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.15, 0.15))),
        noise_std=float(rng.uniform(0.03, 0.09)),
        noise_seed=int(rng.integers(2**31)),
    )


def sample_swatch(
    rng: np.random.Generator,
    texture: str | None = None,
    color: RGB | None = None,
    p_red: float = 0.25,
) -> SwatchSpec:
    """Draw a random full-frame swatch; ``texture``/``color`` are random when None."""
    texture = TEXTURES[rng.integers(len(TEXTURES))] if texture is None else _check(texture, TEXTURES)
    if color is None:
        color, _ = random_color(rng, p_red)
    return SwatchSpec(
        texture=texture,
        color=color,
        geometry=sample_geometry(rng),
        noise_std=float(rng.uniform(0.03, 0.09)),
        noise_seed=int(rng.integers(2**31)),
    )


def _check(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"Unknown value {value!r}; expected one of {', '.join(allowed)}.")
    return value


# --------------------------------------------------------------------------- rendering


def shape_mask(shape: str, center: tuple[float, float], size: float, rotation: float) -> np.ndarray:
    """Boolean [64, 64] mask of a shape; shapes are scaled to roughly equal areas."""
    cx, cy = center
    c, s = np.cos(rotation), np.sin(rotation)
    # Coordinates in the shape's own rotated frame, in units of ``size``.
    u = ((_XX - cx) * c + (_YY - cy) * s) / size
    v = (-(_XX - cx) * s + (_YY - cy) * c) / size
    if shape == "circle":
        return u * u + v * v <= 0.8**2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.72
    if shape == "triangle":
        # Equilateral triangle with circumradius 1.16 (inside all three half-planes).
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = np.pi / 2 + k * 2 * np.pi / 3  # outward normal of one edge
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.58
        return inside
    if shape == "cross":
        arm = 0.3
        reach = 0.95
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= reach)) | ((av <= arm) & (au <= reach))
    raise ValueError(f"Unknown shape {shape!r}; expected one of {', '.join(SHAPES)}.")


def texture_pattern(texture: str, geometry: TextureGeometry) -> np.ndarray:
    """Boolean [64, 64] pattern: True where the texture's second tone is drawn."""
    if texture == "plain":
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    p = geometry.period
    c, s = np.cos(geometry.angle), np.sin(geometry.angle)
    u = (_XX * c + _YY * s) / p + geometry.phase
    v = (-_XX * s + _YY * c) / p + geometry.phase
    if texture == "striped":
        return np.mod(u, 1.0) < 0.5
    if texture == "dotted":
        du, dv = np.mod(u, 1.0) - 0.5, np.mod(v, 1.0) - 0.5
        return du * du + dv * dv < 0.28**2
    if texture == "zigzag":
        # Stripes displaced by a triangle wave along their length: chevrons.
        tri = np.abs(np.mod(v * 0.5, 1.0) - 0.5) * 2.0  # in [0, 1], period 2 along v
        return np.mod(u + 1.2 * tri, 1.0) < 0.5
    if texture == "checkered":
        return (np.floor(u) + np.floor(v)) % 2 == 0
    raise ValueError(f"Unknown texture {texture!r}; expected one of {', '.join(TEXTURES)}.")


def _textured_fill(texture: str, color: RGB, geometry: TextureGeometry) -> np.ndarray:
    """Float [64, 64, 3] fill: the colour, with the pattern drawn as a pale tint of it."""
    base = np.asarray(color, dtype=np.float64)
    # A tint towards white keeps the hue (so "red" stays red) and contrasts with the dark background.
    tint = base + (1.0 - base) * 0.6
    pattern = texture_pattern(texture, geometry)[..., None]
    return np.where(pattern, tint, base)


def _noise(seed: int, std: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, std, size=(IMAGE_SIZE, IMAGE_SIZE, 3))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_scene(spec: SceneSpec) -> np.ndarray:
    """Render a scene to a uint8 array [64, 64, 3]."""
    gx, gy = spec.gradient
    shade = (gx * (_XX / IMAGE_SIZE - 0.5) + gy * (_YY / IMAGE_SIZE - 0.5))[..., None]
    image = np.asarray(spec.background, dtype=np.float64) + shade
    mask = shape_mask(spec.shape, spec.center, spec.size, spec.rotation)[..., None]
    image = np.where(mask, _textured_fill(spec.texture, spec.color, spec.geometry), image)
    return _to_uint8(image + _noise(spec.noise_seed, spec.noise_std))


def scene_mask(spec: SceneSpec) -> np.ndarray:
    """Boolean [64, 64] mask of the scene's object (where a matched pair may differ)."""
    return shape_mask(spec.shape, spec.center, spec.size, spec.rotation)


def render_swatch(spec: SwatchSpec) -> np.ndarray:
    """Render a full-frame texture swatch to a uint8 array [64, 64, 3]."""
    image = _textured_fill(spec.texture, spec.color, spec.geometry)
    return _to_uint8(image + _noise(spec.noise_seed, spec.noise_std))


def render_scenes(specs: list[SceneSpec]) -> np.ndarray:
    """Render many scenes to a uint8 array [N, 64, 64, 3]."""
    out = np.empty((len(specs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, spec in enumerate(specs):
        out[i] = render_scene(spec)
    return out
