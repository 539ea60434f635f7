"""What the Python API's generation returns: a Poem (its text, lines and what the checker found) and the
Poems of one call, each as `poetgen generate` prints it (str) and as `--format json` does (to_dict)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Iterator, Mapping, overload


@dataclasses.dataclass(frozen=True)
class Poem:
    """One finished poem and what the checker found in it."""

    text: str                          # the whole poem, punctuation included
    lines: tuple[str, ...]             # its lines (clauses), each with its closing mark
    form: str                          # wujue | qijue | wulv | qilv | free (or what the request resolved to)
    logprob: float                     # the model's mean log-probability of the characters it chose
    score: float                       # the best-of ranking score (logprob plus rhyme and tone bonuses)
    layout_ok: bool                    # exact line lengths, line count and punctuation for the form
    rhyme_ok: bool | None              # rhyming lines share a 平水韵 group; None when the form has no rhyme
    rhyme_group: str | None = None     # that group
    tone_pattern: str | None = None    # the 平仄 pattern steered toward (with tone=True)
    tone_score: float | None = None    # share of strict 平仄 positions that fit the best standard pattern
    acrostic_ok: bool | None = None    # line heads spell the acrostic; None when none was asked
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    # ^ any further fields the generator reports (kept so that to_dict() loses nothing)

    @classmethod
    def from_dict(cls, poem: Mapping[str, Any]) -> "Poem":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in poem.items() if k in known}
        values["lines"] = tuple(values.get("lines", ()))
        return cls(**values, extra={k: v for k, v in poem.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The poem as `poetgen generate --format json` prints it."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**values, "lines": list(self.lines), **self.extra}

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclasses.dataclass(frozen=True)
class Poems(Sequence[Poem]):
    """The poems of one generate call, in order, with what the call decided for all of them."""

    poems: tuple[Poem, ...]            # one per requested poem (the best of its candidates)
    seed: int                          # the seed used (drawn when none was given): reuse it to repeat
    form: str                          # the resolved form
    keywords: tuple[str, ...] = ()     # theme keywords found by jieba (empty without a theme)
    ms_per_poem: float = 0.0           # wall time per poem, candidates included
    tune: str = ""                     # the ci tune written ("" for shi)
    variant: int | None = None         # its variant (格), 1-based; None for shi
    title: str = ""                    # the title the poems were written to ("" for none)

    @overload
    def __getitem__(self, index: int) -> Poem: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Poem, ...]: ...

    def __getitem__(self, index):
        return self.poems[index]

    def __len__(self) -> int:
        return len(self.poems)

    def __iter__(self) -> Iterator[Poem]:
        return iter(self.poems)

    def to_dict(self) -> dict[str, Any]:
        """The result as `poetgen generate --format json` prints it."""
        tune = {"tune": self.tune, "variant": self.variant} if self.tune else {}
        title = {"title": self.title} if self.title else {}
        return {"poems": [p.to_dict() for p in self.poems], "keywords": list(self.keywords), "seed": self.seed,
                "form": self.form, **tune, **title, "ms_per_poem": self.ms_per_poem}

    def to_json(self) -> str:
        """What `poetgen generate --format json` prints."""
        import json

        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def __str__(self) -> str:
        """What `poetgen generate` prints: one block of lines per poem, under its title when it has one."""
        heading = f"《{self.title}》\n" if self.title else ""
        return "\n\n".join(heading + str(poem) for poem in self.poems)
