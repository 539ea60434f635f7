"""The tones of regular verse: the standard 平仄 patterns of the shi forms, the columns each line
enforces (三平尾, 孤平, 拗救, 特拗, 对句相救) and how a line is judged against its pattern.

It holds no table: which tones a character can be read in is prosody.py's (a Prosody passed in).
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poetgen.prosody import Prosody

PING, ZE = "平", "仄"

# The four five-character line types; seven-character lines prefix the opposite of the first two.
_A, _B, _C, _D = "仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"
# Quatrain patterns (first two lines, last two lines) by how the first line starts and ends.
_QUATRAINS = {
    "仄起": (_A, _B, _C, _D),
    "平起": (_C, _D, _A, _B),
    "仄起入韵": (_D, _B, _C, _D),
    "平起入韵": (_B, _D, _A, _B),
}


def _seven(line: str) -> str:
    flip = {PING: ZE, ZE: PING}
    return flip[line[0]] + flip[line[1]] + line


@functools.lru_cache(maxsize=None)
def tone_patterns(line_length: int, line_count: int) -> types.MappingProxyType:
    """Standard 平仄 patterns of a form: name -> one pattern string per line (a tuple), in the same order
    for every form; read-only, as it is shared. A pattern is named by line 1's second character (平起: 平),
    so a seven-character line, which prefixes the opposite of the five-character line's first two, swaps
    the names: 仄起's 仄仄平平仄 becomes 平起's 平平仄仄平平仄."""
    patterns = {}
    for name, quatrain in _QUATRAINS.items():
        lines = list(quatrain)
        if line_count == 8:   # 律诗: lines 5-8 continue the alternation from line 4
            lines += [_A, _B, _C, _D] if quatrain[3] == _D else [_C, _D, _A, _B]
        if line_length == 7:
            lines = [_seven(line) for line in lines]
            name = name.replace("仄起", "?").replace("平起", "仄起").replace("?", "平起")
        patterns[name] = tuple(lines)
    return types.MappingProxyType(patterns)


def strict_positions(line_length: int) -> tuple[int, ...]:
    """Columns (0-based) whose tone is fixed by 一三五不论，二四六分明, plus the line's last."""
    return (1, 3, 4) if line_length == 5 else (1, 3, 5, 6)


@functools.lru_cache(maxsize=None)
def strict_columns(line: str) -> tuple[int, ...]:
    """Columns (0-based) whose tone a line of this pattern fixes: strict_positions, and where 一三五不论
    would allow one of the two faults of regular verse, the column that prevents it: 仄仄仄平平's third
    (平 there ends the line in three 平, 三平尾) and 平平仄仄平's first (仄 there leaves one 平 besides the
    rhyme, 孤平); in seven-character lines the same columns two further on."""
    extra = {_D: len(line) - 3, _B: len(line) - 5}.get(line[-5:])
    return tuple(sorted({*strict_positions(len(line)), *(() if extra is None else (extra,))}))


@functools.lru_cache(maxsize=None)
def guard_columns(line: str) -> tuple[int, ...]:
    """The columns of a line of this pattern where generation puts only a character that cannot be read
    in the other tone (and at a rescue's third, when it rescues: shi_rules.Tone): the one strict_columns adds
    to strict_positions, which prevents 三平尾 or 孤平 (长 at 仄仄仄平平's third may be 平, 长安: 三平尾),
    and the last of a line that ends 仄, which does not rhyme (人间, 天长, 翠屏 end a line 平 as a reader
    hears them, where the table also lists a 仄 reading: 4 % of such line ends were so)."""
    guarded = [c for c in strict_columns(line) if c not in strict_positions(len(line))]
    return tuple(guarded + [len(line) - 1] if line[-1] == ZE else guarded)


def rescue(line: str) -> tuple[int, int] | None:
    """(first, third) for a 平平仄仄平 line (two columns further on in seven characters): a 仄 that a
    prompt or acrostic fixes at the first is rescued by a 平 at the third (拗救: 仄平平仄平, no 孤平);
    None for the other lines."""
    n = len(line)
    return (n - 5, n - 3) if line[-5:] == _B else None


def prompt_columns(line: str) -> tuple[int, ...]:
    """The strict columns at which a fixed character must fit the pattern: strict_columns but the first
    of a rescue, which the third makes good (rescue)."""
    rescued = rescue(line)
    return tuple(c for c in strict_columns(line) if rescued is None or c != rescued[0])


def couplet_rescue(first: str, second: str) -> tuple[int, int] | None:
    """(column, column) when a 仄仄平平仄 line is followed by a 平平仄仄平 one (two further on in seven
    characters): a 仄 at the first line's fourth is rescued by a 平 at the second's third (对句相救:
    野火烧不尽，春风吹又生); None for other pairs of lines."""
    n = len(first)
    return (n - 2, n - 3) if first[-5:] == _A and second[-5:] == _B else None


THREE_LEVEL, LONE_LEVEL = "三平尾", "孤平"   # the faults a guard column keeps a line from


def guarded_fault(pattern: str, column: int) -> str | None:
    """The fault a column of a line pattern keeps the line from beyond 一三五不论 (strict_columns): 三平尾 at
    仄仄仄平平's third, 孤平 at 平平仄仄平's first (two further on in seven-character lines); None at the
    others. The pattern may show 中 at the columns it leaves free (a scansion's)."""
    n = len(pattern)
    if column == n - 3 and pattern[n - 3:] == ZE + PING + PING:
        return THREE_LEVEL
    if column == n - 5 and pattern[n - 5:n - 3] == PING + PING and pattern[n - 2:] == ZE + PING:   # third: maybe 中
        return LONE_LEVEL
    return None


def no_three_level(line: str, column: int, prosody: Prosody) -> bool:
    """Whether a 平 at the 三平尾 guard `column` of `line` still leaves no three 平 at the end, because the
    next character cannot be 平 (孟浩然's 八月湖水平: 湖 平, 水 仄): the line breaks at 水, not at 湖 too.
    A next character the table lacks is not known to be 仄: no relief. Checking's alone: generation,
    which cannot know the next character yet, keeps a 平 out of the guard (guard_columns)."""
    tones = prosody.tones(line[column + 1])
    return bool(tones) and PING not in tones


def line_fits(line: str, pattern: str, prosody: Prosody) -> list[bool]:
    """Per strict column of `pattern` (strict_columns), does the line's character fit it, as a reader
    judges: 平平仄仄平 may take 仄 first when its third is 平 (拗救, 仄平平仄平), 平平平仄仄 may be
    平平仄平仄 (特拗: 仄 third, 平 fourth), and 仄仄仄平平 平 third when its fourth cannot be 平 (no 三平尾:
    no_three_level); the same columns further on in seven-character lines."""
    n, fits, guarded = len(line), [], guard_columns(pattern)
    for col, required, licence in _line_plan(pattern):
        # where a reading decides 三平尾, 孤平 or a 仄 line's end, one poets barely used does not save the
        # line: 白云千载空悠悠 is a 三平尾 though 空 has a rare 仄 reading (kòng)
        ok = tone_fits(line[col], required, prosody.usual_readings if col in guarded else prosody)
        if not ok and licence == _AOJIU:
            ok = tone_fits(line[n - 3], PING, prosody)
        if not ok and licence == _TE_AO:
            ok = tone_fits(line[n - 3], ZE, prosody) and tone_fits(line[col], PING, prosody)
        if not ok and licence == THREE_LEVEL:
            ok = no_three_level(line, col, prosody)
        fits.append(ok)
    return fits


_AOJIU, _TE_AO = "拗救", "特拗"   # the licences line_fits accepts at a column


@functools.lru_cache(maxsize=None)
def _line_plan(pattern: str) -> tuple[tuple[int, str, str | None], ...]:
    """(column, tone, licence) per strict column of `pattern`: the licence line_fits accepts there when
    the tone does not fit (拗救 at a rescue's first column, 特拗 at 平平平仄仄's fourth, a 平 that makes no
    三平尾 at the guard of 仄仄仄平平), else None."""
    n = len(pattern)
    return tuple((col, pattern[col], _AOJIU if rescue(pattern) == (col, n - 3) else
                  _TE_AO if pattern[-5:] == _C and col == n - 2 else
                  THREE_LEVEL if guarded_fault(pattern, col) == THREE_LEVEL else None)
                 for col in strict_columns(pattern))


def tone_fits(ch: str, required: str, prosody: Prosody) -> bool:
    """True when a character can be read in the required tone (unknown characters are not judged)."""
    tones = prosody.tones(ch)
    return not tones or required in tones
