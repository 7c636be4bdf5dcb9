"""An audit's progress: where each stage lies on the bar, and how many seconds are left.

Stages report on a nominal 0..1 scale (prediction 0-5%, the examples' activations 5-20%, the
analysis 20-95% with its causal effects last, saving). :func:`audit_work` estimates every
stage's work in tokens through the model (images: images), from the audit's shape (inputs and
their lengths, examples, CAVs, layers, pairs, intervention directions); :class:`Steps`
measures the seconds per unit of each kind of work as the stages run (the stage under way
included) and from that gives the bar's shares and the seconds left. A kind not measured yet
is priced at the rate of the passes most like its own (:data:`LIKE`): captures (the examples'
activations, written to disk as they come) like the examples', passes that return logits
alone (an edit's) like prediction's. So the work estimates are in forward passes wherever the
cost can be derived from the model: an edit at layer l reruns only the blocks after it
(:func:`attnxai.models.patching.layer_work`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from attnxai.audit.config import AuditConfig
from attnxai.effects.intervention import Recordings, cav_intervention
from attnxai.effects.run import by_pairs, moved_inputs
from attnxai.io.concepts import ConceptSet
from attnxai.io.datasets import Dataset
from attnxai.memory import release_freed_memory
from attnxai.models.base import ModelAdapter
from attnxai.models.lengths import batches_of, padded_tokens
from attnxai.models.patching import layer_work
from attnxai.tcav.run import CAVPlan, FractionProgress, labels_name_class

#: Receives the run's estimate of the seconds it has left (None until a rate is measured).
TimeLeft = Callable[["float | None"], None]

# Where the run's stages lie on the nominal 0..1 scale the code reports progress in:
# prediction (validate_audit), the concept and pool examples' activations, each dataset x
# target's TCAV then the causal effects (_execute), saving.
PREDICTED, EXAMPLES, ANALYSED = 0.05, 0.2, 0.95
#: The share of the analysis span that the causal effects take, when they run.
EFFECTS_SHARE = 0.25
#: example_tables reports the examples' activations as the first 30% of its stage; run_tcav
#: reports its CAV fits from 30% to 60% and its gradients from 60% to 95% of its stage.
ACTIVATIONS_DONE, FITS_DONE, GRADIENTS_DONE = 0.3, 0.6, 0.95
# Prior costs in forward passes, until a stage of the kind measures its own: a capture with
# gradients about 2 (per token); one CAV fit at one layer 1-3 passes of an input (on the
# built-ins; a fit is no forward pass, so this only sizes the bar: no time left is said on it,
# see Steps); storing a result row about a thousandth of an input's pass.
COST_GRADIENT, _COST_FIT, _COST_ROW = 2.0, 2.0, 1e-3
#: Kinds of work that are not forward passes: their seconds are unknown until measured.
UNPRICED = ("fit",)
#: The measured kinds that price a kind of passes not measured yet, most alike first: on two
#: ViT-B/16 audits the examples' captures ran at 1.19 and 1.45 of a plain pass's floor,
#: prediction at 1.22 and 1.29, the pairs' edited passes at 1.10 both times.
LIKE = {"gradient": ("forward", "predict")}
#: ... and for every other kind (plain and edited passes).
PLAIN = ("predict", "forward")


class AuditCancelled(Exception):
    """Raised by ``run_audit`` after a cancelled run has been marked ``cancelled``."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"audit run {run_id} was cancelled")
        self.run_id = run_id


def pass_units(adapter: ModelAdapter, items: Sequence[Any], batch_size: int,
               by_length: bool) -> float:
    """The work of passes over ``items`` in batches of ``batch_size`` (of alike length when
    ``by_length``, as predictions and CAV interventions run; else in order): the tokens they
    process, padding included, for text; the inputs, for images."""
    counts = adapter.token_counts(items) if len(items) else None
    return float(padded_tokens(counts, batches_of(counts, len(items), batch_size, by_length)))


def audit_work(config: AuditConfig, adapter: ModelAdapter, plan: CAVPlan,
               concepts: Sequence[ConceptSet],
               datasets: Sequence[tuple[Dataset, dict[str, tuple[list[int], str]] | None]]
               ) -> list[tuple[float, float, str]]:
    """The estimated work of each stage, as ``(end on the nominal scale, units, kind)``, in
    the order the run reaches them. A unit is a token through the model (:func:`pass_units`;
    for images, an image), so a stage is priced by what its passes process, padding included.

    Each dataset comes with its selected inputs per target, or None before prediction: then
    a target's inputs are those labelled with it when the labels name it, else an equal share.
    The causal effects are one stage per paired concept, then one per dataset x target x
    concept without pairs, as the runner reports them.
    """
    tcav, effects = config.tcav, config.effects
    bs = tcav.batch_size or adapter.batch_size
    layers = list(tcav.layers) if tcav.layers is not None else list(range(adapter.num_layers))
    # Per dataset x target, in the run's order: its inputs, the units of its target pass (a
    # capture) and of one direction of its CAV interventions at every layer (the first inputs).
    targets: list[tuple[float, float, float]] = []
    cap = effects.intervention_inputs
    predicted = [pass_units(adapter, ds.items, bs, True) for ds, _ in datasets]
    for (ds, selected), ds_units in zip(datasets, predicted):
        for t in config.targets:
            if selected is not None or labels_name_class(ds.labels, t):
                items = ([ds.items[i] for i in selected[t][0]] if selected is not None
                         else [x for x, y in zip(ds.items, ds.labels) if y == t])
                items = items[: config.limit] if config.limit else items
                moved = moved_inputs(items, effects)
                targets.append((len(items), pass_units(adapter, items, bs, False),
                                pass_units(adapter, moved, bs, True)))
                continue
            # An equal share of the inputs, priced at the dataset's mean input.
            n = len(ds) / max(len(adapter.labels), 1)
            n = min(n, config.limit) if config.limit else n
            mean = ds_units / max(len(ds), 1)
            targets.append((n, n * mean, min(n, cap) * mean))
    per_input = sum(predicted) / max(sum(len(ds) for ds, _ in datasets), 1)  # an input's pass
    work = [(PREDICTED, sum(predicted), "predict"),
            (PREDICTED + (EXAMPLES - PREDICTED) * ACTIVATIONS_DONE,
             pass_units(adapter, plan.examples.items, bs, False), "forward"),
            (EXAMPLES, 0.0, "other")]
    level = effects.level
    tcav_end = ANALYSED - (ANALYSED - EXAMPLES) * (EFFECTS_SHARE if level != "none" else 0)
    span = (tcav_end - EXAMPLES) / max(len(targets), 1)
    fits = len(plan.specs) * _COST_FIT * per_input  # per layer
    for k, (_, gradient, _) in enumerate(targets):  # the first dataset x target fits every layer
        lo = EXAMPLES + k * span
        work.append((lo + span * ACTIVATIONS_DONE, 0.0, "other"))
        if k == 0:  # run_tcav reports each layer's fits as it finishes them
            work += [(lo + span * (ACTIVATIONS_DONE + (FITS_DONE - ACTIVATIONS_DONE)
                                   * (j + 1) / len(layers)), fits, "fit")
                     for j in range(len(layers))]
        else:
            work.append((lo + span * FITS_DONE, 0.0, "other"))
        work += [(lo + span * GRADIENTS_DONE, gradient * COST_GRADIENT, "gradient"),
                 (lo + span, 0.0, "other")]
    if level != "none":
        edits = sum(layer_work(layers, adapter))
        paired, unpaired = by_pairs(concepts, effects)
        # Pairs: both members' recorded passes, then one edited pass per layer and way (or,
        # without patching, their logits alone: batched by length).
        by_length = not effects.patching
        jobs = [((pass_units(adapter, c.examples, bs, by_length)
                  + pass_units(adapter, c.counterexamples, bs, by_length))
                 * (1 + edits if effects.patching else 1), "pairs") for c in paired]
        directions = intervention_directions(config)
        # Per target, one plain pass of its moved inputs serves every layer and concept.
        moves = sum(layer_work(layers, adapter, shifts=True))
        jobs += [(units * (directions * moves + (i == 0)), "intervention")
                 for _, _, units in targets for i in range(len(unpaired))]
        step = (ANALYSED - tcav_end) / max(len(jobs), 1)
        work += [(tcav_end + (k + 1) * step, units, kind) for k, (units, kind) in enumerate(jobs)]
        if not jobs:
            work.append((ANALYSED, 0.0, "other"))
    # Saving writes the rows kept per input (every concept, layer and weighting) and the CAVs.
    rows = (sum(n for n, _, _ in targets) * len(concepts) + len(plan.specs)) * len(layers) \
        * len(tcav.weightings())
    return work + [(1.0, rows * _COST_ROW * per_input, "save")]


def intervention_directions(config: AuditConfig) -> int:
    """The directions one layer of a concept's CAV interventions moves the inputs along: its
    CAVs and the null's."""
    return config.effects.intervention_null + min(config.tcav.num_cavs,
                                                  config.effects.intervention_cavs)


def time_interventions(adapter: ModelAdapter, inputs: Sequence[Any], target: str,
                       config: AuditConfig) -> tuple[float, float]:
    """Seconds and units (:func:`audit_work`'s) of one CAV intervention of the audit's own
    shape (its moved inputs, as many random directions as a layer moves) at the third-last
    block, which reruns one block, the last and the head: what the time left prices the
    interventions at before the first of them has run. Passes stacked over many directions run
    at another speed than the examples' batches (on a GPU several times faster), and the
    examples may come from the cache. The faster of two passes (the first also records the
    inputs and touches its memory the first time): about two seconds at BERT-base on a
    laptop's CPU."""
    import torch

    L = adapter.num_layers
    # A layer with one whole block after it (and the last, in its read rows only).
    layer = max(L - 3, 0)
    bs = config.tcav.batch_size or adapter.batch_size
    moved = moved_inputs(inputs, config.effects)
    k = intervention_directions(config)
    directions = torch.nn.functional.normalize(
        torch.randn(k, adapter.width, generator=torch.Generator().manual_seed(0)), dim=1)
    recordings: Recordings = {}
    seconds = []
    for _ in range(2):  # the first also records the inputs' plain pass
        start = time.perf_counter()
        cav_intervention(adapter, moved, target, layer, directions, torch.ones(k), bs,
                         recordings=recordings)
        seconds.append(time.perf_counter() - start)
    work = layer_work([layer], adapter, shifts=True)[0]
    return min(seconds), pass_units(adapter, moved, bs, True) * k * work


class Steps:
    """Maps each stage's own 0..1 progress into the run's, checks for cancellation, and
    estimates the seconds left.

    :meth:`plan` gives every stage still to come its share of the rest of the bar by its work
    (:func:`audit_work`) times the measured seconds per unit of that kind of work: each
    finished stage measures its kind, and the stages after it are shared out again. The bar
    keeps what it shows and never moves back, so it cannot itself say how long is left: the
    seconds left are the work still to do times each kind's rate, measured so far (the stage
    under way counts from its first report), and reported to ``time_left``.
    """

    def __init__(self, run_id: str, progress: FractionProgress | None,
                 cancel: threading.Event | None, time_left: TimeLeft | None = None) -> None:
        self.run_id, self.progress, self.cancel = run_id, progress, cancel
        self.time_left = time_left
        self.lo, self.hi, self.label = 0.0, 1.0, ""
        self.knots = [(0.0, 0.0), (1.0, 1.0)]  # nominal -> shown; the identity until planned
        self.at, self.shown = 0.0, 0.0
        self.work: list[tuple[float, float, float, str]] = []  # (start, end, units, kind) to come
        self.spent: dict[str, list[float]] = {}  # kind -> [seconds, units] measured so far
        self.mark = time.perf_counter()  # when the stage under way began
        self.inside = False  # whether a report fell within the work item under way

    def plan(self, work: list[tuple[float, float, str]]) -> None:
        """The stages' ``(nominal end, units, kind)`` in order (:func:`audit_work`); those
        ending after the current position share the rest of the bar."""
        starts = [0.0] + [end for end, _, _ in work[:-1]]
        self.work = [(max(a, self.at), e, w * max(0.0, min(1.0, (e - self.at) / (e - a)))
                      if e > a else 0.0, k)
                     for a, (e, w, k) in zip(starts, work) if e > self.at]
        self._share()

    def calibrate(self, kind: str, seconds: float, units: float, took: float) -> None:
        """Price ``kind`` by a timed sample of its work (``units`` in ``seconds``:
        :func:`time_interventions`) that took ``took`` seconds just now, which are not the
        stage under way's."""
        spent = self.spent.setdefault(kind, [0.0, 0.0])
        spent[0] += seconds
        spent[1] += units
        self.mark += took

    def _measured(self) -> dict[str, tuple[float, float]]:
        """Seconds and units of each kind so far, the stage under way included."""
        out = {k: (s, u) for k, (s, u) in self.spent.items()}
        if self.work:
            start, end, units, kind = self.work[0]
            done = units * min(max((self.at - start) / (end - start), 0.0), 1.0) \
                if end > start else 0.0
            if done > 0:
                s, u = out.get(kind, (0.0, 0.0))
                out[kind] = (s + time.perf_counter() - self.mark, u + done)
        return out

    @staticmethod
    def _rate(measured: dict[str, tuple[float, float]], kind: str) -> float | None:
        """Seconds per unit of ``kind``; until measured, that of the passes most like its
        own (:data:`LIKE`)."""
        for k in (kind, *LIKE.get(kind, PLAIN)):
            seconds, units = measured.get(k, (0.0, 0.0))
            if units > 0 and seconds > 0:
                return seconds / units
        return None

    def seconds_left(self) -> float | None:
        """The work still to do at each kind's measured rate; None before a forward pass is
        measured, and while work is to come of a kind that is no forward pass
        (:data:`UNPRICED`: CAV fits, whose cost per fit differs by an order of magnitude
        between models) and has not run yet."""
        measured = self._measured()
        left = 0.0
        for i, (start, end, units, kind) in enumerate(self.work):
            rate = self._rate(measured, kind)
            if rate is None or (units > 0 and kind in UNPRICED and kind not in measured):
                return None
            todo = units if i else units * (1.0 - min(max(
                (self.at - start) / (end - start), 0.0), 1.0) if end > start else 0.0)
            left += todo * rate
        return left

    def _share(self) -> None:
        x0, y0 = self.at, self.shown
        measured = {k: (s, u) for k, (s, u) in self.spent.items()}
        weights = [(e, w * (self._rate(measured, k) or 1.0)) for _, e, w, k in self.work]
        total = sum(w for _, w in weights)
        if total <= 0:
            return
        kept = [(x, y) for x, y in self.knots if x < x0] + [(x0, y0)]
        done = 0.0
        for e, w in weights:
            done += w
            kept.append((e, y0 + (1.0 - y0) * done / total))
        self.knots = kept

    def _shown(self, nominal: float) -> float:
        for (x1, y1), (x2, y2) in zip(self.knots, self.knots[1:]):
            if nominal <= x2:
                return y1 if x2 <= x1 else y1 + (y2 - y1) * (nominal - x1) / (x2 - x1)
        return self.knots[-1][1]

    def stage(self, lo: float, hi: float, label: str) -> None:
        """The stage from ``lo`` to ``hi`` on the nominal scale begins (with the memory the
        last one freed given back, so its peak does not add to this one's)."""
        release_freed_memory()
        self.lo, self.hi, self.label = lo, hi, label
        self(0.0, "")

    def check(self) -> None:
        """Raise :class:`AuditCancelled` once the run was asked to stop."""
        if self.cancel is not None and self.cancel.is_set():
            raise AuditCancelled(self.run_id)

    def __call__(self, fraction: float, message: str) -> None:
        self.check()  # called per batch, so a cancel takes effect within one batch
        self.at = max(self.at, self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0))
        self.shown = max(self.shown, self._shown(self.at))
        finished = False
        if self.work and self.work[0][0] < self.at <= self.work[0][1]:
            self.inside = True
        while self.work and self.at >= self.work[0][1]:  # a stage ended: measure its kind
            _, _, units, kind = self.work.pop(0)
            now = time.perf_counter()
            # A stage that reported nothing of its own work did not do it (activations read
            # from the cache): its seconds do not price its kind.
            if units > 0 and self.inside:
                spent = self.spent.setdefault(kind, [0.0, 0.0])
                spent[0] += now - self.mark
                spent[1] += units
            self.mark, self.inside, finished = now, False, True
        if finished:  # the stages after it, shared again by what their kinds measured
            self._share()
        if self.progress:
            text = f"{self.label}: {message}" if self.label and message else self.label or message
            self.progress(self.shown, text)
        if self.time_left:
            self.time_left(self.seconds_left())
