"""Turns a corpus's poems into what training reads: one token stream, and the jittered windows over it.

A pass visits every stride of the stream once, in an order drawn for that pass, and batch n is the same
whenever a run asks for it, so a resumed run reads the windows an unstopped one would have. It does not
build the vocabulary (tokenizer.py) nor the control prefixes (control.py), and it does not train (train.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from poetgen.errors import BadInput
from poetgen.tokenizer import BOUNDARY, Tokenizer


def token_stream(tokenizer: Tokenizer, texts: Sequence[str], prefixes: Sequence[list[int]] | None = None,
                 reverse: bool = False) -> np.ndarray:
    """All poems as one id array, each preceded by the boundary id (and its control ids), ending with one."""
    ids = [BOUNDARY]
    for i, text in enumerate(texts):
        ids += (prefixes[i] if prefixes else []) + tokenizer.encode(text[::-1] if reverse else text)
        ids.append(BOUNDARY)
    return np.asarray(ids, np.int32)


def training_dataset(stream: np.ndarray, batch_size: int, seq_len: int, seed: int, start: int = 0):
    """Infinite jittered windows from batch number `start` on: each pass over the data visits every stride
    of the stream once, in an order drawn for that pass; batch n is the same whenever a run asks for it,
    so a run resumed at any step sees the windows it would have seen uninterrupted.

    Returns the dataset of (inputs, targets) and the number of strides (windows) in one pass."""
    import tensorflow as tf

    stream_t = tf.constant(stream)
    starts = window_starts(len(stream), seq_len)
    check_windows(len(starts), batch_size, seq_len, len(stream))
    per_pass = len(starts) // batch_size
    starts_t = tf.constant(starts)
    offsets = tf.range(seq_len + 1)
    seed_t = tf.constant(seed, tf.int64)

    def one_pass(number):
        # stateless draws keyed by (seed, pass) and (seed, batch): nothing depends on the order in which
        # parallel threads run or on where a run started (negative keys for passes, so the two never meet)
        order = tf.random.experimental.stateless_shuffle(starts_t, tf.stack([seed_t, -1 - number]))
        # the strides left over (fewer than a batch) are others in every pass, never the same ones
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:per_pass * batch_size], [per_pass, batch_size]))

    def windows(index, start_batch):
        jitter = tf.random.stateless_uniform(tf.shape(start_batch), tf.stack([seed_t, index]), 0, seq_len,
                                             dtype=tf.int32)
        w = tf.gather(stream_t, (start_batch + jitter)[:, None] + offsets)
        return w[:, :-1], w[:, 1:]

    first_pass = start // per_pass
    batches = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).flat_map(one_pass)
    batches = batches.skip(start - first_pass * per_pass)
    numbered = tf.data.Dataset.zip(tf.data.Dataset.range(start, np.iinfo(np.int64).max), batches)
    return numbered.map(windows, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE), len(starts)


def check_windows(windows: int, batch_size: int, seq_len: int, characters: int) -> None:
    """One batch of windows fits in the training stream, or a one-line error."""
    if windows < batch_size:
        raise BadInput(f"corpus too small for --batch-size {batch_size} x --seq-len {seq_len}: "
                       f"{characters} characters")


def window_starts(stream_length: int, seq_len: int) -> np.ndarray:
    """Where each window (stride of seq_len) of one pass over a stream starts, before its jitter; the
    last leaves room for a window's jitter and its targets."""
    return np.arange(0, stream_length - 2 * seq_len - 1, seq_len, dtype=np.int32)
