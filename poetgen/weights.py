"""A bundle's weights read from its `.keras` archive with zipfile and h5py, without TensorFlow or Keras.

No code is deserialised: the archive's config.json is read as JSON and checked against the bundle's
ModelConfig; model.weights.h5 is read as arrays. Training, export and evaluation still load Keras.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from poetgen.errors import BadModel
from poetgen.model import ModelConfig

RNN_CLASSES = {"lstm": "LSTM", "gru": "GRU", "simplernn": "SimpleRNN"}   # ModelConfig.cell → Keras class


class UnknownLayout(Exception):
    """A readable archive laid out in a way this reader does not know (e.g. from another Keras)."""


def layer_weights(model) -> dict[str, list[np.ndarray]]:
    """{layer name: layer.get_weights()} of a loaded Keras model: what read_weights returns."""
    return {layer.name: layer.get_weights() for layer in model.layers}


def foreign_export(directory: Path) -> BadModel | None:
    """The error for a tflite or SavedModel export given as a bundle, or None when `directory` is neither."""
    for marker, kind in (("model.tflite", "tflite"), ("saved_model.pb", "SavedModel")):
        if (directory / marker).exists():
            return BadModel(f"{directory}: a {kind} export, which poetgen does not load (it loads a bundle "
                            f"or a keras export: poetgen export --format keras)")
    return None


def missing_model(path: Path) -> BadModel:
    """The error for a bundle without its model file: a tflite export beside it is named (it has the
    bundle's config and tokenizer, so it looked like a damaged bundle)."""
    return foreign_export(path.parent) or BadModel(f"{path}: model file is missing")


def read_weights(path: Path, config: ModelConfig) -> dict[str, list[np.ndarray]]:
    """{layer name: arrays} for every layer of the archive, in the order of Keras' get_weights().

    Raises BadModel (one line) for a missing, truncated or corrupt archive, or one whose layers do not
    match `config`; UnknownLayout when the archive is sound but laid out unlike Keras 3's .keras files.
    """
    if not path.exists():
        raise missing_model(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise UnknownLayout("the archive lacks config.json or model.weights.h5")
            keras_config = json.loads(archive.read("config.json"))
            data = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as error:
        raise BadModel(f"{path}: model file is truncated or corrupt ({_first_line(error)})") from None
    layers = _config_layers(keras_config)
    _refuse_code(layers, path)
    weights = _read_h5(data, layers, path)
    check_layers(layers, weights, config, path)
    return weights


def _config_layers(keras_config: dict) -> list[dict]:
    try:
        layers = keras_config["config"]["layers"]
        if all(isinstance(layer["class_name"], str) and isinstance(layer["config"]["name"], str)
               for layer in layers):
            return layers
    except (KeyError, TypeError, AttributeError):
        pass
    raise UnknownLayout("config.json has no list of named layers")


def _refuse_code(layers: list[dict], path: Path) -> None:
    """What Keras' safe mode refuses, refused here too: the NumPy step could not run it anyway."""
    for layer in layers:
        module = str(layer.get("module") or "")
        if layer["class_name"] == "Lambda" or not module.startswith(("keras", "poetgen")):
            raise BadModel(f"{path}: refused by safe mode (layer {layer['config']['name']!r} is a "
                           f"{layer['class_name']}: a Lambda layer or custom code)")


def _read_h5(data: bytes, layers: list[dict], path: Path) -> dict[str, list[np.ndarray]]:
    """Keras 3 writes layer i of model.layers under layers/<snake_case(class)>[_k]/ with a `vars` group
    (attribute `name`: the layer's name, in recent versions) and nested objects (an RNN's `cell`) in
    subgroups."""
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            if not isinstance(h5.get("layers"), h5py.Group):
                raise UnknownLayout("model.weights.h5 has no 'layers' group")
            groups = h5["layers"]
            named = any("name" in groups[key]["vars"].attrs for key in groups if "vars" in groups[key])
            weights = {}
            for layer, key in zip(layers, _group_names(layers)):
                name = layer["config"]["name"]
                if key not in groups:
                    if named:   # this layout, yet a layer is missing: damaged, not foreign
                        raise BadModel(f"{path}: model weights lack layer {name!r}")
                    raise UnknownLayout(f"no weights group for layer {name!r}")
                group = groups[key]
                stored = group["vars"].attrs.get("name") if "vars" in group else None
                if stored is not None and _text(stored) != name:
                    raise BadModel(f"{path}: model weights hold layer {_text(stored)!r} where config.json "
                                   f"has {name!r}")
                weights[name] = _arrays(group)
            return weights
    except (OSError, KeyError, ValueError, TypeError) as error:   # h5py's errors for damaged files
        raise BadModel(f"{path}: model weights are corrupt ({_first_line(error)})") from None


def _group_names(layers: list[dict]) -> list[str]:
    """Keras' saving_lib names each layer's group after its class, numbered when it repeats."""
    used, names = {}, []
    for layer in layers:
        base = _snake_case(layer["class_name"])
        used[base] = used.get(base, -1) + 1
        names.append(base if used[base] == 0 else f"{base}_{used[base]}")
    return names


def _snake_case(name: str) -> str:   # keras.src.utils.naming.to_snake_case
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _arrays(group) -> list[np.ndarray]:
    """A layer's own variables (vars/0, vars/1, …), then its nested objects' in Keras' walk order."""
    arrays = []
    if "vars" in group:
        own = group["vars"]
        arrays += [np.asarray(own[str(i)][()]) for i in range(len(own))]
    for key in sorted(k for k in group if k != "vars"):
        arrays += _arrays(group[key])
    return arrays


def check_layers(layers: list[dict] | None, weights: dict[str, list[np.ndarray]], config: ModelConfig,
                 path: Path) -> None:
    """The archive's layers (config.json when given, and the weights' shapes) against the bundle's
    ModelConfig: a mismatch would step a different network than the bundle describes."""
    by_name = {layer["config"]["name"]: layer for layer in layers or []}
    expected = expected_shapes(config)
    for name, shapes in expected.items():
        if name not in weights:
            raise BadModel(f"{path}: the model has no layer {name!r} (config.json describes "
                           f"{config.layers} {config.cell} layers)")
        got = [tuple(w.shape) for w in weights[name]]
        if got != shapes:
            raise BadModel(f"{path}: layer {name!r} has weights of shapes {got}, but config.json describes "
                           f"{shapes}")
        layer = by_name.get(name)
        if layer is not None and name.startswith("rnn_") and layer["class_name"] != RNN_CLASSES[config.cell]:
            raise BadModel(f"{path}: layer {name!r} is a {layer['class_name']}, but config.json says "
                           f"{config.cell}")
    extra = f"rnn_{config.layers}"
    if extra in weights:
        raise BadModel(f"{path}: the model has more recurrent layers than the {config.layers} in config.json")


def expected_shapes(config: ModelConfig) -> dict[str, list[tuple]]:
    """The weight shapes NumpyStepper needs, layer by layer."""
    gates = {"lstm": 4, "gru": 3, "simplernn": 1}[config.cell] * config.units
    shapes = {"embedding": [(config.vocab_size, config.embedding_dim)]}
    for i in range(config.layers):
        inputs = config.embedding_dim if i == 0 else config.units
        bias = (2, gates) if config.cell == "gru" else (gates,)
        shapes[f"rnn_{i}"] = [(inputs, gates), (config.units, gates), bias]
    if config.projection:
        shapes["projection"] = [(config.units, config.projection), (config.projection,)]
    if not config.tie_embeddings:   # a tied output layer is the embedding table read in reverse
        shapes["logits"] = [(config.output_inputs, config.vocab_size), (config.vocab_size,)]
    return shapes


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
