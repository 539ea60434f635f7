"""NumPy's BLAS on one thread for a block of generation (int8 steps, a batch split across cores), shared by
threads that overlap and kept right across a fork; it runs no model and starts no thread.
"""

from __future__ import annotations

import contextlib
import functools

from poetgen.quiet import SharedSetting


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's BLAS on one thread for the block. Its thread count is the process's: blocks that overlap in
    several threads (a Poet used from several) share one limit (quiet.SharedSetting), set by the first in
    and lifted by the last out. An OpenBLAS on OpenMP counts per thread: each block sets and restores its
    own (one shared limit left the second thread unlimited, the first at one)."""
    own = [library for library in _blas().lib_controllers if _per_thread(library)]
    found = [library.num_threads for library in own]
    for library in own:
        library.set_num_threads(1)
    try:
        with _ONE_BLAS_THREAD.held():
            yield
    finally:
        for library, count in zip(own, found):
            library.set_num_threads(count)


def with_one_blas_thread(work):
    """`work` run under one_blas_thread() in whichever thread calls it: for a pool's threads, whose own count
    an OpenBLAS on OpenMP keeps (the caller's block left them unlimited); elsewhere the limit they share."""
    def limited(*args):
        with one_blas_thread():
            return work(*args)
    return limited


def _limit_blas() -> list[int]:
    counts = [library.num_threads for library in _blas().lib_controllers if not _per_thread(library)]
    _set_blas_threads([1] * len(counts))
    return counts


def _per_thread(library) -> bool:   # OpenBLAS on OpenMP: omp_set_num_threads sets the calling thread's
    return getattr(library, "threading_layer", None) == "openmp"


def _set_blas_threads(counts: list[int]) -> None:
    """Set each process-wide BLAS library's thread count, and let any thread set it next: threadpoolctl (3.6
    on) hands OpenBLAS to the first thread that sets it, and ignores the others until that one lets go."""
    for library, count in zip([library for library in _blas().lib_controllers if not _per_thread(library)], counts):
        _set(library, count)


def _set(library, count: int) -> None:
    library.set_num_threads(count)
    let_go = getattr(library, "clear_controlling_thread", None)
    if let_go is not None:
        let_go()


_ONE_BLAS_THREAD = SharedSetting(_limit_blas, _set_blas_threads)


def set_process_blas_threads(threads: int) -> None:
    """NumPy's BLAS on `threads` threads from now on (`serve --blas-threads`), which one_blas_thread may still
    lower in another thread: threadpoolctl.threadpool_limits() called so kept a process-wide OpenBLAS for
    the calling thread (3.6 on), and the batching threads' one-thread limit did nothing."""
    for library in _blas().lib_controllers:
        _set(library, threads)


def find_blas() -> None:
    """Find NumPy's BLAS now (threadpoolctl imported, the loaded libraries searched), not in the first block."""
    _blas()


@functools.lru_cache(maxsize=None)
def _blas():
    """NumPy's BLAS (a threadpoolctl controller), found once: a search of the loaded libraries costs
    milliseconds (a Generator finds it as it loads where it can need it: generate.import_first_use)."""
    import threadpoolctl

    return threadpoolctl.ThreadpoolController().select(user_api="blas")
