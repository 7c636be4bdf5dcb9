"""Audit runs in the DuckDB store: round trip against in-memory TCAV, CSV export, failures,
cancellation, concurrent runs (threads and processes), the activation cache, migrations,
locking, and the CLI (`audit --db`, `runs`, `export`, `concepts`) with its validation errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

import attnxai
from attnxai.audit import runner as audit_mod
from attnxai.audit.runner import AuditCancelled, AuditConfig, run_audit, validate_audit
from attnxai.cli.main import main
from attnxai.io.concepts import ConceptSet, load_audit_concepts, save_concept_set
from attnxai.io.datasets import load_dataset
from attnxai.errors import UserInputError
from attnxai.audit.records import RunConcept, RunDataset
from attnxai.audit.report import detail_path, export_run, summary_csv_bytes, summary_frame
from attnxai.audit.store import (MIGRATIONS, SCHEMA_VERSION, Store, StoreError, StoreLockedError,
                           default_db_path)
from attnxai.schema import INPUT_DETAIL, TABLES
from attnxai.effects.config import EffectsConfig
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import apply_correction, run_tcav
from conftest import LABELS, VOCAB

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
SPORTS = "team won lost match game cup final goal player".split()
MONEY = "market stocks rose fell bank rates price share profit".split()
SMALL = {"num_cavs": 3, "num_random": 2, "num_null": 20, "layers": [1, 2], "device": "cpu"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir):
    """Tiny concept sets (two concepts, one pool, one image set) and two labelled datasets."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("world")

    def sent(words: list[str]) -> str:
        return " ".join(rng.choice(words, int(rng.integers(4, 8))))

    concepts = root / "concepts"
    save_concept_set(ConceptSet("pool", "text", [sent(WORDS) for _ in range(100)],
                                kind="random_pool"), concepts)
    save_concept_set(ConceptSet("sports", "text", [sent(SPORTS) for _ in range(12)],
                                default_pool="pool"), concepts)
    save_concept_set(ConceptSet("money", "text", [sent(MONEY) for _ in range(12)],
                                default_pool="pool"), concepts)
    pics = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(100)]
    save_concept_set(ConceptSet("pics", "image", pics, kind="random_pool"), concepts)
    save_concept_set(ConceptSet("red", "image", pics[:12], default_pool="pics"), concepts)
    data = {}
    for name, n in (("val", 14), ("prod", 12)):
        path = root / f"{name}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                w.writerow([sent(WORDS), ("positive", "negative")[i % 2]])
        data[name] = path
    (root / "empty.txt").write_text("")
    imgs = root / "imgs"
    imgs.mkdir()
    for i in range(6):
        pics[i].save(imgs / f"{i}.png")
    return {"root": root, "concepts": concepts, "data": data, "model": str(tiny_bert_dir),
            "imgs": imgs}


@pytest.fixture(scope="module")
def adapter(world):
    return attnxai.load_model(world["model"], device="cpu")


def config(world, **kw) -> AuditConfig:
    """The audit with audit and TCAV settings given side by side (the flat layout, which
    AuditConfig.from_dict reads as well as the nested one)."""
    base = dict(model=world["model"], datasets=[str(world["data"]["val"]), str(world["data"]["prod"])],
                targets=["positive", "negative"], concepts=["sports", "money"],
                concept_dir=str(world["concepts"]), **SMALL)
    return AuditConfig.from_dict({**base, **kw})


def small_config(world, **kw) -> AuditConfig:
    """One dataset, target and concept: for tests about running, not about results' shape."""
    return config(world, datasets=[str(world["data"]["val"])], targets=["positive"],
                  concepts=["sports"], **kw)


@pytest.fixture(scope="module")
def small_reference(world, adapter) -> pd.DataFrame:
    return in_memory(adapter, small_config(world))["summary"]


def in_memory(adapter, cfg: AuditConfig) -> dict[str, pd.DataFrame]:
    """The same audit computed directly with run_tcav, corrected across the whole run."""
    concepts, pools = load_audit_concepts(cfg.concepts, cfg.concept_dir, "text")
    tcfg = cfg.tcav
    parts: dict[str, list[pd.DataFrame]] = {}
    inputs = {}
    for path in cfg.datasets:
        ds = load_dataset(path)
        for target in cfg.targets:
            items = [x for x, y in zip(ds.items, ds.labels) if y == target]
            inputs[(Path(path).name, target)] = items
            r = run_tcav(adapter, items, target, concepts, pools, tcfg)
            for name, df in (("summary", r.summary), ("cav_scores", r.cav_scores),
                             ("cav_accuracy", r.cav_accuracy), ("input_summary", r.input_summary),
                             ("input_scores", r.input_scores)):
                parts.setdefault(name, []).append(df.assign(dataset=Path(path).name))
    out = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    out["summary"] = apply_correction(out["summary"], tcfg.correction, tcfg.alpha)
    out["inputs"] = inputs
    out["cavs"] = r.cavs  # every dataset x target trains the same CAVs
    return out


def assert_same(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected[list(stored.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), expected, check_dtype=False,
                                  rtol=1e-6, atol=1e-9)


def result_rows(store: Store, run_id: str) -> dict[str, int]:
    con = duckdb.connect(str(store.path))
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchall()[0][0]
                for t in TABLES}
    finally:
        con.close()


@pytest.fixture(scope="module")
def first_run(world, adapter, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("db") / "audits.duckdb")
    seen = []
    run_id = run_audit(config(world), store, progress=lambda f, m: seen.append((f, m)),
                       adapter=adapter)
    return store, run_id, seen


# -- round trip -------------------------------------------------------------------------------
def test_stored_results_equal_in_memory_tcav_and_csv(world, adapter, first_run, tmp_path):
    store, run_id, seen = first_run
    expected = in_memory(adapter, config(world))
    run = store.get_run(run_id)
    assert run.status == "completed" and run.error is None
    assert run.datasets == ["val.csv", "prod.csv"] and run.targets == ["positive", "negative"]
    # The stored config is the one that ran: layers and pooling spelled out for the model.
    assert run.config.tcav == replace(config(world).tcav, layers=(1, 2), pooling="cls")
    assert run.config.tcav.pair_rows == "differing" and run.seed == 0
    assert [c.name for c in run.concept_versions] == ["sports", "money", "pool"]
    assert run.library_versions["duckdb"] == duckdb.__version__
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    summary = store.summary(run_id)
    assert len(summary) == 2 * 2 * 2 * 2 * 2  # datasets x targets x concepts x layers x weightings
    assert_same(summary, expected["summary"])  # includes p_adjusted: BH across the whole run
    for table in ("cav_scores", "cav_accuracy", "input_scores"):
        assert_same(getattr(store, table)(run_id), expected[table])
    assert_same(store.results("input_summary", run_id), expected["input_summary"])
    assert store.input_scores(run_id).empty  # per-CAV rows only with per_cav_scores

    inputs = store.inputs(run_id)
    for (ds, target), items in expected["inputs"].items():
        rows = inputs[(inputs.dataset == ds) & (inputs.target == target)]
        assert rows.input.tolist() == items and rows.input_index.tolist() == list(range(len(items)))
        assert (rows.label == target).all() and (rows.selected_by == "label").all()

    out = export_run(store, run_id, tmp_path / "audit.csv", detail=True)
    csv_summary = pd.read_csv(out)
    assert csv_summary.run_id.eq(run_id).all() and csv_summary.seed.eq(0).all()
    assert (csv_summary.model_hash == run.model_hash).all()
    assert list(csv_summary.columns) == ["run_id", *TABLES["summary"].names(), "relevance",
                                         "relies", "created", "model", "model_hash",
                                         "dataset_hash", "concept_version", "seed", "alpha",
                                         "min_accuracy", "layers", "attnxai_version"]
    # No causal effect was measured: nothing is shown to matter, so no layer "relies".
    assert csv_summary.relevance.eq("not measured").all() and not csv_summary.relies.any()
    assert_same(csv_summary[["dataset", "target", "concept", "layer", "weighting", "mean", "std",
                             "magnitude_mean", "p_value", "p_adjusted", "significant",
                             "cav_accuracy"]], expected["summary"])
    assert summary_csv_bytes(store, run_id) == out.read_bytes()
    detail = pd.read_csv(detail_path(out))
    ref = expected["input_summary"]
    merged = detail.merge(ref, on=["dataset", "target", "concept", "layer", "weighting",
                                   "input_index"], suffixes=("", "_ref"))
    assert len(merged) == len(detail) == len(ref)
    assert list(detail.columns) == ["run_id", *INPUT_DETAIL]
    for col in ("score_mean", "score_std", "positive_fraction", "num_cavs"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_ref"], rtol=1e-6)
    assert not list(tmp_path.glob("*.partial"))


def test_each_runs_cavs_are_stored_once(world, adapter, first_run):
    store, run_id, _ = first_run
    expected = in_memory(adapter, config(world))["cavs"]
    # Once per run, not per dataset x target: 2 layers x (2 concepts x 3 + 20 null CAVs).
    assert result_rows(store, run_id)["cavs"] == 2 * (2 * 3 + 20)
    for concept in ("sports", "money"):
        stored = store.cav_vectors(run_id, concept)
        assert sorted(stored) == [1, 2]
        for layer, v in stored.items():
            assert v.dtype == torch.float32 and v.shape == (3, 32)
            torch.testing.assert_close(v, expected[(concept, layer)], rtol=1e-5, atol=1e-6)
    null = store.cav_vectors(run_id, "random:pool")
    assert [v.shape[0] for v in null.values()] == [20, 20]
    torch.testing.assert_close(null[1].norm(dim=1), torch.ones(20))


def test_config_round_trips_through_json_and_stays_frozen():
    cfg = AuditConfig(model="m", datasets=["a", "b"], targets=["t"], concepts=["c"], limit=3,
                      labels={"x": ["one", "two"], "y": "three"},
                      tcav=TCAVConfig(layers=[1, 2], pair_rows="all", pooling="mean", l2=0.1,
                                      holdout=0.3, statistic="tcav", seed=2**32 - 1))
    assert cfg.datasets == ("a", "b") and cfg.tcav.layers == (1, 2)
    assert AuditConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg.validate()
    with pytest.raises(FrozenInstanceError):
        cfg.limit = 2
    with pytest.raises(FrozenInstanceError):
        cfg.tcav.seed = 1
    # The flat layout runs were stored with before the TCAV settings were nested.
    old = AuditConfig.from_dict({"model": "m", "num_cavs": 3, "layers": [0], "limit": 2,
                                 "gone": True})
    # ... and computed no causal effects (nor tested any against a minimum effect).
    assert old == AuditConfig(model="m", limit=2, tcav=TCAVConfig(num_cavs=3, layers=(0,)),
                              effects=EffectsConfig(level="none", min_effect=0.0,
                                                    min_logit_effect=0.0))


def test_validation_does_not_change_the_config(world, adapter):
    cfg = config(world, layers=None)
    prep = validate_audit(cfg, adapter=adapter)
    assert cfg.tcav.layers is None and cfg.tcav.pooling is None  # the caller's, untouched
    assert prep.config.tcav.layers == (0, 1, 2) and prep.config.tcav.pooling == "cls"
    assert prep.config == replace(cfg, tcav=prep.config.tcav)


def test_labels_need_a_model_that_takes_label_descriptions(world, adapter):
    assert not adapter.takes_label_descriptions
    with pytest.raises(UserInputError, match="does not take label descriptions"):
        validate_audit(config(world, labels={"a": "b"}), adapter=adapter)


# -- activation cache -------------------------------------------------------------------------
def test_second_audit_reuses_cached_activations(world, adapter, first_run, monkeypatch):
    store, run_id, _ = first_run
    n_examples = 12 + 12 + 100
    info = store.cache_info()
    assert info.entries.sum() == n_examples * 2  # (example, layer) for the 2 layers
    assert store.get_run(run_id).activations_computed == n_examples

    calls = []
    original = type(adapter).capture_batches

    def spy(self, inputs, *a, **kw):
        calls.append(kw.get("grads", True))
        return original(self, inputs, *a, **kw)

    monkeypatch.setattr(type(adapter), "capture_batches", spy)
    second = run_audit(config(world, datasets=[str(world["data"]["val"])]), store, adapter=adapter)
    run = store.get_run(second)
    assert run.activations_cached == n_examples and run.activations_computed == 0
    assert False not in calls  # no forward pass over concept or pool examples
    assert store.cache_info().entries.sum() == n_examples * 2
    first, again = store.summary(run_id), store.summary(second)
    # Same concepts and CAVs: identical CAV accuracies; val.csv scores identical too, but its
    # p_adjusted differ (the first run corrected across twice as many tests).
    a, b = store.cav_accuracy(run_id), store.cav_accuracy(second)
    assert_same(b, a[a.dataset == "val.csv"])
    cols = ["dataset", "target", "concept", "layer", "weighting", "mean", "std", "p_value"]
    assert_same(again[cols], first[first.dataset == "val.csv"][cols])


def test_cavs_are_trained_once_per_layer_for_all_datasets_and_targets(world, adapter, tmp_path,
                                                                        monkeypatch):
    import attnxai.tcav.run as tcav_run

    layers = []
    original = tcav_run.train_cavs

    def spy(table, specs, **kw):
        layers.append(len(specs))
        return original(table, specs, **kw)

    monkeypatch.setattr(tcav_run, "train_cavs", spy)
    run_audit(config(world), Store(tmp_path / "a.duckdb"), adapter=adapter)  # 2 datasets x 2 targets
    assert len(layers) == len(SMALL["layers"])  # not 4x: the results equal per-target runs (above)


# -- failures and cancellation ----------------------------------------------------------------
def test_exception_mid_run_marks_failed_and_leaves_no_rows(world, adapter, tmp_path, monkeypatch):
    store = Store(tmp_path / "a.duckdb")
    calls = []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the first dataset x target is done
            raise RuntimeError("disk on fire")
        return run_tcav(*a, **kw)

    monkeypatch.setattr(audit_mod, "run_tcav", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_audit(config(world), store, adapter=adapter)
    runs = store.list_runs()
    assert len(runs) == 1 and runs.status[0] == "failed"
    assert "RuntimeError: disk on fire" in runs.error[0]
    run_id = runs.run_id[0]
    assert result_rows(store, run_id) == dict.fromkeys(result_rows(store, run_id), 0)
    assert store.summary(run_id).empty
    with pytest.raises(UserInputError, match="failed"):
        export_run(store, run_id, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_failure_while_saving_rolls_back_every_row(world, adapter, tmp_path, monkeypatch):
    store = Store(tmp_path / "a.duckdb")
    import attnxai.audit.store as store_mod

    original = store_mod._insert_frame

    def broken(con, table, *a, **kw):
        if table == "input_scores":  # after summary, cav_scores and cav_accuracy went in
            raise OSError("no space left on device")
        return original(con, table, *a, **kw)

    monkeypatch.setattr(store_mod, "_insert_frame", broken)
    with pytest.raises(OSError):
        run_audit(small_config(world), store, adapter=adapter)
    run = store.list_runs().iloc[0]
    assert run.status == "failed" and "no space left" in run.error
    assert set(result_rows(store, run.run_id).values()) == {0}


def test_cancel_marks_cancelled_and_leaves_no_rows(world, adapter, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    cancel = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if fraction > 0.3:  # during the first dataset x target
            cancel.set()

    with pytest.raises(AuditCancelled) as info:
        run_audit(config(world), store, progress=progress, cancel=cancel, adapter=adapter)
    run = store.get_run(info.value.run_id)
    assert run.status == "cancelled" and run.error == "cancelled by the user"
    assert set(result_rows(store, run.run_id).values()) == {0}


def test_run_is_recorded_running_before_the_model_loads(world, tmp_path, monkeypatch):
    """The run row exists the moment run_audit starts (History shows it while the model loads
    and the data is predicted); once validated it names the real hashes."""
    import attnxai.models

    store = Store(tmp_path / "a.duckdb")
    seen = []
    original = attnxai.models.load_model

    def load(*a, **kw):
        seen.append(store.list_runs()[["status", "model", "concepts"]].to_dict("records"))
        return original(*a, **kw)

    monkeypatch.setattr(attnxai.models, "load_model", load)
    run_id = run_audit(small_config(world), store)
    assert seen == [[{"status": "running", "model": world["model"], "concepts": "sports"}]]
    run = store.get_run(run_id)
    assert run.status == "completed" and len(run.model_hash) == 64
    assert [d.dataset for d in run.dataset_details] == ["val.csv"]
    assert {(c.name, c.role) for c in run.concept_versions} == {("sports", "concept"),
                                                                ("pool", "pool")}
    assert all(len(c.version_hash) == 64 for c in run.concept_versions)


def test_progress_moves_during_prediction_by_work_and_never_back(world, adapter, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    seen: list[tuple[float, str]] = []
    run_audit(config(world), store, progress=lambda f, m: seen.append((f, m)), adapter=adapter)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    predicting = [f for f, m in seen if m.startswith("predicting")]
    assert len(predicting) >= 2 and predicting[-1] > predicting[0]  # it moves while predicting
    assert any("(26/26 inputs)" in m for _, m in seen)  # both datasets, counted in inputs
    # Each stage's share follows its estimated work: 26 predictions are a part of this audit.
    assert 0 < predicting[-1] < 0.5
    assert max(f for f, m in seen if m.startswith("concept and random")) > predicting[-1]


def test_cancel_during_prediction_stops_within_a_batch(world, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    cancel = threading.Event()
    ticks = []

    def progress(fraction: float, message: str) -> None:
        if message.startswith("predicting"):
            ticks.append(message)
            cancel.set()

    with pytest.raises(AuditCancelled) as info:
        run_audit(config(world, batch_size=4), store, progress=progress, cancel=cancel)
    assert len(ticks) == 1  # the next batch's check stopped it
    assert store.get_run(info.value.run_id).status == "cancelled"


def test_dead_process_run_is_reaped_as_failed(tmp_path):
    store = Store(tmp_path / "a.duckdb")
    store.start_run("r1", model="m", model_hash="h", datasets=[], targets=["t"], concepts=[],
                    config=AuditConfig(model="m", targets=("t",)), library_versions={})
    con = duckdb.connect(str(store.path))
    con.execute("UPDATE runs SET pid = 2147483646 WHERE run_id = 'r1'")  # no such process
    con.close()
    run = store.list_runs().iloc[0]
    assert run.status == "failed" and "ended without finishing" in run.error


# -- concurrency ------------------------------------------------------------------------------
def test_two_audits_in_threads_both_complete(world, small_reference, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    adapters = [attnxai.load_model(world["model"], device="cpu") for _ in range(2)]
    ids, errors = [], []

    def work(a):
        try:
            ids.append(run_audit(small_config(world), store, adapter=a))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in adapters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(ids) == 2
    for run_id in ids:
        assert store.get_run(run_id).status == "completed"
        assert_same(store.summary(run_id), small_reference)
    assert result_rows(store, ids[0]) == result_rows(store, ids[1])


SCRIPT = textwrap.dedent("""
    import json, sys
    from attnxai.audit.runner import AuditConfig, run_audit
    from attnxai.audit.store import Store
    print(run_audit(AuditConfig.from_dict(json.loads(sys.argv[1])),
                    Store(sys.argv[2], lock_timeout=120)))
""")


def test_two_audits_in_processes_both_complete(world, small_reference, tmp_path):
    db = tmp_path / "shared.duckdb"
    cfg = json.dumps(small_config(world).to_dict())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, cfg, str(db)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    store = Store(db)
    ids = [o.strip().splitlines()[-1] for o, _ in outs]
    for run_id in ids:
        assert store.get_run(run_id).status == "completed"
        assert_same(store.summary(run_id), small_reference)
    assert result_rows(store, ids[0]) == result_rows(store, ids[1])
    assert len(store.list_runs()) == 2


KILLED = textwrap.dedent("""
    import json, os, signal, sys
    import attnxai.audit.store as store_mod
    from attnxai.audit.runner import AuditConfig, run_audit
    original = store_mod._insert_frame

    def die_mid_transaction(con, table, *a, **kw):
        if table == "input_scores":  # summary, cav_scores and cav_accuracy rows are in
            os.kill(os.getpid(), signal.SIGKILL)
        return original(con, table, *a, **kw)

    store_mod._insert_frame = die_mid_transaction
    run_audit(AuditConfig.from_dict(json.loads(sys.argv[1])), store_mod.Store(sys.argv[2]))
""")


def test_process_killed_while_saving_leaves_intact_file(world, adapter, small_reference, tmp_path):
    db = tmp_path / "a.duckdb"
    cfg = small_config(world)
    proc = subprocess.run([sys.executable, "-c", KILLED, json.dumps(cfg.to_dict()), str(db)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = Store(db)
    run = store.list_runs().iloc[0]
    assert run.status == "failed" and "ended without finishing" in run.error
    assert set(result_rows(store, run.run_id).values()) == {0}
    # The file is intact: the next audit reuses the dead run's cached activations and completes.
    run_id = run_audit(cfg, store, adapter=adapter)
    assert store.get_run(run_id).activations_computed == 0
    assert_same(store.summary(run_id), small_reference)


HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(float(sys.argv[2]))"


def test_locked_file_waits_then_fails_clearly(tmp_path):
    db = tmp_path / "a.duckdb"
    Store(db).schema_version()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), "2"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        with pytest.raises(StoreLockedError, match="in use by another process"):
            Store(db, lock_timeout=0.5).list_runs()
        messages = []
        t0 = time.monotonic()
        assert Store(db, lock_timeout=30, notify=messages.append).list_runs().empty
        assert time.monotonic() - t0 > 0.5 and len(messages) == 1 and "waiting" in messages[0]
    finally:
        holder.wait(timeout=30)


# -- schema ------------------------------------------------------------------------------------
def test_migration_from_version_1_keeps_data(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO runs (run_id, created, status, model, datasets, targets, concepts, "
                "seed, config, duration_s) VALUES ('old', now()::TIMESTAMP, 'completed', 'm', "
                "'[\"demo\"]', '[\"sports\"]', '[\"c\"]', 7, '{\"alpha\": 0.05}', 1.5)")
    con.execute("INSERT INTO summary (run_id, seq, dataset, target, concept, layer, weighting, "
                "mean, p_value) VALUES ('old', 0, 'demo', 'sports', 'c', 2, 'plain', 0.75, 0.01)")
    con.close()
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == 6
    run = store.get_run("old")
    assert run.seed == 7 and run.activations_cached == 0
    assert run.config == AuditConfig(model="m", tcav=TCAVConfig(alpha=0.05),  # model: the run's
                                     effects=EffectsConfig(level="none", min_effect=0.0,
                                                           min_logit_effect=0.0))
    s = store.summary("old")
    assert s[["layer", "mean", "p_value"]].values.tolist() == [[2, 0.75, 0.01]]
    assert store.inputs("old").empty and store.cache_info().empty  # new tables exist


def test_migration_from_version_2_keeps_runs_without_cavs(tmp_path):
    db = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(db))
    for statement in [*MIGRATIONS[0], *MIGRATIONS[1]]:
        if statement.startswith("CREATE TABLE summary"):  # as version 2 had it
            statement = statement.replace("seq BIGINT", "seq INTEGER")
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    flat = {"model": "m", "datasets": ["demo"], "targets": ["sports"], "concepts": ["c"],
            "layers": [2], "num_cavs": 5, "weighting": "plain", "seed": 7, "limit": 0,
            "batch_size": None, "device": None}  # version 2's layout: TCAV fields beside
    con.execute("INSERT INTO runs (run_id, created, status, model, datasets, targets, concepts, "
                "seed, config, duration_s) VALUES ('old', now()::TIMESTAMP, 'completed', 'm', "
                "'[\"demo\"]', '[\"sports\"]', '[\"c\"]', 7, ?, 1.5)", [json.dumps(flat)])
    con.execute("INSERT INTO summary (run_id, seq, dataset, target, concept, layer, weighting, "
                "mean, p_value) VALUES ('old', 0, 'demo', 'sports', 'c', 2, 'plain', 0.75, 0.01)")
    con.close()
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == 6
    run = store.get_run("old")
    assert run.config == AuditConfig(model="m", targets=("sports",), concepts=("c",),
                                      tcav=TCAVConfig(layers=(2,), num_cavs=5, weighting="plain",
                                                      seed=7),
                                      effects=EffectsConfig(level="none", min_effect=0.0,
                                                            min_logit_effect=0.0))
    assert store.summary("old")["mean"].tolist() == [0.75] and store.cav_vectors("old", "c") == {}
    # Version 4's tables and column exist, empty for the old run.
    assert store.results("effects", "old").empty and store.results("pair_effects", "old").empty
    assert store.summary("old")["null_cavs"].isna().all()
    assert store.results("input_summary", "old").empty  # version 5's table
    # Seeds up to 2**32 - 1 fit now (the column was 32-bit).
    store.start_run("big", model="m", model_hash="h", datasets=[RunDataset("demo", "d", "s", 3)],
                    targets=["t"], concepts=[RunConcept("c", "v", "concept")],
                    config=AuditConfig(model="m", targets=("t",),
                                       tcav=TCAVConfig(seed=2**32 - 1)), library_versions={})
    big = store.get_run("big")
    assert big.seed == 2**32 - 1 and big.dataset_details == (RunDataset("demo", "d", "s", 3),)
    assert big.concepts == ["c"] and big.concept_versions == (RunConcept("c", "v", "concept"),)
    con = duckdb.connect(str(db))
    types = dict(con.execute("SELECT table_name || '.' || column_name, data_type FROM "
                             "information_schema.columns WHERE column_name IN ('seq', 'seed')"
                             ).fetchall())
    con.close()
    assert types["runs.seed"] == "BIGINT" and set(types.values()) == {"BIGINT"}


def test_migration_from_version_5_reads_old_effects_as_tested_against_zero(tmp_path):
    """Effects stored before the minimum relevant effect: significant reads as "relies", the
    rest as "inconclusive" (nothing is negligible without a margin), δ = 0."""
    db = tmp_path / "v5.duckdb"
    con = duckdb.connect(str(db))
    for step in MIGRATIONS[:5]:
        for statement in step:
            con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('schema_version', '5')")
    for seq, (measure, significant) in enumerate((("output_prob", True), ("output_logit", False))):
        con.execute("INSERT INTO effects (run_id, seq, dataset, target, concept, layer, measure, "
                    "mean, p_value, p_adjusted, significant, n_pairs, n_skipped) VALUES "
                    "('old', ?, 'pairs', 't', 'c', -1, ?, 0.1, 0.01, 0.02, ?, 10, 0)",
                    [seq, measure, significant])
    con.close()
    assert Store(db).schema_version() == 6
    con = duckdb.connect(str(db))
    effects = con.execute("SELECT * FROM effects ORDER BY seq").df()
    con.close()
    assert effects["verdict"].tolist() == ["relies", "inconclusive"]
    assert effects["min_effect"].tolist() == [0.0, 0.0]
    assert effects["p_negligible"].tolist() == [1.0, 1.0]
    assert effects["significant"].tolist() == [True, False]


def test_runs_before_input_summary_get_their_detail_from_per_cav_scores(world, adapter,
                                                                          tmp_path):
    """A version-4 run kept every CAV's S(x) only: its detail is computed from them, and
    equals the detail of the same audit stored as input_summary today."""
    store = Store(tmp_path / "a.duckdb")
    cfg = small_config(world)
    new_id = run_audit(cfg, store, adapter=adapter)
    old_id = run_audit(replace(cfg, tcav=replace(cfg.tcav, per_cav_scores=True)), store,
                       adapter=adapter)
    con = duckdb.connect(str(store.path))
    con.execute("DELETE FROM input_summary WHERE run_id = ?", [old_id])  # as version 4 stored it
    con.close()
    assert store.results("input_summary", old_id).empty
    old, new = store.input_detail(old_id), store.input_detail(new_id)
    assert list(old.columns) == list(new.columns) == list(INPUT_DETAIL)
    pd.testing.assert_frame_equal(old, new, check_dtype=False, rtol=1e-6)


def test_unusable_files_are_refused(tmp_path):
    (tmp_path / "junk.duckdb").write_text("not a database" * 100)
    with pytest.raises(StoreError, match="not an attnxai audit store"):
        Store(tmp_path / "junk.duckdb").list_runs()
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="not an attnxai audit store"):
        Store(tmp_path / "other.duckdb").list_runs()
    newer = Store(tmp_path / "new.duckdb")
    newer.schema_version()
    con = duckdb.connect(str(newer.path))
    con.execute("UPDATE meta SET value = '99'")
    con.close()
    with pytest.raises(StoreError, match="newer attnxai"):
        Store(newer.path).list_runs()
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "a.duckdb")
    with pytest.raises(StoreError, match="unknown|No run"):
        Store(tmp_path / "new2.duckdb").get_run("nope")


def test_default_path_and_concept_versions(world, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNXAI_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "audits.duckdb"
    store = Store()
    assert store.path == default_db_path() and store.path.parent.is_dir()
    cs = ConceptSet("sports", "text", ["a b c"] * 10, default_pool="pool")
    v1 = store.record_concept_set(cs)
    assert store.record_concept_set(cs) == v1 == cs.version_hash()
    v2 = store.record_concept_set(replace(cs, examples=["x y z"] * 10))
    versions = store.concept_versions("sports")
    assert set(versions.version_hash) == {v1, v2} and versions.n_examples.tolist() == [10, 10]
    assert store.concept_examples("sports", v2)["examples"] == ["x y z"] * 10


def test_delete_run(world, adapter, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(small_config(world), store, adapter=adapter, use_cache=False)
    assert result_rows(store, run_id)["summary"] == 4 and store.cache_info().empty
    store.delete_run(run_id)
    assert store.list_runs().empty and set(result_rows(store, run_id).values()) == {0}
    with pytest.raises(UserInputError):
        store.delete_run(run_id)


# -- validation: nothing is written ---------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"concepts": ["nope"]}, "no concept set named 'nope'"),
    ({"concepts": ["pool"]}, "random pool, not a concept"),
    ({"concepts": ["red"]}, "is image but the model is text"),
    ({"targets": ["sideways"]}, "Unknown class 'sideways'"),
    ({"targets": ["neutral"]}, "has 0 inputs labelled|predicted"),
    ({"layers": [0, 7]}, r"Unknown layer\(s\) \[7\]"),
    ({"datasets": ["{root}/empty.txt"]}, "contains no texts"),
    ({"datasets": ["{root}/missing.csv"]}, "dataset not found"),
    ({"datasets": ["{root}/imgs"]}, "holds image data"),
    ({"datasets": ["demo", "demo"]}, "more than once"),
    ({"targets": []}, "at least one of targets"),
    ({"num_cavs": 1}, "at least 2"),
    ({"weighting": "loud"}, "weighting must be"),
    ({"pair_rows": "some"}, "pair_rows must be one of 'differing', 'all'"),
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295, not -1"),
    ({"seed": 2**32}, "seed must be an integer from 0 to 4294967295"),
    ({"batch_size": 0}, r"batch_size must be None \(the model's default\) or an integer of at "
                        "least 1, not 0"),
    ({"alpha": 1.0}, "alpha must be a number strictly between 0 and 1"),
    ({"limit": -1}, "limit must be an integer of at least 0"),
    ({"model": "builtin:nope"}, "Unknown built-in model"),
])
def test_validation_errors_write_nothing(world, tmp_path, change, message):
    change = {k: [v.format(root=world["root"]) if isinstance(v, str) else v for v in val]
              if isinstance(val, list) else val for k, val in change.items()}
    store = Store(tmp_path / "a.duckdb")
    with pytest.raises(UserInputError, match=message):
        run_audit(config(world, **change), store)
    assert store.list_runs().empty


def test_cli_validation_errors_exit_2_with_no_run(world, tmp_path, capsys):
    db = tmp_path / "a.duckdb"
    base = ["audit", "--model", world["model"], "--device", "cpu", "--data", str(world["data"]["val"]),
            "--concept-dir", str(world["concepts"]), "--num-cavs", "3", "--num-random", "2",
            "--num-null", "20", "--db", str(db)]
    cases = [
        (["--target", "positive", "--concepts", "nope"], "no concept set named"),
        (["--target", "sideways", "--concepts", "sports"], "Unknown class"),
        (["--target", "positive", "--concepts", "sports", "--layers", "0,9"], "Unknown layer"),
        (["--target", "positive", "--concepts", "sports", "--layers", "x"], "--layers must be"),
        (["--target", "positive", "--concepts", "red"], "is image but the model is text"),
        (["--target", "positive", "--concepts", "sports", "--data", str(world["imgs"])],
         "holds image data"),
        (["--target", "positive", "--concepts", "sports", "--data", str(world["root"] / "empty.txt")],
         "contains no texts"),
        (["--target", "neutral", "--concepts", "sports"], "has 0 inputs"),
        (["--target", "positive", "--concepts", "sports", "--csv", str(tmp_path / "no" / "a.csv")],
         "does not exist"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert Store(db).list_runs().empty
    assert main(["export", "nope", "--out", str(tmp_path / "x.csv"), "--db", str(db)]) == 2
    assert "No run 'nope'" in capsys.readouterr().err
    assert main(["runs", "--db", str(tmp_path / "none.duckdb")]) == 0
    assert not (tmp_path / "none.duckdb").exists()  # listing never creates a database
    assert not list(tmp_path.glob("*.csv"))


def test_cli_audit_runs_export_round_trip(world, tmp_path, capsys):
    db, out = tmp_path / "a.duckdb", tmp_path / "audit.csv"
    args = ["audit", "--model", world["model"], "--device", "cpu",
            "--data", str(world["data"]["val"]), "--data", str(world["data"]["prod"]),
            "--target", "positive", "--concepts", "sports",
            "--concept-dir", str(world["concepts"]), "--num-cavs", "3", "--num-random", "2",
            "--num-null", "20", "--layers", "1,2", "--pair-rows", "all", "--pooling", "mean",
            "--l2", "0.02", "--holdout", "0.3", "--statistic", "tcav", "--db", str(db),
            "--csv", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "[prod.csv] sports -> positive" in printed.out and "saved to" in printed.err
    assert main(["runs", "--db", str(db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["status"] == "completed"
    assert runs[0]["concepts"] == "sports" and runs[0]["datasets"] == "val.csv, prod.csv"
    run_id = runs[0]["run_id"]
    stored = Store(db).get_run(run_id).config.tcav  # the new options are stored with the run
    assert (stored.pair_rows, stored.pooling, stored.l2, stored.holdout, stored.statistic) == (
        "all", "mean", 0.02, 0.3, "tcav")
    again = tmp_path / "again.csv"
    assert main(["export", run_id, "--out", str(again), "--detail", "--db", str(db)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert pd.read_csv(detail_path(again)).run_id.eq(run_id).all()
    frame = summary_frame(Store(db), run_id)
    assert len(pd.read_csv(out)) == len(frame) == 8  # datasets x layers x weightings
    assert set(frame.layers) == {"1,2"}
    assert main(["runs", "--db", str(db)]) == 0
    assert run_id in capsys.readouterr().out
    # Without --db the CSV is still written and nothing is kept.
    plain = tmp_path / "plain.csv"
    assert main(args[:-4] + ["--csv", str(plain)]) == 0
    assert pd.read_csv(plain).p_value.tolist() == pd.read_csv(out).p_value.tolist()
    assert len(Store(db).list_runs()) == 1


def test_cli_concepts_list_show_import_export(world, tmp_path, capsys):
    cdir = str(world["concepts"])
    assert main(["concepts", "list", "--concept-dir", cdir, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sports"]["n_examples"] == 12 and rows["pool"]["kind"] == "random_pool"
    assert main(["concepts", "show", "money", "--concept-dir", cdir, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["n_examples"] == 12 and len(shown["examples"]) == 5
    other, db = tmp_path / "other", tmp_path / "a.duckdb"
    for name in ("pool", "money"):  # the pool first: a concept's default_pool must exist
        zip_path = tmp_path / f"{name}.zip"
        assert main(["concepts", "export", name, "--out", str(zip_path), "--concept-dir", cdir]) == 0
        assert main(["concepts", "import", str(zip_path), "--concept-dir", str(other),
                     "--db", str(db)]) == 0
    assert (other / "money" / "concept.json").is_file()
    versions = Store(db).concept_versions("money")
    assert versions.version_hash.tolist() == [shown["version_hash"]]
    assert main(["concepts", "show", "nope", "--concept-dir", cdir]) == 2
    assert main(["concepts", "export", "money", "--out", str(tmp_path / "no" / "x.zip"),
                 "--concept-dir", cdir]) == 2
    assert main(["concepts", "import", str(tmp_path / "missing.zip"), "--concept-dir", str(other),
                 "--db", str(db)]) == 2
    assert main(["concepts", "import", str(zip_path), "--concept-dir", str(other),
                 "--db", str(db)]) == 2  # exists already, no --overwrite
    capsys.readouterr()


def test_validate_audit_selects_inputs_by_label(world, adapter):
    prep = validate_audit(config(world, limit=3), adapter=adapter)
    assert [d.name for d in prep.datasets] == ["val.csv", "prod.csv"]
    val = prep.datasets[0]
    assert val.selected["positive"] == ([0, 2, 4], "label")
    assert len(val.predictions) == 14 and all(p in LABELS for p in val.predictions)


def test_image_audit_from_zip_names_in_memory_inputs(world, tiny_hf_vit_dir, tmp_path):
    import zipfile

    zpath = tmp_path / "shots.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, png in enumerate(sorted(world["imgs"].glob("*.png"))):
            zf.write(png, f"shots/positive/{i}.png")
            if i < 2:  # a second class, so the class folders are labels (not a wrapper)
                zf.write(png, f"shots/negative/{i}.png")
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(AuditConfig.from_dict({
        "model": str(tiny_hf_vit_dir), "datasets": [str(zpath)], "targets": ["positive"],
        "concepts": ["red"], "concept_dir": str(world["concepts"]), **SMALL, "layers": None}),
        store)
    run = store.get_run(run_id)
    inputs = store.inputs(run_id)
    assert run.status == "completed" and len(inputs) == 6
    assert inputs.item_index.tolist() == [2, 3, 4, 5, 6, 7]  # after negative/0.png, 1.png
    assert inputs.input.tolist() == [f"{zpath}#{i}" for i in inputs.item_index]
    assert (inputs.selected_by == "label").all()
    # red's 12 examples are copies of the pool's first 12 images: the cache holds 100 examples.
    assert run.activations_computed == 100 and store.cache_info().examples.tolist() == [100]
    images = store.concept_examples("red", run.concept_versions[0].version_hash)["examples"]
    assert [e["file"] for e in images][:2] == ["examples/0000.png", "examples/0001.png"]
