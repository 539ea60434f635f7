"""An exclusive lock on a bundle directory or an output file, so two runs never write one place.

The kernel's flock on an open lock file is the lock (a killed holder loses it at once); the file's
text (pid, host, command, since) only names the holder. It does not lock readers out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from poetgen.atomic import RANDOM_PART, ask_stop, check_parent, fill_leftovers, stop_asked
from poetgen.errors import InUse

logger = logging.getLogger(__name__)
LOCK_NAME = ".poetgen.lock"   # inside a bundle directory; a file's lock is .<name>.lock beside it


def _command() -> str:
    args = list(sys.argv)
    if args and (args[0].endswith("__main__.py") or Path(args[0]).name == "poetgen"):
        args[0] = "poetgen"
    return " ".join(args)


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {when}: {holder.get('command', '?')}"


def _alive(holder: dict) -> bool:
    """Whether the holder's pid still runs here (only answerable on its own host)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(signum, frame):
    ask_stop()           # remembered too: where this lands (a gc callback, a __del__) Python may drop it
    raise KeyboardInterrupt   # unwinds the with-blocks: the lock and half-written files are cleaned up


def default_handler(sig: int) -> bool:
    """Whether `sig`'s handler is Python's own (SIG_DFL, or KeyboardInterrupt for SIGINT) or a held lock's:
    one a host program installed (or SIG_IGN) is its own, to be left alone."""
    handler = signal.getsignal(sig)
    return handler is _terminate or handler in (signal.SIG_DFL, signal.default_int_handler)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM stops the block as Ctrl-C does (KeyboardInterrupt: `interrupted`, exit 130) where it would
    kill the process by the signal (exit 143, no message): `poetgen serve` while its model loads. A stop
    whose KeyboardInterrupt was dropped where it landed still stops at the end of the block. Only the main
    thread gets signals; a handler someone else installed is left alone (as Lock leaves it)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stop_asked():
        raise KeyboardInterrupt


class Lock:
    """Held from __enter__ to __exit__ (every exit path: return, exception, Ctrl-C, SIGTERM)."""

    def __init__(self, lock_path: Path, target: Path, notice=None):
        self.lock_path, self.target = Path(lock_path), Path(target)
        self.notice = notice or logger.warning
        self.fd: int | None = None
        self.created_dir = False
        self._previous_sigterm = None

    @classmethod
    def directory(cls, path: str | os.PathLike, notice=None) -> "Lock":
        """Lock a bundle directory (created if missing; removed again at release if left empty)."""
        path = Path(path)
        return cls(path / LOCK_NAME, path, notice)

    @classmethod
    def file(cls, path: str | os.PathLike, notice=None) -> "Lock":
        """Lock an output file that is being written (the lock file sits beside it)."""
        path = Path(path)
        return cls(path.with_name(f".{path.name}.lock"), path, notice)

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        handled_sigterm = self._previous_sigterm is not None
        self.release()
        if handled_sigterm and stop_asked():   # a SIGTERM whose KeyboardInterrupt was dropped on its way
            ask_stop(False)
            if exc_type is None:
                raise KeyboardInterrupt

    def acquire(self) -> None:
        if self.lock_path.parent != self.target:
            check_parent(self.target)        # the messages a write there would give, before we write
        elif not self.target.exists():
            try:   # two runs may create it at once: the second one finds it there
                self.target.mkdir(parents=True)
                self.created_dir = True
            except FileExistsError:
                pass
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                self._refuse()
            # The holder before us may have unlinked the file between our open and our flock.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        stale = self._read(fd)
        if stale:
            gone = "that process is gone" if not _alive(stale) else "it no longer holds the lock"
            self.notice(f"taking over the stale lock on {self.target} ({_describe(stale)}); {gone}")
            self._remove_leftovers()
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "since": time.time()}
        os.ftruncate(fd, 0)
        # ASCII: a command line may hold bytes that are no UTF-8 (a file name), as lone surrogates
        os.pwrite(fd, (json.dumps(record) + "\n").encode("ascii"), 0)
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)

    def moved(self, to: str | os.PathLike) -> None:
        """The holder renamed the locked directory to `to` (its lock file went with it): released there."""
        to = Path(to)
        self.lock_path, self.target = to / self.lock_path.name, to

    def _remove_leftovers(self) -> None:
        """The temporary files and folders a killed holder left, named as poetgen.atomic names them (a
        random part of 8 characters): `.NAME.XXXXXXXX.tmp` beside the target, and inside a locked folder
        and its folders (resume/; not one with a lock of its own) the same and Staged's `.STEM.XXXXXXXX.SUFFIX`. Only the lock's holder writes them, and it is gone;
        `.NAME.XXXXXXXX.old` (a replaced output not yet removed) is left alone, and so is the folder a fill
        left inside the target (atomic.fill_leftovers): `export` recognises the interrupted fill by it, and
        `--force` redoes it (removed here, the half export beside it read as a folder that holds no export)."""
        places = [(self.target.parent, re.compile(rf"\.{re.escape(self.target.name)}\.{RANDOM_PART}\.tmp"))]
        if self.lock_path.parent == self.target:   # a bundle: its files, and its folders' (resume/, saved each
            inside = re.compile(rf"\..+\.{RANDOM_PART}\.(?!old$)[A-Za-z0-9]+")   # epoch) but one with a lock of
            places += [(self.target, inside)] + [   # its own (reverse/, which another run may be writing)
                (folder, inside) for folder in self.target.iterdir()
                if folder.is_dir() and not folder.name.startswith(".") and not (folder / LOCK_NAME).exists()]
        kept = set(fill_leftovers(self.target)) if self.lock_path.parent == self.target else set()
        for folder, pattern in places:
            if not folder.is_dir():
                continue
            for leftover in (p for p in folder.iterdir() if pattern.fullmatch(p.name) and p not in kept):
                with contextlib.suppress(OSError):
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()

    def _refuse(self) -> None:
        holder = self._read_path()
        who = _describe(holder) if holder else "another process"
        raise InUse(f"{self.target} is in use by {who}; wait for it to finish or stop it")

    def _read(self, fd: int) -> dict:
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            return record if isinstance(record, dict) else {}
        return {}

    def _read_path(self) -> dict:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        with contextlib.suppress(FileNotFoundError):
            # unlinked before unlocking (a waiter re-checks the inode), and only if it is still ours: a
            # directory swapped out under us (export --force) may hold another process's lock by now
            if os.stat(self.lock_path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.lock_path)
        os.close(self.fd)
        self.fd = None
        if self.created_dir:
            with contextlib.suppress(OSError):
                self.target.rmdir()    # only if the run left nothing in it
