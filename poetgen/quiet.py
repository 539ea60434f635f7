"""Imports TensorFlow and Keras without the C++ start-up chatter they print to stderr, whether the
commands show progress at all, and whether a command that writes its result can write it.

TensorFlow logs oneDNN and CUDA notices before its log level is read; only muting fd 2 hides them.
"""

from __future__ import annotations

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
def tensorflow_required():
    """A missing TensorFlow or Keras (an install with --no-deps: generation needs neither) as one line
    naming the fix, not an internal error: `train`, `export`, `evaluate` and `quantize` need them."""
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in TENSORFLOW_MODULES:
            raise
        from poetgen.errors import BadInput

        raise BadInput(f"this needs TensorFlow and Keras, which generation does not ({error.name} is missing): "
                       f"pip install tensorflow") from None


_MUTING = threading.Lock()
_muted = {"blocks": 0, "saved": -1}   # muted_stderr() blocks running, in any thread; the real fd 2 they keep


@contextlib.contextmanager
def muted_stderr():
    """Silence fd 2 for a block (TensorFlow's converters log from C++); Python errors still propagate.
    fd 2 is the process's: blocks that overlap in several threads (two models loaded at once) share one
    muting, the first in silencing it and the last out restoring it (each restoring the fd 2 it found
    left a program's stderr on /dev/null for good when the first in was the first out)."""
    with _MUTING:
        if not _muted["blocks"]:
            sys.stderr.flush()
            _muted["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _muted["blocks"] += 1
    try:
        yield
    finally:
        with _MUTING:
            _muted["blocks"] -= 1
            if not _muted["blocks"]:
                sys.stderr.flush()
                os.dup2(_muted["saved"], 2)
                os.close(_muted["saved"])


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
