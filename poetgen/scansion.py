"""Scans a poem someone wrote against its form: a regular shi's rhyme and 平仄 pattern, or a ci against the
variant of its tune it fits best, line by line, with every position that breaks them and why.

It reads the checkers' verdicts (checks.check_poem, ci_checks.check_against_tune), by every attested
reading as they do; it does not judge meaning or fluency, and it loads no model.
"""

from __future__ import annotations

import dataclasses

from poetgen.checks import check_poem, first_line_fault
from poetgen.ci_checks import check_against_tune, check_ci, han_chars, normalize_marks
from poetgen.corpus import is_han, normalize_text
from poetgen.errors import BadInput
from poetgen.layout import FORM_ALIASES, FORMS, MARKS, clauses, form_of, layout_of
from poetgen.prosody import PING, ZE, strict_columns, table, tone_patterns
from poetgen.tunes import EITHER as EITHER_TONE
from poetgen.tunes import lookup_key

FORM_NAMES = {"wujue": "五言绝句", "qijue": "七言绝句", "wulv": "五言律诗", "qilv": "七言律诗"}
MAX_SCANNED = 2000   # characters of a poem scanned at most (the longest tune has 240)


@dataclasses.dataclass(frozen=True)
class ScannedLine:
    text: str                  # the line with its end mark
    pattern: str               # per character: 平 or 仄 where the form fixes it, 中 where it leaves it free
    faults: tuple[int, ...]    # 0-based columns whose character cannot be read in the tone asked there
    rhyme: bool | None         # the line ends at a rhyme: True when it fits, False when not; None: no rhyme


@dataclasses.dataclass(frozen=True)
class Scansion:
    genre: str                 # "shi" or "ci"
    form: str                  # a shi form (wujue … qilv) or the tune's name
    variant: int | None        # the tune variant (格) read against, 1-based; None for shi
    layout_ok: bool            # line count, lengths and end marks of the form (the variant's clauses for ci)
    rhyme_ok: bool | None      # every rhyme position fits one group (平水韵 for shi, 词林正韵 部 for ci)
    rhyme_group: str | None    # that group: 下平十一尤, 入九屑 (a 仄韵 shi), 第七部平 …
    tone_pattern: str | None   # the standard pattern a shi fits best (仄起, 平起入韵 …); None for ci
    tone_score: float          # share of the fixed positions whose character fits
    lines: tuple[ScannedLine, ...]

    @property
    def faults(self) -> int:
        """Positions that break the 平仄, and rhyme positions that break the rhyme."""
        return sum(len(line.faults) + (line.rhyme is False) for line in self.lines)

    def to_dict(self) -> dict:
        """As `poetgen check --format json` writes it: plain lists, and the count of faults."""
        lines = [{**dataclasses.asdict(line), "faults": list(line.faults)} for line in self.lines]
        return {**dataclasses.asdict(self), "lines": lines, "faults": self.faults}

    def __str__(self) -> str:
        return report(self)


def scan(text: str, form: str | None = None, tune: str | None = None, variant: int | None = None) -> Scansion:
    """The scansion of `text` as `form` (a shi form; found from its line lengths when neither it nor a
    tune is given) or as a ci of `tune` (against `variant`, or the variant it fits best). BadInput names
    what cannot be scanned: no text, a form and a tune both, a shape no regular form has."""
    if not isinstance(text, str):
        raise BadInput(f"the poem must be text, not {type(text).__name__}", field="text")
    poem = _prepared(text)
    if tune and "#" in tune:   # 浣溪沙#3, as errors, `tunes` and the SavedModel spell a variant
        if variant is not None:
            raise BadInput("give the variant once: 浣溪沙#3 or variant 3", field="variant")
        tune, _, number = tune.partition("#")
        if not number.strip().isdigit() or int(number) < 1:
            raise BadInput(f"{tune}#{number}: the variant after # must be a number from 1", field="variant")
        variant = int(number)
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
    if tune:
        return _scan_ci(poem, tune, variant)
    found = form or form_of(poem)
    if found not in FORMS:
        lengths = "/".join(str(len(line) - 1) for line in clauses(poem))
        raise BadInput(f"lines of {lengths} characters are no regular shi form (五绝, 七绝, 五律, 七律: four or eight "
                       f"lines of five or seven); for a ci give its tune (--tune)", field="form")
    return _scan_shi(poem, found)


def _prepared(text: str) -> str:
    """The poem with full-width marks and no spaces; lines given without marks (one per line) are closed
    with ， and 。 in turn, as a couplet is punctuated."""
    rows = [normalize_text(row, simplify=False) for row in text.strip().splitlines()]
    rows = [row for row in rows if row]
    if not any(is_han(ch) for row in rows for ch in row):
        raise BadInput("no poem to scan: give its text in Chinese characters (or - to read it from stdin)",
                       field="text")
    if len(rows) > 1 and not any(ch in MARKS for ch in "".join(rows)):
        rows = [row + ("，" if i % 2 == 0 else "。") for i, row in enumerate(rows)]
    poem = "".join(rows)
    if len(poem) > MAX_SCANNED:
        raise BadInput(f"a poem of {len(poem)} characters: at most {MAX_SCANNED} are scanned", field="text")
    if poem[-1] not in MARKS:
        poem += "。"
    return poem


def _scan_shi(poem: str, form: str) -> Scansion:
    prosody, layout = table(), layout_of(form)
    check = check_poem(poem, form, prosody)
    lines = clauses(poem)
    if not check.layout_ok:
        return Scansion("shi", form, None, False, None, None, None, 0.0,
                        tuple(ScannedLine(line, EITHER_TONE * (len(line) - 1), (), None) for line in lines))
    pattern = tone_patterns(layout.uniform_length, layout.line_count)[check.tone_pattern]
    rhyming = set(layout.rhyme_lines) | ({0} if check.tone_pattern.endswith("入韵") else set())
    # a 平 end of line 1 off the rhyme (朝辞白帝彩云东 in a 删 poem) counts against its last 平仄 position
    # (checks.first_line_fault): shown here as the rhyme it breaks, not as a tone it has
    off_rhyme = first_line_fault(lines, prosody, layout, check.rhyme_group)
    fits, scanned = list(check.tone_positions), []
    for i, line in enumerate(lines):
        columns = strict_columns(pattern[i])
        line_fits, fits = fits[:len(columns)], fits[len(columns):]
        if i == 0 and off_rhyme:
            line_fits[-1] = True
        shown = "".join(pattern[i][c] if c in columns else EITHER_TONE for c in range(len(pattern[i])))
        rhyme = None
        if i in rhyming:
            rhyme = bool(check.rhyme_ok) if i in layout.rhyme_lines else not off_rhyme and line_fits[-1]
        scanned.append(ScannedLine(line, shown, tuple(c for c, ok in zip(columns, line_fits) if not ok), rhyme))
    return Scansion("shi", form, None, True, check.rhyme_ok, check.rhyme_group, check.tone_pattern,
                    check.tone_score, tuple(scanned))


def _scan_ci(poem: str, tune_name: str, number: int | None) -> Scansion:
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.tunes import tune_table

    tune, prosody, rhyme = tune_table().get(tune_name), table(), ci_rhyme()
    if number is not None:
        check = check_ci(poem, tune.variant(number, tune_name), prosody, rhyme)
    else:
        check = check_against_tune(poem, tune, prosody, rhyme)
    variant = tune.variants[check.variant - 1]
    if not check.chars_ok:
        count = len(han_chars(normalize_marks(poem)))
        lengths = sorted({v.length for v in tune.variants})
        raise BadInput(f"{count} characters: {tune.name}'s variants have {', '.join(map(str, lengths))}"
                       + ("" if number is None else f" (variant {number}: {variant.length})"), field="text")
    chars = han_chars(normalize_marks(poem))
    own = variant.layout.lines(normalize_marks(poem))   # the poem's own marks where its clauses are the variant's
    tone_at = [pos for pos, tone in enumerate(variant.tones) if tone != EITHER_TONE]
    broken = {pos for pos, ok in zip(tone_at, check.tone_positions) if not ok}
    rhyme_at = {slot.pos: ok for slot, ok in zip(variant.rhymes, check.rhyme_positions)}
    scanned, start = [], 0
    for i, (length, mark) in enumerate(zip(variant.line_lengths, variant.marks)):
        positions = range(start, start + length)
        scanned.append(ScannedLine(own[i] if own else chars[start:start + length] + ("，" if mark == "、" else mark),
                                   variant.tones[start:start + length],
                                   tuple(p - start for p in positions if p in broken), rhyme_at.get(start + length - 1)))
        start += length
    return Scansion("ci", tune.name, variant.number, check.layout_ok, check.rhyme_ok,
                    "、".join(check.rhyme_parts or []) or None, None, check.tone_score, tuple(scanned))


def report(scansion: Scansion) -> str:
    """The scansion as text: a head line, then each line with its pattern and what breaks it."""
    prosody = table()
    if scansion.genre == "shi":
        head = [FORM_NAMES[scansion.form]] + ([scansion.tone_pattern] if scansion.tone_pattern else [])
    else:
        head = [scansion.form, f"variant {scansion.variant}"]
    fixed = sum(sum(tone != EITHER_TONE for tone in line.pattern) for line in scansion.lines)
    fitting = fixed - sum(len(line.faults) for line in scansion.lines)
    head.append("layout ok" if scansion.layout_ok else "layout off (lines or marks differ from the form's)")
    if scansion.rhyme_ok is not None:
        head.append(f"rhyme {scansion.rhyme_group} ok" if scansion.rhyme_ok else
                    f"rhyme broken ({scansion.rhyme_group})" if scansion.rhyme_group else "no shared rhyme")
    head.append(f"平仄 {fitting}/{fixed}")
    if scansion.genre == "shi" and scansion.rhyme_ok and scansion.rhyme_group not in prosody.level_groups:
        head.append("仄韵 (古绝): the 平仄 shown is regular verse's, which rhymes 平")
    rows = [" · ".join(head)]
    width = max(len(line.text) for line in scansion.lines)
    for line in scansion.lines:
        notes = [f"{line.text[c]} reads {_tones(line.text[c], prosody)}, {line.pattern[c]} asked" for c in line.faults]
        if line.rhyme is not None:
            notes.insert(0, "韵" if line.rhyme else "韵 ✗ (off the rhyme)")
        row = f"{line.text}{'　' * (width - len(line.text))}  {line.pattern}"
        rows.append(row + (f"  {'; '.join(notes)}" if notes else ""))
    return "\n".join(rows)


def _tones(ch: str, prosody) -> str:
    tones = prosody.tones(ch)
    return "平 or 仄" if tones == {PING, ZE} else next(iter(tones)) if tones else "? (not in the rhyme table)"
