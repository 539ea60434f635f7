"""The control prefix: two tokens after the boundary (style, then form or ci tune) that tell a
conditioned model what to write. It builds and reads the tokens; it does not train or sample.

A poem's training sequence is <eop> <style> <form|tune> text <eop>. Records without dynasty or genre
are Tang shi (the corpus contract); a ci's tune gets its own token when it is among the most common
tunes of the training split, the generic <anytune> otherwise.

A model trained with titles (`poetgen train --titles`) reads a shi's title after its controls:
<eop> <style> <form> title ： text <eop>, for TITLE_SHARE of the poems whose title says what the poem
is about (clean_title); the rest stay untitled, so the same model writes with or without a title.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
from typing import Iterable

STYLES = ("tang", "song", "ci")          # what `generate --style` offers
SHI_FORMS = ("wujue", "qijue", "wulv", "qilv", "other")
ANY_TUNE = "<anytune>"
DEFAULT_STYLE = "tang"
TITLE_END = "："          # ends a title in a sequence (a character every shipped vocabulary has)
MAX_TITLE = 12            # characters of a title, after cleaning; longer ones are left out
TITLE_SHARE = 0.75        # share of the titled training poems that read their title (by a hash of the text)
_NUMERALS = "一二三四五六七八九十百千〇○两零"
_NOTES = re.compile(r"[（(][^）)]*[）)]")                                      # (并序) and the like
_SERIES = re.compile(f"([{_NUMERALS}]+[首章绝律篇阕]|其[{_NUMERALS}]+|[{_NUMERALS}]+)+$")   # 十首一, 二首其二
_MUSIC_BUREAU = re.compile(r"^(\S{2,4}歌辞|\S{2}曲辞)")                   # 相和歌辞置酒行 -> 置酒行
_MARKS = re.compile(r"[《》「」〈〉“”‘’\"'·・\s]")
_TITLE_MARKS = "，。、：；！？,.:;!?"                 # punctuation: a title with one inside is a sentence
_PUNCTUATION = re.compile(f"[{re.escape(_TITLE_MARKS)}]")


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


def clean_title(title: str, genre: str = "shi") -> str | None:
    """What a title says the poem is about, as a model reads it: notes, quotation marks, 乐府 headings
    and series numbers (其二, 十首一) removed; None for ci (the tune is their control), for titles that are
    empty or longer than MAX_TITLE after cleaning, and for titles that are sentences (punctuation inside)."""
    if genre == "ci" or not title:
        return None
    text = _MARKS.sub("", _NOTES.sub("", title))
    text = _MUSIC_BUREAU.sub("", _MUSIC_BUREAU.sub("", text))   # 鼓吹曲辞凯乐歌辞破阵乐 -> 破阵乐
    text = _SERIES.sub("", _SERIES.sub("", text))
    text = text.rstrip(_TITLE_MARKS)
    if not text or len(text) > MAX_TITLE or _PUNCTUATION.search(text):
        return None
    return text


def reads_title(poem) -> str | None:
    """The title a model trained with titles reads before this training poem: its clean_title for
    TITLE_SHARE of the poems that have one (chosen by a hash of the text, so every run agrees), else None."""
    labels = labels_of(poem)
    title = clean_title(getattr(poem, "title", "") or "", "ci" if labels.style == "ci" else "shi")
    if title is None:
        return None
    share = int.from_bytes(hashlib.sha256(("title" + poem.text).encode("utf-8")).digest()[:4], "big") / 2 ** 32
    return title if share < TITLE_SHARE else None


def vocabulary_texts(texts: list[str], conditioned: bool, min_count: int) -> list[str]:
    """The texts a tokenizer is built from: `texts`, and for a conditioned model enough TITLE_END
    characters to keep it when the poems themselves use it fewer than min_count times (a vocabulary that
    already holds it is unchanged). So a model trained with titles and its reverse model, which reads
    none, share one tokenizer."""
    if not conditioned or sum(text.count(TITLE_END) for text in texts) >= min_count:
        return texts
    return texts + [TITLE_END * min_count]


def control_vocabulary(poems: Iterable, top_tunes: int = 200) -> list[str]:
    """Every control token, in a fixed order: styles, shi forms, the generic tune, then the most
    common tunes of `poems` (by count, then name), so the same corpus gives the same list."""
    tunes = collections.Counter(labels.tune for labels in map(labels_of, poems) if labels.tune)
    common = sorted(tunes, key=lambda tune: (-tunes[tune], tune))[:top_tunes]
    return ([style_token(s) for s in STYLES] + [form_token(f) for f in SHI_FORMS] + [ANY_TUNE]
            + [tune_token(t) for t in sorted(common)])


TUNE_JOINS = "・·"   # the corpus spells some tunes as two names joined (望江南・忆江南): its token does too


def label_parts(label: str) -> list[str]:
    """The names a corpus tune label joins (望江南・忆江南 → 望江南, 忆江南); a plain name alone."""
    return [part for part in label.translate({ord(mark): "・" for mark in TUNE_JOINS}).split("・") if part]


def tune_label(tokenizer, names) -> str:
    """The first of a tune's `names` (its name, then other names) that the model has a control token for;
    else the first token (in the model's order) that joins one of them with another name (望江南・忆江南
    for 忆江南); the tune's own name when there is none (the prefix then takes the generic tune token)."""
    exact = next((name for name in names if tokenizer.has_control(tune_token(name))), None)
    if exact is not None:
        return exact
    prefix = tune_token("")[:-1]
    joined = {}
    for token in tokenizer.controls:
        if token.startswith(prefix) and any(mark in token for mark in TUNE_JOINS):
            label = token[len(prefix):-1]
            for part in label_parts(label):
                joined.setdefault(part, label)
    return next((joined[name] for name in names if name in joined), names[0])


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

    def for_poem(self, poem, titles: bool = False) -> list[int]:
        """A training poem's prefix; with `titles`, its title after the controls when reads_title gives one."""
        prefix = self.for_labels(labels_of(poem))
        title = reads_title(poem) if titles and self.enabled else None
        return self.with_title(prefix, title) if title else prefix

    def for_request(self, style: str, form: str, tune: str = "", title: str = "") -> list[int]:
        """The prefix `generate` feeds: a Tang or Song shi of `form` (free verse: "other"), or a ci; a
        model trained with titles reads `title` after the controls."""
        if style == "ci":
            return self.for_labels(Labels("ci", "ci", tune))
        prefix = self.for_labels(Labels(style, form if form in SHI_FORMS else "other", ""))
        return self.with_title(prefix, title) if title else prefix

    def with_title(self, prefix: list[int], title: str) -> list[int]:
        return prefix + self.tokenizer.encode(title) + [self.tokenizer.id_of(TITLE_END)]

