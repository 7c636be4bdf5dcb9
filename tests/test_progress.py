"""An audit's time left: the work model, the estimate against a simulated clock, and the
benchmark that compares it with the truth on a real audit."""

from __future__ import annotations

import pytest
import torch

from attnxai.audit import progress as progress_mod
from attnxai.audit.progress import Steps
from attnxai.models.patching import layer_work
from attnxai.bench.audit import EtaRow, eta_rows, stage_of, stage_seconds
from conftest import TEXTS


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_time_left_is_exact_for_each_kind_once_measured(monkeypatch):
    """Three stages whose kinds run at 1, 0.5 and 3 s per unit. While a kind has not run,
    it is priced at the forward rate (passes are passes), except CAV fits, which are not: then
    nothing is said; from the first report of a stage of a kind on, its own rate. So the
    estimate is exact in the last stage and off by exactly the unmeasured intervention's
    mispricing before it."""
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", clock)
    rates = {"forward": 1.0, "fit": 0.5, "intervention": 3.0}
    work = [(0.2, 10.0, "forward"), (0.6, 40.0, "fit"), (1.0, 20.0, "intervention")]
    said: list[float | None] = []
    steps = Steps("r", None, None, time_left=said.append)
    steps.plan(work)
    starts = [0.0] + [e for e, _, _ in work[:-1]]
    truth_total = sum(u * rates[k] for _, u, k in work)
    spent = 0.0
    checks = []
    for (lo, (hi, units, kind)) in zip(starts, work):
        steps.stage(lo, hi, kind)
        for i in range(1, 11):  # ten equal reports per stage
            clock.t += units / 10 * rates[kind]
            spent += units / 10 * rates[kind]
            steps(i / 10, f"{i}/10")
            checks.append((kind, i, said[-1], truth_total - spent))
    for kind, i, estimate, truth in checks:
        if kind == "forward":
            assert estimate is None  # CAV fits are to come, and no forward pass prices them
        elif kind == "intervention":
            assert estimate == pytest.approx(truth)
        elif kind == "fit":
            # Every fit is priced right; the 20 intervention units at 1 s instead of 3 s.
            assert estimate == pytest.approx(truth - 20 * (3.0 - 1.0))
    assert said[-1] == pytest.approx(0.0)


def test_nothing_is_said_before_a_first_rate(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", clock)
    said: list[float | None] = []
    steps = Steps("r", None, None, time_left=said.append)
    steps.plan([(0.5, 4.0, "forward"), (1.0, 4.0, "gradient")])
    steps.stage(0.0, 0.5, "predicting")
    assert said == [None]
    clock.t = 2.0
    steps(0.5, "1/2")  # two units in 2 s: 1 s per unit for the six left
    assert said[-1] == pytest.approx(6.0)


def test_a_stage_served_from_the_cache_prices_nothing_and_a_sample_prices_its_kind(monkeypatch):
    """The examples' stage read from the cache reports nothing of its own: its few seconds
    do not make the passes to come look free. A timed sample of interventions (calibrate)
    prices them before they run, and its seconds are not the stage under way's."""
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", clock)
    said: list[float | None] = []
    steps = Steps("r", None, None, time_left=said.append)
    steps.plan([(0.1, 10.0, "predict"), (0.3, 100.0, "forward"), (0.4, 0.0, "other"),
                (0.7, 20.0, "gradient"), (1.0, 50.0, "intervention")])
    steps.stage(0.0, 0.1, "predicting")
    clock.t = 20.0
    steps(1.0, "10/10")  # 2 s per unit
    steps.stage(0.1, 0.4, "examples")  # all cached: no report until the next stage
    clock.t = 20.5
    steps.stage(0.4, 0.7, "target pass")
    # Gradients and interventions at prediction's rate, not at the cache's.
    assert said[-1] == pytest.approx(20 * 2.0 + 50 * 2.0)
    clock.t = 25.5
    steps.calibrate("intervention", 4.0, 8.0, took=5.0)  # 0.5 s per unit, in the last 5 s
    assert said[-1] == pytest.approx(20 * 2.0 + 50 * 2.0)
    clock.t = 35.5
    steps(0.5, "half")  # the sample's 5 s are not the stage's: 10 s for its 10 units
    assert said[-1] == pytest.approx(10 * 1.0 + 50 * 0.5)


def test_an_intervention_sample_runs_the_audits_shape(tiny_bert_dir):
    """time_interventions times one edited pass of the audit's moved inputs and directions at
    the second-last block, priced in audit_work's units: one block of that many inputs."""
    import attnxai
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.progress import intervention_directions, pass_units, time_interventions
    from attnxai.effects.config import EffectsConfig
    from attnxai.models.patching import READ_ROWS_BLOCKS, READOUT_BLOCKS, SHIFTED_BLOCKS

    bert = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    config = AuditConfig(model=str(tiny_bert_dir), targets=("positive",), concepts=("c",),
                         effects=EffectsConfig(intervention_inputs=4, intervention_null=20))
    assert intervention_directions(config) == 30
    seconds, units = time_interventions(bert, TEXTS, "positive", config)
    moved = [TEXTS[i] for i in (0, 2, 3, 5)]  # four spread over six
    L = bert.num_layers
    assert seconds > 0
    # Edited at the first of three layers: the second with its projections given, the last
    # in its read rows only.
    blocks = SHIFTED_BLOCKS + READ_ROWS_BLOCKS + READOUT_BLOCKS
    assert units == pytest.approx(pass_units(bert, moved, 32, True) * 30 * blocks / L)


def test_an_edit_reruns_the_blocks_after_its_layer(tiny_bert_dir):
    """layer_work counts the blocks an edit at each layer really runs, in forward passes:
    whole blocks counted by hooks on their attention modules (which a replayed block, and the
    last block in its read rows, never call), the last block's read rows by the rows its
    feed-forward sees."""
    import attnxai
    from attnxai.models.last_block import read_positions
    from attnxai.models.patching import (READ_ROWS_BLOCKS, READOUT_BLOCKS, SHIFTED_BLOCKS,
                                         patched_blocks, record_block_outputs)

    bert = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    L = bert.num_layers
    batch = bert.prepare(TEXTS[:2])
    _, replay = record_block_outputs(bert, batch)
    rows = read_positions(bert.pooling, batch.token_mask)
    whole: list[int] = []
    read: list[int] = []
    blocks = bert.block_modules()
    handles = [blk.attention.register_forward_hook(lambda *a, k=k: whole.append(k))
               for k, blk in enumerate(blocks)]
    handles.append(blocks[-1].intermediate.register_forward_hook(
        lambda m, i, o: read.append(i[0].shape[1])))
    try:
        with patched_blocks(bert, {0: lambda h: h + 1.0}, replay=replay, rows=rows):
            bert.forward_logits(batch)  # the first use checks the read rows against the block
        for layer in range(L):
            whole.clear()
            read.clear()
            with patched_blocks(bert, {layer: lambda h: h + 1.0}, replay=replay, rows=rows):
                bert.forward_logits(batch)
            assert whole == list(range(layer + 1, L - 1))
            assert read == ([1] if layer < L - 1 else [])
            work = len(whole) + READ_ROWS_BLOCKS * len(read) + READOUT_BLOCKS
            assert layer_work([layer], bert) == [pytest.approx(work / L)]
            # An intervention's next block, where it runs whole, has its projections given.
            work -= (1 - SHIFTED_BLOCKS) * bool(whole)
            assert layer_work([layer], bert, shifts=True) == [pytest.approx(work / L)]
    finally:
        for h in handles:
            h.remove()


def test_stage_seconds_give_each_report_its_stage():
    events = [(1.0, "loading m"), (2.0, "predicting demo (4/8 inputs)"),
              (3.0, "predicting demo (8/8 inputs)"), (3.5, "concept and random-pool activations"),
              (6.0, "concept and random-pool activations: activations of 9 concept and random "
                    "examples"),
              (6.5, "demo / x"), (9.0, "demo / x: trained 30 CAVs at layer 0"),
              (10.0, "demo / x: gradients of 5 inputs of 'x'"),
              (10.5, "CAV interventions of c on demo / x"),
              (14.0, "CAV interventions of c on demo / x: layer 1"),
              (15.0, "saving results")]
    seconds = stage_seconds(events, total=16.0)
    assert seconds == {"other (loading the data, hashing the model)": 1.0,
                       "prediction": 2.5, "example activations": 3.0, "CAV training": 2.5,
                       "target pass": 1.5, "CAV interventions": 4.5, "saving": 1.0}
    assert sum(seconds.values()) == pytest.approx(16.0)
    assert stage_of("CAV interventions of c on demo / x") == ("CAV interventions", True)


def test_eta_rows_count_down_the_last_estimate():
    rows = eta_rows([(1.0, None), (2.0, 10.0), (6.0, 2.0)], total=10.0, at=(0.1, 0.3, 0.8))
    assert rows[0] == EtaRow(0.1, None, 9.0)
    assert rows[1].predicted_s == pytest.approx(9.0) and rows[1].actual_s == pytest.approx(7.0)
    assert rows[2].predicted_s == pytest.approx(0.0) and rows[2].error == pytest.approx(-1.0)


def test_bench_audit_profiles_a_real_audit(tmp_path):
    """A small BERT with the demo's classes, audited with a paired and an unpaired concept:
    every stage is timed, the stages add up to the audit, the forward stages have floors."""
    import transformers as tf

    from attnxai.bench.audit import bench_audit, format_audit_bench
    from attnxai.bench.basemodels import RANDOM_MODELS
    from attnxai.models.loading import minilm_dir

    labels = RANDOM_MODELS["bert-base"][1]
    torch.manual_seed(0)
    tf.BertForSequenceClassification(tf.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=4, id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)})).save_pretrained(tmp_path)
    tf.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path)
    result = bench_audit(str(tmp_path), concepts=("sports-words", "negation"))
    stages = {r.stage: r for r in result.stages}
    assert {"prediction", "example activations", "CAV training", "target pass", "pair effects",
            "CAV interventions", "saving"} <= set(stages)
    assert sum(r.seconds for r in result.stages) == pytest.approx(result.total_s, rel=1e-6)
    assert sum(r.share for r in result.stages) == pytest.approx(1.0)
    for name in ("prediction", "target pass", "pair effects", "CAV interventions"):
        assert stages[name].floor_s > 0
    assert stages["CAV training"].floor_s is None
    assert result.n_inputs == 34 and len(result.eta) == 9
    assert any(r.predicted_s is not None for r in result.eta)
    assert "| CAV interventions |" in format_audit_bench(result)
