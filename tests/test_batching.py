"""The batching worker under injected failures: every request is answered, the worker goes on, and a
dead or stuck worker turns into 503s and a /healthz that says so."""

import threading
import time
import types
import warnings

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

import poetgen.batching as batching  # noqa: E402
from conftest import wait_until  # noqa: E402
from poetgen.batching import BatchFailed, Batcher, BatchOptions, Busy, Unavailable  # noqa: E402
from poetgen.generate import PoemRequest  # noqa: E402
from poetgen.sampling import SampleOptions  # noqa: E402
from poetgen.serve import create_app  # noqa: E402


class WorkerKilled(BaseException):
    """Not an Exception: what no per-batch guard catches (a stand-in for whatever kills a thread)."""


class Faulty:
    """The real generator, with failures and holds injected by the test."""

    def __init__(self, generator, fail_finish_seed=None, hold=False, kill=False):
        self.generator = generator
        self.fail_finish_seed, self.kill = fail_finish_seed, kill
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def sample_rows(self, job, streams):
        self.entered.set()
        assert self.release.wait(60), "the test never released the model"
        if self.kill:
            raise WorkerKilled("injected")
        return self.generator.sample_rows(job, streams)

    def finish(self, job, candidates, elapsed, backward=None):
        if job.seed == self.fail_finish_seed:
            raise ZeroDivisionError("injected in finish")
        return self.generator.finish(job, candidates, elapsed, backward)


def prepared(generator, seed):
    return generator.prepare(PoemRequest(sample=SampleOptions(seed=seed)))


def test_a_failing_finish_fails_only_its_request_and_the_worker_goes_on(generator):
    batcher = Batcher(Faulty(generator, fail_finish_seed=2), BatchOptions(max_wait_ms=0))
    futures = [batcher.submit(prepared(generator, seed)) for seed in (1, 2, 3)]   # one batch, queued first
    batcher.start()
    try:
        with pytest.raises(BatchFailed, match="ZeroDivisionError") as failed:
            futures[1].result(timeout=120)
        assert "\n" not in str(failed.value)
        assert futures[0].result(timeout=120)["poems"] and futures[2].result(timeout=120)["poems"]
        assert batcher.stats.batches == 1
        assert batcher.submit(prepared(generator, 4)).result(timeout=120)["poems"]
        assert batcher.alive
    finally:
        batcher.stop()


def test_a_failing_round_answers_its_requests_and_the_worker_goes_on(generator, monkeypatch):
    calls, split_round = [], batching.split_round

    def split_once_badly(jobs, max_rows):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise KeyError("injected in the round")
        return split_round(jobs, max_rows)

    monkeypatch.setattr(batching, "split_round", split_once_badly)
    batcher = Batcher(generator, BatchOptions(max_wait_ms=0))
    futures = [batcher.submit(prepared(generator, seed)) for seed in (1, 2)]
    batcher.start()
    try:
        for future in futures:
            with pytest.raises(BatchFailed, match="KeyError"):
                future.result(timeout=120)
        assert batcher.submit(prepared(generator, 3)).result(timeout=120)["poems"]
        assert calls == [2, 1] and batcher.alive
    finally:
        batcher.stop()


def test_a_failing_batch_is_a_one_line_500_and_the_server_goes_on(generator):
    with TestClient(create_app(Faulty(generator, fail_finish_seed=7))) as client:
        failed = client.post("/api/generate", json={"seed": 7})
        assert failed.status_code == 500
        [problem] = failed.json()["detail"]
        assert "ZeroDivisionError" in problem["message"] and "\n" not in problem["message"]
        assert client.post("/api/generate", json={"seed": 8}).status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_dead_worker_answers_everyone_with_503_and_healthz_says_so(generator):
    faulty = Faulty(generator, hold=True, kill=True)
    answers = {}

    def ask(seed):
        answers[seed] = client.post("/api/generate", json={"seed": seed})

    with TestClient(create_app(faulty)) as client:
        batcher = client.app.state.batcher
        threads = [threading.Thread(target=ask, args=(seed,)) for seed in (1, 2)]
        threads[0].start()
        assert faulty.entered.wait(60)                  # the first is in the worker...
        threads[1].start()
        wait_until(lambda: batcher._queue.qsize() == 1)  # ...and the second waits in the queue
        faulty.release.set()                            # then the worker dies
        for thread in threads:
            thread.join(120)
        for seed in (1, 2):
            assert answers[seed].status_code == 503, answers[seed].text
            assert "worker is down" in answers[seed].json()["detail"][0]["message"]
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "down"
        assert "WorkerKilled" in health.json()["error"]
        later = client.post("/api/generate", json={"seed": 3})   # refused at once, not queued forever
        assert later.status_code == 503 and "worker is down" in later.json()["detail"][0]["message"]


def test_a_stuck_worker_times_requests_out_with_503(generator):
    faulty = Faulty(generator, hold=True)
    try:
        with TestClient(create_app(faulty, BatchOptions(timeout_s=0.5))) as client:
            answer = client.post("/api/generate", json={"seed": 1})
            assert answer.status_code == 503 and "no answer within 0.5 s" in answer.json()["detail"][0]["message"]
            assert faulty.entered.is_set()
            faulty.release.set()
            assert client.post("/api/generate", json={"seed": 2}).status_code == 200   # it recovers
    finally:
        faulty.release.set()


def test_stop_never_blocks_on_a_full_queue(generator):
    faulty = Faulty(generator, hold=True)
    batcher = Batcher(faulty, BatchOptions(max_queue=1, max_wait_ms=0))
    batcher.start()
    worker = batcher._thread
    first = batcher.submit(prepared(generator, 1))
    assert faulty.entered.wait(60)                 # the worker holds the first...
    second = batcher.submit(prepared(generator, 2))  # ...and the queue is full
    stopper = threading.Thread(target=batcher.stop, kwargs={"timeout": 0.2})
    stopper.start()
    stopper.join(60)
    try:
        assert not stopper.is_alive()              # stop() returned although the worker is stuck
        with pytest.raises(Busy, match="shutting down"):
            second.result(timeout=10)
    finally:
        faulty.release.set()
    assert first.result(timeout=120)["poems"]      # the round in progress still finishes
    worker.join(60)
    assert not worker.is_alive()


def test_submit_after_the_worker_died_is_refused(generator):
    batcher = Batcher(Faulty(generator, kill=True), BatchOptions(max_wait_ms=0))
    batcher.start()
    with pytest.raises(Unavailable, match="WorkerKilled"):
        batcher.submit(prepared(generator, 1)).result(timeout=120)
    wait_until(lambda: not batcher.alive)
    with pytest.raises(Unavailable, match="worker is down"):
        batcher.submit(prepared(generator, 2))
    batcher.stop()


class Warming:
    """The real generator; warm_up records its thread and size, or fails when told to."""

    def __init__(self, generator, fail=False):
        self.generator, self.fail, self.calls = generator, fail, []

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def warm_up(self, max_rows):
        self.calls.append((threading.current_thread().name, max_rows))
        if self.fail:
            raise MemoryError("injected in the warm-up")
        self.generator.warm_up(max_rows)


def test_start_with_warm_up_returns_once_the_worker_has_warmed_up(generator):
    warming = Warming(generator)
    batcher = Batcher(warming, BatchOptions(max_rows=40, max_wait_ms=0))
    batcher.start(warm_up=40)
    try:
        assert warming.calls == [("poetgen-batcher", 40)]   # in the thread that steps the model, before start() returned
        assert batcher.submit(prepared(generator, 1)).result(timeout=120)["poems"]
    finally:
        batcher.stop()
    plain = Warming(generator)
    Batcher(plain, BatchOptions(max_wait_ms=0)).start()   # tests and library users skip it
    assert plain.calls == []


def test_a_failed_warm_up_leaves_the_worker_down_not_hanging(generator):
    batcher = Batcher(Warming(generator, fail=True), BatchOptions(max_wait_ms=0))
    batcher.start(warm_up=8)   # returns: the worker died
    assert not batcher.alive and "MemoryError" in batcher.died
    with pytest.raises(Unavailable, match="worker is down"):
        batcher.submit(prepared(generator, 1))
    batcher.stop()


def test_a_batched_request_s_time_per_poem_counts_its_candidates(generator, monkeypatch):
    """ms_per_poem is what `generate` reports: the time of a poem's best_of candidates. Under batching it
    was the batch's time per row, best_of times too small (16 times for best_of 16)."""
    readings = []

    def perf_counter():   # the batch's time: 1.6 s between its start and its end, whatever the machine
        readings.append(1.6 * len(readings))
        return readings[-1]

    monkeypatch.setattr(batching, "time", types.SimpleNamespace(perf_counter=perf_counter, monotonic=time.monotonic))
    batcher = Batcher(generator, BatchOptions(max_wait_ms=0))
    requests = [PoemRequest(n=1, best_of=4, sample=SampleOptions(seed=1)),   # 4 rows of the batch's 8
                PoemRequest(n=2, best_of=2, sample=SampleOptions(seed=2))]   # 4 rows too, for two poems
    futures = [batcher.submit(generator.prepare(request)) for request in requests]   # one batch
    batcher.start()
    try:
        results = [future.result(timeout=120) for future in futures]
    finally:
        batcher.stop()
    assert batcher.stats.batches == 1 and batcher.stats.rows == 8 and len(readings) == 2
    assert [result["ms_per_poem"] for result in results] == [800.0, 400.0]   # 0.2 s a row: 4 rows, 1 or 2 poems


def test_a_request_is_bounded_by_rows_times_the_characters_they_step(generator):
    """A request was bounded by its rows only: one 莺啼序 at n 10 × best_of 16 (160 rows of 295 characters)
    held the shipped model's worker ~7.7 s, a wujue of as many rows ~0.4 s."""
    from poetgen.errors import BadInput

    def ask(limit, **fields):
        batcher = Batcher(generator, BatchOptions(**({"max_request_chars": limit} if limit else {})))
        return batcher.submit(generator.prepare(PoemRequest(sample=SampleOptions(seed=1), **fields)))   # queued only

    ask(None, form="qilv", n=10, best_of=16)   # the default takes every shi a server request may ask: 10,240
    ask(None, tune="满江红", n=2, best_of=8)     # and ordinary ci: 16 rows × 115
    with pytest.raises(BadInput) as refused:
        ask(None, tune="莺啼序", n=10, best_of=16)
    assert refused.value.field == "request"
    assert str(refused.value) == ("this request steps 47,200 characters (10 poems × 16 candidates × 295 characters), "
                                  "more than this server's limit of 10,240: ask fewer poems (n) or candidates "
                                  "(best_of), or start the server with a higher --max-request-chars")
    ask(48, form="wujue", n=1, best_of=2)              # 2 rows × 24: at the limit, taken
    ask(48, form="free", max_chars=24, n=2, best_of=1)   # free verse: rows × max_chars
    for fields in ({"form": "wujue", "best_of": 3}, {"form": "free", "max_chars": 25, "best_of": 2}):
        with pytest.raises(BadInput, match="more than this server's limit of 48") as refused:
            ask(48, **fields)
    assert "(1 poem × 2 candidates × 25 characters (max_chars))" in str(refused.value)
    assert "or a lower max_chars" in str(refused.value)
