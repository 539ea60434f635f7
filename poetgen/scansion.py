"""Scans a poem someone wrote against its form: a regular shi's rhyme and 平仄 pattern, or a ci against the
variant of its tune it fits best, line by line, with every position that breaks them and why.

It reads the checkers' verdicts (checks.check_poem, ci_checks.check_against_tunes), by every attested
reading as they do, and names 失粘 and 失对 where each couplet, or each line, fits alone; it does not judge
meaning or fluency, and it loads no model.
"""

from __future__ import annotations

import collections
import dataclasses
import re

from poetgen.checks import check_poem, first_line_fault, pattern_fits
from poetgen.ci_checks import check_against_tunes, check_ci, han_chars, normalize_marks
from poetgen.ci_rhyme import ci_rhyme
from poetgen.corpus import is_han, normalize_text, to_simplified
from poetgen.errors import BadInput
from poetgen.layout import FORM_ALIASES, FORMS, MARKS, clauses, form_of, layout_of
from poetgen.metre import strict_columns, tone_patterns
from poetgen.prosody import neighbours, table
from poetgen.readers import verses_of
from poetgen.scansion_heads import ci_heads, shi_heads, tunes_named, under_heads
from poetgen.scansion_report import position_counts, report
from poetgen.tunes import EITHER as EITHER_TONE
from poetgen.tunes import lookup_key, variant_spelling

MAX_SCANNED = 2000   # characters of a poem scanned at most (the longest tune has 240)
STOPS = "。？！"       # marks that may end a poem
# a trailing attribution: ——晏殊, —— 李白, （晏殊）, (王维)
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff]")   # zero-width spaces and joiners, marks of direction, a BOM
_ELLIPSIS = re.compile(r"(?:[…⋯]|\.{3})+")                   # an ellipsis closes a line as 。 does
_ATTRIBUTION = re.compile(r"([，。？！；：、,.?!;:\n]\s*)(?:[—－-]{1,2}\s*[^\s，。？！；：、,.?!;:]{1,12}|[（(][^）)\n]{1,12}[）)])\s*$")


@dataclasses.dataclass(frozen=True)
class ScannedLine:
    text: str                  # the line with its end mark, as written
    read: str                  # the same as the checker read it (迴 as 回: prosody's spellings), mark included
    pattern: str               # per character: 平 or 仄 where the form fixes it, 中 where it leaves it free
    faults: tuple[int, ...]    # 0-based columns whose character cannot be read in the tone asked there
    rhyme: bool | None         # the line ends at a rhyme: True when it fits, False when not; None: no rhyme
    unglued: bool = False      # 失粘: its second character's tone is not the line before's, as 粘 asks
    unpaired: bool = False     # 失对: a couplet's second line whose second character's tone is its first line's


@dataclasses.dataclass(frozen=True)
class Scansion:
    genre: str                 # "shi" or "ci"
    form: str                  # a shi form (wujue … qilv) or the tune's name
    variant: int | None        # the tune variant (格) read against, 1-based; None for shi
    layout_ok: bool            # line count, lengths and end marks of the form (the variant's clauses for ci)
    rhyme_ok: bool | None      # every rhyme position fits one group (平水韵 for shi, 词林正韵 部 for ci)
    rhyme_group: str | None    # that group (the one most rhyme lines share when one is off): 下平十一尤 …
    tone_pattern: str | None   # the standard pattern a shi fits best (仄起, 平起入韵 …); None for ci and 仄韵
    tone_score: float | None   # share of the fixed positions whose character fits; None: not judged (仄韵 shi)
    lines: tuple[ScannedLine, ...]
    unknown: str = ""          # characters the rhyme table lacks (nor their simplified form): not judged
    repeat_ok: bool | None = None   # a ci's 叠 phrases repeat the characters before them (None: it has none)
    read_as: str = ""          # why a ci was read as another tune than its name finds (乌夜啼 as 相见欢), else ""
    left_out: tuple[str, ...] = ()   # head lines above the poem not scanned: a title, tune name or author

    @property
    def faults(self) -> int:
        """Positions that break the 平仄, rhyme positions that break the rhyme, and lines that break 粘."""
        return sum(len(line.faults) + (line.rhyme is False) + line.unglued + line.unpaired for line in self.lines)

    @property
    def ok(self) -> bool:
        """The poem keeps its form everywhere: its layout, every fixed 平仄 position and every rhyme."""
        return self.layout_ok and not self.faults and self.repeat_ok is not False

    def to_dict(self) -> dict:
        """As `poetgen check --format json` writes it: plain lists, the count of faults and `ok`."""
        lines = [{**dataclasses.asdict(line), "faults": list(line.faults)} for line in self.lines]
        return {**dataclasses.asdict(self), "lines": lines, "left_out": list(self.left_out), "faults": self.faults,
                "ok": self.ok}

    def __str__(self) -> str:
        return report(self)


def scan(text: str, form: str | None = None, tune: str | None = None, variant: int | None = None) -> Scansion:
    """The scansion of `text` as `form` (a shi form; found from its line lengths when neither it nor a
    tune is given) or as a ci of `tune` (against `variant`, or the variant it fits best). BadInput names
    what cannot be scanned: no text, a form and a tune both, a shape no regular form has."""
    if not isinstance(text, str):
        raise BadInput(f"the poem must be text, not {type(text).__name__}", field="text")
    if isinstance(tune, str) and tune and not tune.strip():   # given, but blank: refused, not read as shi
        from poetgen.request import blank   # (as generate refuses it; "" is left out, as a request reads it)

        raise blank("tune")
    _prepared(text)   # what is no poem at all is refused as typed, before its form is read
    tune = variant_spelling(tune) or None if isinstance(tune, str) else tune
    if tune and "#" in tune:   # 浣溪沙#3, as errors, `tunes` and the SavedModel spell a variant
        if variant is not None:
            raise BadInput("give the variant once: 浣溪沙#3 or variant 3", field="variant")
        tune, _, number = tune.partition("#")
        try:
            variant = int(number) if number.strip().isdecimal() else 0   # ２ as 2; ² is no number
        except ValueError:
            variant = 0
        if variant < 1:
            raise BadInput(f"{tune}#{number}: the variant after # must be a number from 1", field="variant")
    if form is not None:
        key = lookup_key(form)   # as requests read a form: Qi Jue, QIJUE, 七绝
        form = FORM_ALIASES.get(key, key) if form.strip() else form
        if form not in FORMS:
            raise BadInput(f"form must be one of {', '.join(FORMS)} ({' '.join(FORM_ALIASES)}), not {form!r}",
                           field="form")
    if form and tune:
        raise BadInput("give a shi form or a ci tune, not both", field="tune")
    if variant is not None and not tune:
        raise BadInput("a variant belongs to a tune: give the tune too", field="variant")
    lines = _typed_lines(text)   # 静夜思 or 浣溪沙 / 宋·苏轼 above the poem: left out where only the rest is one
    if tune:
        readings = tunes_named(tune)
        return under_heads(text, lines, lambda typed: _scan_ci(*_prepared(typed), tune, variant),
                           lambda heads, _: ci_heads(heads, readings))
    return under_heads(text, lines, lambda typed: _scan_typed_shi(typed, form),
                       lambda heads, scansion: shi_heads(heads, layout_of(scansion.form).uniform_length))


def _scan_typed_shi(text: str, form: str | None) -> Scansion:
    """`text` scanned as `form`, or as the form its lines' lengths have; BadInput when they have none."""
    poem = _lines_by_length(_prepared(text)[0], form)
    found = form or form_of(poem)
    if found not in FORMS:
        lengths = [str(len(line) - 1) for line in clauses(poem)]
        lengths = "/".join(lengths) if len(lengths) <= 16 else "/".join(lengths[:12]) + f"/… ({len(lengths)} lines)"
        raise BadInput(f"lines of {lengths} characters are no regular shi form (五绝, 七绝, 五律, 七律: four or eight "
                       f"lines of five or seven); for a ci give its tune", field="form")
    return _scan_shi(poem, found)


def _lines_by_length(poem: str, form: str | None) -> str:
    """A poem typed without marks, on one line or a couplet a line (床前明月光疑是地上霜…), cut into the
    lines of its form, which `form` gives or its length says (20, 28, 40 or 56 characters); any other
    poem as it is."""
    rows = [line[:-1] for line in clauses(poem)]
    count = sum(len(row) for row in rows)
    name = form or next((f for f in FORMS if sum(layout_of(f).line_lengths) == count), None)
    if name is None or "".join(clauses(poem)) != poem or all(len(row) <= 7 for row in rows):
        return poem
    layout = layout_of(name)
    size = layout.uniform_length
    if count != sum(layout.line_lengths) or any(len(row) % size for row in rows):
        return poem
    text = "".join(rows)
    return "".join(text[i * size:(i + 1) * size] + mark for i, mark in enumerate(layout.end_marks))


def _prepared(text: str) -> tuple[str, bool]:
    """The poem with full-width marks: a byte-order mark, a trailing attribution (——晏殊) and repeated marks
    dropped; rows or space-separated runs without an end mark are closed, with ， and 。 in turn when the
    poem has no mark but a closing one (one line per line, as people type a poem), and the poem ends with
    a stop.
    And whether it was typed with marks of its own, a closing one aside (a ci without them is laid on its
    variant's clauses)."""
    text = _ATTRIBUTION.sub(r"\1", "\n".join(_typed_lines(text)))
    rows = [part for raw in text.splitlines() for part in re.split(r"[\s\u3000]+", raw.strip()) if part]
    rows = [row for row in (normalize_text(row, simplify=False) for row in rows) if row]
    if not any(is_han(ch) for row in rows for ch in row):
        raise BadInput("no poem to scan: give its text in Chinese characters", field="text")
    marked = any(ch in MARKS for ch in "".join(rows).rstrip(MARKS))   # a closing stop alone marks no clause
    rows = [row if row[-1] in MARKS else row + ("。" if marked or i % 2 else "，") for i, row in enumerate(rows)]
    poem = re.sub(f"([{MARKS}])[{MARKS}]+", r"\1", "".join(rows)).lstrip(MARKS)
    if len(poem) > MAX_SCANNED:
        raise BadInput(f"a poem of {len(poem)} characters: at most {MAX_SCANNED} are scanned", field="text")
    return (poem[:-1] + "。" if poem[-1] not in STOPS else poem), marked


def _typed_lines(text: str) -> list[str]:
    """The poem's lines as typed, its title and author dropped where corpus import drops them (江雪 / 柳宗元
    above it: readers.verses_of), blank lines and invisible characters left out."""
    text = _ELLIPSIS.sub("。", _INVISIBLE.sub("", text).strip())   # 更上一层楼…… ends the poem; inside, a line
    lines = [line for line in text.splitlines() if line.strip()]
    return verses_of(lines).splitlines() if len(lines) > 1 else lines


def _readable(text: str, prosody) -> tuple[str, str]:
    """`text` with each character the table lacks read as its simplified form where the table has that
    (迴 as 回, 盃 as 杯, 牀 as 床), and the characters still unknown."""
    read, unknown = [], []
    for ch in text:
        if ch in MARKS or prosody.tones(ch):
            read.append(ch)
            continue
        plain = to_simplified(ch)
        known = len(plain) == 1 and bool(prosody.tones(plain))
        read.append(plain if known else ch)
        if not known and is_han(ch):
            unknown.append(ch)
    return "".join(read), "".join(dict.fromkeys(unknown))


def _scan_shi(poem: str, form: str) -> Scansion:
    prosody, layout = table(), layout_of(form)
    lines = clauses(poem)
    if not layout.fits(poem) and layout.has_lengths_of(poem):   # its own marks (all ， or all 。): the form's
        lines = [line[:-1] + mark for line, mark in zip(lines, layout.end_marks)]
    read, unknown = _readable("".join(lines), prosody)
    read_lines = clauses(read)
    check = check_poem(read, form, prosody)
    if not check.layout_ok:
        return Scansion("shi", form, None, False, None, None, None, None,
                        tuple(ScannedLine(line, seen, EITHER_TONE * (len(line) - 1), (), None)
                              for line, seen in zip(lines, read_lines)), unknown)
    group, rhymes = _shi_rhymes(read_lines, layout, prosody, check)
    if group is not None and group not in prosody.level_groups:   # 仄韵: a 古绝, not held to regular verse's patterns
        scanned = [ScannedLine(line, seen, EITHER_TONE * (len(line) - 1), (), rhymes.get(i))
                   for i, (line, seen) in enumerate(zip(lines, read_lines))]
        return Scansion("shi", form, None, True, _all(rhymes), group, None, None, tuple(scanned), unknown)
    pattern = tone_patterns(layout.uniform_length, layout.line_count)[check.tone_pattern]
    # a 平 end of line 1 off the rhyme (朝辞白帝彩云东 in a 删 poem) counts against its last 平仄 position
    # (checks.first_line_fault): shown here as the rhyme it breaks, not as a tone it has
    off_rhyme = first_line_fault(read_lines, prosody, layout, check.rhyme_group)
    if check.tone_pattern.endswith("入韵") and prosody.tones(read_lines[0][-2]):   # a neighbour group too
        rhymes[0] = not off_rhyme and rhymes.get(0, True) is not False   # (借邻韵, as checks.first_line_fault)
    fits, scanned = list(check.tone_positions), []
    for i, (line, seen) in enumerate(zip(lines, read_lines)):
        columns = strict_columns(pattern[i])
        line_fits, fits = fits[:len(columns)], fits[len(columns):]
        if i == 0 and off_rhyme:
            line_fits[-1] = True
        shown = "".join(pattern[i][c] if c in columns else EITHER_TONE for c in range(len(pattern[i])))
        faults = tuple(c for c, ok in zip(columns, line_fits) if not ok)
        scanned.append(ScannedLine(line, seen, shown, faults, rhymes.get(i)))
    name = check.tone_pattern
    couplets = None if off_rhyme or not any(line.faults for line in scanned) else _couplets(read_lines, prosody)
    if couplets is not None and sum(glue + pair for _, glue, pair in couplets) < sum(len(line.faults) for line in scanned):
        scanned = [dataclasses.replace(line, pattern="".join(t if c in strict_columns(shape) else EITHER_TONE
                                                             for c, t in enumerate(shape)), faults=(),
                                       unglued=unglued, unpaired=unpaired)
                   for line, (shape, unglued, unpaired) in zip(scanned, couplets)]
        name = "、".join(fault for fault, seen in (("失粘", any(line.unglued for line in scanned)),
                                                  ("失对", any(line.unpaired for line in scanned))) if seen)
    return Scansion("shi", form, None, True, _all(rhymes), group, name, _score(scanned), tuple(scanned), unknown)


def _couplets(lines: list[str], prosody) -> list[tuple[str, bool, bool]] | None:
    """When every couplet fits a standard couplet of its place whole, or its two lines each fit a line of
    one alone, but the poem fits no whole pattern: each line's pattern, whether it breaks 粘 (a couplet's
    first line takes the second character's tone of the line before it: 王维's 劝君更尽一杯酒 does not), and
    whether it breaks 对 (a couplet's second line takes the other tone there: 失对 where both lines take
    one). None when some couplet's lines do not fit so (the faults are then its own, as the whole pattern
    reads them). Of several shapes that fit, whole couplets come first, then those keeping 粘."""
    n, count = len(lines[0]) - 1, len(lines)
    patterns = tone_patterns(n, count).values()
    chosen: list[tuple[str, bool, bool]] = []
    for k in range(0, count, 2):
        places = [0] if k == 0 else range(2, count, 2)   # line 1's 入韵 forms are the first couplet's alone
        bodies = [line[:-1] for line in lines[k:k + 2]]
        shapes = sorted({(pattern[j], pattern[j + 1]) for pattern in patterns for j in places})
        fitting = [shape for shape in shapes if all(pattern_fits(bodies, list(shape), n, prosody))]
        paired = bool(fitting)
        if not paired:   # 失对? each line fits a line of its place alone, the two not opposed
            firsts, seconds = ({pattern[j + d] for pattern in patterns for j in places} for d in (0, 1))
            fitting = [(first, second) for first in sorted(firsts) for second in sorted(seconds)
                       if all(pattern_fits(bodies, [first, second], n, prosody))]
            if not fitting:
                return None
        glued = [shape for shape in fitting if not chosen or shape[0][1] == chosen[-1][0][1]]
        first, second = (glued or fitting)[0]
        chosen += [(first, bool(chosen) and not glued, False), (second, False, not paired)]
    return chosen


def _all(rhymes: dict) -> bool:
    """Every rhyme judged fits (one not judged, an unknown character's, is left out)."""
    return all(ok is not False for ok in rhymes.values())


def _score(lines) -> float:
    """The share of fixed positions whose character fits, as the lines show them."""
    fixed, broken = position_counts(lines)
    return 1.0 - broken / fixed if fixed else 1.0


def _shi_rhymes(lines: list[str], layout, prosody, check) -> tuple[str | None, dict[int, bool | None]]:
    """The poem's rhyme group and, per rhyme line, whether it fits: the checker's group when all fit;
    else the group most rhyme lines share (a level one before a 仄 one; a 入韵 line 1 votes too; the one
    level line's where no group has two and the others read 仄 only), the lines outside it off, a
    character that rhymes a second time (重韵) off too, and one the table lacks
    not judged (None)."""
    rhyming = ([0] if check.tone_pattern and check.tone_pattern.endswith("入韵") else []) + list(layout.rhyme_lines)
    ends = {i: lines[i][-2] for i in dict.fromkeys(rhyming)}
    known = {i: ch for i, ch in ends.items() if prosody.tones(ch)}
    if check.rhyme_ok:
        return check.rhyme_group, dict.fromkeys(layout.rhyme_lines, True)
    group = None
    for groups_of in (prosody.rhyme_groups, prosody.oblique_groups):
        votes = collections.Counter(g for ch in known.values() for g in groups_of(ch))
        if votes and max(votes.values()) >= min(2, len(known)):
            group = min(votes, key=lambda g: (-votes[g], g))
            break
    level = {ch for ch in known.values() if prosody.rhyme_groups(ch)}
    if group is None and len(level) == 1:   # one rhyme line can be 平, the rest only 仄: regular verse rhymes 平
        group = min(prosody.rhyme_groups(level.pop()))
    seen, fits = set(), {}
    for i, ch in ends.items():
        if i not in known:
            fits[i] = None
            continue
        groups = prosody.rhyme_groups(ch) | prosody.oblique_groups(ch)
        if i == 0 and i not in layout.rhyme_lines and group in prosody.level_groups:
            groups = neighbours(groups & set(prosody.level_groups))   # a 入韵 line 1 may borrow (借邻韵)
        fits[i] = group is not None and group in groups and ch not in seen
        seen.add(ch)
    return group, fits


def _scan_ci(poem: str, marked: bool, tune_name: str, number: int | None) -> Scansion:
    """`poem` against the tune `tune_name` finds, at variant `number`; without one, against whichever of
    the tunes the name may mean (TuneTable.readings: 乌夜啼 and 相见欢, which Song poets also called so) and
    of their variants it fits best, saying so in `read_as` when that is another tune. Each variant judges
    the poem laid on its clauses where its marks and row ends (`marked` False: it has no marks of its own)
    all fall at clause ends of it (_clauses_of): the marks it lacks between them are no fault of its
    layout, and a variant it lays on is told from one it does not, as a marked poem's are."""
    from poetgen.tunes import tune_table

    tunes, prosody, rhyme = tune_table(), table(), ci_rhyme()
    readings = tunes.readings(tune_name) if number is None else []
    readings = readings or [tunes.get(tune_name)]   # a variant is the named tune's; get() names an unknown one
    read, unknown = _readable(poem, prosody)

    def lay(text: str, variant) -> str:   # each variant judged with the poem laid on its own clauses
        return _clauses_of(text, variant, marked)

    if number is not None:
        asked = readings[0].variant(number, tune_name)
        check = check_ci(lay(read, asked), asked, prosody, rhyme)
    else:   # read by its own marks where the variant it fits best has their clauses: marks that fit one
        # variant exactly are not left out on another's finer clauses (a mark is evidence, as LAYOUT_WEIGHT)
        check = check_against_tunes(read, readings, prosody, rhyme) if marked else None
        if check is None or not check.layout_ok:
            check = check_against_tunes(read, readings, prosody, rhyme, lay)
    tune = next(t for t in readings if t.name == check.tune)
    variant = tune.variants[check.variant - 1]
    if not check.chars_ok:
        count = len(han_chars(normalize_marks(poem)))
        has = [f"{t.name}'s variants have {', '.join(map(str, sorted({v.length for v in t.variants})))}" for t in readings]
        raise BadInput(f"{count} characters: {'; '.join(has)}" + ("" if number is None else f" (variant {number}: "
                       f"{variant.length})"), field="text")
    read_as = "" if tune is readings[0] and tunes.find(tune_name) is tune else _read_as(tune_name, tune, readings)
    poem = lay(poem, variant)   # shown as it was judged: laid on the variant's clauses
    read = lay(read, variant)
    chars = han_chars(normalize_marks(poem))
    own = variant.layout.lines(normalize_marks(poem))   # the poem's own marks where its clauses are the variant's
    tone_at = [pos for pos, tone in enumerate(variant.tones) if tone != EITHER_TONE]
    broken = {pos for pos, ok in zip(tone_at, check.tone_positions) if not ok}
    read_chars = han_chars(normalize_marks(read))
    # an optional rhyme left unrhymed, or a character the rhyme table lacks: no rhyme judged there
    rhyme_at = {slot.pos: None if not rhyme.codes(read_chars[slot.pos]) else
                ok or (None if slot.pos in variant.optional else False)
                for slot, ok in zip(variant.rhymes, check.rhyme_positions)}
    scanned, start = [], 0
    for i, (length, mark) in enumerate(zip(variant.line_lengths, variant.marks)):
        positions = range(start, start + length)
        text = own[i] if own else chars[start:start + length] + ("，" if mark == "、" else mark)
        scanned.append(ScannedLine(text, read_chars[start:start + length] + text[-1], variant.tones[start:start + length],
                                   tuple(p - start for p in positions if p in broken), rhyme_at.get(start + length - 1)))
        start += length
    parts = [part for part in check.rhyme_parts or [] if part != "—"]   # — : a group no character of it shares
    return Scansion("ci", tune.name, variant.number, check.layout_ok, check.rhyme_ok, "、".join(parts) or None,
                    None, _score(scanned), tuple(scanned), unknown, check.repeat_ok, read_as)


def _clauses_of(poem: str, variant, marked: bool) -> str:
    """`poem` laid on the clauses of `variant` when every mark it has (its own, or one closing a row) ends
    one of them, as the prompt fitter lays a prompt (Layout.fit_prompt): the clauses it runs together (two
    a line, 鹧鸪天's 彩袖殷勤捧玉钟当年拚却醉颜红。 a row; a sentence a line; one line without marks) take
    the variant's marks, the marks it has are kept (`marked`; without marks of its own, those closing its
    rows are the variant's too); any other poem (a mark or a row end inside a clause) as it is."""
    layout = variant.layout
    try:
        lines = layout.lines(layout.fit_prompt(poem))
    except BadInput:   # a mark inside a clause, or more characters than the variant has
        return poem
    if lines is None:   # fewer characters than the variant has
        return poem
    return "".join(line if marked else line[:-1] + mark for line, mark in zip(lines, layout.end_marks))


def _read_as(name: str, tune, readings: list) -> str:
    """Why a ci titled `name` was read as `tune`, another than the one `name` finds, and how to ask for that."""
    from poetgen.tunes import tune_table

    asked = " ".join(name.split())
    lengths = "/".join(str(n) for n in sorted({v.length for v in tune.variants}))
    found = tune_table().find(name)
    if found is None:   # a key several tunes share (yjm)
        return (f"{asked} names {len(readings)} tunes ({', '.join(t.name for t in readings)}): read as {tune.name}, "
                f"whose {lengths} characters it fits best")
    own = "/".join(str(n) for n in sorted({v.length for v in found.variants}))
    return (f"read as {tune.name}, whose {lengths} characters it has: Song poets also called {tune.name} {asked}, "
            f"in the 词谱 the name of {found.name} ({own} characters; {asked}#{found.usual} holds it to that tune)")
