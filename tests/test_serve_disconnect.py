"""A client that disconnects while its request waits in the queue frees its rows: the worker skips it."""

import asyncio
import json
import threading

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from conftest import wait_until  # noqa: E402
from test_serve import Held, TestClient  # noqa: E402

from poetgen.batching import BatchOptions  # noqa: E402
from poetgen.serve import create_app  # noqa: E402


async def leaving_client(client, body: dict, leave_when, sent: list) -> None:
    """POST `body` to /api/generate straight through the app, then leave (http.disconnect) once
    `leave_when()` holds; what the app sends goes into `sent`."""
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        while not leave_when():
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/generate", "raw_path": b"/api/generate", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await client.app(scope, receive, send)


def test_a_client_that_leaves_while_queued_costs_no_rows(generator):
    held = Held(generator)
    with TestClient(create_app(held)) as client:
        first = threading.Thread(target=client.post, args=("/api/generate",), kwargs={"json": {"seed": 1, "best_of": 1}})
        first.start()
        assert held.entered.wait(30)                      # the worker is busy with the first request
        batcher = client.app.state.batcher
        sent = []
        asyncio.run(asyncio.wait_for(leaving_client(client, {"seed": 2, "n": 5, "best_of": 1},   # it leaves once
                                                     lambda: batcher._queue.qsize() >= 1, sent), 60))   # queued
        assert sent[0]["status"] == 499                   # the handler returned without waiting for poems
        held.release.set()
        first.join(60)
        wait_until(lambda: batcher.stats.abandoned >= 1, "the worker skipping the left request")
        assert batcher.stats.abandoned == 1
        assert batcher.stats.rows == 1                    # only the first request's one poem was sampled
        assert client.post("/api/generate", json={"seed": 3}).status_code == 200


def test_a_request_whose_time_runs_out_while_queued_costs_no_rows(generator):
    """The README's `abandoned`: requests whose clients left, or whose --request-timeout ran out, before
    their round; either way the worker skips them."""
    held = Held(generator)
    with TestClient(create_app(held, BatchOptions(timeout_s=0.5))) as client:
        answers = {}
        first = threading.Thread(target=lambda: answers.update(first=client.post("/api/generate", json={
            "seed": 1, "best_of": 1})))
        first.start()
        try:
            assert held.entered.wait(30)                   # the worker is held with the first request...
            late = client.post("/api/generate", json={"seed": 2, "n": 5, "best_of": 1})   # ...this one queues
            assert late.status_code == 503 and "no answer within 0.5 s" in late.json()["detail"][0]["message"]
        finally:
            held.release.set()
            first.join(60)
        batcher = client.app.state.batcher
        wait_until(lambda: batcher.stats.abandoned >= 1, "the worker skipping the timed-out request")
        assert batcher.stats.abandoned == 1 and batcher.stats.rows == 1   # only the first one's poem


def test_a_client_that_leaves_while_sending_its_body_is_no_internal_error(generator, caplog):
    """A client gone half-way through its body was logged as "internal error on /api/generate" with
    starlette's ClientDisconnect traceback, then uvicorn's second one."""
    sent = []
    with TestClient(create_app(generator)) as client:
        messages = [{"type": "http.disconnect"}, {"type": "http.request", "body": b'{"seed":1', "more_body": True}]

        async def receive():
            return messages.pop()

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/generate", "raw_path": b"/api/generate", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        asyncio.run(asyncio.wait_for(client.app(scope, receive, send), 60))
        assert sent[0]["status"] == 499
        assert "internal error" not in caplog.text and "Traceback" not in caplog.text
        assert client.post("/api/generate", json={"seed": 3, "best_of": 1}).status_code == 200


class LateStop:
    """The real generator, except that its first polish, once told to stop, holds its thread until the test
    lets it go: a polish whose request was cut short runs on to its next line."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.started, self.stopping, self.release = threading.Event(), threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def polish(self, prepared, result, stop=None):
        self.calls += 1
        if self.calls > 1:
            return self.inner.polish(prepared, result, stop)
        self.started.set()
        assert stop is not None and stop.wait(60), "the polish was never told to stop"
        self.stopping.set()
        assert self.release.wait(60), "the test never released the polish"
        return result


def test_a_polish_cut_short_keeps_its_place_until_its_work_leaves_its_thread(generator, monkeypatch):
    """A request that asked for polish freed its place among --max-queue when it was answered (its client
    gone, or its time up) while its polish ran on to its next line: a burst of them let more requests queue
    for the polishing threads than --max-queue and the threads."""
    from poetgen import serve

    monkeypatch.setattr(serve, "cores", lambda: 1)   # one polishing thread: places for 1 + max_queue 1
    slow, answers = LateStop(generator), {}

    def ask(name, body):
        answers[name] = client.post("/api/generate", json=body)

    with TestClient(create_app(slow, BatchOptions(max_queue=1, max_wait_ms=0))) as client:
        batcher, sent = client.app.state.batcher, []
        asyncio.run(asyncio.wait_for(leaving_client(client, {"seed": 1, "polish": 1}, slow.started.is_set, sent), 60))
        assert sent[0]["status"] == 499 and slow.stopping.wait(60)   # answered; its polish still holds the thread
        waiting = threading.Thread(target=ask, args=("waiting", {"seed": 2, "polish": 1}))
        refused = threading.Thread(target=ask, args=("refused", {"seed": 3, "polish": 1}))
        try:
            waiting.start()
            wait_until(lambda: batcher.stats.requests == 2, "the second request's batch")   # it waits to be polished
            refused.start()
            wait_until(lambda: "refused" in answers or batcher.stats.requests == 3, "the third request refused or batched")
            assert "refused" in answers, "a third polish request was let in: the places held 3 for 1 thread + 1"
            assert answers["refused"].status_code == 503 and "polished" in answers["refused"].text
        finally:
            slow.release.set()
            for thread in (waiting, refused):
                if thread.ident is not None:
                    thread.join(60)
        assert answers["waiting"].status_code == 200
        assert client.post("/api/generate", json={"seed": 4, "polish": 1}).status_code == 200   # every place free again
