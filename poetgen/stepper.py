"""The NumPy stepper: one character step of the trained network, in NumPy (or int8, poetgen.quantize).

Generation runs it: it starts instantly and needs no TensorFlow. It does not build, train or score a
Keras model (poetgen.model), nor choose characters (poetgen.sampling).
"""

from __future__ import annotations

import functools
import mmap
import threading

import numpy as np

from poetgen.model import ModelConfig, output_weights, states_per_layer
from poetgen.tokenizer import BOUNDARY


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)   # no overflow warnings for large |x|


# The first layer's input product is folded into the embedding table (a row lookup per step). Up to this
# size the whole table is folded at load; a wider model's (vocabulary × 4 units floats: 115 MB for the
# shipped LSTM-768) folds each row on its first use, so a one-poem run touches a few hundred rows.
FOLD_LIMIT_BYTES = 32 * 2**20
PREFIX_STATES = 16   # after_prefix() states kept per stepper (a few prefixes × batch sizes)
_PREFIX_LOCK = threading.Lock()


class Stepper:
    """What every stepper (anything with initial_state() and advance()) shares: the state after a
    control prefix, kept per stepper."""

    def after_prefix(self, prefix: tuple[int, ...], batch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """(state, last id) once `batch` rows have read the boundary and all but the last of `prefix`
        (a conditioned model's control ids): the same for every request with that prefix, so a few are
        kept. States are never changed in place, so requests may share one."""
        kept = self.__dict__.setdefault("_prefixed", {})   # (prefix, batch) -> (state, last id)
        key = (tuple(prefix), batch)
        found = kept.get(key)
        if found is None:   # threads that miss at once compute the same state; the lock keeps the dict whole
            state, previous = self.initial_state(batch), np.full(batch, BOUNDARY, np.int64)
            for token in prefix:
                state = self.advance(previous, state)
                previous = np.full(batch, token, np.int64)
            found = (state, previous)
            with _PREFIX_LOCK:
                while len(kept) >= PREFIX_STATES:
                    kept.pop(next(iter(kept)))
                kept[key] = found
        state, previous = found
        return list(state), previous.copy()


class NumpyStepper(Stepper):
    """One generation step in NumPy, float32, from the model's weights (int8 products after quantize()).

    The first layer's input projection is folded into the embedding table (a row lookup replaces a
    matrix product; a large table row by row on first use, FOLD_LIMIT_BYTES), and the output bias into the output
    kernel (one product, no extra pass). The sampling loop advances the state every step but asks for
    logits only where the model chooses.
    """

    def __init__(self, weights: dict[str, list[np.ndarray]], config: ModelConfig):
        self.config = config
        self.layers = []
        embedding = np.asarray(weights["embedding"][0], np.float32)   # no copy of float32 weights
        for i in range(config.layers):
            kernel, recurrent, bias = (w.astype(np.float32) for w in weights[f"rnn_{i}"])
            if config.cell == "gru":
                input_bias, recurrent_bias = bias[0], bias[1]
            else:
                input_bias, recurrent_bias = bias, np.zeros_like(bias)
            if config.cell == "lstm":
                kernel, recurrent, input_bias = (_lstm_gates(w, config.units) for w in (kernel, recurrent, input_bias))
            self.layers.append([_Product(kernel), _Product(recurrent), input_bias, recurrent_bias])
        first = self.layers[0]
        self.embedding = embedding
        if embedding.shape[0] * first[0].kernel.shape[1] * 4 <= FOLD_LIMIT_BYTES:
            self.input_table = embedding @ first[0].kernel + first[2]   # vocab × gates
            self._folded = np.ones(len(embedding), bool)
        else:   # rows folded on first use: pages never written cost no memory
            self.input_table = _sparse_table(len(embedding), first[0].kernel.shape[1])
            self._folded = np.zeros(len(embedding), bool)
        self._complete = bool(self._folded.all())   # then a step is a plain lookup, no first-use check
        self.projection = None
        if config.projection:   # kept apart: folded into the output it would cost units × vocab again
            kernel, bias = (w.astype(np.float32) for w in weights["projection"])
            self.projection = (_Product(kernel), bias)
        kernel, bias = output_weights(weights, config)
        self.output = _Product(np.vstack([kernel, bias[None, :]]))   # (units + 1, vocab): last row is the bias
        self.output_inputs = self.output.kernel.shape[0]   # top()'s width: the output layer's inputs and a 1
        self.int8 = False   # products in int8 (quantize())
        self.fused = None   # the whole step in one int8 graph (quantize(): poetgen.quantize.Int8Step)
        self._local = threading.local()   # this thread's latest fused step: (its new state's first array, logits)

    def product_kernels(self) -> dict[str, np.ndarray]:
        """The float32 kernels that quantize() runs in int8, by name: the recurrent steps, deeper
        layers' inputs, the projection and the output layer (its last row the bias). Before quantize()
        only: an int8 stepper keeps no float32 copy of them."""
        named = {}
        for i, (kernel, recurrent, _, _) in enumerate(self.layers):
            if i > 0:
                named[f"rnn_{i}_input"] = kernel.kernel
            named[f"rnn_{i}_recurrent"] = recurrent.kernel
        if self.projection is not None:
            named["projection"] = self.projection[0].kernel
        named["output"] = self.output.kernel
        return named

    def step_arrays(self) -> dict[str, np.ndarray]:
        """The float32 arrays of the whole step after the first layer's table lookup, by name, in
        the order poetgen.quantize.convert_step reads them (and fingerprints them)."""
        named = {}
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(self.layers):
            if i > 0:
                named[f"rnn_{i}_input"], named[f"rnn_{i}_input_bias"] = kernel.kernel, input_bias
            named[f"rnn_{i}_recurrent"] = recurrent.kernel
            if self.config.cell == "gru":
                named[f"rnn_{i}_recurrent_bias"] = recurrent_bias
        if self.projection is not None:
            named["projection"], named["projection_bias"] = self.projection[0].kernel, self.projection[1]
        named["output"] = self.output.kernel
        return named

    def step_widths(self) -> tuple[int, ...]:
        """Widths of the fused step's input parts: the first layer's gate inputs, then each state array
        (its output holds the new state in the same order, then the logits)."""
        states = states_per_layer(self.config.cell) * self.config.layers
        return (self.input_table.shape[1], *[self.config.units] * states)

    def quantize(self, converted: dict[str, bytes] | None = None, step: bool = True) -> None:
        """Run every matrix product in int8 from now on (poetgen.quantize), from the TFLite models in
        `converted` (by product_kernels() name) where given, else converted now (that needs TensorFlow).
        The first layer's input stays a float32 table lookup. With `step`, advance() runs the whole
        step as one graph (poetgen.quantize.Int8Step) when `converted` carries it (quantize.STEP), or
        when nothing was given and everything is converted now. The float32 kernels it replaces are
        let go (a generating process holds each product once, in int8)."""
        if self.int8:
            raise ValueError("this stepper already runs in int8")
        from poetgen.quantize import STEP, Int8Product, Int8Step, convert_step

        converted = converted or {}
        if step and (STEP in converted or not converted):
            self.fused = Int8Step(converted.get(STEP) or convert_step(self), self.step_widths())
        products = {name: Int8Product(kernel, converted.get(name)) for name, kernel in self.product_kernels().items()}
        for i, layer in enumerate(self.layers):
            if i > 0:
                layer[0] = products[f"rnn_{i}_input"]
            layer[1] = products[f"rnn_{i}_recurrent"]
        if self.projection is not None:
            self.projection = (products["projection"], self.projection[1])
        self.output = products["output"]
        self.int8 = True
        self._prefixed = {}   # those states were stepped in float32

    @classmethod
    def from_model(cls, model, config: ModelConfig) -> "NumpyStepper":
        return cls({layer.name: layer.get_weights() for layer in model.layers}, config)

    def initial_state(self, batch: int) -> list[np.ndarray]:
        count = states_per_layer(self.config.cell) * self.config.layers
        return [np.zeros((batch, self.config.units), np.float32) for _ in range(count)]

    def advance(self, ids: np.ndarray, state: list[np.ndarray]) -> list[np.ndarray]:
        """Feed ids (batch,) and return the new state. With a fused step the new state's logits come
        with it, and logits() and logit_at() read them (this thread, until its next step)."""
        if self.fused is not None:
            new_state, logits = self.fused(self._input_rows(ids), state)
            self._local.latest = (new_state[0], logits)
            return new_state
        per_layer = states_per_layer(self.config.cell)
        new_state = []
        x = None
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(self.layers):
            projected = self._input_rows(ids) if i == 0 else kernel(x) + input_bias
            layer_state = state[i * per_layer:(i + 1) * per_layer]
            x, layer_new = self._cell(projected, layer_state, recurrent, recurrent_bias)
            new_state += layer_new
        return new_state

    def _input_rows(self, ids: np.ndarray) -> np.ndarray:
        """The first layer's input product of each id: a row of the folded table, folded now if it is
        the id's first use. Each row is its own product, so it does not depend on which ids came first
        (threads may fold the same row at once: they write the same values)."""
        fresh = None if self._complete else ids[~self._folded[ids]]
        if fresh is not None and fresh.size:
            self._fold(np.unique(fresh))
        return self.input_table[ids]

    def fold_all(self) -> None:
        """Fold every row of the table now, each as on its first use: a long-running process (poetgen
        serve) then holds it whole from the start instead of growing by a row at each new character."""
        if not self._complete:
            self._fold(np.flatnonzero(~self._folded))
            self._complete = True

    def _fold(self, ids: np.ndarray) -> None:
        kernel, _, input_bias, _ = self.layers[0]
        for i in ids:
            self.input_table[i] = self.embedding[i] @ kernel.kernel + input_bias
            self._folded[i] = True

    def top(self, state: list[np.ndarray]) -> np.ndarray:
        """The output layer's input (the last layer's output, projected when the model has a
        projection) with a column of ones appended (it multiplies the bias row)."""
        h = state[-states_per_layer(self.config.cell)]
        top = np.empty((len(h), self.output_inputs), np.float32)
        if self.projection is not None:
            kernel, bias = self.projection
            np.add(kernel(h), bias, out=top[:, :-1])
        else:
            top[:, :-1] = h
        top[:, -1] = 1
        return top

    def logits_of_tops(self, tops: np.ndarray) -> np.ndarray:
        """(rows, vocab) logits of output-layer inputs that top() gave, many steps' rows in one product."""
        return self.output(tops)

    def _fused_logits(self, state: list[np.ndarray]):
        """The logits (poetgen.quantize.StepLogits) the fused step gave with `state` in this thread,
        if it was its latest step."""
        latest = getattr(self._local, "latest", None)
        if latest is None or latest[0] is not state[0] or not latest[1].valid():
            return None
        return latest[1]

    def logits(self, state: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """(batch, vocab) next-character logits after `state`, written into `out` when given."""
        fused = self._fused_logits(state)
        if fused is not None:
            return fused.read(out)
        return self.output(self.top(state), out)

    def logit_at(self, state: list[np.ndarray], ids: np.ndarray) -> np.ndarray:
        """(batch,) the logit of one id per row, without computing the others. In int8 it is read
        from this thread's latest product for a batch this size, so call it after logits()."""
        fused = self._fused_logits(state)
        if fused is not None:
            return fused.at(ids)
        if self.int8:
            return self.output.last_at(len(ids), ids)
        return np.einsum("bu,bu->b", self.top(state), self._output_rows[ids])

    @functools.cached_property
    def _output_rows(self) -> np.ndarray:
        """(vocab, units + 1) the float32 output kernel by rows, for single logits (made on first use:
        an int8 stepper never needs it)."""
        return np.ascontiguousarray(self.output.kernel.T)

    def step(self, ids: np.ndarray, state: list[np.ndarray]):
        """ids (batch,) → (logits (batch, vocab), new state)."""
        state = self.advance(ids, state)
        return self.logits(state), state

    def _cell(self, projected, state, recurrent, recurrent_bias):
        cell, units = self.config.cell, self.config.units
        h = state[0]
        if cell == "lstm":   # gates in _lstm_gates' order: one tanh serves all four
            z = np.tanh(projected + recurrent(h))
            gates = z[:, :3 * units]
            gates *= 0.5
            gates += 0.5
            i, f, o, g = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = f * state[1]
            c += i * g
            h = o * np.tanh(c)
            return h, [h, c]
        if cell == "gru":
            r_in = recurrent(h) + recurrent_bias
            z = _sigmoid(projected[:, :units] + r_in[:, :units])
            r = _sigmoid(projected[:, units:2 * units] + r_in[:, units:2 * units])
            candidate = np.tanh(projected[:, 2 * units:] + r * r_in[:, 2 * units:])
            h = z * h + (1.0 - z) * candidate
            return h, [h]
        h = np.tanh(projected + recurrent(h))
        return h, [h]


def _sparse_table(rows: int, columns: int) -> np.ndarray:
    """A float32 table whose pages cost memory only once written, in 4 KB pages: its own mapping, kept
    from huge pages (NumPy asks for 2 MB pages for large arrays, so each of a few hundred scattered rows
    would cost 2 MB: 33 MB for one poem's rows of the shipped model and its reverse model)."""
    size = max(rows * columns * 4, 1)
    try:
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (AttributeError, TypeError):   # Windows: an anonymous mapping takes no flags
        buffer = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, np.float32, rows * columns).reshape(rows, columns)


class _Product:
    """x @ kernel in float32 (poetgen.quantize.Int8Product is its int8 counterpart)."""

    def __init__(self, kernel: np.ndarray):
        self.kernel = kernel

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(x, self.kernel, out=out)


def _lstm_gates(weights: np.ndarray, units: int) -> np.ndarray:
    """Keras' LSTM gate columns (i, f, c, o) reordered to (i, f, o, c), the sigmoid gates halved:
    sigmoid(x) = (tanh(x / 2) + 1) / 2, so the step takes one tanh over all four gates."""
    i, f, c, o = (weights[..., k * units:(k + 1) * units] for k in range(4))
    return np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, c], axis=-1).astype(np.float32)


def row_sums(x: np.ndarray) -> np.ndarray:
    """Sums of the rows of a C-contiguous 2-D array, each row a BLAS dot product with ones: faster
    than NumPy's reduction, and, as a stack of one-row products, the same for a row in any batch (one
    matrix-vector product rounds a row differently by the number of rows beside it)."""
    return (x[:, None, :] @ _ones(x.shape[1], x.dtype))[:, 0]


@functools.lru_cache(maxsize=16)
def _ones(width: int, dtype) -> np.ndarray:
    """A read-only vector of ones, made once per width (a step asks for two)."""
    ones = np.ones(width, dtype)
    ones.flags.writeable = False
    return ones
