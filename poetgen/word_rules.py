"""The rules that read a two-tone character by its word (prosody.Prosody.words): where a column asks a
tone, a character is not written when its pair with the one before reads it, or reads that one, in the
other tone. The Tone and CiTone rules (shi_rules.py, ci_rules.py) let a character in by any of its readings;
this one adds what the pair decides, for shi and ci alike, as the SavedModel's graph does (_word_off).

It does not judge finished poems: the checkers accept any attested reading (a poet may write 以吾一日长,
zhǎng, though 日长 reads 平 in most poems).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from poetgen.ci_rules import char_positions
from poetgen.prosody import PING, ZE
from poetgen.rule_base import NEG, Rule

if TYPE_CHECKING:
    from poetgen.tables import VocabularyTables


class WordTone(Rule):
    """Where a column asks a tone, the words that fix a two-tone character's reading (prosody.Prosody.words)
    are read as a reader reads them: after 万 a 仄 column takes no 重 (万重 is chóng, 平), and after 相 at a
    仄 column no 逢 follows (相逢 reads 相 xiāng, 平). Tone and CiTone let a character in by any of its
    readings; this rule forbids one whose word, with the character before it, reads otherwise."""

    def __init__(self, tables: VocabularyTables, asked: np.ndarray):
        """`asked`: (batch, positions) the tone each position's column asks, 0 平, 1 仄, -1 none (Tone.asked,
        or a tune's from ci_asked); the words come from `tables` (word_firsts, refused_after)."""
        self.tables, self.firsts = tables, tables.word_firsts
        self.asked = asked

    def apply(self, logits, step):
        if step.pos == 0 or step.pos >= self.asked.shape[1]:
            return
        here, before = self.asked[:, step.pos], self.asked[:, step.pos - 1]
        for row, previous in enumerate(step.history[:, step.pos - 1].tolist()):
            if previous in self.firsts:   # a row after a word's first character
                refused = self.tables.refused_after(previous, int(here[row]), int(before[row]))
                if refused.size:
                    logits[row, refused] = NEG


def ci_asked(variant, batch: int) -> np.ndarray:
    """(batch, positions) the tone each position of a tune's variant asks (WordTone), 0 平, 1 仄, -1 none."""
    asked = np.full((batch, variant.layout.length), -1, np.int8)
    for pos, tone in zip(char_positions(variant), variant.tones):
        if tone in (PING, ZE):
            asked[:, pos] = tone == ZE
    return asked
