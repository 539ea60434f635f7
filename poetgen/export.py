"""`poetgen export`: a bundle as a portable Keras bundle, a TensorFlow SavedModel or a TFLite step model.

Each format is written into a temporary directory renamed into place; the graphs live in export_graph.py.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gzip
import json
import os
import re
import shutil
from pathlib import Path

from poetgen.atomic import atomic_directory, check_parent, fill_leftovers, make_parents, write_text
from poetgen.bundle import CONFIG_FILE, TOKENIZER_FILE, Bundle, save_bundle, write_config
from poetgen.errors import BadInput, BadModel, OutputError, OutputExists
from poetgen.lock import LOCK_NAME, Lock
from poetgen.model import build_step_model, states_per_layer
from poetgen.options import check_settings, setting
from poetgen.quiet import import_tensorflow, muted_stderr
from poetgen.resume import LOG_FILE, RESUME_DIR

FORMATS = ("savedmodel", "keras", "tflite")
TFLITE_FILE = "model.tflite"
EXTRA_DIR = "assets.extra"   # TF Serving's place for files beside a SavedModel; loaders ignore it
# A directory holding one of these is an earlier export (or a bundle) that --force may replace...
EXPORT_MARKERS = ("saved_model.pb", TFLITE_FILE, "model.keras")
# ...unless it holds what only training writes (an export has no logs): a trained bundle, whose reverse
# model, log and curves --force would lose with its model.keras
TRAINING_MARKERS = (RESUME_DIR, LOG_FILE, "curves.png", "tensorboard")
ALL_TUNES = -1
CI_CORPUS = "corpus/ci.jsonl.gz"   # the shipped ci, whose tune counts rank tunes for --tunes N


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    out: Path                   # directory to create
    format: str = setting("savedmodel", choices=FORMATS)   # savedmodel | keras | tflite (see the README)
    force: bool = False         # replace `out` if it exists (only once the new export is complete)
    tunes: int = setting(ALL_TUNES, low=ALL_TUNES)   # ci tunes a savedmodel writes: -1 all, N the N commonest, 0 none

    def validate(self) -> None:
        check_settings(self)


def is_empty_directory(out: Path) -> bool:
    """A directory that holds nothing but our own lock file (export takes it before it looks inside)."""
    return out.is_dir() and not out.is_symlink() and all(p.name == LOCK_NAME for p in out.iterdir())


def export_names() -> frozenset:
    """The names an export writes at the top of its folder, in any format."""
    from poetgen.graph_tables import TABLES_FILE
    from poetgen.quantize import INT8_FILE
    from poetgen.rerank import REVERSE_DIR

    savedmodel = ("saved_model.pb", "fingerprint.pb", "variables", "assets", EXTRA_DIR)
    return frozenset((*EXPORT_MARKERS, *savedmodel, TOKENIZER_FILE, CONFIG_FILE, INT8_FILE, REVERSE_DIR,
                      TABLES_FILE))


def interrupted_fill(out: Path) -> list[Path]:
    """What an export killed while it moved its files into `out` (atomic_directory's fill: a kill -9 among
    the renames) left there: its temporary folder (atomic.fill_leftovers) and the files it had moved, the
    model not among them. Empty unless every entry but the lock is one of those: a folder with any other
    file is not ours to clear, and one whose model was moved in holds a whole export (--force replaces it)."""
    leftovers = fill_leftovers(out)
    if not leftovers:
        return []
    moved = [p for p in out.iterdir() if p.name != LOCK_NAME and p not in leftovers]
    names = export_names() - set(EXPORT_MARKERS)
    return leftovers + moved if all(p.name in names for p in moved) else []


def check_target(bundle: Bundle, options: ExportOptions) -> None:
    """Refuse early, before any slow conversion, what the final rename would refuse or regret."""
    out = Path(options.out)
    if out.is_symlink():   # --force replaced the link with a directory and left its target as it was
        raise OutputExists(f"{out} is a symbolic link; not replacing it, even with --force: export to the "
                           f"directory it names ({os.path.realpath(out)}) or another --out")
    trained = [name for name in TRAINING_MARKERS if (out / name).exists()] if out.is_dir() else []
    if trained:   # --force would lose its resume state, logs and reverse model: said first, not "pass --force"
        held = f"{RESUME_DIR}/, what `train --resume` needs" if trained[0] == RESUME_DIR else \
            f"{trained[0]}, which only training writes"
        raise OutputExists(f"{out} is a training run (it holds {held}); not replacing it, even with --force: "
                           f"export to another --out")
    half, leftovers = interrupted_fill(out), fill_leftovers(out)
    moved = sorted(p.name for p in half if p not in leftovers)
    if moved and not options.force:   # killed before it moved anything: as empty, filled without --force
        raise OutputExists(f"{out} holds an interrupted export (killed while its files were moved in: "
                           f"{', '.join(moved)}, no model, and its temporary folder {leftovers[0].name}); "
                           f"pass --force to redo it")
    # what --force would not replace is said first, with or without it: not "pass --force"
    if out.exists() and not out.is_dir():
        raise OutputExists(f"{out} is a file, not an export; not replacing it, even with --force")
    if out.is_dir() and not out.is_symlink() and not is_empty_directory(out) and not half \
            and not any((out / marker).exists() for marker in EXPORT_MARKERS):
        raise OutputExists(f"{out} is a directory that holds no export; not replacing it, even with --force")
    if out.resolve() == Path(bundle.path).resolve():
        raise BadInput(f"{out} is the bundle being exported; choose another --out")
    from poetgen.rerank import REVERSE_DIR

    if out.resolve() == (Path(bundle.path) / REVERSE_DIR).resolve():   # the shipped one keeps no logs
        raise BadInput(f"{out} is the reverse model of the bundle being exported (its best-of ranking and "
                       f"polishing read it); choose another --out")
    if out.exists() and not options.force and not is_empty_directory(out) and not half:
        raise OutputExists(f"{out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise BadInput(f"cannot write {out}: directory {out.parent} does not exist")


def inference_bundle(bundle: Bundle) -> Bundle:
    """The bundle with its model rebuilt for inference: no training-only layers (dropout 0), float32.

    Whatever cell, depth or precision trained it, the weights are copied layer by layer by name. An
    exported tf.function must not capture a Dropout layer's random-seed state, which TensorFlow cannot save.
    """
    import numpy as np

    from poetgen.model import build_model

    config = dataclasses.replace(bundle.model_config, dropout=0.0)
    model = build_model(config, dtype="float32")
    for layer in model.layers:
        if layer.weights:
            source = bundle.model.get_layer(layer.name)
            layer.set_weights([np.asarray(w, np.float32) for w in source.get_weights()])
    record = {**bundle.config, "model": {**bundle.config.get("model", {}), **dataclasses.asdict(config)}}
    return dataclasses.replace(bundle, model=model, config=record, model_config=config)


def export(bundle: Bundle, options: ExportOptions) -> Path:
    """Write `bundle`'s inference form in `options.format` to `options.out`, atomically."""
    options.validate()
    writer = {"keras": write_keras, "savedmodel": functools.partial(write_savedmodel, tunes=options.tunes),
              "tflite": write_tflite}[options.format]
    out = Path(options.out)
    if out.resolve().name == "" or out.name in ("", ".", ".."):
        raise BadInput(f"--out {options.out} names no directory of its own; give a new directory's name")
    if bundle.reverse and options.format == "savedmodel":   # refused before any folder is made
        raise BadInput("a reverse model (train --reverse) reads poems backwards and cannot write them: "
                       "export the forward model, or --format keras or tflite", field="format")
    make_parents(out)   # models/poet/1 for TF Serving: its parents are made as train makes its --out's
    check_parent(out)
    # Replacing a directory a run is writing would lose it: hold its lock (a new directory's too, made
    # for it, so no run can start there meanwhile), or refuse naming the holder.
    lock = Lock.directory(out) if not out.is_symlink() and (not out.exists() or out.is_dir()) \
        else contextlib.nullcontext()   # a link (broken too) is refused by check_target, not followed
    with lock:
        check_target(bundle, options)
        bundle = inference_bundle(bundle)
        for entry in interrupted_fill(out):   # check_target let only --force past one with files moved in
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        # an empty directory (a new --out's, made by its lock, or a mounted volume) is filled, not replaced
        fill = EXPORT_MARKERS if is_empty_directory(out) else None
        try:
            with atomic_directory(options.out, options.force, fill=fill) as directory:
                writer(bundle, directory)
        except FileExistsError as error:   # created by someone else while we converted
            raise OutputExists(collision(out, error, fill is not None)) from None
    return Path(options.out)


def collision(out: Path, error: FileExistsError, filled: bool) -> str:
    """What to say when a name the export puts in place was created meanwhile by someone else: `out`
    itself (--force replaces an export), or, filling an empty `out`, an entry inside it, which --force
    cannot help with (the folder then holds no export of ours)."""
    # atomic_directory raises FileExistsError(path); one the OS raises (EEXIST) carries errno, text, filename
    named = error.filename if error.filename is not None else error.args[0] if len(error.args) == 1 else None
    target = Path(named) if isinstance(named, (str, os.PathLike)) else out
    if not filled or target == out:
        return f"{out} already exists; pass --force to replace it"
    return (f"{target} appeared while the export filled the empty {out} (something else writes there); its "
            f"files were taken back out, that entry kept: export once nothing else writes there, or to another --out")


def write_keras(bundle: Bundle, directory: Path) -> None:
    """model.keras, tokenizer.json, config.json and the int8 products (poetgen.quantize) that generation
    runs by default, and the same for the bundle's reverse model (reverse/, which best-of ranking and
    polishing read) when it has one: no resume state, logs or curves."""
    from poetgen.bundle import load_bundle
    from poetgen.stepper import NumpyStepper
    from poetgen.quantize import INT8_FILE, write_products
    from poetgen.rerank import REVERSE_DIR, reverse_dir

    save_bundle(directory, bundle.model, bundle.tokenizer, bundle.config)
    write_products(NumpyStepper.from_model(bundle.model, bundle.model_config), directory / INT8_FILE)
    if bundle.path is not None and reverse_dir(Path(bundle.path)) is not None:
        reverse = inference_bundle(load_bundle(Path(bundle.path) / REVERSE_DIR))
        save_bundle(directory / REVERSE_DIR, reverse.model, reverse.tokenizer, reverse.config)
        write_products(NumpyStepper.from_model(reverse.model, reverse.model_config),
                       directory / REVERSE_DIR / INT8_FILE, step=False)   # read in blocks: products only


def _write_sidecars(bundle: Bundle, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / TOKENIZER_FILE, bundle.tokenizer.to_json())
    write_config(directory, bundle.config)


def generation_tables(bundle: Bundle, tunes=()):
    """The vocabulary and layout tables (poetgen.graph_tables) an exported model generates with: the shi
    forms, and every variant of `tunes` (poetgen.tunes.Tune)."""
    from poetgen.graph_tables import layout_tables, shi_layouts, vocabulary_tables
    from poetgen.tables import VocabularyTables

    vocabulary = vocabulary_tables(VocabularyTables(bundle.tokenizer))
    return vocabulary, layout_tables(shi_layouts(), vocabulary.mark_ids, tunes=tunes)


def exported_tunes(count: int = ALL_TUNES) -> list:
    """The tunes (poetgen.tunes.Tune) a SavedModel writes: every tune of the 词谱 for ALL_TUNES, else the
    `count` with the most poems in the shipped ci corpus (ties and order as in the 词谱)."""
    from poetgen.resources import shipped_path
    from poetgen.tunes import tune_table

    table = tune_table()
    if count == ALL_TUNES or count >= len(table.tunes):
        return list(table.tunes)
    if count == 0:
        return []
    path = shipped_path(CI_CORPUS)
    counts = collections.Counter()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                tune = table.find_written(record.get("tune") or "", record.get("text") or "")   # as `poetgen tunes` counts
                counts[tune.name if tune else None] += 1
    except (OSError, ValueError) as error:
        raise BadInput(f"--tunes {count} ranks tunes by the shipped ci corpus, which cannot be read: {error}",
                       field="tunes") from None
    ranked = sorted(range(len(table.tunes)), key=lambda i: -counts[table.tunes[i].name])[:count]
    return [table.tunes[i] for i in sorted(ranked)]


def write_savedmodel(bundle: Bundle, directory: Path, tunes: int = ALL_TUNES) -> None:
    """Signatures serving_default and serve (ids → logits) and generate (prompt, form, … → poem); `tunes`
    as ExportOptions.tunes."""
    tf = import_tensorflow()
    from poetgen.export_graph import PoemGraph
    from poetgen.graph_tables import control_prefixes

    tunes = exported_tunes(tunes)
    vocabulary, layouts = generation_tables(bundle, tunes)
    prefixes = control_prefixes(bundle.tokenizer, layouts, tunes)
    graph = PoemGraph(bundle.model, bundle.model_config, vocabulary, layouts, prefixes)
    signatures = {"serving_default": graph.serve, "serve": graph.serve, "generate": graph.generate}
    try:
        with muted_stderr():
            tf.saved_model.save(graph, str(directory), signatures=signatures)
    except tf.errors.OpError as error:   # TensorFlow's writer: a full disk or a file size limit is no OSError
        reason = (error.message or type(error).__name__).splitlines()[0]
        raise OutputError(f"cannot write the SavedModel: {reason}; no earlier export was replaced") from None
    _write_sidecars(bundle, directory / EXTRA_DIR)


def state_names(bundle: Bundle) -> list[str]:
    """Names of the recurrent state tensors, in the order the step model takes and returns them."""
    config = bundle.model_config
    return [f"state_{i}_{k}" for i in range(config.layers) for k in range(states_per_layer(config.cell))]


def tflite_step_function(bundle: Bundle):
    """The step model for one poem at a time, with its weights frozen into constants.

    Frozen because TFLite leaves variables read inside the RNN's loop uninitialised at run time.
    """
    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    step = build_step_model(bundle.model, bundle.model_config)
    names, units = state_names(bundle), bundle.model_config.units
    specs = [tf.TensorSpec([1, 1], tf.int32, name="ids")] + [tf.TensorSpec([1, units], tf.float32, name=n)
                                                              for n in names]

    @tf.function(input_signature=specs, autograph=False)
    def one_step(ids, *states):
        return step([ids, *states], training=False)

    frozen = convert_variables_to_constants_v2(one_step.get_concrete_function())

    @tf.function(input_signature=specs, autograph=False)
    def named_step(ids, *states):
        outputs = frozen(ids, *states)
        named = {name: tf.ensure_shape(state, [1, units]) for name, state in zip(names, outputs[1:])}
        return {"logits": outputs[0], **named}

    return named_step.get_concrete_function()


def convert_to_tflite(bundle: Bundle) -> bytes:
    tf = import_tensorflow()
    try:
        with muted_stderr():   # freezing and converting log pages of C++ notices
            function = tflite_step_function(bundle)
            converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
            return converter.convert()
    except Exception as error:  # ConverterError, or whatever the MLIR passes raise
        raise BadModel(tflite_failure(error, bundle)) from None


def tflite_failure(error: Exception, bundle: Bundle) -> str:
    """One sentence naming the layer and op the converter refused, when its message says."""
    text = str(error)
    op = re.search(r"'(tf\.\w+)' op", text)
    layer = re.search(r"/(embedding|rnn_\d+|logits)[_/]", text)
    where = f"layer {layer.group(1)}" if layer else f"a layer of this {bundle.model_config.cell} model"
    what = f" (op {op.group(1)} is not supported)" if op else ""
    first = next((line.strip() for line in text.splitlines() if "error" in line.lower()), text.strip()[:200])
    return f"the TFLite converter cannot handle {where}{what}; export as savedmodel or keras instead. " \
           f"Converter said: {first[:300]}"


def write_tflite(bundle: Bundle, directory: Path) -> None:
    """model.tflite (signature serving_default: ids and states → logits and states) beside the tokenizer
    and tables.npz (layouts, banned ids, rhyme groups and tones per id, a conditioned model's control
    prefixes: see README, TFLite)."""
    from poetgen.graph_tables import TABLES_FILE, prefix_tables, write_tables

    data = convert_to_tflite(bundle)
    (directory / TFLITE_FILE).write_bytes(data)
    vocabulary, layouts = generation_tables(bundle)
    write_tables(directory / TABLES_FILE, vocabulary, layouts, prefix_tables(bundle.tokenizer, layouts))
    _write_sidecars(bundle, directory)
