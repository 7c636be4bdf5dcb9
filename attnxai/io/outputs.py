"""Where attnxai writes files: every output path is checked before any work starts, and every
file is written whole or not at all.

An output path must be a new file or an existing regular file in a folder attnxai can write,
and none of the files the command must never replace (``protect``: the audit store and its
write-ahead log, the command's inputs). Special files (devices, FIFOs, sockets) are refused: the
write-to-a-temporary-then-rename step would swap them for a regular file. Writability is probed
by creating and removing a temporary file in the folder, which is the only test that holds for
every file system (``os.access`` says yes to root on ``/sys`` and ``/proc``).

Every exported CSV goes through :func:`csv_bytes`, which neutralises cells a spreadsheet would
run as a formula (OWASP's rule: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading ``'``).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from attnxai.errors import UserInputError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class OutputError(UserInputError):
    """An output path attnxai must not or cannot write."""


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same resolved path, or the same inode (a hard
    link, or another spelling that ``resolve`` cannot see through)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): the resolved paths decided
        return False


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_special(path: Path, example: str) -> None:
    """OutputError when ``path`` exists (following links) and is not a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path} is a folder; give a file name like {path / example}.")
    if not stat.S_ISREG(mode):
        raise OutputError(f"Refusing to write {path}: it is {_kind(mode)}, not a regular file; "
                          "give the path of a new or regular file.")


def check_output(path: str | Path, *, example: str = "out.csv",
                 protect: Mapping[Path, str] | None = None) -> Path:
    """``path`` as a file attnxai may write, checked before any work starts.

    Raises :class:`OutputError` (exit 2) when it is a folder or another non-regular file, one of
    ``protect`` (files, each with what it is; matched by resolved path or inode), or in a
    folder that is missing or not writable. ``example`` names a file to suggest in a folder.
    """
    out = Path(path).expanduser()
    _refuse_special(out, example)
    for kept, role in (protect or {}).items():
        if _same_file(out, kept):
            raise OutputError(f"Refusing to write {out}: it is {role}, which this command must "
                              "not replace; give another file name.")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"Cannot write {out}: folder {folder} does not exist.")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"Cannot write {out}: cannot create files in {folder} "
                          f"({exc.strerror or exc}).") from None
    return out


def store_files(db: str | Path) -> dict[Path, str]:
    """The audit store at ``db`` and its write-ahead log, as files to protect."""
    db = Path(db).expanduser()
    return {db: "the audit database", db.with_name(db.name + ".wal"):
            "the audit database's write-ahead log"}


def input_files(paths: Iterable[str | Path | None]) -> dict[Path, str]:
    """The existing files among ``paths`` (a command's inputs; anything else is skipped), as
    files to protect."""
    found = (Path(p).expanduser() for p in paths if p)
    return {p: "an input of this command" for p in found if p.is_file()}


def check_outputs(paths: Sequence[str | Path], *, example: str = "out.csv",
                  protect: Mapping[Path, str] | None = None) -> list[Path]:
    """:func:`check_output` for each of ``paths`` (files one command writes together), which
    must also be distinct files."""
    outs = [check_output(p, example=example, protect=protect) for p in paths]
    for i, a in enumerate(outs):
        for b in outs[:i]:
            if _same_file(a, b):
                raise OutputError(f"{a} would be written twice by this command "
                                  f"(as {b} too); give another file name.")
    return outs


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place, so a reader
    sees the whole file or none; never renames over a file that is not regular. File-system
    failures (a full disk, a read-only folder) are an :class:`OutputError`."""
    path = Path(path)
    _refuse_special(path, "out.csv")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _refuse_special(path, "out.csv")  # something appeared there meanwhile
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that a spreadsheet would read as a formula prefixed by
    ``'`` (numbers are left as they are: ``-0.5`` is a number to a spreadsheet, not a formula)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV with formulas neutralised (:func:`neutralise_formulas`)."""
    return neutralise_formulas(frame).to_csv(index=False).encode("utf-8")
