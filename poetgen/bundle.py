"""A model bundle: one directory with model.keras, tokenizer.json and config.json.

It carries everything needed to rebuild and check its model; loading refuses what does not fit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from pathlib import Path

from poetgen.atomic import atomic_save, read_small_text, staged, write_text
from poetgen.corpus import HELD_OUT_FRACTION
from poetgen.errors import BadModel, InUse
from poetgen.lock import Lock
from poetgen.model import ModelConfig
from poetgen.tokenizer import Tokenizer
from poetgen.weights import foreign_export, missing_model

FORMAT_VERSION = 1
MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE = "model.keras", "tokenizer.json", "config.json"
logger = logging.getLogger(__name__)
DAMAGE_WORDS = ("corrupt", "truncated", "missing")   # a damaged file, rather than a foreign or newer one
RESTORE_HINT = "restore the file from a backup, or export or train the bundle again"


@dataclasses.dataclass
class Bundle:
    path: Path
    model: object            # the Keras training-form model (logits over the vocabulary); None when
                             # loaded for generation (keras=False) and the weights were read without Keras
    tokenizer: Tokenizer
    config: dict             # config.json as saved
    model_config: ModelConfig
    weights: dict | None = None   # {layer name: arrays} (keras=False); None: take them from `model`

    @property
    def train_options(self) -> dict:
        """The options it was trained with (config.json's "train", checked by read_config; {} if none)."""
        return self.config.get("train") or {}

    @property
    def val_split(self) -> float:
        """The held-out share it was trained with (corpus.is_held_out's fraction): its own validation poems,
        never trained on; the fixed 2 % where config.json records none."""
        return float(self.train_options.get("val_split", HELD_OUT_FRACTION))

    @property
    def training_corpus(self) -> tuple[str, list[Path] | None]:
        """(the corpus it was trained on, as config.json records it; its files now): the shipped files the label
        names, or the user's file; None for the files when that file is gone. Its training split is the poems
        not is_held_out(text, val_split)."""
        from poetgen.corpus import SHIPPED_FILES, shipped_corpus_paths, shipped_files_of, shipped_label

        recorded = self.config.get("corpus", {}).get("path", shipped_label(SHIPPED_FILES[:1]))
        files = shipped_files_of(recorded)
        if files is not None:
            return recorded, shipped_corpus_paths(files)
        return recorded, [Path(recorded)] if Path(recorded).exists() else None

    @property
    def reverse(self) -> bool:
        """Trained with --reverse: it reads poems backwards (a best-of reranker) and writes none."""
        return bool(self.train_options.get("reverse"))


def default_model_dir() -> Path:
    from poetgen.resources import shipped_path

    return shipped_path("checkpoints/default")


def save_model_file(model, path: Path) -> None:
    atomic_save(path, model.save)   # the temporary name keeps the .keras suffix Keras insists on


def config_text(config: dict) -> str:
    return json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write_config(directory: Path, config: dict) -> None:
    write_text(directory / CONFIG_FILE, config_text(config))


class OnceWarnings:
    """Warnings given once each, by kind: a run saves its bundle at every better epoch, and a reverse/ that
    another run holds, or that cannot be moved, is the same news at each save."""

    def __init__(self) -> None:
        self._given: set[str] = set()

    def warn(self, kind: str, message: str) -> None:
        if kind not in self._given:
            self._given.add(kind)
            logger.warning(message)


def save_bundle(directory: Path, model, tokenizer: Tokenizer, config: dict,
                warnings: OnceWarnings | None = None, extra: dict | None = None) -> None:
    """Write or update a bundle: all its files are written aside first and put in place together
    (atomic.staged), so a write that fails (a full disk) leaves the bundle before it whole. `warnings`:
    a run's, whose saves each warn once (None: this save's own). `extra`: {file name: function writing
    it at the path given}, more files of the bundle put in place with the others (int8 products)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_path = directory / TOKENIZER_FILE
    with staged() as stage:
        if not tokenizer_path.exists() or Tokenizer.load(tokenizer_path).hash != tokenizer.hash:
            stage.text(tokenizer_path, tokenizer.to_json())
        stage.save(directory / MODEL_FILE, model.save)
        stage.text(directory / CONFIG_FILE, config_text({**config, "format_version": FORMAT_VERSION,
                                                          "tokenizer_hash": tokenizer.hash}))
        for name, write in (extra or {}).items():
            stage.save(directory / name, write)
    _set_aside_stale_reverse(directory, tokenizer, warnings or OnceWarnings())


def _set_aside_stale_reverse(directory: Path, tokenizer: Tokenizer, warnings: OnceWarnings) -> None:
    """A reverse model (reverse/) trained on another vocabulary than the bundle's new one (`train --force`
    over a bundle that had one) would make every later load refuse the bundle: it is renamed, not
    deleted (reverse.stale, reverse.stale-2 …), once the new model is in place, and a warning says so.
    Renamed under reverse/'s own lock: a run writing it (`train --reverse --out B/reverse`) keeps it."""
    reverse = directory / "reverse"
    if not _trained_on_another(reverse, tokenizer):
        return
    try:
        with Lock.directory(reverse) as lock:
            if not _trained_on_another(reverse, tokenizer):   # the run that held it may have rewritten it
                return
            aside = next(path for path in (directory / ("reverse.stale" + (f"-{k}" if k > 1 else "")) for k in range(1, 10**6))
                         if not path.exists())
            reverse.rename(aside)
            lock.moved(aside)
    except InUse as error:
        warnings.warn("held", f"{reverse} was trained on another vocabulary than this model's, but another run "
                              f"holds it ({error}): once that run ends, move it away, or loading the bundle refuses it")
        return
    except OSError as error:   # the new model is saved: a warning, not a failed run
        warnings.warn("unmoved", f"{reverse} was trained on another vocabulary than this model's and could not be "
                                 f"set aside ({error.strerror or error}): move it away, or loading the bundle refuses it")
        return
    logger.warning(f"{reverse} was trained on another vocabulary than this model's: set aside as {aside.name}; "
                   f"train a new one with --reverse --out {reverse}")


def _trained_on_another(reverse: Path, tokenizer: Tokenizer) -> bool:
    """Whether `reverse` holds a vocabulary other than `tokenizer`'s (False when unreadable: loading the
    bundle names that fault)."""
    try:
        return (reverse / TOKENIZER_FILE).is_file() and Tokenizer.load(reverse / TOKENIZER_FILE).hash != tokenizer.hash
    except (OSError, ValueError, KeyError, TypeError, BadModel):
        return False


def is_bundle_config(path: Path) -> bool:
    """Whether `path` is a poetgen bundle's config.json (it names the bundle format): a run may replace
    the files of a directory that holds one; a user's own config.json is not one."""
    try:
        return "format_version" in json.loads(read_small_text(path, "config"))
    except (OSError, ValueError, TypeError, BadModel):
        return False


# config.json's training options that loading reads, and what each must be
_TRAIN_KINDS = {"reverse": (bool, "true or false"), "titles": (bool, "true or false"),
                "val_split": ((int, float), "a number between 0 and 1")}


def _check_train_options(config: dict, path: Path) -> None:
    train = config.get("train")
    if train is None:
        return
    if not isinstance(train, dict):
        raise BadModel(f"{path}: corrupt config (train is not a JSON object)")
    for name, (kind, wanted) in _TRAIN_KINDS.items():
        value = train.get(name)
        if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            raise BadModel(f"{path}: corrupt config (train.{name} must be {wanted}, not {value!r})")
    split = train.get("val_split")
    if split is not None and not 0 < split < 1:   # train allows below 0.5; other trainers may not check
        raise BadModel(f"{path}: corrupt config (train.val_split must be between 0 and 1, not {split!r})")


def _check_corpus_record(config: dict, path: Path) -> None:
    """config.json's corpus record (evaluate reads its path and hash): absent, or an object of text."""
    corpus = config.get("corpus")
    if corpus is None:
        return
    if not isinstance(corpus, dict):
        raise BadModel(f"{path}: corrupt config (corpus is not a JSON object)")
    for name in ("path", "hash"):
        if not isinstance(corpus.get(name, ""), str):
            raise BadModel(f"{path}: corrupt config (corpus.{name} must be text, not {corpus[name]!r})")


def read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    try:
        config = json.loads(read_small_text(path, "config"))
    except FileNotFoundError:   # a SavedModel keeps its config in assets.extra/: named, not "no config.json"
        raise foreign_export(directory) or BadModel(f"{directory}: not a poetgen model bundle (no {CONFIG_FILE})") \
            from None
    except (ValueError, UnicodeDecodeError):
        raise BadModel(f"{path}: corrupt config (not valid JSON)") from None
    if not isinstance(config, dict):
        raise BadModel(f"{path}: corrupt config (not a JSON object)")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadModel(f"{path}: no format_version: not a poetgen bundle")
    if version > FORMAT_VERSION:
        raise BadModel(f"{directory}: bundle format {version} is newer than this poetgen supports "
                       f"({FORMAT_VERSION}); upgrade poetgen")
    _check_train_options(config, path)
    _check_corpus_record(config, path)
    return config


def model_config_of(config: dict, path: Path) -> ModelConfig:
    try:
        model_config = ModelConfig(**config["model"])
        model_config.validate()
    except (KeyError, TypeError, ValueError) as error:
        raise BadModel(f"{path}: model options in {CONFIG_FILE} are invalid ({error})") from None
    return model_config


def load_keras_model(path: Path):
    """Load a .keras file with safe mode on: a file with Lambda layers or foreign code is refused."""
    if not path.exists():
        raise missing_model(path)
    if not zipfile.is_zipfile(path):
        raise BadModel(f"{path}: model file is truncated or corrupt (not a .keras archive)")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise BadModel(f"{path}: refused by safe mode (it contains a Lambda layer or custom code)") from None
        raise BadModel(f"{path}: cannot load model ({_first_line(error)})") from None
    except Exception as error:  # Keras raises many types for damaged archives
        raise BadModel(f"{path}: model file is corrupt ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def load_bundle(directory: str | os.PathLike | None = None, keras: bool = True) -> Bundle:
    """The bundle at `directory` (default: the shipped model), checked. keras=False reads only the
    weights, with h5py (poetgen.weights): no TensorFlow, for generation; an archive that reader does
    not know is loaded with Keras after a one-line notice."""
    directory = Path(directory) if directory is not None else default_model_dir()
    if directory.exists() and not directory.is_dir():
        raise BadModel(f"{directory}: a file, not a model bundle (a bundle is the directory `poetgen train` "
                       f"or `poetgen export --format keras` writes)")
    if not directory.is_dir():
        raise BadModel(f"{directory}: model bundle not found")
    try:
        return _load_bundle(directory, keras)
    except BadModel as error:
        if not any(word in str(error) for word in DAMAGE_WORDS):
            raise
        raise BadModel(f"{error}; {RESTORE_HINT}") from None


def _load_bundle(directory: Path, keras: bool) -> Bundle:
    config = read_config(directory)
    model_config = model_config_of(config, directory)
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE, expected_hash=config.get("tokenizer_hash"))
    if tokenizer.vocab_size != model_config.vocab_size:
        raise BadModel(f"{directory}: tokenizer has {tokenizer.vocab_size} ids but the model expects "
                       f"{model_config.vocab_size}")
    if not keras:
        return _weights_bundle(directory, tokenizer, config, model_config)
    model = load_keras_model(directory / MODEL_FILE)
    output_size = model.outputs[0].shape[-1]
    if output_size != tokenizer.vocab_size:
        raise BadModel(f"{directory}: model predicts {output_size} ids but the tokenizer has {tokenizer.vocab_size}")
    from poetgen.weights import check_layers, layer_weights

    # the same check as generation's reader: config.json's model options (units, cell, ...) must fit the weights
    layers = [{"class_name": type(layer).__name__, "config": {"name": layer.name}} for layer in model.layers]
    check_layers(layers, layer_weights(model), model_config, directory / MODEL_FILE)
    return Bundle(directory, model, tokenizer, config, model_config)


def _weights_bundle(directory: Path, tokenizer: Tokenizer, config: dict, model_config: ModelConfig) -> Bundle:
    """The bundle with its weights read through h5py, or through Keras, after a one-line warning on
    stderr, when the archive is laid out in a way that reader does not know (an older poetgen or Keras)."""
    from poetgen import weights as reader

    path, model = directory / MODEL_FILE, None
    try:
        weights = reader.read_weights(path, model_config)
    except reader.UnknownLayout as reason:
        logger.warning(f"{path}: weights not readable without Keras ({reason}); loading it with Keras "
                       f"(slower start)")
        from poetgen.quiet import import_tensorflow

        import_tensorflow()
        model = load_keras_model(path)
        weights = reader.layer_weights(model)
        reader.check_layers(None, weights, model_config, path)
    return Bundle(directory, model, tokenizer, config, model_config, weights)
