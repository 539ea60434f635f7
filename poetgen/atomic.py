"""Writing files and directories so that an interruption never leaves a half-written one.

Everything is written next to its destination under a temporary name, synced, then renamed over it;
a write error (disk full, read-only, quota) becomes one OutputError naming the file, the old file kept.
A small file (a bundle's config or tokenizer) is read with a bound (read_small_text).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable

from poetgen.errors import BadInput, BadModel, OutputError


def check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise BadInput(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise BadInput(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write {path}: directory {parent} is not writable")


def make_parents(path: Path) -> None:
    """Create the missing directories above `path` (as `train --out runs/x` does), or a one-line error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass   # a file where a directory should be: check_parent says so
    except OSError as error:
        raise BadInput(f"cannot write {path}: cannot create directory {path.parent} "
                       f"({error.strerror or type(error).__name__})") from None


# What a full disk, a read-only mount or a quota raises from inside a writer's own block.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EIO})


def write_failed(path: Path, error: OSError) -> OutputError:
    """One sentence: which file, the operating system's reason, and that the old one is intact."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    name = errno.errorcode.get(error.errno, "")
    # a folder holding only hidden files is the one a run's lock made, not a previous output
    earlier = path.exists() and not (path.is_dir() and all(p.name.startswith(".") for p in path.iterdir()))
    kept = f"the previous {path.name} is unchanged" if earlier else "nothing was written"
    return OutputError(f"cannot write {path}: {reason}{f' ({name})' if name else ''}; {kept}")


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_STOP = threading.Event()   # a signal asked the process to stop (poetgen.lock's SIGTERM handler)


def ask_stop(asked: bool = True) -> None:
    """Record (or, with False, forget) that a signal asked to stop. Its KeyboardInterrupt can be swallowed
    where it lands (Python prints and drops one raised in a gc callback or a __del__), so no write is
    committed once a stop was asked: the commit raises KeyboardInterrupt instead."""
    _STOP.set() if asked else _STOP.clear()


def stop_asked() -> bool:
    return _STOP.is_set()


def _unless_stopping() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


def _commit(tmp: Path, path: Path) -> None:
    """Make the finished temporary file durable, then put it in place: the one step a torn write skips."""
    _unless_stopping()
    _sync(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Yield a file open for writing; it replaces `path` only if the block finishes."""
    path = Path(path)
    check_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 would surprise whoever shares the file
    try:
        try:
            text = {} if "b" in mode else {"encoding": "utf-8", "errors": "backslashreplace"}   # as Stage.text
            with os.fdopen(fd, mode, **text) as handle:   # closing flushes: a full disk may show only then
                yield handle
        except OSError as error:
            if error.errno not in WRITE_ERRNOS:   # the caller's own reading, say: not ours to name
                raise
            raise write_failed(path, error) from None
        try:
            _commit(Path(tmp), path)
        except OSError as error:
            raise write_failed(path, error) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save(path: str | os.PathLike, save: Callable[[Path], object]) -> None:
    """Let `save` write a temporary file with the same suffix, then rename it over `path`."""
    with staged() as stage:
        stage.save(path, save)


class Staged:
    """Files written aside (staged()), put in place together when all are written."""

    def __init__(self):
        self.pending: list[tuple[Path, Path]] = []   # (temporary file, its final path)

    def save(self, path: str | os.PathLike, save: Callable[[Path], object]) -> None:
        """Let `save` write a temporary file with `path`'s suffix (as atomic_save)."""
        path = Path(path)
        check_parent(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        self.pending.append((Path(tmp), path))
        try:
            save(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())
            _ready(Path(tmp), path)
        except OSError as error:
            raise write_failed(path, error) from None

    def text(self, path: str | os.PathLike, text: str) -> None:
        # a path given on the command line may hold bytes that are no UTF-8 (lone surrogates): written
        # as \udcff, which JSON reads back as the same character
        self.save(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))


def _ready(tmp: Path, path: Path) -> None:
    """A staged file for `path` is written whole and durable: the last step where a full disk shows."""
    _sync(tmp)


@contextlib.contextmanager
def staged():
    """Write several files aside, then rename them all into place: a write that fails (a full disk)
    replaces none of them, so files that belong together (a bundle's model, tokenizer and config)
    never mix two versions. The renames themselves do not fail for want of space."""
    stage = Staged()
    try:
        yield stage
        _unless_stopping()
        for tmp, path in stage.pending:
            try:
                os.replace(tmp, path)
            except OSError as error:
                raise write_failed(path, error) from None
    finally:
        for tmp, _ in stage.pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False, fill: tuple[str, ...] | None = None):
    """Yield a fresh temporary directory that becomes `path` when the block finishes.

    An existing `path` is replaced only with force=True, and only after the new one is complete. With
    `fill` (names, possibly none), an existing `path` that its caller found empty is filled instead:
    the finished entries are moved into it, those named in `fill` last (a mounted volume cannot be
    renamed, and the folder's own mode and owner stay).
    """
    path = Path(path)
    check_parent(path)
    fill = fill if fill is not None and path.is_dir() and not path.is_symlink() else None
    # written inside a directory to fill: a mounted volume is another file system than its parent
    tmp = Path(tempfile.mkdtemp(dir=path if fill is not None else path.parent, prefix=f".{path.name}.",
                                suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        try:
            yield tmp
        except OSError as error:
            if error.errno not in WRITE_ERRNOS:
                raise
            raise write_failed(path, error) from None
        try:   # the slow part, where a full disk or a Ctrl-C lands: before anything moves
            _sync_directory(tmp)
        except OSError as error:
            raise write_failed(path, error) from None
        _unless_stopping()   # a swapped-out old directory must never be left aside
        if fill is not None:
            _fill_directory(tmp, path, fill)
            tmp.rmdir()
        elif path.exists() or path.is_symlink():
            if not force:
                raise FileExistsError(path)
            _replace_directory(tmp, path)
        else:
            try:
                _commit(tmp, path)
            except OSError as error:
                raise write_failed(path, error) from None
    except BaseException:
        _remove(tmp)
        raise


RANDOM_PART = "[a-z0-9_]{8}"   # the random part of a name tempfile.mkstemp or mkdtemp makes


def fill_leftovers(path: Path) -> list[Path]:
    """The temporary folders that atomic_directory(fill=…) made inside the directory `path`
    (`.NAME.XXXXXXXX.tmp`) and a killed process never removed: its unmoved entries (the model among them,
    moved last); what it had moved lies beside them."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{RANDOM_PART}\.tmp")
    if not path.is_dir() or path.is_symlink():
        return []
    return sorted(p for p in path.iterdir() if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())


def _sync_directory(tmp: Path) -> None:
    """Make every file of the finished `tmp` durable (the directory itself is synced by its _commit)."""
    for file in tmp.rglob("*"):
        if file.is_file() and not file.is_symlink():
            _sync(file)


def _fill_directory(tmp: Path, path: Path, last: tuple[str, ...]) -> None:
    """Move the synced `tmp`'s entries into the empty directory `path`, those named in `last` (what
    makes it an export) after the others; a failure or an interrupt removes what was moved, leaving
    `path` as it was. A name someone else created there meanwhile is a FileExistsError."""
    moved = []
    try:
        for entry in sorted(tmp.iterdir(), key=lambda entry: entry.name in last):
            target = path / entry.name
            if target.exists() or target.is_symlink():
                raise FileExistsError(target)
            os.rename(entry, target)
            moved.append(target)
        _sync(path)
    except BaseException as error:
        for target in moved:
            _remove(target)
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            raise write_failed(path, error) from None
        raise


def _replace_directory(tmp: Path, path: Path) -> None:
    """Swap the synced `tmp` in for `path` (two renames, nothing slow between them); if the swap fails
    or is interrupted (a stop asked meanwhile: _commit's check), the old directory goes back where it was."""
    # a fresh name of our own (reserved, then freed for the rename): a user's .NAME.old is never removed
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    old.rmdir()
    try:
        os.replace(path, old)
    except OSError as error:
        raise write_failed(path, error) from None
    try:
        _commit(tmp, path)
    except BaseException as error:   # an OSError, or a KeyboardInterrupt between the two renames
        if not path.exists():
            os.replace(old, path)   # the swap did not happen: the old directory goes back
        else:
            _remove(old)            # it did, just before the interrupt: the new export stands whole
        if isinstance(error, OSError):
            raise write_failed(path, error) from None
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


MAX_SMALL_FILE = 64 << 20   # bytes: a config or tokenizer larger than this is not one (a link to /dev/zero)


def read_small_text(path: str | os.PathLike, what: str) -> str:
    """A small JSON file of a bundle as text, refused as corrupt `what` when it is not a regular file (a
    pipe would block the open) or is larger than MAX_SMALL_FILE: read whole, a link to /dev/zero filled
    the memory (a MemoryError, or the kernel killed the process)."""
    if not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path):   # a folder: IsADirectoryError
        raise BadModel(f"{path}: corrupt {what} (not a regular file)")
    with open(path, "rb") as handle:
        data = handle.read(MAX_SMALL_FILE + 1)
    if len(data) > MAX_SMALL_FILE:
        raise BadModel(f"{path}: corrupt {what} (larger than {MAX_SMALL_FILE >> 20} MiB)")
    return data.decode("utf-8")   # a UnicodeDecodeError is the caller's "not valid JSON"
