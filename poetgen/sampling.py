"""The one stepping loop: carry the recurrent state, let the rules edit the logits, sample.

Each poem draws from its own random stream, seeded by a (seed, index) pair, so it does not depend
on its batch nor on other requests batched with it. Probabilities are computed in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from poetgen.layout import Layout
from poetgen.stepper import row_sums
from poetgen.options import check_settings, setting
from poetgen.rule_base import NEG, Rule, Step
from poetgen.tokenizer import BOUNDARY

GREEDY_BELOW = 1e-6      # a temperature below this samples greedily, as 0 does
SEED_LIMIT = 2**63        # a given seed is in [0, SEED_LIMIT): what NumPy and an int64 graph input take
DRAWN_SEED_LIMIT = 2**31  # a drawn seed is below this, so a browser (53-bit numbers) or a shell repeats it


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    temperature: float = setting(0.8, low=0, high=100)           # 0 is greedy (so is below 1e-6); higher is wilder
    top_k: int = setting(0, low=0)                               # sample among the k likeliest (0: off)
    top_p: float = setting(1.0, low=0, high=1, low_open=True)    # nucleus mass kept (1: off)
    seed: int | None = setting(None, low=0, high=SEED_LIMIT, high_open=True)   # same seed, same poems; default: drawn

    def validate(self) -> None:
        check_settings(self)


@dataclasses.dataclass
class Shape:
    layout: Layout | None      # the fixed layout (poetgen.layout); None for free verse
    max_chars: int             # hard cap on a free verse poem's length, punctuation included
    punctuation: frozenset     # ids that end a line

    @property
    def length(self) -> int:
        return self.max_chars if self.layout is None else self.layout.length


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where sampling may pick up: the model's state before the step at position `at`, and the id that
    step reads (`previous`), for one row; the positions before `at` must all be forced (a prompt)."""
    at: int                    # the first position the model steps
    state: list                # its state arrays, (1, units) each
    previous: int              # the id it reads first (the last forced one)


@dataclasses.dataclass
class Sampled:
    ids: np.ndarray            # (batch, length) chosen ids; BOUNDARY pads finished free verse
    log_probs: np.ndarray      # (batch,) sum of the model's log-probabilities of sampled characters
    sampled: np.ndarray        # (batch,) how many characters were sampled (not forced)


def new_seed() -> int:
    """The seed of a request that gave none; answers report it, so the same poems can be asked for again."""
    return int(np.random.SeedSequence().entropy % DRAWN_SEED_LIMIT)


def row_streams(seed: int, first_index: int, batch: int) -> list[tuple[int, int]]:
    """The (seed, index) of each row when one request fills the batch from `first_index` on."""
    return [(seed, first_index + row) for row in range(batch)]


def row_generators(seed: int, first_index: int, batch: int) -> list[np.random.Generator]:
    return [np.random.default_rng(list(stream)) for stream in row_streams(seed, first_index, batch)]


def choose(logits: np.ndarray, options: SampleOptions, rngs: Sequence[np.random.Generator],
           scratch: np.ndarray | None = None) -> np.ndarray:
    """Sample one id per row from (batch, vocab) float32 logits that rules have already edited.

    `scratch`, when given, is a zeroed (batch, vocab rounded up to BLOCK) float32 buffer whose padding
    columns stay zero; reusing it saves an allocation per step. A top-k cut edits `logits` in place.
    """
    if options.temperature < GREEDY_BELOW:   # 1 / T would overflow float32 for the tiniest
        return logits.argmax(axis=1)
    x = logits
    if options.top_k and options.top_k < x.shape[1]:
        kth = np.partition(x, -options.top_k, axis=1)[:, -options.top_k][:, None]
        x[x < kth] = NEG
    probs = scratch if scratch is not None else padded_buffer(*x.shape)
    scale = np.float32(1.0 / options.temperature) if options.temperature != 1 else None
    nucleus = options.top_p < 1.0
    block_sums = None if nucleus or len(x) < FEW_ROWS else np.empty((len(x), probs.shape[1] // BLOCK), np.float32)
    for rows in _chunks(probs):   # each chunk's passes while it is in cache
        view = probs[rows, :x.shape[1]]
        np.subtract(x[rows], x[rows].max(axis=1, keepdims=True), out=view)
        if scale is not None:
            view *= scale
        np.exp(view, out=view)
        if block_sums is not None:
            block_sums[rows] = row_sums(probs[rows].reshape(-1, BLOCK)).reshape(len(view), -1)
    if nucleus:
        return _inverse_cdf(_nucleus(probs[:, :x.shape[1]], options.top_p), rngs)
    return _inverse_cdf(probs, rngs, block_sums)


def _chunks(array: np.ndarray) -> list[slice]:
    """Consecutive row slices of `array` of about CHUNK_BYTES each: a step's passes over a large
    batch's (batch, vocab) arrays run chunk by chunk, so each pass after the first reads from cache."""
    step = max(1, CHUNK_BYTES // max(array[:1].nbytes, 1))
    return [slice(start, start + step) for start in range(0, len(array), step)]


def padded_buffer(rows: int, width: int) -> np.ndarray:
    """Zeros of shape (rows, width rounded up to a multiple of BLOCK)."""
    return np.zeros((rows, -(-width // BLOCK) * BLOCK), np.float32)


BLOCK = 64     # ids per block in the two-level inverse-CDF search
FEW_ROWS = 4   # below this many rows, _draw row by row beats the vectorised search (fewer NumPy calls)
CHUNK_BYTES = 1 << 19   # rows per chunk of a step's passes: about half of a core's 1-2 MB L2 cache


def _nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Zero all but the smallest set of most likely ids whose mass reaches top_p."""
    order = np.argsort(-probs, axis=1)
    sorted_probs = np.take_along_axis(probs, order, axis=1)
    cumulative = np.cumsum(sorted_probs, axis=1)
    sorted_probs[cumulative - sorted_probs > top_p * cumulative[:, -1:]] = 0
    kept = np.zeros_like(probs)
    np.put_along_axis(kept, order, sorted_probs, axis=1)
    return kept


def _inverse_cdf(probs: np.ndarray, rngs: Sequence[np.random.Generator],
                 block_sums: np.ndarray | None = None) -> np.ndarray:
    """One id per row with probability proportional to `probs`, one uniform draw per row.

    A cumulative sum over the whole vocabulary is slow (it cannot be vectorised), so the search is
    two-level: first over block sums (`block_sums`: (rows, blocks) when already summed), then within
    the one block that holds the draw.
    """
    rows, width = probs.shape
    if rows < FEW_ROWS and not width % BLOCK:
        return np.array([_draw(row, rng.random()) for row, rng in zip(probs, rngs)], np.int64)
    if width % BLOCK:
        probs = np.pad(probs, ((0, 0), (0, BLOCK - width % BLOCK)))
    blocks = probs.reshape(rows, -1, BLOCK)
    if block_sums is None:
        block_sums = row_sums(blocks.reshape(-1, BLOCK)).reshape(rows, -1)
    block_cumulative = np.cumsum(block_sums, axis=1)
    draws = np.array([rng.random() for rng in rngs]) * block_cumulative[:, -1]
    block = np.minimum((block_cumulative <= draws[:, None]).sum(axis=1), blocks.shape[1] - 1)
    before = np.where(block > 0, block_cumulative[np.arange(rows), block - 1], 0.0)
    within = np.cumsum(blocks[np.arange(rows), block], axis=1)
    offset = np.minimum((within <= (draws - before)[:, None]).sum(axis=1), BLOCK - 1)
    chosen = block * BLOCK + offset
    zero = probs[np.arange(rows), chosen] == 0        # rounding pushed the draw past the last id
    if zero.any():
        chosen[zero] = probs[zero].argmax(axis=1)
    return chosen


def _draw(row: np.ndarray, uniform: float) -> int:
    """_inverse_cdf's two-level search for one row (width a multiple of BLOCK) and its uniform draw:
    the same id, with a handful of NumPy calls instead of a dozen batched ones."""
    block_cumulative = np.cumsum(row_sums(row.reshape(-1, BLOCK)))
    draw = uniform * float(block_cumulative[-1])   # in float64, as the batched search (a float32 product rounds)
    block = min(int(block_cumulative.searchsorted(draw, side="right")), len(block_cumulative) - 1)
    before = float(block_cumulative[block - 1]) if block else 0.0
    within = np.cumsum(row[block * BLOCK:(block + 1) * BLOCK])
    chosen = block * BLOCK + min(int(within.searchsorted(draw - before, side="right")), BLOCK - 1)
    return chosen if row[chosen] != 0 else int(row.argmax())   # rounding pushed the draw past the last id


def _apply_rules(logits: np.ndarray, rules: Sequence[Rule], step: Step, stepper, state) -> None:
    """Apply every rule; a row that ends with nothing allowed is redone with the essential rules only."""
    for rule in rules:
        rule.apply(logits, step)
    dead = ~np.isfinite(logits.max(axis=1))
    if dead.any():
        redo = stepper.logits(state)[dead]   # the whole batch, so the stepper's latest product stays this step's
        sub = dataclasses.replace(step, line=step.line[dead], column=step.column[dead], history=step.history[dead])
        for rule in rules:
            if rule.essential:
                rule.apply(redo, sub)
        logits[dead] = redo


def _log_normalizer(logits: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """log(sum(exp(logits))) per row, stably in float32; `logits` is kept, `scratch` overwritten."""
    sums, tops = np.empty(len(logits), np.float32), np.empty(len(logits), np.float32)
    for rows in _chunks(scratch):   # each chunk's passes while it is in cache
        tops[rows] = logits[rows].max(axis=1)
        view = scratch[rows, :logits.shape[1]]
        np.subtract(logits[rows], tops[rows, None], out=view)
        np.exp(view, out=view)
        sums[rows] = row_sums(scratch[rows])   # the padding columns are zero
    return np.log(sums) + tops


def sample(stepper, rules: Sequence[Rule], shape: Shape, batch: int, options: SampleOptions,
           first_index: int = 0, streams: Sequence[tuple[int, int]] | None = None,
           prefix: Sequence[int] = (), stop: int | None = None, resume: Resume | None = None) -> Sampled:
    """Generate `batch` poems: start from the boundary state, then one model step per character.

    `streams` gives each row its own (seed, index), so poems of several requests share one batch;
    without it the rows are (options.seed, first_index + row). `prefix` (a conditioned model's
    control ids) is read after the boundary before the first character; it is not part of the poem.
    `stop` ends every row after that many positions (poetgen.polish needs one line, not the rest).
    `resume` starts every row from a state the caller already has at a position inside the forced
    prompt: the rules still see the positions before it, the model is not stepped through them again.
    """
    if streams is not None:
        if len(streams) != batch:
            raise ValueError(f"{len(streams)} random streams for a batch of {batch}")
        rngs = [np.random.default_rng([seed, index]) for seed, index in streams]
    else:
        seed = options.seed if options.seed is not None else new_seed()
        rngs = row_generators(seed, first_index, batch)
    length = shape.length if stop is None else min(stop, shape.length)
    history = np.full((batch, length), BOUNDARY, np.int64)
    line = np.zeros(batch, np.int64)
    column = np.zeros(batch, np.int64)
    done = np.zeros(batch, bool)
    log_probs = np.zeros(batch, np.float64)
    sampled = np.zeros(batch, np.int64)
    if resume is None:
        state, previous, first = *stepper.after_prefix(tuple(prefix), batch), 0
    else:
        state = [np.repeat(array, batch, axis=0) for array in resume.state]
        previous, first = np.full(batch, resume.previous, np.int64), resume.at
    punctuation = np.array(sorted(shape.punctuation), np.int64)
    logits = scratch = None
    for pos in range(length):
        if shape.layout is not None:
            line[:], column[:] = shape.layout.line_column(pos)
        step = Step(pos, line, column, shape.layout, history[:, :pos])
        forced = next((ids for ids in (rule.forced(step) for rule in rules) if ids is not None), None)
        if pos < first:   # before the resumed position: the rules see the forced ids, the model is not stepped
            if forced is None:
                raise ValueError(f"cannot resume at position {first}: position {pos} is not forced")
            chosen = forced
        elif forced is not None:
            state = stepper.advance(previous, state)
            chosen = forced
        else:
            state = stepper.advance(previous, state)
            logits = stepper.logits(state, out=logits)
            if scratch is None:
                scratch = padded_buffer(*logits.shape)
            normalizer = _log_normalizer(logits, scratch)
            _apply_rules(logits, rules, step, stepper, state)
            chosen = choose(logits, options, rngs, scratch)
            if shape.layout is not None:   # a fixed layout: no row ends early
                log_probs += stepper.logit_at(state, chosen) - normalizer
                sampled += 1
            else:
                live = ~done
                log_probs[live] += (stepper.logit_at(state, chosen) - normalizer)[live]
                sampled[live] += 1
        if shape.layout is None:
            chosen = np.where(done, BOUNDARY, chosen)
        for rule in rules:
            rule.observe(chosen, step)
        history[:, pos] = chosen
        previous = chosen
        if shape.layout is None:
            ends_line = np.isin(chosen, punctuation)
            line += ends_line
            column = np.where(ends_line, 0, column + 1)
            done |= chosen == BOUNDARY
            if done.all():
                history = history[:, :pos + 1]
                break
    return Sampled(history, log_probs, sampled)
