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


def test_a_client_that_leaves_while_queued_costs_no_rows(generator):
    held = Held(generator)
    with TestClient(create_app(held)) as client:
        first = threading.Thread(target=client.post, args=("/api/generate",), kwargs={"json": {"seed": 1, "best_of": 1}})
        first.start()
        assert held.entered.wait(30)                      # the worker is busy with the first request
        batcher = client.app.state.batcher
        sent = []

        async def leaving_client():
            messages = [{"type": "http.request", "body": json.dumps({"seed": 2, "n": 5, "best_of": 1}).encode(),
                         "more_body": False}]

            async def receive():
                if messages:
                    return messages.pop()
                while batcher._queue.qsize() < 1:         # queued behind the first: now the client goes
                    await asyncio.sleep(0.01)
                return {"type": "http.disconnect"}

            async def send(message):
                sent.append(message)

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/api/generate", "raw_path": b"/api/generate", "query_string": b"",
                     "root_path": "", "headers": [(b"content-type", b"application/json")],
                     "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
            await client.app(scope, receive, send)

        asyncio.run(asyncio.wait_for(leaving_client(), 60))
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
