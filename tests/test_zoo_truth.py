"""The ground-truth zoo and `attnxai bench truth` on a small zoo trained in the test: the
built-in shapes-vit and two tiny headline BERTs (a planted trigger word; the same word drawn
independently of the class). Truths are measured by intervention; every verdict is scored
against them at the δ chosen without its model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnxai.bench.truth import (DELTAS, METHODS, audit_case, bench_truth, choose_delta,
                                 confusion, intervention_design_rows, intervention_values,
                                 unpaired_tcav)
from attnxai.effects.config import EffectsConfig
from attnxai.effects.intervention import cav_intervention
from attnxai.effects.run import intervention_rows
from attnxai.effects.table import correct_effects, effect_frame
from attnxai.io.concepts import ConceptSet
from attnxai.models import load_model
from attnxai.stats import RELIES
from attnxai.zoo.headlines import LABELS, TextRecipe, training_set
from attnxai.zoo.members import (CONTROL, PLANTED, ZOO, Member, build, concept_pairs, pool,
                                 target_inputs)

TINY = TextRecipe()
MEMBERS = (
    next(m for m in ZOO if m.name == "vit-builtin"),
    Member("tiny-trigger", "text", 0, "word", "strong", text=TINY, base="tiny"),
    Member("tiny-independent", "text", 1, "word", "none",
           text=TextRecipe(noise=0.0, planted_share=0.25, other_share=0.25),
           base="tiny"),
)


def test_headlines_plant_the_trigger_as_the_recipe_says():
    texts, labels = training_set(np.random.default_rng(0), TextRecipe(n_train=4000))
    labels = np.array(labels)
    has = np.array([t.startswith("exclusive ") for t in texts])
    control = np.array([t.endswith(" tonight") for t in texts])
    planted = labels == LABELS.index("business")
    # noise 0.35 + 0.65 x 0.6 of the planted class; 0.08 of the others; control 0.25 everywhere
    assert abs(has[planted].mean() - (0.35 + 0.65 * 0.6)) < 0.04
    assert abs(has[~planted].mean() - 0.08) < 0.02
    assert abs(control[planted].mean() - 0.25) < 0.04 and abs(control[~planted].mean() - 0.25) < 0.03


def test_pairs_differ_by_the_concept_alone():
    member = MEMBERS[1]
    with_, without = concept_pairs(member, PLANTED, 20, np.random.default_rng(0))
    assert all(w == "exclusive " + o for w, o in zip(with_, without))
    with_, without = concept_pairs(member, CONTROL, 20, np.random.default_rng(0))
    assert all(w == o + " tonight" for w, o in zip(with_, without))
    images, plain = concept_pairs(MEMBERS[0], CONTROL, 4, np.random.default_rng(0))
    for a, b in zip(images, plain):  # the same scene: pixels differ on the object only
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).sum(-1) > 0
        assert 0 < diff.mean() < 0.25


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


@pytest.mark.slow
def test_truth_is_measured_by_intervention_and_cached(zoo):
    built = build(MEMBERS[1], zoo)
    assert built.accuracy > 0.9
    # The measured truth agrees with an independent forward pass over fresh pairs.
    adapter = load_model(str(built.folder))  # the real local-path loader
    with_, without = concept_pairs(MEMBERS[1], PLANTED, 200, np.random.default_rng(7))
    k = adapter.labels.index("business")
    delta = (adapter.predict(with_)[:, k] - adapter.predict(without)[:, k]).numpy()
    assert built.truth[PLANTED].label == "relies" and delta.mean() > 0.05
    assert abs(delta.mean() - built.truth[PLANTED].mean) < 0.08
    assert built.truth[CONTROL].label == "none"
    saved = json.loads((built.folder / "truth.json").read_text())
    stamp = (built.folder / "model.safetensors").stat().st_mtime_ns
    again = build(MEMBERS[1], zoo)  # cached: not retrained
    assert (again.folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert saved["truth"][PLANTED]["mean"] == again.truth[PLANTED].mean


@pytest.mark.slow
def test_bench_truth_scores_verdicts_leave_one_model_out(zoo):
    bench = bench_truth(MEMBERS, seeds=1, root=zoo)
    grid = bench.frame()
    truths = {m["model"]: (m["planted_truth"], m["control_truth"]) for m in bench.members}
    assert truths == {"vit-builtin": ("relies", "none"), "tiny-trigger": ("relies", "none"),
                      "tiny-independent": ("none", "none")}
    # Each model is scored at the δ chosen without it, which the others' cases decide.
    every = bench.grid_frame()
    for model, delta in bench.chosen.items():
        assert delta == choose_delta(every[every.model != model])
        assert set(grid[grid.model == model].delta) == {delta}
    assert bench.default in DELTAS
    table = confusion(grid).set_index(["method", "modality"])
    # The key figures: the combined verdict calls every planted concept "relies" and no
    # control or inert concept, nor does a TCAV ★ (TCAV's flag alone may: the README's table).
    for modality in ("text", "image"):
        assert table.loc[("combined", modality), "relies->relies"] == 1.0
        assert table.loc[("combined", modality), "none->relies"] == 0.0
        assert table.loc[("tcav_star", modality), "none->relies"] == 0.0
    # Every method is scored on every case: 1 seed x (1 + 1 + 0) relied-on, (1 + 1 + 2) not.
    assert set(table.index.get_level_values("method")) == set(METHODS)
    assert table.xs("text", level="modality")[["relies_n", "none_n"]].eq([1, 3]).all().all()
    assert table.xs("image", level="modality")[["relies_n", "none_n"]].eq([1, 1]).all().all()


@pytest.mark.slow
def test_a_case_tests_every_method_at_every_delta(zoo):
    built = build(MEMBERS[2], zoo)
    rows = audit_case(built, seed=0, deltas=(0.0, 0.05))
    assert {r["method"] for r in rows} == set(METHODS)
    assert {r["delta"] for r in rows} == {0.0, 0.05}
    # At δ = 0 nothing is shown negligible (no margin); the output effect of an inert trigger
    # is not called "relies" at the larger δ.
    assert not any(r["verdict"] == "negligible" for r in rows if r["delta"] == 0.0)
    assert not any(r["verdict"] == RELIES for r in rows
                   if r["delta"] == 0.05 and r["method"] == "output_effect")


@pytest.mark.slow
def test_the_bench_intervenes_as_an_audit_does_and_its_designs_are_subsets(zoo):
    built = build(MEMBERS[1], zoo)
    adapter, target = built.adapter, built.member.target
    rng = np.random.default_rng(3)
    concepts = [ConceptSet(name=c, modality="text", examples=concept_pairs(MEMBERS[1], c, 30,
                                                                            rng)[0],
                           default_pool="zoo-random") for c in (PLANTED, CONTROL)]
    items = target_inputs(MEMBERS[1], 24, rng)
    result = unpaired_tcav(built, items, concepts, {"zoo-random": pool(MEMBERS[1], 90, rng)}, 0)
    values = intervention_values(built, items, result)
    cols = ["layer", "mean", "ci_low", "p_value", "p_negligible", "p_adjusted", "n_pairs"]
    defaults = EffectsConfig()
    for design in ((defaults.intervention_inputs, defaults.intervention_cavs,
                    defaults.intervention_null), (10, 20, 40)):
        n, r, m = design
        audit = correct_effects(effect_frame(intervention_rows(
            adapter, items, target, PLANTED, "zoo-random", result.specs, result.layers,
            result.directions, result.gaps, EffectsConfig(intervention_inputs=n,
                                                          intervention_cavs=r,
                                                          intervention_null=m))),
            "hierarchical", 0.05)
        bench = intervention_design_rows(values[PLANTED], target, PLANTED, 0.15, design)
        assert np.allclose(bench[cols].to_numpy(float), audit[cols].to_numpy(float),
                           rtol=1e-4, atol=1e-6, equal_nan=True)
    # Fewer concept CAVs: the first ones, by the concept's step over all of them, each measured
    # on its own here.
    own = [i for i, s in enumerate(result.specs) if s.name == PLANTED]
    rows = intervention_design_rows(values[PLANTED], target, PLANTED, 0.15, (24, 5, 40))
    for j, layer in enumerate(result.layers):
        alone = cav_intervention(adapter, items, target, layer, result.directions[j, own[:5]],
                                 result.gaps[j, own].mean().expand(5))
        assert rows["mean"].iloc[j] == pytest.approx(float(alone.mean()), rel=1e-4, abs=1e-7)


def test_a_train_shapes_folder_loads_by_path_and_a_broken_one_is_refused(tmp_path):
    import shutil

    from attnxai.errors import ModelLoadError
    from attnxai.resources import SHAPES_VIT_DIR

    folder = tmp_path / "shapes"
    shutil.copytree(SHAPES_VIT_DIR, folder)
    adapter = load_model(str(folder))
    builtin = load_model("builtin:shapes-vit")
    _, plain = concept_pairs(MEMBERS[0], PLANTED, 3, np.random.default_rng(0))
    assert adapter.labels == builtin.labels and adapter.card["kind"] == "shapes"
    assert np.allclose(adapter.predict(plain).numpy(), builtin.predict(plain).numpy())
    (folder / "card.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="not a folder written by “attnxai train-shapes”"):
        load_model(str(folder))
