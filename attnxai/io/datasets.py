"""Loading and validating the datasets an audit runs on.

Text datasets come from CSV, TXT (one text per line) or JSONL files; image datasets from a
folder or a .zip of images, where optional class subfolders become labels. Every problem a
user can cause raises :class:`attnxai.errors.DataError` with a sentence naming the file, line
or column at fault.

Choices (documented here because they are visible to users):

- TXT files skip blank lines (a trailing newline or a spacer line is not data); CSV and JSONL
  files reject a record whose text is empty, because silently dropping a labelled row would
  change the class balance an audit reports on.
- Zip archives are read in memory (never extracted). Before any member is decompressed, the
  zip's directory is checked: members with absolute paths, ``..`` or symlinks are rejected, and
  so are archives with too many members, too large a declared total, or a member compressed
  more than :data:`MAX_ZIP_RATIO` to 1 (zip bombs). Members are then read one at a time, never
  more bytes than the limits allow, whatever their headers declare.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from attnxai.errors import DataError
from attnxai.resources import DEMO_DIR

MB = 1024 * 1024
MAX_TEXT_FILE_BYTES = 200 * MB
MAX_IMAGE_BYTES = 20 * MB
MAX_ZIP_TOTAL_BYTES = 2048 * MB
MAX_ZIP_MEMBERS = 100_000
# Images are compressed already, so a member that shrank more than this is a zip bomb; small
# members cannot hurt whatever their ratio (and tiny files compress well), so they are exempt.
MAX_ZIP_RATIO = 200
ZIP_RATIO_MIN_BYTES = 1 * MB
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
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None
    return decode_utf8(data, path.name)


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


def load_json(text: str, what: str, *, position: bool = True) -> Any:
    """Parse JSON text; any problem raises DataError naming ``what``.

    Besides syntax errors this catches what :func:`json.loads` raises on hostile input:
    RecursionError for deeply nested arrays or objects, and ValueError for integers beyond
    Python's digit limit. ``position=False`` leaves out the line and column (for JSONL, where
    the caller names the line).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f" at line {exc.lineno}, column {exc.colno}" if position else ""
        raise DataError(f"{what} is not valid JSON: {exc.msg}{at}.") from None
    except RecursionError:
        raise DataError(f"{what} nests JSON arrays or objects too deeply to read; "
                        "flatten the structure.") from None
    except ValueError as exc:
        raise DataError(f"{what} is not valid JSON: {exc}.") from None


def format_bytes(n: int) -> str:
    """A size for messages: ``512 bytes``, ``19.5 KB``, ``25.0 MB``, ``2.0 GB``."""
    if n < 1024:
        return f"{n} bytes"
    if n < MB:
        return f"{n / 1024:.1f} KB"
    if n < 1024 * MB:
        return f"{n / MB:.1f} MB"
    return f"{n / (1024 * MB):.1f} GB"


def _parse_txt(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


class TextColumnError(DataError):
    """A CSV or JSONL whose text column cannot be told: ``columns`` lists its columns, for a
    caller that lets the user pick one (``text_column=``)."""

    def __init__(self, message: str, columns: list[str]) -> None:
        super().__init__(message)
        self.columns = columns


def _choose_text_column(columns: list[str], string_columns: list[str], where: str) -> str:
    if "text" in columns:
        return "text"
    if len(string_columns) == 1:
        return string_columns[0]
    raise TextColumnError(
        f"{where}: cannot tell which column holds the text (no 'text' column and "
        f"{len(string_columns)} text-like columns); choose one of: {', '.join(columns)}.",
        columns)


def _check_column(column: str, columns: list[str], where: str, role: str) -> None:
    if column not in columns:
        raise DataError(
            f"{where}: {role} column {column!r} not found; available columns: {', '.join(columns)}."
        )


def _parse_csv(
    text: str, name: str, text_column: str | None, label_column: str | None
) -> tuple[list[str], list[str] | None]:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{name} holds a NUL byte (line {line}): it is not a text CSV; re-save "
                        "it as UTF-8 text.")
    # strict: a quote left open runs to the end of the file, which is an error, not one text
    # holding every line after it.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True,
                        delimiter=_delimiter(text.split("\n", 1)[0]))
    start = 1
    try:
        header = next(reader, None)
        records = []  # (first line of the record, fields)
        start = reader.line_num + 1
        for row in reader:
            if row:  # csv yields [] for blank lines: layout, not data
                records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError(f"{name}: a quote opened in the record starting at line {start} is "
                            "never closed; close it, or double a quote meant as text "
                            '(""), and load the file again.') from None
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


def _delimiter(header: str) -> str:
    """The CSV's field separator, from its header line: a comma, or a semicolon or tab where
    the header has no comma but one of those (spreadsheets in many locales write ';')."""
    if "," in header:
        return ","
    for other in (";", "\t"):
        if other in header:
            return other
    return ","


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
        obj = load_json(raw, f"{name}: line {line}", position=False)
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


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


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
    except Image.DecompressionBombError as exc:
        # Pillow refuses images far over its own limit before we can read their size.
        found = _BOMB_PIXELS.search(str(exc))
        raise DataError(_too_large(what, int(found.group(1)) if found else None)) from None
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted bytes raise anything
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
        raise DataError(_too_large(what, width * height, f"{width}x{height} = "))


def _too_large(what: str, pixels: int | None, dims: str = "") -> str:
    size = f"{dims}{pixels:,} pixels, " if pixels is not None else ""
    return (f"{what} is too large ({size}limit {MAX_IMAGE_PIXELS:,} pixels); "
            "use a smaller image.")


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
        items, rel_paths, skipped = _read_images(
            files, lambda p: _read_bounded(p, max_image_bytes), skip_invalid, max_image_bytes)
    elif path.suffix.lower() == ".zip":
        with open_zip(path) as zf:
            members = safe_zip_members(zf, max_total_bytes, path.name)
            read = bounded_zip_reader(zf, path.name, max_total_bytes)
            items, rel_paths, skipped = _read_images(
                members, lambda info: read(info, max_image_bytes), skip_invalid, max_image_bytes)
    else:
        raise DataError(f"{path.name}: an image dataset must be a folder or a .zip file.")
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


_Source = Union[Path, zipfile.ZipInfo]


def _read_images(
    files: dict[PurePosixPath, _Source],
    read: Callable[[Any], bytes],
    skip_invalid: bool,
    max_bytes: int,
) -> tuple[list[ImageItem], list[PurePosixPath], list[str]]:
    """The decodable images of ``files`` (folder paths or zip members), their relative paths
    and the skipped files.

    Names and declared sizes of every file are checked before any is read; then files are
    read (with ``read``, bounded) and decoded one at a time, so memory holds one file beyond
    the images kept.
    """
    skipped, checked = [], []
    for rel in sorted(files):
        try:
            _check_image_entry(rel, _declared_size(files[rel]), max_bytes)
            checked.append(rel)
        except DataError:
            if not skip_invalid:
                raise
            skipped.append(rel.as_posix())
    items, rel_paths = [], []
    for rel in checked:
        source = files[rel]
        data = read(source)  # whole-archive limits raise here and are never skipped
        try:
            _check_read_size(rel, len(data), _declared_size(source), max_bytes)
            verify_image_bytes(data, rel.as_posix())
        except DataError:
            if not skip_invalid:
                raise
            skipped.append(rel.as_posix())
            continue
        # Zip members become lazy PIL images: Pillow keeps only the compressed bytes
        # until the image is first used.
        items.append(source if isinstance(source, Path) else Image.open(io.BytesIO(data)))
        rel_paths.append(rel)
    return items, rel_paths, sorted(skipped)


def _declared_size(source: _Source) -> int:
    return source.stat().st_size if isinstance(source, Path) else source.file_size


def _check_image_entry(rel: PurePosixPath, size: int, max_bytes: int) -> None:
    """Refuse a dataset file by its name and (declared) size, before reading it."""
    where = rel.as_posix()
    if rel.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(
            f"{where} is not an image file (extension {rel.suffix or '(none)'!r}); "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)}."
        )
    if size > max_bytes:
        raise DataError(
            f"{where} is {size / MB:.1f} MB, over the {max_bytes / MB:.0f} MB per-image limit."
        )


def _check_read_size(rel: PurePosixPath, n_read: int, declared: int, max_bytes: int) -> None:
    """Refuse a file that turned out larger than its size said (a lying zip header, or a file
    that grew since it was listed); reads stop at ``max_bytes + 1``, so that is all we know."""
    if n_read > max_bytes:
        raise DataError(
            f"{rel.as_posix()} holds more than the {max_bytes / MB:.0f} MB per-image limit "
            f"although it was listed as {format_bytes(declared)}; refusing it."
        )


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of a file (enough to tell that it is too large)."""
    try:
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None


def _is_ignored(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") or part in _IGNORED_NAMES for part in rel.parts)


def _folder_files(root: Path) -> dict[PurePosixPath, Path]:
    files = {}
    for p in root.rglob("*"):
        rel = PurePosixPath(p.relative_to(root).as_posix())
        if p.is_file() and not _is_ignored(rel):
            files[rel] = p
    return files


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip archive for reading; a damaged or unreadable file raises DataError."""
    try:
        return zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 - a damaged directory raises many types
        raise DataError(f"{path.name} is not a readable zip archive ({exc}).") from None


def safe_zip_members(
    zf: zipfile.ZipFile,
    max_total_bytes: int,
    what: str,
    *,
    member_limit: Callable[[PurePosixPath], int] | None = None,
    max_members: int = MAX_ZIP_MEMBERS,
) -> dict[PurePosixPath, zipfile.ZipInfo]:
    """Return the zip's regular-file members by relative path, after safety checks made on
    the zip's directory alone (nothing is decompressed).

    Rejects absolute paths, ``..`` components, drive letters and symlinks (path traversal);
    more than ``max_members`` members; a member over ``member_limit(path)`` bytes (if given);
    a member over :data:`ZIP_RATIO_MIN_BYTES` that shrank more than :data:`MAX_ZIP_RATIO` to
    1; and archives whose declared uncompressed total exceeds ``max_total_bytes`` (zip bombs;
    readers must still bound each read, see :func:`bounded_zip_reader`, since declared sizes
    can lie). Hidden files and ``__MACOSX`` entries are left out. Raises DataError naming
    ``what``.
    """
    members: dict[PurePosixPath, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        rel = _safe_member_path(info, what)
        if info.is_dir() or _is_ignored(rel):
            continue
        if len(members) == max_members:
            raise DataError(f"{what} holds more than {max_members:,} files; refusing it.")
        _check_member_size(info, rel, what, member_limit)
        total += info.file_size
        if total > max_total_bytes:
            raise DataError(
                f"{what} would unpack to more than {max_total_bytes / MB:.0f} MB; "
                "refusing (possible zip bomb)."
            )
        members[rel] = info
    return members


def _safe_member_path(info: zipfile.ZipInfo, what: str) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    if name.startswith("/") or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise DataError(f"{what}: unsafe member path {info.filename!r} (absolute or '..').")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DataError(f"{what}: member {info.filename!r} is a symbolic link.")
    return rel


def _check_member_size(info: zipfile.ZipInfo, rel: PurePosixPath, what: str,
                       member_limit: Callable[[PurePosixPath], int] | None) -> None:
    size, packed = info.file_size, info.compress_size
    if member_limit is not None and size > member_limit(rel):
        raise DataError(f"{what}: {rel} is larger than the {format_bytes(member_limit(rel))} "
                        f"limit: it unpacks to {format_bytes(size)}.")
    if size > ZIP_RATIO_MIN_BYTES and size > MAX_ZIP_RATIO * max(packed, 1):
        raise DataError(
            f"{what}: {rel} would unpack from {format_bytes(packed)} to {format_bytes(size)}, "
            f"more than {MAX_ZIP_RATIO} times its compressed size; refusing (possible zip bomb)."
        )


def bounded_zip_reader(
    zf: zipfile.ZipFile, what: str, max_total_bytes: int
) -> Callable[[zipfile.ZipInfo, int], bytes]:
    """A reader of members of ``zf``: ``read(info, max_bytes)`` returns at most
    ``max_bytes + 1`` bytes of one member (see :func:`read_zip_member`) and raises DataError
    once the bytes read from the archive in all exceed ``max_total_bytes``, since headers can
    under-declare sizes."""
    total = 0

    def read(info: zipfile.ZipInfo, max_bytes: int) -> bytes:
        nonlocal total
        data = read_zip_member(zf, info, max_bytes)
        total += len(data)
        if total > max_total_bytes:
            raise DataError(f"{what} unpacks to more than {max_total_bytes / MB:.0f} MB; "
                            "refusing (possible zip bomb).")
        return data

    return read


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """Read one member, never more than ``max_bytes + 1`` bytes whatever its header says
    (so the caller's size check sees an oversized member without decompressing all of it)."""
    try:
        with zf.open(info) as fh:
            return fh.read(max_bytes + 1)
    except Exception as exc:  # noqa: BLE001 - damaged or unsupported members raise many types
        raise DataError(f"cannot read {info.filename!r} from the zip "
                        f"({type(exc).__name__}: {exc}).") from None


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
