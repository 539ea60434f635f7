"""Dynamic batching: one worker thread owns the model and steps waiting requests together.

Requests whose batch keys match (all but the seed) share one sampling batch; it knows nothing of HTTP.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import queue
import threading
import time

from poetgen.errors import BadInput, PoetgenError
from poetgen.generate import Generator
from poetgen.layout import layout_of
from poetgen.options import check_settings, setting
from poetgen.request import SERVER_MAX_BEST_OF, SERVER_MAX_CHARS, SERVER_MAX_POEMS, PreparedRequest
from poetgen.sampling import row_streams

PEAK_WINDOW_S = 1.0   # how far back a round looks for the load it should wait to gather
MAX_ROWS_ASKED = SERVER_MAX_POEMS * SERVER_MAX_BEST_OF   # the most rows a request to the server asks (160)
MAX_REQUEST_CHARS = MAX_ROWS_ASKED * layout_of("qilv").length   # serve's default --max-request-chars: 160 qilv rows
log = logging.getLogger("poetgen.batching")


class Busy(PoetgenError):
    """The queue of waiting requests is full; the caller should try again shortly."""


class Unavailable(PoetgenError):
    """The worker is down, or did not answer in time: the request was not served."""


class BatchFailed(PoetgenError):
    """Something failed inside the batch that held this request (logged with its traceback)."""


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    max_rows: int = setting(128, low=1, high=1024)       # rows (poems × best_of) stepped together at most; 1: one at a time
    max_wait_ms: float = setting(5.0, low=0, high=1000)  # how long a round waits for requests already arriving
    max_queue: int = setting(256, low=1)                 # requests waiting at most; more are answered 503
    timeout_s: float = setting(60.0, low=0, high=3600, low_open=True)   # seconds a request may wait; then 503
    # 10,240 takes every shi a request may ask (10 qilv × 16 candidates × 64); 48,000 (160 rows × 300) refuses nothing
    max_request_chars: int = setting(MAX_REQUEST_CHARS, low=1, high=MAX_ROWS_ASKED * SERVER_MAX_CHARS)   # rows × characters a request may step (n × best_of × its form's or tune's length, marks included; free verse: max_chars); more is refused (422)

    def validate(self) -> None:
        check_settings(self)


@dataclasses.dataclass
class Job:
    prepared: PreparedRequest              # validated request; its batch key decides its companions
    future: concurrent.futures.Future      # resolved with generate()'s dict, or the error

    @property
    def rows(self) -> int:
        return self.prepared.request.n * self.prepared.request.best_of

    @property
    def chars(self) -> int:
        """Rows × the characters each steps at most: what the job holds the worker for, roughly."""
        return self.rows * self.prepared.row_length


@dataclasses.dataclass
class BatchStats:
    requests: int = 0          # requests answered (or failed) by the worker
    batches: int = 0           # sampling batches run
    rows: int = 0              # poems sampled in them
    largest: int = 0           # rows in the largest batch
    abandoned: int = 0         # requests whose callers left before their round began: skipped, no rows spent

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
    """Queue of prepared requests, served by one thread in rounds of merged batches.

    Every request is answered: a failure inside a batch fails that batch's requests (BatchFailed) and
    the worker goes on; if the worker itself dies, what waits fails at once (Unavailable), and so does
    what is submitted later; a caller gives up after options.timeout_s (poetgen.serve does).
    """

    def __init__(self, generator: Generator, options: BatchOptions = BatchOptions()):
        options.validate()
        self.generator = generator
        self.options = options
        self.stats = BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=options.max_queue)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._arriving = 0                 # requests being read or prepared, not yet queued
        self._arriving_lock = threading.Lock()
        self._rounds: collections.deque[tuple[float, int]] = collections.deque()   # (start, rows) of recent rounds
        self.died: str | None = None       # why the worker ended unexpectedly, for /healthz

    @property
    def alive(self) -> bool:
        """The worker serves: its thread runs and has not died. `died` is set before the waiting requests
        are failed, so a client answered "worker is down" never finds /healthz still "ok" (the thread
        lives on for a moment after it failed them)."""
        return self._thread is not None and self._thread.is_alive() and self.died is None

    def start(self, warm_up: int = 0) -> None:
        """Start the worker. With `warm_up` (the most rows a batch can have: max_rows, or a larger single
        request, which is never split), return once it has stepped the model at the largest batches it
        can meet (Generator.warm_up), so that a server's memory is all taken before it serves; if that
        fails, the worker is down (`died` says why) and `alive` is False."""
        if not self.alive:
            self._stopping.clear()
            self.died = None
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(warm_up, ready), name="poetgen-batcher",
                                            daemon=True)
            self._thread.start()
            ready.wait()   # set once the worker serves, or has died (self.died says why)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the round in progress (waiting `timeout` at most), fail what still waits, end the thread.

        It never blocks on a full queue: the worker also sees the stop event between rounds."""
        if self._thread is None:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)   # wakes a worker blocked on an empty queue
        self._thread.join(timeout)
        self._thread = None
        self._fail_waiting(Busy("the server is shutting down"))

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
        if self._thread is not None and not self.alive:
            raise Unavailable(f"the generation worker is down ({self.died or 'stopped'}); restart the server")
        job = Job(prepared, concurrent.futures.Future())
        if job.chars > self.options.max_request_chars:
            raise too_large(job, self.options.max_request_chars)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy(f"the server is busy ({self.options.max_queue} requests waiting); try again shortly") from None
        return job.future

    def _run(self, warm_up: int, ready: threading.Event) -> None:
        jobs: list[Job] = []
        try:
            if warm_up:
                self.generator.warm_up(warm_up)
            ready.set()
            while not self._stopping.is_set():
                jobs = []
                stopping = self._round(jobs)
                if stopping:
                    return
        except BaseException as error:   # the worker is gone: nobody may wait for it in vain
            self.died = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            log.critical("the batching worker died", exc_info=error)
            down = Unavailable(f"the generation worker is down ({self.died})")
            for job in jobs:
                _fail(job, down)
            self._fail_waiting(down)
        finally:
            ready.set()

    def _round(self, jobs: list[Job]) -> bool:
        """Collect one round into `jobs` and serve it; a failure fails the round's unanswered requests."""
        try:
            stopping = self._collect(jobs)[1]
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]   # skip abandoned ones
            self.stats.abandoned += len(jobs) - len(live)
            for batch in split_round(live, self.options.max_rows):
                self._serve(batch)
        except Exception as error:
            log.exception("a round of %d requests failed", len(jobs))
            for job in jobs:
                _fail(job, _batch_failed(error))
            return False
        return stopping

    def _fail_waiting(self, error: Exception) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _fail(job, error)

    def _collect(self, jobs: list[Job] | None = None) -> tuple[list[Job], bool]:
        """Block for one job, then take what is queued or arrives within max_wait_ms, up to max_rows rows.
        Jobs go into `jobs` as they are taken, so the caller can answer them if anything fails.

        A round waits while requests are arriving, or while it is smaller than the largest round of
        the last second: under steady load, clients whose answers just left send again within a
        millisecond or two, and without the wait the rounds split into halves that alternate for
        good. A lone request on an idle server starts at once.
        """
        jobs = [] if jobs is None else jobs
        first = self._queue.get()
        if first is None:
            return jobs, True
        jobs.append(first)
        rows = first.rows
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
            if len(poems) != len(streams):
                raise RuntimeError(f"sampling returned {len(poems)} poems for {len(streams)} rows")
            backward = self._backward_scores(batch, poems)
        except Exception as error:  # the worker must outlive any failure; the callers see it
            log.exception("a batch of %d requests failed", len(batch))
            self._count(batch, len(streams))   # counted before anyone hears: /healthz never lags an answer
            for job in batch:
                _fail(job, _batch_failed(error))
            return
        share = (time.perf_counter() - started) / len(streams)   # a row's share of the batch's time
        offset, outcomes = 0, []
        for job in batch:
            try:   # a request's time is its rows' (n × best_of), as generate() times its own candidates
                outcomes.append(self.generator.finish(job.prepared, poems[offset:offset + job.rows],
                                                      share * job.rows, backward.get(id(job))))
            except Exception as error:
                log.exception("finishing a request failed")
                outcomes.append(_batch_failed(error))
            offset += job.rows
        self._count(batch, len(streams))
        for job, outcome in zip(batch, outcomes):
            if isinstance(outcome, Exception):
                _fail(job, outcome)
            else:
                _answer(job, outcome)

    def _backward_scores(self, batch: list[Job], poems: list[dict]) -> dict:
        """{id(job): its candidates' reverse-model scores} for the jobs ranked with it, all read in one
        batch: the reverse model's products, like the forward model's, cost little more for more rows."""
        spans, offset = [], 0
        for job in batch:
            if self.generator.ranks_backwards(job.prepared):
                spans.append((job, offset))
            offset += job.rows
        if not spans:
            return {}
        texts = [poem["text"] for job, start in spans for poem in poems[start:start + job.rows]]
        scores = self.generator.backward_scores(batch[0].prepared, texts)
        backward, at = {}, 0
        for job, _ in spans:
            backward[id(job)] = scores[at:at + job.rows]
            at += job.rows
        return backward

    def _count(self, batch: list[Job], rows: int) -> None:
        self.stats.requests += len(batch)
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.largest = max(self.stats.largest, rows)


def too_large(job: Job, limit: int) -> BadInput:
    """The refusal of a request that would hold the worker longer than a server takes (max_request_chars)."""
    request, free = job.prepared.request, job.prepared.layout is None
    counts = f"{request.n} poem{'s' * (request.n > 1)} × {request.best_of} candidate{'s' * (request.best_of > 1)}"
    return BadInput(f"this request steps {job.chars:,} characters ({counts} × {job.prepared.row_length} characters"
                    f"{' (max_chars)' if free else ''}), more than this "
                    f"server's limit of {limit:,}: ask fewer poems (n) or candidates (best_of)"
                    f"{' or a lower max_chars' if free else ''}, or start the server with a higher "
                    f"--max-request-chars", field="request")


def _batch_failed(error: Exception) -> Exception:
    """What the callers see: BadInput as it is (their request), anything else as BatchFailed."""
    if isinstance(error, BadInput):
        return error
    text = " ".join(str(error).split())[:200]
    failed = BatchFailed(f"internal error ({type(error).__name__}{': ' + text if text else ''}); the server logged it")
    failed.__cause__ = error
    return failed


def _fail(job: Job, error: Exception) -> None:
    """Answer a job with an error unless it is answered (or abandoned) already."""
    if job.future.done() or not (job.future.running() or job.future.set_running_or_notify_cancel()):
        return
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        job.future.set_exception(error)


def _answer(job: Job, result: dict) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        job.future.set_result(result)
