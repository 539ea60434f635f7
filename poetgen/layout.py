"""The one spec of a poem's shape: per-line lengths, the marks that may end each line, and where a
position falls. The corpus tagger, the checker, prompt fitting, the rules, the loop and the graph read it.

It knows characters and marks only: no model, no vocabulary ids beyond `banned_inside`, no rhyme table.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from poetgen.errors import BadInput

FORMS = ("wujue", "qijue", "wulv", "qilv")
FORM_ALIASES = {"五绝": "wujue", "七绝": "qijue", "五律": "wulv", "七律": "qilv",
                "五絕": "wujue", "七絕": "qijue"}   # the names in traditional characters too (律 is the same)
# form -> (characters per line, lines)
FORM_SHAPES = {"wujue": (5, 4), "qijue": (7, 4), "wulv": (5, 8), "qilv": (7, 8)}

PAUSE_MARKS = "，；："   # a clause that continues: accepted after the odd lines of a shi
STOP_MARKS = "。？！"    # a sentence that ends: accepted after the even lines (and any poem's last)
MARKS = PAUSE_MARKS + STOP_MARKS
_CLAUSE = re.compile(f"[^{MARKS}]+[{MARKS}]")
_SHOWN_LINE = re.compile(f"[^{MARKS}]+(?:[{MARKS}]|$)")   # a clause, or the unmarked tail of a cut poem


@dataclasses.dataclass(frozen=True)
class Layout:
    """A fixed shape. Lines may differ in length and marks (ci tunes); shi forms come from layout_of."""

    name: str                          # the form or tune it describes
    line_lengths: tuple[int, ...]      # Han characters per line (clause), marks excluded
    end_marks: tuple[str, ...]         # the mark the layout writes after line i
    accepted_marks: tuple[str, ...]    # per line: every mark a finished poem may have after line i
    rhyme_lines: tuple[int, ...] = ()  # 0-based lines whose last character must rhyme

    def __post_init__(self):
        count = len(self.line_lengths)
        if not count or len(self.end_marks) != count or len(self.accepted_marks) != count:
            raise ValueError(f"layout {self.name!r}: one length, end mark and accepted set per line")
        if any(n < 1 for n in self.line_lengths):
            raise ValueError(f"layout {self.name!r}: every line needs at least one character")
        for mark, accepted in zip(self.end_marks, self.accepted_marks):
            if len(mark) != 1 or mark not in MARKS or mark not in accepted or set(accepted) - set(MARKS):
                raise ValueError(f"layout {self.name!r}: end mark {mark!r} must be one of its accepted {accepted!r}")
        if any(not 0 <= i < count for i in self.rhyme_lines):
            raise ValueError(f"layout {self.name!r}: rhyme line out of range")

    @property
    def line_count(self) -> int:
        return len(self.line_lengths)

    @property
    def length(self) -> int:
        """Positions in the poem, each line's mark included."""
        return sum(self.line_lengths) + self.line_count

    @property
    def uniform_length(self) -> int | None:
        """The line length when every line has it (shi), else None."""
        return self.line_lengths[0] if len(set(self.line_lengths)) == 1 else None

    @functools.cached_property
    def starts(self) -> tuple[int, ...]:
        """Position of each line's first character."""
        starts, pos = [], 0
        for n in self.line_lengths:
            starts.append(pos)
            pos += n + 1
        return tuple(starts)

    @functools.cached_property
    def positions(self) -> tuple[tuple[int, int], ...]:
        """(line, column) of every position; column -1 is the mark slot after the line."""
        return tuple((i, c if c < n else -1) for i, n in enumerate(self.line_lengths) for c in range(n + 1))

    def line_column(self, pos: int) -> tuple[int, int]:
        """(line, column) of position `pos`; column -1 at the mark that ends the line."""
        return self.positions[pos]

    def is_line_end(self, pos: int) -> bool:
        """True at the last character of a line (where rhymes fall)."""
        line, column = self.positions[pos]
        return column == self.line_lengths[line] - 1

    def accepts(self, line: int, mark: str) -> bool:
        return mark in self.accepted_marks[line]

    def lines(self, text: str) -> list[str] | None:
        """The lines of `text`, each with its mark, when they are exactly this layout; else None."""
        lines = clauses(text)
        if "".join(lines) != text or len(lines) != self.line_count:
            return None
        if any(len(line) != n + 1 or not self.accepts(i, line[-1])
               for i, (line, n) in enumerate(zip(lines, self.line_lengths))):
            return None
        return lines

    def fits(self, text: str) -> bool:
        """Exact line count, line lengths and an accepted mark after every line."""
        return self.lines(text) is not None

    def has_lengths_of(self, text: str) -> bool:
        """Line count and lengths only, whatever the marks (how the corpus tags a poem's form)."""
        lines = clauses(text)
        return "".join(lines) == text and [len(line) - 1 for line in lines] == list(self.line_lengths)

    def fit_prompt(self, prompt: str, shown: str = "") -> str:
        """Lay a prompt onto the lines: a missing line-end mark is inserted, a mark the layout does not
        accept at that line end is replaced by the one it writes there; a mark inside a line is an error.
        `shown`: how errors name the layout (its name by default).
        """
        fitted, line, column, name = [], 0, 0, shown or self.name
        for ch in prompt:
            if line >= self.line_count:
                raise BadInput(f"prompt is longer than a {name} poem "
                               f"({self.line_count} lines of {self.describe_lengths()} characters)", field="prompt")
            if column == self.line_lengths[line]:   # the mark slot
                fitted.append(ch if ch in MARKS and self.accepts(line, ch) else self.end_marks[line])
                line, column = line + 1, 0
                if ch in MARKS:
                    continue
                if line >= self.line_count:
                    raise BadInput(f"prompt is longer than a {name} poem "
                                   f"({self.line_count} lines of {self.describe_lengths()} characters)", field="prompt")
            if ch in MARKS:
                raise BadInput(f"prompt does not fit {name}: line {line + 1} has {column} characters before "
                               f"{ch!r}, but that line has {self.line_lengths[line]}", field="prompt")
            fitted.append(ch)
            column += 1
        return "".join(fitted)

    def describe_lengths(self) -> str:
        return str(self.uniform_length) if self.uniform_length else "/".join(map(str, self.line_lengths))


def clauses(text: str) -> list[str]:
    """The lines of a poem, each with its closing mark."""
    return _CLAUSE.findall(text)


def shown_lines(text: str) -> list[str]:
    """The lines a poem is shown in: its clauses, and the tail after its last mark (a free verse poem
    cut at max_chars) as a last line of its own, so that no character is left out."""
    return _SHOWN_LINE.findall(text)


def shi_layout(form: str, line_length: int, line_count: int) -> Layout:
    """A regular shi: "，" after odd lines and "。" after even ones; the even lines rhyme."""
    pause = tuple(i % 2 == 0 for i in range(line_count))
    return Layout(form, (line_length,) * line_count, tuple("，" if p else "。" for p in pause),
                  tuple(PAUSE_MARKS if p else STOP_MARKS for p in pause), tuple(range(1, line_count, 2)))


_SHI = {form: shi_layout(form, length, count) for form, (length, count) in FORM_SHAPES.items()}


def layout_of(form: str | None) -> Layout | None:
    """The layout of a shi form (or its Chinese name); None for free verse and unknown names."""
    return _SHI.get(FORM_ALIASES.get(form, form)) if form else None


def form_of(text: str) -> str:
    """The shi form whose line lengths `text` has, or "other"."""
    return next((form for form, layout in _SHI.items() if layout.has_lengths_of(text)), "other")


def banned_inside(index: dict[str, int], special_ids) -> list[int]:
    """Ids never chosen inside a line: the specials and every mark the vocabulary `index` holds."""
    return sorted(set(special_ids) | {index[m] for m in MARKS if m in index})
