"""Shared fixtures: tiny random models built from configs, saved to disk, loaded by spec."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# AppTest runs dashboard/app.py in this process; `streamlit run` would put its folder on
# sys.path so that the app's `ui` and `views` import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))

# Tests never touch the network: make any accidental hub call fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a an team won lost match market stocks rose fell rain sun not is good bad new game "
    "bank rates city storm cup final price share profit goal player ##s ##ing ##ed"
).split()
TEXTS = ["the team won the cup final", "stocks fell", "rain is not good for the match",
         "bank rates rose", "a new player scored the goal", "the market"]
LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_bert")
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                     num_labels=3, id2label=dict(enumerate(LABELS)),
                     label2id={l: i for i, l in enumerate(LABELS)})
    BertForSequenceClassification(cfg).save_pretrained(d)
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_hf_vit_dir(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("tiny_hf_vit")
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                    id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    ViTForImageClassification(cfg).save_pretrained(d)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_timm_ckpt(tmp_path_factory) -> Path:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    d = tmp_path_factory.mktemp("tiny_timm")
    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
              "num_classes": 3}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    path = d / "vit.safetensors"
    save_file(model.state_dict(), str(path))
    (d / "vit.json").write_text(json.dumps({"labels": LABELS, "model_kwargs": kwargs}))
    return path


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    """Five random RGB images on disk, of assorted sizes."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("images")
    paths = []
    for i, size in enumerate([(32, 32), (40, 48), (64, 64), (32, 50), (100, 80)]):
        arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        p = d / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths
