"""The callbacks of a training run: held-out checkpointing, curves, the per-epoch sample, stop on a signal,
the progress line.

They save through the Run they are given (poetgen.train) and never decide what to train.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from poetgen.atomic import atomic_save
from poetgen.bundle import CONFIG_FILE, OnceWarnings, save_bundle, write_config
from poetgen.errors import Diverged
from poetgen.lock import default_handler
from poetgen.model import ModelConfig, build_model, sequence_log_likelihood
from poetgen.quantize import INT8_FILE, product_arrays
from poetgen.resume import EpochLog

if TYPE_CHECKING:
    from poetgen.train import Run

logger = logging.getLogger(__name__)


def perplexity(loss: float) -> float:
    """e ** loss; inf where that is beyond a float (a loss above ~709 nats: a diverged epoch's)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def inference_copy(model, model_config: ModelConfig):
    """The same weights in a fresh, uncompiled model: what a bundle ships (no optimizer state)."""
    copy = build_model(model_config, dtype="float32")
    copy.set_weights(model.get_weights())
    return copy


def save_best(run: Run, model, model_config: ModelConfig, versions: dict, warnings: OnceWarnings | None = None) -> None:
    """`model` as the bundle's best. A bundle that carried int8 products (`poetgen quantize`) gets them
    converted again from the new weights, in the same staged save: kept, they no longer fit the model
    (generate warned at every call and ran in float32). Training has TensorFlow loaded, which that needs."""
    copy = inference_copy(model, model_config)
    extra = {}
    if (run.out / INT8_FILE).exists():
        def int8(path: Path) -> None:
            from poetgen.stepper import NumpyStepper

            # a reverse model is scored in blocks, never stepped: no step graph (as `poetgen quantize`)
            np.savez(path, **product_arrays(NumpyStepper.from_model(copy, model_config), step=not run.config.reverse))
        extra[INT8_FILE] = int8
    save_bundle(run.out, copy, run.tokenizer, run.record(versions), warnings, extra)


def save_epoch(run: Run, model, model_config: ModelConfig, versions: dict, improved: bool,
               warnings: OnceWarnings | None = None) -> None:
    """The bundle at an epoch's end, after its resume state: `model` as the best where it `improved`,
    else config.json's progress and options as resumed (--epochs, --learning-rate)."""
    if improved:
        save_best(run, model, model_config, versions, warnings)
        return
    record = run.record(versions)
    write_config(run.out, {**json.loads((run.out / CONFIG_FILE).read_text(encoding="utf-8")),
                           "train": record["train"], "progress": record["progress"]})


def plot_curves(log_csv: Path, png: Path) -> None:
    """Training and held-out perplexity per epoch, from the CSV log."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("loss")]
    if not rows:
        return
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot(epochs, [perplexity(float(r["loss"])) for r in rows], "o-", label="training")
    held = [(e, perplexity(float(r["val_loss"]))) for e, r in zip(epochs, rows) if r.get("val_loss")]
    if held:
        axis.plot(*zip(*held), "s-", label="held-out")
    axis.set_xlabel("epoch")
    axis.set_ylabel("perplexity")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_save(png, lambda path: figure.savefig(path, format="png"))
    plt.close(figure)


class Interval:
    """Due once `seconds` have passed since the last restart; never when `seconds` is 0."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.restart()

    def restart(self) -> None:
        self.since = self.clock()

    def due(self) -> bool:
        return self.seconds > 0 and self.clock() - self.since >= self.seconds


def make_callbacks(run: Run, model_config: ModelConfig, versions: dict, stopper):
    import keras

    def finished() -> bool:
        """Whether the epoch that just ended ran all its steps (a stop cuts one short: no held-out loss,
        no log row, no curve point for it)."""
        return not run.state["step_in_epoch"]

    log = EpochLog(run.out / "log.csv", append=run.config.resume)
    warnings = OnceWarnings()   # a reverse/ another run holds is said at the first save, not at every one

    class HeldOutCheckpoint(keras.callbacks.Callback):
        """Held-out loss per epoch; its log.csv row, the best model to the bundle, the last one to the
        resume state, and the resume state also every --checkpoint-minutes within an epoch and when a stop
        cuts one short. The row is written before the state: a kill between them left a saved epoch with no
        row (--resume drops a row whose epoch was not saved, so the other order is safe). The state is
        saved before the bundle: a bundle saved first, whose state then failed (a full disk at a run's
        first save), held an epoch no --resume could go on from; a bundle left behind its state is
        written again by --resume (resume.bundle_lags)."""

        def on_train_begin(self, logs=None):
            log.on_train_begin(logs)

        def on_epoch_begin(self, epoch, logs=None):
            self.first_step = run.state["step_in_epoch"]   # a run resumed within this epoch starts there
            self.batches = self.counted = 0
            self.mark = time.monotonic()
            self.interval = Interval(run.config.checkpoint_minutes * 60)

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):   # before any save: NaN weights are kept nowhere
                raise self._diverged(f"the training loss is {loss} at step {self.first_step + self.batches}")
            if self.interval.due() and self.first_step + self.batches < run.steps_per_epoch:
                self._save_within()

        def _account(self):
            now = time.monotonic()
            run.advance(self.batches - self.counted, now - self.mark)
            self.counted, self.mark = self.batches, now

        def _diverged(self, what: str) -> Diverged:
            config = run.config
            if run.state["epochs_done"] or run.state["step_in_epoch"]:
                go_on = shlex.join(["poetgen", "train", "--out", str(config.out), "--resume", "--learning-rate",
                                    f"{config.learning_rate / 10:g}"])
                kept = f"the resume state ({run.position()}) is kept; go on from it with a lower rate: {go_on}"
            else:
                kept = f"nothing was saved; start again with a lower --learning-rate (now {config.learning_rate:g})"
            return Diverged(f"training diverged: {what} of epoch {run.state['epochs_done'] + 1} "
                            f"(--learning-rate {config.learning_rate:g}, --clipnorm {config.clipnorm:g}); {kept}",
                            field="learning_rate")

        def _save_within(self):
            if self.counted == self.batches and self.batches:
                return   # saved at this very step already
            if not all(np.isfinite(w).all() for w in self.model.get_weights()):   # the last step's update
                raise self._diverged(f"the weights are no longer finite after step {self.first_step + self.batches}")
            self._account()
            run.state["step_in_epoch"] = self.first_step + self.batches
            run.save_resume(self.model, versions)
            self.interval.restart()
            logger.info(f"saved the resume state at {run.position()}")

        def on_epoch_end(self, epoch, logs=None):
            if self.first_step + self.batches < run.steps_per_epoch:   # a stop cut the epoch short
                self._save_within()
                return
            total, count = sequence_log_likelihood(self.model, run.held_out, prefixes=run.held_out_prefixes)
            val_loss = -total / count
            if not math.isfinite(perplexity(val_loss)):   # nothing of this epoch is logged or saved
                raise self._diverged(f"the held-out loss is {val_loss:g} at the end")
            logs["val_loss"], logs["val_perplexity"] = val_loss, perplexity(val_loss)
            self._account()
            log.write(epoch, logs)
            state = run.state
            state["epochs_done"], state["step_in_epoch"] = epoch + 1, 0
            improved = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
            if improved:
                state["best_val_loss"], state["best_epoch"] = val_loss, epoch + 1
            run.save_resume(self.model, versions)
            save_epoch(run, self.model, model_config, versions, improved, warnings)
            logger.info(f"epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, held-out perplexity "
                f"{perplexity(val_loss):.1f} (best {perplexity(state['best_val_loss']):.1f} at epoch "
                f"{state['best_epoch']})")

    class Curves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if finished():
                plot_curves(run.out / "log.csv", run.out / "curves.png")

    return [HeldOutCheckpoint(),
            Curves(), tensorboard_logs(run.out / "tensorboard", finished),
            stopper.callback]


def progress_bar(epochs: int):
    """Keras's progress bar, except that an epoch a stop cuts short ends its line at the step it reached
    (Keras's own finalises it at the epoch's whole count: "10/10" after 4 steps), and its "Epoch N/M" counts
    the run's `epochs`, not one fit's: a resumed run finishes a cut epoch in a fit of its own, which Keras
    would head "Epoch 4/4" before the next fit's "Epoch 5/8"."""
    import keras

    class Progress(keras.callbacks.ProgbarLogger):
        def set_params(self, params):
            super().set_params(params)
            self.epochs = epochs

        def on_epoch_end(self, epoch, logs=None):
            if self.progbar is not None and self.target is not None and self.seen < self.target:
                self.progbar.update(self.seen, list((logs or {}).items()), finalize=True)
                return
            super().on_epoch_end(epoch, logs)

    return Progress()


def tensorboard_logs(directory: Path, finished=lambda: True):
    """Keras' TensorBoard callback, but its event files are optional: TensorFlow writes them outside
    poetgen's atomic saves, so a write error there (disk full, read-only, quota) is one warning and the
    run goes on without them; the bundle's own files are what must survive."""
    import keras
    import tensorflow as tf

    class TensorBoardLogs(keras.callbacks.TensorBoard):
        failed = False

        def _guarded(self, method, *args):
            if self.failed:
                return
            try:
                method(*args)
            except (OSError, tf.errors.OpError) as error:
                self.failed = True
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                logger.warning(f"cannot write TensorBoard logs in {directory} ({reason}); training goes on "
                               f"without them")

        def on_train_begin(self, logs=None):
            self._guarded(super().on_train_begin, logs)

        def on_train_batch_end(self, batch, logs=None):
            self._guarded(super().on_train_batch_end, batch, logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._guarded(super().on_epoch_begin, epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            if finished():   # an epoch a stop cut short has no held-out loss to show
                self._guarded(super().on_epoch_end, epoch, logs)

        def on_train_end(self, logs=None):
            self._guarded(super().on_train_end, logs)

    return TensorBoardLogs(str(directory), write_graph=False)


def sample_callback(bundle_dir: str | os.PathLike):
    """A callback that logs one wujue from the model after each epoch, with the run's tokenizer.

    poetgen.generate is imported here, when the callback is made: an error in it fails the run at
    its start rather than hiding behind every epoch.
    """
    import keras

    from poetgen.generate import sample_from_model

    class SamplePoem(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_loss" not in (logs or {}):   # a stop cut the epoch short: no bundle to read yet, maybe
                return
            poem = sample_from_model(self.model, bundle_dir, seed=epoch)
            if poem is not None:   # a reverse model writes none
                logger.info("sample: " + poem)

    return SamplePoem()


class StopOnSignal:
    """SIGINT/SIGTERM ask training to stop after the current batch; a second Ctrl-C aborts."""

    def __init__(self):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if outer.stopped:
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):   # a signal during the held-out scoring or the saves
                if outer.stopped:
                    self.model.stop_training = True

        self.callback = Callback()
        self.stopped = False

    def __enter__(self):
        # Python runs handlers in the main thread only, and installs them only from it: a run in another
        # thread (a library caller's) trains without them. A handler a host program installed stays its
        # own (it was replaced for the run, and the program never heard of its SIGTERM); Lock's is ours.
        in_main = threading.current_thread() is threading.main_thread()
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
                         if in_main and default_handler(sig)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.stopped and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopped = True
        logger.warning(f"received {signal.Signals(signum).name}: stopping after this batch and saving")
