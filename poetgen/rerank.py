"""Whole-poem readings: the reverse model's judgement for best-of ranking, and `Reading` for polishing.

A model trained on reversed poems (`poetgen train --reverse`) reads a candidate from its last
character to its first; a poem that only made sense one step at a time reads badly backwards. It
lives in the forward bundle's `reverse/` folder and must share its tokenizer. It does not sample.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from poetgen.errors import BadModel
from poetgen.heap import release_freed
from poetgen.stepper import NumpyStepper, row_sums
from poetgen.quantize import choose_precision
from poetgen.weights import layer_weights
from poetgen.tokenizer import BOUNDARY

REVERSE_DIR = "reverse"   # inside a bundle
logger = logging.getLogger(__name__)


def reverse_dir(bundle_dir: Path) -> Path | None:
    """The bundle's reverse model directory, or None when it has none or it is not a model yet: a run
    training it (`train --reverse --out BUNDLE/reverse`) or killed in its first epoch has written no
    config.json and model.keras there, and the forward model stays usable (a one-line warning)."""
    from poetgen.bundle import CONFIG_FILE, MODEL_FILE

    directory = Path(bundle_dir) / REVERSE_DIR
    if not directory.is_dir():
        return None
    if not ((directory / CONFIG_FILE).is_file() and (directory / MODEL_FILE).is_file()):
        logger.warning(f"{directory} holds no finished model yet (is it being trained?); the forward model "
                       f"is used alone")
        return None
    return directory
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

        directory = reverse_dir(bundle_dir)
        if directory is None:
            return None
        reverse = load_bundle(directory, keras=False)   # weights only: no TensorFlow
        if reverse.tokenizer.hash != tokenizer.hash:
            raise BadModel(f"{directory}: the reverse model's tokenizer {reverse.tokenizer.hash} is not the "
                           f"model's ({tokenizer.hash}); train it on the same corpus and options")
        if not reverse.reverse:
            raise BadModel(f"{directory}: not a reverse model (train it with --reverse)")
        weights = reverse.weights if reverse.weights is not None else layer_weights(reverse.model)
        stepper = NumpyStepper(weights, reverse.model_config)
        choose_precision(stepper, directory, int8, step=False)   # scored from top() rows, in blocks
        del reverse, weights
        release_freed()   # what loading freed back to the system (poetgen.heap)
        return cls(stepper, tokenizer)

    def mean_log_probs(self, texts: list[str], prefix: list[int]) -> np.ndarray:
        """(len(texts),) mean natural-log probability per predicted token of each reversed text and
        the boundary after it, all rows stepped as one batch."""
        sequences = [self._ids(text) for text in texts]
        length = max(len(s) for s in sequences)
        targets = np.full((len(texts), length), BOUNDARY, np.int64)
        live = np.zeros((len(texts), length), bool)
        for row, sequence in enumerate(sequences):
            targets[row, :len(sequence)] = sequence
            live[row, :len(sequence)] = True
        state, previous = self.stepper.after_prefix(tuple(prefix), len(texts))
        picked = _step_log_probs(self.stepper, state, previous, targets)
        return np.where(live, picked, 0.0).sum(axis=1) / live.sum(axis=1)

    def reading(self, text: str, prefix: list[int]) -> "Reading":
        """The reverse model's reading of one text (see Reading)."""
        return Reading.read(self.stepper, self._ids(text), prefix)

    def continued(self, reading: "Reading", texts: list[str], at: int) -> list["Reading"]:
        """The reading of each text backwards, equal to `reading`'s text in its first `at` reversed
        positions (its last characters), as Reading.continued."""
        return reading.continued(self.stepper, np.array([self._ids(text) for text in texts], np.int64), at)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text[::-1]) + [BOUNDARY]


@dataclasses.dataclass
class Reading:
    """A model's reading of one id sequence (a poem's ids and the boundary) after a control prefix: per
    position, the state before its step, the id that step reads, and the position's log-probability.
    Sequences equal to it in their first `at` positions are read from `at` on (continued):
    poetgen.polish changes one line at a time."""
    states: list                # state arrays (1, units) before each step
    previous: list[int]         # the id each step reads
    log_probs: np.ndarray       # (positions,)

    @classmethod
    def read(cls, stepper: NumpyStepper, ids: list[int], prefix: list[int]) -> "Reading":
        state, previous = stepper.after_prefix(tuple(prefix), 1)
        return cls._rows(stepper, cls([], [], np.zeros(0)), state, previous, np.array([ids], np.int64))[0]

    def mean(self) -> float:
        return float(self.log_probs.mean())

    def continued(self, stepper: NumpyStepper, ids: np.ndarray, at: int) -> list["Reading"]:
        """The reading of each row of `ids` (as long as this reading's sequence and equal to it in its
        first `at` positions): this reading's first `at` positions, then the rows' own, stepped from `at`
        on as one batch. Polishing scores its splices so and keeps the best one's reading as it is."""
        state = [np.repeat(array, len(ids), axis=0) for array in self.states[at]]
        previous = np.full(len(ids), self.previous[at], np.int64)
        head = Reading(self.states[:at], self.previous[:at], self.log_probs[:at])
        return self._rows(stepper, head, state, previous, ids[:, at:])

    @classmethod
    def _rows(cls, stepper: NumpyStepper, head: "Reading", state, previous: np.ndarray,
              targets: np.ndarray) -> list["Reading"]:
        """`head` followed by each row of `targets`, the rows stepped from `state` as one batch."""
        states, previous_ids = [], []
        picked = _step_log_probs(stepper, state, previous, targets, states, previous_ids)
        return [cls(head.states + [[array[row:row + 1] for array in step] for step in states],
                    head.previous + [int(step[row]) for step in previous_ids],
                    np.concatenate([head.log_probs, picked[row]])) for row in range(len(targets))]


def _step_log_probs(stepper: NumpyStepper, state, previous: np.ndarray, targets: np.ndarray,
                    states: list | None = None, previous_ids: list | None = None) -> np.ndarray:
    """(rows, steps) log-probability of targets[:, t] after the rows read targets[:, :t] from `state`
    (having `previous` to read first). A one-graph step gives its logits with each step, and they are
    read there; otherwise the output layer runs on many steps' rows at once. With `states` and
    `previous_ids`, the state before each step and the ids it reads (all rows) are appended."""
    rows, steps = targets.shape
    tops, picked = [], np.empty((steps, rows), np.float64)   # tops: the output layer's inputs, for below
    for t in range(steps):
        if states is not None:
            states.append(state)
            previous_ids.append(previous)
        state = stepper.advance(previous, state)
        if stepper.fused is not None:
            picked[t] = log_softmax_at(stepper.logits(state), targets[:, t])
        else:
            tops.append(stepper.top(state))
        previous = targets[:, t]
    if tops:
        tops = np.concatenate(tops)                       # (steps × rows, units + 1), step-major
        flat, flat_targets = picked.reshape(-1), targets.T.reshape(-1)
        for start in range(0, len(tops), OUTPUT_ROWS):   # the output layer's weights read once per block
            logits = stepper.logits_of_tops(tops[start:start + OUTPUT_ROWS])   # a fresh array: edited in place
            flat[start:start + len(logits)] = log_softmax_at(logits, flat_targets[start:start + len(logits)])
    return picked.T


def log_softmax_at(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log-softmax(logits)[row, ids[row]] per row; `logits` (a fresh array) is overwritten. Each row
    sum is its own product (stepper.row_sums), so a row's value does not depend on its batch."""
    chosen = logits[np.arange(len(logits)), ids]
    top = logits.max(axis=1)
    np.subtract(logits, top[:, None], out=logits)
    np.exp(logits, out=logits)
    return chosen - top - np.log(row_sums(logits))
