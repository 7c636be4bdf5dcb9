"""`attnxai bench capture`: one-pass capture against a bare pass and a per-sample loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from attnxai.bench.timing import best_time, measure_peak_memory
from attnxai.models.base import ModelAdapter


@dataclass
class CaptureBench:
    """Timings of one model's capture against a bare pass and a per-sample loop."""

    model: str
    device: str
    n_inputs: int
    batch_size: int
    bare_s: float  # batched forward + backward to the first block's input, nothing recorded
    capture_s: float  # adapter.capture: one forward + one backward per batch, all layers
    loop_s: float  # adapter.capture called once per input
    capture_over_bare: float  # target <= 1.25
    loop_over_capture: float  # target >= 4
    peak_mem_mb: float | None  # CUDA: peak allocated during capture; CPU: peak RSS growth
    captured_mb: float  # size of the returned tensors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bare_forward_backward(adapter: ModelAdapter, inputs: Sequence[Any], batch_size: int) -> None:
    """The least a gradient method must do: forward, and backward through every block.

    The gradient is taken w.r.t. the first block's input (not the weights), which walks back
    through the same layers capture does, without recording anything.
    """
    first = adapter.block_modules()[0]
    for start in range(0, len(inputs), batch_size):
        batch = adapter.prepare(inputs[start:start + batch_size])
        seen: list[torch.Tensor] = []
        handle = first.register_forward_pre_hook(lambda m, args, *rest: seen.append(args[0]))
        try:
            logits = adapter.forward_logits(batch)
        finally:
            handle.remove()
        objective = logits.gather(1, logits.argmax(-1, keepdim=True)).sum()
        torch.autograd.grad(objective, seen[0])


def bench_capture(adapter: ModelAdapter, inputs: Sequence[Any], batch_size: int = 32,
                  repeats: int = 3) -> CaptureBench:
    """Time capture vs a bare batched forward+backward and vs a per-sample loop."""
    inputs = list(inputs)
    bare = best_time(lambda: bare_forward_backward(adapter, inputs, batch_size), adapter.device, repeats)
    cap = best_time(lambda: adapter.capture(inputs, batch_size=batch_size), adapter.device, repeats)
    loop = best_time(lambda: [adapter.capture([x], batch_size=1) for x in inputs], adapter.device,
                  max(1, repeats - 2))
    result: list[Any] = []
    peak = measure_peak_memory(lambda: result.append(adapter.capture(inputs, batch_size=batch_size)),
                               adapter.device)
    return CaptureBench(
        model=adapter.spec, device=str(adapter.device), n_inputs=len(inputs),
        batch_size=batch_size, bare_s=bare, capture_s=cap, loop_s=loop,
        capture_over_bare=cap / bare, loop_over_capture=loop / cap, peak_mem_mb=peak,
        captured_mb=result[0].nbytes() / 2**20,
    )


def format_capture_table(rows: list[CaptureBench]) -> str:
    """A plain-text table of capture benchmarks with the targets."""
    head = (f"{'model':<26} {'device':<6} {'n':>4} {'bs':>3} {'bare s':>8} {'capture s':>9} "
            f"{'loop s':>8} {'cap/bare':>9} {'loop/cap':>9} {'peak MB':>8} {'out MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}"
        lines.append(
            f"{r.model:<26} {r.device:<6} {r.n_inputs:>4} {r.batch_size:>3} {r.bare_s:>8.3f} "
            f"{r.capture_s:>9.3f} {r.loop_s:>8.3f} {r.capture_over_bare:>8.2f}x "
            f"{r.loop_over_capture:>8.1f}x {peak:>8} {r.captured_mb:>7.1f}")
    lines.append("targets: capture/bare <= 1.25x, per-sample loop/capture >= 4x")
    return "\n".join(lines)


@dataclass
class CaptureMemoryBench:
    """Peak memory of one TCAV capture (forward + backward) at one input length, recording
    each layer's full attention matrices against the readout rows alone."""

    model: str
    device: str
    tokens: int
    inputs: int
    full_mb: float | None
    rows_mb: float | None
    full_captured_mb: float
    rows_captured_mb: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decoder_for_memory(device: str | None = None) -> ModelAdapter:
    """A decoder-only classifier built from a config (Llama: 4 blocks, width 256, 8 query and 2
    key-value heads, rotary positions; random weights, MiniLM's tokenizer): the memory of a
    capture depends on the shapes, not on what the weights learned."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from attnxai.models.loading import minilm_dir
    from attnxai.models.text import HFTextClassifier

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    tokenizer.model_max_length = 4096  # its own limit is BERT's 512 positions
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                         max_position_embeddings=4096, num_labels=2,
                         pad_token_id=tokenizer.pad_token_id)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    kw = {"device": device} if device else {}
    return HFTextClassifier(model, tokenizer, "llama (4 blocks, width 256, from config)", **kw)


def _texts(T: int, n: int) -> list[str]:
    """``n`` texts of exactly ``T`` tokens: one word piece per word, plus two specials."""
    return [" ".join(["apple"] * (T - 2))] * n


def memory_child(T: int, inputs: int, attention: str, device: str | None) -> dict[str, Any]:
    """One measurement, in a fresh process (memory freed by an earlier capture would otherwise
    be reused and hide the peak): build the decoder, warm up on short texts, then the peak
    memory of one capture of ``inputs`` texts of ``T`` tokens."""
    adapter = decoder_for_memory(device)
    adapter.capture(_texts(8, inputs), target=0, attention=attention)
    texts, out = _texts(T, inputs), []
    peak = measure_peak_memory(lambda: out.append(adapter.capture(
        texts, target=0, batch_size=inputs, attention=attention)), adapter.device)
    cap = out[0]
    return {"model": adapter.spec, "device": str(adapter.device), "peak_mb": peak,
            "kept_mb": cap.nbytes() / 2**20, "rows": cap.attention_rows,
            "tokens": int(cap.token_mask.shape[1])}


def bench_capture_memory(lengths: Sequence[int] = (128, 512, 2048), inputs: int = 4,
                         device: str | None = None) -> list[CaptureMemoryBench]:
    """Peak memory of a capture with gradients of ``inputs`` texts of exactly each length, as
    TCAV captures them (attention="readout") and with the full matrices, each in its own
    process."""
    import json
    import subprocess
    import sys

    def child(T: int, attention: str) -> dict[str, Any]:
        code = ("import json, sys; from attnxai.bench.capture import memory_child; "
                f"print(json.dumps(memory_child({T}, {inputs}, {attention!r}, {device!r})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    rows = []
    for T in lengths:
        rows_, full = child(T, "readout"), child(T, "full")
        if not rows_["rows"] or rows_["tokens"] != T:
            raise ValueError(f"the capture did not record readout rows of {T} tokens")
        rows.append(CaptureMemoryBench(full["model"], full["device"], T, inputs,
                                       full["peak_mb"], rows_["peak_mb"], full["kept_mb"],
                                       rows_["kept_mb"]))
    return rows


def format_memory_table(rows: list[CaptureMemoryBench]) -> str:
    """The memory benchmark as text: peak and captured MB, full matrices vs readout rows."""
    head = (f"{'tokens':>6} {'inputs':>6} {'peak MB full':>12} {'peak MB rows':>12} "
            f"{'full/rows':>9} {'kept MB full':>12} {'kept MB rows':>12}")
    lines = [f"{rows[0].model} on {rows[0].device}" if rows else "", head, "-" * len(head)]
    for r in rows:
        ratio = (f"{r.full_mb / r.rows_mb:>8.1f}x" if r.full_mb and r.rows_mb else f"{'n/a':>9}")
        peak = [f"{v:>12.0f}" if v is not None else f"{'n/a':>12}" for v in (r.full_mb, r.rows_mb)]
        lines.append(f"{r.tokens:>6} {r.inputs:>6} {peak[0]} {peak[1]} {ratio} "
                     f"{r.full_captured_mb:>12.1f} {r.rows_captured_mb:>12.1f}")
    lines.append("peak: CUDA allocator peak, or growth of the peak resident memory on the CPU; "
                 "kept: the capture's tensors")
    return "\n".join(lines)
