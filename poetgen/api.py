"""The Python API: load a model and write poems; train, export and evaluate as the commands do.

The CLI is a thin layer over these functions. Importing this module is cheap: the stages (and
TensorFlow, for training, export and evaluation) are imported when a function needs them.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from poetgen.errors import BadInput
from poetgen.poems import Poem, Poems
from poetgen.quiet import tensorflow_required

if TYPE_CHECKING:
    from poetgen.evaluate import EvalOptions
    from poetgen.export import ExportOptions
    from poetgen.generate import Generator
    from poetgen.request import PoemRequest
    from poetgen.scansion import Scansion
    from poetgen.train import TrainConfig

PathLike = str | os.PathLike


def _path(value, name: str, optional: bool = True) -> Path | None:
    """A path argument (text or os.PathLike; None stays None when `optional`), or BadInput naming it."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return Path(value)
    raise BadInput(f"{name} must be a path (text or os.PathLike), not {value!r}", field=name)


def _flag(value, name: str, none: bool = False):
    """A True/False argument (NumPy's bool too; None too when `none`), or BadInput naming it."""
    if value is None and none:
        return None
    if isinstance(value, bool) or type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise BadInput(f"{name} must be True or False{' or None' if none else ''}, not {value!r}", field=name)


def _plain(values: dict) -> dict:
    """NumPy scalars as the Python values they hold: what a caller passes ends up in JSON (a poem's
    seed, a bundle's config), which takes no numpy.int64."""
    return {k: (v.item() if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0 else v)
            for k, v in values.items()}


def poem_request(prompt: str = "", *, _also: tuple = (), **options) -> "PoemRequest":
    """A validated request from generate's keyword arguments (sampling ones folded into SampleOptions).

    Any option the request knows is accepted (form, acrostic, theme, rhyme, tone, n, best_of, …), and
    SampleOptions' (temperature, top_k, top_p, seed), with their defaults; an unknown name or a bad
    value raises BadInput with one line. `_also`: options the caller takes itself (Poet.generate's
    traditional), listed with the known ones when a name is unknown.
    """
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    sampling = {f.name for f in dataclasses.fields(SampleOptions)}
    known = {f.name for f in dataclasses.fields(PoemRequest)} - {"prompt", "sample"}
    unknown = sorted(set(options) - known - sampling)
    if unknown:
        raise BadInput(f"unknown generate option {unknown[0]!r}; known: "
                       f"{', '.join(sorted(known | sampling | set(_also)))}", field=unknown[0])
    options = _plain(options)
    sample = SampleOptions(**{name: options.pop(name) for name in sampling & set(options)})
    sample.validate()
    request = PoemRequest(prompt=prompt, sample=sample, **options)
    request.validate()
    return request


class Poet:
    """A loaded model, ready to write poems; load it once and call generate as often as needed."""

    def __init__(self, generator: "Generator"):
        self._generator = generator

    @property
    def path(self) -> Path:
        """The bundle directory the model was loaded from."""
        return Path(self._generator.bundle.path)

    def generate(self, prompt: str = "", form: str | None = None, n: int = 1, seed: int | None = None, *,
                 acrostic: str = "", theme: str = "", rhyme: bool | None = None, tone: bool = True,
                 no_repeat: bool = True, best_of: int = 2, max_chars: int = 120, temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 1.0, traditional: bool = False, **more) -> Poems:
        """Write `n` poems starting with `prompt`, as `poetgen generate` does with the same options.

        form: wujue | qijue | wulv | qilv | free, or 五绝 七绝 五律 七律, 五絕 七絕 (None: wujue, or by acrostic length);
        acrostic: line i starts with character i; theme: free text whose keywords steer the lines;
        rhyme: None is on for regular forms; tone: steer toward a standard 平仄 pattern; no_repeat: no
        character twice in a line; best_of: candidates per poem, the best-scoring kept; max_chars: free
        verse cap; temperature (0 greedy), top_k (0 off), top_p in (0, 1]; seed: same seed, same poems;
        traditional: traditional characters. Further request options (`more`) are passed on by name.
        Raises BadInput (one line) for an option, prompt or character that cannot be used.
        """
        request = poem_request(prompt, form=form, n=n, acrostic=acrostic, theme=theme, rhyme=rhyme, tone=tone,
                               no_repeat=no_repeat, best_of=best_of, max_chars=max_chars, temperature=temperature,
                               top_k=top_k, top_p=top_p, seed=seed, _also=("traditional",), **more)
        return self.run(request, traditional)

    def run(self, request: "PoemRequest", traditional: bool = False) -> Poems:
        """Write the poems of a prepared PoemRequest (what generate builds from its arguments)."""
        from poetgen.request import PoemRequest

        if not isinstance(request, PoemRequest):   # "abc" failed deep inside as an AttributeError
            raise BadInput(f"run takes a PoemRequest, not {type(request).__name__}", field="request")
        traditional = _flag(traditional, "traditional")
        result = self._generator.generate(request)
        if traditional:
            from poetgen.generate import traditional as to_traditional

            result = to_traditional(result, request)   # the user's own characters kept as written
        return Poems(tuple(Poem.from_dict(p) for p in result["poems"]), result["seed"], result["form"],
                     tuple(result.get("keywords", ())), result.get("ms_per_poem", 0.0), result.get("tune", ""),
                     result.get("variant"), result.get("title", ""))

    @property
    def knows_ci(self) -> bool:
        """True when the model was trained on ci (its tokenizer holds the <ci> control token)."""
        return self._generator.knows_ci()

    @property
    def generator(self) -> "Generator":
        """The Generator behind this Poet (for evaluation code that steps it directly)."""
        return self._generator

    def __repr__(self) -> str:
        return f"Poet({str(self.path)!r})"


def load(path: PathLike | None = None, int8: bool | None = None) -> Poet:
    """Load a model bundle (None: the shipped model) for generation. int8: None runs the matrix products
    in int8 when the bundle carries them (`quantize`) and LiteRT is installed, else float32; True
    always (converting what the bundle lacks needs TensorFlow); False float32.

    Raises BadModel (one line) when the bundle is missing, corrupt or incompatible.
    """
    from poetgen.generate import Generator

    return Poet(Generator.load(_path(path, "path"), _flag(int8, "int8", none=True)))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run left behind."""

    path: Path                          # the bundle directory written
    epochs_done: int                    # epochs finished in total (resumed runs included)
    best_epoch: int | None              # the epoch whose model the bundle holds
    best_val_perplexity: float | None   # its held-out perplexity
    stopped: bool                       # interrupted (Ctrl-C or SIGTERM) and saved for --resume


def _options(cls, given, overrides: dict, what: str):
    """`given` (an options dataclass or None) with keyword overrides, validated; BadInput for a bad name
    or a `given` of another type. Path-like values of text fields become text, NumPy scalars Python ones,
    in `given` as in the overrides."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise BadInput(f"unknown {what} option {unknown[0]!r}; known: {', '.join(sorted(names))}", field=unknown[0])
    if given is not None and not isinstance(given, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise BadInput(f"{what} takes {article} {cls.__name__} or keyword options, not {type(given).__name__}",
                       field="options")
    values = {} if given is None else {name: getattr(given, name) for name in names}
    values = _plain(_strings(cls, {**values, **overrides}))
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:   # Python's own TypeError named __init__ and no field
        raise BadInput(f"{what} needs {missing[0]}=…", field=missing[0])
    options = cls(**values)
    options.validate()
    return options


def _strings(cls, values: dict) -> dict:
    """Path-like values of the fields typed as text, as text (the options dataclasses keep paths as text)."""
    text = {f.name for f in dataclasses.fields(cls) if "str" in str(f.type).replace(" ", "").split("|")}
    return {k: (os.fspath(v) if k in text and isinstance(v, os.PathLike) else v) for k, v in values.items()}


@tensorflow_required()
def train(config: "TrainConfig | None" = None, /, *, callbacks: Sequence = (), explicit=None, sample: bool = False,
          **options) -> TrainResult:
    """Train a model into a bundle, as `poetgen train` does: a TrainConfig, keyword options, or both.

    train(out="runs/mine", epochs=2) or train(TrainConfig(out=...), epochs=3). callbacks: extra Keras
    callbacks (an epoch that a stop cuts short ends without "val_loss" in its logs). explicit: the option
    names the caller gave, which resume=True compares with the run's own (the others are taken from the
    run); by default every keyword option given, and the fields of a given TrainConfig that differ from
    their defaults, so train(out=..., resume=True, units=256) is refused on a units=32 run as the CLI
    refuses --units 256, and a learning_rate given at its default value is still applied. sample: log a
    sample poem after each epoch (`train --sample`, the CLI's default; logger "poetgen.callbacks").
    Raises BadInput / BadCorpus (one line) for what cannot be used.
    """
    from poetgen.quiet import import_tensorflow
    from poetgen.train import TrainConfig, train as run_training

    given, config = config, _options(TrainConfig, config, options, "train")
    sample = _flag(sample, "sample")
    callbacks = _callbacks(callbacks)
    import_tensorflow()
    if sample:
        from poetgen.callbacks import sample_callback

        callbacks = [*callbacks, sample_callback(config.out)]
    if explicit is None:   # the keywords given count even at their default values, as the CLI's flags do
        from poetgen.resume import explicit_options

        explicit = frozenset(options) | (explicit_options(given) if given is not None else frozenset())
    run = run_training(config, callbacks, explicit=explicit)
    metrics = run.metrics()
    return TrainResult(Path(config.out), int(run.state["epochs_done"]), metrics["best_epoch"],
                       metrics["best_val_perplexity"], bool(getattr(run, "stopped", False)))


def _callbacks(callbacks) -> list:
    """train's extra callbacks as a list, refused before any work unless each has Keras's set_model (a
    wrong type failed deep inside Keras once the model was built)."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (list, tuple)):
        raise BadInput(f"callbacks must be a list of Keras callbacks, not {type(callbacks).__name__}",
                       field="callbacks")
    for callback in callbacks:
        if not callable(getattr(callback, "set_model", None)):
            raise BadInput(f"callbacks must be Keras callbacks (keras.callbacks.Callback), not "
                           f"{type(callback).__name__}", field="callbacks")
    return list(callbacks)


@tensorflow_required()
def export(options: "ExportOptions | None" = None, /, *, model: PathLike | None = None, **overrides) -> Path:
    """Export a bundle (None: the shipped model), as `poetgen export` does; returns the directory written.

    export(out="exported", format="savedmodel" | "keras" | "tflite", force=False, tunes=-1), or an ExportOptions.
    Raises OutputExists, BadInput or BadModel (one line).
    """
    from poetgen.export import ExportOptions, export as run_export

    if "out" in overrides:
        overrides["out"] = _path(overrides["out"], "out", optional=False)
    model = _path(model, "model")
    options = _options(ExportOptions, options, overrides, "export")
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    from poetgen.bundle import load_bundle

    return run_export(load_bundle(model), options)


@tensorflow_required()
def quantize(model: PathLike | None = None) -> list[Path]:
    """Convert a bundle's matrix products to int8 once, as `poetgen quantize` does, so that load() runs
    it in int8 without TensorFlow; returns the files written (the bundle's and its reverse model's).
    Raises BadModel, or OutputError when a file cannot be written (one line)."""
    from poetgen.bundle import load_bundle
    from poetgen.stepper import NumpyStepper
    from poetgen.quantize import INT8_FILE, write_products
    from poetgen.rerank import REVERSE_DIR, reverse_dir
    from poetgen.weights import layer_weights

    bundle = load_bundle(_path(model, "model"), keras=False)
    parts = [bundle]
    if reverse_dir(bundle.path) is not None:
        parts.append(load_bundle(bundle.path / REVERSE_DIR, keras=False))
    for part in parts:
        weights = part.weights if part.weights is not None else layer_weights(part.model)
        # a reverse model (reverse/, or one quantized alone) is scored in blocks, never stepped: no step
        write_products(NumpyStepper(weights, part.model_config), part.path / INT8_FILE, step=not part.reverse)
    return [part.path / INT8_FILE for part in parts]


def check(text: str, form: str | None = None, *, tune: str | None = None, variant: int | None = None) -> "Scansion":
    """Scan a poem someone wrote, as `poetgen check` does: a shi against its form (`form`, or the one its
    line lengths have), or a ci against `tune` (its `variant`, or the one it fits best; 浣溪沙#3 names
    one too). The Scansion gives the rhyme, the 平仄 pattern and the faults line by line (`str()` prints
    them as the command does, `to_dict()` as its JSON). No model is loaded. Raises BadInput (one line)."""
    from poetgen.scansion import scan

    if form is not None and not isinstance(form, str):
        raise BadInput(f"form must be a form's name, not {form!r}", field="form")
    if tune is not None and not isinstance(tune, str):
        raise BadInput(f"tune must be a tune's name, not {tune!r}", field="tune")
    # NumPy's integers too, as generate takes them (np.int64(2) was refused here alone)
    if variant is not None and (isinstance(variant, bool) or not isinstance(variant, numbers.Integral) or variant < 1):
        raise BadInput(f"variant must be a number from 1, not {variant!r}", field="variant")
    return scan(text, form=form, tune=tune, variant=None if variant is None else int(variant))


@tensorflow_required()
def evaluate(options: "EvalOptions | None" = None, /, *, model: PathLike | None = None,
             progress: Callable[[int, int], None] | None = None, tunes: Sequence[str] = (), **overrides) -> dict:
    """Evaluate a bundle (None: the shipped model), as `poetgen evaluate --format json` reports it.

    evaluate(corpus=None, samples=100, seed=0), or an EvalOptions. tunes: ci tunes to report on instead
    (as `--tune`: layout, rhyme and 平仄 of `samples` ci per tune, with the rules and the model alone; no
    TensorFlow). progress(done, total) is called as the work advances. Raises BadInput, BadCorpus or
    BadModel (one line).
    """
    from poetgen.evaluate import EvalOptions, Evaluation

    options = _options(EvalOptions, options, overrides, "evaluate")
    model = _path(model, "model")
    done = 0

    def advance(steps: int, total: int) -> None:
        nonlocal done
        done += steps
        if progress is not None:
            progress(done, total)

    if isinstance(tunes, str) or not isinstance(tunes, Iterable):
        raise BadInput(f"tunes must be a list of tune names, not {tunes!r}", field="tunes")
    tunes = list(tunes)
    if not all(isinstance(tune, str) for tune in tunes):
        raise BadInput(f"tunes must be a list of tune names, not {tunes!r}", field="tunes")
    if progress is not None and not callable(progress):
        raise BadInput(f"progress must be a function progress(done, total), not {progress!r}", field="progress")
    if tunes:
        given = [f"--{name}" for name in ("corpus", "dynasty", "genre") if getattr(options, name) is not None]
        given += ["--held-out"] if options.held_out else []
        if given:
            raise BadInput(f"tunes (--tune) report on generated ci alone: they take no {', '.join(given)}",
                           field="tunes")
        from poetgen.evaluate_ci import tune_report
        from poetgen.tunes import resolve

        for tune in tunes:
            resolve(tune)   # an unknown tune fails before the model loads
        total = 2 * options.samples * len(tunes)
        generator = load(model).generator
        advance(0, total)
        return tune_report(generator, list(tunes), options.samples, options.seed, lambda n: advance(n, total))
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    from poetgen.bundle import load_bundle

    evaluation = Evaluation(load_bundle(model), options)
    advance(0, evaluation.work)
    return evaluation.run(lambda steps: advance(steps, evaluation.work))
