"""Int8 matrix products for generation: the output layer and the recurrent steps, about four times cheaper.

Each weight matrix is converted once to a TFLite model with dynamic-range quantization: int8 weights per
output column, and each input row quantized on the fly with its own scale, so a row's result does not
depend on the other rows of its batch. XNNPACK runs it with the CPU's int8 dot-product instructions;
the activations, gates and softmax stay float32. benchmarks/generate_speed.py measures the held-out
perplexity both ways (the shipped LSTM-768: +0.1 %).

Converting needs TensorFlow, so a bundle can carry its products converted once (`poetgen quantize`
writes INT8_FILE, each product with a fingerprint of the float32 kernel it came from). Generation
then runs in int8 by default without importing TensorFlow; a product whose fingerprint no longer
matches (the bundle was retrained) is not used. Running needs ai-edge-litert (the LiteRT interpreter),
installed with poetgen where it has wheels.
"""

from __future__ import annotations

import logging
import threading
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from poetgen.errors import BadInput, BadModel
from poetgen.quiet import import_tensorflow, muted_stderr

INT8_FILE = "int8.npz"   # in a bundle: {name: TFLite model bytes, name + FINGERPRINT: its kernel's fingerprint}
FINGERPRINT = ".fingerprint"
logger = logging.getLogger(__name__)


class Int8Product:
    """x @ kernel in int8, for one (inputs, outputs) float32 kernel."""

    def __init__(self, kernel: np.ndarray, model: bytes | None = None):
        self._interpreter_class = _interpreter_class()
        self.kernel = kernel              # the float32 original
        self.model = model if model is not None else _convert(kernel)   # converted now unless given
        self._local = threading.local()   # interpreters are not thread-safe: one set per thread
        try:
            with muted_stderr():          # the first interpreter announces its XNNPACK delegate
                self._interpreter(1)
        except (ValueError, RuntimeError) as error:   # bytes that are not a TFLite model of this product
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BadModel(f"an int8 product cannot be loaded ({reason}); run `poetgen quantize` again, "
                           f"or generate with --float32") from None

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(batch, outputs) for (batch, inputs), copied into `out` when given."""
        rows = len(x)
        runner = self._interpreter(rows)
        if runner.rows != rows:   # zero rows fill the bucket; each row is quantized alone
            x = np.concatenate([x, np.zeros((runner.rows - rows, x.shape[1]), np.float32)])
        runner.interpreter.set_tensor(runner.input, np.ascontiguousarray(x, np.float32))
        runner.interpreter.invoke()
        result = runner.interpreter.tensor(runner.output)()[:rows]
        if out is None:
            return result.copy()
        out[...] = result   # one copy, and no view kept past invoke()
        return out

    def last_at(self, rows: int, ids: np.ndarray) -> np.ndarray:
        """One output per row, column ids[row], from this thread's latest product for a batch of `rows`."""
        runner = self._interpreter(rows)
        return runner.interpreter.tensor(runner.output)()[np.arange(rows), ids].copy()

    def _interpreter(self, rows: int) -> "_Runner":
        """This thread's interpreter for batches of `rows`, sized to the next power of two: each holds its
        own packed copy of the weights (~2 MB for the shipped output layer), so sizes are few. One thread:
        a second makes back-to-back products 3x faster but wakes too slowly between sampling steps."""
        last = getattr(self._local, "last", None)   # most steps ask for the batch size of the one before
        if last is not None and last.asked == rows:
            return last.runner
        asked, rows = rows, 1 << max(rows - 1, 0).bit_length()
        runners = self._local.__dict__.setdefault("runners", {})
        if rows not in runners:
            interpreter = self._interpreter_class(model_content=self.model, num_threads=1)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [rows, detail["shape"][1]])
            interpreter.allocate_tensors()
            runners[rows] = _Runner(interpreter, rows, detail["index"], interpreter.get_output_details()[0]["index"])
        self._local.last = _Last(asked, runners[rows])
        return runners[rows]


class _Runner(NamedTuple):
    interpreter: object   # a LiteRT Interpreter sized for one batch
    rows: int             # that batch size
    input: int            # index of its input tensor
    output: int           # index of its output tensor


class _Last(NamedTuple):
    asked: int        # the batch size last asked for in this thread
    runner: _Runner   # the runner it got


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


def write_products(stepper, path: Path) -> None:
    """Convert every product stepper.quantize() runs in int8 and save them at `path` (an INT8_FILE),
    atomically. Needs TensorFlow."""
    from poetgen.atomic import atomic_write

    arrays = {}
    for name, kernel in stepper.product_kernels().items():
        arrays[name] = np.frombuffer(_convert(kernel), np.uint8)
        arrays[name + FINGERPRINT] = fingerprint(kernel)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


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


def choose_precision(stepper, directory: Path | None, int8: bool | None) -> bool:
    """Quantize `stepper` or not, and say which: int8=True always (converting what the bundle at
    `directory` does not carry), False never, None (the default) when that bundle carries all of
    the stepper's products and LiteRT is installed."""
    if int8 is False:
        return False
    products = read_products(stepper, Path(directory) / INT8_FILE) if directory is not None else {}
    if int8 is None and (set(products) != set(stepper.product_kernels()) or not litert_installed()):
        return False
    stepper.quantize(products)
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
