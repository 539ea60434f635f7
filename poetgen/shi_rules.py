"""The logit rules of a shi's regular verse: rhyme by 平水韵 group (Rhyme) and 平仄 by a standard pattern
(Tone), and the choice of the patterns a request's fixed characters allow (fitting_patterns).

The layout, prompt and the other rules are rules.py's, which builds the list; a ci's rhyme and tones are
ci_rules.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from poetgen.metre import PING, guard_columns, prompt_columns, rescue, strict_columns
from poetgen.rule_base import NEG, Rule
from poetgen.tables import FitMasks

if TYPE_CHECKING:
    from poetgen.rule_base import Step
    from poetgen.tables import VocabularyTables


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
    (metre.guard_columns), only a character with no reading in the other tone is written."""

    def __init__(self, can_be: dict[str, np.ndarray], patterns: list[list[str]], nudge: float = TONE_NUDGE,
                 rescued: frozenset = frozenset()):
        """`rescued`: the lines whose rescue column (metre.rescue) a prompt or acrostic fixes with a
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
