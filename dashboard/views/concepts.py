"""Concept studio: list, create, edit, duplicate, delete, import and export concept sets.

Sets are saved in the on-disk format (see docs/concept_sets.md) in the user's folder
(`$ATTNXAI_HOME/concept_sets`); the sets shipped with attnxai are listed beside them, marked
"shipped", and are read-only (duplicate one to edit a copy). Each saved version is recorded in
the audit store, so a run can name exactly what it used."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from attnxai.io.concepts import (
    IMAGE_FORMATS,
    MIN_EXAMPLES,
    MIN_POOL_EXAMPLES,
    ConceptSet,
    concept_roots,
    delete_concept_set,
    export_concept_set,
    import_concept_set,
    list_concept_sets,
    load_concept_set,
    save_concept_set,
)
from attnxai.io.datasets import verify_image_bytes
from attnxai.errors import UserInputError
from ui.common import (DEMO_AUDITS, concept_root, download_button, esc, get_adapter, get_dataset,
                       get_store, guard, item_text)
from ui.render import thumbnail

ss = st.session_state
NEW = "New concept set…"
NEG_POOL = "A random pool of the same kind"
NEG_COUNTER = "Its own counter-examples (the same inputs without the concept)"
NEG_RELATIVE = "The other concepts under test"
NEGATIVES = [NEG_COUNTER, NEG_POOL, NEG_RELATIVE]

st.title("Concept studio")
st.caption("A concept is a set of examples that show it. Its CAVs are trained against negatives "
           "of the same kind: counter-examples (matched pairs) work best, then a random pool of "
           "the same kind of input. Saved sets are versioned in the audit store.")

root = concept_root()
for key in ("cs_flash", "cs_error"):
    if ss.get(key):
        (st.success if key == "cs_flash" else st.error)(esc(ss.pop(key)))

# A built-in's modality is known without loading it; another model is loaded (once) to ask.
default_modality = DEMO_AUDITS.get(ss.get("spec"), {}).get("modality")
if default_modality is None:
    try:
        default_modality = get_adapter().modality
    except Exception:  # noqa: BLE001 - the studio works without a loadable model
        default_modality = "text"
modality = st.segmented_control("Modality", ["text", "image"], default=default_modality,
                                key="w_cs_modality") or default_modality

infos = list_concept_sets()  # yours, then the shipped ones
taken = {i.name for i in infos}  # every name in use, of any modality (a folder each)
source_of = {i.name: i.source for i in infos}
shown = [i for i in infos if i.modality == modality or i.error]
pools = [i.name for i in infos if i.modality == modality and i.kind == "random_pool" and not i.error]


def _short(text: str, n: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _examples(i) -> str:
    if not i.n_counterexamples:
        return str(i.n_examples)
    return f"{i.n_examples} + {i.n_counterexamples} {'paired' if i.paired else 'counter'}"


table = pd.DataFrame([{
    "name": i.name, "source": i.source, "kind": i.kind.replace("_", " ") if i.kind else "",
    "examples": _examples(i), "random pool": i.default_pool or "",
    "description": _short(i.description, 36), "problem": i.error or ""} for i in shown])
if table.empty:
    st.info(f"No {modality} concept sets yet. Create one below or import a zip.")
else:
    cols = [c for c in table.columns if c != "problem" or table["problem"].any()]
    # Widths that fit the page at 1280 px without sideways scrolling; long descriptions are
    # cut (the whole one shows when the set is opened below).
    st.dataframe(table[cols], hide_index=True, width="stretch", height=min(38 * len(table) + 40, 330),
                 column_config={
                     "name": st.column_config.TextColumn(width=125),
                     "source": st.column_config.TextColumn(
                         width=60, help="yours: in your folder; shipped: with attnxai, read-only"),
                     "kind": st.column_config.TextColumn(width=85),
                     "examples": st.column_config.TextColumn(
                         width=105, help="examples + counter-examples (paired: matched pairs)"),
                     "random pool": st.column_config.TextColumn(width=105),
                     "description": st.column_config.TextColumn(
                         width=210, help="The start of each description; open the set below "
                                         "for all of it."),
                     "problem": st.column_config.TextColumn(width="medium")})
st.caption(f"Your sets are saved in {esc(root)}; the shipped sets are read-only (duplicate one to "
           "edit a copy).")

names = [i.name for i in shown if not i.error]
if ss.get("w_cs_pick") not in (NEW, *names):
    ss.pop("w_cs_pick", None)  # e.g. a set of the other modality, or one just deleted
pick = st.selectbox("Open a set", [NEW, *names], key="w_cs_pick",
                    format_func=lambda n: n if n == NEW or source_of.get(n) != "shipped"
                    else f"{n} (shipped, read-only)")
is_new = pick == NEW
nonce = ss.setdefault("cs_nonce", 0)
fid = f"{modality}:{pick}:{nonce}"

cs: ConceptSet | None = None
if not is_new:
    with guard("loading the concept set"):
        cs = load_concept_set(pick)
    if cs is None:
        st.stop()
read_only = cs is not None and source_of.get(pick) == "shipped"


def _k(name: str) -> str:
    return f"cs_{name}_{fid}"


# -- header fields ------------------------------------------------------------------------------
st.subheader("New concept set" if is_new else f"Edit {esc(pick)}")
c1, c2 = st.columns([1, 2], gap="large")
with c1:
    name = st.text_input("Name", value="" if is_new else cs.name, key=_k("name"), disabled=not is_new,
                         help="Lowercase letters, digits, - and _ (it is also the folder name).",
                         placeholder="e.g. medical-terms").strip()
    kind = st.radio("Kind", ["concept", "random_pool"], horizontal=True, key=_k("kind"),
                    index=0 if is_new or cs.kind == "concept" else 1,
                    format_func=lambda k: "concept" if k == "concept" else "random pool",
                    help="A random pool supplies negatives and random concepts for other sets "
                         f"(at least {MIN_POOL_EXAMPLES} examples).")
with c2:
    description = st.text_area("Description", value="" if is_new else cs.description,
                               key=_k("desc"), height=110,
                               placeholder="What the examples show and how they were collected.")

negatives, pool, paired = None, None, False
if kind == "concept":
    n1, n2 = st.columns([2, 1], gap="large")
    with n1:
        default_neg = NEG_COUNTER if (cs and cs.counterexamples) else NEG_POOL
        negatives = st.radio("Negatives for its CAVs", NEGATIVES, index=NEGATIVES.index(default_neg),
                             key=_k("neg"))
        if negatives == NEG_RELATIVE:
            st.caption("Relative negatives are chosen per audit (Run audit → negatives: relative). "
                       "The random pool below still supplies the random-concept baseline.")
    with n2:
        if not pools:
            st.warning(f"No {modality} random pool exists yet: create or import one first "
                       "(kind: random pool).")
        else:
            current_pool = cs.default_pool if cs and cs.default_pool in pools else pools[0]
            pool = st.selectbox("Random pool (baseline and random negatives)", pools,
                                index=pools.index(current_pool), key=_k("pool"))
        if negatives == NEG_COUNTER:
            paired = st.checkbox("Matched pairs: counter-example i is example i without the concept",
                                 value=bool(cs.paired) if cs else True, key=_k("paired"))


# -- examples -----------------------------------------------------------------------------------
def _dataset_picker(target_key: str, label: str) -> None:
    """A table of the current dataset; selected rows can be added to a list of examples."""
    try:
        ds = get_dataset(modality=modality)
    except Exception:  # noqa: BLE001
        ds = None
    if ds is None or ds.modality != modality:
        st.caption("Pick a dataset of this modality on Setup to add examples from it.")
        return
    df = pd.DataFrame({"input": [item_text(x) for x in ds.items]})
    if ds.labels is not None:
        df["label"] = ds.labels
    sel = st.dataframe(df, on_select="rerun", selection_mode="multi-row", key=f"{target_key}_tbl",
                       height=240, width="stretch")
    rows = list(sel.selection.rows) if sel is not None and hasattr(sel, "selection") else []
    if st.button(f"Add {len(rows)} selected row(s) {label}", disabled=not rows,
                 key=f"{target_key}_add"):
        ss.setdefault(target_key, []).extend(ds.items[i] for i in rows)
        st.rerun()


def _text_list(which: str, initial: list[str]) -> list[str]:
    key = _k(which)
    if key not in ss:
        ss[key] = "\n".join(initial)
    added = ss.pop(_k(which + "_rows"), None)
    if added:
        ss[key] = "\n".join([*[l for l in ss[key].splitlines() if l.strip()],
                             *[str(x) for x in added]])
    text = st.text_area(f"{which.capitalize()} — one per line (type or paste)", key=key, height=220)
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    st.caption(f"{len(lines)} {which}")
    with st.expander(f"Add {which} from the dataset"):
        _dataset_picker(_k(which + "_rows"), f"to the {which}")
    return lines


def _image_list(which: str, initial: list) -> tuple[list, list[str]]:
    """Current images (kept files + dataset picks + uploads) and upload problems."""
    problems: list[str] = []
    picked = ss.setdefault(_k(which + "_rows"), [])
    items = [*initial, *picked]
    remove = st.multiselect(f"Remove {which}", list(range(len(items))), key=_k(which + "_rm"),
                            format_func=lambda i: f"#{i}") if items else []
    kept = [x for i, x in enumerate(items) if i not in set(remove)]
    ups = st.file_uploader(f"Upload {which} (PNG, JPEG, BMP or WebP; many at once)",
                           type=["png", "jpg", "jpeg", "bmp", "webp"], accept_multiple_files=True,
                           key=_k(which + "_up"))
    new = []
    for up in ups or []:
        data = up.getvalue()
        try:
            verify_image_bytes(data, up.name, IMAGE_FORMATS)
            new.append(Image.open(io.BytesIO(data)))
        except UserInputError as exc:
            problems.append(str(exc))
    allx = [*kept, *new]
    st.caption(f"{len(allx)} {which}" + (f" ({len(new)} uploaded, not saved yet)" if new else ""))
    if allx:
        grid = st.columns(12)
        for i, x in enumerate(allx[:24]):
            with grid[i % 12]:
                try:
                    st.image(thumbnail(x, 64), caption=f"#{i}", width=56)
                except UserInputError:
                    st.caption(f"#{i} unreadable")
        if len(allx) > 24:
            st.caption(f"… and {len(allx) - 24} more")
    with st.expander(f"Add {which} from the dataset"):
        _dataset_picker(_k(which + "_rows"), f"to the {which}")
    return allx, problems


problems: list[str] = []
want_counter = kind == "concept" and negatives == NEG_COUNTER
tabs = st.tabs(["Examples", "Counter-examples"] if want_counter else ["Examples"])
with tabs[0]:
    if modality == "text":
        examples = _text_list("examples", list(cs.examples) if cs else [])
    else:
        examples, p = _image_list("examples", list(cs.examples) if cs else [])
        problems += p
counterexamples: list = []
if want_counter:
    with tabs[1]:
        initial = list(cs.counterexamples) if cs else []
        if modality == "text":
            counterexamples = _text_list("counterexamples", initial)
        else:
            counterexamples, p = _image_list("counterexamples", initial)
            problems += p

# -- validation as you go -----------------------------------------------------------------------
candidate = ConceptSet(name=name, modality=modality, examples=examples, description=description,
                       kind=kind, default_pool=pool if kind == "concept" else None,
                       counterexamples=counterexamples if want_counter else [],
                       paired=bool(paired) if want_counter else False)
valid = False
if problems:
    st.error("Some uploads are not usable images; remove them before saving:\n\n" +
             "\n".join(f"- {esc(p)}" for p in problems))
elif not name:
    st.info("Give the set a name.")
elif is_new and name in taken:
    shipped = source_of.get(name) == "shipped"
    st.warning(f"A {'shipped ' if shipped else ''}set named {esc(name)} already exists: "
               + ("choose another name." if shipped else "open it to edit, or choose another name."))
elif read_only:
    st.info(f"{esc(pick)} is shipped with attnxai and read-only. Duplicate it (below) to edit a "
            "copy in your folder.", icon=":material/lock:")
elif cs is not None and candidate == cs:
    st.info("No changes to save.", icon=":material/check:")
else:
    try:
        candidate.validate(concept_roots(), check_files=False)
        valid = True
        need = MIN_POOL_EXAMPLES if kind == "random_pool" else MIN_EXAMPLES
        st.success(f"Ready to save: {len(examples)} examples (at least {need} needed)"
                   + (f", {len(counterexamples)} counter-examples" if want_counter else "")
                   + (f", random pool {esc(pool)}" if pool else "") + ".")
    except UserInputError as exc:
        st.warning(esc(exc))


def _save(cs_new: ConceptSet, overwrite: bool) -> None:
    """Save into your folder, record the version, and open the saved set (whose form then
    matches what is stored: "No changes to save")."""
    try:
        save_concept_set(cs_new, overwrite=overwrite)
        saved = load_concept_set(cs_new.name)
        version = get_store().record_concept_set(saved)
        ss["cs_flash"] = f"Saved {cs_new.name} (version {version[:12]})."
        ss["w_cs_pick"] = cs_new.name
        ss["cs_nonce"] = ss.get("cs_nonce", 0) + 1  # fresh widgets, filled from the saved set
    except UserInputError as exc:
        ss["cs_error"] = str(exc)


st.button("Save concept set", type="primary", disabled=not valid, on_click=_save,
          args=(candidate, not is_new), icon=":material/save:")

# -- actions on a stored set --------------------------------------------------------------------
if not is_new:
    st.divider()
    a1, a2, a3 = st.columns(3, gap="large")
    with a1:
        st.markdown("**Duplicate**")
        copy = st.text_input("New name", value=f"{pick}-copy"[:64], key=_k("dup")).strip()

        def _duplicate() -> None:
            try:
                src = load_concept_set(pick)
                src.name, src.folder = copy, None
                if copy in taken:
                    raise UserInputError(f"A set named {copy!r} already exists.")
                _save(src, overwrite=False)
            except UserInputError as exc:
                ss["cs_error"] = str(exc)

        st.button("Duplicate", on_click=_duplicate, disabled=not copy)
    with a2:
        st.markdown("**Export**")
        with guard("exporting the set"):
            with tempfile.TemporaryDirectory() as tmp:
                data = export_concept_set(pick, Path(tmp) / f"{pick}.zip").read_bytes()
            download_button(st, "Download as zip", data, file_name=f"{pick}.zip",
                            mime="application/zip")
    with a3:
        st.markdown("**Delete**")
        sure = st.checkbox(f"Yes, delete {esc(pick)}", key=_k("sure"), disabled=read_only)

        def _delete() -> None:
            try:
                delete_concept_set(pick)
                ss["cs_flash"] = f"Deleted {pick}."
                ss["w_cs_pick"] = NEW
            except UserInputError as exc:
                ss["cs_error"] = str(exc)

        st.button("Delete", on_click=_delete, disabled=not sure or read_only,
                  icon=":material/delete:")
        if read_only:
            st.caption("Shipped sets cannot be deleted.")
    with st.expander("Versions recorded in the audit store"):
        with guard("reading the versions"):
            versions = get_store().concept_versions(pick)
            if versions.empty:
                st.caption("No version recorded yet (sets are recorded when saved here or used "
                           "by an audit).")
            else:
                st.dataframe(versions[["version_hash", "n_examples", "n_counterexamples",
                                       "paired", "default_pool", "recorded"]],
                             hide_index=True, width="stretch")

# -- import -------------------------------------------------------------------------------------
st.divider()
st.subheader("Import a set")
up = st.file_uploader("A concept-set zip (as exported here or by `attnxai`)", type=["zip"],
                      key=f"cs_import_{nonce}")
overwrite = st.checkbox("Replace a set of the same name", key="cs_import_over")
if up is not None and st.button("Import", icon=":material/upload:"):
    with guard("importing the set"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "import.zip"
            path.write_bytes(up.getvalue())
            imported = import_concept_set(path, overwrite=overwrite)  # into your folder
        version = get_store().record_concept_set(imported)
        ss["cs_flash"] = f"Imported {imported.name} (version {version[:12]})."
        ss["cs_nonce"] = ss.get("cs_nonce", 0) + 1
        st.rerun()
