"""The adapter interface every model backend implements, and the shared capture loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attnxai.errors import UserInputError
from attnxai.memory import release_freed_memory
from attnxai.models.capture import Capture
from attnxai.models.lengths import batches_of
from attnxai.models.oom import in_parts

Target = None | int | str | Sequence[int | str] | torch.Tensor
Progress = Callable[[int, int], None]


@dataclass
class Batch:
    """Model-ready inputs for one batch plus what the capture reports about its tokens."""

    model_inputs: dict[str, torch.Tensor]
    valid_mask: torch.Tensor  # [B, T]
    token_mask: torch.Tensor  # [B, T]
    tokens: list[list[str]] | None = None
    grid: tuple[int, int] | None = None

    def rows(self, start: int, stop: int) -> Batch:
        """Inputs ``start`` to ``stop`` of the batch, as prepared (same length and padding)."""
        def cut(value: Any) -> Any:
            return value[start:stop] if isinstance(value, torch.Tensor) else value

        return Batch(model_inputs={k: cut(v) for k, v in self.model_inputs.items()},
                     valid_mask=self.valid_mask[start:stop],
                     token_mask=self.token_mask[start:stop],
                     tokens=None if self.tokens is None else self.tokens[start:stop],
                     grid=self.grid)


@dataclass
class Recorded:
    """Tensors of one forward pass that are still part of the autograd graph."""

    logits: torch.Tensor
    activations: list[torch.Tensor]
    attentions: list[torch.Tensor]


#: What one capture pass may hold, in bytes (its activations, attentions and, with gradients,
#: what autograd keeps for the backward): a batch that would hold more is split into smaller
#: passes, so a long input or a wide model does not multiply the memory by the batch size.
CAPTURE_BUDGET_BYTES = 1 << 29


def capture_bytes(num_layers: int, width: int, heads: int, tokens: int, grads: bool,
                  full_attention: bool) -> int:
    """Estimated bytes one input of ``tokens`` tokens holds during a capture: every layer's
    activations (and their gradients), its attention matrices when captured in full, and with
    gradients what autograd keeps per block for the backward pass (Korthikanti et al. 2022:
    about 34 values per token and width and 5 per token, head and key, in float32)."""
    kept = 2 if grads else 1
    per_token = 4 * width * kept + (4 * heads * tokens * kept if full_attention else 0)
    if grads:
        per_token += 4 * (17 * width + 2.5 * heads * tokens)
    return int(num_layers * tokens * per_token)


def per_input_target(target: Target) -> bool:
    """Whether ``target`` gives one class per input (else one class, or None, for all)."""
    return target is not None and not isinstance(target, (int, str))


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ModelAdapter(ABC):
    """One interface over every backend (HF text/vision, timm ViT, the built-ins).

    Subclasses implement :meth:`prepare` (inputs -> :class:`Batch`), :meth:`forward_logits`
    (plain forward) and :meth:`forward_recording` (forward that returns per-layer block outputs
    and attention probabilities as graph tensors). Everything else is shared.
    """

    modality: str  # "text" | "image"
    labels: list[str]
    num_layers: int
    num_heads: int
    #: Which query row weights tokens for TCAV: "cls" ([CLS]-read models) or "mean" (mean-pooled).
    pooling: str
    spec: str
    model: torch.nn.Module
    #: Whether its classes come from label descriptions (``load_model(..., labels=...)``).
    takes_label_descriptions: bool = False

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 32) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.batch_size = batch_size
        self.card: dict[str, Any] = {}
        #: Per kind of pass, the most inputs one may hold here: set when one ran out of memory
        #: (:mod:`attnxai.models.oom`).
        self.pass_limits: dict[str, int] = {}

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def prepare(self, inputs: Sequence[Any]) -> Batch:
        """Turn raw inputs (strings or images) into a model-ready batch on the device."""

    @abstractmethod
    def forward_logits(self, batch: Batch) -> torch.Tensor:
        """Plain forward pass returning logits [B, C] (no recording)."""

    @abstractmethod
    def forward_recording(self, batch: Batch) -> Recorded:
        """Forward pass that also returns every block's output and attention probabilities."""

    def forward_readout_rows(self, batch: Batch) -> Recorded | None:
        """Like :meth:`forward_recording`, but each layer's attention only in the row(s) the
        head reads, mixed by the readout's weights ([B, H, 1, T]), computed without the T × T
        matrices; None where the backend cannot (the caller then records the full matrices)."""
        return None

    def token_counts(self, inputs: Sequence[Any]) -> list[int] | None:
        """Each input's number of tokens before padding; None where all have the same (images)."""
        return None

    def block_modules(self) -> list[torch.nn.Module]:
        """The transformer blocks, in order (their outputs are the captured activations)."""
        return find_blocks(self.model, self.num_layers)

    # -- shared -------------------------------------------------------------------------
    def label_index(self, label: int | str) -> int:
        """Index of a class given by index or by name; a clear error for anything else."""
        if isinstance(label, bool):
            raise UserInputError(f"Class must be a label name or index, got {label!r}.")
        if isinstance(label, int) or (isinstance(label, str) and label.lstrip("-").isdigit()
                                      and label not in self.labels):
            idx = int(label)
            if not 0 <= idx < len(self.labels):
                raise UserInputError(
                    f"Class index {idx} is out of range: this model has {len(self.labels)} "
                    f"classes (0..{len(self.labels) - 1})."
                )
            return idx
        if label in self.labels:
            return self.labels.index(label)
        raise UserInputError(
            f"Unknown class {label!r}. This model's classes are: {', '.join(self.labels)}."
        )

    def resolve_target(self, target: Target, logits: torch.Tensor) -> torch.Tensor:
        """Target class per input: None = predicted, one class for all, or one per input."""
        B = logits.shape[0]
        if target is None:
            return logits.argmax(dim=-1)
        if isinstance(target, (int, str)):
            return torch.full((B,), self.label_index(target), dtype=torch.long, device=logits.device)
        idx = [self.label_index(t if not isinstance(t, torch.Tensor) else int(t)) for t in target]
        if len(idx) != B:
            raise ValueError(f"Got {len(idx)} targets for {B} inputs.")
        return torch.tensor(idx, dtype=torch.long, device=logits.device)

    @staticmethod
    def _check_inputs(inputs: Sequence[Any], target: Target = None) -> bool:
        """Errors for what no pass takes; whether ``target`` gives one class per input."""
        if isinstance(inputs, (str, bytes)):
            raise TypeError("Pass a list of inputs, not a single string.")
        if len(inputs) == 0:
            raise UserInputError("No inputs were given.")
        per_input = per_input_target(target)
        if per_input and len(target) != len(inputs):
            raise ValueError(f"Got {len(target)} targets for {len(inputs)} inputs.")
        return per_input

    def _chunks(self, inputs: Sequence[Any], target: Target, batch_size: int | None
                ) -> Iterator[tuple[Sequence[Any], Target]]:
        per_input = self._check_inputs(inputs, target)
        bs = batch_size or self.batch_size
        for start in range(0, len(inputs), bs):
            yield inputs[start:start + bs], (target[start:start + bs] if per_input else target)

    def capture_batches(self, inputs: Sequence[Any], target: Target = None, grads: bool = True,
                        batch_size: int | None = None, progress: Progress | None = None,
                        attention: str = "full") -> Iterator[Capture]:
        """Capture batch by batch (one forward + one backward each); tensors come back on CPU.
        ``attention="readout"`` asks for each layer's readout row only, where the backend can
        compute it without the full matrices (:attr:`Capture.attention_rows` says if it did)."""
        if attention not in ("full", "readout"):
            raise ValueError(f"attention must be 'full' or 'readout', not {attention!r}")
        done = 0
        for chunk, chunk_target in self._chunks(inputs, target, batch_size):
            for part in self._capture_parts(chunk, chunk_target, grads, attention == "readout"):
                done += len(part.logits)
                yield part
                del part
                # The pass's work space, freed: given back so the heap does not grow pass by
                # pass with fragments (a consumer should drop the capture before asking more).
                release_freed_memory()
                if progress is not None:
                    progress(done, len(inputs))

    def capture(self, inputs: Sequence[Any], target: Target = None, grads: bool = True,
                batch_size: int | None = None, progress: Progress | None = None,
                attention: str = "full") -> Capture:
        """Logits, per-layer activations and attentions, and (grads=True) their gradients.

        Gradients are of the target class logit: ``target=None`` uses each input's predicted
        class, an int or label name selects one class, a sequence gives one per input.
        ``attention``: see :meth:`capture_batches`.
        """
        return Capture.concat(list(self.capture_batches(inputs, target, grads, batch_size,
                                                        progress, attention)))

    @property
    def width(self) -> int:
        """The width of the residual stream (the model config's, its image encoder's where it
        nests one, as CLIP and SigLIP do; else 64 per head)."""
        cfg = getattr(self.model, "config", None)
        if self.modality == "image":
            cfg = getattr(cfg, "vision_config", None) or cfg
        for name in ("hidden_size", "d_model", "n_embd", "dim"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.model, "embed_dim", None)
        return value if isinstance(value, int) and value > 0 else 64 * self.num_heads

    def _capture_parts(self, chunk: Sequence[Any], target: Target, grads: bool, rows: bool
                       ) -> Iterator[Capture]:
        """The capture of ``chunk``, in smaller passes where one would hold more than
        :data:`CAPTURE_BUDGET_BYTES`, or than the device has (rows of the one prepared batch:
        nothing is read or tokenized twice)."""
        batch = self.prepare(chunk)
        most = max(1, CAPTURE_BUDGET_BYTES // capture_bytes(
            self.num_layers, self.width, self.num_heads, batch.token_mask.shape[1], grads,
            full_attention=not rows))
        per_input = per_input_target(target)
        kind = "capture with gradients" if grads else "capture"
        yield from in_parts(self, kind, len(chunk), min(most, len(chunk)), lambda i, j: (
            self._capture_batch(batch.rows(i, j), target[i:j] if per_input else target, grads,
                                rows)))

    def _capture_batch(self, batch: Batch, target: Target, grads: bool,
                       rows: bool = False) -> Capture:
        # Padding positions carry values that depend on the batch's length; zero them so a
        # capture does not depend on how inputs were batched.
        real = batch.token_mask.to(self.device)
        tok = pair = None  # without padding (every image batch) nothing needs zeroing or copying
        with torch.set_grad_enabled(grads):
            rec = self.forward_readout_rows(batch) if rows else None
            rows = rec is not None
            if rec is None:
                rec = self.forward_recording(batch)
            if not bool(real.all()):
                tok = real[:, :, None]
                pair = real[:, None, None, :] if rows else (real[:, :, None] & real[:, None, :])[:, None]
            tgt = self.resolve_target(target, rec.logits)
            grad_act = grad_att = None
            if grads:
                # Inputs are independent, so the gradient of the summed target logits w.r.t. a
                # batch tensor holds every input's own gradient: one backward for all of them.
                # A readout row is computed beside the model, so it has no gradient.
                tensors = rec.activations + ([] if rows else rec.attentions)
                objective = rec.logits.gather(1, tgt[:, None]).sum()
                g = torch.autograd.grad(objective, tensors, allow_unused=True)
                # A tensor the logit does not depend on (e.g. patch tokens after the last block
                # of a [CLS]-read ViT) has gradient exactly zero.
                g = [torch.zeros_like(t) if gi is None else gi for t, gi in zip(tensors, g)]
                L = len(rec.activations)
                grad_act = [_cpu(t, tok) for t in g[:L]]
                grad_att = None if rows else [_cpu(t, pair) for t in g[L:]]
        logits = _cpu(rec.logits)
        return Capture(
            logits=logits,
            probs=logits.softmax(dim=-1),
            target=tgt.cpu(),
            activations=[_cpu(t, tok) for t in rec.activations],
            attentions=[_cpu(t, pair) for t in rec.attentions],
            valid_mask=batch.valid_mask.cpu(),
            token_mask=batch.token_mask.cpu(),
            grad_activations=grad_act,
            grad_attentions=grad_att,
            tokens=batch.tokens,
            grid=batch.grid,
            attention_rows=rows,
        )

    @torch.no_grad()
    def logits(self, inputs: Sequence[Any], batch_size: int | None = None,
               progress: Progress | None = None) -> torch.Tensor:
        """Logits [N, C] (float32, on the CPU) from plain forward passes (nothing recorded), in
        batches of alike length (:mod:`attnxai.models.lengths`)."""
        self._check_inputs(inputs)
        out, done = torch.empty(len(inputs), len(self.labels)), 0
        for group in batches_of(self.token_counts(inputs), len(inputs),
                                batch_size or self.batch_size):
            batch = self.prepare([inputs[i] for i in group])
            out[group] = torch.cat(list(in_parts(self, "forward", len(group), len(group),
                                                 lambda i, j: self.forward_logits(
                                                     batch.rows(i, j)).float().cpu())))
            done += len(group)
            if progress is not None:
                progress(done, len(inputs))
        return out

    def predict(self, inputs: Sequence[Any], batch_size: int | None = None,
                progress: Progress | None = None) -> torch.Tensor:
        """Class probabilities [N, C] from plain forward passes (:meth:`logits`)."""
        return self.logits(inputs, batch_size, progress).softmax(-1)

    def describe(self) -> dict[str, Any]:
        """A short summary for UIs and logs."""
        return {"spec": self.spec, "modality": self.modality, "labels": list(self.labels),
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "pooling": self.pooling, "device": str(self.device)}


def find_blocks(model: torch.nn.Module, num_layers: int) -> list[torch.nn.Module]:
    """The first ModuleList of exactly `num_layers` modules: the encoder's blocks. A model
    that runs one shared block for several layers (ALBERT) has none: UserInputError, since its
    layers cannot be patched or moved one at a time."""
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return list(module)
    raise UserInputError(f"{type(model).__name__} has no {num_layers} separate blocks (it shares "
                         "blocks across its layers, as ALBERT does), so its layers cannot be "
                         "patched or intervened on one at a time; use --effects output or none.")


def _cpu(t: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Detached float32 tensor on the CPU (a copy only where needed), zero where `keep`
    (broadcast) is false."""
    t = t.detach()
    if keep is not None:
        t = t.masked_fill(~keep, 0.0)
    return t.float().cpu()
