"""Random-weight models at the sizes auditors bring, built offline for the benchmarks.

``random:bert-base`` is a ``BertForSequenceClassification`` with the bert-base configuration
(12 layers, 768 dims, 110 M parameters) and the shipped MiniLM's uncased WordPiece tokenizer
(the same vocabulary); ``random:vit-b16`` a ``ViTForImageClassification`` with the ViT-B/16
configuration at 224 px. Their classes are the demo data's, so a default audit selects its
inputs by label as it would on a trained model. Built once (seeded) into a cache folder and
loaded from there through the ordinary local-folder loader; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: name -> (modality, the demo data's classes)
RANDOM_MODELS = {
    "bert-base": ("text", ("business", "science/technology", "sports", "world")),
    "vit-b16": ("image", ("circle", "cross", "square", "triangle")),
}
PREFIX = "random:"


def cache_dir() -> Path:
    """Where the built models live: ``$ATTNXAI_BENCH_MODELS`` or ~/.cache/attnxai/bench."""
    return Path(os.environ.get("ATTNXAI_BENCH_MODELS",
                               Path.home() / ".cache" / "attnxai" / "bench"))


def random_model(spec: str, folder: Path | None = None, seed: int = 0) -> Path:
    """The folder of the random-weight model ``random:<name>``, built on first use."""
    import torch
    import transformers as tf

    from attnxai.models.loading import minilm_dir

    name = spec.removeprefix(PREFIX)
    if name not in RANDOM_MODELS:
        raise ValueError(f"unknown benchmark model {spec!r}; known: "
                         + ", ".join(PREFIX + n for n in RANDOM_MODELS))
    out = (folder or cache_dir()) / f"{name}-seed{seed}"
    if out.is_dir():  # renamed into place once complete
        return out
    labels = RANDOM_MODELS[name][1]
    names = {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    torch.manual_seed(seed)
    if name == "bert-base":
        model = tf.BertForSequenceClassification(tf.BertConfig(num_labels=len(labels), **names))
        processor = tf.AutoTokenizer.from_pretrained(minilm_dir())
    else:
        model = tf.ViTForImageClassification(tf.ViTConfig(num_labels=len(labels), **names))
        processor = tf.ViTImageProcessor(size={"height": 224, "width": 224})
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)  # a build that was interrupted
    model.eval().save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(out)
    return out
