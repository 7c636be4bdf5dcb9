"""`attnxai bench audit`: one audit of any model, stage by stage, against each stage's floor.

The audit runs as ``attnxai audit`` would (the default settings, the demo data, the activation
cache off so every stage does its work) with ``--model`` any spec, or ``random:bert-base`` /
``random:vit-b16`` (:mod:`attnxai.bench.basemodels`). Reported:

- every stage's seconds and share of the audit, timed from the audit's own progress reports;
- each stage's *work floor*: the forward (and backward) passes it must make, in tokens through
  the model as the audit's work model counts them (:func:`attnxai.audit.progress.audit_work`;
  images: images), priced at this machine's measured speed of a plain forward pass and of a
  forward+backward pass over the target inputs (after the audit, same batch size), and the
  stage's time over it (1.0: the stage costs no more than its passes; CAV training and saving
  make no passes: no floor);
- the time-left estimate the audit reported (``run_audit(time_left=...)``) at each tenth of
  the audit against the time that was actually left, and its largest error from 20% to 90%;
- the process's peak RSS (run it alone: the peak is the process's).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from attnxai.bench.timing import best_time, peak_rss_mb

#: Default target and concepts per modality: the demo audits the issues measured.
DEFAULTS = {
    "text": ("sports", ("sports-words", "finance-words", "weather", "negation")),
    "image": ("triangle", ("striped-objects", "red-objects")),
}
#: Stages in the order an audit reaches them, each with the progress texts that report it.
STAGES = (
    ("prediction", r"^predicting "),
    ("timing interventions", r"^timing a CAV intervention pass"),
    ("example activations", r"^concept and random-pool activations"),
    ("CAV training", r": trained \d+ CAVs"),
    ("target pass", r": gradients of "),
    ("pair effects", r"^effects of .*'s pairs"),
    ("CAV interventions", r"^CAV interventions of "),
    ("saving", r"^saving results"),
)
OTHER = "other (loading the data, hashing the model)"


@dataclass
class StageRow:
    """One stage: its seconds, share of the audit, and its floor of passes."""

    stage: str
    seconds: float
    share: float
    floor_s: float | None = None  # seconds of the passes it must make, at measured speed
    over_floor: float | None = None  # seconds / floor_s


@dataclass
class EtaRow:
    """The audit's time-left estimate at a point of its run against the real time left."""

    at: float  # share of the audit's wall time elapsed
    predicted_s: float | None
    actual_s: float

    @property
    def error(self) -> float | None:
        """predicted / actual - 1 (None without an estimate)."""
        return None if self.predicted_s is None else self.predicted_s / self.actual_s - 1


@dataclass
class AuditBench:
    """One benchmarked audit."""

    model: str
    target: str
    concepts: list[str]
    n_inputs: int
    total_s: float
    peak_rss_mb: float | None
    forward_per_input_s: float  # a forward pass of a target input of mean length
    backward_per_input_s: float  # a forward+backward pass of one
    stages: list[StageRow] = field(default_factory=list)
    eta: list[EtaRow] = field(default_factory=list)
    eta_max_error: float | None = None  # largest |error| from 20% to 90% of the run

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row, d in zip(self.eta, out["eta"]):
            d["error"] = row.error
        return out


def stage_of(text: str) -> tuple[str, bool]:
    """The stage a progress text reports, and whether it only opens a stage (a stage's label
    without a message: the time before it belongs to the stage before)."""
    for name, pattern in STAGES:
        if re.search(pattern, text):
            return name, ": " not in text and not text.startswith("predicting ")
    return OTHER, ": " not in text


def stage_seconds(events: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per stage from the audit's ``(seconds since start, text)`` reports: the time
    up to a report is the work of the stage it reports (of the stage before, when it only
    opens one); the time after the last report is saving's."""
    out: dict[str, float] = {}
    last_t, last_stage = 0.0, OTHER
    for t, text in events:
        stage, opens = stage_of(text)
        owner = last_stage if opens else stage
        out[owner] = out.get(owner, 0.0) + t - last_t
        last_t, last_stage = t, stage
    out[last_stage] = out.get(last_stage, 0.0) + max(total - last_t, 0.0)
    return out


def eta_rows(estimates: list[tuple[float, float | None]], total: float,
             at: tuple[float, ...] = tuple(k / 10 for k in range(1, 10))) -> list[EtaRow]:
    """At each share of the run in ``at``, the last estimate made by then against the truth."""
    rows = []
    for share in at:
        made = [(t, s) for t, s in estimates if t <= share * total]
        t, s = made[-1] if made else (share * total, None)
        rows.append(EtaRow(share, None if s is None else s - (share * total - t),
                           total * (1 - share)))
    return rows


def bench_audit(spec: str, target: str | None = None, concepts: tuple[str, ...] | None = None,
                device: str | None = None, effects: str = "all", dtype: str = "float32",
                batch_size: int = 32, log: Any = None) -> AuditBench:
    """Run and profile one audit of ``spec`` on its modality's demo data (see the module)."""
    import tempfile
    from pathlib import Path

    from attnxai.audit.config import AuditConfig
    from attnxai.audit.progress import COST_GRADIENT, audit_work, pass_units
    from attnxai.audit.runner import run_audit, validate_audit
    from attnxai.audit.store import Store
    from attnxai.bench.basemodels import PREFIX, random_model
    from attnxai.effects.config import EffectsConfig
    from attnxai.models import load_model
    from attnxai.tcav.run import plan_cavs

    path = str(random_model(spec)) if spec.startswith(PREFIX) else spec
    adapter = load_model(path, device=device, batch_size=batch_size, dtype=dtype)
    default_target, default_concepts = DEFAULTS[adapter.modality]
    target = target or str(adapter.card.get("planted_class") or (
        default_target if default_target in adapter.labels else adapter.labels[0]))
    config = AuditConfig(model=path, targets=(target,), concepts=concepts or default_concepts,
                         effects=EffectsConfig(level=effects), dtype=dtype)
    events: list[tuple[float, str]] = []
    estimates: list[tuple[float, float | None]] = []
    t0 = time.perf_counter()

    def progress(_: float, text: str) -> None:
        events.append((time.perf_counter() - t0, text))
        if log and (len(events) < 2 or stage_of(text)[0] != stage_of(events[-2][1])[0]):
            log(f"{events[-1][0]:8.1f} s  {text}")

    with tempfile.TemporaryDirectory(prefix="attnxai-bench-audit-") as tmp:
        run_audit(config, Store(Path(tmp) / "audit.duckdb"), progress=progress, adapter=adapter,
                  use_cache=False,
                  time_left=lambda s: estimates.append((time.perf_counter() - t0, s)))
    total = time.perf_counter() - t0
    peak = peak_rss_mb()

    # The floors: this machine's speed of the passes each stage must make.
    prep = validate_audit(config, adapter)
    ds = prep.datasets[0]
    inputs = [ds.data.items[i] for i in ds.selected[target][0]]
    # Priced per unit of work (a token through the model; images: an image), as the audit's
    # own work model counts it (audit_work), so padding is in both the floor and the stage.
    sample = inputs[:batch_size]
    forward = best_time(lambda: adapter.predict(sample, batch_size=batch_size), adapter.device,
                        2) / pass_units(adapter, sample, batch_size, True)
    backward = best_time(lambda: adapter.capture(sample, target=target), adapter.device,
                         2) / pass_units(adapter, sample, batch_size, False)
    plan = plan_cavs(prep.concepts, prep.pools, prep.config.tcav)
    work = audit_work(prep.config, adapter, plan, prep.concepts,
                      [(d.data, d.selected) for d in prep.datasets])
    units: dict[str, float] = {}
    for _, w, kind in work:
        units[kind] = units.get(kind, 0.0) + w
    floors = {"prediction": work[0][1] * forward,
              "example activations": work[1][1] * forward,
              "target pass": units.get("gradient", 0.0) / COST_GRADIENT * backward,
              "pair effects": units.get("pairs", 0.0) * forward,
              "CAV interventions": units.get("intervention", 0.0) * forward}
    per_input = pass_units(adapter, inputs, batch_size, True) / len(inputs)
    seconds = stage_seconds(events, total)
    stages = []
    for name in [n for n, _ in STAGES] + [OTHER]:
        if name not in seconds:
            continue
        floor = floors.get(name) or None
        stages.append(StageRow(name, seconds[name], seconds[name] / total, floor,
                               seconds[name] / floor if floor else None))
    eta = eta_rows(estimates, total)
    window = [r.error for r in eta if 0.2 <= r.at <= 0.9 + 1e-9 and r.error is not None]
    return AuditBench(model=spec, target=target, concepts=list(config.concepts),
                      n_inputs=len(inputs), total_s=total, peak_rss_mb=peak,
                      forward_per_input_s=forward * per_input,
                      backward_per_input_s=backward * per_input,
                      stages=stages, eta=eta,
                      eta_max_error=max(map(abs, window)) if window else None)


def format_audit_bench(b: AuditBench) -> str:
    """The stage table and the time-left table of one benchmarked audit."""
    def num(x: float | None, f: str = ".1f") -> str:
        return "—" if x is None else format(x, f)

    lines = [f"{b.model}: audit of {b.n_inputs} {b.target!r} inputs with "
             f"{', '.join(b.concepts)}: {b.total_s:.1f} s, peak RSS "
             f"{num(b.peak_rss_mb, '.0f')} MB",
             f"(a forward pass {1000 * b.forward_per_input_s:.1f} ms per input, forward+"
             f"backward {1000 * b.backward_per_input_s:.1f} ms)", "",
             "| stage | seconds | share | floor (s) | × floor |", "|---|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.seconds:.1f} | {r.share:.0%} | {num(r.floor_s)} | "
              f"{num(r.over_floor, '.2f')} |" for r in b.stages]
    lines += ["", "| at | time left said | actual | error |", "|---|---|---|---|"]
    lines += [f"| {r.at:.0%} | {num(r.predicted_s)} | {r.actual_s:.1f} | "
              f"{'—' if r.error is None else format(r.error, '+.0%')} |" for r in b.eta]
    lines.append(f"\nlargest time-left error from 20% to 90% of the run: "
                 f"{'—' if b.eta_max_error is None else format(b.eta_max_error, '.0%')}")
    return "\n".join(lines)

