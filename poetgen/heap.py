"""Gives freed heap memory back to the operating system after a model is loaded.

Loading reads the weights file whole, parses it into arrays and reshapes those into the stepper's own
(tens of MB that live for a moment). glibc keeps most of what they freed on its heap, so a process that
generates one poem would carry it to the end: `poetgen generate`'s peak memory was ~25 MiB higher for it.
malloc_trim(0) hands those pages back; elsewhere (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed() -> bool:
    """Return the heap's free pages to the system; True where the C library could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
