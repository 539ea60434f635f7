"""The reverse model's judgement of whole poems, for best-of ranking (and polishing).

A model trained on reversed poems (`poetgen train --reverse`) reads a candidate from its last
character to its first; a poem that only made sense one step at a time reads badly backwards. It
lives in the forward bundle's `reverse/` folder and must share its tokenizer. It does not sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poetgen.errors import BadModel
from poetgen.model import NumpyStepper, row_sums
from poetgen.quantize import choose_precision
from poetgen.weights import layer_weights
from poetgen.tokenizer import BOUNDARY

REVERSE_DIR = "reverse"   # inside a bundle
OUTPUT_ROWS = 128         # rows (steps × poems) per output-layer product when scoring


class ReverseScorer:
    """Mean log-probability of each poem read backwards, after the same control prefix."""

    def __init__(self, stepper: NumpyStepper, tokenizer):
        self.stepper = stepper
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, bundle_dir: Path, tokenizer, int8: bool | None = None) -> "ReverseScorer | None":
        """The bundle's reverse model, or None when it has none; in int8 per `int8`, as the forward
        model (poetgen.quantize.choose_precision: None is int8 when reverse/ carries its products)."""
        from poetgen.bundle import load_bundle

        directory = Path(bundle_dir) / REVERSE_DIR
        if not directory.is_dir():
            return None
        reverse = load_bundle(directory, keras=False)   # weights only: no TensorFlow
        if reverse.tokenizer.hash != tokenizer.hash:
            raise BadModel(f"{directory}: the reverse model's tokenizer {reverse.tokenizer.hash} is not the "
                           f"model's ({tokenizer.hash}); train it on the same corpus and options")
        if not reverse.config.get("train", {}).get("reverse"):
            raise BadModel(f"{directory}: not a reverse model (train it with --reverse)")
        weights = reverse.weights if reverse.weights is not None else layer_weights(reverse.model)
        stepper = NumpyStepper(weights, reverse.model_config)
        choose_precision(stepper, directory, int8, step=False)   # scored from top() rows, in blocks
        return cls(stepper, tokenizer)

    def mean_log_probs(self, texts: list[str], prefix: list[int]) -> np.ndarray:
        """(len(texts),) mean natural-log probability per predicted token of each reversed text and
        the boundary after it, all rows stepped as one batch."""
        sequences = [self.tokenizer.encode(text[::-1]) + [BOUNDARY] for text in texts]
        length = max(len(s) for s in sequences)
        targets = np.full((len(texts), length), BOUNDARY, np.int64)
        live = np.zeros((len(texts), length), bool)
        for row, sequence in enumerate(sequences):
            targets[row, :len(sequence)] = sequence
            live[row, :len(sequence)] = True
        stepper = self.stepper
        state, previous = stepper.after_prefix(tuple(prefix), len(texts))
        tops = []   # the output layer's input at every step: one product for many steps below
        for t in range(length):
            state = stepper.advance(previous, state)
            tops.append(stepper.top(state))
            previous = targets[:, t]
        tops = np.concatenate(tops)                       # (length × rows, units + 1), step-major
        flat_targets = targets.T.reshape(-1)
        picked = np.empty(len(tops), np.float64)
        for start in range(0, len(tops), OUTPUT_ROWS):   # the output layer's weights read once per block
            logits = stepper.logits_of_tops(tops[start:start + OUTPUT_ROWS])   # a fresh array: edited in place
            picked[start:start + len(logits)] = log_softmax_at(logits, flat_targets[start:start + len(logits)])
        total = np.where(live.T.reshape(-1), picked, 0.0).reshape(length, len(texts)).sum(axis=0)
        return total / live.sum(axis=1)


def log_softmax_at(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log-softmax(logits)[row, ids[row]] per row; `logits` (a fresh array) is overwritten. Each row
    sum is its own product (model.row_sums), so a row's value does not depend on its batch."""
    chosen = logits[np.arange(len(logits)), ids]
    top = logits.max(axis=1)
    np.subtract(logits, top[:, None], out=logits)
    np.exp(logits, out=logits)
    return chosen - top - np.log(row_sums(logits))
