"""The API's `tune` and `variant` fields, their per-field 422 errors, and the tune search the page reads."""

import warnings

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

from poetgen.batching import BatchOptions  # noqa: E402
from poetgen.ci_checks import check_ci  # noqa: E402
from poetgen.ci_rhyme import ci_rhyme  # noqa: E402
from poetgen.prosody import table  # noqa: E402
from poetgen.serve import create_app  # noqa: E402
from poetgen.tunes import resolve  # noqa: E402


@pytest.fixture(scope="module")
def client(generator):
    with TestClient(create_app(generator, BatchOptions(max_wait_ms=2))) as test_client:
        yield test_client


def test_a_ci_by_tune_and_variant(client):
    response = client.post("/api/generate", json={"tune": "pusaman", "variant": 1, "tone": True, "n": 3, "seed": 4})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["tune"] == "菩萨蛮" and data["variant"] == 1 and data["form"] == "ci"
    for poem in data["poems"]:
        check = check_ci(poem["text"], resolve("菩萨蛮"), table(), ci_rhyme())
        assert check.layout_ok and check.rhyme_ok and check.tone_score == 1.0
        assert poem["checks"]["layout_ok"] and poem["variant"] == 1


@pytest.mark.parametrize("body, field", [
    ({"tune": "浣溪莎"}, "tune"), ({"tune": "浣溪沙", "variant": 6}, "variant"), ({"tune": "浣溪沙", "variant": 0}, "variant"),
    ({"tune": "浣" * 40}, "tune"), ({"tune": 3}, "tune"), ({"tune": "浣溪沙", "form": "五绝"}, "form"),
    ({"variant": 2}, "variant"), ({"tune": "浣溪沙", "variant": "2"}, "variant"),
    ({"tune": "浣溪沙#0"}, "tune"), ({"tune": "浣溪沙#x"}, "tune")])   # a malformed #k is the tune field's (it named variant)
def test_bad_tune_fields_are_422_for_that_field(client, body, field):
    response = client.post("/api/generate", json=body)
    assert response.status_code == 422
    assert [problem["field"] for problem in response.json()["detail"]] == [field]


def test_tune_search(client):
    found = client.get("/api/tunes", params={"q": "huanxi"}).json()
    assert "浣溪沙" in [tune["name"] for tune in found["tunes"]] and found["knows_ci"] is False
    every = client.get("/api/tunes").json()["tunes"]
    assert len(every) == 817 and all(tune["characters"] for tune in every)
    # the pinyin shown is every full form, as `poetgen tunes` shows it: the longest was 上江虹's for 满江红
    mjh = next(t for t in client.get("/api/tunes", params={"q": "满江红"}).json()["tunes"] if t["name"] == "满江红")
    assert mjh["pinyin"] == "manjianghong/shangjianghong"
    assert "tune-list" in client.get("/").text
