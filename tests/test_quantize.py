"""The int8 output layer: close to float32, independent of the batch, and a full generation mode."""

import dataclasses
import json
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.checks import check_poem
from poetgen.layout import layout_of
from poetgen.cli import cli
from poetgen.errors import BadInput
from poetgen.generate import Generator
from poetgen.model import CELLS, ModelConfig, build_model
from poetgen.stepper import NumpyStepper
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions
from poetgen.tokenizer import BOUNDARY

pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(scope="module")
def int8_generator(tiny_bundle):
    return Generator.load(tiny_bundle, int8=True)


def states(stepper, rows: int, steps: int):
    ids = np.random.default_rng(0).integers(3, stepper.embedding.shape[0], (steps, rows))
    state = stepper.initial_state(rows)
    for t in range(steps):
        state = stepper.advance(ids[t], state)
    return state


def test_int8_logits_are_close_to_float32(generator, int8_generator):
    state = states(generator.stepper, 64, 6)
    exact = generator.stepper.logits(state)
    quantized = int8_generator.stepper.logits(state)
    scale = np.abs(exact).max()
    assert np.abs(quantized - exact).max() <= 0.03 * scale
    assert np.abs(quantized - exact).mean() <= 0.005 * scale
    # int8 picks float32's likeliest id, or a near-tie of it: a tiny model has many (57 of these 64 rows
    # agreed exactly on one build), and there the products' error may swap the two
    rows, picked = np.arange(len(exact)), quantized.argmax(1)
    assert (picked == exact.argmax(1)).mean() >= 0.85
    assert (exact.max(1) - exact[rows, picked] <= 2 * np.abs(quantized - exact).max()).all()


@pytest.mark.parametrize("step", [True, False], ids=["one graph", "product by product"])
@pytest.mark.parametrize("cell", CELLS)
def test_int8_steps_stay_close_to_float32(cell, step):
    config = ModelConfig(vocab_size=40, cell=cell, layers=2, units=32, embedding_dim=16)
    model = build_model(config)
    exact, quantized = NumpyStepper.from_model(model, config), NumpyStepper.from_model(model, config)
    quantized.quantize(step=step)
    assert (quantized.fused is not None) == step
    ids = np.random.default_rng(1).integers(3, 40, (12, 5))
    a, b = exact.initial_state(5), quantized.initial_state(5)
    for t in range(12):                                   # recurrent and second-layer products in int8
        a, b = exact.advance(ids[t], a), quantized.advance(ids[t], b)
        assert max(np.abs(x - y).max() for x, y in zip(a, b)) < 0.02
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))   # it did run in int8
    np.testing.assert_allclose(quantized.logits(b), exact.logits(a), atol=0.02)


def test_int8_rows_do_not_depend_on_their_batch(int8_generator):
    stepper = int8_generator.stepper
    assert stepper.fused is not None                      # converted with the rest: the whole step in one graph
    state = states(stepper, 8, 4)
    ids = np.arange(3, 11)
    whole_state = stepper.advance(ids, state)                           # 8 rows: one thread
    whole = stepper.logits(whole_state)
    other = [s.copy() for s in state]
    other[0][3:] *= 5.0                                   # other rows change scale...
    part_state = stepper.advance(ids[:3], [s[:3] for s in other])      # 3 rows: two threads
    part = stepper.logits(part_state)
    np.testing.assert_array_equal(part, whole[:3])        # ...the first three do not move
    for a, b in zip(part_state, whole_state):
        np.testing.assert_array_equal(a, b[:3])
    np.testing.assert_array_equal(stepper.logit_at(part_state, np.array([5, 6, 7])), whole[np.arange(3), [5, 6, 7]])
    tops = stepper.top(whole_state)                       # the output product alone (reverse scoring's)
    scaled = tops.copy()
    scaled[3:, :-1] *= 5.0
    np.testing.assert_array_equal(stepper.logits_of_tops(scaled[:3]), stepper.logits_of_tops(tops)[:3])


def test_int8_generation_keeps_forms_seeds_and_batches(int8_generator, monkeypatch):
    import poetgen.generate as generate

    request = PoemRequest(form="wulv", n=20, sample=SampleOptions(seed=4))
    result = int8_generator.generate(request)
    assert all(check_poem(p["text"], "wulv", int8_generator.tables.prosody).layout_ok for p in result["poems"])
    assert all(p["rhyme_ok"] for p in result["poems"])
    small = int8_generator.generate(PoemRequest(form="wulv", n=20, batch_size=3, sample=SampleOptions(seed=4)))
    monkeypatch.setattr(generate, "SHARE_ROWS", 4)
    split = int8_generator.generate(request)              # shares in threads, one interpreter each
    texts = [p["text"] for p in result["poems"]]
    assert [p["text"] for p in small["poems"]] == texts == [p["text"] for p in split["poems"]]


def test_int8_logprob_is_its_own_log_probability(int8_generator):
    result = int8_generator.generate(PoemRequest(form="wujue", n=2, sample=SampleOptions(seed=9)))
    stepper = int8_generator.stepper
    for poem in result["poems"]:
        ids = [BOUNDARY] + int8_generator.tokenizer.encode(poem["text"])
        state, total = stepper.initial_state(1), 0.0
        for t in range(len(ids) - 1):
            state = stepper.advance(np.array([ids[t]]), state)
            if poem["text"][t] in "，。":
                continue                                   # forced punctuation is not scored
            logits = stepper.logits(state)[0].astype(np.float64)
            total += logits[ids[t + 1]] - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        assert poem["logprob"] == pytest.approx(total / 20, abs=2e-3)


def test_int8_without_the_extra_is_one_line(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)   # import fails
    with pytest.raises(BadInput, match="poetgen\\[int8\\]"):
        Generator.load(tiny_bundle, int8=True)
    result = CliRunner().invoke(cli, ["generate", "--int8", "--model", str(tiny_bundle)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["poetgen: error: --int8 needs the LiteRT interpreter: "
                                                  "pip install 'poetgen[int8]'"]


def test_serve_with_int8(int8_generator):
    from starlette.testclient import TestClient

    from poetgen.serve import create_app

    with TestClient(create_app(int8_generator)) as client:
        answer = client.post("/api/generate", json={"form": "qijue", "seed": 3, "n": 2})
    assert answer.status_code == 200, answer.text
    expected = int8_generator.generate(PoemRequest(form="qijue", n=2, sample=SampleOptions(seed=3)))
    assert [p["text"] for p in answer.json()["poems"]] == [p["text"] for p in expected["poems"]]


def test_int8_batches_of_every_size_share_one_interpreter_per_thread():
    """Each thread holds one interpreter (per thread count), resized to the batch in hand: not one per
    batch size, each with its own packed weights (a server's memory grew by 300 MB with those)."""
    from poetgen.quantize import Int8Product

    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((16, 24)).astype(np.float32)
    product = Int8Product(kernel)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    whole = product(x)
    for rows in (5, 1, 7, 8, 3):                          # each row is quantized alone, whatever the batch
        np.testing.assert_array_equal(product(x[:rows]), whole[:rows])
    runners = product._local.runners
    assert list(runners) == [1] and runners[1].rows == 3   # one single-threaded interpreter, now for 3 rows
    np.testing.assert_array_equal(product.last_at(3, np.array([0, 5, 23])), whole[[0, 1, 2], [0, 5, 23]])
    with pytest.raises(RuntimeError, match="latest"):     # a product of another size was not kept
        product.last_at(8, np.zeros(8, np.int64))
    with ThreadPoolExecutor(1) as other:                  # another thread has its own
        np.testing.assert_array_equal(other.submit(product, x[:2]).result(), whole[:2])
    assert runners[1].rows == 3
    assert np.abs(whole - x @ kernel).max() < 0.05 * np.abs(x @ kernel).max()
    assert product.shape == kernel.shape and not hasattr(product, "kernel")   # no float32 copy kept


def test_an_int8_generator_keeps_no_float32_copy_of_what_runs_in_int8(tiny_bundle):
    """Loaded for generation, a model is held once: the raw weights are let go, and each product that
    runs in int8 keeps no float32 kernel (poetgen generate's peak memory goal)."""
    generator = Generator.load(tiny_bundle, int8=True)
    stepper = generator.stepper
    assert generator.bundle.weights is None and stepper.int8
    assert not hasattr(stepper.output, "kernel") and not hasattr(stepper.layers[0][1], "kernel")
    assert "_output_rows" not in stepper.__dict__   # the float32 rows for single logits: never made
    poem = generator.generate(PoemRequest(sample=SampleOptions(seed=1)))["poems"][0]["text"]
    assert poem and "_output_rows" not in stepper.__dict__
    with pytest.raises(ValueError, match="already"):
        stepper.quantize()


def test_int8_logprob_survives_rows_that_rules_empty(int8_generator):
    from poetgen import rule_base, rules
    from poetgen.sampling import Shape, sample

    class EmptyThreeRows(rule_base.Rule):   # forbids everything in rows 0-2: they fall back to the layout
        def apply(self, logits, step):
            logits[:3] = rule_base.NEG

    generator, batch = int8_generator, 4   # three rows redone share the batch's interpreter size
    comma, period = generator.tokenizer.id_of("，"), generator.tokenizer.id_of("。")
    active = [rules.Layout([comma, period] * 2, generator.tables.punctuation_ids, batch), EmptyThreeRows()]
    result = sample(generator.stepper, active, Shape(layout_of("wujue"), 120, frozenset([comma, period])), batch,
                    SampleOptions(seed=1))
    stepper, state, expected = generator.stepper, generator.stepper.initial_state(batch), np.zeros(batch)
    previous = np.full(batch, BOUNDARY)
    for t in range(result.ids.shape[1]):
        state = stepper.advance(previous, state)
        if t % 6 != 5:
            logits = stepper.logits(state).astype(np.float64)
            top = logits.max(1, keepdims=True)
            log_probs = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
            expected += log_probs[np.arange(batch), result.ids[:, t]]
        previous = result.ids[:, t]
    np.testing.assert_allclose(result.log_probs, expected, atol=2e-3)
    from poetgen.tokenizer import SPECIALS

    chars = np.delete(result.ids, np.s_[5::6], axis=1)   # the redone rows wrote characters, not specials
    assert (chars >= len(SPECIALS)).all() and (chars < generator.tokenizer.char_limit).all()


def test_int8_steps_with_projection_and_tied_output():
    config = ModelConfig(vocab_size=40, layers=1, units=32, embedding_dim=16, projection=16, tie_embeddings=True)
    model = build_model(config)
    exact, quantized = NumpyStepper.from_model(model, config), NumpyStepper.from_model(model, config)
    quantized.quantize()
    ids = np.random.default_rng(2).integers(3, 40, (8, 5))
    a, b = exact.initial_state(5), quantized.initial_state(5)
    for t in range(8):
        a, b = exact.advance(ids[t], a), quantized.advance(ids[t], b)
    np.testing.assert_allclose(quantized.logits(b), exact.logits(a), atol=0.02)
    assert not np.array_equal(quantized.logits(b), exact.logits(a))


def quantized_copy(tiny_bundle, tmp_path):
    from poetgen.quantize import INT8_FILE

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("tensorboard", "*.png"))
    result = CliRunner().invoke(cli, ["quantize", "--model", str(copy)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {copy / INT8_FILE}"
    with np.load(copy / INT8_FILE) as stored:
        assert sorted(stored.files) == ["output", "output.fingerprint", "rnn_0_recurrent", "rnn_0_recurrent.fingerprint",
                                        "step", "step.fingerprint"]
    return copy


def test_a_stale_or_missing_step_leaves_the_products_in_int8(tiny_bundle, tmp_path, caplog):
    from poetgen.quantize import INT8_FILE

    copy = quantized_copy(tiny_bundle, tmp_path)
    request = PoemRequest(form="wujue", n=3, sample=SampleOptions(seed=6))
    fused = Generator.load(copy)
    assert fused.int8 and fused.stepper.fused is not None
    path = copy / INT8_FILE
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["step.fingerprint"] = arrays["step.fingerprint"] + 1        # the step of other weights
    np.savez(path, **arrays)
    with caplog.at_level("WARNING"):
        stale = Generator.load(copy)
    assert "int8 products step were converted from other weights; run `poetgen quantize` again" in caplog.text
    del arrays["step"], arrays["step.fingerprint"]                    # a file written before the step existed
    np.savez(path, **arrays)
    older = Generator.load(copy)
    for generator in (stale, older):
        assert generator.int8 and generator.stepper.fused is None     # product by product, still int8
        poems = generator.generate(request)["poems"]
        assert all(p["rhyme_ok"] and len(p["text"]) == 24 for p in poems)
    assert [p["text"] for p in stale.generate(request)["poems"]] == [p["text"] for p in older.generate(request)["poems"]]


def test_a_quantized_bundle_generates_in_int8_by_default(tiny_bundle, tmp_path, int8_generator):
    copy = quantized_copy(tiny_bundle, tmp_path)
    default, exact = Generator.load(copy), Generator.load(copy, int8=False)
    assert (default.int8, exact.int8, Generator.load(tiny_bundle).int8) == (True, False, False)
    state = states(exact.stepper, 16, 5)
    # the stored products are the ones --int8 converts at load
    np.testing.assert_array_equal(default.stepper.logits(state), int8_generator.stepper.logits(state))
    assert not np.array_equal(default.stepper.logits(state), exact.stepper.logits(state))
    request = PoemRequest(form="wujue", n=3, sample=SampleOptions(seed=6))
    texts = [p["text"] for p in default.generate(request)["poems"]]
    assert texts == [p["text"] for p in int8_generator.generate(request)["poems"]]
    cli_json = CliRunner().invoke(cli, ["generate", "--model", str(copy), "--form", "wujue", "-n", "3", "--seed", "6",
                                        "--format", "json"])
    assert [p["text"] for p in json.loads(cli_json.stdout)["poems"]] == texts
    float_json = CliRunner().invoke(cli, ["generate", "--float32", "--model", str(copy), "--form", "wujue", "-n", "3",
                                          "--seed", "6", "--format", "json"])
    assert [p["text"] for p in json.loads(float_json.stdout)["poems"]] == \
        [p["text"] for p in exact.generate(request)["poems"]]


def test_products_of_other_weights_are_not_used(tiny_bundle, tmp_path, caplog):
    from poetgen.quantize import INT8_FILE

    copy = quantized_copy(tiny_bundle, tmp_path)
    path = copy / INT8_FILE
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["output.fingerprint"] = arrays["output.fingerprint"] + 1   # as if the model had been retrained
    np.savez(path, **arrays)
    with caplog.at_level("WARNING"):
        generator = Generator.load(copy)
    assert not generator.int8
    assert "int8 products output were converted from other weights; run `poetgen quantize` again" in caplog.text


def test_a_corrupt_int8_file_is_one_line_and_float32_still_works(tiny_bundle, tmp_path):
    from poetgen.quantize import INT8_FILE

    copy = quantized_copy(tiny_bundle, tmp_path)
    (copy / INT8_FILE).write_bytes(b"PK\x03\x04 not an archive")
    result = CliRunner().invoke(cli, ["generate", "--model", str(copy), "--seed", "1"])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        f"poetgen: error: {copy / INT8_FILE}: corrupt int8 products (BadZipFile); run `poetgen quantize` again, "
        f"or generate with --float32"]
    assert (copy / INT8_FILE).read_bytes() == b"PK\x03\x04 not an archive"   # left as it was
    assert CliRunner().invoke(cli, ["generate", "--float32", "--model", str(copy), "--seed", "1"]).exit_code == 0


def test_without_litert_a_quantized_bundle_falls_back_to_float32(tiny_bundle, tmp_path, monkeypatch):
    copy = quantized_copy(tiny_bundle, tmp_path)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)   # import fails
    assert not Generator.load(copy).int8


def test_the_shipped_model_and_its_reverse_run_in_int8_from_their_own_products():
    shipped, exact = Generator.load(), Generator.load(int8=False)
    assert shipped.int8 and shipped.reverse_scorer.stepper.int8          # every fingerprint matched
    assert not exact.int8 and not exact.reverse_scorer.stepper.int8
    for a, b in ((shipped.stepper, exact.stepper), (shipped.reverse_scorer.stepper, exact.reverse_scorer.stepper)):
        state = states(b, 8, 6)
        quantized, reference = a.logits(state), b.logits(state)
        assert np.abs(quantized - reference).max() <= 0.03 * np.abs(reference).max()
        assert (quantized.argmax(1) == reference.argmax(1)).mean() >= 0.75
    # one graph per step forwards; the reverse model, scored in blocks, product by product (one graph
    # there, without the output layer, was no faster: 3.2 against 3.3 ms for two wujue on one thread)
    assert shipped.stepper.fused is not None and shipped.reverse_scorer.stepper.fused is None
    state, ids = states(exact.stepper, 8, 6), np.arange(10, 18)
    fused_state, exact_state = shipped.stepper.advance(ids, state), exact.stepper.advance(ids, state)
    fused, reference = shipped.stepper.logits(fused_state), exact.stepper.logits(exact_state)
    assert np.abs(fused - reference).max() <= 0.03 * np.abs(reference).max()   # the one-graph step, real weights
    assert (fused.argmax(1) == reference.argmax(1)).mean() >= 0.75
    by_products = Generator.load().stepper
    by_products.fused = None                              # the same int8 products, one call each
    product_state = by_products.advance(ids, state)
    product_logits = by_products.logits(product_state)
    for a, b in zip(fused_state, product_state):
        np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(fused, product_logits, atol=0.02)
    request = PoemRequest(form="wujue", n=6, sample=SampleOptions(seed=12))
    alone = shipped.generate(dataclasses.replace(request, batch_size=1))   # two interpreter threads per step
    together = shipped.generate(request)                                    # 12 rows: one thread
    assert [p["text"] for p in alone["poems"]] == [p["text"] for p in together["poems"]]
    assert [p["score"] for p in alone["poems"]] == [p["score"] for p in together["poems"]]


@pytest.mark.parametrize("name, what", [("output", "an int8 product"), ("step", "the int8 step")])
def test_damaged_product_bytes_are_one_line(tiny_bundle, tmp_path, name, what):
    from poetgen.quantize import INT8_FILE

    copy = quantized_copy(tiny_bundle, tmp_path)
    with np.load(copy / INT8_FILE) as stored:
        arrays = dict(stored)
    arrays[name] = arrays[name][: len(arrays[name]) // 3]   # truncated, fingerprint intact
    np.savez(copy / INT8_FILE, **arrays)
    result = CliRunner().invoke(cli, ["generate", "--model", str(copy), "--seed", "1"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"poetgen: error: {what} cannot be loaded (")
    assert lines[0].endswith("run `poetgen quantize` again, or generate with --float32")
    assert CliRunner().invoke(cli, ["generate", "--float32", "--model", str(copy), "--seed", "1"]).exit_code == 0


def test_int8_generation_sums_rows_on_one_blas_thread(int8_generator, generator, monkeypatch):
    import poetgen.sampling as sampling
    from poetgen.blas import _blas

    seen = []
    original = sampling.row_sums
    monkeypatch.setattr(sampling, "row_sums", lambda x: seen.append(_blas().info()[0]["num_threads"]) or original(x))
    default = _blas().info()[0]["num_threads"]
    int8_generator.generate(PoemRequest(form="wujue", best_of=1, sample=SampleOptions(seed=1)))
    assert seen and set(seen) == {1}                      # idle BLAS threads would spin on another core
    seen.clear()
    generator.generate(PoemRequest(form="wujue", best_of=1, sample=SampleOptions(seed=1)))   # float32
    assert set(seen) == {default}


def test_after_warm_up_no_batch_makes_an_interpreter_or_grows_one(with_reverse, monkeypatch):
    """A server warms its generator up (Generator.warm_up) so its memory stays flat: afterwards no batch
    size up to max_rows, stepped or read backwards, makes an interpreter or allocates one larger."""
    from poetgen import quantize
    from poetgen.sampling import row_streams

    made, largest = [], {}   # interpreters made (their threads); each one's largest allocated batch

    class Counted(quantize._interpreter_class()):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(threading.current_thread().name)

        def resize_tensor_input(self, index, shape, *args, **kwargs):
            largest[id(self)] = max(largest.get(id(self), 0), shape[0])
            return super().resize_tensor_input(index, shape, *args, **kwargs)

    monkeypatch.setattr(quantize, "_interpreter_class", lambda: Counted)
    max_rows = 2 * quantize.cores() * 16 + 3   # some batches split across the cores (SHARE_ROWS 16)

    def traffic(generator):
        prepared = generator.prepare(PoemRequest(best_of=2))
        for rows in range(1, max_rows + 1):
            poems = generator.sample_rows(prepared, row_streams(rows, 0, rows))
            generator.backward_scores(prepared, [poem["text"] for poem in poems])

    cold = Generator.load(with_reverse[0], int8=True)
    assert cold.reverse_scorer is not None and cold.reverse_scorer.stepper.int8
    before = len(made)
    traffic(cold)
    assert len(made) > before   # without warming up, traffic makes interpreters: the check below can fail

    warm = Generator.load(with_reverse[0], int8=True)
    warm.warm_up(max_rows)
    made_then, largest_then = len(made), dict(largest)
    traffic(warm)
    assert len(made) == made_then and largest == largest_then


def test_a_reverse_model_quantized_alone_gets_the_products_it_gets_in_its_bundle(with_reverse, tmp_path):
    """Quantized on its own, a reverse model took a forward step graph too (7.5 against 3.7 MB shipped): it
    is scored in blocks, never stepped."""
    import poetgen.api

    bundle = tmp_path / "bundle"
    shutil.copytree(with_reverse[0], bundle)
    alone = tmp_path / "alone"
    shutil.copytree(bundle / "reverse", alone)
    poetgen.api.quantize(bundle)
    poetgen.api.quantize(alone)
    with np.load(bundle / "reverse" / "int8.npz") as within, np.load(alone / "int8.npz") as itself:
        assert sorted(itself.files) == sorted(within.files) and not any("step" in name for name in itself.files)
    with np.load(bundle / "int8.npz") as forward:
        assert any("step" in name for name in forward.files)   # the forward model's one-graph step
