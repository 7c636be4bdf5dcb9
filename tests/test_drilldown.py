"""A stored run's CAVs, read back for drill-down heatmaps, are the CAVs the run trained; the
drill-down trains nothing, and says so clearly for a run saved before CAVs were stored."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pytest
import torch

import attnxai
from attnxai.audit.config import AuditConfig
from attnxai.audit.runner import run_audit
from attnxai.io.concepts import ConceptSet, load_audit_concepts, save_concept_set
from attnxai.io.datasets import load_dataset
from attnxai.audit.drilldown import layer_heatmaps, run_cavs
from attnxai.errors import UserInputError
from attnxai.audit.store import Store
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import run_tcav
from conftest import VOCAB

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, tiny_bert_dir):
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("drill")

    def sent() -> list[str]:
        return list(rng.choice(WORDS, int(rng.integers(4, 7))))

    plain = [sent() for _ in range(12)]
    # Matched pairs: the same sentence with and without "not" (rows restricted to the change).
    save_concept_set(ConceptSet("pool", "text", [" ".join(sent()) for _ in range(100)],
                                kind="random_pool"), root / "concepts")
    save_concept_set(ConceptSet("neg", "text", [" ".join(["not", *s]) for s in plain],
                                counterexamples=[" ".join(s) for s in plain], paired=True,
                                default_pool="pool"), root / "concepts")
    (root / "data.txt").write_text("\n".join(" ".join(sent()) for _ in range(16)))
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    predicted = adapter.labels[int(adapter.predict([" ".join(sent())]).argmax())]
    cfg = AuditConfig(model=str(tiny_bert_dir), datasets=[str(root / "data.txt")],
                      targets=[predicted], concepts=["neg"], concept_dir=str(root / "concepts"),
                      tcav=TCAVConfig(num_cavs=3, num_random=2, num_null=20, layers=[0, 2]),
                      device="cpu")
    store = Store(root / "a.duckdb")
    try:
        run_id = run_audit(cfg, store, adapter=adapter)
    except UserInputError:
        pytest.skip("the random tiny model predicts too few inputs as one class")
    return store, run_id, cfg, adapter


def test_stored_cavs_equal_the_runs_and_nothing_is_retrained(stored, monkeypatch):
    store, run_id, cfg, adapter = stored
    concepts, pools = load_audit_concepts(cfg.concepts, cfg.concept_dir, "text")
    ds = load_dataset(cfg.datasets[0])
    inputs = [x for x, p in zip(ds.items, adapter.predict(ds.items).argmax(1).tolist())
              if adapter.labels[p] == cfg.targets[0]]
    reference = run_tcav(adapter, inputs, cfg.targets[0], concepts, pools, cfg.tcav).cavs

    def never(*a, **kw):
        raise AssertionError("the drill-down must not train or capture anything")

    import attnxai.tcav.cav as cav_mod
    import attnxai.tcav.run as run_mod

    for mod, name in ((cav_mod, "train_cavs"), (run_mod, "train_cavs"), (run_mod, "plan_cavs"),
                      (run_mod, "example_tables")):
        monkeypatch.setattr(mod, name, never)
    monkeypatch.setattr(type(adapter), "capture_batches", never)
    read = run_cavs(store, run_id, "neg", adapter)
    assert sorted(read.cavs) == [0, 2] and not read.model_changed
    for layer, v in read.cavs.items():
        assert v.shape == (3, 32)
        torch.testing.assert_close(v, reference[("neg", layer)], rtol=1e-5, atol=1e-6)
    assert sorted(run_cavs(store, run_id, "neg", adapter, layers=[2]).cavs) == [2]
    monkeypatch.undo()
    maps = layer_heatmaps(adapter, "not the team won", read, cfg.targets[0])
    assert sorted(maps) == [0, 2]


def test_a_run_from_before_stored_cavs_is_refused_clearly(stored, tmp_path):
    store, run_id, _, adapter = stored
    old = tmp_path / "v2-like.duckdb"
    shutil.copy(store.path, old)
    con = duckdb.connect(str(old))
    con.execute("DELETE FROM cavs")  # what a run migrated from schema 2 looks like
    con.close()
    with pytest.raises(UserInputError, match="predates stored CAVs"):
        run_cavs(Store(old), run_id, "neg", adapter)


def test_unknown_concept_and_layer_are_refused(stored):
    store, run_id, _, adapter = stored
    with pytest.raises(UserInputError, match="did not test"):
        run_cavs(store, run_id, "weather", adapter)
    with pytest.raises(UserInputError, match="no layer"):
        run_cavs(store, run_id, "neg", adapter, layers=[1])


def test_overlays_are_visible_beyond_the_strongest_patch():
    """A patch at a quarter of the largest value is still clearly tinted (opacity by the
    square root of |value|): red for positive, blue for negative, none for 0."""
    import numpy as np
    from PIL import Image

    from ui.render import overlay

    grey = Image.new("RGB", (4, 4), (128, 128, 128))
    out = np.asarray(overlay(grey, np.array([[1.0, 0.25], [-0.25, 0.0]]), size=4)).astype(int)
    quarter, negative, zero = out[0, 2], out[2, 0], out[2, 2]
    assert quarter[0] - quarter[2] > 60  # red against blue: visibly red
    assert negative[2] - negative[0] > 60
    assert list(zero) == [128, 128, 128]
