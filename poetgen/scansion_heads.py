"""The head lines typed above a poem given to `poetgen check` that are none of its lines: a title, a tune's
name, an author (静夜思 above 床前明月光疑是地上霜…, 浣溪沙 / 宋·苏轼 above a ci), left out when the verses
under them make the poem and the whole does not.

It does not scan (poetgen.scansion hands its scan in); a block's title and author as corpus import reads
them are readers.verses_of's, which the scansion reads first.
"""

from __future__ import annotations

import dataclasses
import re

from typing import TYPE_CHECKING, Callable

from poetgen.corpus import known_dynasty, normalize_text
from poetgen.errors import BadInput
from poetgen.layout import MARKS
from poetgen.readers import LINE_END_MARKS, NAME_CHARS
from poetgen.tunes import Tune, tune_table

if TYPE_CHECKING:
    from poetgen.scansion import Scansion

HEAD_CHARS = 19   # characters of a head line at most: shorter than a 五绝, the shortest poem (readers reads so)
MAX_HEADS = 2     # a title (or a tune's name) and an author
# dynasties an author line may name that the corpus's DYNASTIES do not (元·张养浩, 清·纳兰性德)
OTHER_DYNASTIES = frozenset("先秦 汉 魏 晋 南北朝 隋 辽 金 元 明 清 近代 现代".split())
_PARTS = re.compile(r"[\s\u3000·・•‧.\-—－:：\[\]【】()（）〔〕《》<>〈〉]+")   # between a dynasty, a name, a title


def under_heads(text: str, lines: list[str], scan: Callable[[str], Scansion],
                heads_fit: Callable[[list[str], Scansion], bool]) -> Scansion:
    """`text` scanned, or the verses under its one or two head lines (of `lines`, the text's as typed)
    where the whole is not its form (a count or a layout off) and they are, the heads such as `heads_fit`
    takes of the verses' scansion; a real first line is kept, the whole being its form with it. A whole
    that cannot be scanned, under no heads either, raises its own error."""
    try:
        whole, failure = scan(text), None
    except BadInput as error:
        whole, failure = None, error
    if whole is not None and whole.layout_ok:
        return whole
    for heads, verses in head_splits(lines):
        try:
            under = scan("\n".join(verses))
        except BadInput:
            continue
        if under.layout_ok and heads_fit(heads, under):
            return dataclasses.replace(under, left_out=tuple(head.strip() for head in heads))
    if failure is not None:
        raise failure
    return whole


def tunes_named(name: str) -> list[Tune]:
    """The tunes a ci titled `name` may be of (none for a name no tune has: the scansion says so)."""
    tunes = tune_table()
    return tunes.readings(name) or [tune for tune in [tunes.find(name)] if tune is not None]


def head_splits(lines: list[str]) -> list[tuple[list[str], list[str]]]:
    """(heads, the lines under them) for the first one and the first two lines that may be heads: no mark
    of their own (a verse line typed with marks ends in one), at most HEAD_CHARS characters, verses under them."""
    splits = []
    for count in range(1, MAX_HEADS + 1):
        heads, verses = lines[:count], lines[count:]
        if not verses or not all(_may_be_head(line) for line in heads):
            break
        splits.append((heads, verses))
    return splits


def shi_heads(heads: list[str], line_length: int) -> bool:
    """A title, and an author under it, above a shi of `line_length` characters a line: no head, nor a part
    of one apart by a space or a ·, is as long as a line of the poem (千山鸟飞绝 above the other three lines
    of 江雪 may be its first), the second is an author (李白, 唐·李白)."""
    parts = [part for head in heads for part in _PARTS.split(head.strip()) if part]   # 静夜思 李白: 3 and 2
    return all(_length(part) != line_length for part in parts) and (len(heads) < 2 or is_author(heads[1]))


def ci_heads(heads: list[str], tunes: list[Tune]) -> bool:
    """Each head a tune's name line or an author (苏轼, 宋·苏轼): a ci's title is its tune."""
    return all(is_author(head) or tune_named(head, tunes) for head in heads)


def tune_named(line: str, tunes: list[Tune]) -> bool:
    """Whether `line` opens with a name of one of `tunes` (those the ci may be of), alone or before a
    title (浣溪沙, 浣溪纱, 浣溪沙·游蕲水清泉寺)."""
    parts = [part for part in _PARTS.split(line.strip()) if part]
    return bool(parts) and tune_table().find(parts[0]) in tunes


def is_author(line: str) -> bool:
    """Whether `line` names an author alone: a name of at most NAME_CHARS characters, a dynasty before it
    or after it or none (苏轼, 宋·苏轼, 【宋】苏轼, 宋 苏轼, 苏轼（宋）)."""
    parts = [part for part in _PARTS.split(line.strip()) if part]
    names = [part for part in parts if not (known_dynasty(part) or part in OTHER_DYNASTIES)]
    return len(names) == 1 and len(parts) <= 2 and 1 <= _length(names[0]) <= NAME_CHARS


def _may_be_head(line: str) -> bool:
    text = line.strip()
    return 0 < _length(text) <= HEAD_CHARS and not any(mark in text for mark in MARKS + LINE_END_MARKS)


def _length(line: str) -> int:
    """Characters of a line as a poem's: no whitespace, no quote marks, no separator (宋·苏轼)."""
    return len(_PARTS.sub("", normalize_text(line, simplify=False)))
