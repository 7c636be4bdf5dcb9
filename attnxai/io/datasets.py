"""Loading and validating the datasets an audit runs on.

Text datasets come from CSV, TXT (one text per line) or JSONL files; image datasets from a
folder or a .zip of images, where optional class subfolders become labels. Every problem a
user can cause raises :class:`attnxai.errors.DataError` with a sentence naming the file, line
or column at fault.

Choices (documented here because they are visible to users):

- TXT files skip blank lines (a trailing newline or a spacer line is not data); CSV and JSONL
  files reject a record whose text is empty, because silently dropping a labelled row would
  change the class balance an audit reports on.
- Zip archives are read in memory (never extracted): members with absolute paths or ``..``
  are rejected, and the total uncompressed size is capped before anything is decompressed.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from attnxai.errors import DataError
from attnxai.resources import DEMO_DIR

MB = 1024 * 1024
MAX_TEXT_FILE_BYTES = 200 * MB
MAX_IMAGE_BYTES = 20 * MB
MAX_ZIP_TOTAL_BYTES = 2048 * MB
# Pillow's own decompression-bomb threshold is ~89 Mpx; audits never need images that large.
MAX_IMAGE_PIXELS = 50_000_000

TEXT_EXTENSIONS = (".csv", ".txt", ".jsonl", ".ndjson")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# Folder/zip entries that operating systems add on their own; never data.
_IGNORED_NAMES = ("__MACOSX", "Thumbs.db", "desktop.ini")

DATA_DIR = DEMO_DIR

ImageItem = Union[Path, Image.Image]


@dataclass
class Dataset:
    """A list of inputs (texts or images) with optional string labels.

    ``items`` holds strings for text, and paths or in-memory PIL images for images
    (images read from a zip stay in memory, compressed, until first used).
    ``skipped`` lists files left out because ``skip_invalid=True`` was asked for.
    """

    name: str
    modality: Literal["text", "image"]
    items: list
    labels: list[str] | None = None
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.modality not in ("text", "image"):
            raise DataError(f"modality must be 'text' or 'image', not {self.modality!r}.")
        if self.labels is not None and len(self.labels) != len(self.items):
            raise DataError(
                f"dataset {self.name!r} has {len(self.items)} items but {len(self.labels)} labels."
            )

    def __len__(self) -> int:
        return len(self.items)

    def content_hash(self) -> str:
        """SHA-256 (hex) over the items' content and the labels, in order.

        Texts are hashed as UTF-8, image files by their bytes and in-memory images by their
        pixels, so the hash does not depend on where the dataset was loaded from (for
        files) and changes whenever an item or a label changes.
        """
        from attnxai.io.hashing import combined_hash, example_hash

        try:
            items = [example_hash(x) for x in self.items]
        except TypeError as exc:
            raise DataError(f"dataset {self.name!r}: {exc}.") from None
        return combined_hash(f"attnxai-dataset-v2:{self.modality}:{len(self.items)}",
                             [*items, *(self.labels or [])])


# --------------------------------------------------------------------------- text


def load_text_dataset(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    max_bytes: int = MAX_TEXT_FILE_BYTES,
) -> Dataset:
    """Load texts (and optional labels) from a .csv, .txt or .jsonl file.

    ``text_column`` defaults to ``"text"`` if present, else the only column holding
    non-numeric values; ``label_column`` defaults to ``"label"`` if present. TXT files
    have one text per line and no labels. Raises DataError on any problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_EXTENSIONS:
        raise DataError(
            f"{path.name}: unsupported text file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(TEXT_EXTENSIONS)}."
        )
    text = _read_utf8(path, max_bytes)
    if suffix == ".txt":
        texts, labels = _parse_txt(text), None
    elif suffix == ".csv":
        texts, labels = _parse_csv(text, path.name, text_column, label_column)
    else:
        texts, labels = _parse_jsonl(text, path.name, text_column, label_column)
    if not texts:
        raise DataError(f"{path.name} contains no texts.")
    return Dataset(name=path.stem, modality="text", items=texts, labels=labels, source=str(path))


def _check_file(path: Path, max_bytes: int) -> None:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"{path.name} is {size / MB:.1f} MB, over the {max_bytes / MB:.0f} MB limit."
        )


def _read_utf8(path: Path, max_bytes: int) -> str:
    """Read a whole file as UTF-8 (an optional BOM is dropped), naming the bad byte if any."""
    _check_file(path, max_bytes)
    return decode_utf8(path.read_bytes(), path.name)


def decode_utf8(data: bytes, what: str) -> str:
    """Decode UTF-8 bytes strictly; on failure raise DataError naming line and byte offset."""
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if data.startswith(bom) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = data.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{what} is not valid UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} "
            f"(line {line}); re-save the file as UTF-8."
        ) from None


def _parse_txt(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _choose_text_column(columns: list[str], string_columns: list[str], where: str) -> str:
    if "text" in columns:
        return "text"
    if len(string_columns) == 1:
        return string_columns[0]
    raise DataError(
        f"{where}: cannot tell which column holds the text (no 'text' column and "
        f"{len(string_columns)} text-like columns); choose one of: {', '.join(columns)}."
    )


def _check_column(column: str, columns: list[str], where: str, role: str) -> None:
    if column not in columns:
        raise DataError(
            f"{where}: {role} column {column!r} not found; available columns: {', '.join(columns)}."
        )


def _parse_csv(
    text: str, name: str, text_column: str | None, label_column: str | None
) -> tuple[list[str], list[str] | None]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        records = []  # (first line of the record, fields)
        start = reader.line_num + 1
        for row in reader:
            if row:  # csv yields [] for blank lines: layout, not data
                records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{name}: malformed CSV at line {reader.line_num}: {exc}.") from None
    if not header:
        raise DataError(f"{name} is empty (no header row).")
    columns = [c.strip() for c in header]
    if len(set(columns)) != len(columns):
        raise DataError(f"{name}: duplicate column names in header: {', '.join(columns)}.")
    for line, row in records:
        if len(row) != len(columns):
            raise DataError(
                f"{name}: line {line} has {len(row)} fields but the header has {len(columns)}."
            )
    if text_column is None:
        string_columns = [
            c for i, c in enumerate(columns)
            if any(row[i].strip() and not _looks_numeric(row[i]) for _, row in records)
        ]
        text_column = _choose_text_column(columns, string_columns, name)
    _check_column(text_column, columns, name, "text")
    label_column = _default_label_column(label_column, columns, text_column, name)
    text_idx = columns.index(text_column)
    label_idx = columns.index(label_column) if label_column else None
    texts, labels = [], []
    for line, row in records:
        texts.append(_nonempty(row[text_idx], name, line, text_column, "text"))
        if label_idx is not None:
            labels.append(_nonempty(row[label_idx], name, line, label_column, "label"))
    return texts, (labels if label_idx is not None else None)


def _default_label_column(
    label_column: str | None, columns: list[str], text_column: str, where: str
) -> str | None:
    if label_column is None:
        return "label" if "label" in columns and text_column != "label" else None
    _check_column(label_column, columns, where, "label")
    return label_column


def _nonempty(value: object, name: str, line: int, column: str, role: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(
            f"{name}: line {line}: {role} {column!r} must be a string, "
            f"not {type(value).__name__}."
        )
    value = str(value).strip()
    if not value:
        raise DataError(
            f"{name}: line {line} has an empty {role} in column {column!r}; "
            "remove the row or fill it in."
        )
    return value


def _parse_jsonl(
    text: str, name: str, text_column: str | None, label_column: str | None
) -> tuple[list[str], list[str] | None]:
    records = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {line} is not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict):
            raise DataError(
                f"{name}: line {line} must be a JSON object, not {type(obj).__name__}."
            )
        records.append((line, obj))
    if not records:
        return [], None
    columns = list(records[0][1])
    if text_column is None:
        string_keys = [k for k, v in records[0][1].items() if isinstance(v, str)]
        text_column = _choose_text_column(columns, string_keys, name)
    _check_column(text_column, columns, name, "text")
    label_column = _default_label_column(label_column, columns, text_column, name)
    texts, labels = [], []
    for line, obj in records:
        texts.append(_nonempty(_key(obj, text_column, name, line), name, line, text_column, "text"))
        if label_column:
            label = _key(obj, label_column, name, line)
            labels.append(_nonempty(label, name, line, label_column, "label"))
    return texts, (labels if label_column else None)


def _key(obj: dict, key: str, name: str, line: int) -> object:
    if key not in obj:
        raise DataError(
            f"{name}: line {line} has no key {key!r}; keys there: {', '.join(obj) or '(none)'}."
        )
    return obj[key]


# --------------------------------------------------------------------------- images


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn Pillow's decoding exceptions into a DataError naming ``what``."""
    try:
        yield
    except DataError:  # our own checks (a ValueError subclass): already a clear message
        raise
    except UnidentifiedImageError:
        raise DataError(
            f"{what} is not an image file or is damaged (format not recognised)."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{what} is corrupt or truncated and cannot be decoded ({exc}).") from None


def load_image(x: str | Path | Image.Image) -> Image.Image:
    """Return ``x`` (a path or a PIL image) as an RGB PIL image.

    Transparent pixels are composited onto white and EXIF rotation is applied, so the image
    looks as a viewer shows it. Raises DataError for missing, corrupt or non-image files.
    """
    if isinstance(x, Image.Image):
        with _decoding("in-memory image"):
            return _to_rgb(x)
    if not isinstance(x, (str, Path)):
        raise DataError(f"expected an image path or PIL image, not {type(x).__name__}.")
    path = Path(x)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    with _decoding(path.name), Image.open(path) as img:
        _check_pixels(img, path.name)
        return _to_rgb(ImageOps.exif_transpose(img))


def _to_rgb(img: Image.Image) -> Image.Image:
    img.load()
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _check_pixels(img: Image.Image, what: str) -> None:
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{what} is {width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,} pixel limit."
        )


def verify_image_bytes(
    data: bytes, what: str, allowed_formats: tuple[str, ...] | None = None
) -> None:
    """Check that ``data`` is a decodable image (of one of ``allowed_formats``, if given).

    Decodes the whole image so truncated files are caught here, not mid-audit.
    Raises DataError naming ``what``.
    """
    with _decoding(what), Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "unknown"
        if allowed_formats is not None and fmt not in allowed_formats:
            raise DataError(
                f"{what} is a {fmt} image; allowed formats: {', '.join(allowed_formats)}."
            )
        _check_pixels(img, what)
        img.load()


def load_image_dataset(
    path: str | Path,
    *,
    skip_invalid: bool = False,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_total_bytes: int = MAX_ZIP_TOTAL_BYTES,
) -> Dataset:
    """Load an image dataset from a folder or a .zip archive.

    Images directly in the folder (or archive) are unlabelled; images in class
    subfolders get the subfolder name as label (a zip holding one top folder is looked
    into). Mixing both is an error. Non-image, corrupt or oversized files raise DataError
    naming the file, unless ``skip_invalid`` is true, in which case they are listed in
    ``Dataset.skipped``. ``max_total_bytes`` caps a zip's total uncompressed size.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        files = _folder_files(path)
    elif path.suffix.lower() == ".zip":
        files = _zip_files(path, max_image_bytes, max_total_bytes)
    else:
        raise DataError(f"{path.name}: an image dataset must be a folder or a .zip file.")
    items, rel_paths, skipped = [], [], []
    for rel in sorted(files):
        source = files[rel]
        try:
            data = _checked_image_bytes(rel, source, max_image_bytes)
        except DataError:
            if not skip_invalid:
                raise
            skipped.append(rel.as_posix())
            continue
        # Zip members become lazy PIL images: Pillow keeps only the compressed bytes
        # until the image is first used.
        items.append(source if isinstance(source, Path) else Image.open(io.BytesIO(data)))
        rel_paths.append(rel)
    if not items:
        raise DataError(f"{path.name} contains no images.")
    return Dataset(
        name=path.stem,
        modality="image",
        items=items,
        labels=_labels_from_paths(rel_paths, path.name),
        source=str(path),
        skipped=skipped,
    )


def _checked_image_bytes(rel: PurePosixPath, source: Path | bytes, max_bytes: int) -> bytes:
    """Return the bytes of one dataset file after checking extension, size and decodability."""
    where = rel.as_posix()
    if rel.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(
            f"{where} is not an image file (extension {rel.suffix or '(none)'!r}); "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}."
        )
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > max_bytes:
        raise DataError(
            f"{where} is {size / MB:.1f} MB, over the {max_bytes / MB:.0f} MB per-image limit."
        )
    data = source.read_bytes() if isinstance(source, Path) else source
    verify_image_bytes(data, where)
    return data


def _is_ignored(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") or part in _IGNORED_NAMES for part in rel.parts)


def _folder_files(root: Path) -> dict[PurePosixPath, Path]:
    files = {}
    for p in root.rglob("*"):
        rel = PurePosixPath(p.relative_to(root).as_posix())
        if p.is_file() and not _is_ignored(rel):
            files[rel] = p
    return files


def _zip_files(
    path: Path, max_image_bytes: int, max_total_bytes: int
) -> dict[PurePosixPath, bytes]:
    """Read every (safe) member of an image zip into memory, bounded in size."""
    with _open_zip(path) as zf:
        members = safe_zip_members(zf, max_total_bytes, path.name)
        files, total = {}, 0
        for rel, info in members.items():
            files[rel] = read_zip_member(zf, info, max_image_bytes)
            total += len(files[rel])
            if total > max_total_bytes:  # headers can under-declare sizes
                raise DataError(
                    f"{path.name} unpacks to more than {max_total_bytes / MB:.0f} MB; "
                    "refusing (possible zip bomb)."
                )
    return files


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path.name} is not a readable zip archive ({exc}).") from None


def safe_zip_members(
    zf: zipfile.ZipFile, max_total_bytes: int, what: str
) -> dict[PurePosixPath, zipfile.ZipInfo]:
    """Return the zip's regular-file members by relative path, after safety checks.

    Rejects absolute paths, ``..`` components, drive letters and symlinks (path traversal),
    and archives whose declared uncompressed total exceeds ``max_total_bytes`` (zip bombs;
    readers must still bound each read, since declared sizes can lie). Hidden files and
    ``__MACOSX`` entries are left out. Raises DataError naming ``what``.
    """
    members: dict[PurePosixPath, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        rel = PurePosixPath(name)
        if name.startswith("/") or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
            raise DataError(f"{what}: unsafe member path {info.filename!r} (absolute or '..').")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"{what}: member {info.filename!r} is a symbolic link.")
        if info.is_dir() or _is_ignored(rel):
            continue
        total += info.file_size
        if total > max_total_bytes:
            raise DataError(
                f"{what} would unpack to more than {max_total_bytes / MB:.0f} MB; "
                "refusing (possible zip bomb)."
            )
        members[rel] = info
    return members


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """Read one member, never more than ``max_bytes + 1`` bytes whatever its header says
    (so the caller's size check sees an oversized member without decompressing all of it)."""
    try:
        with zf.open(info) as fh:
            return fh.read(max_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise DataError(f"cannot read {info.filename!r} from the zip ({exc}).") from None


def _labels_from_paths(rel_paths: list[PurePosixPath], what: str) -> list[str] | None:
    depths = {len(r.parts) for r in rel_paths}
    if depths == {1}:
        return None
    if 1 in depths:
        raise DataError(
            f"{what}: some images are in class subfolders and some are not; "
            "put every image in a class subfolder, or none."
        )
    tops = {r.parts[0] for r in rel_paths}
    if len(tops) == 1:
        # One wrapping folder (typical of zipped folders): look inside it.
        return _labels_from_paths([PurePosixPath(*r.parts[1:]) for r in rel_paths], what)
    return [r.parts[0] for r in rel_paths]


# --------------------------------------------------------------------------- dispatch


def load_dataset(path: str | Path, **kwargs) -> Dataset:
    """Load a dataset, choosing the loader from the path: a folder or .zip is an image
    dataset, .csv/.txt/.jsonl a text dataset. Keyword arguments go to that loader."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir() or path.suffix.lower() == ".zip":
        return load_image_dataset(path, **kwargs)
    if path.suffix.lower() in TEXT_EXTENSIONS:
        return load_text_dataset(path, **kwargs)
    raise DataError(
        f"{path.name}: unsupported dataset type {path.suffix or '(none)'!r}; use a folder or "
        f".zip of images, or a {', '.join(TEXT_EXTENSIONS)} file of texts."
    )


def demo_dataset(modality: str) -> Dataset:
    """The shipped demo dataset: news headlines for ``"text"``, shapes for ``"image"``."""
    if modality == "text":
        return load_text_dataset(DATA_DIR / "demo_headlines.csv")
    if modality == "image":
        return load_image_dataset(DATA_DIR / "demo_shapes")
    raise DataError(f"modality must be 'text' or 'image', not {modality!r}.")
