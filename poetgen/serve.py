"""`poetgen serve`'s web app: the page at /, the JSON API, and health checks over one loaded model.

Bodies are read by poetgen.serve_body and prepared in a worker thread; the model runs only in
poetgen.batching's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from poetgen.batching import BatchFailed, Batcher, BatchOptions, Busy, Unavailable
from poetgen.errors import BadInput, BadModel
from poetgen.generate import Generator, in_every_thread, traditional
from poetgen.polish import VERSIONS
from poetgen.quantize import cores
from poetgen.request import SERVER_MAX_BEST_OF, SERVER_MAX_POEMS, PoemRequest
from poetgen.scansion import scan
from poetgen.serve_body import MAX_TUNE, CheckBody, GenerateBody, body_field, read, refusal
from poetgen.tunes import tune_table

logger = logging.getLogger(__name__)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone: with the body read, the server's next message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, pending: asyncio.Future):
    """The result, or None if the client left first: then a job still queued is cancelled, and the
    batching worker skips it, so a gone client's rows go to the others."""
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({pending, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not pending.done():
            pending.cancel()   # the client left, or the caller stopped waiting (a timeout)
    return None if pending.cancelled() else pending.result()


MAX_POLISH_THREADS = 4   # polishing threads at most (one per core below that): polish batches are 4 rows


class PolishPlaces:
    """Places for the requests that ask for polish: one per polishing thread and --max-queue more. A request
    holds one from its body on and hands it to its polish work, which frees it when it leaves its thread:
    a request cut short (its time up, its client gone) is answered while its polish runs on to its next
    line, and freeing the place then let more requests wait for the threads than the limit."""

    def __init__(self, places: int):
        self.places, self.taken, self._lock = places, 0, threading.Lock()   # freed from polishing threads too

    def take(self) -> "PolishPlace | None":
        with self._lock:
            if self.taken >= self.places:
                return None
            self.taken += 1
        return PolishPlace(self)

    def free(self, *_) -> None:
        with self._lock:
            self.taken -= 1


class PolishPlace:
    """One request's place: freed when the request ends, or, once handed to its polish work, when that ends."""

    def __init__(self, places: PolishPlaces):
        self.places, self.handed = places, False

    def hand_to(self, work) -> None:
        self.handed = True
        work.add_done_callback(self.places.free)   # in the polishing thread, before its result reaches the loop

    def release(self) -> None:
        if not self.handed:
            self.places.free()



PRIVATE_KEYS = ("path", "corpus", "out")   # config.json's places on the serving machine (corpus.path)


def public_config(config: dict) -> dict:
    """The bundle's config.json as GET /api/model shows it: without the file-system paths it records or
    may record (the corpus file it was trained on), which anyone who can reach a server on --host 0.0.0.0
    would otherwise read; every other field as recorded."""
    def shown(value):
        if isinstance(value, dict):
            return {key: shown(item) for key, item in value.items()
                    if not (key in PRIVATE_KEYS and (isinstance(item, str) or item is None))}
        if isinstance(value, list):
            return [shown(item) for item in value]
        return value
    return shown(config)

def create_app(generator: Generator, options: BatchOptions = BatchOptions()) -> Starlette:
    """The ASGI app; the batching thread runs from startup to shutdown."""
    batcher = Batcher(generator, options)
    # polishing (a request's `polish`) runs after its batch on a few threads of its own: each thread
    # that steps the model keeps its own interpreters (~20 MB), so the web server's many threads must not
    polishing_threads = min(cores(), MAX_POLISH_THREADS)
    polishers = ThreadPoolExecutor(polishing_threads, thread_name_prefix="poetgen-polish")
    # beyond a thread each, at most max_queue requests wait for polish, as at most max_queue wait for a batch
    # (the page asks polish of each)
    polish_places = PolishPlaces(polishing_threads + options.max_queue)
    page = resources.files("poetgen").joinpath("static/index.html").read_text(encoding="utf-8")
    bundle = generator.bundle

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(generator.prepare, PoemRequest(theme="秋"))   # loads jieba's dictionary now
        await run_in_threadpool(generator.fold_tables)   # whole now (~1 s): memory flat while serving
        try:
            # each thread that steps the model steps it at the largest batches it can meet, for the same reason
            await run_in_threadpool(batcher.start, max(options.max_rows, SERVER_MAX_POEMS * SERVER_MAX_BEST_OF))
            if not batcher.alive:
                raise BadModel(f"the generation worker failed to start ({batcher.died})")
            await run_in_threadpool(in_every_thread, polishers, polishing_threads,
                                    lambda: generator.warm_up(VERSIONS))
            try:
                yield
            except asyncio.CancelledError:   # a forced stop (a second Ctrl-C): an end like any other
                pass
        finally:   # not awaited: a forced stop (a second Ctrl-C) cancels this task while it ends
            batcher.stop()
            polishers.shutdown(wait=False, cancel_futures=True)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def healthz(request: Request) -> JSONResponse:
        body = {"status": "ok" if batcher.alive else "down",
                "batching": {**batcher.stats.as_dict(), "max_rows": options.max_rows}}
        if batcher.died:
            body["error"] = f"the generation worker died ({batcher.died})"
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    shown = public_config(bundle.config)

    async def model_info(request: Request) -> JSONResponse:
        return JSONResponse({"name": bundle.path.name, "config": shown, "metrics": bundle.config.get("metrics", {})})

    every_tune: list[bytes] = []   # the answer without q (the page asks it on every load), built once

    def tune_listing(query: str) -> bytes:
        """The JSON of GET /api/tunes?q=query. The whole list is ~140 KB, ~20 ms to build: in a worker
        thread, so that the event loop (every other request) never waits for it."""
        if not query and every_tune:
            return every_tune[0]
        table = tune_table()
        body = JSONResponse({"tunes": [{"name": t.name, "other_names": list(t.names[1:]),
                                        "pinyin": t.full_pinyin,   # every full form: the 词谱's are not aligned with its names
                                        "keys": table.keys_of(t),   # what finds it, as tunes.lookup_key spells it
                                        "characters": [v.length for v in t.variants],
                                        "usual": t.usual} for t in table.search(query)],   # the variant written by default
                             "knows_ci": generator.knows_ci()}).body
        if not query:
            every_tune[:] = [body]
        return body

    async def tunes(request: Request) -> Response:
        """GET /api/tunes?q=…: the tunes whose names or pinyin contain q (all without q)."""
        query = request.query_params.get("q", "")[:MAX_TUNE]
        return Response(await run_in_threadpool(tune_listing, query), media_type="application/json")

    def timed_out() -> JSONResponse:
        return refusal(503, [("request", f"no answer within {options.timeout_s:g} s; try again")],
                       headers={"Retry-After": "1"})

    async def generate(request: Request) -> JSONResponse:
        try:
            return await answer(request)
        except asyncio.CancelledError:   # the server is stopping at once (a second Ctrl-C): still an answer
            return refusal(503, [("request", "the server is stopping; try again later")])

    async def check(request: Request) -> JSONResponse:
        """POST /api/check: the scansion `poetgen check --format json` prints; no model step."""
        body = await read(request, CheckBody, options.timeout_s)
        if isinstance(body, JSONResponse):
            return body
        try:
            scansion = await run_in_threadpool(scan, body.text, body.form, body.tune or None, body.variant)
        except BadInput as error:
            return refusal(422, [(body_field(error), str(error))])
        return JSONResponse(scansion.to_dict())

    async def answer(request: Request) -> JSONResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.timeout_s   # the whole request: body, batch and polish
        left = lambda: max(deadline - loop.time(), 0)   # noqa: E731
        body = await read(request, GenerateBody, options.timeout_s)
        if isinstance(body, JSONResponse):
            return body
        place = polish_places.take() if body.polish else None
        if body.polish and place is None:   # refused before any work
            return refusal(503, [("request", f"the server is busy ({options.max_queue} requests waiting to be "
                                             f"polished); try again shortly")], headers={"Retry-After": "1"})
        try:
            return await write(request, body, left, place)
        finally:
            if place is not None:
                place.release()   # unless its polish work holds it: then when that leaves its thread

    async def write(request: Request, body: GenerateBody, left, place: PolishPlace | None) -> JSONResponse:
        """The answer to a valid request: its poems, polished if it asks, or the refusal."""
        try:
            with batcher.arriving():
                prepared = await run_in_threadpool(generator.prepare, body.poem_request())
                future = batcher.submit(prepared)
            result = await asyncio.wait_for(_unless_disconnected(request, asyncio.wrap_future(future)),
                                            left())   # a timeout cancels the job too
        except BadInput as error:
            return refusal(422, [(body_field(error), str(error))])
        except Busy as error:
            return refusal(503, [("request", str(error))], headers={"Retry-After": "1"})
        except Unavailable as error:
            return refusal(503, [("request", str(error))])
        except asyncio.TimeoutError:
            return timed_out()
        except BatchFailed as error:   # the worker logged the traceback
            return refusal(500, [("request", str(error))])
        if result is not None and body.polish:   # after the batch, on the polishing threads (the batcher never
            # waits for them), within the same time limit; a client that leaves stops it at its next line
            stop = threading.Event()
            work = polishers.submit(generator.polish, prepared, result, stop)
            place.hand_to(work)
            polished = asyncio.wrap_future(work)
            try:
                result = await asyncio.wait_for(_unless_disconnected(request, polished), left())
            except asyncio.TimeoutError:
                return timed_out()
            finally:
                stop.set()   # a polish still running stops (one that finished has nothing left to stop)
        if result is None:   # nobody to answer; the status only shows in logs
            return refusal(499, [("request", "the client disconnected")])
        if body.traditional:
            result = await run_in_threadpool(traditional, result, prepared.request)
        return JSONResponse(result)

    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path, exc_info=error)
        return refusal(500, [("request", f"internal error ({type(error).__name__}); the server logged it")])

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        """404, 405 and the like in the one error shape (starlette answered them in plain text)."""
        problem = ("request", f"{request.method} {request.url.path}: {error.detail}")
        return refusal(error.status_code, [problem], headers=getattr(error, "headers", None))

    def logged_once(endpoint):
        """`endpoint`, with an unexpected error answered 500 in one line and logged here, once: left to the
        app's handler, Starlette re-raised it once answered, and uvicorn logged its traceback again."""
        @functools.wraps(endpoint)
        async def guarded(request: Request):
            try:
                return await endpoint(request)
            except HTTPException:
                raise
            except Exception as error:
                return await internal_error(request, error)
        return guarded

    routes = [Route(path, logged_once(endpoint), methods=methods) for path, endpoint, methods in (
        ("/", index, None), ("/healthz", healthz, None), ("/api/model", model_info, None),
        ("/api/generate", generate, ["POST"]), ("/api/tunes", tunes, None), ("/api/check", check, ["POST"]))]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: internal_error})
    app.state.batcher = batcher
    return app
