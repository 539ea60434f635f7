"""Polishing (`--polish N`): rewrite finished poems line by line, keeping a new line only when the whole
poem then reads better to both models (after Yan, IJCAI 2016, "i, Poet", iterative polishing).

Sampling goes left to right, so no line is chosen knowing the lines after it. Each round visits every
line the prompt does not fix: VERSIONS fresh versions of it are sampled after the lines before it, under
the request's own rules (form, rhyme, 平仄, acrostic, theme, sampling options), and each is spliced
between the earlier and the later lines. A splice replaces the poem when it keeps what the poem passed
(layout, rhyme group, 平仄 fit, acrostic), repeats no more characters (nor line ends), and scores higher: the forward
model's mean log-probability of the whole poem and the reverse model's, weighted as best-of weights
them (`reverse_weight`). So the score never falls, and the same seed gives the same polished poems.
The Generator is passed in, not imported: it calls this stage.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from poetgen import ranking
from poetgen.checks import check_poem, pattern_fits, rhyme_of
from poetgen.ci_checks import check_ci
from poetgen.layout import clauses
from poetgen.metre import tone_patterns
from poetgen.request import MAX_PROMPT, PreparedRequest
from poetgen.rerank import Reading
from poetgen.sampling import Resume, row_streams
from poetgen.tokenizer import BOUNDARY

VERSIONS = 4   # fresh versions of a line sampled at each visit


class Stopped(Exception):
    """A polish asked to stop (Polisher.polish's `stop`) before its end."""


class Polisher:
    """Polishes the poems of one result with the generator that wrote them."""

    def __init__(self, generator):
        self.generator = generator

    def polish(self, prepared: PreparedRequest, result: dict, stop: threading.Event | None = None) -> dict:
        """`result` (Generator.finish's) with every poem polished `prepared.request.polish` rounds; each
        poem record gains "polished", the number of lines replaced, and its scores are recomputed.
        Raises Stopped before the next line's visit once `stop` is set (a server's client left)."""
        if not prepared.request.polish or prepared.layout is None:
            return result
        self.stop = stop
        return {**result, "poems": [self._poem(prepared, poem, index) for index, poem in enumerate(result["poems"])]}

    def _poem(self, prepared: PreparedRequest, poem: dict, index: int) -> dict:
        generator = self.generator
        weight = prepared.request.reverse_weight if generator.reverse_scorer is not None else 0.0
        prefix, controls = generator.prefix(prepared), generator.controls(prepared)
        text = poem["text"]
        back = generator.reverse_scorer.reading(text, controls) if weight else None
        current = _Candidate(text, Reading.read(generator.stepper, self._ids(text), prefix), back, weight)
        passed, repeats, replaced = self._check(prepared, text, usual=True), _repeats(text), 0
        # versions keep the poem's own 平仄 pattern: drawn afresh, a version of line 1 could take another
        # and leave the poem in none (a 入韵 line 1 must also keep the rhyme: _standing)
        kept = dataclasses.replace(prepared, pattern=poem.get("tone_pattern"))
        standing = self._standing(kept, text)
        for round_ in range(prepared.request.polish):
            for i in self._lines(prepared, current):
                if self.stop is not None and self.stop.is_set():
                    raise Stopped("polishing stopped: nobody waits for it")
                better = self._visit(kept, current, i, (prepared.seed, index, round_, i), (passed, standing), repeats)
                if better is not None:
                    current, replaced = better, replaced + 1
        # scored as a polished poem is, even when no line changed: the forward model's mean over the whole
        # poem (a sampled poem's logprob counts its sampled characters only), so the poems compare
        backward = None if current.back is None else np.array([current.back.mean()])
        record = self._record(prepared, poem, current.text, current.reading.mean(), backward, weight)
        return {**record, "polished": replaced}

    def _visit(self, prepared: PreparedRequest, current: "_Candidate", i: int, stream: tuple, passed: tuple,
               repeats: tuple) -> "_Candidate | None":
        """The best splice of VERSIONS fresh versions of line i into `current`, if it scores higher and
        keeps what the poem passed (its check, and its standing in its own pattern); None otherwise (or
        when the prompt fixes the line). The splices are read as one batch from the line on, and the kept
        one's readings are those rows'."""
        generator, text = self.generator, current.text
        check, standing = passed
        start, end = _spans(text)[i]
        head = text[:max(start, len(prepared.prompt))]   # the prompt's characters are never rewritten
        if end <= len(prepared.prompt) or len(head) > MAX_PROMPT:
            return None
        splices = []
        reading = current.reading
        resume = Resume(len(head), reading.states[len(head)], reading.previous[len(head)])
        for version in self._versions(prepared, head, end, resume, stream):
            splice = text[:start] + version[start:end] + text[end:]
            if (splice != text and splice not in splices and _fewer_or_as_many(_repeats(splice), repeats)
                    and _keeps(self._check(prepared, splice, usual=True), check)
                    and _rhymes_as_generated(splice, check, prepared, generator.tables.prosody)
                    and all(new >= old for new, old in zip(self._standing(prepared, splice), standing))):
                splices.append(splice)
        if not splices:
            return None
        ids = np.array([self._ids(splice) for splice in splices], np.int64)
        forwards = reading.continued(generator.stepper, ids, start)
        backs, unchanged = None, len(text) - end   # read backwards, a splice equals the poem until its line
        if current.back is not None:
            backs = generator.reverse_scorer.continued(current.back, splices, unchanged)
        scores = _joint(_means(forwards), None if backs is None else _means(backs), current.weight)
        top = int(np.argmax(scores))
        if scores[top] <= current.score:
            return None
        return _Candidate(splices[top], forwards[top], None if backs is None else backs[top], current.weight)

    def _lines(self, prepared: PreparedRequest, current: "_Candidate") -> list[int]:
        """The lines a round visits, in the poem's order: every line, or with `polish_lines` k the k
        that both models read worst (their characters' mean log-probability, weighted as the poem's
        score) among those the prompt leaves open."""
        spans, wanted, size = _spans(current.text), prepared.request.polish_lines, len(current.text)
        if not wanted or wanted >= len(spans):
            return list(range(len(spans)))
        open_lines = [i for i, (_, end) in enumerate(spans) if end > len(prepared.prompt)]
        forwards = np.array([current.reading.log_probs[spans[i][0]:spans[i][1]].mean() for i in open_lines])
        backwards = None   # read backwards, character p of the poem is position size - 1 - p
        if current.back is not None:
            backwards = np.array([current.back.log_probs[size - spans[i][1]:size - spans[i][0]].mean()
                                  for i in open_lines])
        weakest = np.argsort(_joint(forwards, backwards, current.weight), kind="stable")[:wanted]
        return sorted(open_lines[k] for k in weakest)

    def _versions(self, prepared: PreparedRequest, head: str, end: int, resume: Resume, stream: tuple) -> list[str]:
        """The first `end` characters of VERSIONS poems that start with `head`, under the request's
        rules, from their own seed, the model picked up after `head` where `resume` holds it."""
        seed = int(np.random.SeedSequence(list(stream)).generate_state(1, np.uint64)[0] >> 1)
        options = dataclasses.replace(prepared.options, seed=seed)
        request = dataclasses.replace(prepared.request, prompt=head, n=VERSIONS, best_of=1, polish=0, polish_lines=0,
                                      sample=options)
        # the head is the poem's own text, not a user's: never normalised (traditional forms such as 沈
        # would change) nor checked again as a prompt
        version = dataclasses.replace(prepared, request=request, prompt=head, options=options,
                                      prompt_ids=tuple(self.generator.tokenizer.encode(head)))
        return self.generator.sample_texts(version, row_streams(seed, 0, VERSIONS), end, resume)

    def _ids(self, text: str) -> list[int]:
        """A poem's ids as the forward model reads them: its characters, then the boundary."""
        return self.generator.tokenizer.encode(text) + [BOUNDARY]

    def _check(self, prepared: PreparedRequest, text: str, usual: bool = False):
        """The poem's check by every attested reading (what its record reports), or with `usual` by the
        readings generation uses: what a splice must keep, so that no rhyme or tone it brings holds only
        through a reading poets barely used (功流日自干 rhymed 干 with 千 in 一先)."""
        tables = self.generator.tables
        if prepared.variant is not None:
            rhyme = tables.ci_rhyme if usual else tables.checking_ci_rhyme
            return check_ci(text, prepared.variant, tables.prosody if usual else tables.checking, rhyme,
                            prepared.acrostic)
        return check_poem(text, prepared.form, tables.prosody if usual else tables.checking, prepared.acrostic)

    def _standing(self, prepared: PreparedRequest, text: str) -> tuple:
        """How a shi poem holds the pattern `prepared` keeps: the share of its strict positions that fit,
        and in a 入韵 pattern whether line 1 ends in the rhyme lines' group; () for a ci or no pattern."""
        layout, pattern = prepared.layout, prepared.pattern
        if pattern is None or prepared.variant is not None or not layout.fits(text):
            return ()
        prosody, lines = self.generator.tables.checking, clauses(text)
        fits = pattern_fits(lines, tone_patterns(layout.uniform_length, layout.line_count)[pattern],
                            layout.uniform_length, prosody)
        first = True
        if pattern.endswith("入韵"):
            group = rhyme_of(lines, prosody, layout)[1]
            first = group is not None and group in prosody.rhyme_groups(lines[0][-2])
        return sum(fits) / len(fits), first

    def _record(self, prepared: PreparedRequest, poem: dict, text: str, forward: float, backward, weight: float) -> dict:
        """The polished poem's record, scored as best-of scores a candidate; its logprob is the forward
        model's mean over the whole poem (as reverse_logprob is the reverse model's)."""
        check = self._check(prepared, text)
        if prepared.variant is not None:
            record = ranking.ci_record(text, forward, check)
        else:
            record = ranking.poem_record(text, prepared.form, forward, check, poem.get("tone_pattern"))
        if backward is not None:
            ranking.add_reverse_scores([record], backward, weight)
        return record


class _Candidate:
    """A poem being polished: its text, its forward and reverse readings, and their joint score."""

    def __init__(self, text: str, reading: Reading, back: Reading | None, weight: float):
        self.text, self.reading, self.back, self.weight = text, reading, back, weight
        backward = None if back is None else np.array([back.mean()])
        self.score = float(_joint(np.array([reading.mean()]), backward, weight)[0])


def _joint(forwards: np.ndarray, backwards: np.ndarray | None, weight: float) -> np.ndarray:
    """The score a splice must raise: forward and reverse mean log-probabilities, weighted as best-of
    weights them (the forward model's alone without a reverse model)."""
    return forwards if backwards is None else (1 - weight) * forwards + weight * backwards


def _spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line of `text` (clauses with their end marks)."""
    ends = np.cumsum([len(line) for line in clauses(text)]).tolist()
    return list(zip([0] + ends[:-1], ends))


def _means(readings: list[Reading]) -> np.ndarray:
    return np.array([reading.mean() for reading in readings])


def _fewer_or_as_many(counts: tuple[int, int], limits: tuple[int, int]) -> bool:
    return all(count <= limit for count, limit in zip(counts, limits))


def _keeps(check, passed) -> bool:
    """True when `check` (a splice's) keeps everything `passed` (the poem's) held."""
    if not check.layout_ok:
        return False
    for name in ("rhyme_ok", "acrostic_ok", "repeat_ok"):   # repeat_ok: a ci's 叠 phrases (shi have none)
        if getattr(passed, name, None) and not getattr(check, name, None):
            return False
    if getattr(check, "rhyme_group", None) != getattr(passed, "rhyme_group", None):
        return False
    if getattr(check, "rhyme_parts", None) != getattr(passed, "rhyme_parts", None):
        return False
    return all((getattr(check, name, None) or 0) >= (getattr(passed, name, None) or 0)
               for name in ("tone_score", "rhyme_score"))


def _rhymes_as_generated(text: str, check, prepared: PreparedRequest, prosody) -> bool:
    """Whether every rhyming line of a shi ends in the poem's group (`check.rhyme_group`) as generation
    reads its last pair (prosody.line_end_groups: 泪作行 is háng, 七阳): a version of the first rhyming
    line is sampled before the group is known, so it may end in a pair of another group that the
    checker, reading every attested group, accepts. True for a ci, for a poem without a group and for one
    in a 仄 group (rhyme_words are level-tone readings: generation asks for no 仄 rhyme)."""
    group, layout = getattr(check, "rhyme_group", None), prepared.layout
    if group not in prosody.level_groups or prepared.variant is not None or layout is None:
        return True
    lines = clauses(text)
    rhyming = list(layout.rhyme_lines) + ([0] if (prepared.pattern or "").endswith("入韵") else [])
    return all(group in prosody.line_end_groups(lines[i][:-1]) for i in rhyming)


def _repeats(text: str) -> tuple[int, int]:
    """Characters of the poem that repeat an earlier one (punctuation aside), and of those that end
    its lines (where it rhymes): a splice may repeat no more of either than the poem did. Versions of
    a line are sampled knowing the lines before it only, so the rhyme rule cannot keep them from
    reusing a later line's rhyme."""
    body = [c for c in text if c.isalpha()]
    ends = [[c for c in line if c.isalpha()][-1] for line in clauses(text)]
    return len(body) - len(set(body)), len(ends) - len(set(ends))
