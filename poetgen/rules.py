"""Logit rules: each constraint on a poem is one small class the sampling loop calls at every step.

A rule may force the next character (layout punctuation, acrostic heads, the prompt), forbid some
(no repeats, off-rhyme endings) or nudge them (theme, tone). Rules never run the model;
build_rules() turns a prepared request into its rule list. A shi's rhyme and 平仄 rules (and its tone
pattern's choice) are shi_rules.py's, a ci's ci_rules.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from poetgen.ci_rules import ci_rules
from poetgen.layout import STOP_MARKS, banned_inside
from poetgen.metre import PING, tone_patterns
from poetgen.rule_base import NEG, Rule
from poetgen.shi_rules import Rhyme, Tone, fitting_patterns
from poetgen.tokenizer import BOUNDARY, PAD, SPECIALS, UNK
from poetgen.word_rules import WordTone, ci_asked

if TYPE_CHECKING:
    from poetgen.request import PreparedRequest
    from poetgen.tables import VocabularyTables


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
    """Free verse: never padding or unknown; the boundary ends the poem. At the cap's last position
    (`max_chars`), a row that has written no mark after the prompt (its first `kept` characters) ends
    its clause there with a stop mark, or, right after the prompt's own mark, ends the poem: the cut
    to the last whole clause (generate.cut_to_clause) then always has one to keep."""

    essential = True

    def __init__(self, punctuation_ids: list[int], min_chars: int = 5, max_chars: int | None = None,
                 stop_ids: list[int] = (), kept: int = 0):
        self.punctuation = np.array(punctuation_ids, np.int64)
        self.min_chars = min_chars
        self.max_chars = max_chars   # None: no cap to close a clause at
        self.stops = np.array(stop_ids, np.int64)
        self.kept = kept

    def apply(self, logits, step):
        logits[:, [PAD, UNK]] = NEG
        if step.pos < self.min_chars:
            logits[:, BOUNDARY] = NEG
        starts_line = step.column == 0
        if starts_line.any():   # no empty lines: punctuation right after punctuation
            logits[np.ix_(starts_line, self.punctuation)] = NEG
        if step.pos == (self.max_chars or 0) - 1 and self.stops.size:
            open_rows = ~np.isin(step.history[:, self.kept:], self.punctuation).any(axis=1)
            for rows, allowed in ((open_rows & ~starts_line, self.stops), (open_rows & starts_line, [BOUNDARY])):
                if rows.any():
                    model = logits[np.ix_(rows, allowed)]   # min_chars may have forbidden the boundary
                    logits[rows] = NEG
                    logits[np.ix_(rows, allowed)] = np.where(np.isfinite(model), model, 0.0)


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
        stops = [tables.tokenizer.id_of(mark) for mark in STOP_MARKS if mark in tables.tokenizer.index]
        active.append(FreeVerse(tables.punctuation_ids, max_chars=prepared.shape.max_chars, stop_ids=stops,
                                kept=len(prepared.prompt_ids)))
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


def forced_ids(prepared: PreparedRequest, layout) -> dict[int, int]:
    """Position → id of every character the request fixes: the prompt's, then the acrostic's line heads."""
    forced = dict(enumerate(prepared.prompt_ids))
    for start, head in zip(layout.starts, prepared.acrostic_ids):
        forced.setdefault(start, head)
    return forced
