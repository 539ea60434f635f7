"""Settings of the frozen option dataclasses: defaults, ranges and choices, checked and described.

A field declares its default, range and choices once (`setting`); its comment is its help text.
validate() checks the ranges (`check_settings`); the CLI builds its click options from the same field
(poetgen.cli_options), the server its pydantic bounds (`bounds`). No click here: the library and the
server import this module without the CLI's toolkit.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import math
import re
import sys
from pathlib import Path

from poetgen.errors import BadInput

@dataclasses.dataclass(frozen=True)
class Range:
    low: float | None = None      # smallest value allowed; None: no lower bound
    high: float | None = None     # largest value allowed; None: no upper bound
    low_open: bool = False        # the low end itself is excluded
    high_open: bool = False       # the high end itself is excluded

    def holds(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            if not (self.low_open or self.high_open):
                return f"between {low} and {high}"
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"greater than {low}" if self.low_open else f"at least {low}"
        return f"less than {high}" if self.high_open else f"at most {high}"

    def bounds(self) -> dict:
        """The range as pydantic's (and annotated-types') ge / gt / le / lt keywords."""
        found = {}
        if self.low is not None:
            found["gt" if self.low_open else "ge"] = self.low
        if self.high is not None:
            found["lt" if self.high_open else "le"] = self.high
        return found


def _number(value) -> str:
    if isinstance(value, int) and value >= 2**31:
        return f"2**{value.bit_length() - 1}" if value & (value - 1) == 0 else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(default, *, low=None, high=None, low_open=False, high_open=False, choices: tuple = ()):
    """A dataclass field with its allowed values: a range of numbers, or a tuple of choices."""
    metadata = {}
    if low is not None or high is not None:
        metadata["range"] = Range(low, high, low_open, high_open)
    if choices:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def field_of(cls, name: str) -> dataclasses.Field:
    return next(field for field in dataclasses.fields(cls) if field.name == name)


def bounds(cls, name: str) -> dict:
    """The declared range of field `name` as ge / gt / le / lt keywords (pydantic's Field takes them)."""
    allowed = field_of(cls, name).metadata.get("range")
    return allowed.bounds() if allowed else {}


def display_name(name: str) -> str:
    """How messages name a field: as its option is spelled, without the dashes (top_k → top-k)."""
    return name.replace("_", "-")


_CHECKED_TYPES = {"int": numbers.Integral, "float": numbers.Real, "str": str, "bool": bool, "None": type(None)}


def _type_problem(annotation, value) -> str | None:
    """What is wrong with `value`'s type for a field annotated `annotation` (a string such as "int | None"),
    or None. Only plain scalar annotations are checked; a bool is not taken for a number."""
    if not isinstance(annotation, str):
        return None
    names = [part.strip() for part in annotation.split("|")]
    if not all(name in _CHECKED_TYPES for name in names):
        return None   # a dataclass, a tuple…: not checked here
    kinds = [_CHECKED_TYPES[name] for name in names]
    if isinstance(value, bool) and bool not in kinds:
        return "a number" if any(kind is not str for kind in kinds) else "text"
    if any(isinstance(value, kind) for kind in kinds):
        return None
    wanted = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}
    return " or ".join(wanted[name] for name in names if name != "None")


def check_settings(instance) -> None:
    """BadInput, naming the field, for the first field of the wrong type, or outside its declared range
    or choices."""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        name = display_name(field.name)
        problem = _type_problem(field.type, value)
        if problem is not None:
            raise BadInput(f"{name} must be {problem}, not {value!r}", field=field.name)
        allowed = field.metadata.get("range")
        if allowed is not None and value is not None and not allowed.holds(value):
            raise BadInput(f"{name} must be {allowed.describe()}, not {value}", field=field.name)
        choices = field.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise BadInput(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}", field=field.name)


_FIELD_LINE = re.compile(r"\s+(\w+)\s*:[^#]*#\s*(.*?)\s*$")   # `    name: type = default   # comment`


@functools.lru_cache(maxsize=None)
def field_comments(cls) -> dict[str, str]:
    """The comment after each field of a dataclass, by field name (its help text).

    Read from the module's source text, line by line: `inspect.getsource` parses the whole module and
    would cost `poetgen --help` a tenth of a second.
    """
    lines = Path(sys.modules[cls.__module__].__file__).read_text(encoding="utf-8").splitlines()
    start, indent = next((i, len(found.group(1))) for i, line in enumerate(lines)
                         if (found := re.match(rf"(\s*)class {cls.__name__}\b", line)))
    comments = {}
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break   # the class body ended
        declared = _FIELD_LINE.match(line)
        if declared and declared.group(1) not in comments:
            comments[declared.group(1)] = declared.group(2)
    return comments


def field_help(cls, name: str) -> str:
    comment = field_comments(cls).get(name, "")
    if not comment:
        raise TypeError(f"{cls.__name__}.{name} has no comment to serve as its help text")
    first = comment.split()[0].rstrip(";:,").replace("-", "")   # held-out, distribution; … are words too
    if first.isalpha() and first.islower():   # a word, not a value such as mixed_bfloat16 or wujue|qijue
        comment = comment[0].upper() + comment[1:]
    return comment if comment.endswith(".") else comment + "."


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def field_type(field: dataclasses.Field) -> type:
    """The Python type of a field's values: its default's, or its annotation's first type but None."""
    if field.default is not None and field.default is not dataclasses.MISSING:
        return type(field.default)
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    kinds = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    return _TYPES.get(kinds[0], str) if kinds else str
