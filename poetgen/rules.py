"""Logit rules: each constraint on a poem is one small class the sampling loop calls at every step.

A rule may force the next character (layout punctuation, acrostic heads, the prompt), forbid some
(no repeats, off-rhyme endings) or nudge them (theme, tone). Rules never run the model;
build_rules() turns a prepared request into its rule list.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from poetgen.ci_rules import ci_rules
from poetgen.layout import Layout as LayoutSpec
from poetgen.layout import banned_inside
from poetgen.prosody import PING, guard_columns, prompt_columns, rescue, strict_columns, tone_patterns
from poetgen.tables import FitMasks
from poetgen.tokenizer import BOUNDARY, PAD, SPECIALS, UNK
from poetgen.word_rules import WordTone, ci_asked

if TYPE_CHECKING:
    from poetgen.request import PreparedRequest
    from poetgen.tables import VocabularyTables

NEG = np.float32(-np.inf)


@dataclasses.dataclass
class Step:
    pos: int                  # index of the character being chosen (0 = first character of the poem)
    line: np.ndarray          # (batch,) line index of that character
    column: np.ndarray        # (batch,) its column within the line; -1 at a punctuation slot
    layout: LayoutSpec | None   # the fixed layout (poetgen.layout), None for free verse
    history: np.ndarray       # (batch, pos) ids chosen so far


class Rule:
    essential = False   # essential rules are kept when the others together forbid every character

    def forced(self, step: Step) -> np.ndarray | None:
        """Ids every row must take at this step, or None."""
        return None

    def apply(self, logits: np.ndarray, step: Step) -> None:
        """Edit (batch, vocab) logits in place for a step where the model chooses."""

    def observe(self, chosen: np.ndarray, step: Step) -> None:
        """See the ids chosen at this step (forced or sampled)."""


class Prompt(Rule):
    """A fixed prefix (the prompt), possibly with layout punctuation already in it."""

    essential = True

    def __init__(self, ids: list[int], batch: int):
        self.ids = ids
        self.batch = batch

    def forced(self, step):
        return np.full(self.batch, self.ids[step.pos], np.int64) if step.pos < len(self.ids) else None


class Banned(Rule):
    """Ids never sampled inside a poem (a conditioned model's control tokens, forms a reader takes for
    misspellings)."""

    essential = True

    def __init__(self, ids: list[int]):
        self.ids = np.array(ids, np.int64)

    def apply(self, logits, step):
        logits[:, self.ids] = NEG


class Layout(Rule):
    """A fixed layout: the mark it writes after each line (end_ids[i] after line i), no mark or
    special id inside a line (poetgen.layout says which)."""

    essential = True

    def __init__(self, end_ids, banned_ids, batch: int):
        self.end_ids = np.array(end_ids, np.int64)
        self.banned = np.array(sorted(set(banned_ids) | {PAD, UNK, BOUNDARY}), np.int64)
        self.batch = batch

    def forced(self, step):
        if step.column[0] == -1:
            return np.full(self.batch, self.end_ids[step.line[0]], np.int64)
        return None

    def apply(self, logits, step):
        logits[:, self.banned] = NEG


class FreeVerse(Rule):
    """Free verse: never padding or unknown; the boundary ends the poem."""

    essential = True

    def __init__(self, punctuation_ids: list[int], min_chars: int = 5):
        self.punctuation = np.array(punctuation_ids, np.int64)
        self.min_chars = min_chars

    def apply(self, logits, step):
        logits[:, [PAD, UNK]] = NEG
        if step.pos < self.min_chars:
            logits[:, BOUNDARY] = NEG
        starts_line = step.column == 0
        if starts_line.any():   # no empty lines: punctuation right after punctuation
            logits[np.ix_(starts_line, self.punctuation)] = NEG


class Acrostic(Rule):
    """藏头诗: line i starts with the i-th given character."""

    essential = True

    def __init__(self, head_ids: list[int], batch: int):
        self.heads = head_ids
        self.batch = batch

    def forced(self, step):
        if step.column[0] == 0 and step.line[0] < len(self.heads):
            return np.full(self.batch, self.heads[step.line[0]], np.int64)
        return None


class NoRepeat(Rule):
    """No character twice within a line."""

    def apply(self, logits, step):
        back = min(int(step.column.max()), step.pos)   # how far back the line goes
        if back <= 0:
            return
        if step.layout is not None:   # a fixed layout: every row is at the same column
            logits[np.arange(len(logits))[:, None], step.history[:, step.pos - back:step.pos]] = NEG
            return
        backs = np.arange(1, back + 1)
        rows, back = np.nonzero(step.column[:, None] >= backs)   # (row, how far back) within the row's line
        logits[rows, step.history[rows, step.pos - backs[back]]] = NEG


class Repeated(Rule):
    """Each character the poem already holds loses `penalty` from its logit: generated poems repeat
    characters two to three times as often as held-out real ones (不 above all), and a repeat is a
    flaw in regular verse. Soft, so a repeat stays possible; punctuation is never penalised."""

    def __init__(self, repeatable: np.ndarray, penalty: float):
        self.repeatable = repeatable                  # (vocab,) float32: 1 for a character, 0 otherwise
        self.penalty = np.float32(penalty)

    def apply(self, logits, step):
        if step.pos:
            ids = step.history   # (batch, pos): each id once per row, however often it came
            logits[np.arange(len(logits))[:, None], ids] -= self.penalty * self.repeatable[ids]


class Rhyme(Rule):
    """Rhyming lines end in characters of one 平水韵 level-tone group, none used twice.

    The layout's rhyme lines always rhyme (2, 4, 6 and 8 of a shi); line 1 only in the rows whose
    `first_line` is set, but in every row no rhyme takes line 1's last character again.
    """

    def __init__(self, membership: np.ndarray, first_line: np.ndarray, masks: FitMasks | None = None,
                 words: dict[int, tuple[np.ndarray, np.ndarray]] | None = None):
        self.membership = membership                     # (vocab, groups) bool
        # the pairs that fix a line end's group, by first id (tables.rhyme_word_groups): after 成, 行 is
        # háng, 七阳 alone, both where it may be written and in what the rhyme keeps after it
        self.words = words or {}
        # the additive mask of each set of groups; pass the vocabulary's (tables.rhyme_masks) to share them
        self.masks = masks if masks is not None else FitMasks(membership.T.astype(np.float32))
        self.first_line = first_line                     # (batch,) bool
        self.allowed = np.ones((len(first_line), membership.shape[1]), bool)
        self.used: list[tuple[np.ndarray, np.ndarray]] = []   # (rows, the id each took) per rhyme position

    def rows_here(self, step: Step, ending: bool = False) -> np.ndarray | None:
        """The rows whose character at `step` must rhyme; with `ending`, every row at line 1's end too
        (a line 1 that need not rhyme still ends in a character no rhyme may take again)."""
        line = int(step.line[0])
        if step.layout is None or int(step.column[0]) != step.layout.line_lengths[line] - 1:
            return None
        if line in step.layout.rhyme_lines or (ending and line == 0):
            return np.ones(len(step.line), bool)
        if line > 0:
            return None
        return self.first_line if self.first_line.any() else None

    def apply(self, logits, step):
        rows = self.rows_here(step)
        if rows is None:
            return
        where = np.flatnonzero(rows)
        logits[where] += self.masks(self.allowed[where])
        for row in where:
            found = self.words.get(int(step.history[row, step.pos - 1])) if step.pos else None
            if found is not None:   # a pair read in a group the rhyme does not allow
                lasts, groups = found
                logits[row, lasts[~self.allowed[row, groups]]] = NEG
        for used_rows, ids in self.used:   # no rhyme twice
            here = rows[used_rows]
            logits[used_rows[here], ids[here]] = NEG

    def observe(self, chosen, step):
        ends = self.rows_here(step, ending=True)
        if ends is None:
            return
        where = np.flatnonzero(ends)
        self.used.append((where, chosen[where]))   # no rhyme repeats it, rhyming or not (重韵)
        rows = self.rows_here(step)
        if rows is None:
            return
        codes = self.membership[chosen]
        for row in np.flatnonzero(rows):
            found = self.words.get(int(step.history[row, step.pos - 1])) if step.pos else None
            if found is not None and chosen[row] in found[0]:   # its word's group alone
                codes[row] = np.arange(codes.shape[1]) == found[1][list(found[0]).index(chosen[row])]
        narrowed = self.allowed & codes
        keep = rows & narrowed.any(axis=1)   # a forced character outside the table keeps the old set
        self.allowed[keep] = narrowed[keep]


TONE_NUDGE = 1.5   # an off-pattern character at a free column loses this much logit (the SavedModel's too)


class Tone(Rule):
    """Steer each character toward a 平仄 pattern: strict columns are enforced, the others nudged, and at
    the columns that keep a line from 三平尾 or 孤平, and at the end of a line that ends 仄
    (prosody.guard_columns), only a character with no reading in the other tone is written."""

    def __init__(self, can_be: dict[str, np.ndarray], patterns: list[list[str]], nudge: float = TONE_NUDGE,
                 rescued: frozenset = frozenset()):
        """`rescued`: the lines whose rescue column (prosody.rescue) a prompt or acrostic fixes with a
        character that cannot be 平, so that line's third column must be 平 instead (拗救)."""
        self.tones = tones = sorted(can_be)
        self.can_be = np.stack([can_be[t] for t in tones])      # (tones, vocab); unknown chars fit neither
        only = self.can_be & (self.can_be.sum(axis=0) == 1)    # (tones, vocab): read in that tone alone
        # Added to the logits (a boolean-mask assignment costs ten times more), one row per tone and
        # strictness: rows 0.. -inf off the tone (a strict column), rows len(tones).. -nudge (the others),
        # rows 2 len(tones).. -inf but for characters of that tone alone (a guard column)
        self.add = np.concatenate([np.where(self.can_be, np.float32(0), NEG),
                                   np.where(self.can_be, np.float32(0), -np.float32(nudge)),
                                   np.where(only, np.float32(0), NEG)])
        # (batch, lines, columns): the row of `add` each position takes
        self.required = np.array([[[tones.index(t) + len(tones) * _strictness(line, c) for c, t in enumerate(line)]
                                   for line in pattern] for pattern in patterns])
        for row, pattern in enumerate(patterns):
            for i, line in enumerate(pattern):
                if rescue(line) is not None and (i, rescue(line)[0]) in rescued:
                    self.required[row, i, rescue(line)[1]] = tones.index(PING) + 2 * len(tones)
        self.nudge = np.float32(nudge)

    def apply(self, logits, step):
        column = int(step.column[0])
        if column < 0:
            return
        logits += self.add[self.required[np.arange(len(logits)), step.line, column]]

    def asked(self, layout) -> np.ndarray:
        """(batch, positions) int8 for WordTone: the tone a strict or guard column asks (0 平, 1 仄), -1
        where none is (marks, nudged columns)."""
        strictness, tone = np.divmod(self.required, len(self.tones))
        codes = np.where(strictness == 1, -1, np.array([self.tones[k] != PING for k in range(len(self.tones))])[tone])
        asked = np.full((len(codes), layout.length), -1, np.int8)
        for pos, (line, column) in enumerate(layout.positions):
            if column >= 0:
                asked[:, pos] = codes[:, line, column]
        return asked


def _strictness(line: str, column: int) -> int:
    """Tone's row block for a column of a pattern line: 0 strict, 1 nudged, 2 a guard column."""
    return 2 if column in guard_columns(line) else 0 if column in strict_columns(line) else 1


class Theme(Rule):
    """Nudge each line toward its planned keyword character, and the poem toward all of them."""

    def __init__(self, plan: list[int], keyword_ids: list[int], line_boost: float = 2.5, boost: float = 0.7):
        self.plan = np.array(plan, np.int64)      # keyword id per line
        self.keywords = np.array(keyword_ids, np.int64)
        self.line_boost, self.boost = np.float32(line_boost), np.float32(boost)

    def apply(self, logits, step):
        logits[:, self.keywords] += self.boost
        rows = np.flatnonzero(step.column >= 0)
        if not len(self.plan) or not rows.size:
            return
        targets = self.plan[step.line[rows] % len(self.plan)]
        columns = step.column[rows]
        used = np.zeros(rows.size, bool)
        for back in range(1, int(columns.max()) + 1):   # earlier characters of the line, not rows
            used |= (columns >= back) & (step.history[rows, step.pos - back] == targets)
        logits[rows[~used], targets[~used]] += self.line_boost


def build_rules(prepared: PreparedRequest, tables: VocabularyTables,
                streams: list[tuple[int, int]]) -> tuple[list[Rule], list[str] | None]:
    """The rules of one batch of rows under `prepared`, and each row's 平仄 pattern name (None: no tone rule).

    Pure: the same request and (seed, index) streams give the same rules, whatever else is batched.
    """
    request, layout, batch = prepared.request, prepared.shape.layout, len(streams)
    regular = layout is not None
    active: list[Rule] = [Prompt(list(prepared.prompt_ids), batch)] if prepared.prompt_ids else []
    if regular:
        end_ids = [tables.tokenizer.id_of(mark) for mark in layout.end_marks]
        active.append(Layout(end_ids, banned_inside(tables.tokenizer.index, range(len(SPECIALS))), batch))
    else:
        active.append(FreeVerse(tables.punctuation_ids))
    tokenizer = tables.tokenizer
    # a conditioned model's control tokens never appear inside a poem, nor a form a reader takes for a
    # misspelling (tables.foreign_ids: 髪, 疎)
    banned = list(range(tokenizer.char_limit, tokenizer.vocab_size)) + tables.foreign_ids
    if banned:
        active.append(Banned(banned))
    if prepared.acrostic_ids:
        active.append(Acrostic(list(prepared.acrostic_ids), batch))
    if request.no_repeat:
        active.append(NoRepeat())
    if request.repeat_penalty:
        active.append(Repeated(tables.repeatable, request.repeat_penalty))
    patterns = None
    if prepared.variant is not None:   # a ci: the tune's rhyme and 平仄 instead of a shi pattern's
        rhyme = request.rhyme if request.rhyme is not None else True
        active += ci_rules(prepared.variant, tables, batch, rhyme, request.tone, forced_ids(prepared, layout))
        if request.tone:
            active.append(WordTone(tables, ci_asked(prepared.variant, batch)))
    elif regular and request.tone:
        standard = tone_patterns(layout.uniform_length, layout.line_count)
        rhyme = request.rhyme if request.rhyme is not None else True
        if prepared.pattern is not None:   # one the request fixes (polish: the poem's own)
            patterns = [prepared.pattern] * batch
        else:   # each poem's pattern comes from its own stream, so batching does not change it
            names = fitting_patterns(standard, layout, forced_ids(prepared, layout), tables, rhyme)
            patterns = [names[np.random.default_rng([seed, index, 1]).integers(len(names))] for seed, index in streams]
        forced = {layout.line_column(pos): i for pos, i in forced_ids(prepared, layout).items()}
        rescued = frozenset(at for at, i in forced.items() if tables.tone_known[i] and not tables.tone_masks[PING][i])
        tone = Tone(tables.tone_masks, [standard[p] for p in patterns], rescued=rescued)
        active += [tone, WordTone(tables, tone.asked(layout))]
    rhyme = request.rhyme if request.rhyme is not None else regular
    if regular and rhyme and prepared.variant is None:
        first_line = np.array([p is not None and p.endswith("入韵") for p in (patterns or [None] * batch)])
        active.append(Rhyme(tables.rhyme_membership, first_line, tables.rhyme_masks, tables.rhyme_word_groups))
    theme_ids = prepared.theme_ids
    if theme_ids:
        lines = layout.line_count if regular else 8
        active.append(Theme([theme_ids[i % len(theme_ids)] for i in range(lines)], list(theme_ids)))
    return active, patterns


def pair_tones(forced: dict[int, int], tables: VocabularyTables) -> dict[int, str]:
    """Position -> the tone that the fixed characters' pairs read a fixed character in (prosody words:
    a prompt 万重 reads 重 平), where they read it in one tone; the graph reads the same (_pair_tones)."""
    name = lambda i: tables.tokenizer.decode([i]) or "\0"   # noqa: E731  (a special id: no pair)
    text = "".join(name(forced.get(pos, 0)) for pos in range(max(forced, default=-1) + 1))
    found = {}
    for pos in forced:
        tones = tables.prosody.word_tones(text, pos)
        if len(tones) == 1:
            found[pos] = tones.pop()
    return found


def forced_ids(prepared: PreparedRequest, layout) -> dict[int, int]:
    """Position → id of every character the request fixes: the prompt's, then the acrostic's line heads."""
    forced = dict(enumerate(prepared.prompt_ids))
    for start, head in zip(layout.starts, prepared.acrostic_ids):
        forced.setdefault(start, head)
    return forced


def fitting_patterns(standard: dict[str, list[str]], layout, forced: dict[int, int], tables: VocabularyTables,
                     rhyme: bool) -> list[str]:
    """The names of the standard 平仄 patterns the request's fixed characters allow: each one at a strict
    column can be read in the pattern's tone there (and is, where fixed pairs read it: pair_tones), and
    (with rhyme) those at the pattern's rhyme positions (line 1's end too in a 入韵 pattern) share a 平水韵
    group. When none allows both, those that
    keep the rhyme, then those that keep the tones, then all: the poem reports its tone and rhyme as they
    are. The SavedModel's graph picks alike (export_graph)."""
    ends = {start + length - 1: line for line, (start, length) in enumerate(zip(layout.starts, layout.line_lengths))}
    at = {layout.line_column(pos): i for pos, i in forced.items()}
    read = {layout.line_column(pos): tone for pos, tone in pair_tones(forced, tables).items()}
    not_ping = lambda i: i is not None and tables.tone_known[i] and not tables.tone_masks[PING][i]   # noqa: E731
    fits = {}
    for name, lines in standard.items():
        tones_fit = all((tables.tone_masks[lines[line][column]][i] or not tables.tone_known[i])   # unknown: not judged
                        and read.get((line, column), lines[line][column]) == lines[line][column]   # 万重: 重 平
                        for (line, column), i in at.items() if column in prompt_columns(lines[line]))
        # a rescue (拗救) whose first and third columns both hold fixed non-平 characters cannot avoid 孤平
        tones_fit = tones_fit and not any(
            rescue(pattern) is not None and not_ping(at.get((line, rescue(pattern)[0])))
            and not_ping(at.get((line, rescue(pattern)[1]))) for line, pattern in enumerate(lines))
        rhyming = [i for pos, i in forced.items() if pos in ends
                   and (ends[pos] in layout.rhyme_lines or (ends[pos] == 0 and name.endswith("入韵")))]
        rhymes_fit = not rhyme or tables.share_rhyme(rhyming)
        fits[name] = (rhymes_fit, tones_fit)
    for wanted in ((True, True), (True, None), (None, True)):
        chosen = [name for name, fit in fits.items() if all(w is None or w == f for w, f in zip(wanted, fit))]
        if chosen:
            return chosen
    return list(standard)
