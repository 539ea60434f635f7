"""Export: a SavedModel that plain TensorFlow loads and writes poems with, a Keras bundle that
`generate` loads, a TFLite step model equal to the NumPy stepper, and safe writes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.checks import check_poem
from poetgen.cli import cli
from poetgen.layout import FORM_SHAPES, clauses
from poetgen.prosody import table
from poetgen.tokenizer import BOUNDARY

# TF 2.21 still ships tf.lite.Interpreter and warns that ai_edge_litert's (same API) replaces it.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")

# Runs in a fresh interpreter where importing poetgen fails: the SavedModel must need TensorFlow only.
PLAIN_TENSORFLOW = textwrap.dedent("""
    import json, sys

    class NoPoetgen:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "poetgen":
                raise ImportError("poetgen must not be needed")

    sys.meta_path.insert(0, NoPoetgen())
    import tensorflow as tf

    poet = tf.saved_model.load(sys.argv[1])
    out = {"poems": [], "errors": {}}
    for form in ["wujue", "qijue", "wulv", "qilv"]:
        for seed in range(3):
            poem = poet.generate(prompt="", form=form, temperature=0.8, top_k=0, top_p=1.0, seed=seed,
                                 acrostic="", tone=False)["poem"]
            out["poems"].append([form, poem.numpy().decode("utf-8")])
    again = poet.generate(prompt="", form="qilv", temperature=0.8, top_k=0, top_p=1.0, seed=2, acrostic="",
                         tone=False)["poem"]
    out["again"] = again.numpy().decode("utf-8")
    out["prompted"] = poet.generate(prompt="白日依山盡，黃河", form="五绝", temperature=1.0, top_k=20,
                                    top_p=1.0, seed=5, acrostic="", tone=False)["poem"].numpy().decode("utf-8")
    out["greedy"] = poet.generate(prompt="", form="wujue", temperature=0.0, top_k=0, top_p=1.0, seed=0,
                           acrostic="", tone=False)["poem"].numpy().decode()
    generate = poet.signatures["generate"]
    out["signature"] = generate(prompt=tf.constant("春"), form=tf.constant("qijue"), temperature=tf.constant(0.8),
                                top_k=tf.constant(5), top_p=tf.constant(1.0), seed=tf.constant(1, tf.int64),
                                acrostic=tf.constant(""), tone=tf.constant(False))["poem"].numpy().decode()
    out["logits"] = poet.signatures["serving_default"](ids=tf.constant([[2, 5, 9]]))["logits"].numpy().tolist()
    for name, bad in {"form": {"form": "sonnet"}, "unknown": {"prompt": "龘"},
                      "long": {"prompt": "春" * 21}, "temperature": {"temperature": -1.0}}.items():
        args = dict(prompt="", form="wujue", temperature=0.8, top_k=0, top_p=1.0, seed=0, acrostic="", tone=False)
        args.update(bad)
        try:
            poet.generate(**args)
        except tf.errors.InvalidArgumentError as error:
            out["errors"][name] = error.message
    out["poetgen_imported"] = any(m.startswith("poetgen") for m in sys.modules)
    print(json.dumps(out, ensure_ascii=False))
""")


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_regular(poem: str, form: str) -> None:
    check = check_poem(poem, form, table())
    assert check.layout_ok and check.rhyme_ok, (form, poem)
    length, _ = FORM_SHAPES[form]
    for line in clauses(poem):
        assert len(set(line[:-1])) == length, poem   # no character twice within a line


@pytest.fixture(scope="module")
def savedmodel(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "poet_savedmodel"
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "savedmodel")
    assert result.exit_code == 0, result.output
    return out


def test_savedmodel_writes_poems_with_tensorflow_alone(savedmodel, tiny_bundle, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PLAIN_TENSORFLOW, str(savedmodel)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["poetgen_imported"]
    assert len(out["poems"]) == 12
    for form, poem in out["poems"]:
        assert_regular(poem, form)
    assert out["again"] == out["poems"][-1][1]                        # same seed, same poem
    assert len({poem for _, poem in out["poems"]}) == 12
    assert out["prompted"].startswith("白日依山尽，黄河")               # traditional prompt, simplified vocabulary
    assert_regular(out["prompted"], "wujue")
    assert_regular(out["greedy"], "wujue")
    assert out["signature"].startswith("春")
    assert_regular(out["signature"], "qijue")
    assert "form must be one of wujue" in out["errors"]["form"] and "七絕" in out["errors"]["form"]   # every name it takes
    assert "does not know these prompt characters" in out["errors"]["unknown"] and "龘" in out["errors"]["unknown"]
    assert "form holds only" in out["errors"]["long"]
    assert "temperature must be" in out["errors"]["temperature"]

    from poetgen.bundle import load_bundle

    expected = np.asarray(load_bundle(tiny_bundle).model(np.array([[2, 5, 9]], np.int32)))[:, -1, :]
    np.testing.assert_allclose(np.array(out["logits"]), expected, rtol=1e-4, atol=1e-4)


def test_savedmodel_carries_the_tokenizer_and_config(savedmodel, tiny_bundle):
    extra = savedmodel / "assets.extra"
    assert (extra / "tokenizer.json").read_text(encoding="utf-8") == (tiny_bundle / "tokenizer.json").read_text(
        encoding="utf-8")
    assert json.loads((extra / "config.json").read_text(encoding="utf-8"))["model"] == \
        json.loads((tiny_bundle / "config.json").read_text(encoding="utf-8"))["model"]


def test_keras_export_is_a_bundle_that_generate_loads(tiny_bundle, tmp_path):
    out = tmp_path / "portable"
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "int8.npz", "model.keras", "tokenizer.json"]
    args = ["generate", "--seed", "3", "-n", "3", "--form", "qijue", "--format", "json"]
    for precision in ("--int8", "--float32"):   # the export runs in int8 by default, from its own products
        exported = run_cli(*args, *([] if precision == "--int8" else [precision]), "--model", out)
        original = run_cli(*args, precision, "--model", tiny_bundle)
        assert exported.exit_code == 0, exported.output
        texts = [p["text"] for p in json.loads(exported.stdout)["poems"]]
        assert texts == [p["text"] for p in json.loads(original.stdout)["poems"]]


def test_keras_export_carries_the_reverse_model(with_reverse, tmp_path):
    """Best-of ranking and polishing read the reverse model: an exported bundle without it would write
    other poems from the same seed."""
    out = tmp_path / "exp"
    result = CliRunner().invoke(cli, ["export", "--model", str(with_reverse[0]), "--out", str(out), "--format", "keras"])
    assert result.exit_code == 0, result.output
    assert (out / "reverse" / "model.keras").is_file() and (out / "reverse" / "int8.npz").is_file()
    args = ["generate", "-n", "4", "--seed", "3", "--polish", "1", "--format", "json", "--float32"]   # both alike
    original = CliRunner().invoke(cli, args + ["--model", str(with_reverse[0])])
    exported = CliRunner().invoke(cli, args + ["--model", str(out)])
    assert original.exit_code == 0 and exported.exit_code == 0, original.output + exported.output
    poems = [[(p["text"], p.get("reverse_logprob")) for p in json.loads(r.output)["poems"]] for r in (original, exported)]
    assert poems[0] == poems[1] and all(score is not None for _, score in poems[1])


def test_tflite_step_model_matches_the_numpy_stepper(tiny_bundle, tmp_path):
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.stepper import NumpyStepper

    out = tmp_path / "poet_tflite"
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "tflite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.tflite", "tables.npz", "tokenizer.json"]
    bundle = load_bundle(tiny_bundle)
    from poetgen.tables import VocabularyTables   # the pairs that fix a reading or a line end's group, for a loop

    tables, words = np.load(out / "tables.npz"), VocabularyTables(bundle.tokenizer)
    for names, arrays in ((("word_starts", "word_seconds", "word_codes"), words.word_tones),
                          (("rhyme_word_starts", "rhyme_word_lasts", "rhyme_word_groups"), words.rhyme_words)):
        for name, array in zip(names, arrays):
            assert np.array_equal(tables[name], array), name
    assert len(tables["word_starts"]) == bundle.tokenizer.vocab_size + 1
    runner = tf.lite.Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    stepper = NumpyStepper.from_model(bundle.model, bundle.model_config)
    state = stepper.initial_state(1)
    names = ["state_0_0", "state_0_1"]
    lite_state = {name: np.zeros((1, bundle.model_config.units), np.float32) for name in names}
    for token in [BOUNDARY] + bundle.tokenizer.encode("白日依山尽，黄河入海流。"):
        expected, state = stepper.step(np.array([token]), state)
        got = runner(ids=np.array([[token]], np.int32), **lite_state)
        lite_state = {name: got[name] for name in names}
        np.testing.assert_allclose(got["logits"], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", ["gru", "simplernn"])
def test_tflite_converts_every_cell_with_stacked_layers(tiny_bundle, tmp_path, cell):
    import tensorflow as tf

    from poetgen.bundle import Bundle, load_bundle
    from poetgen.export import ExportOptions, export
    from poetgen.model import ModelConfig, build_model
    from poetgen.stepper import NumpyStepper

    tiny = load_bundle(tiny_bundle)
    config = ModelConfig(tiny.tokenizer.vocab_size, cell=cell, layers=2, units=12, embedding_dim=8)
    model = build_model(config)
    bundle = Bundle(tmp_path / "src", model, tiny.tokenizer, {"model": {}}, config)
    out = export(bundle, ExportOptions(tmp_path / "lite", "tflite"))
    runner = tf.lite.Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    names = ["state_0_0", "state_1_0"]
    stepper = NumpyStepper.from_model(model, config)
    state, lite_state = stepper.initial_state(1), {n: np.zeros((1, 12), np.float32) for n in names}
    for token in [2, 7, 11, 3]:
        expected, state = stepper.step(np.array([token]), state)
        got = runner(ids=np.array([[token]], np.int32), **lite_state)
        lite_state = {name: got[name] for name in names}
        np.testing.assert_allclose(got["logits"], expected, rtol=1e-4, atol=1e-4)


def test_tflite_converter_failure_is_one_clear_line(tiny_bundle, tmp_path, monkeypatch):
    import tensorflow as tf

    refusal = ("<unknown>:0: error: loc(callsite(fused[\"TensorListReserve:\", \"poetgen_step_1/rnn_0_1/"
               "TensorArrayV2_1@__inference_function_735\"])): 'tf.TensorListReserve' op requires element_shape "
               "to be static during TF Lite transformation pass\n<unknown>:0: note: called from")

    class Refusing:
        def convert(self):
            raise RuntimeError(refusal)

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_concrete_functions", lambda *a, **k: Refusing())
    out = tmp_path / "lite"
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "tflite")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "TFLite converter cannot handle layer rnn_0 (op tf.TensorListReserve is not supported)" in lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".lite")]


def test_export_refuses_to_overwrite_without_force(tiny_bundle, tmp_path):
    out = tmp_path / "taken"
    assert run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "tflite").exit_code == 0
    before = (out / "model.tflite").read_bytes()
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras")
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.output and len(result.output.strip().splitlines()) == 1
    assert (out / "model.tflite").read_bytes() == before
    forced = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "int8.npz", "model.keras", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]   # no temporary left behind


def test_force_never_replaces_a_directory_that_is_not_an_export(tiny_bundle, tmp_path):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert result.exit_code == 2 and "holds no export" in result.output
    assert (out / "thesis.txt").read_text() == "mine"


@pytest.mark.parametrize("kind", ["file", "documents"])
def test_an_out_that_force_cannot_replace_is_said_so_without_force_too(tiny_bundle, tmp_path, kind):
    """Without --force, a file or a folder holding no export was refused with "already exists; pass
    --force to replace it", and --force was then refused too ("not replacing it, even with --force")."""
    out = tmp_path / kind
    if kind == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "thesis.txt").write_text("mine")
    for force in ([], ["--force"]):
        result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", *force)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "pass --force" not in lines[0] and "not replacing it, even with --force" in lines[0], lines[0]
    assert (out if kind == "file" else out / "thesis.txt").read_text() == "mine"


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_an_empty_directory_is_exported_into_with_or_without_force(tiny_bundle, tmp_path, force):
    """Written into, not replaced: the export was swapped in for the empty folder, so a mounted volume (a
    container's `-v host:/out`, which cannot be renamed) failed with EBUSY, and a folder's own mode was lost."""
    out = tmp_path / "emptyout"
    out.mkdir()
    out.chmod(0o2750)
    before = os.stat(out)
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", *force)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "int8.npz", "model.keras", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emptyout"]   # no temporary left behind
    after = os.stat(out)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)   # the same folder, as it was


def test_an_empty_directory_interrupted_while_filled_is_left_empty(tiny_bundle, tmp_path, monkeypatch):
    """The export's files are moved in one by one, its model last: a Ctrl-C among them takes back those
    moved, so no half export (config and tokenizer without a model) is left looking like one."""
    import poetgen.atomic

    out = tmp_path / "emptyout"
    out.mkdir()
    rename = os.rename
    present = []

    def interrupted(source, target):
        if Path(target) == out / "model.keras":
            present.extend(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
            raise KeyboardInterrupt
        rename(source, target)

    monkeypatch.setattr(poetgen.atomic.os, "rename", interrupted)
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras")
    assert result.exit_code == 130, result.output
    assert present == ["config.json", "int8.npz", "tokenizer.json"]   # the model goes in last
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["emptyout"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_an_entry_made_in_an_empty_out_while_it_is_filled_is_named_not_pass_force(tiny_bundle, tmp_path,
                                                                                    monkeypatch, force):
    """Another process wrote a name the export fills an empty --out with: the message said "already exists;
    pass --force to replace it", with --force given too, and --force could not help (the folder then holds
    no export). It names the entry, keeps it, and takes back what the export moved in."""
    import importlib

    exporting = importlib.import_module("poetgen.export")   # the module: poetgen.export is also its function
    out = tmp_path / "emptyout"
    out.mkdir()

    def writer(bundle, directory):   # the export's files, and meanwhile someone else's config.json in `out`
        (directory / "model.keras").write_bytes(b"model")
        (directory / "config.json").write_text("{}")
        (out / "config.json").write_text("theirs")

    monkeypatch.setattr(exporting, "write_keras", writer)
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", *force)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "pass --force" not in lines[0] and f"{out / 'config.json'} appeared" in lines[0], lines[0]
    assert [p.name for p in out.iterdir()] == ["config.json"] and (out / "config.json").read_text() == "theirs"


@pytest.mark.parametrize("target", ["bundle", "reverse"])
def test_the_exported_bundle_or_its_reverse_model_as_out_is_refused_alike_with_or_without_force(
        tiny_bundle, tmp_path, target):
    """--out naming the bundle being exported (one without training logs: a keras export used as --model),
    or its reverse/ (the shipped model's), was answered "already exists; pass --force to replace it"
    without --force, then refused with it ("is the bundle being exported")."""
    import shutil

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("config.json", "tokenizer.json", "model.keras"):
        shutil.copy(tiny_bundle / name, bundle / name)
    shutil.copytree(bundle, tmp_path / "reverse")
    shutil.move(tmp_path / "reverse", bundle / "reverse")
    out = bundle if target == "bundle" else bundle / "reverse"
    before = sorted(p.name for p in out.iterdir())
    for force in ([], ["--force"]):
        result = run_cli("export", "--model", bundle, "--out", out, "--format", "keras", *force)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        said = "is the reverse model of the bundle" if target == "reverse" else "is the bundle being exported"
        assert "pass --force" not in lines[0] and said in lines[0], lines[0]
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("fill", [True, False])
def test_a_file_exists_error_the_os_raises_while_exporting_is_one_line(tiny_bundle, tmp_path, monkeypatch, fill):
    """An OSError EEXIST (errno, text, filename: not atomic_directory's FileExistsError(path)) reached the
    collision message, which read its errno as the path: Path(17) raised TypeError, a traceback."""
    import errno
    import importlib

    exporting = importlib.import_module("poetgen.export")
    out = tmp_path / "out"
    if fill:
        out.mkdir()

    def writer(bundle, directory):
        raise FileExistsError(errno.EEXIST, "File exists", str(directory / "assets"))

    monkeypatch.setattr(exporting, "write_keras", writer)
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "TypeError" not in lines[0] and str(out) in lines[0], lines[0]


def _killed_while_filled(out, moved=("config.json", "int8.npz", "tokenizer.json"), *others):
    """`out` as `kill -9` leaves an export into an empty folder among its renames: the lock of a dead process,
    the files moved so far, and the temporary folder holding the rest (the model, moved last)."""
    import socket

    from poetgen.lock import LOCK_NAME

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "command": "poetgen export", "since": 0}))
    leftover = out / f".{out.name}.k3x9_q2w.tmp"
    leftover.mkdir()
    (leftover / "model.keras").write_bytes(b"half")
    for name in (*moved, *others):
        (out / name).write_bytes(b"moved")
    return leftover


def test_an_export_killed_while_it_filled_its_folder_is_redone_with_force(tiny_bundle, tmp_path):
    """kill -9 among the renames into an empty --out left some export files, no model, and `.out.….tmp/`:
    every later export refused the folder ("holds no export; not replacing it, even with --force") and the
    user had to clear it by hand. Without --force it is named for what it is; --force redoes it in place."""
    out = tmp_path / "out"
    leftover = _killed_while_filled(out)
    before = os.stat(out).st_ino
    refused = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras")
    error = refused.output.strip().splitlines()[-1]   # after the notice that the dead export's lock is taken over
    assert refused.exit_code == 2 and error.startswith("poetgen: error: "), refused.output
    assert "holds an interrupted export" in error and error.endswith("pass --force to redo it")
    assert leftover.is_dir() and (out / "config.json").read_bytes() == b"moved"   # kept for --force to see
    forced = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "int8.npz", "model.keras", "tokenizer.json"]
    assert os.stat(out).st_ino == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "config.json").read_bytes() != b"moved"


def test_an_export_killed_before_it_moved_anything_is_filled_without_force(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    _killed_while_filled(out, ())
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "tflite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.tflite", "tables.npz", "tokenizer.json"]


def test_a_killed_fill_beside_a_file_no_export_writes_is_never_cleared(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    _killed_while_filled(out, ("config.json",), "thesis.txt")
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert result.exit_code == 2 and "holds no export; not replacing it" in result.output, result.output
    assert (out / "thesis.txt").read_bytes() == (out / "config.json").read_bytes() == b"moved"


@pytest.mark.parametrize("args, message", [
    (["--format", "onnx"], "'onnx' is not one of"),
    (["--model", "/nonexistent/model"], "model bundle not found"),
    (["--out", "/proc/no-such-dir/out"], "cannot create directory /proc/no-such-dir"),   # made where it can be
])
def test_export_errors_are_one_line(tiny_bundle, tmp_path, args, message):
    base = {"--model": str(tiny_bundle), "--out": str(tmp_path / "out"), "--format": "keras"}
    base.update(dict(zip(args[::2], args[1::2])))
    result = run_cli("export", *[x for pair in base.items() for x in pair])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_an_export_to_a_new_directory_holds_its_lock_while_it_writes(tiny_bundle, tmp_path, monkeypatch):
    """Without the lock a training run could start in the new directory during the export, and the
    final swap (--force) would replace it under the run."""
    import importlib

    from poetgen.errors import InUse
    from poetgen.lock import Lock

    module = importlib.import_module("poetgen.export")   # poetgen.export is also the API's function
    out, seen, write = tmp_path / "fresh", [], module.write_keras

    def writing(bundle, directory):
        with pytest.raises(InUse, match="in use by"):
            with Lock.directory(out):
                pass
        seen.append(True)
        write(bundle, directory)

    monkeypatch.setattr(module, "write_keras", writing)
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert result.exit_code == 0, result.output
    assert seen and sorted(p.name for p in out.iterdir()) == ["config.json", "int8.npz", "model.keras", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_export_never_replaces_a_file_nor_the_current_directory(tiny_bundle, tmp_path, monkeypatch):
    mine = tmp_path / "notes.txt"
    mine.write_text("important")
    result = run_cli("export", "--model", tiny_bundle, "--out", mine, "--format", "keras", "--force")
    assert result.exit_code == 2 and "is a file" in result.output and len(result.output.strip().splitlines()) == 1
    assert mine.read_text() == "important"
    monkeypatch.chdir(tmp_path)
    result = run_cli("export", "--model", tiny_bundle, "--out", ".", "--format", "keras", "--force")
    assert result.exit_code == 2 and "names no directory" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_force_does_not_replace_a_symbolic_link(tiny_bundle, tmp_path):
    """`export --force` onto a link to an earlier export replaced the link with a new directory and left
    the export it named as it was."""
    first, link = tmp_path / "e1", tmp_path / "current"
    assert run_cli("export", "--model", tiny_bundle, "--out", first, "--format", "keras").exit_code == 0
    link.symlink_to(first.name)
    before = sorted(p.relative_to(first) for p in first.rglob("*"))
    result = run_cli("export", "--model", tiny_bundle, "--out", link, "--format", "keras", "--force")
    assert result.exit_code == 2 and "is a symbolic link" in result.output and str(first) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert link.is_symlink() and sorted(p.relative_to(first) for p in first.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "e1"]
    for force in ([], ["--force"]):   # without --force, or to a link whose target is gone: the same refusal
        dangling = tmp_path / "gone"
        dangling.unlink(missing_ok=True)
        dangling.symlink_to("nowhere")
        result = run_cli("export", "--model", tiny_bundle, "--out", dangling, "--format", "keras", *force)
        assert result.exit_code == 2 and "is a symbolic link" in result.output, result.output
        assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_reverse_model_is_not_exported_as_a_savedmodel_that_writes(with_reverse, tmp_path):
    result = run_cli("export", "--model", with_reverse[0] / "reverse", "--out", tmp_path / "sm", "--tunes", "0")
    assert result.exit_code == 2 and "reverse model" in result.output and len(result.output.strip().splitlines()) == 1
    assert "--format keras or tflite" in result.output   # both write it (the message named keras alone)
    assert not (tmp_path / "sm").exists()
    # nor are the folders above a deep --out made for it (they were, before the refusal)
    result = run_cli("export", "--model", with_reverse[0] / "reverse", "--out", tmp_path / "new" / "deep" / "1")
    assert result.exit_code == 2 and "reverse model" in result.output and not (tmp_path / "new").exists()


def test_force_does_not_replace_a_training_run(tiny_bundle, tmp_path):
    """--force onto a finished run deleted its resume/, log and curves (model.keras counts as an export)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_bundle, run)
    (run / "resume").mkdir(exist_ok=True)
    (run / "resume" / "state.json").write_text("{}", encoding="utf-8")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = run_cli("export", "--model", tiny_bundle, "--out", run, "--format", "keras", "--force")
    assert result.exit_code == 2 and "is a training run" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_force_does_not_replace_a_finished_bundle(tiny_bundle, tmp_path):
    """A finished run has no resume/, but --force onto it deleted its reverse model, log and curves."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_bundle, run)
    shutil.rmtree(run / "resume", ignore_errors=True)
    (run / "log.csv").write_text("epoch,loss\n1,5.0\n", encoding="utf-8")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = run_cli("export", "--model", tiny_bundle, "--out", run, "--format", "keras", "--force")
    assert result.exit_code == 2 and "is a training run (it holds log.csv, which only training writes)" \
        in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    # without --force too: not "pass --force", which would then be refused
    result = run_cli("export", "--model", tiny_bundle, "--out", run, "--format", "keras")
    assert result.exit_code == 2 and "is a training run" in result.output and "pass --force" not in result.output
    # a keras export of it (no logs) is an earlier export: --force replaces it
    assert run_cli("export", "--model", tiny_bundle, "--out", tmp_path / "k", "--format", "keras").exit_code == 0
    result = run_cli("export", "--model", tiny_bundle, "--out", tmp_path / "k", "--format", "keras", "--force")
    assert result.exit_code == 0, result.output


def test_force_does_not_replace_the_exported_bundle_s_reverse_model(with_reverse, tmp_path):
    """`export --out BUNDLE/reverse --force` replaced the bundle's reverse model with the forward export
    (the shipped reverse/ keeps no log, so nothing marked it a training run)."""
    import shutil

    bundle = tmp_path / "model"
    shutil.copytree(with_reverse[0], bundle, ignore=shutil.ignore_patterns("log.csv", "curves.png", "tensorboard",
                                                                          "resume"))
    before = (bundle / "reverse" / "model.keras").read_bytes()
    result = run_cli("export", "--model", bundle, "--out", bundle / "reverse", "--format", "keras", "--force")
    assert result.exit_code == 2 and "is the reverse model of the bundle being exported" in result.output, result.output
    assert (bundle / "reverse" / "model.keras").read_bytes() == before


def test_force_leaves_a_users_own_dot_old_directory_alone(tiny_bundle, tmp_path):
    out, theirs = tmp_path / "pb", tmp_path / ".pb.old"
    theirs.mkdir()
    (theirs / "mydata.txt").write_text("precious")
    assert run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras").exit_code == 0
    result = run_cli("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert result.exit_code == 0, result.output
    assert (theirs / "mydata.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pb.old", "pb"]   # no temporary left behind


def test_export_makes_the_missing_directories_above_out(tiny_bundle, tmp_path):
    """The README's TF Serving command, `poetgen export --out models/poet/1`, failed in a fresh directory
    (directory models/poet does not exist); a file in the way is still one line."""
    out = tmp_path / "models" / "poet" / "1"
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny_bundle), "--out", str(out), "--format", "keras"])
    assert result.exit_code == 0, result.output
    assert (out / "model.keras").exists()
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny_bundle), "--out", str(tmp_path / "afile" / "x" / "1"),
                                      "--format", "keras"])
    assert result.exit_code == 2 and result.stderr.startswith("poetgen: error: cannot write") and "Traceback" not in result.output
    assert (tmp_path / "afile").read_text() == "x"


def test_a_savedmodel_that_the_disk_cannot_hold_is_one_clear_line(tiny_bundle, tmp_path, monkeypatch):
    """A full disk (or `ulimit -f`) reaches TensorFlow's writer as ResourceExhaustedError or
    OutOfRangeError, no OSError: it was an internal error; the keras and tflite formats said one line."""
    import tensorflow as tf

    def full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "SaveV2: No space left on device\n\t [[{{node SaveV2}}]]")

    monkeypatch.setattr(tf.saved_model, "save", full)
    out = tmp_path / "sm"
    result = run_cli("export", "--model", tiny_bundle, "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("poetgen: error: cannot write the SavedModel: SaveV2: No space left on device"), line
    assert not out.exists() or [p.name for p in out.iterdir()] == []


@pytest.mark.parametrize("marker, kind", [("model.tflite", "tflite"), ("saved_model.pb", "SavedModel")])
def test_generate_on_an_export_it_cannot_load_names_the_export(tiny_bundle, tmp_path, marker, kind):
    """`generate --model EXPORT` of a tflite export said "model.keras: model file is missing; restore the
    file from a backup…", though nothing was damaged."""
    import shutil

    out = tmp_path / "export"
    shutil.copytree(tiny_bundle, out)
    (out / "model.keras").unlink()
    (out / marker).write_bytes(b"\0")
    result = run_cli("generate", "--model", out, "--seed", 1)
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert f"a {kind} export, which poetgen does not load" in line and "backup" not in line, line


def test_generate_on_a_savedmodel_as_export_writes_it_names_the_export(tiny_bundle, tmp_path):
    """A SavedModel keeps its config and tokenizer in assets.extra/, so `generate --model poet_savedmodel`
    said "not a poetgen model bundle (no config.json)" instead of naming the export (so did evaluate,
    quantize and serve)."""
    import shutil

    out = tmp_path / "export"
    (out / "variables").mkdir(parents=True)
    (out / "saved_model.pb").write_bytes(b"\0")
    shutil.copytree(tiny_bundle, out / "assets.extra", ignore=lambda folder, names: [
        name for name in names if name not in ("config.json", "tokenizer.json")])
    for command in (["generate", "--seed", 1], ["quantize"]):
        result = run_cli(command[0], "--model", out, *command[1:])
        assert result.exit_code == 2 and "Traceback" not in result.output
        line = result.output.strip().splitlines()[-1]
        assert f"{out}: a SavedModel export, which poetgen does not load" in line, line
