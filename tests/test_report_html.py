"""The HTML audit report (`attnxai report`): a tiny stored audit rendered and parsed back. Every
stored summary result is in it as printed, its charts are inline SVG, and it loads nothing from
outside (no URLs but data: URIs and in-page anchors, no scripts, links or CSS imports). User
text is escaped; the causal-effects section appears exactly when the run stored effects; image
concept sets show thumbnails of the unchanged recorded files; unknown or unfinished runs exit 2
and write nothing.

The audits follow tests/test_audit_store.py: the tiny BERT and ViT of conftest.py, trimmed
concept sets, a few CAVs (about 20 s on two cores).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attnxai.audit.config import AuditConfig
from attnxai.audit.records import RunDataset
from attnxai.audit.report_html import render_report, write_report
from attnxai.audit.runner import run_audit
from attnxai.audit.store import Store
from attnxai.audit.verdicts import fmt, fmt_p
from attnxai.cli.main import main
from attnxai.errors import UserInputError
from attnxai.io.concepts import ConceptSet, save_concept_set
from attnxai.schema import TABLES
from conftest import VOCAB
from htmlcheck import Page, assert_self_contained

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
SPORTS = "team won lost match game cup final goal player".split()
SMALL = {"num_cavs": 3, "num_random": 2, "num_null": 20, "device": "cpu"}
# User text that must reach the page as text: a tag, an external image, an entity.
EVIL = '<img src="http://127.0.0.1:9/beacon.png"> & <b>bold</b>'
DATASET = "val<i>&.csv"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Text and image concept sets (one with hostile text), a text dataset with a hostile
    file name, and an image dataset."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("world")
    concepts = root / "concepts"

    def sent(words: list[str]) -> str:
        return " ".join(rng.choice(words, int(rng.integers(4, 8))))

    save_concept_set(ConceptSet("pool", "text", [sent(WORDS) for _ in range(100)],
                                kind="random_pool"), concepts)
    save_concept_set(ConceptSet("sports", "text", [sent(SPORTS) for _ in range(12)],
                                description=EVIL, default_pool="pool"), concepts)
    pics = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(100)]
    save_concept_set(ConceptSet("pics", "image", pics, kind="random_pool"), concepts)
    save_concept_set(ConceptSet("red", "image", pics[:12], default_pool="pics"), concepts)
    data = root / DATASET
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(14):
            w.writerow([sent(WORDS), ("positive", "negative")[i % 2]])
    imgs = root / "imgs"
    for i in range(6):
        (imgs / "positive").mkdir(parents=True, exist_ok=True)
        pics[i].save(imgs / "positive" / f"{i}.png")
        if i < 2:
            (imgs / "negative").mkdir(exist_ok=True)
            pics[i].save(imgs / "negative" / f"{i}.png")
    return {"concepts": concepts, "data": data, "imgs": imgs}


@pytest.fixture(scope="module")
def text_run(world, tiny_bert_dir, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("db") / "audits.duckdb")
    run_id = run_audit(AuditConfig.from_dict({
        "model": str(tiny_bert_dir), "datasets": [str(world["data"])],
        "targets": ["positive", "negative"], "concepts": ["sports"],
        "concept_dir": str(world["concepts"]), "layers": [1, 2], **SMALL}), store)
    html = render_report(store, run_id)
    return store, run_id, html, Page(html)


def _copy(store: Store, tmp_path: Path) -> Store:
    """A copy of the store's file, to change a run without touching the module's."""
    target = tmp_path / "copy.duckdb"
    shutil.copy(store.path, target)
    return Store(target)


def _set_effects(store: Store, run_id: str, rows: list[dict]) -> None:
    """Replace the run's stored effects with ``rows`` (the effects table's columns)."""
    frame = TABLES["effects"].frame(pd.DataFrame(rows, columns=TABLES["effects"].names()))
    frame.insert(0, "seq", range(len(frame)))
    frame.insert(0, "run_id", run_id)
    con = duckdb.connect(str(store.path))
    try:
        con.execute("DELETE FROM effects WHERE run_id = ?", [run_id])
        con.register("f", frame)
        con.execute("INSERT INTO effects BY NAME SELECT * FROM f")
    finally:
        con.close()


# -- contents ------------------------------------------------------------------------------------
def test_every_stored_result_is_in_the_report(text_run):
    store, run_id, html, page = text_run
    summary = store.summary(run_id)
    assert len(summary) == 8  # 2 targets x 1 concept x 2 layers x 2 weightings
    for (dataset, target), group in summary.groupby(["dataset", "target"]):
        rows = {(r[0], r[1], r[2]): r for r in page.table("summary", dataset=dataset,
                                                           target=target)}
        assert len(rows) == len(group)
        for r in group.itertuples():
            cells = rows[(r.concept, str(r.layer), r.weighting)]
            assert cells[3] == fmt(r.mean) and cells[4] == fmt(r.std)
            assert cells[7] == fmt_p(r.p_value) and cells[8] == fmt_p(r.p_adjusted)
            assert cells[10] == fmt(r.cav_accuracy)
    text = "".join(page.text)
    for target in ("positive", "negative"):  # one verdict per concept and target
        assert f"Class “{target}”" in text
    # One line per concept and target: the combined verdict, then TCAV layer by layer.
    assert text.count(f"TCAV on {DATASET} with attention weighting:") == 2
    from attnxai.audit.verdicts import combined_verdict
    for target in ("positive", "negative"):
        rows = summary[(summary.target == target) & (summary.weighting == "attention")]
        assert f"sports: {combined_verdict('sports', rows, None)} TCAV on {DATASET}" in text
    accuracy = page.table("accuracy")
    assert {(r[0], r[2]) for r in accuracy} == {(n, l) for n in ("sports", "random:pool")
                                                for l in ("1", "2")}
    run = store.get_run(run_id)
    for value in (run.model_hash, *(c.version_hash for c in run.concept_versions),
                  run.dataset_details[0].dataset_hash, run.library_versions["torch"]):
        assert value in text  # provenance: model, data, concept versions, libraries
    assert "grouped test, a random-effects test" in text and "α = 0.05" in text
    assert f"{run.duration_s:.1f} s" in text
    assert "team" in text or "goal" in text  # the first sports sentences


def test_charts_are_inline_svg_and_nothing_loads_from_outside(text_run):
    _, _, html, page = text_run
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) >= 6  # 2 targets x (layer-wise, heatmap, weightings) + CAV accuracy
    assert all(a.get("role") == "img" for a in svgs)
    assert_self_contained(html, page)
    assert "@media print" in html and "break-before: page" in html


def test_user_text_is_escaped(text_run):
    _, _, html, page = text_run
    text = "".join(page.text)
    assert EVIL in text and DATASET in text  # shown as text ...
    assert not [a for t, a in page.tags if t in ("i", "b") or t == "img" and
                not a.get("src", "").startswith("data:")]  # ... never as elements
    assert "<b>bold</b>" not in html


def test_effects_section_follows_the_stored_effects(text_run, tmp_path):
    store, run_id, html, page = text_run
    assert "effects" not in page.ids()  # this run computed no effects
    copy = _copy(store, tmp_path)
    base = {"dataset": "pairs", "target": "positive", "concept": "sports", "n_skipped": 0,
            "test": "sign_flip", "min_effect": 0.1, "p_negligible": 0.9, "n_needed": np.nan}
    _set_effects(copy, run_id, [
        {**base, "layer": -1, "measure": "output_logit", "mean": 0.42, "ci_low": 0.31,
         "ci_high": 0.55, "p_value": 0.001, "p_adjusted": 0.002, "significant": True,
         "verdict": "relies", "n_pairs": 40, "share": np.nan},
        {**base, "layer": 1, "measure": "patch_restore", "mean": 0.3, "ci_low": 0.2,
         "ci_high": 0.4, "p_value": 0.01, "p_adjusted": 0.02, "significant": True,
         "verdict": "relies", "n_pairs": 40, "share": 0.75},
        {**base, "layer": 2, "measure": "patch_remove", "mean": 0.01, "ci_low": -0.1,
         "ci_high": 0.1, "p_value": 0.8, "p_adjusted": 0.8, "significant": False,
         "verdict": "inconclusive", "n_needed": 1200.0, "n_pairs": 38, "n_skipped": 2,
         "share": 0.02},
    ])
    html = render_report(copy, run_id)
    page = Page(html)
    assert "effects" in page.ids()
    text = "".join(page.text)
    assert ("Causal effect on its matched pairs: output effect on the target's logit +0.420 (95% CI 0.310 "
            "to 0.550; beyond δ = 0.1 (adjusted p 0.002); 40 pairs); patching restores: beyond "
            "δ = 0.1 at layer 1 (share 0.75); patching removes: no layer beyond δ = 0.1 "
            "(smallest adjusted p 0.8).") in text
    assert "+0.420 on the logit, beyond δ = 0.1" in text  # the combined verdict's evidence
    rows = page.table("effects")
    assert [r[4] for r in rows] == ["output", "1", "2"] and rows[2][12] == "2"
    assert [r[10] for r in rows] == ["relies", "relies", "inconclusive (~1200 pairs)"]
    assert "sign-flip permutation test" in text
    assert_self_contained(html, page)
    _set_effects(copy, run_id, [])
    assert "effects" not in Page(render_report(copy, run_id)).ids()


def test_image_concepts_show_thumbnails_of_the_recorded_files(world, tiny_hf_vit_dir, tmp_path):
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(AuditConfig.from_dict({
        "model": str(tiny_hf_vit_dir), "datasets": [str(world["imgs"])], "targets": ["positive"],
        "concepts": ["red"], "concept_dir": str(world["concepts"]), "layers": [1], **SMALL}),
        store)
    html = render_report(store, run_id)
    page = Page(html)
    assert_self_contained(html, page)
    thumbs = [a for t, a in page.tags if t == "img"]
    assert len(thumbs) == 12  # 6 of red, 6 of the pool
    assert all(a["src"].startswith("data:image/png;base64,") for a in thumbs)
    # A file changed since the run is named, not shown.
    Image.new("RGB", (8, 8), (0, 255, 0)).save(world["concepts"] / "red" / "examples" / "0000.png")
    page = Page(render_report(store, run_id))
    assert len([t for t, _ in page.tags if t == "img"]) == 11
    assert "examples/0000.png (no longer as recorded)" in "".join(page.text)


# -- writing and the command line ------------------------------------------------------------------
def test_cli_writes_the_report_and_refuses_unknown_or_unfinished_runs(text_run, tmp_path, capsys):
    store, run_id, html, _ = text_run
    out = tmp_path / "report.html"
    assert main(["report", run_id, "--db", str(store.path), "--html", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == html
    assert f"wrote {out}" in capsys.readouterr().err

    missing = tmp_path / "missing.html"
    assert main(["report", "no-such-run", "--db", str(store.path), "--html", str(missing)]) == 2
    assert "No run 'no-such-run'" in capsys.readouterr().err
    copy = _copy(store, tmp_path)
    copy.start_run("unfinished", model="m", model_hash="h",
                   datasets=[RunDataset("d", "h", "s", 1)], targets=["positive"], concepts=[],
                   config=store.get_run(run_id).config, library_versions={})
    assert main(["report", "unfinished", "--db", str(copy.path), "--html", str(missing)]) == 2
    assert "is running" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="is a folder"):
        write_report(store, run_id, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.duckdb", "report.html"]


def test_layer_chart_stars_what_relies_and_marks_tcav_alone_hollow():
    from attnxai.audit.charts import heatmap, layer_chart

    summary = pd.DataFrame({
        "concept": "c", "layer": [0, 1, 2], "mean": [0.9, 0.8, 0.5], "std": 0.05,
        "magnitude_mean": 0.5, "random_mean": 0.5, "random_std": 0.1,
        "significant": [True, True, False], "relies": [True, False, False],
        "reliable": True, "p_value": 0.01, "p_adjusted": 0.02, "cav_accuracy": 0.9})
    spec = layer_chart(summary).to_dict()
    marks = {l["mark"]["text"]: l["transform"] for l in spec["spec"]["layer"]
             if isinstance(l["mark"], dict) and "text" in l["mark"]}
    assert marks == {"★": [{"filter": "datum.relies"}],
                     "☆": [{"filter": "datum.significant && !datum.relies"}]}
    data = pd.DataFrame(spec["datasets"][spec["data"]["name"]])
    sign = data[data.metric == "sign-count TCAV"].set_index("layer")
    assert sign.status.tolist() == ["relies", "TCAV only", "not significant"]
    labels = pd.DataFrame(next(iter(heatmap(summary).to_dict()["datasets"].values())))["label"]
    assert labels.tolist() == ["0.90 ★", "0.80 ☆", "0.50"]


def test_effect_chart_names_measures_in_words_and_stars_what_relies():
    from attnxai.audit.charts import effect_chart

    rows = pd.DataFrame({
        "concept": ["c"] * 4, "layer": [-1, 0, 0, 1],
        "measure": ["output_logit", "patch_restore", "patch_remove", "cav_intervention"],
        "mean": [1.0, 0.8, 0.1, 0.05], "ci_low": [0.8, 0.6, -0.1, 0.0],
        "ci_high": [1.2, 1.0, 0.3, 0.1], "share": [np.nan, 0.8, 0.1, np.nan],
        "p_adjusted": [0.001, 0.001, 0.6, 0.3], "significant": [True, True, False, False],
        "verdict": ["relies", "relies", "inconclusive", "negligible"],
        "min_effect": [0.1] * 4})
    spec = effect_chart(rows).to_dict()
    layer = spec["spec"]["layer"]
    legend = next(l["encoding"]["color"] for l in layer if "color" in l.get("encoding", {}))
    assert legend["scale"]["domain"] == ["patching restores", "patching removes",
                                         "CAV intervention"]
    stars = next(l for l in layer
                 if isinstance(l["mark"], dict) and l["mark"].get("text") == "★")
    assert stars["transform"] == [{"filter": "datum.significant"}]
    data = pd.DataFrame(spec["datasets"][spec["data"]["name"]])
    assert data.loc[data["significant"], "verdict"].tolist() == ["relies"]
