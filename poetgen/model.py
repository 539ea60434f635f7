"""The next-character network (Embedding → RNN layers → Dense logits), its Keras step form, and its loss.

Generation does not run it: poetgen.stepper steps the same weights in NumPy, starting instantly.
"""

from __future__ import annotations

import dataclasses
import math
import weakref

import numpy as np

from poetgen.errors import BadInput
from poetgen.options import check_settings

CELLS = ("lstm", "gru", "simplernn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int               # tokenizer.vocab_size, specials included
    cell: str = "lstm"            # lstm | gru | simplernn
    layers: int = 1               # stacked recurrent layers
    units: int = 256              # width of each recurrent layer
    embedding_dim: int = 256      # size of the character embedding
    dropout: float = 0.0          # dropout on each recurrent layer's input and on the output (one mask per
                                  # sequence, as Keras' RNN dropout is)
    # Added for issue 11; bundles written before lack these keys and get today's model.
    projection: int = 0           # linear layer of this size between the last recurrent layer and the
                                  # output layer (the output layer's cost scales with it); 0 means none
    tie_embeddings: bool = False  # output layer = the embedding table transposed (no separate output
                                  # weights, no output bias); needs the output's input size = embedding_dim
    embedding_dropout: float = 0.0   # drop a character's whole embedding at a position (AWD's dropoute)
    recurrent_dropout: float = 0.0   # dropout on the hidden-to-hidden connections, one mask per sequence
                                     # (AWD's variational dropout; Keras' recurrent_dropout)

    @property
    def output_inputs(self) -> int:
        """Width of what the output layer reads: the projection, else the last recurrent layer."""
        return self.projection or self.units

    def validate(self) -> None:
        """BadInput (a ValueError) naming the field that cannot build a model."""
        check_settings(self)   # the types first: a config.json may say "units": 16.0
        if self.cell not in CELLS:
            raise BadInput(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}", field="cell")
        for name in ("layers", "units", "embedding_dim"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}", field=name)
        if self.vocab_size < 4:
            raise BadInput(f"vocabulary size must be at least 4, not {self.vocab_size}", field="vocab_size")
        if not 0.0 <= self.dropout < 1.0:
            raise BadInput(f"dropout must be in [0, 1), not {self.dropout}", field="dropout")
        for name in ("projection",):
            if getattr(self, name) < 0:
                raise BadInput(f"projection must be at least 0 (0: none), not {self.projection}", field=name)
        for name in ("embedding_dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise BadInput(f"{name.replace('_', ' ')} must be in [0, 1), not {getattr(self, name)}", field=name)
        if self.tie_embeddings and self.output_inputs != self.embedding_dim:
            raise BadInput(f"tied embeddings need the output layer's input ({self.output_inputs}: the projection, "
                           f"else the units) to equal the embedding dim ({self.embedding_dim})", field="tie_embeddings")


def _rnn_class(cell: str):
    import keras

    return {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simplernn": keras.layers.SimpleRNN}[cell]


def build_model(config: ModelConfig, dtype: str | None = None):
    """The training model: int ids (batch, time) → logits (batch, time, vocab).

    dtype None follows Keras' global policy (mixed precision in training); logits are always float32.
    """
    import keras

    config.validate()
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    embedding = _embedding_layer(config, dtype)
    x = embedding(ids)
    if config.embedding_dropout:   # the same position's whole vector: a character dropped, not a feature
        x = keras.layers.Dropout(config.embedding_dropout, noise_shape=(None, None, 1), name="embedding_dropout",
                                 dtype=dtype)(x)
    for i in range(config.layers):
        x = _rnn_class(config.cell)(config.units, return_sequences=True, dropout=config.dropout,
                                    recurrent_dropout=config.recurrent_dropout, name=f"rnn_{i}", dtype=dtype)(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="output_dropout", dtype=dtype)(x)
    x = _projection(x, config, dtype)
    return keras.Model(ids, _output(x, embedding, config), name="poetgen")


def _embedding_layer(config: ModelConfig, dtype=None):
    """The character table; a ReversibleEmbedding (a stock Keras layer) when the output layer reuses it."""
    import keras

    if config.tie_embeddings:
        return keras.layers.ReversibleEmbedding(config.vocab_size, config.embedding_dim, tie_weights=True,
                                                reverse_dtype="float32", name="embedding", dtype=dtype)
    return keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding", dtype=dtype)


def _projection(x, config: ModelConfig, dtype=None):
    import keras

    if config.projection:
        x = keras.layers.Dense(config.projection, name="projection", dtype=dtype)(x)
    return x


def _output(x, embedding, config: ModelConfig):
    """Logits in float32: the tied table read in reverse, or the Dense output layer."""
    import keras

    if config.tie_embeddings:
        return embedding(x, reverse=True)
    return keras.layers.Dense(config.vocab_size, name="logits", dtype="float32")(x)


def output_weights(weights: dict[str, list[np.ndarray]], config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The output layer's (kernel (inputs, vocab), bias (vocab,)) from weights by layer name."""
    if config.tie_embeddings:
        table = weights["embedding"][0].astype(np.float32)
        return np.ascontiguousarray(table.T), np.zeros(config.vocab_size, np.float32)
    kernel, bias = weights["logits"]
    return kernel.astype(np.float32), bias.astype(np.float32)


def states_per_layer(cell: str) -> int:
    return 2 if cell == "lstm" else 1


def build_step_model(model, config: ModelConfig):
    """A Keras model of one step: (ids (batch, 1), *states) → (logits (batch, vocab), *new states).

    Built from the trained model's weights, so it is the same function, one character at a time.
    """
    import keras

    ids = keras.Input(shape=(1,), batch_size=None, dtype="int32", name="ids")
    embedding = _embedding_layer(config)
    x = embedding(ids)
    state_inputs, state_outputs = [], []
    for i in range(config.layers):
        layer_states = [keras.Input(shape=(config.units,), name=f"state_{i}_{k}")
                        for k in range(states_per_layer(config.cell))]
        outputs = _rnn_class(config.cell)(config.units, return_state=True, name=f"rnn_{i}")(
            x, initial_state=layer_states)
        x, new_states = outputs[0][:, None, :], outputs[1:]
        state_inputs += layer_states
        state_outputs += list(new_states)
    logits = _output(_projection(x[:, 0, :], config), embedding, config)
    step = keras.Model([ids] + state_inputs, [logits] + state_outputs, name="poetgen_step")
    for layer in step.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return step


_FORWARD = weakref.WeakKeyDictionary()   # model -> its traced forward pass


def traced_forward(model):
    """The model's forward pass traced once per model: a whole batch per call, not eager op by op."""
    if model not in _FORWARD:
        import tensorflow as tf

        _FORWARD[model] = tf.function(lambda ids: model(ids, training=False),
                                      input_signature=[tf.TensorSpec([None, None], tf.int32)])
    return _FORWARD[model]


def sequence_log_likelihood(model, token_lists: list[list[int]], batch_size: int = 64,
                            boundary: int = 2, prefixes: list[list[int]] | None = None) -> tuple[float, int]:
    """Total natural-log likelihood of each poem (after a boundary token, ending with one), and the
    number of predicted tokens. Poems are scored whole, each from a fresh state. A poem's control
    prefix, when given, is read after the boundary but not scored, so perplexities stay comparable."""
    if prefixes:
        token_lists = [list(p) + list(t) for p, t in zip(prefixes, token_lists)]
    skip = [len(p) for p in prefixes] if prefixes else [0] * len(token_lists)
    order = np.array(sorted(range(len(token_lists)), key=lambda i: len(token_lists[i])), np.int64)
    total, count = 0.0, 0
    for rows in _token_batches([len(token_lists[i]) + 1 for i in order], batch_size):
        batch = [token_lists[i] for i in order[rows]]
        skips = [skip[i] for i in order[rows]]
        length = max(len(tokens) for tokens in batch) + 1
        length = int(math.ceil(length / 16) * 16)   # few distinct shapes, few retraces
        x = np.zeros((len(batch), length), np.int32)
        y = np.zeros((len(batch), length), np.int32)
        mask = np.zeros((len(batch), length), np.float32)
        for row, tokens in enumerate(batch):
            sequence = [boundary] + list(tokens) + [boundary]
            x[row, :len(sequence) - 1] = sequence[:-1]
            y[row, :len(sequence) - 1] = sequence[1:]
            mask[row, skips[row]:len(sequence) - 1] = 1.0
        logits = np.asarray(traced_forward(model)(x), np.float32)
        log_probs = logits - _logsumexp(logits)
        picked = np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
        total += float((picked * mask).sum())
        count += int(mask.sum())
    return total, count


MAX_SCORED_TOKENS = 8192   # rows × length per scoring batch: the logits stay ~0.4 GB at a 12k vocabulary


def _token_batches(lengths: list[int], batch_size: int) -> list[slice]:
    """Consecutive slices of length-sorted sequences: at most batch_size rows and, for long poems,
    at most MAX_SCORED_TOKENS padded tokens (a batch of 64 poems of 2,000 characters would need 6 GB)."""
    slices, start = [], 0
    while start < len(lengths):
        stop = start + 1
        while (stop < len(lengths) and stop - start < batch_size
               and (stop + 1 - start) * lengths[stop] <= MAX_SCORED_TOKENS):
            stop += 1
        slices.append(slice(start, stop))
        start = stop
    return slices


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
