"""Package data shipped with attnxai: the built-in ViT's weights and card, demo data and the
shipped concept sets. Everything here is read-only at run time; user data lives in
``$ATTNXAI_HOME``."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
SHAPES_VIT_DIR = RESOURCES_DIR / "shapes_vit"
DEMO_DIR = RESOURCES_DIR / "demo"
CONCEPT_SETS_DIR = RESOURCES_DIR / "concept_sets"
