"""Weights read with h5py from the .keras archive (poetgen.weights) against Keras' own loader, and the
generation path that uses them without importing TensorFlow."""

import json
import shutil
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from poetgen.errors import BadModel
from poetgen.model import CELLS, ModelConfig

from conftest import REPO

SHIPPED_BUNDLE = REPO / "checkpoints" / "default"


def assert_same_weights(ours: dict, keras_weights: dict) -> None:
    assert list(ours) == list(keras_weights)   # every layer, by name, in the model's order
    for name, arrays in keras_weights.items():
        assert len(ours[name]) == len(arrays), name
        for got, expected in zip(ours[name], arrays):
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("cell", CELLS)
def test_h5py_weights_equal_keras_get_weights(cell, tmp_path):
    from poetgen.bundle import load_keras_model, save_model_file
    from poetgen.model import build_model
    from poetgen.weights import layer_weights, read_weights

    config = ModelConfig(vocab_size=30, cell=cell, layers=2, units=12, embedding_dim=8, dropout=0.1)
    model = build_model(config)
    path = tmp_path / "model.keras"
    save_model_file(model, path)
    assert_same_weights(read_weights(path, config), layer_weights(load_keras_model(path)))


def test_h5py_weights_equal_keras_for_the_shipped_model():
    from poetgen.bundle import load_bundle
    from poetgen.weights import layer_weights

    bundle = load_bundle(SHIPPED_BUNDLE, keras=False)
    assert bundle.model is None
    assert_same_weights(bundle.weights, layer_weights(load_bundle(SHIPPED_BUNDLE).model))


def test_generation_from_h5py_weights_matches_keras_weights(tiny_bundle):
    from poetgen.bundle import load_bundle
    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    request = PoemRequest(n=4, sample=SampleOptions(seed=5))
    without_keras = Generator(load_bundle(tiny_bundle, keras=False)).generate(request)
    with_keras = Generator(load_bundle(tiny_bundle)).generate(request)
    assert [p["text"] for p in without_keras["poems"]] == [p["text"] for p in with_keras["poems"]]


NO_TF = """
import sys
from poetgen.cli import cli
try:
    cli.main(sys.argv[1:])
finally:
    print("HEAVY=" + ",".join(m for m in ("tensorflow", "keras") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("which", ["tiny", "shipped"])
def test_generate_imports_neither_tensorflow_nor_keras(which, tiny_bundle):
    bundle = tiny_bundle if which == "tiny" else SHIPPED_BUNDLE
    done = subprocess.run([sys.executable, "-c", NO_TF, "generate", "--model", str(bundle), "--seed", "3",
                           "--format", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["poems"][0]["layout_ok"]
    assert "HEAVY=\n" in done.stderr, done.stderr


def test_serve_imports_neither_tensorflow_nor_keras(tiny_bundle):
    pytest.importorskip("uvicorn")
    code = ("import sys, poetgen.http_server; "
            "poetgen.http_server.run_server = lambda app, sockets, *_: print(sorted(m for m in ('tensorflow', 'keras') "
            "if m in sys.modules)); from poetgen.cli import cli; cli.main(sys.argv[1:])")
    with socket.socket() as probe:   # a free port: serve binds it before loading the model
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", code, "serve", "--model", str(tiny_bundle), "--port", str(port)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_generator_load_imports_neither_tensorflow_nor_keras():
    code = ("import sys; from poetgen.generate import Generator, PoemRequest; "
            "Generator.load().generate(PoemRequest()); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def copy_bundle(source, destination):
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("tensorboard", "*.png"))
    return destination


def rewrite_archive(path, edit):
    """Rewrite the .keras archive at `path`, each member's bytes passed through edit(name, data)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            data = edit(name, data)
            if data is not None:
                archive.writestr(name, data)


def generate_cli(bundle):
    from click.testing import CliRunner

    from poetgen.cli import cli

    return CliRunner().invoke(cli, ["generate", "--model", str(bundle), "--seed", "4"])


def damage_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def damage_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def damage_drop_layer(path):
    import h5py

    def edit(name, data):
        if name != "model.weights.h5":
            return data
        scratch = path.with_suffix(".h5")
        scratch.write_bytes(data)
        with h5py.File(scratch, "a") as h5:
            del h5["layers/dense"]
        return scratch.read_bytes()

    rewrite_archive(path, edit)


def damage_fewer_layers(path):
    def edit(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        config["config"]["layers"] = [l for l in config["config"]["layers"] if l["config"]["name"] != "logits"]
        return json.dumps(config)

    rewrite_archive(path, edit)


@pytest.mark.parametrize("damage", [damage_truncate, damage_bytes, damage_drop_layer, damage_fewer_layers])
def test_a_damaged_archive_is_one_line(damage, tiny_bundle, tmp_path):
    from poetgen.bundle import load_bundle

    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    damage(bundle / "model.keras")
    with pytest.raises(BadModel):
        load_bundle(bundle, keras=False)
    done = generate_cli(bundle)
    assert done.exit_code == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("poetgen: error: "), done.stderr
    assert "model.keras" in done.stderr


def test_an_archive_with_fewer_layers_than_config_is_refused(tiny_bundle, tmp_path):
    from poetgen.bundle import load_bundle

    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    config["model"]["layers"] = 2
    (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(BadModel, match="rnn_1"):
        load_bundle(bundle, keras=False)


def test_an_archive_in_another_layout_loads_through_keras_with_a_warning(tiny_bundle, tmp_path):
    import h5py

    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    path = bundle / "model.keras"

    def keras_2_13_layout(name, data):   # Keras 2.13's group name, which Keras 3 still reads
        if name != "model.weights.h5":
            return data
        scratch = path.with_suffix(".h5")
        scratch.write_bytes(data)
        with h5py.File(scratch, "a") as h5:
            h5.move("layers", "_layer_checkpoint_dependencies")
        return scratch.read_bytes()

    rewrite_archive(path, keras_2_13_layout)
    done = generate_cli(bundle)
    assert done.exit_code == 0, done.output
    notices = done.stderr.splitlines()
    assert len(notices) == 1 and notices[0].startswith("poetgen: warning: ") and "with Keras" in notices[0], notices
    assert done.stdout and done.stdout == generate_cli(tiny_bundle).stdout   # the same weights
