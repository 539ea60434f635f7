"""Dynamic batching: one worker thread owns the model and steps waiting requests together.

Requests whose batch keys match (all but the seed) share one sampling batch; it knows nothing of HTTP.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import queue
import threading
import time

from poetgen.errors import BadInput, PoetgenError
from poetgen.generate import Generator
from poetgen.request import PreparedRequest
from poetgen.sampling import row_streams

PEAK_WINDOW_S = 1.0   # how far back a round looks for the load it should wait to gather


class Busy(PoetgenError):
    """The queue of waiting requests is full; the caller should try again shortly."""


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    max_rows: int = 64          # poems stepped together at most; 1 serves one request at a time
    max_wait_ms: float = 5.0    # how long a round waits for requests already arriving (none: no wait)
    max_queue: int = 256        # requests waiting at most; more are refused as Busy

    def validate(self) -> None:
        if self.max_rows < 1:
            raise BadInput(f"max batch must be at least 1 (1 turns batching off), not {self.max_rows}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise BadInput(f"batch wait must be between 0 and 1000 ms, not {self.max_wait_ms}")
        if self.max_queue < 1:
            raise BadInput(f"queue length must be at least 1, not {self.max_queue}")


@dataclasses.dataclass
class Job:
    prepared: PreparedRequest              # validated request; its batch key decides its companions
    future: concurrent.futures.Future      # resolved with generate()'s dict, or the error

    @property
    def rows(self) -> int:
        return self.prepared.request.n * self.prepared.request.best_of


@dataclasses.dataclass
class BatchStats:
    requests: int = 0          # requests answered (or failed) by the worker
    batches: int = 0           # sampling batches run
    rows: int = 0              # poems sampled in them
    largest: int = 0           # rows in the largest batch

    def as_dict(self) -> dict:
        mean = self.rows / self.batches if self.batches else 0.0
        return {**dataclasses.asdict(self), "mean_rows": round(mean, 2)}


def split_round(jobs: list[Job], max_rows: int) -> list[list[Job]]:
    """Split one round into batches: equal keys only, at most max_rows rows (a job is never split)."""
    by_key: dict[tuple, list[list[Job]]] = {}
    for job in jobs:
        batches = by_key.setdefault(job.prepared.batch_key(), [[]])
        current = batches[-1]
        if current and sum(j.rows for j in current) + job.rows > max_rows:
            current = []
            batches.append(current)
        current.append(job)
    return [batch for batches in by_key.values() for batch in batches]


class Batcher:
    """Queue of prepared requests, served by one thread in rounds of merged batches."""

    def __init__(self, generator: Generator, options: BatchOptions = BatchOptions()):
        options.validate()
        self.generator = generator
        self.options = options
        self.stats = BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=options.max_queue)
        self._thread: threading.Thread | None = None
        self._arriving = 0                 # requests being read or prepared, not yet queued
        self._arriving_lock = threading.Lock()
        self._rounds: collections.deque[tuple[float, int]] = collections.deque()   # (start, rows) of recent rounds

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if not self.alive:
            self._thread = threading.Thread(target=self._run, name="poetgen-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the round in progress, fail what still waits, and end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Busy("the server is shutting down"))

    @contextlib.contextmanager
    def arriving(self):
        """Mark a request on its way to submit(): a round waits for it rather than leave without it."""
        with self._arriving_lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._arriving_lock:
                self._arriving -= 1

    def submit(self, prepared: PreparedRequest) -> concurrent.futures.Future:
        job = Job(prepared, concurrent.futures.Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy(f"the server is busy ({self.options.max_queue} requests waiting); try again shortly") from None
        return job.future

    def _run(self) -> None:
        while True:
            jobs, stopping = self._collect()
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]   # skip abandoned ones
            for batch in split_round(live, self.options.max_rows):
                self._serve(batch)
            if stopping:
                return

    def _collect(self) -> tuple[list[Job], bool]:
        """Block for one job, then take what is queued or arrives within max_wait_ms, up to max_rows rows.

        A round waits while requests are arriving, or while it is smaller than the largest round of
        the last second: under steady load, clients whose answers just left send again within a
        millisecond or two, and without the wait the rounds split into halves that alternate for
        good. A lone request on an idle server starts at once.
        """
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, rows = [first], first.rows
        now = time.monotonic()
        deadline = now + self.options.max_wait_ms / 1000
        target = min(self.options.max_rows, self._recent_peak(now))
        while rows < self.options.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                if not (self._arriving or rows < target) or time.monotonic() >= deadline:
                    break
                try:
                    job = self._queue.get(timeout=min(0.001, max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
            rows += job.rows
        self._rounds.append((now, rows))
        return jobs, False

    def _recent_peak(self, now: float) -> int:
        while self._rounds and now - self._rounds[0][0] > PEAK_WINDOW_S:
            self._rounds.popleft()
        return max((rows for _, rows in self._rounds), default=0)

    def _serve(self, batch: list[Job]) -> None:
        streams = [stream for job in batch for stream in row_streams(job.prepared.seed, 0, job.rows)]
        started = time.perf_counter()
        try:
            poems = self.generator.sample_rows(batch[0].prepared, streams)
        except Exception as error:  # the worker must outlive any failure; the callers see it
            for job in batch:
                job.future.set_exception(error)
            self._count(batch, len(streams))
            return
        share = (time.perf_counter() - started) / len(streams)
        offset = 0
        for job in batch:
            result = self.generator.finish(job.prepared, poems[offset:offset + job.rows], share * job.prepared.request.n)
            offset += job.rows
            job.future.set_result(result)
        self._count(batch, len(streams))

    def _count(self, batch: list[Job], rows: int) -> None:
        self.stats.requests += len(batch)
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.largest = max(self.stats.largest, rows)
