"""A stored run's CAVs, rebuilt for drill-down heatmaps, equal the CAVs the run trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnxai
from attnxai.audit.runner import AuditConfig, run_audit
from attnxai.io.concepts import ConceptSet, load_audit_concepts, save_concept_set
from attnxai.io.datasets import load_dataset
from attnxai.audit.drilldown import layer_heatmaps, run_cavs
from attnxai.errors import UserInputError
from attnxai.audit.store import Store
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
                      num_cavs=3, num_random=2, num_null=20, layers=[0, 2], device="cpu")
    store = Store(root / "a.duckdb")
    try:
        run_id = run_audit(cfg, store, adapter=adapter)
    except UserInputError:
        pytest.skip("the random tiny model predicts too few inputs as one class")
    return store, run_id, cfg, adapter


def test_rebuilt_cavs_equal_the_runs(stored):
    store, run_id, cfg, adapter = stored
    concepts, pools = load_audit_concepts(cfg.concepts, cfg.concept_dir, "text")
    ds = load_dataset(cfg.datasets[0])
    inputs = [x for x, p in zip(ds.items, adapter.predict(ds.items).argmax(1).tolist())
              if adapter.labels[p] == cfg.targets[0]]
    reference = run_tcav(adapter, inputs, cfg.targets[0], concepts, pools, cfg.tcav_config()).cavs
    rebuilt = run_cavs(store, run_id, "neg", adapter)
    assert sorted(rebuilt.cavs) == [0, 2] and not rebuilt.changed_sets and not rebuilt.model_changed
    for layer, v in rebuilt.cavs.items():
        assert v.shape == (3, 32)
        torch.testing.assert_close(v, reference[("neg", layer)], rtol=1e-5, atol=1e-6)
    maps = layer_heatmaps(adapter, "not the team won", rebuilt, cfg.targets[0])
    assert sorted(maps) == [0, 2]


def test_unknown_concept_and_layer_are_refused(stored):
    store, run_id, _, adapter = stored
    with pytest.raises(UserInputError, match="did not test"):
        run_cavs(store, run_id, "weather", adapter)
    with pytest.raises(UserInputError, match="no layer"):
        run_cavs(store, run_id, "neg", adapter, layers=[1])
