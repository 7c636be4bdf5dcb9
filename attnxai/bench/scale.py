"""`attnxai bench scale`: how an audit's cost grows with its number of inputs.

For each built-in and each N, one audit at the default settings with the 4 concepts of
:data:`attnxai.bench.tcav.DEMO_AUDITS`, every layer and no causal effects (``--effects none``:
output effects and patching depend on the concepts' pairs, not on N, and CAV interventions
cap their inputs), of N generated inputs of the target class, stored in a fresh DuckDB file
without the activation cache (its size depends on the concepts, not on N):

- text (MiniLM): each input is ``"A; B"``, two distinct demo headlines
  (``attnxai/resources/demo/demo_headlines.csv``) drawn at random (seeded), so inputs are
  realistic, mostly distinct and about twice a headline's length; all labelled the target;
- shapes-vit: scenes of the target shape drawn by :func:`attnxai.shapes.render.sample_scene`
  (seeded) and rendered by :func:`~attnxai.shapes.render.render_scene` to PNG files in
  ``<folder>/<target>/``.

Each audit runs in its own process, so its peak RSS is its own. Reported per N: the audit's
wall time per input; the per-input work alone (prediction plus the target pass, timed from
the audit's progress messages) per input; peak RSS; the database's bytes per input and, between
consecutive N, its marginal bytes per input (what each further input adds: the fixed part,
chiefly every CAV's vector, drops out).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnxai.bench.tcav import DEMO_AUDITS
from attnxai.bench.timing import peak_rss_mb

SIZES = (100, 1000, 10000)
#: Stages of the per-input work, as the audit's progress messages name them.
_PER_INPUT_STAGES = ("predicting ", "gradients of ")


@dataclass
class ScaleRow:
    """One audit of N generated inputs."""

    model: str
    n_inputs: int
    total_s: float
    s_per_input: float  # the whole audit's wall time / N
    per_input_work_s: float  # prediction + target pass only, per input
    peak_rss_mb: float | None
    db_bytes: int
    db_bytes_per_input: float
    marginal_bytes_per_input: float | None = None  # vs the previous N

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_inputs(n: int, seed: int = 0) -> list[str]:
    """``n`` inputs ``"A; B"`` of two distinct random demo headlines."""
    from attnxai.io.datasets import demo_dataset

    heads = np.asarray(demo_dataset("text").items, dtype=object)
    rng = np.random.default_rng(seed)
    a = rng.integers(len(heads), size=n)
    b = (a + rng.integers(1, len(heads), size=n)) % len(heads)  # never the same headline
    return [f"{x}; {y}" for x, y in zip(heads[a], heads[b])]


def write_dataset(spec: str, target: str, n: int, folder: Path, seed: int = 0) -> Path:
    """Write ``n`` generated inputs of class ``target`` for ``spec``; return the dataset path."""
    folder.mkdir(parents=True, exist_ok=True)
    if "shapes" not in spec:
        import pandas as pd

        path = folder / f"scale_{n}.csv"
        pd.DataFrame({"text": text_inputs(n, seed), "label": target}).to_csv(path, index=False)
        return path
    from PIL import Image

    from attnxai.shapes.render import render_scene, sample_scene

    root = folder / f"scale_{n}"
    (root / target).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, n])
    for i in range(n):
        Image.fromarray(render_scene(sample_scene(rng, shape=target))).save(
            root / target / f"{i:05d}.png")
    return root


def _target(spec: str) -> str:
    """The demo audit's target class (shapes-vit: its planted class)."""
    target = DEMO_AUDITS[spec][0]
    if target is not None:
        return target
    from attnxai.models import load_model

    adapter = load_model(spec, device="cpu")
    return str(adapter.card.get("planted_class") or adapter.labels[0])


def measure(spec: str, n: int, folder: Path, device: str | None = None) -> ScaleRow:
    """One scale audit in this process (call it in a fresh one: the peak RSS is the process's)."""
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.effects.config import EffectsConfig

    target = _target(spec)
    data = write_dataset(spec, target, n, folder)
    db = folder / f"scale_{n}.duckdb"
    config = AuditConfig(model=spec, datasets=(str(data),), targets=(target,),
                         concepts=tuple(DEMO_AUDITS[spec][1]), device=device,
                         effects=EffectsConfig(level="none"))
    spans: dict[str, list[float]] = {}

    def progress(_: float, message: str) -> None:
        for stage in _PER_INPUT_STAGES:
            if stage in message:
                spans.setdefault(stage, []).append(time.perf_counter())

    t0 = time.perf_counter()
    run_audit(config, Store(db), progress=progress, use_cache=False)
    total = time.perf_counter() - t0
    work = sum(ts[-1] - ts[0] for ts in spans.values())
    size = db.stat().st_size
    return ScaleRow(model=spec, n_inputs=n, total_s=total, s_per_input=total / n,
                    per_input_work_s=work / n, peak_rss_mb=peak_rss_mb(), db_bytes=size,
                    db_bytes_per_input=size / n)


def bench_scale(spec: str, sizes: tuple[int, ...] = SIZES, device: str | None = None,
                folder: Path | None = None, log: Callable[[str], None] | None = None
                ) -> list[ScaleRow]:
    """One audit per N, each in a fresh process; marginal bytes between consecutive N.
    ``log`` gets each row as it is measured (the largest N takes the longest)."""
    rows: list[ScaleRow] = []
    with tempfile.TemporaryDirectory(prefix="attnxai-scale-") as tmp:
        where = Path(folder or tmp)
        for n in sizes:
            cmd = [sys.executable, "-m", "attnxai.bench.scale", spec, str(n), str(where),
                   device or ""]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"scale audit of {spec} at N={n} failed:\n{out.stderr[-4000:]}")
            row = ScaleRow(**json.loads(out.stdout.strip().splitlines()[-1]))
            if rows:
                prev = rows[-1]
                row.marginal_bytes_per_input = ((row.db_bytes - prev.db_bytes)
                                                / (row.n_inputs - prev.n_inputs))
            rows.append(row)
            if log:
                log(json.dumps(row.as_dict()))
    return rows


def format_scale_table(rows: list[ScaleRow]) -> str:
    """A plain-text table of the scale audits, with the targets."""
    head = (f"{'model':<24} {'N':>6} {'total s':>8} {'s/input':>8} {'work s/in':>9} "
            f"{'peak RSS MB':>11} {'DB B/input':>10} {'marginal B/in':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rss = "n/a" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"
        marginal = "" if r.marginal_bytes_per_input is None else f"{r.marginal_bytes_per_input:.0f}"
        lines.append(f"{r.model:<24} {r.n_inputs:>6} {r.total_s:>8.1f} {r.s_per_input:>8.4f} "
                     f"{r.per_input_work_s:>9.4f} {rss:>11} {r.db_bytes_per_input:>10.0f} "
                     f"{marginal:>13}")
    lines.append("targets (1,000 -> 10,000): per-input time within 25%, peak RSS +10% at most, "
                 "<= 2 KB of database per input")
    return "\n".join(lines)


if __name__ == "__main__":  # one audit, in the fresh process bench_scale starts
    _spec, _n, _folder, _device = sys.argv[1:5]
    print(json.dumps(measure(_spec, int(_n), Path(_folder), _device or None).as_dict()))
