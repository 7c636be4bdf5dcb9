"""The HTML audit report of a stored run: one self-contained file that opens offline and prints.

It holds the question, a verdict per concept and target (TCAV, and the causal effect where the
run stored one), the layer-wise charts (inline SVG from the same Altair specs as the dashboard,
:mod:`attnxai.audit.charts`), the concept × layer table, the CAV accuracies, a few examples of
each concept set (thumbnails as PNG data URIs, or the first texts), the model card,
configuration and provenance hashes, the statistics used and the time taken. Nothing in it
loads from elsewhere: no script, style sheet, font or image URL.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import altair as alt
import pandas as pd
from PIL import Image

from attnxai.audit.charts import (accuracy_chart, effect_chart, heatmap, layer_chart,
                                  significance_caption, weighting_chart)
from attnxai.audit.html_parts import esc, inline_svg, key_values, png_data_uri, table
from attnxai.audit.records import RunConcept, RunRecord
from attnxai.audit.report import completed_run
from attnxai.audit.report_style import CSS
from attnxai.audit.store import Store
from attnxai.audit.verdicts import (MEASURE_WORDS, combined_verdict, effect_verdict, fmt,
                                    fmt_p, row_verdict, statistics_paragraph, tcav_verdict,
                                    testable, with_relevance)
from attnxai.errors import DataError, UserInputError
from attnxai.io.concepts import default_concept_root
from attnxai.io.datasets import load_image
from attnxai.io.hashing import example_hash
from attnxai.io.outputs import check_output, store_files, write_atomic
from attnxai.schema import PAIRS
from attnxai.stats import INCONCLUSIVE
from attnxai.resources import CONCEPT_SETS_DIR
from attnxai.schema import TABLES

N_EXAMPLES = 6  # examples (and counterexamples) shown per concept set
TEXT_CHARS = 200  # longer example texts are cut here
# Width of the charts the dashboard stretches to its container (a page has no container).
WIDE = 560


def _effects(store: Store, run_id: str) -> pd.DataFrame | None:
    """The run's causal effects, or None where the schema or the run has none."""
    if "effects" not in TABLES:
        return None
    frame = store.results("effects", run_id)
    return None if frame.empty else frame


def _primary_weighting(summary: pd.DataFrame) -> str:
    """The weighting the verdicts and charts lead with: attention, as on the dashboard."""
    weightings = list(dict.fromkeys(summary["weighting"]))
    return "attention" if "attention" in weightings else weightings[0]


def _quoted(names: list[str]) -> str:
    quoted = [f"“{n}”" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _groups(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, target) pairs in the order the run wrote them."""
    return list(dict.fromkeys(zip(summary["dataset"], summary["target"])))


# -- sections ------------------------------------------------------------------------------------
def _question(run: RunRecord, summary: pd.DataFrame) -> str:
    tcav = run.config.tcav
    versions = {c.name: c.version_hash for c in run.concept_versions}
    datasets = "; ".join(f"{d.dataset} ({d.n_items} items, {d.source})"
                         for d in run.dataset_details) or ", ".join(run.datasets)
    layers = ", ".join(str(l) for l in sorted(set(summary["layer"].astype(int))))
    items = [("Model", run.model), ("Target classes", ", ".join(run.targets)),
             ("Concepts", ", ".join(f"{c} (version {versions.get(c, '?')[:12]})"
                                    for c in run.concepts)),
             ("Datasets", datasets), ("Layers", layers),
             ("Weighting", ", ".join(dict.fromkeys(summary["weighting"]))),
             ("Inputs per target", ", ".join(f"{t}: {int(n)}" for t, n in
                                             summary.groupby("target", sort=False)["n_inputs"]
                                             .max().items()))]
    return ('<section id="question"><h2>The question</h2>' + key_values(items) +
            f'<p class="note">Seed {esc(run.seed)}; test {esc(tcav.test)}, α = {tcav.alpha:g}. '
            'The statistics are described under <a href="#statistics">Statistics</a>.</p>'
            "</section>")


def _verdicts(run: RunRecord, summary: pd.DataFrame, effects: pd.DataFrame | None) -> str:
    alpha = run.config.tcav.alpha
    primary = _primary_weighting(summary)
    others = [w for w in dict.fromkeys(summary["weighting"]) if w != primary]
    out = ['<section id="verdicts"><h2>Verdicts</h2>']
    for target in dict.fromkeys(summary["target"]):
        out.append(f"<h3>Class “{esc(target)}”</h3><ul class=\"verdicts\">")
        for concept in dict.fromkeys(summary["concept"]):
            rows = summary[(summary["target"] == target) & (summary["concept"] == concept)]
            sentences = []
            for dataset in dict.fromkeys(rows["dataset"]):
                part = rows[rows["dataset"] == dataset]
                text = (f"TCAV on {dataset} with {primary} weighting: "
                        f"{tcav_verdict(part[part['weighting'] == primary], alpha)}.")
                for w in others:
                    verdict = tcav_verdict(part[part["weighting"] == w], alpha)
                    text += f" With {w} weighting: {verdict}."
                sentences.append(text)
            mine = None
            if effects is not None:
                mine = effects[(effects["target"] == target) & (effects["concept"] == concept)]
                for dataset in dict.fromkeys(mine["dataset"]):
                    # Output effects and patching are measured on the concept's own pairs.
                    where = "its matched pairs" if dataset == PAIRS else dataset
                    sentences.append(f"Causal effect on {where}: "
                                     f"{effect_verdict(mine[mine['dataset'] == dataset])}.")
            first = rows[rows["dataset"] == rows["dataset"].iloc[0]]
            if mine is not None:  # the first dataset's interventions, or the pairs' effect
                mine = mine[mine["dataset"].isin([PAIRS, first["dataset"].iloc[0]])]
            summary_line = combined_verdict(concept, first[first["weighting"] == primary], mine)
            out.append(f"<li><strong>{esc(concept)}</strong>: <em>{esc(summary_line)}</em> "
                       f"{' '.join(esc(s) for s in sentences)}</li>")
        out.append("</ul>")
    return "".join(out) + "</section>"


def _accuracy_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Concept CAV accuracy per layer (one run trains each layer's CAVs once, for every dataset
    and target), in the columns :func:`accuracy_chart` reads."""
    acc = summary.drop_duplicates(["concept", "layer"])
    return acc[["concept", "layer", "cav_accuracy", "cav_accuracy_std"]].rename(
        columns={"cav_accuracy": "accuracy", "cav_accuracy_std": "sd"}).fillna({"sd": 0.0})


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _charts(run: RunRecord, summary: pd.DataFrame, effects: pd.DataFrame | None,
            svg: Callable[..., str]) -> str:
    primary = _primary_weighting(summary)
    concepts = list(dict.fromkeys(summary["concept"]))
    out = ['<section id="charts" class="break"><h2>Layer-wise TCAV</h2>']
    for dataset, target in _groups(summary):
        sel = summary[(summary["dataset"] == dataset) & (summary["target"] == target)]
        view = sel[sel["weighting"] == primary]
        out.append(f"<h3>“{esc(target)}” on {esc(dataset)}</h3>")
        out.append(_figure(svg(layer_chart(view, concepts), "layer-wise TCAV"),
                           significance_caption(view, run.config.tcav.alpha) +
                           f" {primary.capitalize()} token weighting; "
                           f"{int(view['n_inputs'].iloc[0])} inputs."))
        out.append(_figure(svg(heatmap(view, concepts).properties(width=WIDE), "concept × layer"),
                           "Concept × layer: mean sign-count TCAV; 0.5 = no preference. "
                           "★ relies; ☆ TCAV alone is significant; faded cells: unreliable "
                           "CAVs."))
        mine = None if effects is None else effects[
            (effects["target"] == target) & effects["dataset"].isin([PAIRS, dataset])]
        if mine is not None and (mine["layer"] >= 0).any():
            shown = [c for c in concepts if c in set(mine[mine["layer"] >= 0]["concept"])]
            out.append(_figure(svg(effect_chart(mine[mine["concept"].isin(shown)], shown),
                                   "layer-wise causal effect"),
                               "Layer-wise causal effect: the logit effect (95% interval) that "
                               "activation patching restores or removes at each layer, or the CAV "
                               "intervention's mean change; dashed: the pairs' whole output "
                               "effect; ★ the effect relies (shown beyond δ)."))
        if set(sel["weighting"]) >= {"attention", "plain"}:
            out.append(_figure(svg(weighting_chart(sel, concepts), "weightings"),
                               "Attention-weighted against plain (unweighted) token-level "
                               "TCAV, ± std."))
    return "".join(out) + "</section>"


def _status(row: pd.Series) -> str:
    if not testable(row):
        return "not testable"
    if not row["reliable"]:
        return "unreliable CAVs"
    if row.get("relies"):
        return f"relies ★ ({row['direction']})"
    return (f"TCAV only ☆ ({row['direction']})" if row["significant"] else "not significant")


def _summary_tables(summary: pd.DataFrame) -> str:
    headers = ["concept", "layer", "weighting", "TCAV", "± std", "magnitude", "random TCAV",
               "p", "adjusted p", "verdict", "CAV accuracy", "inputs"]
    out = ['<section id="table" class="break"><h2>Concept × layer</h2><p class="note">Every '
           "test of the run: mean sign-count TCAV over the concept's CAVs (share of inputs the "
           "concept pushes towards the class), its spread, the magnitude score, the random "
           "concepts' TCAV, the p-value before and after correction, and the held-out accuracy "
           "of the concept's CAVs.</p>"]
    for dataset, target in _groups(summary):
        part = summary[(summary["dataset"] == dataset) & (summary["target"] == target)]
        rows = [[r["concept"], int(r["layer"]), r["weighting"], fmt(r["mean"]), fmt(r["std"]),
                 fmt(r["magnitude_mean"]), fmt(r["random_mean"]), fmt_p(r["p_value"]),
                 fmt_p(r["p_adjusted"]), _status(r), fmt(r["cav_accuracy"]), int(r["n_inputs"])]
                for _, r in part.iterrows()]
        classes = ["sig" if r.get("relies") else "" if r["reliable"] and testable(r)
                   else "unreliable" for _, r in part.iterrows()]
        out.append(f"<h3>“{esc(target)}” on {esc(dataset)}</h3>")
        out.append(table(headers, rows, numeric=(1, 3, 4, 5, 6, 7, 8, 10, 11),
                         row_classes=classes, attrs={"class": "summary", "data-dataset": dataset,
                                                     "data-target": target}))
    return "".join(out) + "</section>"


def _effects_section(effects: pd.DataFrame) -> str:
    headers = ["dataset", "target", "concept", "measure", "layer", "mean", "95% CI", "δ",
               "p (|effect| > δ)", "adjusted p", "verdict", "pairs", "skipped", "share", "test"]

    def verdict(r: pd.Series) -> str:
        v = row_verdict(r)
        n = r.get("n_needed")
        return v + (f" (~{int(n)} pairs)" if v == INCONCLUSIVE and pd.notna(n) else "")
    rows = [[r["dataset"], r["target"], r["concept"], MEASURE_WORDS.get(r["measure"], r["measure"]),
             "output" if r["layer"] < 0 else int(r["layer"]), f"{r['mean']:+.3f}",
             f"{fmt(r['ci_low'])} to {fmt(r['ci_high'])}",
             fmt(r.get("min_effect"), 3) if pd.notna(r.get("min_effect")) else "0",
             fmt_p(r["p_value"]), fmt_p(r["p_adjusted"]), verdict(r), int(r["n_pairs"]),
             int(r["n_skipped"]), fmt(r["share"], 2), r["test"]]
            for _, r in effects.iterrows()]
    classes = ["sig" if s else "" for s in effects["significant"]]
    return ('<section id="effects" class="break"><h2>Causal effects</h2><p class="note">Output '
            "effects: the mean change of the target's logit or probability from a pair's "
            "example without the concept to the one with it (layer “output”). Patching: the "
            "share of that logit effect restored or removed by swapping one layer's activations "
            "between the two. CAV intervention: the mean change of the logit when each CAV is "
            "added at a layer, beyond the null CAVs'. Each is tested against the minimum "
            "relevant effect δ in its own units: “relies” when it is shown to exceed δ, "
            "“negligible” when shown to stay within ±δ, else “inconclusive” (with about how "
            "many pairs would settle it). The p-value is that of |effect| > δ.</p>" +
            table(headers, rows, numeric=(4, 5, 7, 8, 9, 11, 12, 13), row_classes=classes,
                  attrs={"class": "effects"}) + "</section>")


def _accuracy_section(run: RunRecord, summary: pd.DataFrame, cav_accuracy: pd.DataFrame,
                      svg: Callable[..., str]) -> str:
    threshold = float(run.config.tcav.min_accuracy)
    concepts = list(dict.fromkeys(summary["concept"]))
    chart = svg(accuracy_chart(_accuracy_frame(summary), threshold, concepts)
                .properties(width=WIDE), "CAV accuracy")
    reliable = summary.drop_duplicates(["concept", "layer"]).set_index(["concept", "layer"])
    # The CAVs are stored once per dataset x target; each is counted once. Concepts come
    # first, in the run's order, then the random CAVs.
    cavs = cav_accuracy.drop_duplicates(["cav_name", "rep", "kind", "layer"])
    groups = sorted(cavs.groupby(["cav_name", "kind", "layer"]), key=lambda item: (
        item[0][1] != "concept", concepts.index(item[0][0]) if item[0][0] in concepts else 0,
        item[0][0], item[0][2]))
    rows = []
    for (name, kind, layer), g in groups:
        ok = reliable["reliable"].get((name, layer)) if kind == "concept" else None
        rows.append([name, kind, int(layer), len(g), fmt(g["accuracy"].mean()),
                     fmt(g["accuracy"].std()), fmt(g["accuracy"].min()),
                     fmt(g["train_accuracy"].mean()),
                     "" if ok is None else ("yes" if ok else "no")])
    headers = ["CAVs", "kind", "layer", "n", "held-out accuracy", "± std", "min",
               "training accuracy", "reliable"]
    return ('<section id="accuracy" class="break"><h2>CAV accuracy</h2>' +
            _figure(chart, "Held-out accuracy of each concept's CAVs (mean ± std over CAVs). "
                    f"Below the threshold ({threshold:g}) a layer does not separate the concept "
                    "from its negatives, and its scores mean nothing. The table adds the random "
                    "CAVs (random against random examples: about 0.5 is expected).") +
            table(headers, rows, numeric=(2, 3, 4, 5, 6, 7), attrs={"class": "accuracy"}) +
            "</section>")


def _thumbnails(folders: list[Path], entries: list[dict]) -> str:
    """The recorded images that are still unchanged in one of the set's ``folders``, as
    data-URI thumbnails; the others by file name."""
    out = []
    for entry in entries[:N_EXAMPLES]:
        name = str(entry.get("file", ""))
        image = next((img for img in (_recorded_image(f, entry) for f in folders)
                      if img is not None), None)
        out.append(f'<span class="note">{esc(name)} (no longer as recorded)</span>'
                   if image is None else f'<img src="{png_data_uri(image)}" alt="{esc(name)}">')
    return f'<div class="thumbs">{"".join(out)}</div>'


def _recorded_image(folder: Path, entry: dict) -> Image.Image | None:
    """The image ``entry`` names in ``folder`` if its pixels are the recorded ones, else None:
    a set edited or removed since the run must not show other pictures as its examples."""
    path = folder / str(entry.get("file", ""))
    try:
        if not path.resolve().is_relative_to(folder.resolve()):
            return None
        image = load_image(path)
    except (DataError, OSError):
        return None
    return image if example_hash(image) == entry.get("example_hash") else None


def _set_folders(run: RunRecord, name: str) -> list[Path]:
    """Where the set ``name`` may be: the run's concept folder, else the user's and the
    shipped ones."""
    if run.config.concept_dir:
        return [Path(run.config.concept_dir) / name]
    return list(dict.fromkeys([default_concept_root() / name, CONCEPT_SETS_DIR / name]))


def _texts(texts: list[str]) -> str:
    items = "".join(f"<li>{esc(t if len(t) <= TEXT_CHARS else t[:TEXT_CHARS - 1] + '…')}</li>"
                    for t in texts[:N_EXAMPLES])
    return f'<ol class="texts">{items}</ol>'


def _concept_set(store: Store, run: RunRecord, concept: RunConcept) -> str:
    stored = store.concept_examples(concept.name, concept.version_hash)
    versions = store.concept_versions(concept.name)
    info = versions[versions["version_hash"] == concept.version_hash].iloc[0]
    examples, counter = stored["examples"], stored["counterexamples"]
    facts = ["random pool" if concept.role == "pool" else "concept", info["modality"],
             f"{len(examples)} examples"]
    if counter:
        facts.append(f"{len(counter)} counterexamples")
    head = (f"<h3>{esc(concept.name)} <span class=\"note\">({esc(', '.join(facts))}; version "
            f"<code>{esc(concept.version_hash[:12])}</code>)</span></h3>")
    if info["description"]:
        head += f"<p>{esc(info['description'])}</p>"
    if info["modality"] == "image":
        folders = _set_folders(run, concept.name)

        def show(items: list) -> str:
            return _thumbnails(folders, items)
    else:
        def show(items: list) -> str:
            return _texts([str(t) for t in items])
    body = show(examples)
    if counter:
        body += ('<p class="note">Counterexamples (the same without the concept):</p>' +
                 show(counter))
    return head + body


def _examples(store: Store, run: RunRecord) -> str:
    sets = sorted(run.concept_versions, key=lambda c: c.role != "concept")  # concepts first
    return ('<section id="examples" class="break"><h2>Concept examples</h2><p class="note">'
            f"The first {N_EXAMPLES} examples of each concept set and random pool, as recorded "
            "with the run.</p>" + "".join(_concept_set(store, run, c) for c in sets) +
            "</section>")


def _card_value(value: object) -> str:
    if isinstance(value, (dict, list)):
        return f"<pre>{esc(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"
    return esc(value)


def _provenance(store: Store, run: RunRecord) -> str:
    model = store.get_model(run.model_hash) if run.model_hash else None
    out = ['<section id="provenance" class="break"><h2>Model, configuration and provenance</h2>',
           "<h3>Model card</h3>"]
    if model is None:
        out.append('<p class="note">The store holds no record of this model.</p>')
    else:
        items = [("spec", model["spec"]), ("modality", model["modality"]),
                 ("layers", model["num_layers"]), ("classes", ", ".join(map(str, model["labels"])))]
        items += list(model["card"].items())
        out.append('<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{_card_value(v)}</dd>"
                                               for k, v in items) + "</dl>")
    rows = [["model", run.model, run.model_hash or "?"]]
    rows += [["dataset", f"{d.dataset} ({d.n_items} items, {d.source})", d.dataset_hash]
             for d in run.dataset_details]
    rows += [["random pool" if c.role == "pool" else "concept set", c.name, c.version_hash]
             for c in run.concept_versions]
    out.append("<h3>Provenance hashes (SHA-256)</h3>" +
               table(["what", "name", "content hash"], rows, attrs={"class": "hashes"}))
    out.append("<h3>Library versions</h3>" +
               table(["library", "version"], sorted(run.library_versions.items())))
    config = json.dumps(run.config.to_dict(), indent=2, ensure_ascii=False, default=str)
    out.append(f"<h3>Configuration</h3><pre>{esc(config)}</pre>")
    return "".join(out) + "</section>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not known"
    return f"{seconds:.1f} s" + (f" (about {seconds / 60:.0f} min)" if seconds >= 90 else "")


def _time(run: RunRecord) -> str:
    items = [("Started (UTC)", f"{run.created:%Y-%m-%d %H:%M:%S}"),
             ("Finished (UTC)", f"{run.finished:%Y-%m-%d %H:%M:%S}" if run.finished else "?"),
             ("Duration", _duration(run.duration_s)),
             ("Activations", f"{run.activations_cached} read from the cache, "
                             f"{run.activations_computed} computed"),
             ("Host", run.host or "?")]
    return '<section id="time"><h2>Time taken</h2>' + key_values(items) + "</section>"


# -- the report ----------------------------------------------------------------------------------
SECTIONS = [("question", "The question"), ("verdicts", "Verdicts"),
            ("charts", "Layer-wise TCAV"), ("table", "Concept × layer"),
            ("effects", "Causal effects"), ("accuracy", "CAV accuracy"),
            ("examples", "Concept examples"), ("statistics", "Statistics"),
            ("provenance", "Model, configuration and provenance"), ("time", "Time taken")]


def render_report(store: Store, run_id: str) -> str:
    """The HTML report of the completed run ``run_id`` (UserInputError for an unknown or
    unfinished run): one page with inline CSS, inline SVG charts and data-URI images."""
    run = completed_run(store, run_id)
    summary = store.summary(run_id)
    if summary.empty:
        raise UserInputError(f"Run {run_id} stored no summary rows; there is nothing to report.")
    effects = _effects(store, run_id)
    summary = with_relevance(summary, effects)
    counter = itertools.count()

    def svg(chart: alt.TopLevelMixin, label: str) -> str:
        return inline_svg(chart, f"chart{next(counter)}", label)

    concepts = list(dict.fromkeys(summary["concept"]))
    question = (f"Does {run.model} rely on {_quoted(concepts)} when it predicts "
                f"{_quoted(list(dict.fromkeys(summary['target'])))}?")
    parts = [_question(run, summary), _verdicts(run, summary, effects),
             _charts(run, summary, effects, svg), _summary_tables(summary),
             _effects_section(effects) if effects is not None else "",
             _accuracy_section(run, summary, store.cav_accuracy(run_id), svg),
             _examples(store, run),
             '<section id="statistics"><h2>Statistics</h2><p>'
             f"{esc(statistics_paragraph(run, summary, effects))}</p></section>",
             _provenance(store, run), _time(run)]
    shown = [(a, t) for a, t in SECTIONS if a != "effects" or effects is not None]
    nav = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in shown)
    version = run.library_versions.get("attnxai", "?")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>attnxai audit report {esc(run_id)}</title><style>{CSS}</style></head>"
            f"<body><main><header><h1>Audit report</h1><p class=\"meta\">Run <code>{esc(run_id)}"
            f"</code> · completed {run.finished or run.created:%Y-%m-%d %H:%M} UTC · attnxai "
            f"{esc(version)}</p><p class=\"lead\">{esc(question)}</p></header>"
            f"<nav><h2>Contents</h2><ol>{nav}</ol></nav>{''.join(parts)}"
            "<footer>Written by attnxai from the audit store; this file is self-contained and "
            "opens offline.</footer></main></body></html>\n")


def write_report(store: Store, run_id: str, path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (atomically: the file appears complete or not at
    all, never over the store or a special file, and nothing is written when the run cannot be
    reported); return the path."""
    out = check_output(path, example="report.html", protect=store_files(store.path))
    write_atomic(out, render_report(store, run_id).encode("utf-8"))
    return out
