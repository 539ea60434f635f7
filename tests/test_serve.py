"""`poetgen serve`'s API through Starlette's test client, and dynamic batching against lone generation."""

import contextlib
import json
import re
import threading
import warnings

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():   # newer Starlette asks for the httpx2 fork; httpx still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

from conftest import wait_until  # noqa: E402
from poetgen import batching, serve  # noqa: E402
from poetgen.batching import Batcher, BatchFailed, BatchOptions  # noqa: E402
from poetgen.checks import check_poem  # noqa: E402
from poetgen.cli import cli  # noqa: E402
from poetgen.errors import BadModel  # noqa: E402
from poetgen.layout import FORM_SHAPES  # noqa: E402
from poetgen.request import PoemRequest  # noqa: E402
from poetgen.prosody import table  # noqa: E402
from poetgen.sampling import SampleOptions  # noqa: E402
from poetgen.serve import create_app  # noqa: E402
from poetgen.serve_body import MAX_BODY  # noqa: E402
from poetgen.tunes import tune_table  # noqa: E402


def without_timing(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "ms_per_poem"}


@pytest.fixture(scope="module")
def client(generator):
    with TestClient(create_app(generator, BatchOptions(max_wait_ms=2))) as test_client:
        yield test_client


class Held:
    """The real generator, except that sampling waits until the test releases it."""

    def __init__(self, generator, fail_first: bool = False):
        self.generator = generator
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail_next = fail_first

    def __getattr__(self, name):
        return getattr(self.generator, name)

    def sample_rows(self, prepared, streams):
        self.entered.set()
        assert self.release.wait(60), "the test never released the model"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("model exploded")
        return self.generator.sample_rows(prepared, streams)


def test_generate_answers_what_the_cli_prints(client, tiny_bundle):
    body = {"form": "七绝", "theme": "秋天思乡", "seed": 11, "n": 2, "temperature": 0.9, "top_k": 50}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    printed = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--format", "json", "--form", "七绝",
                                       "--theme", "秋天思乡", "--seed", "11", "-n", "2", "--temperature", "0.9",
                                       "--top-k", "50"])
    assert printed.exit_code == 0, printed.output
    assert without_timing(response.json()) == without_timing(json.loads(printed.output))


@pytest.mark.parametrize("form", ["wujue", "七律"])
def test_generated_poems_are_well_formed(client, form):
    response = client.post("/api/generate", json={"form": form, "n": 3, "acrostic": ""})
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["poems"]) == 3 and isinstance(data["seed"], int)
    for poem in data["poems"]:
        check = check_poem(poem["text"], data["form"], table())
        assert check.layout_ok and check.rhyme_ok, poem["text"]
        assert len(poem["lines"]) == FORM_SHAPES[data["form"]][1]


def test_acrostic_and_traditional(client):
    plain = client.post("/api/generate", json={"acrostic": "春夏秋冬", "form": "qijue", "seed": 4}).json()
    poem = plain["poems"][0]
    assert [line[0] for line in poem["lines"]] == list("春夏秋冬") and poem["acrostic_ok"]
    from poetgen.corpus import to_traditional

    shown = client.post("/api/generate", json={"acrostic": "春夏秋冬", "form": "qijue", "seed": 4,
                                               "traditional": True}).json()
    assert shown["poems"][0]["text"] == to_traditional(poem["text"])


def test_a_form_is_read_as_the_cli_reads_it(client):
    """QIJUE and Qi Jue write a 七绝 in the CLI, the Python API and the SavedModel: the server refused them;
    七絕 (traditional) was refused everywhere."""
    for form in ("QIJUE", "Qi Jue", "七绝", "七絕"):
        response = client.post("/api/generate", json={"form": form, "seed": 1})
        assert response.status_code == 200 and response.json()["form"] == "qijue", (form, response.text)
    assert client.post("/api/generate", json={"form": "sonnet"}).status_code == 422


def test_limits_read_as_the_readme_and_the_cli_write_them(client):
    """The README's example refusal says "at least 0"; pydantic's limits printed 0.0 and 10.0."""
    for body, message in (({"temperature": -1}, "temperature must be at least 0"),
                          ({"temperature": 11}, "temperature must be at most 10")):
        assert client.post("/api/generate", json=body).json()["detail"][0]["message"] == message


@pytest.mark.parametrize("body, field, message", [
    ({"temperature": -1}, "temperature", "at least 0"),
    ({"temperature": "hot"}, "temperature", "must be a number"),
    ({"temperature": 11}, "temperature", "at most 10"),
    ({"top_k": -1}, "top_k", "at least 0"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"top_p": 1.5}, "top_p", "at most 1"),
    ({"seed": -3}, "seed", "at least 0"),
    ({"seed": 1.5}, "seed", "whole number"),
    ({"n": 0}, "n", "at least 1"),
    ({"n": 11}, "n", "at most 10"),
    ({"best_of": 0}, "best_of", "at least 1"),
    ({"best_of": 17}, "best_of", "at most 16"),
    ({"form": "sonnet"}, "form", "must be one of"),
    ({"rhyme": "yes"}, "rhyme", "true or false"),
    ({"prompt": "白" * 65}, "prompt", "longer than 64"),
    ({"theme": "秋" * 201}, "theme", "longer than 200"),
    ({"prompt": "abc"}, "prompt", "Latin letter"),
    ({"prompt": "床前😀"}, "prompt", "not a Chinese character"),
    ({"prompt": "龘"}, "prompt", "does not know the character"),
    ({"prompt": "白日依，"}, "prompt", "line 1 has 3 characters"),
    ({"acrostic": "春夏秋"}, "acrostic", "3 characters but a wujue poem has 4 lines"),
    ({"acrostic": "春夏秋冬", "form": "free"}, "acrostic", "needs a regular form"),
    ({"rhyme": True, "form": "free"}, "rhyme", "rhyme needs a regular form or a tune"),   # it was ignored
    ({"temprature": 1}, "temprature", "unknown field"),
    ({"style": "yuan"}, "style", "must be one of tang, song, ci"),
    ({"style": "tang", "tune": "浣溪沙"}, "style", "style tang is for shi; leave style out"),
    ({"theme": "  "}, "theme", "theme is blank"),
    ({"acrostic": " "}, "acrostic", "acrostic is blank"),
    ({"title": "春" * 13}, "title", "longer than 12"),
    ({"title": "春日"}, "title", "not trained with titles"),   # the tiny model reads none
])
def test_invalid_fields_are_refused_with_a_message(client, body, field, message):
    response = client.post("/api/generate", json=body)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert [p["field"] for p in problems] == [field]
    assert message in problems[0]["message"]


@pytest.mark.parametrize("content, status", [(b"{not json", 422), (b"[1, 2]", 422),
                                              (b'{"prompt": "' + b"a" * MAX_BODY + b'"}', 413)])
def test_malformed_and_oversized_bodies(client, content, status):
    response = client.post("/api/generate", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["detail"][0]["field"] == "body"


@pytest.mark.parametrize("path, content, field", [
    ("/api/generate", rb'{"form": "\ud800"}', "form"),
    ("/api/generate", rb'{"seed": 1, "prompt": "\u6625\udc00"}', "prompt"),
    ("/api/generate", rb'{"\ud800": 1}', "body"),
    ("/api/check", rb'{"text": "\u6625\u6c5f\ud83d"}', "text"),
])
def test_a_lone_surrogate_escape_is_named_as_text_not_json(client, path, content, field):
    """{"form": "\ud800"} is valid JSON whose string is no text: it was answered "not valid JSON"."""
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["field"] == field and "not valid text" in problem["message"], problem
    assert "surrogate" in problem["message"] and "JSON" not in problem["message"]
    assert client.post(path, content=b'{"form": "\\ud83d\\ude00"', headers={"Content-Type": "application/json"}
                       ).json()["detail"][0]["message"] == "the request body is not valid JSON"   # truly not JSON


def test_every_problem_of_a_request_is_listed(client):
    response = client.post("/api/generate", json={"n": 0, "top_p": 2, "seed": "x"})
    assert response.status_code == 422
    assert sorted(p["field"] for p in response.json()["detail"]) == ["n", "seed", "top_p"]


def test_keeps_serving_after_bad_requests(client):
    for body in ({"n": -1}, {"prompt": "abc"}, {"form": 3}, {"acrostic": "一二"}, {"temperature": None}):
        assert client.post("/api/generate", json=body).status_code == 422
    assert client.get("/api/generate").status_code == 405
    assert client.get("/no/such/page").status_code == 404
    response = client.post("/api/generate", json={"seed": 1})
    assert response.status_code == 200 and response.json()["poems"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_keeps_serving_after_an_internal_error(generator):
    held = Held(generator, fail_first=True)
    held.release.set()
    with TestClient(create_app(held), raise_server_exceptions=False) as client:
        failed = client.post("/api/generate", json={"seed": 1})
        assert failed.status_code == 500 and "RuntimeError" in failed.json()["detail"][0]["message"]
        assert client.post("/api/generate", json={"seed": 1}).status_code == 200


class FailingPolish(Held):
    """The real generator, except that polishing fails: an error after the batch, outside the worker."""

    def polish(self, prepared, result, stop=None):
        raise ZeroDivisionError("injected in polish")


def test_an_internal_error_outside_the_batch_is_one_line_logged_once(generator, caplog):
    """The app's handler answered it, then Starlette re-raised it to the server, which logged the traceback
    a second time ("Exception in ASGI application"); a test client raised it instead of answering."""
    failing = FailingPolish(generator)
    failing.release.set()
    with TestClient(create_app(failing)) as client, caplog.at_level("ERROR"):
        caplog.clear()
        failed = client.post("/api/generate", json={"seed": 1, "polish": 1})
        assert failed.status_code == 500
        assert failed.json()["detail"] == [{"field": "request",
                                            "message": "internal error (ZeroDivisionError); the server logged it"}]
        logged = [record for record in caplog.records if record.exc_info]
        assert [record.getMessage() for record in logged] == ["internal error on /api/generate"]
        assert client.post("/api/generate", json={"seed": 1}).status_code == 200


def test_healthz_and_model(client, tiny_bundle):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["batching"]["max_rows"] == 128
    info = client.get("/api/model").json()
    config = json.loads((tiny_bundle / "config.json").read_text(encoding="utf-8"))
    assert info["name"] == tiny_bundle.name
    assert info["metrics"] == config["metrics"] and info["metrics"]["best_val_perplexity"] > 1
    # config.json as recorded, less the serving machine's paths: the corpus file a user's bundle records
    corpus = config["corpus"].pop("path")
    assert corpus.startswith("/") and corpus not in json.dumps(info, ensure_ascii=False)
    assert info["config"] == config


def test_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="poem-form"' in page and "/api/generate" in page
    for form in ("五绝", "七绝", "五律", "七律"):
        assert f'value="{form}"' in page
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", page)
    assert not re.search(r"@import|url\(|<link\b|<script[^>]+src=", page)


def test_event_loop_answers_while_the_model_works(generator):
    held = Held(generator)
    with TestClient(create_app(held)) as client:
        answers = {}
        worker = threading.Thread(target=lambda: answers.update(slow=client.post("/api/generate", json={"seed": 2})))
        worker.start()
        assert held.entered.wait(30)
        assert client.get("/healthz").status_code == 200
        assert client.post("/api/generate", json={"n": 0}).status_code == 422
        assert worker.is_alive() and not answers   # answered while sampling is still stuck
        held.release.set()
        worker.join(60)
        assert answers["slow"].status_code == 200


class SlowTunes:
    """The 词谱 table, except that a search waits until the test releases it."""

    def __init__(self):
        self.table = tune_table()
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.table, name)

    def search(self, query=""):
        self.entered.set()
        assert self.release.wait(60), "the test never released the search"
        return self.table.search(query)


def test_event_loop_answers_while_the_tunes_are_listed(generator, monkeypatch):
    """GET /api/tunes (the page asks for all ~800 on every load: ~140 KB, ~20 ms) was built on the event
    loop, which answered nothing meanwhile."""
    slow = SlowTunes()
    monkeypatch.setattr(serve, "tune_table", lambda: slow)
    with TestClient(create_app(generator)) as client:
        answers = {}
        listing = threading.Thread(target=lambda: answers.update(tunes=client.get("/api/tunes")))
        checking = threading.Thread(target=lambda: answers.update(health=client.get("/healthz")))
        listing.start()
        try:
            assert slow.entered.wait(60)
            checking.start()
            wait_until(lambda: "health" in answers, "/healthz answering while the tunes are listed", timeout=30)
            assert answers["health"].status_code == 200 and "tunes" not in answers
        finally:
            slow.release.set()
            listing.join(60)
            checking.join(60)
        every = answers["tunes"].json()
        assert len(every["tunes"]) == len(slow.table.search("")) and every["knows_ci"] is generator.knows_ci()
        assert client.get("/api/tunes").json() == every   # the whole list is built once, then reused
        assert [t["name"] for t in client.get("/api/tunes", params={"q": "浣溪"}).json()["tunes"]][:1] == ["浣溪沙"]


def test_full_queue_is_refused_with_503(generator):
    held = Held(generator)
    with TestClient(create_app(held, BatchOptions(max_queue=1))) as client:
        threads = [threading.Thread(target=client.post, args=("/api/generate",), kwargs={"json": {"seed": i}})
                   for i in range(2)]
        threads[0].start()
        assert held.entered.wait(30)          # the first is in the worker
        threads[1].start()
        wait_until(lambda: client.app.state.batcher._queue.qsize() >= 1, "the second request queueing")
        refused = client.post("/api/generate", json={"seed": 9})
        assert refused.status_code == 503 and "busy" in refused.json()["detail"][0]["message"]
        assert refused.headers["retry-after"] == "1"
        held.release.set()
        for thread in threads:
            thread.join(60)


MERGED = [PoemRequest(form="qijue", tone=True, theme="秋天思乡", n=n, best_of=1, sample=SampleOptions(seed=seed))
          for seed, n in [(1, 1), (2, 3), (3, 1), (4, 2)]] + [PoemRequest(form="wujue", best_of=1,
                                                                           sample=SampleOptions(seed=5))]


@pytest.mark.parametrize("max_rows, batches", [(64, 2), (3, 4), (1, 5)])
def test_a_request_gets_the_same_poems_batched_or_alone(generator, max_rows, batches):
    batcher = Batcher(generator, BatchOptions(max_rows=max_rows, max_wait_ms=0))
    futures = [batcher.submit(generator.prepare(request)) for request in MERGED]   # queued before the worker runs
    batcher.start()
    try:
        results = [future.result(timeout=120) for future in futures]
    finally:
        batcher.stop()
    assert batcher.stats.batches == batches and batcher.stats.requests == len(MERGED)
    assert batcher.stats.largest == min(7, max(max_rows, 3))
    for request, result in zip(MERGED, results):
        assert without_timing(result) == without_timing(generator.generate(request))


@pytest.fixture(scope="module")
def int8_generator(tiny_bundle):
    pytest.importorskip("ai_edge_litert.interpreter")
    from poetgen.generate import Generator

    return Generator.load(tiny_bundle, int8=True)


def test_concurrent_http_requests_are_batched(int8_generator):
    # In int8 (the default wherever a bundle carries its products) a row's products are integer sums,
    # exactly the same in a batch of 11 as alone. In float32 BLAS rounds a row differently by its batch
    # size and place in it, and seed 111 has a near-tie that this tips when the requests queue in
    # another order (about one run in four under heavy load).
    generator = int8_generator
    held = Held(generator)
    answers = {}

    def ask(seed):
        answers[seed] = client.post("/api/generate", json={"form": "wujue", "seed": seed, "best_of": 1})

    with TestClient(create_app(held, BatchOptions(max_wait_ms=0))) as client:
        first = threading.Thread(target=ask, args=(100,))
        first.start()
        assert held.entered.wait(30)             # the model is busy with the first request...
        others = [threading.Thread(target=ask, args=(seed,)) for seed in range(101, 112)]
        for thread in others:
            thread.start()
        wait_until(lambda: client.app.state.batcher._queue.qsize() >= 11, "eleven requests queueing")   # together
        held.release.set()
        for thread in [first, *others]:
            thread.join(120)
        stats = client.get("/healthz").json()["batching"]
    assert stats["requests"] == 12 and stats["batches"] == 2 and stats["largest"] == 11
    for seed, answer in answers.items():
        assert answer.status_code == 200, answer.text
        alone = generator.generate(PoemRequest(form="wujue", best_of=1, sample=SampleOptions(seed=seed)))
        assert without_timing(answer.json()) == without_timing(alone)


class FakeTime:
    """A batcher on a fake clock: each reading is 50 ms later, and each blocking wait of its queue is
    recorded (and may deliver late requests), so the tests never depend on the machine's speed."""

    def __init__(self, batcher, monkeypatch):
        self.readings, self.waits, self.on_wait = [], [], None
        real_get = batcher._queue.get

        def get(block=True, timeout=None):
            if timeout is not None:
                self.waits.append(timeout)
                if self.on_wait:
                    self.on_wait(len(self.waits))
            return real_get(block, timeout)

        monkeypatch.setattr(batcher._queue, "get", get)
        monkeypatch.setattr(batching.time, "monotonic", self.monotonic)

    def monotonic(self) -> float:
        self.readings.append(len(self.readings) * 0.05)
        return self.readings[-1]

    def collect(self, batcher):
        """One round: its jobs, how many times it waited, and how long it took on the fake clock."""
        self.waits.clear()
        start = len(self.readings)
        jobs, _ = batcher._collect()
        return jobs, len(self.waits), self.readings[-1] - self.readings[start]


def test_a_round_waits_only_for_requests_on_their_way(generator, monkeypatch):
    batcher = Batcher(generator, BatchOptions(max_wait_ms=1000))
    clock = FakeTime(batcher, monkeypatch)
    prepared = generator.prepare(PoemRequest(sample=SampleOptions(seed=1)))
    batcher.submit(prepared)
    jobs, waits, _ = clock.collect(batcher)      # nothing on its way: the round leaves at once
    assert len(jobs) == 1 and waits == 0
    batcher.submit(prepared)
    with batcher.arriving():                     # one on its way that never comes: wait out the second
        jobs, waits, took = clock.collect(batcher)
    assert len(jobs) == 1 and waits > 0 and took >= 1.0


def test_a_round_under_load_waits_to_gather_as_many_as_the_last(generator, monkeypatch):
    batcher = Batcher(generator, BatchOptions(max_wait_ms=1000))
    clock = FakeTime(batcher, monkeypatch)
    prepared = generator.prepare(PoemRequest(sample=SampleOptions(seed=1)))
    for _ in range(3):
        batcher.submit(prepared)
    assert len(clock.collect(batcher)[0]) == 3   # a round of three...
    batcher.submit(prepared)
    clock.on_wait = lambda n: [batcher.submit(prepared) for _ in range(2)] if n == 3 else None
    jobs, waits, took = clock.collect(batcher)   # ...so the next one waits for three, not the full second
    assert len(jobs) == 3 and waits >= 3 and took < 1.0
    clock.on_wait = None
    batcher.submit(prepared)
    jobs, waits, took = clock.collect(batcher)   # at most max_wait_ms when they do not come
    assert len(jobs) == 1 and waits > 0 and took >= 1.0
    batcher._rounds.clear()
    batcher._rounds.append((clock.monotonic() - 2, 3))   # a round of three, two seconds ago
    batcher.submit(prepared)
    jobs, waits, _ = clock.collect(batcher)      # old load is forgotten: the round leaves at once
    assert len(jobs) == 1 and waits == 0


def test_serve_command_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--max-batch" in result.output and "/api/generate" in result.output
    result = CliRunner().invoke(cli, ["serve", "--max-batch", "0"])
    assert result.exit_code == 2 and "max-batch" in result.output


def test_best_of_defaults_to_the_request_default_and_can_be_lowered(client):
    """A request costs n × best_of rows; the default is PoemRequest's (what blind reading chose)."""
    before = client.get("/healthz").json()["batching"]["rows"]
    assert client.post("/api/generate", json={"seed": 1, "n": 2}).status_code == 200
    middle = client.get("/healthz").json()["batching"]["rows"]
    assert client.post("/api/generate", json={"seed": 1, "n": 2, "best_of": 1}).status_code == 200
    after = client.get("/healthz").json()["batching"]["rows"]
    assert middle - before == 2 * PoemRequest().best_of and after - middle == 2


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "failed"])
def test_stats_count_a_batch_before_its_requests_hear(generator, fails):
    """/healthz must never lag an answer: a client that reads the counts after its answer sees its rows."""
    batcher = Batcher(Held(generator, fail_first=fails) if fails else generator, BatchOptions(max_wait_ms=0))
    heard_before_count = []
    original = batcher._count

    def count(batch, rows):
        heard_before_count.extend(job.future.done() for job in batch)
        original(batch, rows)

    batcher._count = count
    if fails:
        batcher.generator.release.set()
    batcher.start()
    try:
        future = batcher.submit(generator.prepare(PoemRequest(n=2, best_of=1, sample=SampleOptions(seed=1))))
        if fails:
            with pytest.raises(BatchFailed, match="model exploded"):   # Held's injected failure, nothing else
                future.result(60)
        else:
            future.result(60)
        assert batcher.stats.rows == 2 and heard_before_count == [False]
    finally:
        batcher.stop()


def test_polish_runs_on_its_own_few_threads(generator):
    """Each thread that steps the model keeps its own interpreters: polishing runs on serve's own
    polishing threads, not on the web server's many."""
    class Spy:
        def __init__(self, inner):
            self.inner, self.threads = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def polish(self, prepared, result, stop=None):
            self.threads.append(threading.current_thread().name)
            return self.inner.polish(prepared, result, stop)

    spy = Spy(generator)
    with TestClient(create_app(spy, BatchOptions(max_wait_ms=2))) as test_client:
        for seed in range(3):
            assert test_client.post("/api/generate", json={"seed": seed, "polish": 1}).status_code == 200
    assert len(spy.threads) == 3 and all(name.startswith("poetgen-polish") for name in spy.threads)


@pytest.mark.parametrize("body, args", [
    ({"no_repeat": False}, ["--allow-repeat"]),
    ({"form": "free", "max_chars": 40}, ["--form", "free", "--max-chars", "40"]),
    ({"reverse_weight": 0.0, "best_of": 3}, ["--reverse-weight", "0", "--best-of", "3"]),
    ({"repeat_penalty": 0.0}, ["--repeat-penalty", "0"]),
    ({"repeat_penalty": 5.5}, ["--repeat-penalty", "5.5"]),
])
def test_the_server_takes_every_generate_option(client, tiny_bundle, body, args):
    """no_repeat, max_chars and reverse_weight too: the answer is what the CLI prints for the same options."""
    response = client.post("/api/generate", json={"seed": 5, "n": 2, **body})
    assert response.status_code == 200, response.text
    printed = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--format", "json", "--seed", "5",
                                       "-n", "2", *args])
    assert printed.exit_code == 0, printed.output
    assert without_timing(response.json()) == without_timing(json.loads(printed.output))


def test_a_server_warms_up_every_thread_that_steps_the_model(generator):
    """Before it serves, the batching thread warms up for the server's largest batch and each polishing
    thread for a polish's (Generator.warm_up), so the server's memory is flat while it serves."""
    from poetgen.polish import VERSIONS
    from poetgen.quantize import cores
    from poetgen.request import SERVER_MAX_BEST_OF, SERVER_MAX_POEMS
    from poetgen.serve import MAX_POLISH_THREADS

    class Spy:
        def __init__(self, inner):
            self.inner, self.calls = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def warm_up(self, max_rows):
            self.calls.append((threading.current_thread().name, max_rows))
            return self.inner.warm_up(max_rows)

    spy = Spy(generator)
    with TestClient(create_app(spy, BatchOptions(max_rows=24, max_wait_ms=2))):
        calls = list(spy.calls)   # start-up is over
    # a request is never split, so the largest one the server accepts counts too
    assert calls[0] == ("poetgen-batcher", max(24, SERVER_MAX_POEMS * SERVER_MAX_BEST_OF))
    polishing, threads = calls[1:], min(cores(), MAX_POLISH_THREADS)
    assert len(polishing) == threads and {rows for _, rows in polishing} == {VERSIONS}
    assert len({name for name, _ in polishing}) == threads and all(name.startswith("poetgen-polish") for name, _ in polishing)


def test_a_server_whose_worker_cannot_start_does_not_serve(generator):
    class Failing:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def warm_up(self, max_rows):
            raise MemoryError("injected in the warm-up")

    with pytest.raises(BadModel, match="failed to start .*MemoryError"):
        with TestClient(create_app(Failing(generator))):
            pass


def test_a_server_folds_its_tables_whole_at_start_up(tiny_bundle, monkeypatch):
    """A server folds each model's first-layer table at start-up, so its memory does not grow with each
    character it meets for the first time (serve_soak.py's goal)."""
    from poetgen import stepper as stepper_module
    from poetgen.generate import Generator

    monkeypatch.setattr(stepper_module, "FOLD_LIMIT_BYTES", 0)   # as for the shipped model's wide table
    generator = Generator.load(tiny_bundle)
    assert not generator.stepper._complete
    with TestClient(create_app(generator, BatchOptions(max_wait_ms=2))) as test_client:
        assert generator.stepper._complete and generator.stepper._folded.all()
        assert test_client.post("/api/generate", json={"seed": 1}).status_code == 200


def test_polish_is_applied_after_the_batch_and_limited(client):
    response = client.post("/api/generate", json={"seed": 4, "n": 2, "polish": 1})
    assert response.status_code == 200, response.text
    assert all(isinstance(p["polished"], int) for p in response.json()["poems"])
    response = client.post("/api/generate", json={"seed": 4, "polish": 3})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "polish"
    response = client.post("/api/generate", json={"seed": 4, "n": 2, "polish": 1, "polish_lines": 1})
    assert response.status_code == 200 and all(p["polished"] <= 1 for p in response.json()["poems"])
    response = client.post("/api/generate", json={"seed": 4, "polish": 1, "polish_lines": -1})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "polish_lines"
    response = client.post("/api/generate", json={"seed": 4, "form": "free", "polish": 1})
    assert response.status_code == 422 and "polish" in response.json()["detail"][0]["message"]


def test_a_model_trained_with_titles_writes_to_the_requests_title(titled_bundle):
    from poetgen.generate import Generator

    out, _ = titled_bundle
    body = {"form": "wujue", "n": 2, "seed": 4, "title": "春日"}
    with TestClient(create_app(Generator.load(out), BatchOptions(max_wait_ms=2))) as client:
        answer = client.post("/api/generate", json=body).json()
        untitled = client.post("/api/generate", json={**body, "title": ""}).json()
    assert answer["title"] == "春日" and "title" not in untitled
    printed = CliRunner().invoke(cli, ["generate", "--model", str(out), "-n", "2", "--seed", "4", "--title", "春日",
                                       "--format", "json"])
    assert without_timing(answer) == without_timing(json.loads(printed.output))


class BlockingPolish:
    """The generator, except that polishing waits until it is told to stop (or 30 s): a polish still
    running when its request is answered or cut short."""

    def __init__(self, inner):
        self.inner, self.started, self.stopped = inner, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def polish(self, prepared, result, stop=None):
        self.started.set()
        if stop is not None and stop.wait(30):
            self.stopped.set()
        return result


class HeldPolish:
    """The real generator, except that polishing waits until the test releases it."""

    def __init__(self, inner):
        self.inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def polish(self, prepared, result, stop=None):
        self.entered.set()
        assert self.release.wait(60), "the test never released the polish"
        return self.inner.polish(prepared, result, stop)


def test_polish_requests_beyond_the_queue_are_refused_at_once(generator, monkeypatch):
    """--max-queue bounded the requests waiting for a batch only: those waiting for a polishing thread (every
    request of the page, which asks polish 2) queued without end, each answered 503 only when its
    --request-timeout ran out."""
    monkeypatch.setattr(serve, "cores", lambda: 1)   # one polishing thread, whatever the machine
    held = HeldPolish(generator)
    answers, third = {}, None

    def ask(name, body):
        answers[name] = client.post("/api/generate", json=body)

    with TestClient(create_app(held, BatchOptions(max_queue=1, max_wait_ms=0))) as client:
        first, second = (threading.Thread(target=ask, args=(name, {"seed": seed, "polish": 1}))
                         for name, seed in (("polishing", 1), ("waiting", 2)))
        first.start()
        try:
            assert held.entered.wait(60)   # one request polishes...
            second.start()
            wait_until(lambda: client.app.state.batcher.stats.requests == 2, "the second request's batch")   # ...one waits
            third = threading.Thread(target=ask, args=("refused", {"seed": 3, "polish": 1}))
            third.start()
            wait_until(lambda: "refused" in answers, "the third polish request answered at once", timeout=30)
            refused = answers["refused"]
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "waiting to be polished" in refused.json()["detail"][0]["message"]
            assert client.post("/api/generate", json={"seed": 4}).status_code == 200   # no polish asked: served
        finally:
            held.release.set()
            for thread in (first, second, third):
                if thread is not None and thread.ident is not None:
                    thread.join(60)
        assert answers["polishing"].status_code == answers["waiting"].status_code == 200
        assert client.post("/api/generate", json={"seed": 5, "polish": 1}).status_code == 200   # room again


def test_a_polish_past_the_time_limit_is_answered_503_and_stopped(generator):
    """--request-timeout bounded the batch only: a polish ran as long as it took (8 s against the 1 s limit here),
    and went on for a client that had gone."""
    slow = BlockingPolish(generator)
    with TestClient(create_app(slow, BatchOptions(max_wait_ms=2, timeout_s=1))) as client:
        response = client.post("/api/generate", json={"seed": 1, "polish": 1})
    assert response.status_code == 503 and "no answer within 1 s" in response.text
    assert slow.started.is_set() and slow.stopped.wait(30)   # the polishing thread was told to stop


def test_a_polish_stops_at_its_next_line_once_asked(generator):
    from poetgen.polish import Stopped

    request = PoemRequest(form="wujue", polish=2, sample=SampleOptions(seed=4))
    prepared, result = generator.prepare(request), generator.generate(PoemRequest(form="wujue", sample=SampleOptions(seed=4)))
    stop = threading.Event()
    assert "polished" in generator.polish(prepared, result, stop)["poems"][0]
    stop.set()
    with pytest.raises(Stopped):
        generator.polish(prepared, result, stop)


def test_a_forced_stop_answers_requests_in_flight_with_503(generator):
    """A second Ctrl-C cancels the requests still running: each is answered 503 in JSON (it was a
    plain-text 500 and a traceback per request), and the app's own shutdown still runs."""
    import asyncio

    slow = BlockingPolish(generator)
    app = create_app(slow, BatchOptions(max_wait_ms=2))

    async def scenario():
        async with app.router.lifespan_context(app):
            sent = []
            messages = [{"type": "http.request", "body": json.dumps({"seed": 1, "polish": 1}).encode(),
                         "more_body": False}]

            async def receive():
                if messages:
                    return messages.pop(0)
                await asyncio.Event().wait()   # the client stays

            async def send(message):
                sent.append(message)

            scope = {"type": "http", "method": "POST", "path": "/api/generate", "raw_path": b"/api/generate",
                     "headers": [(b"content-type", b"application/json")], "query_string": b"",
                     "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("test", 1),
                     "root_path": ""}
            task = asyncio.ensure_future(app(scope, receive, send))
            await asyncio.to_thread(slow.started.wait, 30)
            task.cancel()   # what asyncio.run does to the tasks left when uvicorn exits at once
            await task
            return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 503
    assert "stopping" in json.loads(sent[1]["body"])["detail"][0]["message"]


def test_serve_on_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "none" not in result.output   # refused before the (missing) model was looked for


@contextlib.contextmanager
def serving(bundle, *options):
    """`poetgen serve` on a free port, answering /healthz: yields (process, port, healthy); killed after."""
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "poetgen", "serve", "--model", str(bundle), "--port", str(port),
                                *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                return json.load(answer)["status"] == "ok"
        except OSError:
            return False

    try:
        wait_until(lambda: process.poll() is not None or healthy(), "poetgen serve answering /healthz", 180, 0.3)
        yield process, port, healthy
    finally:
        process.kill()


def test_ctrl_c_stops_the_server_with_the_interrupted_status(tiny_bundle, tmp_path):
    """uvicorn re-raised the signal once stopped and asyncio swallowed it: exit 0, no `interrupted`."""
    import signal

    with serving(tiny_bundle) as (process, _, _):
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.rstrip().endswith("poetgen: interrupted"), stderr
    assert "Traceback" not in stderr


# `poetgen serve` whose model load waits for a gate file the test never creates: the stop lands while loading
_LOADING_WRAPPER = """
import sys, threading
from pathlib import Path
from poetgen.generate import Generator

def load(*args, **kwargs):
    print("test: loading the model", file=sys.stderr, flush=True)
    gate = Path(sys.argv[1])
    while not gate.exists():
        threading.Event().wait(0.01)
    raise SystemExit("test: the gate opened")

Generator.load = load
sys.argv[1:2] = []
from poetgen.cli import main
main()
"""


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_stop_while_the_model_loads_is_interrupted_in_one_line(tmp_path, stop):
    """SIGTERM while the model was still loading (before uvicorn's own handlers) killed the process by the
    signal: exit 143 and no message, where a stop after start-up says `interrupted` and exits 130."""
    import signal
    import subprocess
    import sys

    wrapper = tmp_path / "serve_loading.py"
    wrapper.write_text(_LOADING_WRAPPER, encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(wrapper), str(tmp_path / "gate"), "serve", "--port",
                                str(free_port()), "--model", str(tmp_path / "never-read")],
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line == "test: loading the model\n", line + process.stderr.read()
        process.send_signal(getattr(signal, stop))
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (process.returncode, stderr)
    assert stderr.strip() == "poetgen: interrupted", stderr


def test_a_client_stalled_in_its_body_is_answered_408_and_does_not_hold_a_stop(tiny_bundle):
    """A client that sent part of its body and then nothing held its connection for as long as it liked,
    and SIGTERM (twice) waited for it: the server stopped listening but never exited."""
    import signal
    import socket

    partial = (b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100\r\n\r\n{\"se")
    with serving(tiny_bundle, "--request-timeout", "2") as (process, port, _):
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(partial)
            stalled.settimeout(60)
            answer = _http_answer(stalled)
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 2 s" in answer, answer
        with socket.create_connection(("127.0.0.1", port)) as stalled:   # held open through the stop
            stalled.sendall(partial)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.rstrip().endswith("poetgen: interrupted"), stderr


def test_an_oversized_body_is_refused_and_its_connection_closed(tiny_bundle):
    """The server answered 413 after 16 KiB but kept the connection, reading and dropping the rest of the
    body as the client sent it: a gigabyte for `Content-Length: 1000000000`, or without end, chunked."""
    import socket

    head = b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with serving(tiny_bundle) as (_, port, healthy):
        for framing in (b"Content-Length: 1000000000\r\n\r\n" + b"{" * (MAX_BODY + 1),
                        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (MAX_BODY + 1, b"{" * (MAX_BODY + 1))):
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(head + framing)
                connection.settimeout(60)
                answer = _http_answer(connection)
                assert answer.startswith("HTTP/1.1 413") and "connection: close" in answer.lower(), answer
                assert connection.recv(4096) == b""   # closed: no more of the body is read
        assert healthy()


def test_a_client_stalled_in_its_headers_is_answered_408_and_let_go(tiny_bundle):
    """uvicorn times out no request's headers: a client that connected and sent nothing, or part of its
    headers (a slowloris), held its connection, a file descriptor, for as long as it liked."""
    import socket

    pytest.importorskip("httptools")
    with serving(tiny_bundle, "--request-timeout", "2") as (_, port, healthy):
        for sent in (b"", b"POST /api/generate HTTP/1.1\r\nHost: x\r\n", b"GET /healthz HTTP/1.1\r\n"):
            with socket.create_connection(("127.0.0.1", port)) as stalled:
                stalled.sendall(sent)
                stalled.settimeout(30)
                answer = _http_answer(stalled)
                assert answer.startswith("HTTP/1.1 408") and "headers did not arrive within 2 s" in answer, answer
                assert stalled.recv(4096) == b""   # and let go
        with socket.create_connection(("127.0.0.1", port)) as kept:   # a kept-alive connection's next request
            kept.settimeout(30)
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _http_answer(kept).startswith("HTTP/1.1 200")
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert _http_answer(kept).startswith("HTTP/1.1 408")
        assert healthy()


def test_a_second_sigterm_stops_a_server_that_waits_for_a_stalled_client(tiny_bundle):
    """uvicorn forces a stop on a second SIGINT only: a second SIGTERM (docker stop, systemd) waited on."""
    import signal
    import socket

    with serving(tiny_bundle, "--request-timeout", "600") as (process, port, healthy):
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: not healthy(), "the server stopping to listen after SIGTERM", 60, 0.1)
            assert process.poll() is None   # still waiting for the stalled body (up to 605 s)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.rstrip().endswith("poetgen: interrupted"), stderr


def _http_answer(connection) -> str:
    """One whole HTTP answer from a socket: its head, then as many body bytes as it announces (the two
    may come in separate packets)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(4096) or b"\r\n\r\n"   # closed early: what came
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        chunk = connection.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_listens_on_every_address_its_host_resolves_to(monkeypatch):
    """localhost may resolve to ::1 and 127.0.0.1: one socket bound only the first."""
    import socket

    from poetgen.http_server import listening_sockets

    real = socket.getaddrinfo

    def two(host, port, *args, **kwargs):
        return real("127.0.0.1", port, *args, **kwargs) + real("127.0.0.2", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two)
    sockets = listening_sockets("twohosts", free_port())
    try:
        assert sorted(sock.getsockname()[0] for sock in sockets) == ["127.0.0.1", "127.0.0.2"]
    finally:
        for sock in sockets:
            sock.close()


def test_a_wrong_method_or_path_is_refused_in_the_one_error_shape(client):
    """404 and 405 came as plain text, not the README's {"detail": [...]}."""
    for method, path, status in (("GET", "/api/generate", 405), ("PUT", "/api/generate", 405),
                                 ("DELETE", "/api/tunes", 405), ("GET", "/api/nothing", 404)):
        answer = client.request(method, path)
        assert answer.status_code == status and answer.headers["content-type"] == "application/json", path
        detail = answer.json()["detail"]
        assert len(detail) == 1 and detail[0]["field"] == "request" and detail[0]["message"].startswith(method)
    assert client.get("/api/generate").headers["allow"] == "POST"


def test_the_body_declares_every_request_field_with_the_request_s_default_and_passes_each_through():
    """GenerateBody spells PoemRequest's and SampleOptions' fields again (with the server's tighter limits):
    a field added to one side only, or a default that drifted, fails here; poem_request passes every
    field through by name, so a value given to the server reaches the request."""
    import dataclasses

    from poetgen.serve_body import GenerateBody

    body = GenerateBody.model_fields
    request = {f.name: f.default for f in dataclasses.fields(PoemRequest) if f.name not in ("sample", "batch_size")}
    sample = {f.name: f.default for f in dataclasses.fields(SampleOptions)}
    assert set(body) == set(request) | set(sample) | {"traditional"}
    for name, default in {**request, **sample}.items():
        assert body[name].default == default, name
    given = {"prompt": "春风", "form": "qijue", "acrostic": "", "theme": "秋思", "title": "夜", "rhyme": False,
             "tone": False, "temperature": 0.5, "top_k": 7, "top_p": 0.9, "seed": 11, "n": 2, "best_of": 3,
             "polish": 1, "polish_lines": 2, "no_repeat": False, "repeat_penalty": 0.5, "max_chars": 60,
             "reverse_weight": 0.25, "style": "song", "variant": None, "tune": ""}
    made = GenerateBody(**given).poem_request()
    for name, value in given.items():
        assert getattr(made.sample if name in sample else made, name) == value, name


def test_a_poem_is_checked_as_the_cli_checks_it(client):
    """POST /api/check is `poetgen check --format json`: no model step, the same refusals by field."""
    night = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    cli_json = json.loads(CliRunner().invoke(cli, ["check", night, "--format", "json"]).stdout)
    answer = client.post("/api/check", json={"text": night})
    assert answer.status_code == 200 and answer.json() == cli_json and answer.json()["faults"] == 2
    assert client.post("/api/check", json={"text": night, "form": "五绝"}).json() == cli_json
    yan = "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回？无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"
    ci = client.post("/api/check", json={"text": yan, "tune": "浣溪沙", "variant": 2}).json()
    assert (ci["genre"], ci["form"], ci["variant"]) == ("ci", "浣溪沙", 2)
    for body, field in (({}, "text"), ({"text": night, "tune": "没有这个词牌"}, "tune"),
                        ({"text": night, "tune": "浣溪沙"}, "text"), ({"text": night, "form": "sonnet"}, "form"),
                        ({"text": night, "variant": 0}, "variant"), ({"text": night, "polish": 1}, "polish"),
                        ({"text": "abc"}, "text")):
        refused = client.post("/api/check", json=body)
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == field, (body, refused.text)
    assert client.post("/api/check", json={}).json()["detail"][0]["message"] == "text is required"


def test_serve_blas_threads_leave_the_one_thread_limit_to_the_generation_threads(monkeypatch):
    """`serve --blas-threads 3` set the count from the main thread with threadpoolctl, which (3.6 on) then
    ignored every other thread's setting of a process-wide OpenBLAS: the batching and share threads' int8
    steps ran on 3 BLAS threads, not 1 (one_blas_thread did nothing)."""
    import threading

    import threadpoolctl

    from poetgen import blas, generate, http_server
    from poetgen import serve as serve_module

    libraries = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    shared = [library for library in libraries if getattr(library, "threading_layer", None) != "openmp"]
    if not shared or not hasattr(shared[0], "clear_controlling_thread"):
        pytest.skip("no process-wide BLAS that threadpoolctl hands to one thread")
    found = [library.num_threads for library in shared]
    seen = []

    def run_server(app, sockets, timeout_s):   # the batching thread's int8 step, instead of serving
        def step():
            with blas.one_blas_thread():
                seen.append([library.num_threads for library in shared])
        worker = threading.Thread(target=step)
        worker.start()
        worker.join(60)

    monkeypatch.setattr(generate.Generator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(serve_module, "create_app", lambda generator, options: None)
    monkeypatch.setattr(http_server, "run_server", run_server)
    try:
        result = CliRunner().invoke(cli, ["serve", "--port", str(free_port()), "--blas-threads", "3"])
        assert result.exit_code == 0, result.output
        assert seen == [[1] * len(shared)]
        assert [library.num_threads for library in shared] == [3] * len(shared)   # the server's own count
    finally:
        blas._set_blas_threads(found)   # as it was for the other tests


def test_a_request_stepping_more_characters_than_the_server_takes_is_refused(client, generator):
    """n × best_of bounded a request's rows, not its work: a 莺啼序 of 160 rows held the worker 20 times as
    long as a wujue of as many (~7.7 s on the shipped model), every other client waiting."""
    response = client.post("/api/generate", json={"tune": "莺啼序", "n": 10, "best_of": 16})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["field"] == "request" and "47,200 characters" in problem["message"]
    assert "limit of 10,240" in problem["message"] and "--max-request-chars" in problem["message"]
    with TestClient(create_app(generator, BatchOptions(max_wait_ms=2, max_request_chars=48))) as small:
        assert small.post("/api/generate", json={"form": "wujue", "best_of": 2, "seed": 1}).status_code == 200
        refused = small.post("/api/generate", json={"form": "wujue", "best_of": 3, "seed": 1})
        assert refused.status_code == 422 and "72 characters" in refused.text and "limit of 48" in refused.text
        assert small.app.state.batcher.stats.requests == 1   # never queued


def test_serve_max_request_chars_reaches_the_server(monkeypatch):
    from poetgen import generate, http_server
    from poetgen import serve as serve_module

    made = []
    monkeypatch.setattr(generate.Generator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(serve_module, "create_app", lambda generator, options: made.append(options))
    monkeypatch.setattr(http_server, "run_server", lambda app, sockets, timeout_s: None)
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port()), "--blas-threads", "0",
                                      "--max-request-chars", "4096"])
    assert result.exit_code == 0, result.output
    assert [options.max_request_chars for options in made] == [4096]
    result = CliRunner().invoke(cli, ["serve", "--max-request-chars", "48001"])
    assert result.exit_code == 2 and "--max-request-chars" in result.output
