"""Local explanations: attention-Shapley and the baselines it is compared with (docs/method.md §4).

Every method takes an adapter and one batch of inputs and returns an :class:`Attribution`:
one value per *player* of each input (text: word pieces, never [CLS]/[SEP]/padding; vision:
patches), left-aligned and padded like :func:`attnxai.explain.shapley.player_positions`.

Removing a player (input-masking Shapley values, faithfulness) replaces a word piece by
[MASK] and keeps the special tokens, or paints a patch with a fill colour: the dataset mean
colour when given, else the image's own mean colour. Perturbation and gradient baselines
use captum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attnxai.errors import UserInputError
from attnxai.models.base import Batch, ModelAdapter, Target
from attnxai.models.capture import Capture
from attnxai.models.oom import in_parts
from attnxai.models.readouts import readout_rows
from attnxai.explain.shapley import (
    GAMES,
    SOURCES,
    aggregate_attention,
    enumerate_shapley,
    player_positions,
    select_indices,
)


@dataclass
class Attribution:
    """Per-player values of a batch of inputs, for the class in ``target``.

    ``values`` [B, n] float64 (exactly 0 at padding players), ``player_mask`` [B, n],
    ``positions`` [B, n] token index of each player (-1: padding), ``probs`` [B, C] the model's
    probabilities on the full inputs.
    """

    method: str
    values: torch.Tensor
    player_mask: torch.Tensor
    positions: torch.Tensor
    target: torch.Tensor
    probs: torch.Tensor
    tokens: list[list[str]] | None = None
    grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0

    def player_names(self, i: int) -> list[str]:
        """Names of input i's players: word pieces, or 'patch (row, col)'."""
        return [self._name(i, int(p)) for p in self.positions[i][self.player_mask[i]]]

    def _name(self, i: int, pos: int) -> str:
        if self.tokens is not None:
            return self.tokens[i][pos]
        r, c = self.patch_coords(pos)
        return f"patch ({r}, {c})"

    def patch_coords(self, pos: int) -> tuple[int, int]:
        """(row, col) in the patch grid of the token at position `pos` (vision only)."""
        return divmod(pos - self.num_prefix_tokens, self.grid[1])

    def records(self, i: int) -> list[dict[str, Any]]:
        """Input i's players in token order: name, token position (and patch row/col), value."""
        out = []
        for j in range(int(self.player_mask[i].sum())):
            pos = int(self.positions[i, j])
            rec: dict[str, Any] = {"player": self._name(i, pos), "position": pos}
            if self.grid is not None:
                rec["row"], rec["col"] = self.patch_coords(pos)
            rec["value"] = float(self.values[i, j])
            out.append(rec)
        return out


def _finish(method: str, adapter: ModelAdapter, values: torch.Tensor, positions: torch.Tensor,
            player_mask: torch.Tensor, target: torch.Tensor, probs: torch.Tensor,
            tokens: list[list[str]] | None, grid: tuple[int, int] | None) -> Attribution:
    values = torch.where(player_mask, values.double().cpu(), torch.zeros((), dtype=torch.float64))
    return Attribution(method=method, values=values, player_mask=player_mask, positions=positions,
                       target=target.cpu(), probs=probs.float().cpu(), tokens=tokens, grid=grid,
                       num_prefix_tokens=int(getattr(adapter, "num_prefix_tokens", 0)))


def _from_capture(method: str, adapter: ModelAdapter, cap: Capture, values: torch.Tensor,
                  positions: torch.Tensor, player_mask: torch.Tensor) -> Attribution:
    return _finish(method, adapter, values, positions, player_mask, cap.target, cap.probs,
                   cap.tokens, cap.grid)


def _token_scores(scores: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, T] per-token scores -> [B, n] at the players (padding: 0)."""
    return scores.gather(1, positions.clamp(min=0).to(scores.device)) * (positions >= 0)


# -- input masking -----------------------------------------------------------------------------
class PlayerMasker:
    """Batched forward passes on copies of a batch with some players removed.

    Text: a removed word piece becomes [MASK] (special tokens and the attention mask stay).
    Vision: a removed patch is painted with ``fill`` (a colour in the model's pixel-value
    space, [3]), by default each image's own mean colour.
    """

    def __init__(self, adapter: ModelAdapter, batch: Batch, fill: torch.Tensor | None = None):
        self.adapter = adapter
        self.batch = batch
        self.positions, self.player_mask = player_positions(batch.valid_mask)
        dev = adapter.device
        if adapter.modality == "text":
            tok = adapter.tokenizer
            mask_id = tok.mask_token_id if tok.mask_token_id is not None else tok.unk_token_id
            if mask_id is None:
                raise UserInputError(f"{adapter.spec}'s tokenizer has no [MASK] or unknown "
                                     "token to replace removed word pieces with.")
            self.mask_id = int(mask_id)
        else:
            px = batch.model_inputs["pixel_values"]
            rows, cols = adapter.grid
            if px.shape[-2] % rows or px.shape[-1] % cols:
                raise UserInputError(f"Image of {tuple(px.shape[-2:])} pixels does not split into "
                                     f"the model's {rows}x{cols} patch grid.")
            self.patch = (px.shape[-2] // rows, px.shape[-1] // cols)
            # The mean of normalised pixels is the normalised mean colour (normalisation is
            # affine per channel), so the fill lives in pixel-value space.
            per_image = px.float().mean(dim=(2, 3))
            self.fill = (per_image if fill is None
                         else fill.float().to(dev).view(1, 3).expand_as(per_image)).to(px.dtype)
        self._pos_dev = self.positions.to(dev)
        self._pm_dev = self.player_mask.to(dev)

    def masked_inputs(self, items: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs for input ``items[k]`` keeping only the players where ``keep[k]``."""
        dev = self.adapter.device
        items, keep = items.to(dev), keep.to(dev).bool()
        removed = self._pm_dev[items] & ~keep
        rows, cols = removed.nonzero(as_tuple=True)
        pos = self._pos_dev[items][rows, cols]
        inputs = {k: v[items] for k, v in self.batch.model_inputs.items()}
        if self.adapter.modality == "text":
            ids = inputs["input_ids"].clone()
            ids[rows, pos] = self.mask_id
            inputs["input_ids"] = ids
            return inputs
        grid_rows, grid_cols = self.adapter.grid
        present = torch.ones(len(items), grid_rows * grid_cols, dtype=torch.bool, device=dev)
        present[rows, pos - self.adapter.num_prefix_tokens] = False
        ph, pw = self.patch
        m = present.view(-1, 1, grid_rows, grid_cols)
        m = m.repeat_interleave(ph, dim=2).repeat_interleave(pw, dim=3)
        fill = self.fill[items][:, :, None, None].to(inputs["pixel_values"].dtype)
        inputs["pixel_values"] = torch.where(m, inputs["pixel_values"], fill)
        return inputs

    @torch.no_grad()
    def probs(self, items: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Class probabilities [K, C] of input ``items[k]`` with players ``keep[k]`` only."""
        def run(s: int, e: int) -> torch.Tensor:
            idx = items[s:e]
            batch = Batch(model_inputs=self.masked_inputs(idx, keep[s:e]),
                          valid_mask=self.batch.valid_mask[idx],
                          token_mask=self.batch.token_mask[idx])
            return self.adapter.forward_logits(batch).float().softmax(-1).cpu()

        out = list(in_parts(self.adapter, "forward", len(items), self.adapter.batch_size, run))
        return torch.cat(out) if out else torch.empty(0, len(self.adapter.labels))

    def probs_grid(self, keep: torch.Tensor) -> torch.Tensor:
        """Probabilities [B, R, C] for R player subsets per input, ``keep`` [B, R, n]."""
        B, R, n = keep.shape
        items = torch.arange(B).repeat_interleave(R)
        return self.probs(items, keep.reshape(B * R, n)).view(B, R, -1)


def mean_fill(adapter: ModelAdapter, inputs: Sequence[Any], batch_size: int | None = None
              ) -> torch.Tensor:
    """The mean colour [3] of a set of images, in the model's pixel-value space."""
    total, count = torch.zeros(3, dtype=torch.float64), 0
    bs = batch_size or adapter.batch_size
    for s in range(0, len(inputs), bs):
        px = adapter.prepare(inputs[s:s + bs]).model_inputs["pixel_values"].double()
        total += px.sum(dim=(0, 2, 3)).cpu()
        count += px.shape[0] * px.shape[2] * px.shape[3]
    return (total / count).float()


# -- attention methods -------------------------------------------------------------------------
def attention_shapley(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None,
                      game: str = "max_mutual", source: str = "attention",
                      layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
                      ) -> Attribution:
    """Exact attention-Shapley values (docs/method.md §1) from one capture of the batch."""
    if game not in GAMES:
        raise UserInputError(f"Unknown game {game!r}; use one of: {', '.join(GAMES)}.")
    cap = adapter.capture(inputs, target=target, grads=source == "grad_attention",
                          batch_size=len(inputs))
    g = aggregate_attention(cap, source, layers, heads, readout=adapter.pooling)
    return _from_capture("attention-shapley", adapter, cap, g.shapley(game), g.positions,
                         g.player_mask)


def raw_attention(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None,
                  source: str = "attention", layers: Sequence[int] | None = None,
                  heads: Sequence[int] | None = None) -> Attribution:
    """The query row the head reads of the aggregated attention (equal to the `cls` game's
    values): [CLS], or the last token of a decoder-only classifier, or the mean row."""
    cap = adapter.capture(inputs, target=target, grads=source == "grad_attention",
                          batch_size=len(inputs))
    g = aggregate_attention(cap, source, layers, heads, readout=adapter.pooling)
    return _from_capture("raw-attention", adapter, cap, g.cls_row, g.positions, g.player_mask)


def rollout(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None) -> Attribution:
    """Attention rollout (Abnar & Zuidema): ∏_l rownorm(½·mean_h A^l + ½·I), read at the
    row the head reads ([CLS], the last token, or the mean row)."""
    cap = adapter.capture(inputs, target=target, grads=False, batch_size=len(inputs))
    B, _, T, _ = cap.attentions[0].shape
    eye = torch.eye(T, dtype=torch.float64)
    joint = eye.expand(B, T, T)
    for a in cap.attentions:
        step = 0.5 * a.double().mean(1) + 0.5 * eye
        step = step / step.sum(-1, keepdim=True)
        joint = step @ joint  # later layers multiply from the left (queries of the top block)
    positions, player_mask = player_positions(cap.valid_mask)
    read = readout_rows(joint, cap.token_mask, adapter.pooling, cap.valid_mask)
    return _from_capture("rollout", adapter, cap, _token_scores(read, positions),
                         positions, player_mask)


def grad_sam(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None,
             layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
             ) -> Attribution:
    """Grad-SAM: mean over heads and layers of A ⊙ ReLU(∂y_k/∂A), summed over keys per token."""
    cap = adapter.capture(inputs, target=target, grads=True, batch_size=len(inputs))
    layer_idx = select_indices(layers, cap.num_layers, "layer")
    head_idx = select_indices(heads, cap.attentions[0].shape[1], "head")
    # The key sum runs over every key (specials included), as the reference code does.
    total = sum((cap.attentions[l][:, head_idx].double()
                 * cap.grad_attentions[l][:, head_idx].double().clamp(min=0)).sum(dim=(1, 3))
                for l in layer_idx)
    scores = total / (len(layer_idx) * len(head_idx))  # [B, T], one score per query token
    positions, player_mask = player_positions(cap.valid_mask)
    return _from_capture("grad-sam", adapter, cap, _token_scores(scores, positions), positions,
                         player_mask)


# -- perturbation and gradient baselines (captum) ---------------------------------------------
def _full_pass(adapter: ModelAdapter, batch: Batch, target: Target
               ) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        logits = adapter.forward_logits(batch).float()
    return adapter.resolve_target(target, logits), logits.softmax(-1)


def input_shapley(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None,
                  exact_max: int = 8, permutations: int = 16, seed: int = 0,
                  fill: torch.Tensor | None = None) -> Attribution:
    """Shapley values of v(S) = p(y_k | x with the players outside S removed).

    Inputs with at most ``exact_max`` players: exact, by enumerating the 2^n coalitions in
    batched forward passes. Longer ones: captum's ShapleyValueSampling with ``permutations``
    random permutations, all such inputs of the batch at once.
    """
    from captum.attr import ShapleyValueSampling

    if permutations < 1 or exact_max < 0:
        raise UserInputError("input-shapley needs permutations >= 1 and exact_max >= 0.")
    batch = adapter.prepare(inputs)
    tgt, probs = _full_pass(adapter, batch, target)
    masker = PlayerMasker(adapter, batch, fill)
    B, n = masker.player_mask.shape
    counts = masker.player_mask.sum(1).tolist()
    values = torch.zeros(B, n, dtype=torch.float64)
    tgt_cpu = tgt.cpu()
    for b in (b for b in range(B) if 0 < counts[b] <= exact_max):
        nb = counts[b]

        def v(S: torch.Tensor, b: int = b, nb: int = nb) -> torch.Tensor:
            keep = torch.zeros(S.shape[0], n, dtype=torch.bool)
            keep[:, :nb] = S
            return masker.probs(torch.full((S.shape[0],), b), keep)[:, tgt_cpu[b]]

        values[b, :nb] = enumerate_shapley(v, nb).values
    long = torch.tensor([b for b in range(B) if counts[b] > exact_max], dtype=torch.long)
    if len(long):
        def forward(presence: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            p = masker.probs(items.cpu(), presence.cpu() > 0.5)
            return p.gather(1, tgt_cpu[items.cpu()][:, None])[:, 0]

        # captum draws its permutations from torch's global RNG: seed it without leaving a trace.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            est = ShapleyValueSampling(forward).attribute(
                torch.ones(len(long), n), baselines=0.0, additional_forward_args=(long,),
                n_samples=permutations, perturbations_per_eval=n)  # PlayerMasker batches rows
        values[long] = est.double()
    return _finish("input-shapley", adapter, values, masker.positions, masker.player_mask, tgt,
                   probs, batch.tokens, batch.grid)


def _embedding_layer(adapter: ModelAdapter) -> torch.nn.Module:
    """The layer whose output IG attributes to: word embeddings or the patch embedding."""
    model = adapter.model
    if adapter.modality == "text":
        return model.get_input_embeddings()
    for name, module in model.named_modules():
        if name.endswith(("patch_embed", "patch_embeddings")):
            return module
    raise UserInputError(f"No patch-embedding layer found in {adapter.spec}; Integrated "
                         "Gradients needs one (a module named patch_embed or patch_embeddings).")


def integrated_gradients(adapter: ModelAdapter, inputs: Sequence[Any], target: Target = None,
                         steps: int = 32, fill: torch.Tensor | None = None) -> Attribution:
    """Integrated Gradients of the target logit on the embeddings (captum, batched).

    The baseline input removes every player (text: word pieces -> [MASK], specials kept;
    vision: every patch painted with the fill colour); a player's value is its embedding's
    attribution summed over the hidden dimension.
    """
    from captum.attr import LayerIntegratedGradients

    if steps < 1:
        raise UserInputError("integrated-gradients needs steps >= 1.")
    batch = adapter.prepare(inputs)
    tgt, probs = _full_pass(adapter, batch, target)
    masker = PlayerMasker(adapter, batch, fill)
    B, n = masker.player_mask.shape
    baseline = masker.masked_inputs(torch.arange(B), torch.zeros(B, n, dtype=torch.bool))
    key = "input_ids" if adapter.modality == "text" else "pixel_values"
    others = [k for k in batch.model_inputs if k != key]

    def forward(x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        inputs_ = {key: x, **dict(zip(others, extra))}
        return adapter.forward_logits(Batch(model_inputs=inputs_, valid_mask=batch.valid_mask,
                                            token_mask=batch.token_mask))

    lig = LayerIntegratedGradients(forward, _embedding_layer(adapter))
    attr = lig.attribute(batch.model_inputs[key], baselines=baseline[key], target=tgt,
                         additional_forward_args=tuple(batch.model_inputs[k] for k in others),
                         n_steps=steps, internal_batch_size=adapter.batch_size)
    scores = attr.detach().double().sum(-1).cpu()  # [B, T] text, [B, patches] vision
    positions = masker.positions
    if adapter.modality == "image":
        # The patch embedding has no prefix tokens: shift positions to patch indices.
        positions = (positions - adapter.num_prefix_tokens).masked_fill(~masker.player_mask, -1)
    values = _token_scores(scores, positions)
    return _finish("integrated-gradients", adapter, values, masker.positions, masker.player_mask,
                   tgt, probs, batch.tokens, batch.grid)


# -- registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A registered explanation method: its function, a one-line description, its options."""

    name: str
    fn: Callable[..., Attribution]
    description: str
    options: tuple[str, ...]


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("attention-shapley", attention_shapley,
           "exact Shapley values of an attention game (closed form)",
           ("game", "source", "layers", "heads")),
    Method("raw-attention", raw_attention, "[CLS] row of the aggregated attention",
           ("source", "layers", "heads")),
    Method("rollout", rollout, "attention rollout (Abnar & Zuidema)", ()),
    Method("grad-sam", grad_sam, "Grad-SAM: attention x ReLU(gradient), summed over keys",
           ("layers", "heads")),
    Method("integrated-gradients", integrated_gradients,
           "Integrated Gradients on the embeddings (captum)", ("steps", "fill")),
    Method("input-shapley", input_shapley,
           "Shapley values of masking players (exact for short inputs, else sampled; captum)",
           ("exact_max", "permutations", "seed", "fill")),
]}


def get_method(name: str) -> Method:
    """The registered method called `name`, or a UserInputError listing them."""
    if name not in METHODS:
        raise UserInputError(f"Unknown method {name!r}. Methods: {', '.join(METHODS)}.")
    return METHODS[name]


def explain(adapter: ModelAdapter, inputs: Sequence[Any], method: str = "attention-shapley",
            target: Target = None, **options: Any) -> Attribution:
    """Explain one batch of inputs with a registered method; options set to None are ignored.

    Raises UserInputError for an unknown method, or an option the method does not take.
    """
    m = get_method(method)
    given = {k: v for k, v in options.items() if v is not None}
    if adapter.modality == "text":
        given.pop("fill", None)  # a fill colour is a vision notion; text removal uses [MASK]
    unknown = sorted(set(given) - set(m.options))
    if unknown:
        takes = ", ".join(m.options) or "no options"
        raise UserInputError(f"Method {method} does not take {', '.join(unknown)} "
                             f"(it takes: {takes}).")
    if "source" in given and given["source"] not in SOURCES:
        raise UserInputError(f"Unknown attention source {given['source']!r}; use one of: "
                             f"{', '.join(SOURCES)}.")
    return m.fn(adapter, list(inputs), target=target, **given)
