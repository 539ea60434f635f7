"""From a request to finished, checked poems: the Generator wires the stages and owns the model.

Requests are validated in request.py, rules built in rules.py from tables.py, candidates ranked in
ranking.py; the Generator steps them in batches on a thread pool. It serves no HTTP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from poetgen import ranking, request as requests
from poetgen.blas import find_blas, one_blas_thread, with_one_blas_thread
from poetgen.bundle import TOKENIZER_FILE, Bundle, load_bundle, model_config_of, read_config
from poetgen.checks import check_poem
from poetgen.ci_checks import check_ci
from poetgen.control import Prefixer, tune_label
from poetgen.corpus import everyday, is_han, normalize_text, to_simplified, to_traditional
from poetgen.errors import BadInput, BadModel
from poetgen.heap import release_freed
from poetgen.layout import MARKS, STOP_MARKS
from poetgen.stepper import NumpyStepper
from poetgen.polish import Polisher
from poetgen.quantize import THREADED_ROWS, choose_precision, cores
from poetgen.request import PoemRequest, PreparedRequest
from poetgen.rerank import OUTPUT_ROWS
from poetgen.rules import build_rules
from poetgen.sampling import Resume, Sampled, SampleOptions, row_streams, sample
from poetgen.tables import VocabularyTables
from poetgen.tokenizer import BOUNDARY, SPECIALS, Tokenizer
from poetgen.tunes import tune_table
from poetgen.weights import layer_weights

__all__ = ["Generator", "PoemRequest", "PreparedRequest", "traditional", "sample_from_model"]

CI_CONTROL = "<ci>"        # the control token of a model conditioned on genre (poetgen.control)
SHARE_ROWS = 16           # a batch is split across CPU cores only when each core gets this many rows



def cut_to_clause(text: str, kept: int) -> str:
    """A free verse poem that reached max_chars before its end, cut back to its last whole sentence (a
    stop mark) or else its last whole clause, not into its first `kept` characters (the prompt);
    unchanged when no clause ends after them."""
    for marks in (STOP_MARKS, MARKS):
        end = max(text.rfind(mark) for mark in marks)
        if end >= kept:
            return text[:end + 1]
    return text

class Generator:
    """A loaded model, its vocabulary tables and the threads that step it."""

    def __init__(self, bundle: Bundle, int8: bool | None = None):
        self.tokenizer = bundle.tokenizer
        self.tables = VocabularyTables(bundle.tokenizer)
        weights = bundle.weights if bundle.weights is not None else layer_weights(bundle.model)
        self.stepper = NumpyStepper(weights, bundle.model_config)
        self.bundle = dataclasses.replace(bundle, weights=None)   # the stepper holds what it needs of them
        self.requested_int8 = int8   # True, False, or None: int8 when the bundle carries its products
        self.int8 = choose_precision(self.stepper, bundle.path if bundle.model is None else None, int8)
        self.prefixer = Prefixer(bundle.tokenizer)   # no prefix for a model without control tokens
        self.reads_titles = bool(bundle.train_options.get("titles"))   # trained with --titles
        self._workers = None   # (pool, threads, pid) for batches split across cores, started on first use
        import_first_use(blas=self.int8 or cores() > 1)   # where one_blas_thread can run: int8, split batches
        release_freed()   # what loading freed (the weights file, raw arrays) back to the system

    def knows_ci(self) -> bool:
        """True when the model was trained with ci under a control prefix (its tokenizer holds <ci>)."""
        return CI_CONTROL in (getattr(self.tokenizer, "controls", None) or ())

    @classmethod
    def load(cls, path=None, int8: bool | None = None) -> "Generator":
        bundle = load_bundle(path, keras=False)   # no TensorFlow on this path
        if bundle.reverse:
            raise BadModel(f"{bundle.path}: a reverse model (trained with --reverse) reads poems backwards and "
                           f"cannot write them; generate with the forward bundle whose reverse/ folder holds it")
        return cls(bundle, int8)

    def fold_tables(self) -> None:
        """Fold both models' first-layer tables whole now (NumpyStepper.fold_all): for a server, whose
        memory should not grow with each character it meets for the first time."""
        self.stepper.fold_all()
        if self.reverse_scorer is not None:
            self.reverse_scorer.stepper.fold_all()

    def warm_up(self, max_rows: int) -> None:
        """Step both models at the largest batches that batches of up to `max_rows` rows meet, in every
        thread that steps them: this one, and each core's share thread for the large ones. An int8
        thread makes its interpreters on first use (poetgen.quantize: one for a few rows, one for more)
        and grows their buffers with the largest batch each has run, so without this a server's memory
        grows for minutes as it meets new sizes (and the request that meets one waits). In float32
        there is nothing per thread to make, and it does nothing."""
        reverse = self.reverse_scorer
        if not (self.int8 or (reverse is not None and reverse.stepper.int8)):
            return
        prepared = self.prepare(PoemRequest())
        split_from = cores() * SHARE_ROWS if cores() > 1 else max_rows + 1   # sample_rows splits from here
        single = min(max_rows, split_from - 1)   # the most rows this thread steps alone
        for rows in sorted({1, min(single, THREADED_ROWS), single}):   # each interpreter at its largest
            self._warm(prepared, rows)
        if max_rows >= split_from:
            largest = max(-(-rows // min(cores(), rows // SHARE_ROWS)) for rows in range(split_from, max_rows + 1))
            pool, threads = self._share_pool()
            in_every_thread(pool, threads, lambda: self._warm(prepared, largest))

    def _warm(self, prepared: PreparedRequest, rows: int) -> None:
        """One batch of `rows` in this thread, read backwards too where ranking does, and the reverse
        model's output layer at the largest block it scores at once (rerank.OUTPUT_ROWS)."""
        with self._one_blas_thread():
            poems = self._sample_share(prepared, row_streams(0, 0, rows))
            if self.ranks_backwards(prepared):
                scorer = self.reverse_scorer
                scorer.mean_log_probs([poem["text"] for poem in poems], self.controls(prepared))
                if scorer.stepper.fused is None:
                    scorer.stepper.logits_of_tops(np.zeros((OUTPUT_ROWS, scorer.stepper.output_inputs), np.float32))

    @functools.cached_property
    def reverse_scorer(self):
        """The bundle's reverse model for best-of ranking, loaded on first use; None without one."""
        from poetgen.rerank import ReverseScorer

        return ReverseScorer.load(self.bundle.path, self.tokenizer, self.requested_int8)

    def prefix(self, prepared: PreparedRequest) -> list[int]:
        """The ids the model reads before the poem: a conditioned model's controls, then the title when
        it was trained with titles (none for other models)."""
        request = prepared.request
        if prepared.variant is not None:   # a ci by tune: the ci prefix, with the tune's token if the model has one
            return self.prefixer.for_request("ci", "ci", self._tune_label(prepared.variant.tune))
        return self.prefixer.for_request(request.resolved_style(), prepared.form, "", prepared.title)

    def controls(self, prepared: PreparedRequest) -> list[int]:
        """The control ids alone: what the reverse model reads before a poem (it never reads titles)."""
        return self.prefix(dataclasses.replace(prepared, title="")) if prepared.title else self.prefix(prepared)

    def _tune_label(self, tune: str) -> str:
        """The name of the tune (or one of its other names, or a traditional spelling: Tune.labels) that the
        model has a control token for; the tune's own name when it has none (the generic tune token)."""
        return tune_label(self.tokenizer, tune_table().get(tune).labels)

    def prepare(self, request: PoemRequest) -> PreparedRequest:
        """Validate and normalise a request; raise BadInput with a sentence for what cannot be used."""
        if request.title.strip() and not self.reads_titles:
            raise BadInput("this model was not trained with titles (poetgen train --conditioned --titles); "
                           "leave out the title", field="title")
        return requests.prepare(request, self.tables)

    def sample_rows(self, prepared: PreparedRequest, streams: list[tuple[int, int]]) -> list[dict]:
        """One candidate poem per (seed, index) stream, stepped as one batch under `prepared`'s rules.

        Any request with the same batch_key() may contribute streams: its poems come out the same.
        A large batch is cut into one share per core, each stepped by its own thread with a
        single-threaded BLAS: NumPy's vocabulary-wide passes run on one core otherwise, and idle BLAS
        threads spin on the other. Rows draw from their own streams, so the poems do not change.
        """
        shares = min(cores(), len(streams) // SHARE_ROWS)
        if shares < 2:
            with self._one_blas_thread():
                return self._sample_share(prepared, streams)
        done = self._in_shares(streams, shares, lambda part: self._sample_share(prepared, part))
        return [poem for part in done for poem in part]

    def _one_blas_thread(self):
        """In int8 the products run in LiteRT and NumPy's BLAS only sums rows: one thread, for its idle
        ones spin on the other core (a 浣溪沙 at batch 1: 24.4 -> 18.5 ms). Float32 keeps BLAS's own."""
        return one_blas_thread() if self.int8 else contextlib.nullcontext()

    def _in_shares(self, rows: list, shares: int, work) -> list:
        """work(part) for `shares` consecutive parts of `rows`, one thread each, with a single-threaded BLAS
        (set in each share's thread too: an OpenBLAS on OpenMP counts threads per thread)."""
        edges = np.linspace(0, len(rows), shares + 1).round().astype(int)   # sizes differ by one at most
        parts = [rows[start:stop] for start, stop in zip(edges[:-1], edges[1:])]
        with one_blas_thread():
            return list(self._share_pool()[0].map(with_one_blas_thread(work), parts))

    def _share_pool(self) -> tuple[ThreadPoolExecutor, int]:
        """The threads that step a large batch's shares, started on first use in this process, and how many
        they are. A forked child (multiprocessing, a server's preloaded workers) starts its own: its
        parent's threads are not in it, and a batch handed to their pool waited for ever."""
        if self._workers is None or self._workers[2] != os.getpid():
            threads = cores()
            self._workers = ThreadPoolExecutor(threads, thread_name_prefix="poetgen-share"), threads, os.getpid()
        return self._workers[:2]

    def _sample_share(self, prepared: PreparedRequest, streams: list[tuple[int, int]]) -> list[dict]:
        active, patterns = build_rules(prepared, self.tables, streams)
        result = sample(self.stepper, active, prepared.shape, len(streams), prepared.options, streams=streams,
                        prefix=self.prefix(prepared))
        return [self._candidate(result, row, prepared, patterns) for row in range(len(streams))]

    def sample_texts(self, prepared: PreparedRequest, streams: list[tuple[int, int]], stop: int,
                     resume: Resume | None = None) -> list[str]:
        """The first `stop` characters of the poem each stream would give in sample_rows(), unchecked
        (poetgen.polish reads one line of them), the model picked up at `resume` when given."""
        active, _ = build_rules(prepared, self.tables, streams)
        with self._one_blas_thread():
            result = sample(self.stepper, active, prepared.shape, len(streams), prepared.options, streams=streams,
                            prefix=self.prefix(prepared), stop=stop, resume=resume)
        return [self.tokenizer.decode(i for i in row if i >= len(SPECIALS)) for row in result.ids]

    def _candidate(self, result: Sampled, row: int, prepared: PreparedRequest, patterns) -> dict:
        text = self.tokenizer.decode(i for i in result.ids[row] if i >= len(SPECIALS))
        if prepared.layout is None and BOUNDARY not in result.ids[row]:
            text = cut_to_clause(text, len(prepared.prompt_ids))
        logprob = float(result.log_probs[row]) / max(int(result.sampled[row]), 1)
        if prepared.variant is not None:
            check = check_ci(text, prepared.variant, self.tables.checking, self.tables.checking_ci_rhyme,
                             prepared.acrostic)
            return ranking.ci_record(text, logprob, check)
        check = check_poem(text, prepared.form, self.tables.checking, prepared.acrostic)
        return ranking.poem_record(text, prepared.form, logprob, check, patterns[row] if patterns else None)

    def ranks_backwards(self, prepared: PreparedRequest) -> bool:
        """True when `prepared`'s candidates are ranked with the reverse model too."""
        request = prepared.request
        return request.best_of > 1 and request.reverse_weight > 0 and self.reverse_scorer is not None

    def backward_scores(self, prepared: PreparedRequest, texts: list[str]):
        """The reverse model's mean log-probability of each text, after `prepared`'s control prefix; texts
        of several requests with the same batch_key() may be scored at once (a row's score is its own).
        Many texts are split across the cores as sample_rows() splits rows: the vocabulary-wide
        normalisers, not the weights, are most of the cost of a large batch."""
        scorer, prefix = self.reverse_scorer, self.controls(prepared)
        shares = min(cores(), len(texts) // SHARE_ROWS)
        if shares < 2:
            with self._one_blas_thread():
                return scorer.mean_log_probs(texts, prefix)
        return np.concatenate(self._in_shares(texts, shares, lambda part: scorer.mean_log_probs(part, prefix)))

    def finish(self, prepared: PreparedRequest, candidates: list[dict], elapsed: float, backward=None) -> dict:
        """The result for `prepared` from its n × best_of candidates, in stream order; `backward`: their
        backward_scores() when already computed (poetgen.batching scores a whole batch at once)."""
        n, request = prepared.request.n, prepared.request
        if self.ranks_backwards(prepared):
            if backward is None:
                backward = self.backward_scores(prepared, [c["text"] for c in candidates])
            ranking.add_reverse_scores(candidates, backward, request.reverse_weight)
        return {"poems": ranking.keep_best(candidates, n, prepared.request.best_of),
                "keywords": list(prepared.keywords), "seed": prepared.seed, "form": prepared.form,
                **({"title": prepared.title} if prepared.title else {}),
                **({"tune": prepared.variant.tune, "variant": prepared.variant.number} if prepared.variant else {}),
                "ms_per_poem": round(1000 * elapsed / n, 3)}

    def generate(self, request: PoemRequest) -> dict:
        prepared = self.prepare(request)
        started = time.perf_counter()   # after prepare: a theme's first use starts jieba (~2 s, once a process)
        total = request.n * request.best_of
        candidates = []
        for first in range(0, total, request.batch_size):
            streams = row_streams(prepared.seed, first, min(request.batch_size, total - first))
            candidates += self.sample_rows(prepared, streams)
        return self.polish(prepared, self.finish(prepared, candidates, time.perf_counter() - started))

    def polish(self, prepared: PreparedRequest, result: dict, stop: threading.Event | None = None) -> dict:
        """`result`'s poems polished line by line, `prepared.request.polish` rounds (poetgen.polish), its
        ms_per_poem grown by the time that took; `result` itself when the request asks for none. Once
        `stop` is set it raises poetgen.polish.Stopped at the next line (the server's client left)."""
        if not prepared.request.polish:
            return result
        started = time.perf_counter()
        result = Polisher(self).polish(prepared, result, stop)
        spent = 1000 * (time.perf_counter() - started) / prepared.request.n
        return {**result, "ms_per_poem": round(result["ms_per_poem"] + spent, 3)}


def import_first_use(blas: bool) -> None:
    """Make now, as a model loads, the imports a first request made in whichever thread ran it (a server's,
    a share thread): a process forked while another thread was inside one kept that module half made and
    its lock held by a thread the child lacks, so the child's own first request waited for ever. They cost
    a few tens of milliseconds once a process, which that first request no longer pays. `blas`:
    one_blas_thread's threadpoolctl too. jieba, a theme's, is left to the first theme (~1 s), whose
    import and start a fork waits for (request._keyword_extractor)."""
    if blas:
        find_blas()
    to_simplified("")   # OpenCC's t2s: every prompt and the vocabulary's foreign forms (tables.foreign_ids)
    everyday("")   # Python's GB 2312 codec (tables.foreign_ids)
    np.random, np.ma   # NumPy imports them on first use: a drawn seed (sampling.new_seed), np.unique


_EVERY_THREAD = threading.Lock()   # one in_every_thread() at a time: two would interleave their tasks


def in_every_thread(pool: ThreadPoolExecutor, threads: int, work) -> None:
    """work() once in each of the `threads` threads of `pool` (all it has): each call waits for the
    others to start, so no thread can take two."""
    barrier = threading.Barrier(threads)

    def each(_):
        barrier.wait(timeout=60)
        work()

    with _EVERY_THREAD:
        try:
            list(pool.map(each, range(threads)))
        except BaseException:
            barrier.abort()   # no task still waits for a partner
            raise


def traditional(result: dict, request: PoemRequest | None = None) -> dict:
    """The same result with poems in traditional characters. Converting back from simplified is lossy
    (发 is 發 or 髮), so where `request` is given the characters its user wrote (prompt, acrostic, title)
    are kept as written."""
    poems = []
    for poem in result["poems"]:
        text = to_traditional(poem["text"])
        if request is not None:
            text = _own_characters(text, poem["text"], request)
        ends = np.cumsum([len(line) for line in poem["lines"]]).tolist()   # the lines are the text, cut
        poems.append({**poem, "text": text, "lines": [text[a:b] for a, b in zip([0] + ends[:-1], ends)]})
    title = {}
    if result.get("title"):
        own = normalize_text(request.title, simplify=False) if request is not None else ""
        title = {"title": own if to_simplified(own) == result["title"] else to_traditional(result["title"])}
    theme = normalize_text(request.theme, simplify=False) if request is not None else ""
    keywords = [_as_written(word, theme) for word in result.get("keywords", ())]
    return {**result, "poems": poems, **title, **({"keywords": keywords} if "keywords" in result else {})}


def _as_written(word: str, text: str) -> str:
    """A simplified `word` found in `text`: as `text` spells it there (頭髮 in 頭髮斑白), else converted."""
    spelled = (text[i:i + len(word)] for i in range(len(text) - len(word) + 1))
    return next((part for part in spelled if to_simplified(part) == word), to_traditional(word))


def _own_characters(converted: str, simplified: str, request: PoemRequest) -> str:
    """`converted` (to_traditional of `simplified`) with the prompt's characters as the user wrote them
    at the poem's start, and the acrostic's at its line heads, wherever they simplify to the poem's; a
    character typed in its simplified form is converted as the rest of the poem is (白日依山尽 prints
    白日依山盡 beside the poem's 過, not a mix of scripts)."""
    chars = list(converted)
    han = [i for i, ch in enumerate(simplified) if is_han(ch)]   # positions of the poem's characters
    written = [ch for ch in normalize_text(request.prompt, simplify=False) if is_han(ch)]
    places = list(zip(han, written))
    heads = [i for i in han if i == 0 or not is_han(simplified[i - 1])]   # each line's first character
    places += list(zip(heads, [ch for ch in normalize_text(request.acrostic, simplify=False) if is_han(ch)]))
    for i, ch in places:
        if ch != simplified[i] and to_simplified(ch) == simplified[i]:
            chars[i] = ch
    return "".join(chars)


def sample_from_model(model, bundle_dir, seed: int = 0) -> str | None:
    """One wujue from a model being trained (the per-epoch sample), with the run's tokenizer; None for
    a reverse model (train --reverse), which reads poems backwards and writes none."""
    directory = Path(bundle_dir)
    config = read_config(directory)
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE, expected_hash=config.get("tokenizer_hash"))
    bundle = Bundle(directory, model, tokenizer, config, model_config_of(config, directory))
    if bundle.reverse:
        return None
    generator = Generator(bundle)
    return generator.generate(PoemRequest(sample=SampleOptions(seed=seed)))["poems"][0]["text"]
