"""Text adapters: Hugging Face sequence classifiers and the zero-shot MiniLM built-in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from attnxai.errors import ModelLoadError, UserInputError
from attnxai.models.base import Batch, ModelAdapter, Recorded
from attnxai.models.readout_attention import readout_attention
from attnxai.models.readouts import ROW_READOUTS, READOUT_WORDS, hf_text_readout, readout_weights


class TextAdapter(ModelAdapter):
    """Shared tokenisation: padding, truncation, and the mask of real word pieces."""

    modality = "text"
    max_length: int = 512  # where the tokenizer states no limit of its own

    def __init__(self, tokenizer: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.tokenizer = tokenizer
        # A tokenizer without a limit reports a huge sentinel (int(1e30)).
        model_max = getattr(tokenizer, "model_max_length", None)
        if model_max and model_max < 1_000_000:
            self.max_length = int(model_max)

    def prepare(self, inputs: Sequence[Any]) -> Batch:
        enc = self.tokenizer(_texts(inputs), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt",
                             return_special_tokens_mask=True)
        token_mask = enc["attention_mask"].bool()
        valid = token_mask & ~enc.pop("special_tokens_mask").bool()
        tokens = [self.tokenizer.convert_ids_to_tokens(row) for row in enc["input_ids"].tolist()]
        model_inputs = {k: v.to(self.device) for k, v in enc.items()}
        return Batch(model_inputs=model_inputs, valid_mask=valid, token_mask=token_mask, tokens=tokens)

    def token_counts(self, inputs: Sequence[Any]) -> list[int]:
        enc = self.tokenizer(_texts(inputs), truncation=True, max_length=self.max_length)
        return [len(ids) for ids in enc["input_ids"]]


def _texts(inputs: Sequence[Any]) -> list[str]:
    """The inputs as a list of non-empty strings, else UserInputError naming the first bad one."""
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise UserInputError(f"Text input {i} is a {type(text).__name__}, not a string.")
        if not text.strip():
            raise UserInputError(f"Text input {i} is empty.")
    return list(inputs)


class HFTextClassifier(TextAdapter):
    """Any ``AutoModelForSequenceClassification`` with eager attention: BERT-style encoders
    read [CLS]; decoder-only language models read their last non-padding token
    (:mod:`attnxai.models.readouts`), padded on the right with the end-of-sequence token when
    their tokenizer has no padding token (as GPT-2's and Llama's have none)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, spec: str, **kw: Any) -> None:
        super().__init__(tokenizer, **kw)
        self.spec = spec
        self.model = model.to(self.device).eval()
        cfg = model.config
        self.pooling = hf_text_readout(cfg)
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.card = {"name": spec, "kind": "huggingface", "architecture": type(model).__name__,
                     "model_type": cfg.model_type, "readout": READOUT_WORDS[self.pooling]}
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"{spec}: its tokenizer has neither a padding token nor an "
                                     "end-of-sequence token to pad with; set tokenizer.pad_token "
                                     "and save the model again.")
            tokenizer.pad_token = tokenizer.eos_token
            self.card["padding"] = (f"with the end-of-sequence token {tokenizer.eos_token!r} "
                                    "(the tokenizer has no padding token)")
        if self.pooling == "last":
            # The head finds the last token by its position before the first padding token
            # (or the last non-padding one); right padding also keeps the positions of the
            # real tokens at 0..n-1 for rotary and learned position embeddings.
            tokenizer.padding_side = "right"
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tokenizer.pad_token_id
        self._rows_supported = True

    def forward_logits(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.model_inputs).logits

    def forward_recording(self, batch: Batch) -> Recorded:
        out = self.model(**batch.model_inputs, output_hidden_states=True, output_attentions=True)
        # hidden_states[0] is the embedding output; [1:] are the blocks' outputs.
        return Recorded(out.logits, list(out.hidden_states[1:]), list(out.attentions))

    def forward_readout_rows(self, batch: Batch) -> Recorded | None:
        # Readouts of one or two rows only: a mean readout reads every row anyway.
        if self.pooling not in ROW_READOUTS or not self._rows_supported:
            return None
        weights = readout_weights(batch.token_mask, self.pooling, batch.valid_mask)
        try:
            with readout_attention(self.model, weights):
                rec = self.forward_recording(batch)
        except (ValueError, NotImplementedError):  # a model without the attention interface
            self._rows_supported = False
            return None
        B, T = batch.token_mask.shape
        if any(tuple(a.shape) != (B, self.num_heads, 1, T) for a in rec.attentions):
            self._rows_supported = False  # its layers ignored the implementation
            return None
        return rec


class ZeroShotEncoder(TextAdapter):
    """A sentence encoder turned classifier: logits = scale * cos(mean-pooled text, label prototype).

    Each label's prototype is the normalised mean of its descriptions' normalised embeddings.
    The encoder is mean-pooled, so TCAV weights tokens by the mean over query rows.
    """

    pooling = "mean"
    takes_label_descriptions = True

    def __init__(self, encoder: torch.nn.Module, tokenizer: Any, spec: str,
                 labels: dict[str, str | Sequence[str]], scale: float, **kw: Any) -> None:
        super().__init__(tokenizer, **kw)
        if not labels:
            raise UserInputError("A zero-shot model needs at least one label with a description.")
        self.spec = spec
        self.model = encoder.to(self.device).eval()
        self.scale = float(scale)
        self.num_layers = encoder.config.num_hidden_layers
        self.num_heads = encoder.config.num_attention_heads
        self.set_labels(labels)

    def set_labels(self, labels: dict[str, str | Sequence[str]]) -> None:
        """Replace the classes: label name -> one description or several."""
        names, protos = [], []
        for name, desc in labels.items():
            descs = [desc] if isinstance(desc, str) else list(desc)
            if not str(name).strip() or not descs or not all(d.strip() for d in descs):
                raise UserInputError(f"Label {name!r} needs a name and a non-empty description.")
            with torch.no_grad():
                emb = self.embed(descs)
            protos.append(F.normalize(emb.mean(0), dim=-1))
            names.append(str(name))
        if len(set(names)) != len(names):
            raise UserInputError("Label names must be unique.")
        self.labels = names
        self.label_descriptions = {n: labels[n] for n in names}
        self.prototypes = torch.stack(protos)  # [C, d], on the device

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised mean-pooled sentence embeddings [N, d] (the sentence-transformers recipe)."""
        batch = self.prepare(texts)
        out = self.model(**batch.model_inputs)
        return self._pool(out.last_hidden_state, batch.model_inputs["attention_mask"])

    def _logits(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        emb = self._pool(hidden, batch.model_inputs["attention_mask"])
        return self.scale * emb @ self.prototypes.T.to(emb.dtype)

    def forward_logits(self, batch: Batch) -> torch.Tensor:
        return self._logits(self.model(**batch.model_inputs).last_hidden_state, batch)

    def forward_recording(self, batch: Batch) -> Recorded:
        out = self.model(**batch.model_inputs, output_hidden_states=True, output_attentions=True)
        hidden = list(out.hidden_states[1:])
        return Recorded(self._logits(hidden[-1], batch), hidden, list(out.attentions))
