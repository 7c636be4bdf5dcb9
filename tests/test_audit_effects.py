"""Causal effects inside an audit: stored in DuckDB, exported as OUT.effects.csv, equal to an
independent computation; CAV interventions for concepts without pairs; the `attnxai effect`
command and its exit-2 cases, which store nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import attnxai
from attnxai.audit.config import AuditConfig
from attnxai.audit.report import effects_path
from attnxai.audit.runner import run_audit
from attnxai.audit.store import Store
from attnxai.cli.main import main
from attnxai.effects.config import EffectsConfig
from attnxai.effects.table import EFFECT_COLUMNS
from attnxai.io.concepts import ConceptSet, save_concept_set
from attnxai.tcav.config import TCAVConfig
from conftest import LABELS, VOCAB

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]


@pytest.fixture(scope="module")
def paired_world(tmp_path_factory, tiny_bert_dir):
    """A pool, a concept without pairs and a paired concept (one word swapped per pair)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("effects_world")

    def sent() -> list[str]:
        return list(rng.choice(WORDS, int(rng.integers(4, 7))))

    concepts = root / "concepts"
    save_concept_set(ConceptSet("pool", "text", [" ".join(sent()) for _ in range(100)],
                                kind="random_pool"), concepts)
    save_concept_set(ConceptSet("sporty", "text", [" ".join(sent() + ["goal"]) for _ in range(12)],
                                default_pool="pool"), concepts)
    base = [sent() for _ in range(12)]
    save_concept_set(ConceptSet("won", "text", [" ".join(b + ["won"]) for b in base],
                                counterexamples=[" ".join(b + ["lost"]) for b in base],
                                paired=True, default_pool="pool"), concepts)
    data = root / "data.csv"
    data.write_text("text,label\n" + "".join(f"{' '.join(sent())},{('positive', 'negative')[i % 2]}\n"
                                             for i in range(14)))
    return {"model": str(tiny_bert_dir), "concepts": concepts, "root": root, "data": str(data)}


def _config(world, **effects) -> AuditConfig:
    return AuditConfig(model=world["model"], datasets=(world["data"],), targets=("positive",),
                       concepts=("sporty", "won"),
                       concept_dir=str(world["concepts"]), device="cpu",
                       tcav=TCAVConfig(layers=(1, 2), num_cavs=3, num_random=2, num_null=20),
                       effects=EffectsConfig(intervention_null=20, **effects))


def test_audit_stores_effects_equal_to_a_direct_computation(paired_world, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(_config(paired_world), store)
    effects = store.results("effects", run_id)
    assert list(effects.columns) == EFFECT_COLUMNS
    # Output effect of the pairs on the target's logit, recomputed by plain forward passes.
    adapter = attnxai.load_model(paired_world["model"], device="cpu")
    cs = attnxai.io.concepts.load_concept_set("won", paired_world["concepts"])
    k = LABELS.index("positive")
    with torch.no_grad():
        direct = (adapter.forward_logits(adapter.prepare(cs.examples))
                  - adapter.forward_logits(adapter.prepare(cs.counterexamples)))[:, k]
    out = effects[(effects.concept == "won") & (effects.measure == "output_logit")].iloc[0]
    assert out.layer == -1 and out.dataset == "pairs" and out.n_pairs == 12
    assert out["mean"] == pytest.approx(float(direct.mean()), abs=1e-5)
    assert out.ci_low <= out["mean"] <= out.ci_high and 0 < out.p_value <= 1
    # Patching rows for each layer and direction; interventions for the concept without pairs.
    patch = effects[effects.measure.isin(["patch_restore", "patch_remove"])]
    assert sorted(set(patch.layer)) == [1, 2] and len(patch) == 4
    inter = effects[effects.measure == "cav_intervention"]
    assert set(inter.concept) == {"sporty"} and sorted(inter.layer) == [1, 2]
    assert inter.p_value.between(0, 1).all() and (inter.dataset == "data.csv").all()
    # Corrected together, by the run's correction, with one family per dataset x target x concept.
    from attnxai.stats import adjust
    tcav = store.get_run(run_id).config.tcav
    keys = list(zip(effects.dataset, effects.target, effects.concept))
    families = np.array([sorted(set(keys)).index(k) for k in keys])
    np.testing.assert_allclose(effects.p_adjusted, adjust(effects.p_value.to_numpy(),
                                                          tcav.correction, families))
    # Each row tested against its measure's minimum relevant effect, and its verdict from the
    # two adjusted p-values; the output effect's p from the direct differences (12 pairs: the
    # exact sign-flip distribution).
    from attnxai.stats import min_effect_p_values, paired_p_values

    config = store.get_run(run_id).config
    assert (effects.min_effect == [config.effects.delta(m) for m in effects.measure]).all()
    rel, _ = min_effect_p_values(direct.numpy()[:, None].astype(float),
                                   config.effects.min_logit_effect,
                                   lambda x: paired_p_values(x, "sign_flip", tcav.seed))
    assert out.p_value == pytest.approx(float(rel[0]), rel=1e-3, abs=1e-3)
    # A CAV intervention within δ is not shown negligible (the zoo: a planted concept's can be).
    within = (effects.p_negligible < tcav.alpha) & (effects.measure != "cav_intervention")
    expected = np.where(effects.p_adjusted < tcav.alpha, "relies",
                        np.where(within, "negligible", "inconclusive"))
    assert effects.verdict.tolist() == expected.tolist()
    assert ((effects.measure == "cav_intervention") & (effects.p_negligible < tcav.alpha)).any()
    assert (effects.significant == (effects.verdict == "relies")).all()
    pairs = store.results("pair_effects", run_id)
    assert len(pairs) == 12 and set(pairs.concept) == {"won"}
    np.testing.assert_allclose(pairs.sort_values("pair").delta_logit, direct.numpy(), atol=1e-5)
    assert pairs.example.iloc[0].endswith("won")


def test_cli_audit_writes_the_effects_csv_and_none_writes_none(paired_world, tmp_path):
    out = tmp_path / "audit.csv"
    common = ["audit", "--model", paired_world["model"], "--device", "cpu", "--target", "positive",
              "--data", paired_world["data"],
              "--concepts", "sporty,won", "--concept-dir", str(paired_world["concepts"]),
              "--layers", "1", "--num-cavs", "3", "--num-random", "2", "--num-null", "20",
              "--intervention-null", "20"]
    assert main([*common, "--csv", str(out)]) == 0
    frame = pd.read_csv(effects_path(out))
    for column in ["target", "concept", "layer", "measure", "mean", "ci_low", "ci_high",
                   "p_value", "p_adjusted", "significant", "n_pairs", "min_effect",
                   "p_negligible", "verdict", "n_needed"]:
        assert column in frame.columns
    assert (frame[frame.measure.str.startswith("output")].layer == -1).all()
    out2 = tmp_path / "none.csv"
    assert main([*common, "--effects", "none", "--csv", str(out2)]) == 0
    assert out2.exists() and not effects_path(out2).exists()


def test_effect_command_and_its_bad_input(paired_world, tmp_path, capsys):
    base = ["effect", "--model", paired_world["model"], "--device", "cpu", "--target", "positive",
            "--concept-dir", str(paired_world["concepts"])]
    out = tmp_path / "e.csv"
    assert main([*base, "--concepts", "won", "--layers", "0,1", "--csv", str(out), "--json"]) == 0
    frame = pd.read_csv(out)
    assert set(frame.measure) == {"output_logit", "output_prob", "patch_restore", "patch_remove"}
    for args, message in ((["--concepts", "sporty"], "no matched pairs"),
                          (["--concepts", "won", "--layers", "7"], "Layer 7 does not exist"),
                          (["--concepts", "won", "--csv", str(tmp_path / "no" / "x.csv")],
                           "does not exist"),
                          (["--concepts", "nope"], "nope")):
        capsys.readouterr()
        assert main([*base, *args]) == 2, args
        assert message in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
