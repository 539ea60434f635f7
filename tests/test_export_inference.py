"""Exports of the inference form: the shipped bundle (dropout 0.1) in every format, and tiny bundles
with dropout for every cell, two layers and both precisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poetgen.export import ExportOptions, export

pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
IDS = np.array([[2, 5, 9, 40, 7]], np.int32)


@pytest.fixture(scope="module")
def shipped():
    from poetgen.bundle import load_bundle

    bundle = load_bundle(SHIPPED)
    assert bundle.model_config.dropout > 0   # the case the inference copy exists for
    return bundle


def _export(bundle, tmp_path_factory, fmt) -> Path:
    return export(bundle, ExportOptions(tmp_path_factory.mktemp(fmt) / "out", fmt))


@pytest.fixture(scope="module")
def shipped_savedmodel(shipped, tmp_path_factory):
    return _export(shipped, tmp_path_factory, "savedmodel")


@pytest.fixture(scope="module")
def shipped_keras(shipped, tmp_path_factory):
    return _export(shipped, tmp_path_factory, "keras")


@pytest.fixture(scope="module")
def shipped_tflite(shipped, tmp_path_factory):
    return _export(shipped, tmp_path_factory, "tflite")


def expected_logits(model) -> np.ndarray:
    return np.asarray(model(IDS, training=False))[:, -1, :]


def test_shipped_savedmodel_loads_and_matches(shipped, shipped_savedmodel):
    import tensorflow as tf

    poet = tf.saved_model.load(str(shipped_savedmodel))
    logits = poet.signatures["serving_default"](ids=tf.constant(IDS))["logits"].numpy()
    np.testing.assert_allclose(logits, expected_logits(shipped.model), rtol=1e-4, atol=1e-4)
    from poetgen.ci_checks import check_ci
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table
    from poetgen.tunes import resolve

    ci = poet.generate(prompt="", form="浣溪沙", temperature=0.8, top_k=0, top_p=1.0, seed=1, acrostic="",
                       tone=True)["poem"].numpy().decode("utf-8")
    check = check_ci(ci, resolve("浣溪沙"), table(), ci_rhyme())
    assert check.layout_ok and check.rhyme_ok and check.tone_score == 1.0, ci


def test_shipped_keras_export_has_no_dropout_and_same_logits(shipped, shipped_keras):
    from poetgen.bundle import load_bundle

    exported = load_bundle(shipped_keras)
    assert exported.model_config.dropout == 0.0
    assert not [layer for layer in exported.model.layers if "dropout" in type(layer).__name__.lower()]
    np.testing.assert_allclose(expected_logits(exported.model), expected_logits(shipped.model), rtol=1e-5, atol=1e-5)
    from poetgen.generate import Generator

    assert Generator.load(shipped_keras).int8   # its int8 products fit its weights


def test_shipped_keras_export_writes_the_shipped_model_s_poems(shipped_keras):
    """The README says so, int8 and float32 alike, with its reverse model ranking best-of (reverse/)."""
    import subprocess
    import sys

    import keras

    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    assert (shipped_keras / "reverse" / "model.keras").exists()
    keras.saving.load_model(shipped_keras / "model.keras", safe_mode=True)   # no lambda or pickled code
    alone = ("import sys\nclass NoPoetgen:\n    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'poetgen':\n            raise ImportError(name)\n"
             "sys.meta_path.insert(0, NoPoetgen())\nimport keras\n"
             "print(keras.saving.load_model(sys.argv[1], safe_mode=True).output.shape)")
    ran = subprocess.run([sys.executable, "-c", alone, str(shipped_keras / "model.keras")], capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0 and "None, None, " in ran.stdout, ran.stderr[-2000:]   # Keras alone
    request = PoemRequest(prompt="春风", n=2, sample=SampleOptions(seed=3))
    for int8 in (True, False):
        poems = [Generator.load(path, int8=int8).generate(request)["poems"] for path in (SHIPPED, shipped_keras)]
        assert [p["text"] for p in poems[0]] == [p["text"] for p in poems[1]]


def test_shipped_tflite_steps_like_numpy(shipped, shipped_tflite):
    from ai_edge_litert.interpreter import Interpreter

    from poetgen.stepper import NumpyStepper

    runner = Interpreter(model_path=str(shipped_tflite / "model.tflite")).get_signature_runner()
    stepper = NumpyStepper.from_model(shipped.model, shipped.model_config)
    state = stepper.initial_state(1)
    lite = {n: np.zeros((1, shipped.model_config.units), np.float32) for n in ("state_0_0", "state_0_1")}
    for token in IDS[0]:
        expected, state = stepper.step(np.array([token]), state)
        got = runner(ids=np.array([[token]], np.int32), **lite)
        lite = {n: got[n] for n in lite}
        np.testing.assert_allclose(got["logits"], expected, rtol=1e-4, atol=1e-4)


def cli_first_logits(generator, prefix: list[int]) -> np.ndarray:
    """The logits `generator` samples a poem's first character from, after the boundary and `prefix`."""
    state, previous = generator.stepper.after_prefix(tuple(prefix), 1)
    return generator.stepper.step(previous, state)[0][0]


def test_shipped_tflite_fed_the_tables_prefix_starts_as_the_cli(shipped_tflite):
    """tables.npz had no control prefix, so a TFLite loop could not condition the shipped model as the CLI
    does: fed the prefix its tables give (layout_prefix, the control ids, tune_prefix), the TFLite model's
    first logits are those `poetgen generate` computes after its own prefix (int8 products: their
    tolerance), the same greedy first character, for a Tang and a Song shi and ci of three tunes (one by
    another name's token, 一翦梅, one by a joined token, 望江南・忆江南)."""
    from ai_edge_litert.interpreter import Interpreter

    from poetgen.generate import Generator, PoemRequest

    tables = np.load(shipped_tflite / "tables.npz")
    control = dict(zip(tables["control_tokens"], tables["control_ids"].tolist()))
    tunes, qilv = list(tables["tune_names"]), list(tables["layout_names"]).index("qilv")
    cases = [(PoemRequest(form="qilv"), tables["layout_prefix"][qilv].tolist()),
             (PoemRequest(form="qilv", style="song"), [control["<song>"], control["<qilv>"]]),
             *[(PoemRequest(tune=tune), tables["tune_prefix"][tunes.index(tune)].tolist())
               for tune in ("浣溪沙", "一剪梅", "忆江南")]]
    float32, int8 = Generator.load(SHIPPED, int8=False), Generator.load(SHIPPED)   # --float32, the default
    runner = Interpreter(model_path=str(shipped_tflite / "model.tflite")).get_signature_runner()
    firsts = []
    for request, prefix in cases:
        assert prefix == int8.prefix(int8.prepare(request)) == float32.prefix(float32.prepare(request)), request
        exact, quantized = (cli_first_logits(generator, prefix) for generator in (float32, int8))
        lite = {n: np.zeros((1, float32.bundle.model_config.units), np.float32) for n in ("state_0_0", "state_0_1")}
        for token in [2, *prefix]:
            got = runner(ids=np.array([[token]], np.int32), **lite)
            lite = {n: got[n] for n in lite}
        logits = got["logits"][0]
        np.testing.assert_allclose(logits, exact, rtol=1e-4, atol=1e-4)
        scale = np.abs(exact).max()   # int8 products: as close as tests/test_quantize.py holds them
        assert np.abs(logits - quantized).max() <= 0.03 * scale and np.abs(logits - quantized).mean() <= 0.005 * scale
        assert int(np.argmax(logits)) == int(np.argmax(exact)), request   # the same greedy choice as --float32
        # int8's choice is it, or a near-tie of it that the products' error may swap (tests/test_quantize.py)
        assert exact.max() - exact[np.argmax(quantized)] <= 2 * np.abs(logits - quantized).max(), request
        firsts.append(logits)
    assert min(np.abs(a - b).max() for i, a in enumerate(firsts) for b in firsts[i + 1:]) > 1.0   # the prefix counts


@pytest.mark.parametrize("cell, precision", [("lstm", "float32"), ("gru", "float32"), ("simplernn", "float32"),
                                             ("lstm", "mixed_bfloat16")])
def test_tiny_models_with_dropout_export(tiny_bundle, tmp_path, cell, precision):
    import tensorflow as tf

    from poetgen.bundle import Bundle, load_bundle
    from poetgen.model import ModelConfig, build_model

    tiny = load_bundle(tiny_bundle)
    config = ModelConfig(tiny.tokenizer.vocab_size, cell=cell, layers=2, units=12, embedding_dim=8, dropout=0.3)
    model = build_model(config, dtype=precision)
    bundle = Bundle(tmp_path / "src", model, tiny.tokenizer, {"model": {}}, config)
    expected = expected_logits(model)
    tolerance = 2e-2 if precision != "float32" else 1e-4   # bf16 maths in the source, float32 in the copy
    poet = tf.saved_model.load(str(export(bundle, ExportOptions(tmp_path / "sm", "savedmodel"))))
    logits = poet.signatures["serving_default"](ids=tf.constant(IDS))["logits"].numpy()
    np.testing.assert_allclose(logits, expected, rtol=tolerance, atol=tolerance)
    assert poet.generate(prompt="", form="wujue", temperature=0.8, top_k=0, top_p=0.9, seed=1, acrostic="",
                         tone=True)["poem"].numpy()
    if precision != "float32":   # keras and tflite exports never captured dropout; one case each suffices
        keras_bundle = load_bundle(export(bundle, ExportOptions(tmp_path / "k", "keras")))
        np.testing.assert_allclose(expected_logits(keras_bundle.model), expected, rtol=tolerance, atol=tolerance)
        assert (export(bundle, ExportOptions(tmp_path / "lite", "tflite")) / "model.tflite").stat().st_size


def saved_model_cli(*args: str) -> str:
    """Run TensorFlow's saved_model_cli (from PATH, else as a module of the installed tensorflow)."""
    import shutil
    import subprocess
    import sys

    command = [shutil.which("saved_model_cli")] if shutil.which("saved_model_cli") else \
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    done = subprocess.run(command + list(args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_saved_model_cli_shows_and_runs_generate(shipped_savedmodel):
    import ast
    import re

    from poetgen.checks import check_poem
    from poetgen.prosody import table

    shown = saved_model_cli("show", "--dir", str(shipped_savedmodel), "--all")
    for signature in ("serving_default", "serve", "generate"):
        assert f"signature_def['{signature}']" in shown
    generate = shown.split("signature_def['generate']")[1].split("signature_def[")[0]
    inputs = dict(re.findall(r"inputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)", generate))
    assert inputs == {"prompt": "DT_STRING", "form": "DT_STRING", "temperature": "DT_FLOAT", "top_k": "DT_INT32",
                      "top_p": "DT_FLOAT", "seed": "DT_INT64", "acrostic": "DT_STRING", "tone": "DT_BOOL"}
    assert re.findall(r"outputs\['(\w+)'\]", generate) == ["poem"]
    ran = saved_model_cli("run", "--dir", str(shipped_savedmodel), "--tag_set", "serve", "--signature_def",
                          "generate", "--input_exprs",
                          'prompt="白日依山尽。";form="wujue";temperature=0.8;top_k=0;top_p=0.9;seed=1;'
                          'acrostic="";tone=False')
    poem = ast.literal_eval(ran.split("Result for output key poem:")[1].strip().splitlines()[0]).decode("utf-8")
    check = check_poem(poem, "wujue", table())
    assert poem.startswith("白日依山尽，") and check.layout_ok and check.rhyme_ok, poem


def test_shipped_model_same_request_same_verdicts(shipped, shipped_savedmodel):
    import tensorflow as tf

    from poetgen.checks import check_poem
    from poetgen.generate import Generator, PoemRequest
    from poetgen.prosody import table
    from poetgen.sampling import SampleOptions

    args = dict(prompt="", form="wulv", acrostic="春夏秋冬山水风月", tone=True)
    cli = Generator(shipped).generate(PoemRequest(**args, sample=SampleOptions(top_p=0.9, seed=4)))["poems"][0]
    poet = tf.saved_model.load(str(shipped_savedmodel))
    graph = poet.generate(temperature=0.8, top_k=0, top_p=0.9, seed=4, **args)["poem"].numpy().decode("utf-8")
    for poem in (cli["text"], graph):
        check = check_poem(poem, "wulv", table(), args["acrostic"])
        assert check.layout_ok and check.rhyme_ok and check.acrostic_ok and check.tone_score == 1.0, poem
