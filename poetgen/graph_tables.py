"""The tables an exported model generates with, as NumPy arrays: vocabulary, rhyme and tone per id, and
every layout (poetgen.layout) unrolled per position. The SavedModel graph embeds them; a TFLite export
writes them beside model.tflite (tables.npz). It builds tables only: no TensorFlow, no sampling.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from poetgen.corpus import HAN_RANGES, is_han, traditional_forms
from poetgen.layout import FORM_ALIASES, FORMS, MARKS, Layout, banned_inside, layout_of
from poetgen.metre import PING, ZE, guard_columns, rescue, strict_columns, tone_patterns
from poetgen.tokenizer import SPECIALS

TABLES_FILE = "tables.npz"
TONES = (PING, ZE)                                          # index 0 平, 1 仄 in tone tables
# Flags added to a tone in the tone table (one int8 table keeps the export small): the tone is enforced,
# not nudged; a character a prompt fixes here need not fit it (a rescue's first column: metre.rescue);
# a rescue's third column, which becomes 平 where the character two before is fixed and cannot be 平;
# a column that keeps the line from 三平尾 or 孤平, or ends a line that ends 仄 (metre.guard_columns),
# where only a character of that tone alone is written (shi_rules.Tone), as at a rescue's third when it rescues.
TONE_STRICT, TONE_UNCHECKED, TONE_RESCUE, TONE_GUARD = 4, 8, 16, 32
TONE_BITS = 3                                               # the tone itself: code & TONE_BITS
PATTERN_NAMES = tuple(tone_patterns(5, 4))                  # 仄起 平起 仄起入韵 平起入韵: by index, as every shi's
FIRST_LINE_RHYMES = np.array([n.endswith("入韵") for n in PATTERN_NAMES])   # line 1 rhymes too
# where a rhyme group starts: 平水韵, ci 平, ci 仄, ci either (tunes.EITHER), 仄 / either without 入声
# for a group with 叶 slots, and 入声 alone for a group the tune rhymes in 入 (ci_rhyme.group_kind)
RHYME_KINDS = ("shi", PING, ZE, "中", ZE + "叶", "中叶", "入")
SPACES = "".join(f"\\x{{{code:x}}}" for code in range(0x110000) if chr(code).isspace())
# ^ RE2's character class of what Python's \s matches (RE2's own \s is ASCII only), dropped likewise


@dataclasses.dataclass(frozen=True)
class GraphVocabulary:
    chars: list[str]               # id -> character; '' for the special ids
    lookup: dict[str, int]         # character -> id: the vocabulary, plus traditional spellings of it
    banned: np.ndarray             # (vocab,) bool: special ids and marks, never inside a line; control
                                   # tokens and misspelled forms (tables.foreign_ids), never at all
    rhyme_membership: np.ndarray   # (vocab, groups) bool: the 平水韵 level-tone groups of each id
    ci_membership: np.ndarray      # (vocab, len(ci_rhyme.CODES)) bool: the 词林正韵 codes of each id
    can_be: np.ndarray             # (2, vocab) bool: id may be read 平 (row 0) / 仄 (row 1); unknown: neither
    tone_known: np.ndarray         # (vocab,) bool: the tone table lists the id (a fixed one it lacks fits any pattern)
    mark_ids: np.ndarray           # (len(MARKS),) id of each mark of poetgen.layout.MARKS; -1 if not in vocab
    word_tones: tuple              # the words that fix a reading (tables.VocabularyTables.word_tones): CSR arrays
    rhyme_words: tuple             # the pairs that fix a line end's group (tables.VocabularyTables.rhyme_words)


@dataclasses.dataclass(frozen=True)
class LayoutTables:
    """Every layout unrolled to `positions` slots; row f is names[f]. Padding: -1 or False.

    Rows are the shi forms, then every variant of every tune exported. A name finds an entry (a form or
    a tune); entry e's variant k (1-based) is row entry_first[e] + k - 1.
    """

    names: list[str]               # layout names: the forms, then "<tune>#<variant>"
    aliases: dict[str, int]        # every accepted name, lower-cased (Chinese names, pinyin too) -> entry
    entry_first: np.ndarray        # (entries,) row of the entry's first variant
    entry_count: np.ndarray        # (entries,) its variants (1 for a shi form)
    entry_usual: np.ndarray        # (entries,) the 1-based variant written when none is named (tunes.Tune.usual)
    entry_tune: np.ndarray         # (entries,) bool: a ci tune (the graph feeds a ci's control prefix)
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
    rhyme_group: np.ndarray        # (layouts, positions) the rhyme group of a rhyme slot (shi: 0), -1 elsewhere
    rhyme_xie: np.ndarray          # (layouts, positions) a 叶 slot: the group's 部 in the other tone
    group_kind: np.ndarray         # (layouts, groups) RHYME_KINDS row a group starts from; -1 unused
    first_line_end: np.ndarray     # (layouts, positions) last character of line 1 (rhymes in 入韵 patterns)
    has_tones: np.ndarray          # (layouts,) tone=True has 平仄 to apply (shi patterns, a tune's 平/仄)
    tone: np.ndarray               # (layouts, patterns, positions) -1 none (marks, padding, 中), else the tone
                                   # (0 平, 1 仄) plus the flags TONE_STRICT, TONE_UNCHECKED, TONE_RESCUE, TONE_GUARD
    partial_acrostic: np.ndarray   # (layouts,) an acrostic may name fewer heads than lines (a tune's clauses)
    copy_from: np.ndarray          # (layouts, positions) a 叠 phrase's slot: the position it repeats; -1 elsewhere
    left_out: tuple[str, ...] = ()  # names of the 词谱's tunes not exported (lower-cased), for a clear refusal


def vocabulary_tables(tables) -> GraphVocabulary:
    """What generation needs of a model's vocabulary tables (poetgen.tables.VocabularyTables): characters,
    banned ids, rhyme and tone."""
    from poetgen.corpus import to_simplified

    tokenizer = tables.tokenizer
    chars = [""] * len(SPECIALS) + list(tokenizer.chars) + [""] * len(tokenizer.controls)
    lookup = dict(tokenizer.index)
    # a prompt in traditional characters still encodes: every Han character the model does not know is
    # read as its simplified form, converted alone (one per line, so no phrase spans two), as
    # normalize_text converts it; a character the model knows is kept as typed (乾坤)
    han = [chr(code) for low, high in HAN_RANGES for code in range(low, high + 1)]
    simplified = to_simplified("\n".join(han)).split("\n")
    if len(simplified) == len(han):
        for spelled, plain in zip(han, simplified):
            if spelled not in lookup and plain in tokenizer.index:
                lookup[spelled] = tokenizer.index[plain]
    banned = np.zeros(tokenizer.vocab_size, bool)
    banned[banned_inside(tokenizer.index, range(len(SPECIALS)))] = True
    banned[tokenizer.char_limit:] = True   # a conditioned model's control tokens (the graph feeds no prefix)
    banned[tables.foreign_ids] = True       # forms a reader takes for misspellings (髪, 疎), as rules.Banned
    masks = tables.tone_masks
    can_be = np.stack([masks[t] for t in TONES])
    mark_ids = np.array([tokenizer.index.get(m, -1) for m in MARKS], np.int32)
    return GraphVocabulary(chars, lookup, banned, tables.rhyme_membership, tables.ci_membership, can_be,
                           tables.tone_known, mark_ids, tables.word_tones, tables.rhyme_words)


def shi_layouts() -> dict[str, Layout]:
    return {form: layout_of(form) for form in FORMS}


def rhyme_columns(shi_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph's rhyme columns: the 平水韵 groups, then the 词林正韵 codes (ci_rhyme.CODES).

    Returns RHYME_KINDS rows (the columns a rhyme group starts from: shi, ci 平, ci 仄, ci either…), the
    叶 permutation of the columns (a 叶 slot reads column i as the character's column flip[i]) and each
    kind's fallback row (ci_rhyme.fallback_kind: 入 gives way to 仄 for a prompt's 上去 rhyme).
    """
    from poetgen.ci_rhyme import CODES, fallback_kind, kind_codes
    from poetgen.ci_rhyme import FLIP

    kinds = np.zeros((len(RHYME_KINDS), shi_groups + len(CODES)), bool)
    kinds[0, :shi_groups] = True
    for k, tone in enumerate(RHYME_KINDS[1:], 1):
        kinds[k, shi_groups:] = [code in kind_codes(tone) for code in CODES]
    flip = np.concatenate([np.arange(shi_groups), shi_groups + np.array(FLIP)]).astype(np.int32)
    fallback = np.array([RHYME_KINDS.index(fallback_kind(kind)) for kind in RHYME_KINDS], np.int32)
    return kinds, flip, fallback


def layout_tables(layouts: dict[str, Layout], mark_ids: np.ndarray, aliases: dict[str, str] | None = None,
                  tunes=()) -> LayoutTables:
    """Tables of the shi `layouts` (found by name or `aliases`) and of every variant of `tunes`
    (poetgen.tunes.Tune, found by any name `--tune` accepts)."""
    variants = [v for tune in tunes for v in tune.variants]
    rows_layouts = list(layouts.values()) + [v.layout for v in variants]
    names = list(layouts) + [layout.name for layout in rows_layouts[len(layouts):]]
    first, count = list(range(len(layouts))), [1] * len(layouts)
    usual = [1] * len(layouts)
    keys = {**{n: n for n in layouts}, **(FORM_ALIASES if aliases is None else aliases)}
    entry_of = {key.lower(): list(layouts).index(target) for key, target in keys.items() if target in layouts}
    from poetgen.tunes import tune_table

    table = tune_table()
    shared = table.shared_keys   # refused by the CLI whatever is exported
    for tune in tunes:
        for key in spellings_of(table, tune):   # as poetgen.tunes.lookup_key spells them (the graph reads a
            entry_of.setdefault(key, len(first))   # name so); none that several tunes share (yjm), as in the CLI
        first.append(first[-1] + count[-1] if first else 0)
        count.append(len(tune.variants))
        usual.append(tune.usual)
    rows, positions = len(rows_layouts), max(layout.length for layout in rows_layouts)
    lines = max(layout.line_count for layout in rows_layouts)
    groups = max([1] + [v.group_count for v in variants])
    slot = np.int16 if positions < 2**15 else np.int32   # per-position tables are the bulk of the export

    def full(shape, value, dtype=np.int32):
        return np.full(shape, value, dtype)

    t = dict(length=full(rows, 0), line_count=full(rows, 0), line=full((rows, positions), -1, slot),
             column=full((rows, positions), -1, slot), char_slots=full((rows, positions), -1, slot),
             line_starts=full((rows, lines), -1), line_ends=full((rows, lines), -1), end_ids=full((rows, lines), -1),
             accepted=full((rows, lines, len(MARKS)), False, bool), rhyme_slot=full((rows, positions), False, bool),
             rhyme_group=full((rows, positions), -1, np.int8), rhyme_xie=full((rows, positions), False, bool),
             group_kind=full((rows, groups), -1, np.int8),
             first_line_end=full((rows, positions), False, bool), has_tones=full(rows, False, bool),
             tone=full((rows, len(PATTERN_NAMES), positions), -1, np.int8),
             partial_acrostic=full(rows, False, bool),
             copy_from=full((rows, positions), -1, slot))
    for f, layout in enumerate(rows_layouts):
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
        if f < len(layouts):
            _shi_rhyme_and_tone(t, f, layout)
        else:
            _tune_rhyme_and_tone(t, f, variants[f - len(layouts)], slots)
    exported = {tune.name for tune in tunes}
    left_out = sorted({key for tune in table.tunes if tune.name not in exported
                       for key in spellings_of(table, tune)} - set(entry_of) - shared)
    return LayoutTables(names, entry_of, np.array(first, np.int32), np.array(count, np.int32),
                        np.array(usual, np.int32), np.arange(len(first)) >= len(layouts), **t,
                        left_out=tuple(left_out))


def spellings_of(table, tune) -> list[str]:
    """Every lookup key that finds `tune` (poetgen.tunes.Tune) as `--tune` finds it: the table's keys, and the
    spellings of its Han names in traditional or variant characters that the table reads through OpenCC t2s
    (浣谿沙 for 浣溪沙): each character's forms that t2s turns into it (corpus.traditional_forms) tried, and
    those kept that TuneTable.find, the CLI's lookup, gives this tune (a name the 谱 has as typed stays its
    own: 徵招 is not 征招). The graph does no t2s, so its table holds them all."""
    from poetgen.tunes import lookup_key

    keys, forms = table.keys_of(tune), traditional_forms()
    for name in [key for key in keys if any(is_han(ch) for ch in key)]:
        for spelling in map("".join, itertools.product(*[(ch, *forms.get(ch, ())) for ch in name])):
            if spelling != name and table.find(spelling) is tune:
                keys.append(lookup_key(spelling))
    return list(dict.fromkeys(keys))


def _shi_rhyme_and_tone(t: dict, f: int, layout: Layout) -> None:
    """One 平水韵 group for the rhyme lines; the four standard 平仄 patterns of a regular shi."""
    t["rhyme_group"][f] = np.where(t["rhyme_slot"][f], 0, -1)
    t["group_kind"][f, 0] = 0
    length = layout.uniform_length
    if length in (5, 7) and layout.line_count in (4, 8):
        t["has_tones"][f] = True
        for k, lines_pattern in enumerate(tone_patterns(length, layout.line_count).values()):
            for p, (i, c) in enumerate(layout.positions):
                if c >= 0:
                    t["tone"][f, k, p] = tone_code(lines_pattern[i], c)


def tone_code(line: str, column: int) -> int:
    """The tone table's entry for a column of a line of a 平仄 pattern (see TONE_STRICT)."""
    first, third = rescue(line) or (None, None)
    return (TONES.index(line[column]) | (TONE_STRICT if column in strict_columns(line) else 0)
            | (TONE_UNCHECKED if column == first else 0) | (TONE_RESCUE if column == third else 0)
            | (TONE_GUARD if column in guard_columns(line) else 0))


def _tune_rhyme_and_tone(t: dict, f: int, variant, slots: list[int]) -> None:
    """A tune variant (as ci_rules reads it): its rhyme groups by 词林正韵 部, 叶 slots, its 平/仄
    positions enforced (中 free), the same in every pattern row, and its 叠 phrases' sources."""
    from poetgen.ci_rhyme import group_kind

    t["partial_acrostic"][f] = True
    t["rhyme_slot"][f] = False
    for s in variant.steered_rhymes:   # the rhyme slots, and 转应's source (tunes.Variant.steered_rhymes)
        pos = slots[s.pos]
        t["rhyme_slot"][f, pos], t["rhyme_group"][f, pos], t["rhyme_xie"][f, pos] = s in variant.rhymes, s.group, s.xie
    for group in range(variant.group_count):
        t["group_kind"][f, group] = RHYME_KINDS.index(group_kind(variant, group))
    for k, tone in enumerate(variant.tones):
        if tone in TONES:
            t["tone"][f, :, slots[k]] = TONES.index(tone) | TONE_STRICT
            t["has_tones"][f] = True
    t["first_line_end"][f] = False
    for position, source in variant.repeats:   # as ci_rules.CiRepeat: the prompt's and acrostic's come first
        t["copy_from"][f, slots[position]] = slots[source]


def control_prefixes(tokenizer, layouts: LayoutTables, tunes=()) -> np.ndarray:
    """(entries, 2) ids a conditioned model reads before the poem, as `poetgen generate` feeds them: a shi
    form as a Tang shi of that form (the CLI's default style), a tune as a ci with the tune's token (or
    the generic one); (entries, 0) for a model without control tokens."""
    from poetgen.control import DEFAULT_STYLE, Prefixer

    prefixer = Prefixer(tokenizer)
    shi = len(layouts.entry_tune) - len(tunes)
    rows = [prefixer.for_request(DEFAULT_STYLE, layouts.names[layouts.entry_first[e]]) for e in range(shi)]
    rows = np.array(rows, np.int32).reshape(len(rows), -1)
    return np.concatenate([rows, tune_prefixes(tokenizer, tunes).reshape(len(tunes), rows.shape[1])])


def tune_prefixes(tokenizer, tunes) -> np.ndarray:
    """(tunes, 2) ids a conditioned model reads before a ci of each tune (poetgen.tunes.Tune), as `poetgen
    generate --tune` feeds them: <ci>, then the token of the first of the tune's names the model has one for
    (control.tune_label), else <anytune>; (tunes, 0) for a model without control tokens."""
    from poetgen.control import Prefixer, tune_label

    prefixer = Prefixer(tokenizer)
    rows = [prefixer.for_request("ci", "ci", tune_label(tokenizer, tune.labels)) for tune in tunes]
    return np.array(rows, np.int32).reshape(len(rows), 2 if prefixer.enabled else 0)


def prefix_tables(tokenizer, layouts: LayoutTables) -> dict[str, np.ndarray]:
    """What a loop around model.tflite needs to feed a conditioned model the prefix `poetgen generate` feeds
    (see README, TFLite): every control token and its id, each layout row's prefix (a Tang shi of that form,
    the CLI's default style) and each 词谱 tune's (by its name in the 词谱); empty for a model without
    control tokens."""
    from poetgen.tunes import tune_table

    tunes = tune_table().tunes
    controls = list(tokenizer.controls)
    return {"control_tokens": np.array(controls, dtype=str),
            "control_ids": np.array([tokenizer.control_id(token) for token in controls], np.int32),
            "layout_prefix": control_prefixes(tokenizer, layouts),
            "tune_names": np.array([tune.name for tune in tunes], dtype=str),
            "tune_prefix": tune_prefixes(tokenizer, tunes)}


def write_tables(path, vocabulary: GraphVocabulary, layouts: LayoutTables, prefixes: dict | None = None) -> None:
    """Everything a generation loop around model.tflite needs, in one .npz (see README, TFLite), with
    `prefixes` (prefix_tables) for a conditioned model's control prefix."""
    arrays = {f"layout_{k}": v for k, v in dataclasses.asdict(layouts).items() if isinstance(v, np.ndarray)}
    arrays.update(prefixes or {})
    arrays.update(layout_names=np.array(layouts.names), chars=np.array(vocabulary.chars),
                  banned=vocabulary.banned, rhyme_membership=vocabulary.rhyme_membership,
                  can_be=vocabulary.can_be, mark_ids=vocabulary.mark_ids, marks=np.array(list(MARKS)))
    arrays.update(zip(("word_starts", "word_seconds", "word_codes"), vocabulary.word_tones))
    arrays.update(zip(("rhyme_word_starts", "rhyme_word_lasts", "rhyme_word_groups"), vocabulary.rhyme_words))
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
