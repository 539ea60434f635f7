"""Per-id tables of a model's vocabulary that the rules read: punctuation ids, rhyme groups, tones.

They come from the tokenizer and the 平水韵 table alone, are built once per model and never run it.
"""

from __future__ import annotations

import functools

import numpy as np

from poetgen.ci_rhyme import CODES, COLUMN, FLIP, ci_rhyme, usual_ci_rhyme
from poetgen.corpus import PUNCTUATION, chinese_forms, everyday, to_simplified, traditional_script
from poetgen.errors import BadInput
from poetgen.layout import banned_inside
from poetgen.prosody import PING, ZE, Prosody, table, usual_table
from poetgen.tokenizer import SPECIALS, Tokenizer


NEG = np.float32(-np.inf)
MASKS_KEPT = 4096   # FitMasks keeps at most this many (~38 KB each at a 9,400 vocabulary), then starts again


class FitMasks:
    """The additive mask of a set of groups: 0 for the ids in any of them, -inf for the others, made
    once per set and kept (a rhyme position asks for the same few sets over and over). Rows are
    independent, so the masks of a batch do not depend on which rows are batched together."""

    def __init__(self, membership_t: np.ndarray):
        self.membership_t = membership_t   # (groups, vocab) float32: 1 where the id is in the group
        self._kept: dict[bytes, np.ndarray] = {}   # threads may make the same mask at once: same values

    def __call__(self, allowed: np.ndarray) -> np.ndarray:
        """(rows, vocab) float32 masks of (rows, groups) bool sets."""
        return np.stack([self._mask(row) for row in allowed])

    def _mask(self, row: np.ndarray) -> np.ndarray:
        key = row.tobytes()
        mask = self._kept.get(key)
        if mask is None:
            if len(self._kept) >= MASKS_KEPT:
                self._kept = {}
            mask = np.where(row.astype(np.float32) @ self.membership_t > 0, np.float32(0), NEG)
            mask.flags.writeable = False
            self._kept[key] = mask
        return mask


def _by_first(entries: list[tuple[int, int, int]], vocab_size: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first id, second id, value) entries in CSR form: `starts` (vocab_size + 1,) int32 (the entries of
    first id a are starts[a]:starts[a + 1]), the second ids (int32) and the values (`dtype`), sorted."""
    entries = sorted(entries)
    firsts = np.array([e[0] for e in entries], np.int64)
    starts = np.searchsorted(firsts, np.arange(vocab_size + 1)).astype(np.int32)
    return (starts, np.array([e[1] for e in entries], np.int32).reshape(-1),
            np.array([e[2] for e in entries], dtype).reshape(-1))


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
        self._refused: dict[tuple[int, int, int], np.ndarray] = {}   # refused_after's answers

    @functools.cached_property
    def repeatable(self) -> np.ndarray:
        """(vocab,) float32: 1 for the ids of characters, 0 for special ids, marks and control ids (the
        ids poetgen.rules.Repeated penalises once used; the SavedModel's graph: those not `banned`)."""
        ids = np.zeros(self.tokenizer.vocab_size, np.float32)
        ids[len(SPECIALS):self.tokenizer.char_limit] = 1
        ids[banned_inside(self.tokenizer.index, range(len(SPECIALS)))] = 0
        return ids

    @functools.cached_property
    def foreign_ids(self) -> list[int]:
        """Ids of characters a reader of simplified Chinese takes for misspellings, never sampled: Japanese
        forms (髪, 隠, 歳) and old variant spellings (疎, 劒, 鴈) that the corpus keeps as its sources wrote
        them. One counts when it is not among GB 2312's 6,763 everyday characters while the form Chinese
        writes (corpus.chinese_forms, or the rhyme table's standard spelling) is, and the vocabulary has that
        form too. 樽, 炉 and 翻 are everyday characters and stay. A model trained in traditional characters
        (`corpus import --keep-script`) has none: its 雲 and 遊 are no misspellings of 云 and 游."""
        index = self.tokenizer.index
        if traditional_script(index):
            return []
        chars = [ch for ch in index if len(ch) == 1 and not everyday(ch)]
        ids = []
        for ch, plain in zip(chars, chinese_forms(chars)):
            if plain == ch:
                plain = to_simplified(self.checking.spelled_as.get(ch, ch))
            if plain != ch and plain in index and everyday(plain):
                ids.append(index[ch])
        return sorted(ids)

    def unwritable(self, text: str) -> list[str]:
        """Characters of `text` that no poem of this model holds, each once: outside the vocabulary, or a
        foreign form generation never samples (foreign_ids). A real poem with one is told from generated ones."""
        index, foreign = self.tokenizer.index, self._foreign_set
        return list(dict.fromkeys(ch for ch in text if ch not in index or index[ch] in foreign))

    @functools.cached_property
    def _foreign_set(self) -> frozenset[int]:
        return frozenset(self.foreign_ids)

    @functools.cached_property
    def prosody(self) -> Prosody:
        """The readings generation uses (prosody.usual_table): every mask below comes from it."""
        return usual_table()

    @functools.cached_property
    def checking(self) -> Prosody:
        """Every attested reading (prosody.table): what a finished poem is checked by."""
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

    def share_rhyme(self, ids) -> bool:
        """True when the characters `ids` have a 平水韵 level-tone group in common (none given: True)."""
        return not len(ids) or bool(self.rhyme_membership[list(ids)].all(axis=0).any())

    @functools.cached_property
    def rhyme_masks(self) -> FitMasks:
        """The Rhyme rule's masks by set of 平水韵 groups."""
        return FitMasks(self.rhyme_membership.T.astype(np.float32))

    @functools.cached_property
    def tone_masks(self) -> dict[str, np.ndarray]:
        """平 and 仄 → (vocab,) bool: the ids known to be readable in that tone. A character the tone
        table lacks (啼, 遍, 盏…: ~400 of the corpus's) fits neither, so no rule puts one where a tone
        is required; a checker reading a real poem does not judge it (metre.tone_fits)."""
        masks = {PING: np.zeros(self.tokenizer.vocab_size, bool), ZE: np.zeros(self.tokenizer.vocab_size, bool)}
        for ch, i in self.tokenizer.index.items():
            tones = self.prosody.tones(ch)
            masks[PING][i], masks[ZE][i] = PING in tones, ZE in tones
        return masks

    @functools.cached_property
    def word_tones(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The words that fix a two-tone character's reading (prosody.Prosody.words) by the id of their
        first character, in CSR form: `starts` (vocab + 1,) int32, and per word `seconds` (words,) int32,
        the second character's id, and `codes` (words,) int8, the tone fixed (0 平, 1 仄) plus 2 when it
        is the first character's (word_rules.WordTone, the SavedModel's graph). A word the vocabulary cannot
        spell is left out."""
        index, entries = self.tokenizer.index, []
        for pair, tones in self.prosody.words.items():
            if pair[0] in index and pair[1] in index:
                for which, tone in enumerate(tones):
                    if tone is not None:
                        entries.append((index[pair[0]], index[pair[1]], (0 if tone == PING else 1) + 2 * (which == 0)))
        return _by_first(entries, self.tokenizer.vocab_size, np.int8)

    @functools.cached_property
    def rhyme_words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs that fix a line end's level group (prosody.Prosody.rhyme_words) by the id of their
        first character, in CSR form: `starts` (vocab + 1,) int32, per pair the last character's id
        (int32) and its group's column of rhyme_membership (int32). The SavedModel's graph reads these."""
        index, column = self.tokenizer.index, {g: i for i, g in enumerate(self.prosody.level_groups)}
        entries = [(index[pair[0]], index[pair[1]], column[group])
                   for pair, group in self.prosody.rhyme_words.items() if pair[0] in index and pair[1] in index]
        return _by_first(entries, self.tokenizer.vocab_size, np.int32)

    @functools.cached_property
    def rhyme_word_groups(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """rhyme_words by first id: {id: (last ids, their group columns)} (shi_rules.Rhyme)."""
        starts, lasts, groups = self.rhyme_words
        return {first: (lasts[starts[first]:starts[first + 1]], groups[starts[first]:starts[first + 1]])
                for first in np.flatnonzero(starts[1:] > starts[:-1]).tolist()}

    @functools.cached_property
    def word_firsts(self) -> frozenset:
        """The ids some word of word_tones starts with (word_rules.WordTone looks only after those)."""
        starts = self.word_tones[0]
        return frozenset(np.flatnonzero(starts[1:] > starts[:-1]).tolist())

    def refused_after(self, previous: int, here: int, before: int) -> np.ndarray:
        """The ids whose pair with `previous` reads one of the two off the tone its column asks (WordTone):
        `here` the tone asked at the id's column, `before` at previous's (0 平, 1 仄, -1 none). Kept once
        made: a step asks it once per row, and there are at most nine per id."""
        key = (previous, here, before)
        found = self._refused.get(key)
        if found is None:
            starts, seconds, codes = self.word_tones
            span = slice(starts[previous], starts[previous + 1])
            wanted = np.where(codes[span] >= 2, before, here)   # >= 2: the word fixes previous's tone
            found = seconds[span][(wanted >= 0) & ((codes[span] & 1) != wanted)]
            found.flags.writeable = False
            self._refused[key] = found
        return found

    @functools.cached_property
    def tone_known(self) -> np.ndarray:
        """(vocab,) bool: the ids the tone table lists. One it lacks is never written where a tone is
        required (tone_masks), but fixed by a prompt it fits any pattern (shi_rules.fitting_patterns)."""
        known = np.zeros(self.tokenizer.vocab_size, bool)
        for ch, i in self.tokenizer.index.items():
            known[i] = bool(self.prosody.tones(ch))
        return known

    @functools.cached_property
    def ci_rhyme(self):
        """The 词林正韵 codes of each character (ci_rhyme.py), by the readings generation uses."""
        return usual_ci_rhyme()

    @functools.cached_property
    def checking_ci_rhyme(self):
        """The same by every attested reading: what a finished ci is checked by."""
        return ci_rhyme()

    @functools.cached_property
    def ci_membership(self) -> np.ndarray:
        """(vocab, codes) bool: the 词林正韵 codes (ci_rhyme.CODES) each id can rhyme in."""
        rhyme = self.ci_rhyme
        membership = np.zeros((self.tokenizer.vocab_size, len(CODES)), bool)
        for ch, i in self.tokenizer.index.items():
            for code in rhyme.codes(ch):
                membership[i, COLUMN[code]] = True
        return membership

    @functools.cached_property
    def ci_masks(self) -> tuple[FitMasks, FitMasks]:
        """The CiRhyme rule's masks by set of 词林正韵 codes: read plainly, and read by a 叶 slot (which
        takes the other tone: column i reads the character's column of ci_rhyme.flip(CODES[i]))."""
        membership_t = self.ci_membership.T.astype(np.float32)
        return FitMasks(membership_t), FitMasks(membership_t[list(FLIP)])
