"""Checks a finished poem against its form: layout, acrostic, rhyme and 平仄.

Generation uses it to score candidates; `evaluate` uses it to measure compliance.
"""

from __future__ import annotations

import dataclasses

from poetgen.layout import Layout, clauses, layout_of
from poetgen.metre import PING, couplet_rescue, line_fits, strict_columns, tone_fits, tone_patterns
from poetgen.prosody import Prosody, neighbours


@dataclasses.dataclass
class PoemCheck:
    layout_ok: bool                   # exact line lengths, line count and punctuation
    rhyme_ok: bool | None             # rhyming lines share a 平水韵 group (None: not a regular form)
    rhyme_group: str | None           # that group: a level-tone one (上平一东), or a 仄 one (入九屑) in a 仄韵 poem
    tone_score: float | None          # share of strict positions that fit the best standard pattern
    tone_pattern: str | None          # the name of that pattern
    tone_positions: list[bool] | None # per strict position of the best pattern: fits or not
    acrostic_ok: bool | None          # line heads spell the acrostic (None: none asked)


def layout_ok(text: str, form: str | Layout) -> bool:
    layout = form if isinstance(form, Layout) else layout_of(form)
    return layout.fits(text) if layout else bool(text)


def rhyme_of(lines: list[str], prosody: Prosody, layout: Layout) -> tuple[bool, str | None]:
    """Whether the rhyme lines end in distinct characters that share one 平水韵 group, and that group: a
    level-tone one as regular verse rhymes, else a 仄 one (上声, 去声, 入声), as 古绝 do (春晓's 晓 鸟 少 in
    上十七筿 (筱), 江雪's 绝 灭 雪 in 入九屑). It does not judge 通押 (neighbouring 仄 groups) as one rhyme."""
    endings = [lines[i][-2] for i in layout.rhyme_lines]
    if len(set(endings)) != len(endings):
        return False, None
    for groups_of in (prosody.rhyme_groups, prosody.oblique_groups):
        common = set.intersection(*(groups_of(ch) for ch in endings)) if endings else set()
        if common:
            return True, sorted(common)[0]
    return False, None


def first_line_fault(lines: list[str], prosody: Prosody, layout: Layout, group: str | None) -> bool:
    """True when line 1 of a regular poem ends in a character that can only be 平, so it rhymes (首句入韵),
    but in no group the rhyme lines share nor one beside it (出韵: 朝辞白帝彩云东 in a 删 poem), or in the
    character of a later rhyme (重韵). A 仄 ending, or one with a 仄 reading, is not judged here, nor line 1
    of a 仄韵 poem (a 平 end there does not rhyme, as it should not). It counts
    against the 平仄 of line 1's end (check_poem), as a line that does not rhyme must end 仄: the rhyme
    lines' own verdict (rhyme_ok) is theirs, and --no-tone leaves line 1 free."""
    end = lines[0][-2]
    if group not in prosody.level_groups or 0 in layout.rhyme_lines or prosody.tones(end) != {PING}:
        return False
    shared = set.intersection(*(prosody.rhyme_groups(lines[i][-2]) for i in layout.rhyme_lines))
    return end in {lines[i][-2] for i in layout.rhyme_lines} or not prosody.rhyme_groups(end) & neighbours(shared)


def pattern_fits(lines: list[str], pattern: list[str], length: int, prosody: Prosody) -> list[bool]:
    """Per strict position of `pattern` (one string per line; metre.strict_columns), line by line: does
    the poem's character fit it (metre.line_fits: 拗救, 特拗 and a 平 at the 三平尾 guard that makes no
    三平尾 are accepted, and 对句相救: metre.couplet_rescue)."""
    fits = [line_fits(line[:length], line_pattern, prosody) for line, line_pattern in zip(lines, pattern)]
    for i in range(len(fits) - 1):   # 对句相救: the next line rescues a 仄 at this one's fourth
        rescued = couplet_rescue(pattern[i], pattern[i + 1])
        if rescued is not None and tone_fits(lines[i + 1][rescued[1]], PING, prosody):
            fits[i][strict_columns(pattern[i]).index(rescued[0])] = True
    return [ok for line_fits_ in fits for ok in line_fits_]


def tone_of(lines: list[str], length: int, prosody: Prosody, first_line_rhymes: bool = False
            ) -> tuple[float, str, list[bool]]:
    """The standard pattern the poem fits best: its share of fitting strict positions, name and fits.
    Of patterns that fit alike, a 入韵 one when line 1 rhymes (`first_line_rhymes`), else one without."""
    best, rank = (-1.0, "", []), None
    for name, pattern in tone_patterns(length, len(lines)).items():
        fits = pattern_fits(lines, pattern, length, prosody)
        score = sum(fits) / len(fits)
        if rank is None or (score, name.endswith("入韵") == first_line_rhymes) > rank:
            best, rank = (score, name, fits), (score, name.endswith("入韵") == first_line_rhymes)
    return best


def check_poem(text: str, form: str | Layout, prosody: Prosody, acrostic: str = "") -> PoemCheck:
    """`form` names a shi form or free verse, or is a Layout itself (a ci tune's)."""
    layout = form if isinstance(form, Layout) else layout_of(form)
    lines = clauses(text)
    acrostic_ok = None
    if acrostic:
        acrostic_ok = [line[0] for line in lines[:len(acrostic)]] == list(acrostic)   # fewer lines: unequal
    ok = layout.fits(text) if layout else bool(text)
    if layout is None or not ok:
        return PoemCheck(ok, None if layout is None else False, None, None, None, None, acrostic_ok)
    rhyme_ok, group = rhyme_of(lines, prosody, layout)
    if layout.uniform_length not in (5, 7) or layout.line_count not in (4, 8):   # the shi patterns only
        return PoemCheck(ok, rhyme_ok, group, None, None, None, acrostic_ok)
    first_rhymes = group is not None and group in prosody.rhyme_groups(lines[0][-2])
    score, pattern, fits = tone_of(lines, layout.uniform_length, prosody, first_rhymes)
    if first_line_fault(lines, prosody, layout, group):   # a 平 end makes line 1 a 入韵 line: it must rhyme
        line_one = len(strict_columns(tone_patterns(layout.uniform_length, layout.line_count)[pattern][0]))
        fits = [*fits[:line_one - 1], False, *fits[line_one:]]
        score = sum(fits) / len(fits)
    return PoemCheck(ok, rhyme_ok, group, score, pattern, fits, acrostic_ok)
