"""Tests for attnxai.io.concepts: the on-disk concept-set format, its rules and round trips."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from attnxai.io import concepts
from attnxai.io.concepts import (
    ConceptSet,
    default_concept_root,
    delete_concept_set,
    export_concept_set,
    import_concept_set,
    list_concept_sets,
    load_concept_set,
    save_concept_set,
)
from attnxai.errors import ConceptSetError
from attnxai.io.outputs import OutputError

SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "attnxai" / "resources" / "concept_sets"
SHIPPED = sorted(p.name for p in SHIPPED_ROOT.iterdir() if (p / "concept.json").is_file()) \
    if SHIPPED_ROOT.is_dir() else []


def texts(n: int, stem: str = "sentence") -> list[str]:
    return [f"This is {stem} number {i}." for i in range(n)]


def pool(name: str = "pool", modality: str = "text") -> ConceptSet:
    if modality == "text":
        return ConceptSet(name, "text", texts(100, "random"), "a pool", kind="random_pool")
    return ConceptSet(name, "image", images(100), "a pool", kind="random_pool")


def text_set(name: str = "topic", **kw) -> ConceptSet:
    kw = {"description": "d", **kw}
    return ConceptSet(name=name, modality="text", examples=texts(12, name), **kw)


def images(n: int, offset: int = 0) -> list[Image.Image]:
    return [Image.new("RGB", (4, 4), (i + offset, 0, 0)) for i in range(n)]


def png_files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images(n, 50)):
        img.save(folder / f"img{i}.png")
        paths.append(folder / f"img{i}.png")
    return paths


def write_manifest(root: Path, manifest: dict | bytes, name: str | None = None) -> Path:
    folder = root / (name or manifest["name"])
    folder.mkdir(parents=True, exist_ok=True)
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (folder / "concept.json").write_bytes(raw)
    return folder


def manifest(**overrides) -> dict:
    m = {"format": 1, "name": "topic", "modality": "text", "kind": "concept",
         "description": "d", "default_pool": None, "examples": texts(12)}
    m.update(overrides)
    return {k: v for k, v in m.items() if v is not ...}


def hidden(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- round trips


def test_text_save_load_equal(tmp_path):
    save_concept_set(pool(), tmp_path)
    cs = text_set(default_pool="pool")
    folder = save_concept_set(cs, tmp_path)
    assert folder == tmp_path / "topic"
    loaded = load_concept_set("topic", tmp_path)
    assert loaded == cs and loaded.folder == folder
    assert loaded.version_hash() == cs.version_hash()
    assert hidden(tmp_path) == []


def test_paired_text_round_trip(tmp_path):
    cs = text_set(counterexamples=texts(12, "plain"), paired=True)
    save_concept_set(cs, tmp_path)
    assert load_concept_set(tmp_path / "topic") == cs


def test_version_hash_changes_with_content():
    cs = text_set()
    h = cs.version_hash()
    assert h == text_set().version_hash() and len(h) == 64
    changed = text_set()
    changed.examples[3] = "A different sentence."
    assert changed.version_hash() != h
    described = text_set(description="other")
    assert described.version_hash() != h


def test_image_save_load_and_hash(tmp_path):
    files = png_files(tmp_path / "src", 6)
    cs = ConceptSet("striped", "image", files + images(6), "stripes")
    h = cs.version_hash()
    save_concept_set(cs, tmp_path / "root")
    loaded = load_concept_set("striped", tmp_path / "root")
    assert [p.relative_to(loaded.folder).as_posix() for p in loaded.examples[:2]] == \
        ["examples/0000.png", "examples/0001.png"]
    assert loaded.version_hash() == h
    imgs = loaded.load_images()
    assert len(imgs) == 12 and all(i.mode == "RGB" for i in imgs)
    assert imgs[0].getpixel((0, 0)) == (50, 0, 0)
    # changing one image file's bytes changes the hash
    Image.new("RGB", (4, 4), (9, 9, 9)).save(loaded.examples[5])
    assert load_concept_set("striped", tmp_path / "root").version_hash() != h


def test_image_counterexamples_round_trip(tmp_path):
    cs = ConceptSet("pairs", "image", images(10), "d", counterexamples=images(10, 100), paired=True)
    save_concept_set(cs, tmp_path)
    loaded = load_concept_set("pairs", tmp_path)
    assert loaded.counterexamples[0].parent.name == "counterexamples"
    assert loaded.load_images(counterexamples=True)[3].getpixel((0, 0)) == (103, 0, 0)
    assert loaded.version_hash() == cs.version_hash()


def test_export_import_round_trip(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_concept_set(pool(modality="image"), src)
    save_concept_set(pool(), dst)  # a text pool of the same name in dst: wrong modality
    cs = ConceptSet("striped", "image", images(10), "d", default_pool="pool")
    save_concept_set(cs, src)
    z1 = export_concept_set("striped", tmp_path / "a.zip", src)
    z2 = export_concept_set("striped", tmp_path / "b.zip", src)
    assert z1.read_bytes() == z2.read_bytes()  # deterministic
    with pytest.raises(ConceptSetError, match=r"default_pool 'pool' is a text set; it must be image"):
        import_concept_set(z1, dst)
    assert not (dst / "striped").exists() and hidden(dst) == []
    import_concept_set(export_concept_set("pool", tmp_path / "p.zip", src), dst, overwrite=True)
    imported = import_concept_set(z1, dst)
    assert imported.version_hash() == cs.version_hash()
    with pytest.raises(ConceptSetError, match=r"'striped' already exists"):
        import_concept_set(z1, dst)


def test_import_folder_and_flat_zip(tmp_path):
    save_concept_set(text_set(), tmp_path / "a")
    assert import_concept_set(tmp_path / "a" / "topic", tmp_path / "b") == text_set()
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("concept.json", json.dumps(manifest(name="flat")))
    assert import_concept_set(flat, tmp_path / "b").name == "flat"


@pytest.mark.parametrize("member", ["../topic/concept.json", "/topic/concept.json"])
def test_import_zip_traversal_rejected(tmp_path, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(member, json.dumps(manifest()))
    with pytest.raises(ConceptSetError, match=r"bad\.zip: unsafe member path"):
        import_concept_set(bad, tmp_path / "root")
    assert not (tmp_path / "topic").exists()


def test_import_zip_oversized_member(tmp_path, monkeypatch):
    monkeypatch.setattr(concepts, "MAX_IMAGE_BYTES", 100)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("s/concept.json", json.dumps(manifest(name="s")))
        zf.writestr("s/examples/0000.png", b"\0" * 500)
    with pytest.raises(ConceptSetError, match=r"bad\.zip: s/examples/0000\.png is larger than"):
        import_concept_set(bad, tmp_path / "root")


def test_import_not_a_set(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConceptSetError, match=r"empty holds no concept\.json"):
        import_concept_set(tmp_path / "empty", tmp_path / "root")
    with pytest.raises(ConceptSetError, match=r"neither a concept-set folder nor a \.zip"):
        import_concept_set(tmp_path / "x.tar", tmp_path / "root")


# --------------------------------------------------------------------------- atomic save


def test_failed_validation_leaves_old_set(tmp_path):
    save_concept_set(text_set(), tmp_path)
    bad = text_set()
    bad.examples = bad.examples[:3]
    with pytest.raises(ConceptSetError, match=r"has 3 examples; a concept set needs at least 10"):
        save_concept_set(bad, tmp_path)
    assert load_concept_set("topic", tmp_path) == text_set()
    assert hidden(tmp_path) == []


def test_failure_mid_write_leaves_old_set(tmp_path, monkeypatch):
    save_concept_set(text_set(), tmp_path)

    def write_half(folder, files):
        (folder / "concept.json").write_text("{half")
        raise OSError("disk full")

    monkeypatch.setattr(concepts, "_write_files", write_half)
    new = text_set(description="new")
    with pytest.raises(ConceptSetError, match=r"could not save concept set 'topic'.*disk full"):
        save_concept_set(new, tmp_path)
    assert load_concept_set("topic", tmp_path).description == "d"
    assert hidden(tmp_path) == []


def test_failed_swap_restores_old_set(tmp_path, monkeypatch):
    save_concept_set(text_set(), tmp_path)
    real_rename = os.rename
    calls = []

    def flaky_rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # moving the new folder into place
            raise OSError("interrupted")
        real_rename(a, b)

    monkeypatch.setattr(concepts.os, "rename", flaky_rename)
    with pytest.raises(ConceptSetError, match=r"interrupted"):
        save_concept_set(text_set(description="new"), tmp_path)
    monkeypatch.undo()
    assert load_concept_set("topic", tmp_path).description == "d"
    assert hidden(tmp_path) == []


def test_overwrite_replaces_and_can_be_refused(tmp_path):
    save_concept_set(ConceptSet("s", "image", images(12), "d"), tmp_path)
    save_concept_set(ConceptSet("s", "image", images(10, 7), "d"), tmp_path)
    assert len(list((tmp_path / "s" / "examples").iterdir())) == 10  # no stale files
    with pytest.raises(ConceptSetError, match=r"'s' already exists"):
        save_concept_set(ConceptSet("s", "image", images(10), "d"), tmp_path, overwrite=False)


def test_resave_loaded_image_set_in_place(tmp_path):
    save_concept_set(ConceptSet("s", "image", images(10), "d"), tmp_path)
    cs = load_concept_set("s", tmp_path)
    cs.description = "edited"
    save_concept_set(cs, tmp_path)
    again = load_concept_set("s", tmp_path)
    assert again.description == "edited" and again.load_images()[9].getpixel((0, 0)) == (9, 0, 0)


# --------------------------------------------------------------------------- rule violations


@pytest.mark.parametrize("overrides, message", [
    ({"examples": []}, r"has 0 examples; a concept set needs at least 10"),
    ({"examples": texts(9)}, r"has 9 examples; a concept set needs at least 10"),
    ({"examples": texts(5001)}, r"has 5001 examples; the limit is 5000"),
    ({"kind": "random_pool"}, r"has 12 examples; a random pool needs at least 100"),
    ({"modality": "audio"}, r"modality must be 'text' or 'image', not 'audio'"),
    ({"kind": "baseline"}, r"unknown kind 'baseline'; use 'concept' or 'random_pool'"),
    ({"format": 2}, r"unsupported format 2; this version reads format 1"),
    ({"modality": ...}, r"concept\.json is missing key\(s\): modality"),
    ({"colour": "red"}, r"unknown key\(s\): colour"),
    ({"examples": "one string"}, r"examples must be a list, not str"),
    ({"description": 5}, r"description must be a string, not int"),
    ({"paired": "yes"}, r"paired must be true or false, not 'yes'"),
    ({"examples": texts(11) + [3]}, r"examples\[11\] must be a string, not int"),
    ({"examples": texts(11) + ["   "]}, r"examples\[11\] is empty"),
    ({"examples": texts(11) + ["x" * 2001]}, r"examples\[11\] has 2001 characters; the limit is 2000"),
    ({"counterexamples": texts(11), "paired": True},
     r"paired is true but there are 12 examples and 11 counterexamples"),
    ({"paired": True}, r"paired is true but there are 12 examples and 0 counterexamples"),
    ({"counterexamples": texts(3)}, r"has 3 counterexamples; a concept set needs at least 10"),
    ({"default_pool": "../etc"}, r"invalid concept-set default_pool '\.\./etc'"),
    ({"default_pool": "missing"}, r"default_pool 'missing' does not exist"),
    ({"default_pool": "other"}, r"default_pool 'other' is not a random_pool set"),
    ({"default_pool": "imgpool"}, r"default_pool 'imgpool' is a image set; it must be text"),
])
def test_manifest_rule_messages(tmp_path, overrides, message):
    save_concept_set(text_set("other"), tmp_path)
    save_concept_set(pool("imgpool", "image"), tmp_path)
    write_manifest(tmp_path, manifest(**overrides), "topic")
    with pytest.raises(ConceptSetError, match=message):
        load_concept_set("topic", tmp_path)


def test_random_pool_cannot_have_pool_or_counterexamples():
    with pytest.raises(ConceptSetError, match=r"random_pool set cannot have a default_pool"):
        ConceptSet("p", "text", texts(100), kind="random_pool", default_pool="x").validate()


def test_non_utf8_manifest(tmp_path):
    write_manifest(tmp_path, b'{"name": "caf\xe9"}', "topic")
    with pytest.raises(ConceptSetError, match=r"concept\.json is not valid UTF-8: byte 0xe9 at byte offset 13"):
        load_concept_set("topic", tmp_path)


def test_invalid_json_manifest(tmp_path):
    write_manifest(tmp_path, b'{"name": "topic",\n "examples": [}', "topic")
    with pytest.raises(ConceptSetError, match=r"is not valid JSON: .* at line 2"):
        load_concept_set("topic", tmp_path)
    write_manifest(tmp_path, b"[1, 2]", "topic")
    with pytest.raises(ConceptSetError, match=r"must hold a JSON object, not list"):
        load_concept_set("topic", tmp_path)


def test_oversized_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(concepts, "MAX_MANIFEST_BYTES", 100)
    write_manifest(tmp_path, manifest(), "topic")
    with pytest.raises(ConceptSetError, match=r"concept\.json is .* MB; the manifest limit is"):
        load_concept_set("topic", tmp_path)


@pytest.mark.parametrize("name", ["../evil", "a/b", "Upper", ".hidden", "", "x" * 65, "a.b"])
def test_bad_names_rejected(tmp_path, name):
    with pytest.raises(ConceptSetError, match=r"invalid concept-set name|concept-set folder not found"):
        load_concept_set(name, tmp_path)
    with pytest.raises(ConceptSetError, match=r"invalid concept-set name"):
        save_concept_set(text_set(name), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_manifest_name_with_traversal(tmp_path):
    write_manifest(tmp_path, manifest(name="../../evil"), "topic")
    with pytest.raises(ConceptSetError, match=r"invalid concept-set name '\.\./\.\./evil'"):
        load_concept_set("topic", tmp_path)


def test_manifest_name_must_match_folder(tmp_path):
    write_manifest(tmp_path, manifest(name="other"), "topic")
    with pytest.raises(ConceptSetError, match=r"manifest name 'other' differs from its folder name 'topic'"):
        load_concept_set("topic", tmp_path)


def test_unknown_name_lists_available(tmp_path):
    save_concept_set(text_set("alpha"), tmp_path)
    with pytest.raises(ConceptSetError, match=r"no concept set named 'beta' in .*; available: alpha"):
        load_concept_set("beta", tmp_path)


def image_manifest(tmp_path: Path, n: int = 10, **overrides) -> Path:
    """An image set folder ``img`` with n valid PNG examples; returns the folder."""
    folder = tmp_path / "img"
    for i, img in enumerate(images(n)):
        (folder / "examples").mkdir(parents=True, exist_ok=True)
        img.save(folder / "examples" / f"{i}.png")
    m = manifest(name="img", modality="image", examples=[f"examples/{i}.png" for i in range(n)])
    m.update(overrides)
    write_manifest(tmp_path, m)
    return folder


def test_image_manifest_loads(tmp_path):
    image_manifest(tmp_path)
    assert len(load_concept_set("img", tmp_path).load_images()) == 10


@pytest.mark.parametrize("entry, message", [
    ("../secret.png", r"examples\[9\] path '\.\./secret\.png' escapes the set folder"),
    ("/etc/passwd.png", r"examples\[9\] path '/etc/passwd\.png' escapes the set folder"),
    ("examples/../../x.png", r"escapes the set folder"),
    ("other/9.png", r"must be relative and under examples/"),
    ("examples\\9.png", r"escapes the set folder"),
    (7, r"examples\[9\] must be a relative path string, not int"),
])
def test_image_path_traversal(tmp_path, entry, message):
    examples = [f"examples/{i}.png" for i in range(9)] + [entry]
    image_manifest(tmp_path, examples=examples)
    with pytest.raises(ConceptSetError, match=message):
        load_concept_set("img", tmp_path)


def test_image_symlink_escape(tmp_path):
    folder = image_manifest(tmp_path)
    outside = tmp_path / "outside.png"
    images(1)[0].save(outside)
    (folder / "examples" / "9.png").unlink()
    (folder / "examples" / "9.png").symlink_to(outside)
    with pytest.raises(ConceptSetError, match=r"examples\[9\] path 'examples/9\.png' resolves outside"):
        load_concept_set("img", tmp_path)


def test_image_file_problems(tmp_path, monkeypatch):
    folder = image_manifest(tmp_path)
    (folder / "examples" / "3.png").write_bytes(b"not a png")
    with pytest.raises(ConceptSetError, match=r"'img': examples\[3\] \(3\.png\) is not an image file"):
        load_concept_set("img", tmp_path)
    data = io.BytesIO()
    Image.new("RGB", (32, 32)).save(data, format="PNG")
    (folder / "examples" / "3.png").write_bytes(data.getvalue()[:-30])
    with pytest.raises(ConceptSetError, match=r"examples\[3\] \(3\.png\) is corrupt or truncated"):
        load_concept_set("img", tmp_path)
    Image.new("RGB", (4, 4)).save(folder / "examples" / "3.png", format="GIF")
    with pytest.raises(ConceptSetError, match=r"is a GIF image; allowed formats: PNG, JPEG, BMP, WEBP"):
        load_concept_set("img", tmp_path)
    (folder / "examples" / "3.png").unlink()
    with pytest.raises(ConceptSetError, match=r"examples\[3\]: image file not found"):
        load_concept_set("img", tmp_path)
    images(1)[0].save(folder / "examples" / "3.png")
    monkeypatch.setattr(concepts, "MAX_IMAGE_BYTES", 20)
    with pytest.raises(ConceptSetError, match=r"examples\[0\] \(0\.png\) is .* MB; the limit is"):
        load_concept_set("img", tmp_path)


def test_image_wrong_extension(tmp_path):
    image_manifest(tmp_path, examples=[f"examples/{i}.png" for i in range(9)] + ["examples/a.txt"])
    with pytest.raises(ConceptSetError, match=r"examples\[9\] \(a\.txt\) is not a PNG/JPEG/BMP/WebP"):
        load_concept_set("img", tmp_path)


def test_save_rejects_bad_in_memory_examples(tmp_path):
    (tmp_path / "junk.png").write_text("junk")
    cs = ConceptSet("s", "image", images(9) + [tmp_path / "junk.png"], "d")
    with pytest.raises(ConceptSetError, match=r"examples\[9\] \(junk\.png\) is not an image file"):
        save_concept_set(cs, tmp_path / "root")
    with pytest.raises(ConceptSetError, match=r"examples\[9\] must be an image path or PIL image"):
        save_concept_set(ConceptSet("s", "image", images(9) + ["x.png"], "d"), tmp_path / "root")
    assert not (tmp_path / "root" / "s").exists()


def test_load_images_on_text_set():
    with pytest.raises(ConceptSetError, match=r"load_images needs an image set; this is a text set"):
        text_set().load_images()


# --------------------------------------------------------------------------- list, delete, root


def test_list_concept_sets(tmp_path):
    save_concept_set(pool(), tmp_path)
    save_concept_set(text_set("zeta", default_pool="pool"), tmp_path)
    save_concept_set(ConceptSet("alpha", "image", images(10), "d"), tmp_path)
    write_manifest(tmp_path, b"{broken", "broken")
    (tmp_path / ".topic.tmp-abc").mkdir()
    infos = list_concept_sets(tmp_path)
    assert [i.name for i in infos] == ["alpha", "broken", "pool", "zeta"]
    broken = infos[1]
    assert broken.error and "not valid JSON" in broken.error
    assert [i.name for i in list_concept_sets(tmp_path, modality="text")] == ["pool", "zeta"]
    assert [i.name for i in list_concept_sets(tmp_path, kind="random_pool")] == ["pool"]
    zeta = infos[3]
    assert (zeta.n_examples, zeta.default_pool, zeta.error) == (12, "pool", None)
    assert list_concept_sets(tmp_path / "missing") == []


def test_delete_concept_set(tmp_path):
    save_concept_set(pool(), tmp_path)
    save_concept_set(text_set(default_pool="pool"), tmp_path)
    with pytest.raises(ConceptSetError, match=r"'pool' is the default_pool of topic"):
        delete_concept_set("pool", tmp_path)
    delete_concept_set("topic", tmp_path)
    delete_concept_set("pool", tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConceptSetError, match=r"no concept set named 'pool'"):
        delete_concept_set("pool", tmp_path)
    with pytest.raises(ConceptSetError, match=r"invalid concept-set name"):
        delete_concept_set("..", tmp_path)


def test_delete_force(tmp_path):
    save_concept_set(pool(), tmp_path)
    save_concept_set(text_set(default_pool="pool"), tmp_path)
    delete_concept_set("pool", tmp_path, force=True)
    assert [i.name for i in list_concept_sets(tmp_path)] == ["topic"]


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNXAI_CONCEPTS", str(tmp_path))
    assert default_concept_root() == tmp_path
    save_concept_set(text_set())
    assert load_concept_set("topic") == text_set()
    monkeypatch.delenv("ATTNXAI_CONCEPTS")
    monkeypatch.setenv("ATTNXAI_HOME", str(tmp_path / "home"))
    assert default_concept_root() == tmp_path / "home" / "concept_sets"  # never the checkout


def test_user_sets_beside_read_only_shipped_sets(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.delenv("ATTNXAI_CONCEPTS", raising=False)
    monkeypatch.setenv("ATTNXAI_HOME", str(home))
    user = home / "concept_sets"
    assert concepts.concept_roots() == [user, SHIPPED_ROOT]
    # A new set goes to the user's folder, and may use a shipped random pool.
    save_concept_set(text_set("my-topic", default_pool="random-text"))
    assert (user / "my-topic" / "concept.json").is_file()
    assert not (SHIPPED_ROOT / "my-topic").exists()
    assert load_concept_set("my-topic").default_pool == "random-text"
    infos = {i.name: i for i in list_concept_sets()}
    assert infos["my-topic"].source == "yours" and not infos["my-topic"].read_only
    assert infos["sports-words"].source == "shipped" and infos["sports-words"].read_only
    assert {n for n, i in infos.items() if i.source == "shipped"} == set(SHIPPED)
    # Shipped sets are read-only: no save into their folder, no delete, no shadowing name.
    with pytest.raises(ConceptSetError, match="shipped with attnxai are read-only"):
        save_concept_set(text_set("other"), SHIPPED_ROOT)
    with pytest.raises(ConceptSetError, match="read-only"):
        delete_concept_set("sports-words")
    with pytest.raises(ConceptSetError, match="shipped with attnxai .read-only.; save yours"):
        save_concept_set(text_set("sports-words", default_pool="random-text"))
    assert (SHIPPED_ROOT / "sports-words" / "concept.json").is_file()
    # A copy under another name is the user's, and deleting it is allowed.
    copy = load_concept_set("sports-words")
    copy.name, copy.folder = "my-sports", None
    save_concept_set(copy)
    assert {i.name: i.source for i in list_concept_sets()}["my-sports"] == "yours"
    delete_concept_set("my-sports")
    delete_concept_set("my-topic")
    assert sorted(p.name for p in user.iterdir()) == []


def test_export_to_missing_folder(tmp_path):
    save_concept_set(text_set(), tmp_path)
    with pytest.raises(OutputError, match=r"folder .*nowhere does not exist"):
        export_concept_set("topic", tmp_path / "nowhere" / "t.zip", tmp_path)


# --------------------------------------------------------------------------- shipped sets


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_set_valid(name):
    cs = load_concept_set(name, SHIPPED_ROOT)
    assert cs.description.strip()
    if cs.kind == "concept" and cs.modality == "text":
        assert len(cs.examples) >= 40 and cs.default_pool == "random-text"
    assert len(set(cs.examples)) == len(cs.examples)


def test_shipped_text_sets_present():
    assert {"sports-words", "finance-words", "negation", "weather", "random-text"} <= set(SHIPPED)
    assert len(load_concept_set("random-text", SHIPPED_ROOT).examples) >= 300
    negation = load_concept_set("negation", SHIPPED_ROOT)
    assert negation.paired and len(negation.counterexamples) == len(negation.examples)
    assert not [i for i in list_concept_sets(SHIPPED_ROOT) if i.error]
