"""Tests for attnxai.io.datasets: text and image dataset loading, and every bad-input message."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnxai.io import datasets as data
from attnxai.io.datasets import (
    DATA_DIR,
    Dataset,
    demo_dataset,
    load_dataset,
    load_image,
    load_image_dataset,
    load_text_dataset,
)
from attnxai.errors import DataError


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def png_bytes(color=(200, 30, 30), size=(8, 8), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- CSV


def test_csv_default_columns(tmp_path):
    ds = load_text_dataset(write(tmp_path / "d.csv", 'id,text,label\n1,"Hello, world",a\n2,Bye,b\n'))
    assert ds.items == ["Hello, world", "Bye"]
    assert ds.labels == ["a", "b"]
    assert ds.modality == "text" and len(ds) == 2 and ds.name == "d"


def test_csv_only_string_column_is_text(tmp_path):
    ds = load_text_dataset(write(tmp_path / "d.csv", "id,sentence,score\n1,A cat,0.5\n2,A dog,1\n"))
    assert ds.items == ["A cat", "A dog"] and ds.labels is None


def test_csv_explicit_columns(tmp_path):
    path = write(tmp_path / "d.csv", "title,body,topic\nT1,B1,x\nT2,B2,y\n")
    ds = load_text_dataset(path, text_column="body", label_column="topic")
    assert ds.items == ["B1", "B2"] and ds.labels == ["x", "y"]


def test_csv_ambiguous_text_column_lists_columns(tmp_path):
    path = write(tmp_path / "d.csv", "title,body\nT1,B1\n")
    with pytest.raises(DataError, match=r"d\.csv.*cannot tell which column.*title, body"):
        load_text_dataset(path)


def test_csv_missing_columns_list_available(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nhi,a\n")
    with pytest.raises(DataError, match=r"text column 'body' not found; available columns: text, label"):
        load_text_dataset(path, text_column="body")
    with pytest.raises(DataError, match=r"label column 'topic' not found; available columns: text, label"):
        load_text_dataset(path, label_column="topic")


def test_csv_empty_text_row_names_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\n  ,b\n")
    with pytest.raises(DataError, match=r"d\.csv: line 3 has an empty text in column 'text'"):
        load_text_dataset(path)


def test_csv_empty_label_names_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\nalso fine,\n")
    with pytest.raises(DataError, match=r"line 3 has an empty label in column 'label'"):
        load_text_dataset(path)


def test_csv_blank_lines_skipped_and_quoted_newlines(tmp_path):
    ds = load_text_dataset(write(tmp_path / "d.csv", 'text\n"two\nlines"\n\nnext\n'))
    assert ds.items == ["two\nlines", "next"]


def test_csv_wrong_field_count(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nok,a\nbad,b,extra\n")
    with pytest.raises(DataError, match=r"line 3 has 3 fields but the header has 2"):
        load_text_dataset(path)


def test_csv_header_only_is_empty(tmp_path):
    with pytest.raises(DataError, match=r"d\.csv contains no texts"):
        load_text_dataset(write(tmp_path / "d.csv", "text,label\n"))


def test_csv_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"d\.csv is empty"):
        load_text_dataset(write(tmp_path / "d.csv", ""))


def test_non_utf8_names_line_and_offset(tmp_path):
    path = write(tmp_path / "d.csv", b"text\nok\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"d\.csv is not valid UTF-8: byte 0xe9 at byte offset 11 \(line 3\)"):
        load_text_dataset(path)


def test_utf8_bom_is_accepted(tmp_path):
    ds = load_text_dataset(write(tmp_path / "d.csv", b"\xef\xbb\xbftext\nna\xc3\xafve\n"))
    assert ds.items == ["na\u00efve"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*nope\.csv"):
        load_text_dataset(tmp_path / "nope.csv")


def test_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"d\.xlsx: unsupported text file type '\.xlsx'"):
        load_text_dataset(write(tmp_path / "d.xlsx", "x"))


def test_file_size_limit(tmp_path):
    path = write(tmp_path / "d.txt", "a line\n" * 1000)
    with pytest.raises(DataError, match=r"d\.txt is 0\.0 MB, over the 0 MB limit"):
        load_text_dataset(path, max_bytes=100)


# --------------------------------------------------------------------------- TXT, JSONL


def test_txt_skips_blank_lines(tmp_path):
    ds = load_text_dataset(write(tmp_path / "d.txt", "first\n\n  \nsecond\r\nthird"))
    assert ds.items == ["first", "second", "third"] and ds.labels is None


def test_txt_only_blank_lines_is_empty(tmp_path):
    with pytest.raises(DataError, match=r"d\.txt contains no texts"):
        load_text_dataset(write(tmp_path / "d.txt", "\n \n"))


def test_jsonl_text_and_label(tmp_path):
    lines = [{"text": "a", "label": 1}, {"text": "b", "label": "x"}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(o) for o in lines) + "\n\n")
    ds = load_text_dataset(path)
    assert ds.items == ["a", "b"] and ds.labels == ["1", "x"]


def test_jsonl_single_string_key_is_text(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"id": 1, "body": "hello"}\n{"id": 2, "body": "bye"}\n')
    assert load_text_dataset(path).items == ["hello", "bye"]


def test_jsonl_malformed_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n\n{"text": "b"\n')
    with pytest.raises(DataError, match=r"d\.jsonl: line 3 is not valid JSON"):
        load_text_dataset(path)


def test_jsonl_non_object_line(tmp_path):
    with pytest.raises(DataError, match=r"line 2 must be a JSON object, not list"):
        load_text_dataset(write(tmp_path / "d.jsonl", '{"text": "a"}\n["b"]\n'))


def test_jsonl_missing_key_names_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(DataError, match=r"line 2 has no key 'text'; keys there: txt"):
        load_text_dataset(path)


def test_jsonl_empty_and_null_text(tmp_path):
    with pytest.raises(DataError, match=r"line 2 has an empty text"):
        load_text_dataset(write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": " "}\n'))
    with pytest.raises(DataError, match=r"line 1: text 'text' must be a string, not NoneType"):
        load_text_dataset(write(tmp_path / "e.jsonl", '{"text": null}\n'))


def test_jsonl_missing_column_lists_keys(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "y": "b"}\n')
    with pytest.raises(DataError, match=r"label column 'label' not found; available columns: text, y"):
        load_text_dataset(path, label_column="label")


# --------------------------------------------------------------------------- images


def test_image_folder_unlabelled(tmp_path):
    write(tmp_path / "imgs" / "b.png", png_bytes())
    write(tmp_path / "imgs" / "a.png", png_bytes())
    write(tmp_path / "imgs" / ".DS_Store", b"junk")
    ds = load_image_dataset(tmp_path / "imgs")
    assert [p.name for p in ds.items] == ["a.png", "b.png"]
    assert ds.labels is None and ds.modality == "image"


def test_image_folder_class_subfolders(tmp_path):
    write(tmp_path / "imgs" / "cat" / "1.png", png_bytes())
    write(tmp_path / "imgs" / "dog" / "1.png", png_bytes())
    write(tmp_path / "imgs" / "dog" / "2.png", png_bytes())
    ds = load_image_dataset(tmp_path / "imgs")
    assert ds.labels == ["cat", "dog", "dog"]


def test_image_folder_mixed_layout(tmp_path):
    write(tmp_path / "imgs" / "cat" / "1.png", png_bytes())
    write(tmp_path / "imgs" / "2.png", png_bytes())
    with pytest.raises(DataError, match=r"some images are in class subfolders and some are not"):
        load_image_dataset(tmp_path / "imgs")


def test_corrupt_image_named(tmp_path):
    write(tmp_path / "imgs" / "ok.png", png_bytes())
    write(tmp_path / "imgs" / "bad.png", png_bytes(size=(32, 32))[:-30])
    with pytest.raises(DataError, match=r"bad\.png is corrupt or truncated"):
        load_image_dataset(tmp_path / "imgs")


def test_non_image_file_named_and_skippable(tmp_path):
    write(tmp_path / "imgs" / "ok.png", png_bytes())
    write(tmp_path / "imgs" / "notes.txt", "hello")
    write(tmp_path / "imgs" / "fake.jpg", "not really a jpeg")
    # Names and sizes are checked before any file is read, so the .txt is refused first.
    with pytest.raises(DataError, match=r"notes\.txt is not an image file"):
        load_image_dataset(tmp_path / "imgs")
    (tmp_path / "imgs" / "notes.txt").unlink()
    with pytest.raises(DataError, match=r"fake\.jpg is not an image file"):
        load_image_dataset(tmp_path / "imgs")
    write(tmp_path / "imgs" / "notes.txt", "hello")
    ds = load_image_dataset(tmp_path / "imgs", skip_invalid=True)
    assert [p.name for p in ds.items] == ["ok.png"]
    assert ds.skipped == ["fake.jpg", "notes.txt"]


def test_image_size_limit(tmp_path):
    write(tmp_path / "imgs" / "big.png", png_bytes(size=(64, 64)))
    with pytest.raises(DataError, match=r"big\.png is .* MB, over the .* MB per-image limit"):
        load_image_dataset(tmp_path / "imgs", max_image_bytes=10)


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match=r"imgs contains no images"):
        load_image_dataset(tmp_path / "imgs")


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def test_zip_with_wrapper_folder_and_classes(tmp_path):
    path = make_zip(tmp_path / "shapes.zip", {
        "shapes/red/a.png": png_bytes((255, 0, 0)),
        "shapes/blue/b.png": png_bytes((0, 0, 255)),
        "__MACOSX/shapes/red/._a.png": b"resource fork",
    })
    ds = load_image_dataset(path)
    assert ds.labels == ["blue", "red"]
    assert all(isinstance(x, Image.Image) for x in ds.items)
    assert load_image(ds.items[1]).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_zip_path_traversal_rejected(tmp_path, member):
    path = make_zip(tmp_path / "d.zip", {"ok.png": png_bytes(), member: png_bytes()})
    with pytest.raises(DataError, match=r"d\.zip: unsafe member path"):
        load_image_dataset(path)


def test_zip_bomb_guard(tmp_path):
    path = make_zip(tmp_path / "d.zip", {"a.png": png_bytes(), "b.png": b"\0" * 5000})
    with pytest.raises(DataError, match=r"d\.zip would unpack to more than .*possible zip bomb"):
        load_image_dataset(path, max_total_bytes=1000)


def test_zip_corrupt_member_named(tmp_path):
    path = make_zip(tmp_path / "d.zip", {"x/ok.png": png_bytes(), "x/broken.png": b"\x89PNG garbage"})
    with pytest.raises(DataError, match=r"x/broken\.png is "):
        load_image_dataset(path)


def test_not_a_zip(tmp_path):
    with pytest.raises(DataError, match=r"d\.zip is not a readable zip archive"):
        load_image_dataset(write(tmp_path / "d.zip", "not a zip"))


# --------------------------------------------------------------------------- load_image


def test_load_image_converts_to_rgb(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img = load_image(rgba)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    path = write(tmp_path / "g.png", png_bytes(120, mode="L"))
    assert load_image(path).getpixel((1, 1)) == (120, 120, 120)


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match=r"image file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match=r"t\.png is not an image file"):
        load_image(write(tmp_path / "t.png", "text"))
    with pytest.raises(DataError, match=r"c\.png is corrupt or truncated"):
        load_image(write(tmp_path / "c.png", png_bytes(size=(32, 32))[:-30]))
    with pytest.raises(DataError, match=r"expected an image path or PIL image, not int"):
        load_image(3)


def test_pixel_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(DataError, match=r"^p\.png is too large \(8x8 = 64 pixels, limit 10 "
                                        r"pixels\); use a smaller image\.$"):
        load_image(write(tmp_path / "p.png", png_bytes()))


# --------------------------------------------------------------------------- hash, dispatch, demo


def test_content_hash_stable_and_sensitive(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,y\n")
    h = load_text_dataset(path).content_hash()
    assert h == load_text_dataset(path).content_hash() and len(h) == 64
    assert h != load_text_dataset(write(path, "text,label\na,x\nc,y\n")).content_hash()
    assert h != load_text_dataset(write(path, "text,label\na,x\nb,z\n")).content_hash()
    imgs = tmp_path / "imgs"
    write(imgs / "a.png", png_bytes())
    h1 = load_image_dataset(imgs).content_hash()
    write(imgs / "a.png", png_bytes((0, 255, 0)))
    assert h1 != load_image_dataset(imgs).content_hash()


def test_dataset_label_length_mismatch():
    with pytest.raises(DataError, match=r"has 2 items but 1 labels"):
        Dataset("x", "text", ["a", "b"], ["l"])


def test_load_dataset_dispatch(tmp_path):
    assert load_dataset(write(tmp_path / "d.txt", "a\nb\n")).modality == "text"
    write(tmp_path / "imgs" / "a.png", png_bytes())
    assert load_dataset(tmp_path / "imgs").modality == "image"
    assert load_dataset(write(tmp_path / "d.csv", "body\nx\n"), text_column="body").items == ["x"]
    with pytest.raises(DataError, match=r"d\.parquet: unsupported dataset type '\.parquet'"):
        load_dataset(write(tmp_path / "d.parquet", "x"))
    with pytest.raises(DataError, match=r"dataset not found"):
        load_dataset(tmp_path / "missing")


def test_demo_headlines():
    ds = demo_dataset("text")
    counts = {label: ds.labels.count(label) for label in set(ds.labels)}
    assert set(counts) == {"world", "sports", "business", "science/technology"}
    assert min(counts.values()) >= 30
    assert len(set(ds.items)) == len(ds.items)


def test_demo_shapes_if_present():
    if not (DATA_DIR / "demo_shapes").is_dir():
        pytest.skip("demo_shapes not generated yet")
    ds = demo_dataset("image")
    assert len(ds) > 0 and ds.modality == "image"


def test_demo_unknown_modality():
    with pytest.raises(DataError, match=r"modality must be 'text' or 'image', not 'audio'"):
        demo_dataset("audio")


def test_one_content_hash_for_an_image_file_and_its_pixels(tmp_path) -> None:
    """The activation cache, datasets and concept sets share one digest per example: a PNG on
    disk and the same picture in memory (or re-encoded) hash alike; any pixel change differs."""
    from attnxai.io.hashing import example_hash

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    img.save(tmp_path / "a.png")
    img.save(tmp_path / "b.png", compress_level=1)  # other bytes, same pixels
    digests = {example_hash(tmp_path / "a.png"), example_hash(tmp_path / "b.png"), example_hash(img)}
    assert len(digests) == 1
    changed = img.copy()
    changed.putpixel((0, 0), (0, 0, 0) if img.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert example_hash(changed) not in digests
    assert example_hash("a") != example_hash("b")
    ds1 = Dataset("x", "image", [tmp_path / "a.png"])
    ds2 = Dataset("y", "image", [img])
    assert ds1.content_hash() == ds2.content_hash()


# -- malformed CSVs are refused, or read as their author meant (issue 22) -------------------------
def test_semicolon_and_tab_separated_csvs_are_read_by_their_separator(tmp_path):
    for sep in (";", "\t"):
        path = tmp_path / "data.csv"
        path.write_text(f"text{sep}label\nteam won, again{sep}sports\nstocks fell{sep}business\n")
        ds = load_text_dataset(path)
        assert ds.items == ["team won, again", "stocks fell"]
        assert ds.labels == ["sports", "business"]


def test_an_unclosed_quote_is_an_error_not_one_glued_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\nfine,sports\n"never closed,sports\nthird,sports\nfourth,sports\n')
    with pytest.raises(DataError, match="line 3 is never closed"):
        load_text_dataset(path)


def test_nul_bytes_are_an_error(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"text,label\nfine,sports\nbad\x00text,sports\n")
    with pytest.raises(DataError, match="NUL byte \\(line 3\\)"):
        load_text_dataset(path)
