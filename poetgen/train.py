"""Trains the next-character model into a bundle, resumably.

The best model (by held-out loss) is written atomically; a resume state after every epoch, every
--checkpoint-minutes within one and at a stop lets --resume continue after Ctrl-C, SIGTERM or kill -9
with the optimizer state intact, at the step reached, on the windows an unstopped run would have read.
It does not cut the corpus into windows (windows.py), define the network (model.py), set up the devices and
the optimizer (train_setup.py) or write the resume state itself (resume.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from poetgen import __version__
from poetgen.bundle import CONFIG_FILE, is_bundle_config
from poetgen.callbacks import StopOnSignal, make_callbacks, progress_bar, save_epoch
from poetgen.control import Prefixer, control_vocabulary, vocabulary_texts
from poetgen.corpus import corpus_hash, is_held_out, shipped_label
from poetgen.errors import BadInput
from poetgen.importers import load_corpus
from poetgen.lock import LOCK_NAME, Lock
from poetgen.model import CELLS, ModelConfig, build_model
from poetgen.options import check_settings, setting
from poetgen.resume import (LOG_FILE, RESUME_DIR, RESUME_STATE, RESUME_TOKENIZER, bundle_lags, check_bundle,
                            explicit_options, load_resume_model, model_files, read_state, repair_log,
                            restore_seed_states, resumed_config, save_state, seed_states)
from poetgen.tokenizer import SPECIALS, UNK, Tokenizer
from poetgen.train_setup import STRATEGIES, compile_model, refuse_multiworker, retune_optimizer, setup_devices
from poetgen.train_step import use_sampled_softmax
from poetgen.windows import check_windows, token_stream, training_dataset, window_starts

PRECISIONS = ("float32", "mixed_bfloat16")
MODEL_OPTIONS = ("cell", "layers", "units", "embedding_dim", "dropout", "min_count", "projection", "tie_embeddings",
                 "embedding_dropout", "recurrent_dropout", "conditioned", "top_tunes", "titles", "reverse")
# A resumed model's layers keep their dtype policy: --resume refuses another, as for MODEL_OPTIONS
# (the optimizer's schedule and clipping are rebuilt from the options: retune_optimizer).
# a resumed run keeps these: its weights' shapes, its layers' dtype policy, and the held-out split its
# best model was chosen on (another split would score poems it trained on, and compare unlike figures)
FIXED_ON_RESUME = MODEL_OPTIONS + ("precision", "val_split")
# What a run leaves in --out before its first epoch ends (TensorBoard starts at once): not someone's files.
EARLY_FILES = (LOCK_NAME, "tensorboard")
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    out: str                                                  # bundle directory to write
    corpus: str | None = None                                 # corpus file or directory; None: the shipped one
    cell: str = setting("lstm", choices=CELLS)                # recurrent cell
    layers: int = setting(1, low=1, high=8)                   # stacked recurrent layers
    units: int = setting(256, low=1, high=4096)               # units per recurrent layer
    embedding_dim: int = setting(256, low=1, high=4096)       # character embedding size
    dropout: float = setting(0.1, low=0, high=1, high_open=True)   # dropout on recurrent inputs and the output
    projection: int = setting(0, low=0, high=4096)            # linear layer of this size before the output; 0: none
    tie_embeddings: bool = False                              # output layer = the embedding table transposed
    embedding_dropout: float = setting(0.0, low=0, high=1, high_open=True)   # drop whole character embeddings
    recurrent_dropout: float = setting(0.0, low=0, high=1, high_open=True)   # hidden-to-hidden dropout (slower)
    sampled_softmax: int = setting(0, low=0)                  # train on a sampled softmax of this many classes; 0: full
    conditioned: bool = False                                 # start each poem with style and form/tune tokens
    top_tunes: int = setting(200, low=0)                      # ci tunes with their own control token
    titles: bool = False                                      # read shi titles after the controls (needs conditioned)
    reverse: bool = False                                     # train on reversed poems: a best-of reranker
    epochs: int = setting(10, low=1)                          # epochs to reach (a resumed run continues up to this)
    steps_per_epoch: int = setting(0, low=0)                  # steps per epoch; 0: one pass over the training text
    checkpoint_minutes: float = setting(8.0, low=0)           # save the resume state this often in an epoch; 0: at its end
    batch_size: int = setting(128, low=1)                     # windows per step
    seq_len: int = setting(64, low=2)                         # characters per window
    learning_rate: float = setting(3e-3, low=0, low_open=True)   # peak Adam rate; warm-up, cosine decay to 5%
    warmup_steps: int = setting(200, low=0)                   # linear warm-up steps from 0 to the peak rate
    clipnorm: float = setting(1.0, low=0)                     # clip gradients to this global norm; 0: no clipping
    min_count: int = setting(3, low=1)                        # characters seen fewer times become <unk>
    val_split: float = setting(0.02, low=0, high=0.5, low_open=True, high_open=True)   # held-out share, by hash
    seed: int = setting(0, low=0, high=2**32 - 1)             # seed of the weights, window order and jitter
    strategy: str = setting("default", choices=STRATEGIES)    # distribution; mirrored: over all GPUs or CPUs here
    precision: str = setting("float32", choices=PRECISIONS)   # mixed_bfloat16: bf16 maths with float32 weights
    resume: bool = False                                      # continue the run saved in `out`
    force: bool = False                                       # start over even if `out` holds a model

    def validate(self) -> None:
        refuse_multiworker()
        check_settings(self)
        if not str(self.out).strip():   # "" would be the current directory
            raise BadInput("--out must name a directory (it is empty)", field="out")
        if self.resume and self.force:
            raise BadInput("--resume goes on with a run's saved state and --force starts over, replacing it: "
                           "give one of them", field="force")
        if self.titles and not self.conditioned:
            raise BadInput("--titles needs --conditioned: a title is read after the control tokens", field="titles")
        if self.titles and self.reverse:
            raise BadInput("a reverse model reads no titles (best-of reads poems backwards after the controls); "
                           "leave out --titles", field="titles")
        model_config(self, vocab_size=len(SPECIALS) + 1).validate()


def model_config(config: TrainConfig, vocab_size: int) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}
    return ModelConfig(vocab_size=vocab_size, **{name: getattr(config, name) for name in fields})


def library_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"poetgen": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


class Run:
    """What a training run knows: its data, tokenizer, config record and progress."""

    def __init__(self, config: TrainConfig, saved: dict | None = None):
        self.config = config
        self.saved = saved                 # the resume state read by read_state, when resuming
        self.out = Path(config.out)
        self.resume_dir = self.out / RESUME_DIR
        self.corpus = config.corpus
        self.state = {"epochs_done": 0, "step_in_epoch": 0, "tokens_seen": 0, "wall_time_s": 0.0,
                      "best_val_loss": None, "best_epoch": None}
        self.global_batch = config.batch_size       # windows per step over all replicas (set by train)
        self.steps_per_epoch = 1                    # steps of one epoch (set by train)

    def prepare(self) -> None:
        config = self.config
        if self.out.exists() and not self.out.is_dir():
            raise BadInput(f"--out {self.out} exists and is not a directory")
        if config.resume:
            self._load_resume_state()
        elif (self.out / CONFIG_FILE).exists() and not self.holds_run():   # a user's own, never replaced
            raise BadInput(f"{self.out / CONFIG_FILE} is not a poetgen run's (a run writes its own config.json "
                           f"there); choose a new or empty --out")
        elif ((self.out / CONFIG_FILE).exists() or (self.resume_dir / RESUME_STATE).exists()) and not config.force:
            # a run stopped within its first epoch has a resume state and no model yet: as precious
            raise BadInput(f"{self.out} already holds a model or a run's saved progress; pass --resume to continue "
                           f"it or --force to start over")
        elif not self.holds_run() and not config.force:
            foreign = sorted(p.name for p in self.out.iterdir() if p.name not in EARLY_FILES) \
                if self.out.is_dir() else []
            if foreign:
                raise BadInput(f"{self.out} holds files that are not a poetgen run's ({', '.join(foreign[:3])}"
                               f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty --out, or pass "
                               f"--force to train into it (the run writes its own files there)")
        poems = load_corpus(self.corpus)
        fraction = config.val_split
        train_poems = [p for p in poems if not is_held_out(p.text, fraction)]
        held_poems = [p for p in poems if is_held_out(p.text, fraction)]
        train, held = [p.text for p in train_poems], [p.text for p in held_poems]
        if not train or not held:
            raise BadInput(f"corpus of {len(poems)} poems is too small to hold out --val-split {fraction:g} for "
                           f"validation ({len(held)} held out, {len(train)} left to train on)", field="val_split")
        if config.resume:
            self.tokenizer = Tokenizer.load(self.resume_dir / "tokenizer.json")
        else:
            controls = control_vocabulary(train_poems, config.top_tunes) if config.conditioned else ()
            self.tokenizer = Tokenizer.build(vocabulary_texts(train, config.conditioned, config.min_count),
                                             config.min_count, controls)
            if not self.tokenizer.chars:   # only the special ids: no model can be built on that
                raise BadInput(f"no character occurs --min-count {config.min_count} times in the {len(train)} "
                               f"training poems; lower --min-count", field="min_count")
        prefixer = Prefixer(self.tokenizer)
        self.train_stream = token_stream(self.tokenizer, train,
                                         [prefixer.for_poem(p, config.titles) for p in train_poems], config.reverse)
        self.held_out = [self.tokenizer.encode(text[::-1] if config.reverse else text) for text in held]
        self.held_out_prefixes = [prefixer.for_poem(p) for p in held_poems]
        self.corpus_record = {"path": str(self.corpus or shipped_label()),
                              "hash": corpus_hash(poems), "poems": len(poems),
                              "train_chars": int(len(self.train_stream)),
                              "held_out_chars": sum(len(t) + 1 for t in self.held_out)}
        if config.resume and self.state.get("corpus_hash") not in (None, self.corpus_record["hash"]):
            # its held-out poems are others: the best so far is no yardstick for them, and the run's
            # vocabulary (kept: the weights have its shape) may not know all of its characters
            chars = (self.train_stream == UNK) | ((self.train_stream >= len(SPECIALS))
                                                   & (self.train_stream < len(SPECIALS) + len(self.tokenizer.chars)))
            unknown = float(np.sum(self.train_stream == UNK) / max(int(chars.sum()), 1))   # of its characters only
            self.state["best_val_loss"] = self.state["best_epoch"] = None
            logger.warning(f"the corpus changed since this run started; continuing on the new one ({len(poems):,} "
                           f"poems, {unknown:.1%} of its training characters unknown to the run's vocabulary): "
                           f"held-out perplexity starts afresh, the next epoch's model is kept as the best")

    def holds_run(self) -> bool:
        """Whether `out` holds a run of poetgen (a bundle's config.json, or a saved resume model), whose
        files a new run may replace; a user's folder that merely has a config.json or a resume/ is not one."""
        return is_bundle_config(self.out / CONFIG_FILE) or bool(model_files(self.out / RESUME_DIR))

    def _load_resume_state(self) -> None:
        saved = self.saved if self.saved is not None else read_state(self.out)
        self.state = {"step_in_epoch": 0, **saved["state"]}   # states saved before mid-epoch saves lack it
        if self.corpus is None:   # --resume without --corpus continues on the run's own corpus
            self.corpus = saved["train"].get("corpus")
        if self.corpus and self.corpus == saved["train"].get("corpus") and not Path(self.corpus).exists():
            raise BadInput(f"the run's corpus {self.corpus} is gone: pass --corpus to continue on it (moved) or "
                           f"on another", field="corpus")

    def model_config(self) -> ModelConfig:
        return model_config(self.config, self.tokenizer.vocab_size)

    def record(self, versions: dict) -> dict:
        train_options = {k: v for k, v in dataclasses.asdict(self.config).items()
                         if k not in ("out", "corpus", "resume", "force")}
        return {"model": dataclasses.asdict(self.model_config()), "train": train_options,
                "corpus": self.corpus_record, "versions": versions, "progress": self.state_progress(),
                "metrics": self.metrics()}

    def state_progress(self) -> dict:
        return {k: self.state[k] for k in ("epochs_done", "tokens_seen", "wall_time_s")}

    def advance(self, batches: int, seconds: float) -> None:
        """Count `batches` more trained steps and `seconds` more training time."""
        self.state["tokens_seen"] += batches * self.global_batch * self.config.seq_len
        self.state["wall_time_s"] = round(self.state["wall_time_s"] + seconds, 1)

    def position(self) -> str:
        """Where the run stands, for messages: "3 epochs" or "step 120 of epoch 4"."""
        done, step = self.state["epochs_done"], self.state["step_in_epoch"]
        return f"step {step} of epoch {done + 1}" if step else f"{done} epochs"

    def metrics(self) -> dict:
        best = self.state["best_val_loss"]
        return {"best_val_loss": best, "best_val_perplexity": math.exp(best) if best is not None else None,
                "best_epoch": self.state["best_epoch"]}

    def save_resume(self, model, versions: dict) -> None:
        record = {"train": dataclasses.asdict(self.config), "state": {**self.state,
                  "corpus_hash": self.corpus_record["hash"]}, "versions": versions,
                  "seed_states": seed_states(model)}
        save_state(self.resume_dir, model, self.tokenizer, record)


def resume_command(config: TrainConfig) -> str:
    """The command that continues the run, quoted for a shell (paths may hold spaces)."""
    corpus = ["--corpus", str(config.corpus)] if config.corpus else []
    return shlex.join(["poetgen", "train", *corpus, "--out", str(config.out), "--resume", "--epochs", str(config.epochs)])


def _fit_verbosity() -> int:
    """Keras's progress follows this module's logger: off when INFO is off (--quiet, or a library caller);
    one line per epoch unless sys.stdout, where Keras writes it, is a terminal; none where there is no
    sys.stdout (pythonw; the command's stderr closed): Keras's write to None failed the run."""
    if not logger.isEnabledFor(logging.INFO) or sys.stdout is None:
        return 0
    return 1 if sys.stdout.isatty() else 2


def train(config: TrainConfig, extra_callbacks: Sequence = (), explicit=None) -> Run:
    """Train into config.out, holding its lock; `explicit` names the options the user gave (for --resume)."""
    config.validate()
    explicit = explicit_options(config) if explicit is None else explicit
    if config.corpus is not None:   # recorded absolute: a --resume from another directory reads the same file
        config = dataclasses.replace(config, corpus=os.path.abspath(config.corpus))
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a directory")
    with Lock.directory(out), caller_state_kept():
        return _train(config, extra_callbacks, explicit)


@contextlib.contextmanager
def caller_state_kept():
    """The process's global state as the caller had it: a run sets Keras's dtype policy (--precision) and
    reseeds Python's and NumPy's global random generators (keras.utils.set_random_seed), which a library
    caller's own models and draws would otherwise inherit. (TensorFlow's global seed stays set.)"""
    import random

    import keras

    policy = keras.mixed_precision.global_policy()
    python_random, numpy_random = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        random.setstate(python_random)
        np.random.set_state(numpy_random)


def _train(config: TrainConfig, extra_callbacks: Sequence, explicit) -> Run:
    saved, lags = None, False
    if config.resume:
        saved = read_state(Path(config.out))
        config = resumed_config(config, saved, explicit, FIXED_ON_RESUME)
        lags = bundle_lags(Path(config.out), saved["state"])   # written again from the resume model below
        check_bundle(Path(config.out), saved["state"]["epochs_done"], lags)
    run = Run(config, saved)
    # a run killed before its first save left only its lock and TensorBoard's events: not its curves
    # beside the new run's (a directory with anything else is a run's, or someone's)
    killed_early = run.out.is_dir() and all(p.name in EARLY_FILES for p in run.out.iterdir())
    run.prepare()
    start_epoch, step_in_epoch = run.state["epochs_done"], run.state["step_in_epoch"]
    if start_epoch >= config.epochs and not lags:
        raise BadInput(f"{config.out} has already trained {start_epoch} epochs; raise --epochs to continue")
    strategy = setup_devices(config.strategy)
    import keras

    keras.utils.set_random_seed(config.seed)
    run.global_batch = config.batch_size * strategy.num_replicas_in_sync
    windows = len(window_starts(len(run.train_stream), config.seq_len))
    check_windows(windows, run.global_batch, config.seq_len, len(run.train_stream))   # before anything is deleted
    steps = run.steps_per_epoch = config.steps_per_epoch or max(1, windows // run.global_batch)
    segments = fit_segments(start_epoch, step_in_epoch, config.epochs, steps)
    model_config = run.model_config()
    held_run = run.holds_run()
    keras.mixed_precision.set_global_policy(config.precision)
    with strategy.scope():
        if config.resume:
            model = load_resume_model(saved["model_path"], run.tokenizer.vocab_size)
            restore_seed_states(model, saved.get("seed_states"), saved["state_path"])
            # the schedule ends at the run's last step: the steps taken, then the ones left (the same as
            # steps * epochs unless --steps-per-epoch, --batch-size or the corpus changed the epoch's length)
            total = int(model.optimizer.iterations.numpy()) + planned_steps(segments)
            retune_optimizer(model, config, total)
            # what still draws from the global seed (the sampled softmax's sampler) goes on, not over
            keras.utils.set_random_seed((config.seed + int(model.optimizer.iterations.numpy())) % 2**32)
        else:
            model = build_model(model_config)
            total = planned_steps(segments)
            compile_model(model, config, total)
        use_sampled_softmax(model, model_config, config.sampled_softmax)
    if lags:   # the saved state's best: a changed corpus reset run.state's
        save_epoch(run, model, model_config, library_versions(), saved["state"]["best_epoch"] == start_epoch)
        logger.warning(f"{run.out}'s bundle was behind its resume state (epoch {start_epoch}, whose bundle "
                       f"save failed or was killed): written again from it")
        if start_epoch >= config.epochs:
            run.stopped = False
            return run
    if config.warmup_steps >= total:   # the cosine never starts: the whole run is warm-up, at a fraction of the peak
        logger.warning(f"--warmup-steps {config.warmup_steps} is as long as the whole run ({total} steps), so the "
                       f"rate never reaches --learning-rate {config.learning_rate:g} (it stops at "
                       f"{total / config.warmup_steps:.0%} of it); give a smaller --warmup-steps")
    run.out.mkdir(parents=True, exist_ok=True)
    if config.resume:
        repair_log(run.out / LOG_FILE, start_epoch)
    elif killed_early:
        shutil.rmtree(run.out / "tensorboard", ignore_errors=True)
    elif held_run:   # an earlier run's progress; files in a directory that held no run are not ours to delete
        for stale in (LOG_FILE, RESUME_DIR + "/" + RESUME_STATE, RESUME_DIR + "/" + RESUME_TOKENIZER):
            with contextlib.suppress(FileNotFoundError):
                (run.out / stale).unlink()
        if config.force:   # starting over: not the old run's curves beside the new run's in TensorBoard
            # (removed only now, every check passed: a forced start that is refused keeps them)
            shutil.rmtree(run.out / "tensorboard", ignore_errors=True)
    versions = library_versions()
    replicas = f" on {strategy.num_replicas_in_sync} replicas" if config.strategy == "mirrored" else ""
    from_step = f", epoch {start_epoch + 1} from step {step_in_epoch}" if step_in_epoch else ""
    logger.info(f"training {model.count_params():,} parameters{replicas} on {run.corpus_record['train_chars']:,} characters "
        f"(vocabulary {run.tokenizer.vocab_size}), epochs {start_epoch + 1}..{config.epochs} of {steps} steps{from_step}")
    with StopOnSignal() as stopper:   # Keras's progress goes to sys.stdout: the CLI points that at stderr
        # the progress bar last, as Keras places its own: its line shows what the others added to the logs
        callbacks = make_callbacks(run, model_config, versions, stopper) + list(extra_callbacks) + [progress_bar(config.epochs)]
        for first, last, epoch_steps in segments:
            if stopper.stopped:   # a signal between two fits (while the cut epoch's end was saved)
                break
            # the data goes on at the batch the run has reached (the optimizer counts them), the same
            # batches an uninterrupted run would see
            dataset, _ = training_dataset(run.train_stream, run.global_batch, config.seq_len, config.seed,
                                          start=int(model.optimizer.iterations.numpy()))
            model.fit(dataset, epochs=last, initial_epoch=first, steps_per_epoch=epoch_steps, shuffle=False,
                      callbacks=callbacks, verbose=_fit_verbosity())
            if model.stop_training or run.state["step_in_epoch"]:   # a signal, or a caller's callback
                break
    # stopped: short of --epochs (a signal after the last batch changes nothing)
    run.stopped = run.state["epochs_done"] < config.epochs or bool(run.state["step_in_epoch"])
    if run.stopped:
        logger.warning(f"stopped at {run.position()}; saved. Continue with: {resume_command(config)}")
    elif stopper.stopped:   # it came while the last epoch was scored and saved: nothing is left to do
        logger.warning("the stop came after the last batch: every epoch is done and saved, so the run ends as "
                       "finished (exit 0), with nothing to resume")
    return run


def planned_steps(segments: list[tuple[int, int, int]]) -> int:
    """The steps the fits of `segments` (fit_segments) take in all."""
    return sum((last - first) * epoch_steps for first, last, epoch_steps in segments)


def fit_segments(epochs_done: int, step_in_epoch: int, epochs: int, steps: int) -> list[tuple[int, int, int]]:
    """(initial_epoch, epochs, steps_per_epoch) of each model.fit: a run saved within an epoch first
    finishes that epoch's remaining steps (at least one), then runs whole epochs."""
    segments = []
    if step_in_epoch:
        segments.append((epochs_done, epochs_done + 1, max(1, steps - step_in_epoch)))
        epochs_done += 1
    if epochs_done < epochs:
        segments.append((epochs_done, epochs, steps))
    return segments
