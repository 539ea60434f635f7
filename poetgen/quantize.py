"""Int8 matrix products for generation: the output layer and the recurrent steps, about four times cheaper.

Each weight matrix is converted once to a TFLite model with dynamic-range quantization: int8 weights per
output column, and each input row quantized on the fly with its own scale, so a row's result does not
depend on the other rows of its batch. XNNPACK runs it with the CPU's int8 dot-product instructions;
the activations, gates and softmax stay float32. benchmarks/generate_speed.py measures the held-out
perplexity both ways (the shipped LSTM-768: +0.001 %).

Converting needs TensorFlow, so a bundle can carry its products converted once (`poetgen quantize`
writes INT8_FILE, each product with a fingerprint of the float32 kernel it came from). Generation
then runs in int8 by default without importing TensorFlow; a product whose fingerprint no longer
matches (the bundle was retrained) is not used. Running needs ai-edge-litert (the LiteRT interpreter),
installed with poetgen where it has wheels.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from poetgen.errors import BadInput, BadModel
from poetgen.quiet import import_tensorflow, muted_stderr, tensorflow_required

INT8_FILE = "int8.npz"   # in a bundle: {name: TFLite model bytes, name + FINGERPRINT: its kernel's fingerprint}
FINGERPRINT = ".fingerprint"
logger = logging.getLogger(__name__)


STEP = "step"        # in INT8_FILE: the whole forward step of a model (Int8Step), beside its products
STEP_THREADS = 2     # interpreter threads of a small batch's step: two cores read half the weights each
THREADED_ROWS = 4    # up to this many rows a step runs on STEP_THREADS (a batch-1 poem's latency)


class _Interpreters:
    """One TFLite model run by LiteRT interpreters: one per thread (they are not thread-safe) and per
    thread count (see _threads), each resized to the batch in hand when that changes. An interpreter
    holds its own packed copy of the weights (~5 MB for the shipped step), so a server whose threads
    met every batch size once held one per size and grew by 300 MB; a resize costs ~0.05 ms, and a
    batch keeps its size for all its steps."""

    what = "an int8 product"   # named in the one-line error when the bytes do not load

    def _load(self, model: bytes) -> None:
        self._interpreter_class = _interpreter_class()
        self.model = model
        self._local = threading.local()
        try:
            with muted_stderr():          # the first interpreter announces its XNNPACK delegate
                self._interpreter(1)
        except (ValueError, RuntimeError) as error:   # bytes that are not a TFLite model of this
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BadModel(f"{self.what} cannot be loaded ({reason}); run `poetgen quantize` again, "
                           f"or generate with --float32") from None

    def _threads(self, rows: int) -> int:
        """Interpreter threads for a batch of `rows`. One: a second makes back-to-back products 3x
        faster but wakes too slowly between sampling steps."""
        return 1

    def _interpreter(self, rows: int) -> "_Runner":
        """This thread's interpreter for batches of `rows`, sized for them."""
        last = getattr(self._local, "last", None)   # most steps ask for the batch size of the one before
        if last is not None and last.rows == rows:
            return last
        threads = self._threads(rows)
        runners = self._local.__dict__.setdefault("runners", {})
        runner = runners.get(threads)
        if runner is None:
            interpreter = self._interpreter_class(model_content=self.model, num_threads=threads)
            detail = interpreter.get_input_details()[0]
            runner = runners[threads] = _Runner(interpreter, detail["index"], detail["shape"][1],
                                                interpreter.get_output_details()[0]["index"])
        runner.resize(rows)
        self._local.last = runner
        return runner


class Int8Product(_Interpreters):
    """x @ kernel in int8, for one (inputs, outputs) float32 kernel."""

    def __init__(self, kernel: np.ndarray, model: bytes | None = None):
        self.shape = kernel.shape         # (inputs, outputs); the float32 original is not kept
        self._load(model if model is not None else _convert(kernel))   # converted now unless given

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(batch, outputs) for (batch, inputs), copied into `out` when given."""
        runner = self._interpreter(len(x))
        runner.interpreter.set_tensor(runner.input, np.ascontiguousarray(x, np.float32))
        runner.interpreter.invoke()
        result = runner.interpreter.tensor(runner.output)()
        if out is None:
            return result.copy()
        out[...] = result   # one copy, and no view kept past invoke()
        return out

    def last_at(self, rows: int, ids: np.ndarray) -> np.ndarray:
        """One output per row, column ids[row], from this thread's latest product, of `rows` rows."""
        runner = getattr(self._local, "last", None)
        if runner is None or runner.rows != rows:   # a resize would have dropped the product
            raise RuntimeError(f"no product of {rows} rows is the latest in this thread")
        return runner.interpreter.tensor(runner.output)()[np.arange(rows), ids].copy()


class _Runner:
    """A LiteRT interpreter and the batch size it is allocated for."""

    def __init__(self, interpreter, input: int, width: int, output: int):
        self.interpreter = interpreter
        self.input, self.width, self.output = input, width, output   # tensor indices; the input's columns
        self.rows = 0   # not allocated yet

    def resize(self, rows: int) -> None:
        if rows != self.rows:
            self.rows = 0   # until allocated: a failed resize must not pass for the old size
            self.interpreter.resize_tensor_input(self.input, [rows, self.width])
            self.interpreter.allocate_tensors()
            self.rows = rows


class Int8Step(_Interpreters):
    """A model's whole step in one TFLite graph: the recurrent layers (int8 products, float32 gates),
    the projection and the output layer, so one call gives the new state and the logits. Its products
    quantize each row alone, like Int8Product, and its results do not depend on the thread count, so
    a poem is the same whatever its batch. Small batches run on two threads (THREADED_ROWS)."""

    what = "the int8 step"

    def __init__(self, model: bytes, widths: tuple[int, ...]):
        # widths: of the input's parts, the first layer's gate inputs then each state array
        self._edges = np.cumsum((0, *widths))   # where each input part starts; the last: the input width
        self.logits_start = int(self._edges[-1] - self._edges[1])   # in the output, after the new state
        self._load(model)

    def __call__(self, inputs: np.ndarray, state: list[np.ndarray]) -> tuple[list[np.ndarray], "StepLogits"]:
        """The new state after the first layer's gate inputs (rows, gates) and `state`, and a handle
        on its logits (read them before this thread's next step)."""
        rows, edges = len(inputs), self._edges
        runner = self._interpreter(rows)
        packed = runner.interpreter.tensor(runner.input)()   # written in place: no view survives invoke()
        for part, start, stop in zip((inputs, *state), edges[:-1], edges[1:]):
            packed[:, start:stop] = part
        del packed
        runner.interpreter.invoke()
        result = runner.interpreter.tensor(runner.output)()
        new_state = [result[:, start - edges[1]:stop - edges[1]].copy() for start, stop in zip(edges[1:-1], edges[2:])]
        del result
        count = self._local.invocations = getattr(self._local, "invocations", 0) + 1
        return new_state, StepLogits(self, runner, rows, count)

    def invocations(self) -> int:
        """How many steps this thread has run."""
        return getattr(self._local, "invocations", 0)

    def _threads(self, rows: int) -> int:
        return min(STEP_THREADS, cores()) if rows <= THREADED_ROWS else 1


class StepLogits(NamedTuple):
    """The logits of one Int8Step call, left in its interpreter's output (copying a large batch's
    logits costs as much as the output layer): valid in the calling thread until its next step."""
    step: Int8Step
    runner: _Runner
    rows: int
    invocation: int   # the step's call count in this thread when it gave them

    def valid(self) -> bool:
        return self.step.invocations() == self.invocation

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """(rows, vocab), copied into `out` when given."""
        logits = self.runner.interpreter.tensor(self.runner.output)()[:self.rows, self.step.logits_start:]
        if out is None:
            return logits.copy()
        out[...] = logits
        return out

    def at(self, ids: np.ndarray) -> np.ndarray:
        """(rows,) the logit of ids[row] in each row."""
        view = self.runner.interpreter.tensor(self.runner.output)()
        return view[np.arange(self.rows), self.step.logits_start + ids]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BadInput("--int8 needs the LiteRT interpreter: pip install 'poetgen[int8]'") from None
    return Interpreter


def fingerprint(kernel: np.ndarray) -> np.ndarray:
    """(rows, columns, CRC-32 of the float32 bytes): what an int8 product was converted from."""
    data = np.ascontiguousarray(kernel, np.float32)
    return np.array([*data.shape, zlib.crc32(memoryview(data).cast("B"))], np.int64)


def step_fingerprint(stepper) -> np.ndarray:
    """The fingerprints of every float32 array the step graph is built from, one after another."""
    return np.concatenate([fingerprint(array) for array in stepper.step_arrays().values()])


def write_products(stepper, path: Path, step: bool = True) -> None:
    """Convert every product stepper.quantize() runs in int8, and with `step` the whole step
    (Int8Step), and save them at `path` (an INT8_FILE), atomically. Needs TensorFlow."""
    from poetgen.atomic import atomic_write

    arrays = product_arrays(stepper, step)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def product_arrays(stepper, step: bool = True) -> dict[str, np.ndarray]:
    """What write_products saves: each product's TFLite bytes and fingerprint (and the step's)."""
    arrays = {}
    for name, kernel in stepper.product_kernels().items():
        arrays[name] = np.frombuffer(_convert(kernel), np.uint8)
        arrays[name + FINGERPRINT] = fingerprint(kernel)
    if step:
        arrays[STEP] = np.frombuffer(convert_step(stepper), np.uint8)
        arrays[STEP + FINGERPRINT] = step_fingerprint(stepper)
    return arrays


def read_products(stepper, path: Path) -> dict[str, bytes]:
    """The products at `path` (an INT8_FILE) that were converted from stepper's current kernels; {}
    when there is no such file. A product whose fingerprint differs is left out, with a warning."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, zlib.error, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise BadModel(f"{path}: corrupt int8 products ({type(error).__name__}); run `poetgen quantize` "
                       f"again, or generate with --float32") from None
    products, stale = {}, []
    for name, kernel in stepper.product_kernels().items():
        if name in arrays and np.array_equal(arrays.get(name + FINGERPRINT), fingerprint(kernel)):
            products[name] = arrays[name].tobytes()
        elif name in arrays:
            stale.append(name)
    if STEP in arrays and np.array_equal(arrays.get(STEP + FINGERPRINT), step_fingerprint(stepper)):
        products[STEP] = arrays[STEP].tobytes()
    elif STEP in arrays:
        stale.append(STEP)
    if stale:
        logger.warning(f"{path}: int8 products {', '.join(stale)} were converted from other weights; "
                       f"run `poetgen quantize` again")
    return products


def litert_installed() -> bool:
    try:
        _interpreter_class()
    except BadInput:
        return False
    return True


def choose_precision(stepper, directory: Path | None, int8: bool | None, step: bool = True) -> bool:
    """Quantize `stepper` or not, and say which: int8=True always (converting what the bundle at
    `directory` does not carry), False never, None (the default) when that bundle carries all of
    the stepper's products and LiteRT is installed. With `step`, the whole step runs as one graph
    (Int8Step) where the bundle carries it, or where everything is converted now."""
    if int8 is False:
        return False
    products = read_products(stepper, Path(directory) / INT8_FILE) if directory is not None else {}
    if int8 is None and (not set(stepper.product_kernels()) <= set(products) or not litert_installed()):
        return False
    # poetgen.load(int8=True) raised a bare ModuleNotFoundError where generation runs without TensorFlow
    with tensorflow_required(f"int8=True (--int8) converts what {directory or 'the model'} lacks of {INT8_FILE} "
                             f"(`poetgen quantize` writes it), which needs TensorFlow"):
        stepper.quantize(products, step=step)
    return True


def _convert(kernel: np.ndarray) -> bytes:
    """A TFLite model of x @ kernel with int8 weights (dynamic-range quantization)."""
    tf = import_tensorflow()
    weights = tf.constant(kernel, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, kernel.shape[0]], tf.float32)])
    def project(x):
        return {"product": tf.matmul(x, weights)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([project.get_concrete_function()], project)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with muted_stderr():
        return converter.convert()


def convert_step(stepper) -> bytes:
    """A TFLite model of the stepper's whole step (Int8Step) with int8 weights: one input, the first
    layer's gate inputs and the state side by side; one output, the new state and the logits side by
    side. The gates follow NumpyStepper's float32 step exactly."""
    tf = import_tensorflow()
    config, arrays = stepper.config, {name: tf.constant(a) for name, a in stepper.step_arrays().items()}
    widths = stepper.step_widths()

    @tf.function(input_signature=[tf.TensorSpec([None, sum(widths)], tf.float32)])
    def step(packed):
        parts = tf.split(packed, list(widths), axis=1)
        x, state, new_state = parts[0], parts[1:], []
        per_layer = len(state) // config.layers
        for i in range(config.layers):
            if i > 0:
                x = tf.matmul(x, arrays[f"rnn_{i}_input"]) + arrays[f"rnn_{i}_input_bias"]
            h, recurrent = state[i * per_layer], tf.matmul(state[i * per_layer], arrays[f"rnn_{i}_recurrent"])
            x, layer_state = _cell_graph(tf, config, x, h, state[i * per_layer + 1:(i + 1) * per_layer],
                                         recurrent, arrays.get(f"rnn_{i}_recurrent_bias"))
            new_state += layer_state
        if "projection" in arrays:
            x = tf.matmul(x, arrays["projection"]) + arrays["projection_bias"]
        logits = tf.matmul(x, arrays["output"][:-1]) + arrays["output"][-1]   # its last row is the bias
        return {"step": tf.concat([*new_state, logits], axis=1)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()], step)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with muted_stderr():
        return converter.convert()


def _cell_graph(tf, config, projected, h, rest, recurrent, recurrent_bias):
    """NumpyStepper._cell in TensorFlow ops: (output, new layer state)."""
    units = config.units
    if config.cell == "lstm":   # gates in _lstm_gates' order, the sigmoid ones halved: one tanh for all four
        z = tf.tanh(projected + recurrent)
        i, f, o = (z[:, k * units:(k + 1) * units] * 0.5 + 0.5 for k in range(3))
        c = f * rest[0] + i * z[:, 3 * units:]
        h = o * tf.tanh(c)
        return h, [h, c]
    if config.cell == "gru":
        r_in = recurrent + recurrent_bias
        z = tf.sigmoid(projected[:, :units] + r_in[:, :units])
        r = tf.sigmoid(projected[:, units:2 * units] + r_in[:, units:2 * units])
        candidate = tf.tanh(projected[:, 2 * units:] + r * r_in[:, 2 * units:])
        h = z * h + (1.0 - z) * candidate
        return h, [h]
    h = tf.tanh(projected + recurrent)
    return h, [h]
