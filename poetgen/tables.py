"""Per-id tables of a model's vocabulary that the rules read: punctuation ids, rhyme groups, tones.

They come from the tokenizer and the 平水韵 table alone, are built once per model and never run it.
"""

from __future__ import annotations

import functools

import numpy as np

from poetgen.corpus import PUNCTUATION
from poetgen.errors import BadInput
from poetgen.prosody import PING, ZE, Prosody, table
from poetgen.tokenizer import Tokenizer


class VocabularyTables:
    """What the rules need to know about each id of one tokenizer's vocabulary."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        for mark in "，。":
            if mark not in tokenizer.index:
                raise BadInput(f"the model's vocabulary lacks {mark!r}; it cannot write regular forms")
        self.comma = tokenizer.id_of("，")            # ends odd lines of the regular forms
        self.period = tokenizer.id_of("。")           # ends even lines
        self.punctuation_ids = [tokenizer.id_of(p) for p in PUNCTUATION if p in tokenizer.index]

    @functools.cached_property
    def prosody(self) -> Prosody:
        return table()

    @functools.cached_property
    def rhyme_membership(self) -> np.ndarray:
        """(vocab, groups) bool: the 平水韵 level-tone groups each id belongs to."""
        groups = self.prosody.level_groups
        index = {g: i for i, g in enumerate(groups)}
        membership = np.zeros((self.tokenizer.vocab_size, len(groups)), bool)
        for ch, i in self.tokenizer.index.items():
            for group in self.prosody.rhyme_groups(ch):
                membership[i, index[group]] = True
        return membership

    @functools.cached_property
    def rhyme_membership_t(self) -> np.ndarray:
        """(groups, vocab) float32: the transpose the Rhyme rule multiplies by, built once per model."""
        return self.rhyme_membership.T.astype(np.float32)

    @functools.cached_property
    def tone_masks(self) -> dict[str, np.ndarray]:
        """平 and 仄 → (vocab,) bool: the ids that can be read in that tone (unknown ones fit both)."""
        masks = {PING: np.ones(self.tokenizer.vocab_size, bool), ZE: np.ones(self.tokenizer.vocab_size, bool)}
        for ch, i in self.tokenizer.index.items():
            tones = self.prosody.tones(ch)
            if tones:   # characters outside the table are not judged
                masks[PING][i], masks[ZE][i] = PING in tones, ZE in tones
        return masks
