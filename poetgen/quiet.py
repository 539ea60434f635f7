"""Imports TensorFlow and Keras without the C++ start-up chatter they print to stderr, whether the
commands show progress at all, and whether a command that writes its result can write it; a process-wide
setting (muted stderr, the BLAS limit) that threads share and a fork keeps right.

TensorFlow logs oneDNN and CUDA notices before its log level is read; only muting fd 2 hides them.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import importlib
import logging
import os
import sys
import threading


def import_tensorflow():
    """Import tensorflow and keras once, with stderr muted meanwhile; return tensorflow. Importing them
    draws from Python's and NumPy's global random generators: a library caller's are left as they were."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"]
    import random

    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    python_random, numpy_random = random.getstate(), np.random.get_state()
    try:
        with muted_stderr():
            import tensorflow as tf
            importlib.import_module("keras")   # loaded here too, under the muted stderr

            tf.config.list_physical_devices()   # the CUDA probe logs here
    finally:
        random.setstate(python_random)
        np.random.set_state(numpy_random)
    return tf


TENSORFLOW_MODULES = ("tensorflow", "keras")


@contextlib.contextmanager
def tensorflow_required(needs: str = "this needs TensorFlow and Keras, which generation does not"):
    """A missing TensorFlow or Keras (an install with --no-deps: generation needs neither) as one line
    naming the fix, not an internal error: `train`, `export`, `evaluate` and `quantize` need them, and
    int8=True where a bundle lacks its int8 products. `needs`: what the line says needs them."""
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in TENSORFLOW_MODULES:
            raise
        from poetgen.errors import BadInput

        raise BadInput(f"{needs} ({error.name} is missing): pip install tensorflow") from None


class SharedSetting:
    """A process-wide setting (fd 2, BLAS's thread count) that blocks in several threads share: the first in
    sets it (`set_up()` returns what it found), the last out restores that (`restore(found)`). Each block
    restoring what it found left the setting for good when the first in was the first out. A forked child
    keeps the blocks of the thread that forked alone, the others' threads not being in it, and restores at
    once when that one holds none: it kept stderr on /dev/null and BLAS on one thread for good."""

    def __init__(self, set_up, restore):
        self._set_up, self._restore = set_up, restore
        self._lock = threading.Lock()
        self._blocks: collections.Counter = collections.Counter()   # thread id -> its blocks now running
        self._found = None
        if hasattr(os, "register_at_fork"):   # a fork waits for a change under way (the child could not finish it)
            os.register_at_fork(before=lambda: self._lock.acquire(), after_in_parent=lambda: self._lock.release(),
                                after_in_child=self._forked)

    @contextlib.contextmanager
    def held(self):
        me = threading.get_ident()
        with self._lock:
            if not self._blocks:
                self._found = self._set_up()
            self._blocks[me] += 1
        try:
            yield
        finally:
            with self._lock:
                self._blocks[me] -= 1
                if not self._blocks[me]:
                    del self._blocks[me]
                if not self._blocks:
                    found, self._found = self._found, None
                    self._restore(found)

    def _forked(self) -> None:
        me = threading.get_ident()
        held, own = bool(self._blocks), self._blocks[me]
        self._blocks = collections.Counter({me: own} if own else {})
        self._lock.release()   # taken by the before-fork hook
        if held and not own:
            found, self._found = self._found, None
            self._restore(found)


def _mute() -> int | None:
    """fd 2 on /dev/null; returns a copy of what it was, None where it was closed (a daemon's, `2>&-`):
    /dev/null holds its place meanwhile, or a file opened in the block would take fd 2 and the notices."""
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:   # no fd 2 (EBADF): load() failed with it
        saved = None
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != 2:
        os.dup2(devnull, 2)
        os.close(devnull)
    return saved


def _unmute(saved: int | None) -> None:
    _flush_stderr()
    if saved is None:
        os.close(2)   # closed, as it was
        return
    os.dup2(saved, 2)
    os.close(saved)


def _flush_stderr() -> None:
    """What Python buffered for fd 2, written before it changes; sys.stderr is None where the program has no
    standard error (pythonw, `2>&-` at start: load() raised AttributeError)."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):   # a closed or failing stderr has nothing to keep
            sys.stderr.flush()


_MUTING = SharedSetting(_mute, _unmute)


def muted_stderr():
    """Silence fd 2 for a block (TensorFlow's converters log from C++); Python errors still propagate.
    fd 2 is the process's: blocks that overlap in several threads (two models loaded at once) share one
    muting (SharedSetting), the first in silencing it and the last out restoring it."""
    return _MUTING.held()


def progress_shown() -> bool:
    """Whether a command shows progress (bars, counts) on stderr: not under --quiet (poetgen's loggers
    at WARNING), which keeps only warnings and errors."""
    return logging.getLogger("poetgen").isEnabledFor(logging.INFO)


def require_output() -> None:
    """Refuse, before any work, a command whose result is its standard output (generate, evaluate,
    tunes, corpus stats, check) when that is closed (`>&-`): Python leaves sys.stdout None, and print()
    then drops the result without a word, exit 0. A command whose result is a file (train, export) goes
    on. One that fails later (`> /dev/full`) is writing_stdout's to report."""
    if sys.stdout is None:
        from poetgen.errors import BadInput

        raise BadInput("standard output is closed: nowhere to write the result")


@contextlib.contextmanager
def writing_stdout(written=()):
    """Write a command's lines to standard output: its result (generate, check, tunes, corpus stats,
    evaluate), or, given the files WRITTEN, what a command whose result is files (corpus import, quantize,
    export, train) wrote once they are in place. A failing stdout (`> /dev/full` read "No space left on
    device", naming nothing, and after files as if they had failed) or a closed one (`>&-`: click.echo
    drops the lines without a word, exit 0) is one OutputError naming standard output, and the files,
    whole; a reader gone (`| head -1`) is left to the CLI, which exits 0. Wrap the writes alone: an
    OSError raised in the block is taken for standard output's."""
    from poetgen.errors import OutputError

    whole = f"; {', '.join(map(str, written))} {'is' if len(written) == 1 else 'are'} written whole" if written else ""
    if sys.stdout is None:
        raise OutputError(f"cannot write standard output: it is closed{whole}")
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        name = errno.errorcode.get(error.errno, "")
        raise OutputError(f"cannot write standard output: {reason}{f' ({name})' if name else ''}{whole}") from None
