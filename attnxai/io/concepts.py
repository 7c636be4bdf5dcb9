"""Concept sets: loading, validating, saving, listing, importing and exporting them.

The on-disk format (format 1) is specified in ``docs/concept_sets.md``: one folder per set,
``<root>/<name>/concept.json`` plus, for images, the files it lists under ``examples/`` (and
``counterexamples/``). Sets are looked up by name in the user's folder
(``$ATTNXAI_HOME/concept_sets``, or ``$ATTNXAI_CONCEPTS``) and then in the read-only sets shipped
with attnxai (:func:`concept_roots`); new sets are saved to the user's folder. Every rule
violation raises :class:`attnxai.errors.ConceptSetError` with a sentence naming the set and the
problem.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

from PIL import Image

from attnxai.io.datasets import (
    MB,
    bounded_zip_reader,
    decode_utf8,
    format_bytes,
    load_image,
    load_json,
    open_zip,
    safe_zip_members,
    verify_image_bytes,
)
from attnxai.errors import ConceptSetError, DataError, UserInputError
from attnxai.io.outputs import check_output, write_atomic
from attnxai.resources import CONCEPT_SETS_DIR

FORMAT = 1
MANIFEST = "concept.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MODALITIES = ("text", "image")
KINDS = ("concept", "random_pool")
MIN_EXAMPLES = 10
MIN_POOL_EXAMPLES = 100
MAX_EXAMPLES = 5000
MAX_TEXT_CHARS = 2000
MAX_IMAGE_BYTES = 10 * MB
# 2 x 5000 texts of 2000 characters (up to 4 bytes each in UTF-8) fit comfortably.
MAX_MANIFEST_BYTES = 96 * MB
MAX_ARCHIVE_BYTES = 4096 * MB
# The manifest, both example lists at their limit, and room for a README or two.
MAX_ARCHIVE_MEMBERS = 2 * MAX_EXAMPLES + 100
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
REQUIRED_KEYS = ("format", "name", "modality", "kind", "description", "examples")
OPTIONAL_KEYS = ("default_pool", "counterexamples", "paired")
# The two example lists; for image sets each list's files live in the sub-folder of that name.
_LISTS = ("examples", "counterexamples")

ImageExample = Path | Image.Image


#: How listings mark where a set comes from: the read-only sets shipped with attnxai (package
#: data), or the user's own (their concept folder, or an explicitly given one).
SHIPPED, USER = "shipped", "yours"


def user_concept_root() -> Path:
    """The user's concept folder, where new sets go: ``$ATTNXAI_CONCEPTS`` if set, else
    ``$ATTNXAI_HOME/concept_sets`` (``ATTNXAI_HOME`` defaults to ``~/.attnxai``)."""
    env = os.environ.get("ATTNXAI_CONCEPTS")
    if env:
        return Path(env)
    home = os.environ.get("ATTNXAI_HOME")
    return (Path(home) if home else Path.home() / ".attnxai") / "concept_sets"


def shipped_concept_root() -> Path:
    """The sets shipped with attnxai (package data, read-only)."""
    return CONCEPT_SETS_DIR


def default_concept_root() -> Path:
    """Where saving and importing put a set by default: :func:`user_concept_root`."""
    return user_concept_root()


def concept_roots(root: str | Path | None = None) -> list[Path]:
    """The folders a name is looked up in, first match wins: ``[root]`` when one is given,
    else the user's folder (:func:`user_concept_root`) and then the shipped sets."""
    if root is not None:
        return [Path(root)]
    user, shipped = user_concept_root(), shipped_concept_root()
    return [user] if _same_folder(user, shipped) else [user, shipped]


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` (a set's folder, or a root) lies in the shipped, read-only sets."""
    try:
        return Path(path).resolve().is_relative_to(shipped_concept_root().resolve())
    except OSError:
        return False


def concept_source(folder: str | Path) -> str:
    """:data:`SHIPPED` for a set shipped with attnxai, else :data:`USER`."""
    return SHIPPED if is_shipped(folder) else USER


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _where(roots: list[Path]) -> str:
    return " or ".join(str(r) for r in roots)


def _as_roots(root: str | Path | list | tuple | None) -> list[Path] | None:
    """``validate``'s root argument as a list of folders (None: no pool check)."""
    if root is None:
        return None
    if isinstance(root, (list, tuple)):
        return [Path(r) for r in root]
    return [Path(root)]


def _check_writable(root: Path, name: str, action: str) -> None:
    if is_shipped(root):
        raise ConceptSetError(
            f"cannot {action} concept set {name!r} in {root}: the sets shipped with attnxai are "
            f"read-only. Save a copy under another name into your folder ({user_concept_root()}) "
            "instead.")


@dataclass
class ConceptSet:
    """One concept set (see ``docs/concept_sets.md``).

    ``examples``/``counterexamples`` hold strings for text sets; for image sets they hold
    paths (absolute, inside ``folder``, once loaded) or in-memory PIL images (before
    saving). ``folder`` is where the set was loaded from and takes no part in equality.
    """

    name: str
    modality: str
    examples: list
    description: str = ""
    kind: str = "concept"
    default_pool: str | None = None
    counterexamples: list = field(default_factory=list)
    paired: bool = False
    format: int = FORMAT
    folder: Path | None = field(default=None, compare=False)

    def validate(self, root: str | Path | list | tuple | None = None, *,
                 check_files: bool = True) -> None:
        """Raise ConceptSetError if the set breaks a format rule.

        With ``root`` (a folder, or a list of folders searched in order, e.g.
        :func:`concept_roots`), also check that ``default_pool`` names a random pool of the
        same modality there. ``check_files=False`` skips opening image files (for fast
        listing).
        """
        _validate_header(self)
        for which in _LISTS:
            _validate_list(self, which, check_files)
        roots = _as_roots(root)
        if roots is not None:
            _validate_pool_reference(self, roots)

    def version_hash(self) -> str:
        """SHA-256 (hex) over the manifest fields and every example's content.

        Image file names are left out (saving renumbers them), file bytes are not, so the hash
        is the same before and after a save/export/import and changes when any example does.
        """
        from attnxai.io.hashing import combined_hash, example_hash

        meta = {k: v for k, v in self.to_manifest().items() if k not in _LISTS}
        parts: list[str] = []
        for which in _LISTS:
            parts += [f"{which}:{example_hash(x)}" for x in getattr(self, which)]
        return combined_hash("attnxai-concept-v2:" + json.dumps(meta, sort_keys=True), parts)

    def load_images(self, counterexamples: bool = False) -> list[Image.Image]:
        """The examples (or counterexamples) of an image set as RGB PIL images."""
        if self.modality != "image":
            _fail(self.name, f"load_images needs an image set; this is a {self.modality} set.")
        items = self.counterexamples if counterexamples else self.examples
        try:
            return [load_image(x) for x in items]
        except DataError as exc:
            raise ConceptSetError(f"concept set {self.name!r}: {exc}") from None

    def to_manifest(self) -> dict:
        """The ``concept.json`` content, with image paths as saving lays them out."""
        manifest = {
            "format": self.format,
            "name": self.name,
            "modality": self.modality,
            "kind": self.kind,
            "description": self.description,
            "default_pool": self.default_pool,
            "paired": self.paired,
        }
        for which in _LISTS:
            items = getattr(self, which)
            if self.modality == "image":
                manifest[which] = [rel for rel, _ in _planned_files(items, which)]
            else:
                manifest[which] = list(items)
        return manifest


@dataclass
class ConceptSetInfo:
    """Light metadata of a stored set, read from its manifest only (no image decoding).

    ``error`` is the validation message of a broken set (then other fields may be empty),
    so a listing can show broken sets instead of hiding them.
    """

    name: str
    modality: str
    kind: str
    description: str
    n_examples: int
    n_counterexamples: int
    paired: bool
    default_pool: str | None
    path: Path
    error: str | None = None
    #: :data:`SHIPPED` (read-only, with attnxai) or :data:`USER`.
    source: str = USER

    @property
    def read_only(self) -> bool:
        return self.source == SHIPPED


# --------------------------------------------------------------------------- validation


def _fail(name: object, message: str) -> NoReturn:
    raise ConceptSetError(f"concept set {name!r}: {message}")


def check_name(name: object, role: str = "name") -> str:
    """Return ``name`` if it is a valid concept-set name, else raise ConceptSetError.

    Valid names match ``^[a-z0-9][a-z0-9_-]{0,63}$``: no dots or slashes, so a name can
    never point outside the concept-set folder.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConceptSetError(
            f"invalid concept-set {role} {name!r}: use 1-64 lowercase letters, digits, '-' or "
            "'_', starting with a letter or digit (no dots, slashes or spaces)."
        )
    return name


def _validate_header(cs: ConceptSet) -> None:
    check_name(cs.name)
    if isinstance(cs.format, bool) or cs.format != FORMAT:
        _fail(cs.name, f"unsupported format {cs.format!r}; this version reads format {FORMAT}.")
    if cs.modality not in MODALITIES:
        _fail(cs.name, f"modality must be 'text' or 'image', not {cs.modality!r}.")
    if cs.kind not in KINDS:
        _fail(cs.name, f"unknown kind {cs.kind!r}; use 'concept' or 'random_pool'.")
    if not isinstance(cs.description, str):
        _fail(cs.name, f"description must be a string, not {type(cs.description).__name__}.")
    if not isinstance(cs.paired, bool):
        _fail(cs.name, f"paired must be true or false, not {cs.paired!r}.")
    if cs.kind == "random_pool" and (cs.default_pool is not None or cs.counterexamples):
        _fail(cs.name, "a random_pool set cannot have a default_pool or counterexamples.")
    if cs.default_pool is not None:
        check_name(cs.default_pool, "default_pool")


def _validate_list(cs: ConceptSet, which: str, check_files: bool) -> None:
    items = getattr(cs, which)
    if not isinstance(items, list):
        _fail(cs.name, f"{which} must be a list, not {type(items).__name__}.")
    if which == "examples" or items:
        minimum = MIN_POOL_EXAMPLES if cs.kind == "random_pool" else MIN_EXAMPLES
        if len(items) < minimum:
            what = "a random pool" if cs.kind == "random_pool" else "a concept set"
            _fail(cs.name, f"has {len(items)} {which}; {what} needs at least {minimum}.")
        if len(items) > MAX_EXAMPLES:
            _fail(cs.name, f"has {len(items)} {which}; the limit is {MAX_EXAMPLES}.")
    if which == "counterexamples" and cs.paired and len(items) != len(cs.examples):
        _fail(
            cs.name,
            f"paired is true but there are {len(cs.examples)} examples and {len(items)} "
            "counterexamples; counterexamples[i] must be examples[i] without the concept.",
        )
    for i, x in enumerate(items):
        where = f"{which}[{i}]"
        if cs.modality == "text":
            _check_text(cs.name, x, where)
        else:
            _check_image(cs.name, x, where, check_files)


def _check_text(name: str, x: object, where: str) -> None:
    if not isinstance(x, str):
        _fail(name, f"{where} must be a string, not {type(x).__name__}.")
    if not x.strip():
        _fail(name, f"{where} is empty.")
    if len(x) > MAX_TEXT_CHARS:
        _fail(name, f"{where} has {len(x)} characters; the limit is {MAX_TEXT_CHARS}.")


def _check_image(name: str, x: object, where: str, check_files: bool) -> None:
    if isinstance(x, Image.Image):
        return
    if not isinstance(x, Path):
        _fail(name, f"{where} must be an image path or PIL image, not {type(x).__name__}.")
    if x.suffix.lower() not in IMAGE_SUFFIXES:
        _fail(name, f"{where} ({x.name}) is not a PNG/JPEG/BMP/WebP file.")
    if not check_files:
        return
    if not x.is_file():
        _fail(name, f"{where}: image file not found: {x}")
    size = x.stat().st_size
    if size > MAX_IMAGE_BYTES:
        _fail(name, f"{where} ({x.name}) is {size / MB:.1f} MB; "
              f"the limit is {MAX_IMAGE_BYTES // MB} MB.")
    try:
        verify_image_bytes(x.read_bytes(), f"{where} ({x.name})", IMAGE_FORMATS)
    except DataError as exc:
        _fail(name, str(exc))
    except OSError as exc:
        _fail(name, f"{where}: cannot read {x}: {exc.strerror or exc}.")


def _validate_pool_reference(cs: ConceptSet, roots: list[Path]) -> None:
    if cs.default_pool is None:
        return
    found = [r / cs.default_pool for r in roots if (r / cs.default_pool / MANIFEST).is_file()]
    if not found:
        _fail(cs.name, f"default_pool {cs.default_pool!r} does not exist in {_where(roots)}.")
    pool_dir = found[0]
    pool = _read_manifest(pool_dir)
    if pool.get("modality") != cs.modality:
        _fail(
            cs.name,
            f"default_pool {cs.default_pool!r} is a {pool.get('modality')} set; "
            f"it must be {cs.modality} like this set.",
        )
    if pool.get("kind") != "random_pool":
        _fail(cs.name, f"default_pool {cs.default_pool!r} is not a random_pool set.")


# --------------------------------------------------------------------------- reading


def _read_manifest(folder: Path) -> dict:
    """Parse ``folder/concept.json`` into a dict, checking size, encoding and JSON syntax."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ConceptSetError(f"{folder} is not a concept set: it has no {MANIFEST}.")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ConceptSetError(
            f"{path} is {size / MB:.1f} MB; the manifest limit is {MAX_MANIFEST_BYTES // MB} MB."
        )
    try:
        data = load_json(decode_utf8(path.read_bytes(), str(path)), str(path))
    except DataError as exc:
        raise ConceptSetError(str(exc)) from None
    except OSError as exc:
        raise ConceptSetError(f"cannot read {path}: {exc.strerror or exc}.") from None
    if not isinstance(data, dict):
        raise ConceptSetError(f"{path} must hold a JSON object, not {type(data).__name__}.")
    return data


def _from_manifest(data: dict, folder: Path) -> ConceptSet:
    """Build a ConceptSet from a manifest dict, resolving image paths safely."""
    label = data.get("name", folder.name)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        _fail(label, f"{MANIFEST} is missing key(s): {', '.join(missing)}.")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        _fail(label, f"{MANIFEST} has unknown key(s): {', '.join(unknown)}; allowed: "
              f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}.")
    lists = {}
    for which in _LISTS:
        items = data.get(which, [])
        if not isinstance(items, list):
            _fail(label, f"{which} must be a list, not {type(items).__name__}.")
        if data["modality"] == "image":
            items = [_manifest_path(label, x, folder, which, i) for i, x in enumerate(items)]
        lists[which] = items
    return ConceptSet(
        name=data["name"],
        modality=data["modality"],
        kind=data["kind"],
        description=data["description"],
        default_pool=data.get("default_pool"),
        paired=data.get("paired", False),
        format=data["format"],
        folder=folder,
        **lists,
    )


def _manifest_path(label: object, entry: object, folder: Path, which: str, i: int) -> Path:
    """Resolve an image path from the manifest, refusing anything outside ``folder/which/``."""
    where = f"{which}[{i}]"
    if not isinstance(entry, str):
        _fail(label, f"{where} must be a relative path string, not {type(entry).__name__}.")
    rel = PurePosixPath(entry)
    if "\\" in entry or rel.is_absolute() or ".." in rel.parts or rel.parts[:1] != (which,):
        _fail(label, f"{where} path {entry!r} escapes the set folder; image paths must be "
              f"relative and under {which}/.")
    path = folder / rel
    # Symlinks could still point elsewhere: compare real locations.
    if not path.resolve().is_relative_to(folder.resolve()):
        _fail(label, f"{where} path {entry!r} resolves outside the set folder.")
    return path


def _load_folder(
    folder: Path, root: Path | list[Path] | None, *, check_folder_name: bool = True,
    check_files: bool = True
) -> ConceptSet:
    cs = _from_manifest(_read_manifest(folder), folder)
    cs.validate(root, check_files=check_files)
    if check_folder_name and cs.name != folder.name:
        _fail(cs.name, f"manifest name {cs.name!r} differs from its folder name {folder.name!r}.")
    return cs


def load_concept_set(path_or_name: str | Path, root: str | Path | None = None) -> ConceptSet:
    """Load and validate a concept set, given its folder (a path) or its name.

    A name is looked up under ``root``, or without one in :func:`concept_roots` (the user's
    folder, then the shipped sets); ``default_pool`` is checked in the same folders. A path
    is loaded as is (the pool is checked only when ``root`` is given).
    """
    if isinstance(path_or_name, Path) or "/" in path_or_name or os.sep in path_or_name:
        folder = Path(path_or_name)
        if folder.name == MANIFEST:
            folder = folder.parent
        if not folder.is_dir():
            raise ConceptSetError(f"concept-set folder not found: {folder}")
        return _load_folder(folder, Path(root) if root is not None else None)
    roots = concept_roots(root)
    name = check_name(path_or_name)
    for r in roots:
        if (r / name).is_dir():
            return _load_folder(r / name, roots)
    names = ", ".join(i.name for i in list_concept_sets(root)) or "none"
    raise ConceptSetError(
        f"no concept set named {path_or_name!r} in {_where(roots)}; available: {names}."
    )


def list_concept_sets(
    root: str | Path | None = None, modality: str | None = None, kind: str | None = None
) -> list[ConceptSetInfo]:
    """Metadata of every set under ``root`` (default: :func:`concept_roots`, the user's sets
    then the shipped ones), sorted by name, optionally filtered. ``source`` says whether a
    set is shipped (read-only) or the user's; a user's set hides a shipped one of its name.

    Reads manifests only (image files are not decoded). Broken sets are listed with
    ``error`` set, so they can be shown and fixed rather than silently skipped.
    """
    roots = concept_roots(root)
    folders: dict[str, Path] = {}
    for r in roots:
        if not r.is_dir():
            continue
        for folder in r.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                folders.setdefault(folder.name, folder)
    infos = [_info(folders[name], roots) for name in sorted(folders)]
    return [
        i for i in infos
        if (modality is None or i.modality == modality) and (kind is None or i.kind == kind)
    ]


def _info(folder: Path, roots: list[Path]) -> ConceptSetInfo:
    source = concept_source(folder)
    try:
        cs = _load_folder(folder, roots, check_files=False)
    except (UserInputError, OSError) as exc:  # one broken set must not hide the others
        return ConceptSetInfo(folder.name, "", "", "", 0, 0, False, None, folder, str(exc),
                              source)
    return ConceptSetInfo(
        name=cs.name,
        modality=cs.modality,
        kind=cs.kind,
        description=cs.description,
        n_examples=len(cs.examples),
        n_counterexamples=len(cs.counterexamples),
        paired=cs.paired,
        default_pool=cs.default_pool,
        path=folder,
        source=source,
    )


# --------------------------------------------------------------------------- writing


def _image_bytes(x: ImageExample) -> bytes:
    if isinstance(x, Image.Image):
        buf = io.BytesIO()
        # PNG cannot store e.g. CMYK or YCbCr; those become RGB.
        png_ok = x.mode in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
        (x if png_ok else x.convert("RGB")).save(buf, format="PNG")
        return buf.getvalue()
    return x.read_bytes()


def _planned_files(items: list, subdir: str) -> list[tuple[str, ImageExample]]:
    """Relative file names that saving gives image examples: ``examples/0000.png``, ..."""
    planned = []
    for i, x in enumerate(items):
        suffix = ".png" if isinstance(x, Image.Image) else x.suffix.lower()
        planned.append((f"{subdir}/{i:04d}{suffix}", x))
    return planned


def _set_files(cs: ConceptSet) -> list[tuple[str, bytes | ImageExample]]:
    """Every file of the set's folder: the manifest first, then the images."""
    manifest = json.dumps(cs.to_manifest(), indent=2, ensure_ascii=False) + "\n"
    files: list[tuple[str, bytes | ImageExample]] = [(MANIFEST, manifest.encode("utf-8"))]
    if cs.modality == "image":
        for which in _LISTS:
            files.extend(_planned_files(getattr(cs, which), which))
    return files


def _content(x: bytes | ImageExample) -> bytes:
    return x if isinstance(x, bytes) else _image_bytes(x)


def save_concept_set(
    cs: ConceptSet, root: str | Path | None = None, *, overwrite: bool = True
) -> Path:
    """Validate ``cs`` and write it to ``root/<name>/``; return that folder.

    Without ``root`` the set goes to the user's folder (:func:`user_concept_root`), its
    ``default_pool`` may be a shipped pool, and it may not take the name of a shipped set
    (that would hide it). The shipped sets are read-only: saving into their folder is refused.

    The set is written to a hidden temporary sibling folder and renamed into place, so a
    failed save leaves no partial set behind, and overwriting swaps the old set for the new
    one (the old one is restored if the swap fails). Image examples are copied (paths) or
    written as PNG (PIL images) into ``examples/``.
    """
    roots = concept_roots(root)
    root = roots[0]
    cs.validate(roots)
    _check_writable(root, cs.name, "save")
    target = root / cs.name
    if target.exists() and not overwrite:
        raise ConceptSetError(f"a concept set named {cs.name!r} already exists in {root}.")
    shadowed = [r for r in roots[1:] if (r / cs.name).is_dir()]
    if shadowed and not target.exists():
        raise ConceptSetError(
            f"a concept set named {cs.name!r} is shipped with attnxai (read-only); save yours "
            "under another name.")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cs.name}.tmp-", dir=root))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a saved set is an ordinary folder
        _write_files(tmp, _set_files(cs))
        _swap_into_place(tmp, target)
    except OSError as exc:
        raise ConceptSetError(f"could not save concept set {cs.name!r} to {root}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op once renamed into place
    return target


def _write_files(folder: Path, files: list[tuple[str, bytes | ImageExample]]) -> None:
    for rel, x in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(x, Path):
            shutil.copyfile(x, path)
        else:
            path.write_bytes(_content(x))


def _swap_into_place(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def delete_concept_set(name: str, root: str | Path | None = None, *, force: bool = False) -> None:
    """Delete the set ``name`` under ``root`` (default: the user's folder).

    Refuses (unless ``force``) when other sets name it as their ``default_pool``, and always
    for a shipped set (read-only).
    """
    roots = concept_roots(root)
    home = roots[0]
    folder = home / check_name(name)
    if not folder.is_dir():
        if any((r / name).is_dir() for r in roots[1:]):
            _check_writable(roots[-1], name, "delete")
        raise ConceptSetError(f"no concept set named {name!r} in {home}.")
    _check_writable(home, name, "delete")
    # Its users keep a pool when a shipped set of the same name takes over.
    still_there = any((r / name / MANIFEST).is_file() for r in roots[1:])
    users = [] if still_there else [i.name for i in list_concept_sets(root)
                                    if i.default_pool == name]
    if users and not force:
        raise ConceptSetError(
            f"concept set {name!r} is the default_pool of {', '.join(users)}; change those "
            "first or delete with force."
        )
    # Rename first so a half-finished delete never looks like a (broken) set.
    trash = home / f".{name}.del-{uuid.uuid4().hex[:8]}"
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------- import / export


def export_concept_set(name: str, zip_path: str | Path, root: str | Path | None = None) -> Path:
    """Write the set ``name`` to a zip holding ``<name>/concept.json`` (and its images).

    The zip is written to a temporary file and renamed (never over a special file), and its
    entries carry a fixed
    timestamp, so exporting the same set twice gives identical bytes.
    """
    cs = load_concept_set(name, root)
    zip_path = check_output(zip_path, example=f"{cs.name}.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, x in _set_files(cs):
            info = zipfile.ZipInfo(f"{cs.name}/{rel}", (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16  # a plain file, readable after unzip
            zf.writestr(info, _content(x), compress_type=zipfile.ZIP_DEFLATED)
    write_atomic(zip_path, buf.getvalue())
    return zip_path


def import_concept_set(
    zip_or_dir: str | Path, root: str | Path | None = None, *, overwrite: bool = False
) -> ConceptSet:
    """Import a set from a folder or a zip (as written by :func:`export_concept_set`) into
    ``root`` (default: the user's folder, as :func:`save_concept_set`), validating it fully;
    return the imported set.

    A zip may hold ``concept.json`` at its top or inside one folder. Members with absolute
    paths, ``..`` or symlinks are refused, sizes are bounded, and nothing is written to
    ``root`` unless the whole set is valid. The set keeps the name in its manifest.
    """
    src = Path(zip_or_dir)
    if src.is_dir():
        return _import_folder(_find_set_folder(src), root, overwrite)
    if src.is_file() and src.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="attnxai-import-") as tmp:
            _extract_zip(src, Path(tmp))
            return _import_folder(_find_set_folder(Path(tmp)), root, overwrite)
    raise ConceptSetError(f"{src} is neither a concept-set folder nor a .zip file.")


def _import_folder(folder: Path, root: str | Path | None, overwrite: bool) -> ConceptSet:
    cs = _load_folder(folder, None, check_folder_name=False)
    save_concept_set(cs, root, overwrite=overwrite)
    return load_concept_set(cs.name, root)


def _find_set_folder(folder: Path) -> Path:
    if (folder / MANIFEST).is_file():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file():
        return subdirs[0]
    raise ConceptSetError(f"{folder.name} holds no {MANIFEST} (at its top or in one folder).")


def _member_limit(rel: PurePosixPath) -> int:
    return MAX_MANIFEST_BYTES if rel.name == MANIFEST else MAX_IMAGE_BYTES


def _extract_zip(zip_path: Path, dest: Path) -> None:
    """Extract a concept-set zip into ``dest`` with path-traversal and size checks.

    Every member's path and declared size is checked before any is decompressed; members are
    then written one at a time, each read bounded by its limit whatever its header says.
    """
    try:
        with open_zip(zip_path) as zf:
            members = safe_zip_members(zf, MAX_ARCHIVE_BYTES, zip_path.name,
                                       member_limit=_member_limit,
                                       max_members=MAX_ARCHIVE_MEMBERS)
            read = bounded_zip_reader(zf, zip_path.name, MAX_ARCHIVE_BYTES)
            for rel, info in members.items():
                data = read(info, _member_limit(rel))
                if len(data) > _member_limit(rel):
                    raise ConceptSetError(
                        f"{zip_path.name}: {rel} is larger than the "
                        f"{format_bytes(_member_limit(rel))} limit although its zip header "
                        f"declares {format_bytes(info.file_size)}; refusing the archive.")
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
    except DataError as exc:
        raise ConceptSetError(str(exc)) from None
    except OSError as exc:
        raise ConceptSetError(f"could not unpack {zip_path.name} into a temporary folder: "
                              f"{exc.strerror or exc}.") from None


def load_audit_concepts(names: list[str], root: str | Path | None, modality: str
                        ) -> tuple[list[ConceptSet], dict[str, ConceptSet]]:
    """The named concept sets and the random pools they name, checked for modality."""
    concepts = [load_concept_set(n, root=root) for n in names]
    for c in concepts:
        if c.kind != "concept":
            raise ConceptSetError(f"{c.name!r} is a random pool, not a concept to test.")
        if c.modality != modality:
            raise ConceptSetError(f"Concept set {c.name!r} is {c.modality} but the model is {modality}.")
    pools = {}
    for c in concepts:
        if not c.default_pool:
            raise ConceptSetError(f"Concept set {c.name!r} names no default random pool.")
        if c.default_pool not in pools:
            pools[c.default_pool] = load_concept_set(c.default_pool, root=root)
    return concepts, pools
