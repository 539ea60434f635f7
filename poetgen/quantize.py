"""Int8 matrix products for generation: the output layer and the recurrent steps, about four times cheaper.

Each weight matrix is converted once to a TFLite model with dynamic-range quantization: int8 weights per
output column, and each input row quantized on the fly with its own scale, so a row's result does not
depend on the other rows of its batch. XNNPACK runs it with the CPU's int8 dot-product instructions;
the activations, gates and softmax stay float32. On the shipped model the held-out perplexity moves
from 109.796 to 109.815 (benchmarks/generate_speed.py measures it). Needs the `int8` extra
(ai-edge-litert, the LiteRT interpreter).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from poetgen.errors import BadInput
from poetgen.quiet import import_tensorflow, muted_stderr


class Int8Product:
    """x @ kernel in int8, for one (inputs, outputs) float32 kernel."""

    def __init__(self, kernel: np.ndarray):
        self._interpreter_class = _interpreter_class()
        self.kernel = kernel              # the float32 original
        self.model = _convert(kernel)
        self._local = threading.local()   # interpreters are not thread-safe: one set per thread
        with muted_stderr():              # the first interpreter announces its XNNPACK delegate
            self._interpreter(1)

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
        own packed copy of the weights (~2 MB for the shipped output layer), so sizes are few."""
        rows = 1 << max(rows - 1, 0).bit_length()
        runners = self._local.__dict__.setdefault("runners", {})
        if rows not in runners:
            interpreter = self._interpreter_class(model_content=self.model, num_threads=1)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [rows, detail["shape"][1]])
            interpreter.allocate_tensors()
            runners[rows] = _Runner(interpreter, rows, detail["index"], interpreter.get_output_details()[0]["index"])
        return runners[rows]


class _Runner(NamedTuple):
    interpreter: object   # a LiteRT Interpreter sized for one batch
    rows: int             # that batch size
    input: int            # index of its input tensor
    output: int           # index of its output tensor


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BadInput("--int8 needs the LiteRT interpreter: pip install 'poetgen[int8]'") from None
    return Interpreter


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
