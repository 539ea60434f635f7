"""A run's saved progress: the resume state (last model + state.json) and the per-epoch log.csv.

Each is written so that a kill at any moment leaves the last good version readable, and read back with
one line naming a damaged file and the way out. The training loop itself lives in train.py.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import zipfile
from pathlib import Path

from poetgen.atomic import read_small_text, write_text
from poetgen.bundle import (CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, is_bundle_config, model_config_of, read_config,
                            save_model_file)
from poetgen.errors import BadInput, BadModel
from poetgen.tokenizer import Tokenizer

RESUME_DIR, RESUME_STATE, RESUME_TOKENIZER = "resume", "state.json", "tokenizer.json"
LEGACY_MODEL = "last.keras"        # what runs before generations wrote; still read
LOG_FILE = "log.csv"
SEED_STATE = "seed_generator_state"   # Keras names a SeedGenerator's variable so
_GENERATION = re.compile(r"last-(\d+)\.keras")
START_OVER = "or start over with --force (it replaces the bundle's best model once the first epoch ends)"


def _damaged(path: Path, what: str, way_out: str) -> BadModel:
    return BadModel(f"{path}: {what}; {way_out}")


def model_files(resume_dir: Path) -> list[Path]:
    return [p for p in resume_dir.glob("last*.keras") if p.name == LEGACY_MODEL or _GENERATION.fullmatch(p.name)]


def save_state(resume_dir: Path, model, tokenizer: Tokenizer, record: dict) -> None:
    """A new model file under the next generation's name, then state.json naming it, then the old ones go.

    A kill before state.json is replaced leaves the previous state.json and the model it names whole.
    """
    resume_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path = resume_dir / RESUME_TOKENIZER
    if not tokenizer_path.exists() or Tokenizer.load(tokenizer_path).hash != tokenizer.hash:
        tokenizer.save(tokenizer_path)   # a run started over with --force has its own vocabulary
    generations = [int(m.group(1)) for p in model_files(resume_dir) if (m := _GENERATION.fullmatch(p.name))]
    name = f"last-{max(generations, default=0) + 1}.keras"
    save_model_file(model, resume_dir / name)
    write_text(resume_dir / RESUME_STATE,
               json.dumps({**record, "model_file": name}, ensure_ascii=False, indent=2) + "\n")
    for old in model_files(resume_dir):
        if old.name != name:
            old.unlink(missing_ok=True)


def _seed_variables(model) -> dict:
    """The dropout seed generators' state variables, keyed by their layer's name and rank in it (the
    variables' own paths are numbered per process, seed_generator_12, and differ after a load)."""
    return {f"{layer.name}/{rank}": variable for layer in model.layers
            for rank, variable in enumerate(v for v in layer.variables if v.path.endswith(SEED_STATE))}


def seed_states(model) -> dict[str, list[int]]:
    """The model's dropout seed generators' states: a .keras file does not keep them, and without them a
    resumed run would draw its first epoch's dropout masks again."""
    return {key: [int(x) for x in v.numpy().ravel()] for key, v in _seed_variables(model).items()}


def restore_seed_states(model, states: dict | None, source: Path) -> None:
    """Put back what seed_states saved (a state without them, from an older poetgen, keeps the fresh ones);
    values that do not fit a variable (edited by hand) are one line naming `source`."""
    import numpy as np

    for key, variable in _seed_variables(model).items():
        if key not in (states or {}):
            continue
        values = states[key]
        bounds = np.iinfo(variable.dtype)
        if len(values) != int(np.prod(variable.shape)) or not all(bounds.min <= x <= bounds.max for x in values):
            raise _damaged(source, f"resume state is corrupt (seed_states[{key!r}] does not fit its "
                           f"{variable.dtype} seed {list(variable.shape)})", f"restore it from a backup, {START_OVER}")
        variable.assign(np.asarray(values, variable.dtype).reshape(variable.shape))


def read_state(out: Path) -> dict:
    """state.json of the run in `out`, checked: it parses, has its parts, and names a whole model file."""
    resume_dir = out / RESUME_DIR
    path = resume_dir / RESUME_STATE
    if not path.exists():
        if is_bundle_config(out / CONFIG_FILE):   # a finished run, or one whose progress was lost before it was saved
            raise BadInput(f"nothing to resume in {out}: it holds a model but no saved progress; "
                           f"pass --force instead of --resume to train it again from the start")
        raise BadInput(f"nothing to resume in {out}: nothing was saved there yet")
    restore = f"restore {path.name} from a backup, {START_OVER}"
    try:
        record = json.loads(read_small_text(path, "resume state"))
    except (ValueError, UnicodeDecodeError):
        raise _damaged(path, "resume state is truncated or corrupt (not valid JSON)", restore) from None
    except BadModel as error:   # not a regular file, or far too large
        raise _damaged(path, str(error).removeprefix(f"{path}: "), restore) from None
    if not (isinstance(record, dict) and isinstance(record.get("train"), dict)
            and isinstance(record.get("state"), dict) and "epochs_done" in record["state"]):
        raise _damaged(path, "resume state is incomplete (no train options or progress)", restore)
    wrong = _wrong_types(record)
    if wrong:
        raise _damaged(path, f"resume state is corrupt ({wrong})", restore)
    model = resume_dir / record.get("model_file", LEGACY_MODEL)
    if not model.exists():
        raise _damaged(model, f"the resume model that {RESUME_STATE} names is missing",
                       f"restore it from a backup, {START_OVER}")
    _check_archive(model, "resume model", f"restore it from a backup, {START_OVER}")
    record["model_path"], record["state_path"] = model, path
    return record


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(value) -> bool:
    return _integer(value) and value >= 0


def _number(value) -> bool:
    return _integer(value) or (isinstance(value, float) and math.isfinite(value))


# what each part of state.json must be, as (test, description)
_STATE_KINDS = {"epochs_done": (_whole, "a whole number"), "step_in_epoch": (_whole, "a whole number"),
                "tokens_seen": (_whole, "a whole number"), "wall_time_s": (_number, "a number"),
                "best_val_loss": (lambda v: v is None or _number(v), "a number or null"),
                "best_epoch": (lambda v: v is None or _whole(v), "a whole number or null")}


def _wrong_types(record: dict) -> str | None:
    """What in a resume state has the wrong type (a hand edit, another tool), or None."""
    state = record["state"]
    for name, (test, wanted) in _STATE_KINDS.items():
        if (name in state or name == "epochs_done") and not test(state.get(name)):
            return f"state.{name} must be {wanted}, not {state.get(name)!r}"
    name = record.get("model_file", LEGACY_MODEL)
    if not (isinstance(name, str) and (name == LEGACY_MODEL or _GENERATION.fullmatch(name))):
        return f"model_file must name a last-N.keras beside it, not {name!r}"
    seeds = record.get("seed_states", {})
    if not (isinstance(seeds, dict) and all(isinstance(v, list) and all(map(_integer, v)) for v in seeds.values())):
        return "seed_states must map layers to lists of whole numbers"
    corpus = record["train"].get("corpus")
    if not (corpus is None or (isinstance(corpus, str) and corpus)):
        return f"train.corpus must be a file or directory name, not {corpus!r}"
    return None


def _check_archive(path: Path, what: str, way_out: str) -> None:
    """A whole .keras archive: a zip whose every member reads back with the right checksum."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise _damaged(path, f"{what} is truncated or corrupt (not a whole .keras archive)", way_out) from None
    if bad is not None:
        raise _damaged(path, f"{what} is corrupt ({bad} fails its checksum)", way_out)


def load_resume_model(path: Path, vocab_size: int):
    """The compiled model with its optimizer state, checked against the resume tokenizer's `vocab_size`;
    a file Keras cannot read is one line, not a crash."""
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for damaged archives
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise _damaged(path, f"resume model cannot be loaded ({first})",
                       f"restore it from a backup, {START_OVER}") from None
    output_size = model.outputs[0].shape[-1]
    if output_size != vocab_size:
        raise _damaged(path, f"resume model predicts {output_size} ids but {RESUME_DIR}/{RESUME_TOKENIZER} has "
                       f"{vocab_size}", START_OVER.removeprefix("or "))
    return model


def bundle_lags(out: Path, state: dict) -> bool:
    """Whether the bundle is behind the epoch the resume state ended: an epoch's end saves the state
    before the bundle (a bundle without its state could not be resumed), so a failed write or a kill
    between the two leaves config.json's progress short of the state's. --resume then writes the bundle
    again: the model from the resume model where that epoch was the best, else config.json's progress.
    A corrupt config.json is left to check_bundle to name; a missing one lags only where its epoch was
    the best (otherwise the best model it held is gone)."""
    if state.get("step_in_epoch") or not state.get("epochs_done"):
        return False
    if not (out / CONFIG_FILE).exists():
        return state.get("best_epoch") == state["epochs_done"]
    try:
        progress = read_config(out).get("progress")
    except BadModel:
        return False
    progress = progress if isinstance(progress, dict) else {}
    # tokens and seconds too: a run that --force started over may have reached the same epoch
    return any(progress.get(key) != state.get(key) for key in ("epochs_done", "tokens_seen", "wall_time_s"))


def check_bundle(out: Path, epochs_done: int, lags: bool = False) -> None:
    """Before resuming: the bundle files the run will update are whole (config, tokenizer, best model).
    Before its first epoch ends a run has written none of them: what is there (nothing, or what the
    run that --force replaced left) is overwritten at that epoch's end, so it is not checked; nor is a
    bundle that `lags` (bundle_lags): it is written again before the run goes on."""
    restore = f"restore it from a backup, {START_OVER}"
    try:
        Tokenizer.load(out / RESUME_DIR / RESUME_TOKENIZER)
        if not (out / CONFIG_FILE).exists() or epochs_done == 0 or lags:
            return
        config = read_config(out)
        model_config_of(config, out)
        Tokenizer.load(out / TOKENIZER_FILE, expected_hash=config.get("tokenizer_hash"))
        # the run's best model and its resume state share one vocabulary; an older poetgen left the first
        # run's resume tokenizer behind when --force started over on another corpus
        Tokenizer.load(out / RESUME_DIR / RESUME_TOKENIZER, expected_hash=config.get("tokenizer_hash"))
    except BadModel as error:
        raise BadModel(f"{error}; {restore}") from None
    model = out / MODEL_FILE
    if not model.exists():
        raise _damaged(model, "the best model is missing", restore)
    _check_archive(model, "the best model", restore)


def _shown(name: str, value) -> str:
    """An option as typed: --units 256; a switch as --conditioned, or no --conditioned."""
    flag = "--" + name.replace("_", "-")
    return (flag if value else f"no {flag}") if isinstance(value, bool) else f"{flag} {value}"


def resumed_config(config, saved: dict, explicit, fixed) -> object:
    """The run's own options from its resume state, except those the user gave explicitly.

    Explicit `fixed` options must match the run's (its weights have their shapes, its layers their dtype
    policy); other explicit training options (epochs, learning rate, ...) win.
    """
    train_options = saved["train"]
    changed = [name for name in fixed if name in explicit and name in train_options
               and train_options[name] != getattr(config, name)]
    different = [f"{_shown(name, train_options[name])} (not "
                 f"{_shown(name, new) if isinstance(new, bool) else new})"
                 for name, new in ((name, getattr(config, name)) for name in changed)]
    if different:
        raise BadInput("cannot resume with different model options (or held-out split); the run used "
                       + ", ".join(different) + " (start over with --force to change them)", field=changed[0])
    taken = {f.name for f in dataclasses.fields(config)} - {"out", "resume", "force"} - set(explicit)
    resumed = dataclasses.replace(config, **{k: v for k, v in train_options.items() if k in taken})
    try:
        resumed.validate()
    except BadInput as error:
        if error.field not in taken or error.field not in train_options:
            raise   # the user's own option: validated like any other
        source = saved.get("state_path", RESUME_STATE)   # a value the state itself holds: a damaged file
        raise _damaged(source, f"resume state is corrupt (its train options: {error})",
                       f"restore it from a backup, {START_OVER}") from None
    return resumed


def explicit_options(config) -> frozenset[str]:
    """Without word from the CLI, the options that differ from their defaults count as given."""
    return frozenset(f.name for f in dataclasses.fields(config) if getattr(config, f.name) != f.default)


def repair_log(path: Path, epochs_done: int) -> None:
    """Keep the rows of the epochs the resume state holds: a torn last line, or rows of epochs that a
    killed run logged but did not save, are dropped. A file that is not such a log is refused."""
    if not path.exists():
        return
    way_out = "move it away (training starts a new log) or restore it from a backup"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "training log is corrupt (not text)", way_out) from None
    complete = text[:text.rfind("\n") + 1]          # a line without its newline was torn by a kill
    if "\0" in complete:   # zeros where a crash left blocks unwritten (after the last newline: a torn line)
        raise _damaged(path, "training log is corrupt (zero bytes)", way_out)
    try:
        rows = list(csv.reader(io.StringIO(complete)))
    except csv.Error as error:   # a field beyond csv's limit: no log wrote it
        raise _damaged(path, f"training log is corrupt ({error})", way_out) from None
    if not rows:
        if text.strip() and ("\0" in text or not (text.startswith("epoch") or "epoch".startswith(text.strip()))):
            raise _damaged(path, "training log is corrupt (no epoch header)", way_out)   # no torn header
        return
    header, body = rows[0], rows[1:]
    if not header or header[0] != "epoch":
        raise _damaged(path, "training log is corrupt (no epoch header)", way_out)
    kept = []
    for number, row in enumerate(body, start=2):
        try:
            if len(row) != len(header):
                raise ValueError
            epoch = int(row[0])
            [float(value) for value in row[1:] if value not in ("", "NA")]
        except ValueError:
            raise _damaged(path, f"training log is corrupt (line {number})", way_out) from None
        if epoch < epochs_done:
            kept.append(row)
    if len(kept) != len(body) or complete != text:
        write_log(path, header, kept)


def write_log(path: Path, header: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_log(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        return [], []
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return (rows[0], rows[1:]) if rows else ([], [])


class EpochLog:
    """log.csv's rows, rewritten whole (atomically) for each finished epoch, so no kill tears a line;
    callbacks.HeldOutCheckpoint writes an epoch's row before it saves that epoch's resume state."""

    def __init__(self, path: Path, append: bool):
        self.path, self.append = path, append
        self.header, self.rows = [], []

    def on_train_begin(self, logs=None) -> None:
        self.header, self.rows = read_log(self.path) if self.append else ([], [])

    def write(self, epoch: int, logs: dict | None) -> None:
        logs = logs or {}
        if not self.header:
            self.header = ["epoch"] + sorted(logs)
        self.rows.append([epoch] + [logs.get(key, "NA") for key in self.header[1:]])
        write_log(self.path, self.header, self.rows)
