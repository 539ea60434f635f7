"""The control prefix: two tokens after the boundary (style, then form or ci tune) that tell a
conditioned model what to write. It builds and reads the tokens; it does not train or sample.

A poem's training sequence is <eop> <style> <form|tune> text <eop>. Records without dynasty or genre
are Tang shi (the corpus contract); a ci's tune gets its own token when it is among the most common
tunes of the training split, the generic <anytune> otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

STYLES = ("tang", "song", "ci")          # what `generate --style` offers
SHI_FORMS = ("wujue", "qijue", "wulv", "qilv", "other")
ANY_TUNE = "<anytune>"
DEFAULT_STYLE = "tang"


def style_token(style: str) -> str:
    return f"<{style}>"


def form_token(form: str) -> str:
    return f"<{form}>"


def tune_token(tune: str) -> str:
    return f"<tune:{tune}>"


@dataclasses.dataclass(frozen=True)
class Labels:
    """What a record says about its poem, with the corpus contract's defaults filled in."""

    style: str     # tang | song | ci
    form: str      # a shi form (SHI_FORMS) or "ci"
    tune: str      # the ci's tune, "" for shi


def labels_of(poem) -> Labels:
    """A corpus Poem (or any record with text and optional dynasty, genre, form, tune) → its Labels."""
    genre = getattr(poem, "genre", "") or "shi"
    dynasty = getattr(poem, "dynasty", "") or "tang"
    if genre == "ci":
        return Labels("ci", "ci", getattr(poem, "tune", "") or "")
    form = getattr(poem, "form", "other") or "other"
    return Labels("song" if dynasty == "song" else "tang", form if form in SHI_FORMS else "other", "")


def control_vocabulary(poems: Iterable, top_tunes: int = 200) -> list[str]:
    """Every control token, in a fixed order: styles, shi forms, the generic tune, then the most
    common tunes of `poems` (by count, then name), so the same corpus gives the same list."""
    tunes = collections.Counter(labels.tune for labels in map(labels_of, poems) if labels.tune)
    common = sorted(tunes, key=lambda tune: (-tunes[tune], tune))[:top_tunes]
    return ([style_token(s) for s in STYLES] + [form_token(f) for f in SHI_FORMS] + [ANY_TUNE]
            + [tune_token(t) for t in sorted(common)])


def tune_label(tokenizer, names) -> str:
    """The first of a tune's `names` (its name, then other names) that the model has a control token for;
    the tune's own name when it has none (the prefix then takes the generic tune token)."""
    return next((name for name in names if tokenizer.has_control(tune_token(name))), names[0])


class Prefixer:
    """Control-token ids for a poem or a request, from a tokenizer that has control tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.enabled = bool(tokenizer.controls)

    def _id(self, token: str) -> int:
        return self.tokenizer.control_id(token)

    def for_labels(self, labels: Labels) -> list[int]:
        if not self.enabled:
            return []
        if labels.style == "ci":
            second = tune_token(labels.tune) if self.tokenizer.has_control(tune_token(labels.tune)) else ANY_TUNE
        else:
            second = form_token(labels.form)
        return [self._id(style_token(labels.style)), self._id(second)]

    def for_poem(self, poem) -> list[int]:
        return self.for_labels(labels_of(poem))

    def for_request(self, style: str, form: str, tune: str = "") -> list[int]:
        """The prefix `generate` feeds: a Tang or Song shi of `form` (free verse: "other"), or a ci."""
        if style == "ci":
            return self.for_labels(Labels("ci", "ci", tune))
        return self.for_labels(Labels(style, form if form in SHI_FORMS else "other", ""))

