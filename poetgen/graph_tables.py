"""The tables an exported model generates with, as NumPy arrays: vocabulary, rhyme and tone per id, and
every layout (poetgen.layout) unrolled per position. The SavedModel graph embeds them; a TFLite export
writes them beside model.tflite (tables.npz). It builds tables only: no TensorFlow, no sampling.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poetgen.layout import FORM_ALIASES, FORMS, MARKS, Layout, banned_inside, layout_of
from poetgen.prosody import PING, ZE, strict_positions, tone_patterns
from poetgen.tokenizer import SPECIALS

TABLES_FILE = "tables.npz"
TONES = (PING, ZE)                                          # index 0 平, 1 仄 in tone tables
PATTERN_NAMES = tuple(tone_patterns(5, 4))                  # 仄起 平起 仄起入韵 平起入韵, same for every shi
FIRST_LINE_RHYMES = np.array([n.endswith("入韵") for n in PATTERN_NAMES])   # line 1 rhymes too
HALF_WIDTH = {",": "，", ".": "。", "．": "。", "?": "？", "!": "！", ";": "；", ":": "：", "、": "，", "︰": "："}
DECORATION = "《》「」『』“”‘’\"'〝〞"   # dropped from prompts and acrostics, as normalize_text does


@dataclasses.dataclass(frozen=True)
class GraphVocabulary:
    chars: list[str]               # id -> character; '' for the special ids
    lookup: dict[str, int]         # character -> id: the vocabulary, plus traditional spellings of it
    banned: np.ndarray             # (vocab,) bool: special ids and marks, never inside a line
    rhyme_membership: np.ndarray   # (vocab, groups) bool: the 平水韵 level-tone groups of each id
    can_be: np.ndarray             # (2, vocab) bool: id may be read 平 (row 0) / 仄 (row 1); unknown: both
    mark_ids: np.ndarray           # (len(MARKS),) id of each mark of poetgen.layout.MARKS; -1 if not in vocab


@dataclasses.dataclass(frozen=True)
class LayoutTables:
    """Every layout unrolled to `positions` slots; row f is names[f]. Padding: -1 or False."""

    names: list[str]               # layout names (the forms, later tunes)
    aliases: dict[str, int]        # every accepted name (Chinese names too) -> row
    length: np.ndarray             # (layouts,) positions, marks included
    line_count: np.ndarray         # (layouts,)
    line: np.ndarray               # (layouts, positions) line of each position
    column: np.ndarray             # (layouts, positions) column; -1 at a mark slot
    char_slots: np.ndarray         # (layouts, positions) position of the k-th character slot
    line_starts: np.ndarray        # (layouts, lines) position of each line's first character
    line_ends: np.ndarray          # (layouts, lines) characters in the poem up to the end of each line
    end_ids: np.ndarray            # (layouts, lines) id of the mark the layout writes after each line
    accepted: np.ndarray           # (layouts, lines, len(MARKS)) marks accepted after each line
    rhyme_slot: np.ndarray         # (layouts, positions) last character of a line that must rhyme
    first_line_end: np.ndarray     # (layouts, positions) last character of line 1 (rhymes in 入韵 patterns)
    has_tones: np.ndarray          # (layouts,) the standard 平仄 patterns apply (shi)
    tone: np.ndarray               # (layouts, patterns, positions) 0 平, 1 仄, -1 none (marks, padding)
    tone_strict: np.ndarray        # (layouts, positions) the tone at this column is enforced, not nudged


def vocabulary_tables(tables) -> GraphVocabulary:
    """What generation needs of a model's vocabulary tables (poetgen.tables.VocabularyTables): characters,
    banned ids, rhyme and tone."""
    from poetgen.corpus import to_traditional

    tokenizer = tables.tokenizer
    chars = [""] * len(SPECIALS) + list(tokenizer.chars) + [""] * len(tokenizer.controls)
    lookup = dict(tokenizer.index)
    traditional = to_traditional("\n".join(tokenizer.chars)).split("\n")
    if len(traditional) == len(tokenizer.chars):   # a prompt in traditional characters still encodes
        for simplified, spelled in zip(tokenizer.chars, traditional):
            if len(spelled) == 1 and spelled not in lookup:
                lookup[spelled] = tokenizer.index[simplified]
    banned = np.zeros(tokenizer.vocab_size, bool)
    banned[banned_inside(tokenizer.index, range(len(SPECIALS)))] = True
    banned[tokenizer.char_limit:] = True   # a conditioned model's control tokens (the graph feeds no prefix)
    masks = tables.tone_masks
    can_be = np.stack([masks[t] for t in TONES])
    mark_ids = np.array([tokenizer.index.get(m, -1) for m in MARKS], np.int32)
    return GraphVocabulary(chars, lookup, banned, tables.rhyme_membership, can_be, mark_ids)


def shi_layouts() -> dict[str, Layout]:
    return {form: layout_of(form) for form in FORMS}


def layout_tables(layouts: dict[str, Layout], mark_ids: np.ndarray, aliases: dict[str, str] | None = None
                  ) -> LayoutTables:
    names = list(layouts)
    aliases = {**{n: n for n in names}, **(FORM_ALIASES if aliases is None else aliases)}
    rows, positions = len(names), max(layout.length for layout in layouts.values())
    lines = max(layout.line_count for layout in layouts.values())

    def full(shape, value, dtype=np.int32):
        return np.full(shape, value, dtype)

    t = dict(length=full(rows, 0), line_count=full(rows, 0), line=full((rows, positions), -1),
             column=full((rows, positions), -1), char_slots=full((rows, positions), -1),
             line_starts=full((rows, lines), -1), line_ends=full((rows, lines), -1), end_ids=full((rows, lines), -1),
             accepted=full((rows, lines, len(MARKS)), False, bool), rhyme_slot=full((rows, positions), False, bool),
             first_line_end=full((rows, positions), False, bool), has_tones=full(rows, False, bool),
             tone=full((rows, len(PATTERN_NAMES), positions), -1), tone_strict=full((rows, positions), False, bool))
    for f, layout in enumerate(layouts.values()):
        t["length"][f], t["line_count"][f] = layout.length, layout.line_count
        slots = [p for p, (_, c) in enumerate(layout.positions) if c >= 0]
        t["char_slots"][f, :len(slots)] = slots
        for p, (i, c) in enumerate(layout.positions):
            t["line"][f, p], t["column"][f, p] = i, c
            if c == layout.line_lengths[i] - 1:
                t["rhyme_slot"][f, p] = i in layout.rhyme_lines
                t["first_line_end"][f, p] = i == 0
        for i, n in enumerate(layout.line_lengths):
            t["line_starts"][f, i] = layout.starts[i]
            t["line_ends"][f, i] = sum(layout.line_lengths[:i + 1])
            t["end_ids"][f, i] = mark_ids[MARKS.index(layout.end_marks[i])]
            t["accepted"][f, i] = [m in layout.accepted_marks[i] and mark_ids[k] >= 0 for k, m in enumerate(MARKS)]
        length = layout.uniform_length
        if length in (5, 7) and layout.line_count in (4, 8):
            t["has_tones"][f] = True
            strict = strict_positions(length)
            for k, lines_pattern in enumerate(tone_patterns(length, layout.line_count).values()):
                for p, (i, c) in enumerate(layout.positions):
                    if c >= 0:
                        t["tone"][f, k, p] = TONES.index(lines_pattern[i][c])
                        t["tone_strict"][f, p] = c in strict
    aliases = {name: names.index(target) for name, target in aliases.items() if target in names}
    return LayoutTables(names, aliases, **t)


def write_tables(path, vocabulary: GraphVocabulary, layouts: LayoutTables) -> None:
    """Everything a generation loop around model.tflite needs, in one .npz (see README, TFLite)."""
    arrays = {f"layout_{k}": v for k, v in dataclasses.asdict(layouts).items() if isinstance(v, np.ndarray)}
    arrays.update(layout_names=np.array(layouts.names), chars=np.array(vocabulary.chars),
                  banned=vocabulary.banned, rhyme_membership=vocabulary.rhyme_membership,
                  can_be=vocabulary.can_be, mark_ids=vocabulary.mark_ids, marks=np.array(list(MARKS)))
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
