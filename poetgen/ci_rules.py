"""The logit rules of a ci written to a tune variant: its 叠 phrases repeated, rhyme at its rhyme
positions by 词林正韵 部, and 平仄 at its 平/仄 positions. The layout itself is the shared Layout rule
(rules.py).
"""

from __future__ import annotations

import numpy as np

from poetgen.ci_rhyme import CODES, COLUMN, codes_for_group
from poetgen.ci_rhyme import FLIP as FLIP_COLUMNS
from poetgen.rule_base import NEG, Rule
from poetgen.tables import FitMasks
from poetgen.tunes import EITHER, Variant

FLIP = np.array(FLIP_COLUMNS, np.int64)


def char_positions(variant: Variant) -> np.ndarray:
    """Step position (marks counted) of each of the variant's characters."""
    layout = variant.layout
    return np.array([start + column for start, n in zip(layout.starts, layout.line_lengths) for column in range(n)],
                    np.int64)


class CiRhyme(Rule):
    """Each rhyme group of the variant keeps one 部 in its tone: the first rhyme of a group picks among
    the 部 the group's tone allows, later ones narrow to what it shares; 叶 slots take the other tone.
    No character rhymes twice in a poem."""

    def __init__(self, variant: Variant, membership: np.ndarray, masks: tuple[FitMasks, FitMasks], batch: int,
                 fixed: dict[int, int] | None = None):
        self.membership = membership                                   # (vocab, codes) bool
        self.masks = masks                                             # by codes: read plainly, read by a 叶 slot
        positions = char_positions(variant)
        self.slots = {int(positions[s.pos]): (s.group, s.xie) for s in variant.steered_rhymes}
        self.allowed = np.zeros((batch, max(variant.group_count, 1), membership.shape[1]), bool)
        for group in range(variant.group_count):   # `fixed` (position -> id, a prompt's): an 入声 group they
            given = self._codes_fixed(fixed or {}, group)   # rhyme in 上去 starts as a 仄 one (codes_for_group)
            self.allowed[:, group, [COLUMN[c] for c in codes_for_group(variant, group, given)]] = True
        self.used: list[np.ndarray] = []                               # the ids each rhyme took, (batch,) each

    def _codes_fixed(self, fixed: dict[int, int], group: int) -> list[frozenset[int]]:
        """The codes (read through 叶 at a 叶 slot) of each character `fixed` puts at the group's slots; one
        the table does not know is left out, as observe() leaves it."""
        found = []
        for pos, (g, xie) in self.slots.items():
            if g == group and pos in fixed and self.membership[fixed[pos]].any():
                columns = self.membership[fixed[pos]][FLIP] if xie else self.membership[fixed[pos]]
                found.append(frozenset(CODES[j] for j in np.flatnonzero(columns)))
        return found

    def apply(self, logits, step):
        slot = self.slots.get(step.pos)
        if slot is None:
            return
        group, xie = slot
        logits += self.masks[xie](self.allowed[:, group])
        rows = np.arange(len(logits))
        for ids in self.used:
            logits[rows, ids] = NEG

    def observe(self, chosen, step):
        slot = self.slots.get(step.pos)
        if slot is None:
            return
        group, xie = slot
        codes = self.membership[chosen]
        narrowed = self.allowed[:, group] & (codes[:, FLIP] if xie else codes)
        keep = narrowed.any(axis=1)   # a forced character outside the table keeps the old set
        self.allowed[keep, group] = narrowed[keep]
        self.used.append(chosen.copy())


class CiRepeat(Rule):
    """A 叠 phrase repeats the characters just before it (如梦令's 如梦。如梦, 忆秦娥's 秦楼月): each of its
    characters is the one its source position took. The prompt's and the acrostic's characters, forced
    by rules before this one, come first."""

    essential = True

    def __init__(self, variant: Variant):
        positions = char_positions(variant)
        self.sources = {int(positions[p]): int(positions[s]) for p, s in variant.repeats}

    def forced(self, step):
        source = self.sources.get(step.pos)
        return None if source is None else step.history[:, source].copy()


class CiTone(Rule):
    """Every 平 or 仄 position of the variant takes a character readable in that tone; 中 is free."""

    def __init__(self, variant: Variant, can_be: dict[str, np.ndarray]):
        positions = char_positions(variant)
        added = {tone: np.where(can_be[tone], np.float32(0), NEG) for tone in set(variant.tones) - {EITHER}}
        # position -> (vocab,) 0 or -inf, added to the logits (cheaper than a boolean-mask assignment)
        self.masks = {int(positions[i]): added[tone] for i, tone in enumerate(variant.tones) if tone != EITHER}

    def apply(self, logits, step):
        added = self.masks.get(step.pos)
        if added is not None:
            logits += added


def ci_rules(variant: Variant, tables, batch: int, rhyme: bool, tone: bool,
             fixed: dict[int, int] | None = None) -> list[Rule]:
    """The repeat, rhyme and tone rules of a variant (the layout, prompt, acrostic and theme are shi's own);
    a 叠 phrase is the form itself, so it repeats whatever rhyme and tone say. `fixed`: position -> id of
    the characters the prompt and acrostic fix (rules.forced_ids)."""
    rules: list[Rule] = [CiRepeat(variant)] if variant.repeats else []
    if tone:
        rules.append(CiTone(variant, tables.tone_masks))
    if rhyme and variant.rhymes:
        rules.append(CiRhyme(variant, tables.ci_membership, tables.ci_masks, batch, fixed))
    return rules
