"""The 词谱: ci tunes (词牌) and their variants (格), read from the shipped table poetgen/data/cipu.json.gz.

It finds a tune by any of its names and turns a variant into a Layout; it knows no rhyme table
(ci_rhyme.py) and no model. scripts/build_cipu.py builds the table from the couyun data (MIT).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gzip
import json
import re
from pathlib import Path

from poetgen.control import label_parts
from poetgen.corpus import to_simplified
from poetgen.errors import BadInput, PoetgenError
from poetgen.layout import MARKS, STOP_MARKS, Layout

TABLE_PATH = Path(__file__).resolve().parent / "data" / "cipu.json.gz"
PING, ZE, EITHER = "平", "仄", "中"
# The table's marks as written by a layout: "、" (读) is a pause inside a sentence, written "，".
WRITTEN_MARK = {"。": "。", "？": "。", "！": "。", "，": "，", "、": "，", "；": "，", "：": "，"}


SHOWN_NAME = 40   # characters of an unknown tune name an error repeats


class TableUnavailable(PoetgenError):
    """The shipped 词谱 table is missing or corrupt."""


class UnknownTune(BadInput):
    """A tune name, other name or pinyin that no tune in the table has."""


@dataclasses.dataclass(frozen=True)
class RhymeSlot:
    """One rhyming position of a variant."""

    pos: int        # 0-based index among the poem's Han characters
    group: int      # which rhyme of the variant it belongs to (0 = the first; a tune may change rhyme)
    xie: bool       # 叶韵: the group's 部 in the other tone (平 <-> 上去)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One 格 of a tune: a tone per character, clause lengths and marks, rhyme slots."""

    tune: str                          # the tune's name
    number: int                        # 1-based, as the 词谱 counts its 格
    tones: str                         # 平 / 仄 / 中 per character, the whole poem run together
    line_lengths: tuple[int, ...]      # characters per clause, from the model poem's punctuation
    marks: str                         # the model poem's mark after each clause
    rhymes: tuple[RhymeSlot, ...]      # in position order
    repeats: tuple[tuple[int, int], ...] = ()   # (position, source): a 叠 phrase's characters copy those before it
    entering: tuple[int, ...] = ()     # 仄 groups the 谱's model poem and most of the corpus rhyme in 入声
    free: tuple[int, ...] = ()         # positions the 谱 marks 平 or 仄 that its poets left free: 中 in `tones`
    marked: str = ""                   # the 谱's own marks (`tones` before `free`): what tells variants apart
    optional: tuple[int, ...] = ()     # rhyme positions most of its poets did not rhyme (句中韵): either is accepted
    filled: tuple[int, ...] = ()       # 律句 positions the source left 中 and its poets fix: their tone in `tones`
    borrowed: tuple[int, ...] = ()     # a 又一体 marked in full: the main form's 中 where they share clauses, 中 in `tones`

    @property
    def as_marked(self) -> "Variant":
        """This variant with the 谱's own marks: ci_checks.check_against_tune chooses the variant a ci was
        written to by them, so a freed position never draws a ci from the variant that marks it."""
        changed = self.free or self.filled or self.borrowed
        return dataclasses.replace(self, tones=self.marked, free=(), filled=(), borrowed=()) if changed else self

    @property
    def length(self) -> int:
        return len(self.tones)

    @property
    def group_count(self) -> int:
        return len({slot.group for slot in self.rhymes})

    def group_tone(self, group: int) -> str:
        """平 or 仄: the tone the group's own (not 叶) positions ask for; 中 when the pattern leaves it free."""
        asked = {self.tones[s.pos] for s in self.rhymes if s.group == group and not s.xie} - {EITHER}
        if len(asked) == 1:
            return asked.pop()
        xie = {self.tones[s.pos] for s in self.rhymes if s.group == group and s.xie} - {EITHER}
        return {PING: ZE, ZE: PING}[xie.pop()] if len(xie) == 1 else EITHER

    @functools.cached_property
    def steered_rhymes(self) -> tuple[RhymeSlot, ...]:
        """The rhyme slots the rules steer: the variant's, and the source of a repeat that copies into one
        from a position no rhyme holds, with that slot's group and 叶 (调笑令's 转应: the 树 of 树红 becomes
        the next clause's 红树's rhyme, so it is written as that rhyme)."""
        slot_at = {s.pos: s for s in self.rhymes}
        sources = [RhymeSlot(source, slot_at[pos].group, slot_at[pos].xie) for pos, source in self.repeats
                   if pos in slot_at and source not in slot_at]
        return tuple(sorted(self.rhymes + tuple(sources), key=lambda s: s.pos))

    @functools.cached_property
    def layout(self) -> Layout:
        """The variant as a Layout: its clauses, "。" or "，" after each, any mark accepted but the last."""
        ends, pos = [], 0
        for n in self.line_lengths:
            pos += n
            ends.append(pos - 1)
        rhyme_lines = tuple(i for i, end in enumerate(ends) if end in {s.pos for s in self.rhymes})
        marks = tuple(WRITTEN_MARK[m] for m in self.marks)
        marks = marks[:-1] + ("。",)
        accepted = (MARKS,) * (len(marks) - 1) + (STOP_MARKS,)
        return Layout(f"{self.tune}#{self.number}", self.line_lengths, marks, accepted, rhyme_lines)


@dataclasses.dataclass(frozen=True)
class SharedName:
    """A name of another tune that Song poets gave this one too (scripts/build_cipu.py, mark_also_called):
    乌夜啼, the 谱's 47-to-50-character tune, for 相见欢 (李煜's 无言独上西楼)."""

    name: str                         # the name, simplified (乌夜啼)
    trad: str                         # its traditional spelling where its tune has one (烏夜啼), else ""
    of: str                           # the tune the name finds, whose own it is (乌夜啼)
    ci: tuple[tuple[int, int], ...]   # (characters, ci): the corpus's ci so titled that were written to this tune
    total: int                        # the corpus's ci titled with the name alone

    @property
    def count(self) -> int:
        return sum(n for _, n in self.ci)


NOTED_SHARE = 3   # a name's other tune is noted where at least 1/NOTED_SHARE of the ci so titled are its
DOUBLED = 1.5   # a 单调 tune's variant this many times its first form's length is a 双调 (Tune.sections_of)


@dataclasses.dataclass(frozen=True)
class Tune:
    names: tuple[str, ...]          # the name first, then other names (simplified)
    names_trad: tuple[str, ...]     # the same in traditional characters
    pinyin: tuple[str, ...]         # full pinyin and initials
    sections: str                   # 单调 / 双调 / 三段 / 四段
    variants: tuple[Variant, ...]
    also_called: tuple[SharedName, ...] = ()   # other tunes' names its poets gave it too (相见欢: 乌夜啼)
    usual: int = 1                  # the variant written when none is asked: the 谱's first, or the one far
                                    # more corpus ci take (临江仙: the 8th, 60 characters; build_cipu.mark_usual)
    pinyin_also: tuple[str, ...] = ()   # readings not the name's that readers type (yongyuyue for 永遇乐's yongyule)

    @property
    def name(self) -> str:
        return self.names[0]

    def variant(self, number: int | None, asked: str = "") -> Variant:
        """Variant `number` (1-based); None means the usual one (`usual`). `asked`: the name the user gave,
        which an error repeats (shown_name)."""
        if number is None:
            return self.variants[self.usual - 1]
        if not 1 <= number <= len(self.variants):
            count = len(self.variants)
            raise BadInput(f"{shown_name(asked, self.name)} has one variant: leave the variant out, or give 1"
                           if count == 1 else f"{shown_name(asked, self.name)} has {count} variants; the variant "
                           f"must be 1 to {count}", field="variant")
        return self.variants[number - 1]

    def sections_of(self, variant: Variant) -> str:
        """单调, 双调, 三段 or 四段 for one variant. The 谱 gives them for a tune's first form only: a variant
        of a 单调 tune with at least DOUBLED times its first form's characters doubles it, a 双调 (江城子's
        70 against 35, 南乡子's 56, 天仙子's 68)."""
        if self.sections == "单调" and variant.length >= DOUBLED * self.variants[0].length:
            return "双调"
        return self.sections

    @property
    def labels(self) -> tuple[str, ...]:
        """Every name a corpus may label its ci with: the names, then the traditional spellings (a model
        trained on 蝶戀花 before import simplified tune names has <tune:蝶戀花>)."""
        return (*self.names, *self.names_trad)

    @property
    def full_pinyin(self) -> str:
        """The full pinyin keys, "/"-joined (念奴娇: dajiangdongqu/leijiangyue/niannujiao): the 词谱 gives
        them sorted, not aligned with its names, so no one of them can be named the main name's; initials
        (nnj) are left out: no longer than the longest name."""
        longest = max(len(name) for name in self.names)
        return "/".join(key for key in self.pinyin if len(key) > longest)


def variant_from(tune: str, number: int, raw: dict) -> Variant:
    """Variant `number` of `tune` from its table entry (`raw`: a variant as scripts/build_cipu.py writes it), its
    marks applied: the positions the build found free or borrowed read 中, those it filled take their tone."""
    slots = sorted((RhymeSlot(abs(p), g, p < 0) for g, positions in enumerate(raw["rhymes"]) for p in positions),
                   key=lambda s: s.pos)
    free = tuple(position for position, _, _ in raw.get("free", ()))   # scripts/build_cipu.py's mark_free
    filled = {position: tone for position, tone, _, _ in raw.get("filled", ())}   # and its mark_filled
    borrowed = tuple(raw.get("borrowed", ()))   # and its borrow_free
    tones = "".join(EITHER if i in free or i in borrowed else filled.get(i, tone) for i, tone in enumerate(raw["tones"]))
    return Variant(tune, number, tones, tuple(raw["lengths"]), raw["marks"], tuple(slots),
                   tuple((position, source) for position, source in raw.get("repeats", ())),
                   tuple(raw.get("entering", ())), free, raw["tones"],
                   tuple(position for position, _, _ in raw.get("optional", ())),   # build_cipu's mark_optional
                   tuple(sorted(filled)), borrowed)


class TuneTable:
    """Every tune, found by name, other name, traditional name or pinyin."""

    def __init__(self, raw: dict):
        self.source: str = raw["source"]
        self.tunes: list[Tune] = []
        self._by_key: dict[str, Tune] = {}
        self._shared: dict[str, list[Tune]] = {}   # keys several tunes have (pinyin initials: yjm)
        for entry in raw["tunes"]:
            name = entry["names"][0]
            tune = Tune(tuple(entry["names"]), tuple(entry["names_trad"]), tuple(entry["pinyin"]), entry["sections"],
                        tuple(variant_from(name, i + 1, v) for i, v in enumerate(entry["variants"])),
                        tuple(SharedName(e["name"], e["trad"], e["of"], tuple(map(tuple, e["ci"])), e["total"])
                              for e in entry.get("also_called", ())), entry.get("usual", [1])[0],
                        tuple(entry.get("pinyin_also", ())))
            self.tunes.append(tune)
            for key in dict.fromkeys(lookup_keys(tune)):
                first = self._by_key.setdefault(key, tune)
                if first is not tune:
                    self._shared.setdefault(key, [first]).append(tune)
        for tune in self.tunes:   # ü typed u (nuguanzi), another reading (yongyuyue): where no tune has it itself
            for key in lookup_keys(tune, typed=True):
                self._by_key.setdefault(key, tune)
        self._also: dict[str, list[tuple[Tune, SharedName]]] = {}   # a name's key -> the other tunes also so called
        for tune in self.tunes:
            for shared in tune.also_called:
                own = self._by_key.get(lookup_key(shared.name))   # the name typed in pinyin too (wuyeti, wyt)
                spellings = (shared.name, shared.trad, *(own.pinyin if own is not None and own.name == shared.name
                                                         else ()))
                for key in dict.fromkeys(lookup_key(spelling) for spelling in spellings if spelling):
                    self._also.setdefault(key, []).append((tune, shared))

    def keys_of(self, tune: Tune) -> list[str]:
        """Every lookup key (lookup_key's spelling) that finds `tune`."""
        return [key for key in dict.fromkeys((*lookup_keys(tune), *lookup_keys(tune, typed=True)))
                if key not in self._shared and self._by_key.get(key) is tune]

    @property
    def shared_keys(self) -> frozenset[str]:
        """The lookup keys several tunes have (lower-cased): find() and get() give none of them a tune."""
        return frozenset(self._shared)

    def _key(self, name: str) -> str:
        """The lookup key of `name`: as typed, or, where no tune has that, as simplified Chinese writes it
        (OpenCC t2s, as prompts are read: 浣谿沙 is 浣溪沙). Typed first, since t2s changes names the 谱
        has in their own right (徵招 would be 征招)."""
        key = lookup_key(name)
        if self._known(key):
            return key
        plain = lookup_key(to_simplified(name))
        return plain if self._known(plain) else key

    def _known(self, key: str) -> bool:
        return key in self._by_key or key in self._shared or key in self._also

    def find(self, name: str) -> Tune | None:
        """The tune of `name`; None when no tune, or several, have it."""
        key = self._key(name)
        return None if key in self._shared else self._by_key.get(key)

    def find_label(self, label: str) -> Tune | None:
        """The tune of a corpus label: a name, or names joined (望江南・忆江南) when they are all of one
        tune or of none (`poetgen tunes` counts and `export --tunes N` ranks tunes so)."""
        tune = self.find(label) if label else None
        if tune is None and label:
            found = {t.name: t for part in label_parts(label) if (t := self.find(part)) is not None}
            tune = next(iter(found.values())) if len(found) == 1 else None
        return tune

    def also(self, name: str) -> list[tuple[Tune, SharedName]]:
        """The other tunes Song poets also called by `name`, with what the corpus shows (乌夜啼: 相见欢)."""
        return list(self._also.get(self._key(name), ()))

    def also_names(self, tune: Tune) -> list[tuple[Tune, SharedName]]:
        """The other tunes Song poets also called by one of `tune`'s names (乌夜啼's: 相见欢)."""
        return [(other, shared) for other in self.tunes for shared in other.also_called if shared.of == tune.name]

    def readings(self, name: str) -> list[Tune]:
        """The tunes a ci titled `name` may be written to: the tune `name` finds, then those its poets also
        called so (乌夜啼, then 相见欢: Tune.also_called); every tune of a key several share (yjm: 谒金门,
        一剪梅); none for an unknown name. The checker reads a ci as the one it fits best; a variant, and
        generation, belong to the tune `name` finds (get)."""
        key = self._key(name)
        if key in self._shared:
            return list(self._shared[key])
        found = self.find(name)
        return [] if found is None else [found, *(tune for tune, _ in self._also.get(key, ()))]

    def also_note(self, name: str) -> str:
        """A line for a name that Song poets also gave other tunes (`--tune 乌夜啼` writes 乌夜啼, and says
        which tune writes 李煜's 36 characters), else ""."""
        # only where the other form is a real share of them (a third): 12 of 804 浣溪沙 are 山花子's
        others = [(other, shared) for other, shared in self.also(name) if shared.count * NOTED_SHARE >= shared.total]
        if not others:
            return ""
        tune, asked = self.get(name), _short(variant_spelling(name))
        said = [f"{shared.count} of the corpus's {shared.total} ci so titled have {other.name}'s "
                f"{'/'.join(str(n) for n, _ in shared.ci)} characters: --tune {other.name} writes that form"
                for other, shared in others]
        return f"--tune {asked} writes {tune.name} ({tune.variant(None).length} characters); " + "; ".join(said)

    def find_written(self, label: str, text: str) -> Tune | None:
        """The tune a corpus ci labelled `label` was written to, as far as its length tells: find_label's,
        or a tune Song poets also called so that has the ci's character count where that one has not (a
        ci titled 乌夜啼 of 36 characters is 相见欢's). `poetgen tunes` and `export --tunes N` count so."""
        tune = self.find_label(label)
        if tune is None or self._key(label) not in self._also:
            return tune
        length = len(re.sub(r"[，。、？！；：\s]", "", text))
        fitting = [t for t in self.readings(label) if length in {v.length for v in t.variants}]
        return tune if tune in fitting or not fitting else fitting[0]

    def get(self, name: str) -> Tune:
        """The tune of `name`; UnknownTune naming the closest names when there is none, or the tunes
        that share it (pinyin initials: yjm is 谒金门 and 一剪梅)."""
        shared = self._shared.get(self._key(name))
        if shared:
            raise UnknownTune(f"{_short(name)!r} names {len(shared)} tunes: "
                              f"{', '.join(t.names[0] for t in shared)}; give the tune's name", field="tune")
        tune = self.find(name)
        if tune is None:
            keys = difflib.get_close_matches(name.strip().lower(), list(self._by_key), n=12, cutoff=0.4)
            close = list(dict.fromkeys(self._by_key[key].name for key in keys))[:3]   # tunes, not their spellings
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UnknownTune(f"unknown tune {_short(name)!r}{hint} (list them with `poetgen tunes`)", field="tune")
        return tune

    def search(self, query: str = "") -> list[Tune]:
        """Tunes any of whose names or pinyin contain `query` (all tunes for an empty query); where none
        does as typed, those that contain it as simplified Chinese writes it (浣谿: 浣溪)."""
        found = self._search(lookup_key(query))
        plain = lookup_key(to_simplified(query)) if query else ""
        return found if found or plain == lookup_key(query) else self._search(plain)

    def _search(self, query: str) -> list[Tune]:
        if not query:
            return list(self.tunes)
        also = {tune.name for key, pairs in self._also.items() if query in key for tune, _ in pairs}
        return [t for t in self.tunes if t.name in also
                or any(query in key for key in (*lookup_keys(t), *lookup_keys(t, typed=True)))]


def _short(name: str) -> str:
    """A name as an error repeats it: on one line, at most SHOWN_NAME characters."""
    name = " ".join(name.split())
    return name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "…"


def lookup_key(text: str) -> str:
    """How a tune is looked up: lower case, without spaces, apostrophes or hyphens (Man Jiang Hong, xi'jiang
    yue), ü written v as the tables write it (nüguanzi, nu:guanzi: nvguanzi)."""
    return re.sub(r"[\s'’\-]", "", text.lower()).replace("ü", "v").replace("u:", "v")


def lookup_keys(tune: Tune, typed: bool = False) -> list[str]:
    """A tune's lookup keys: its names in both scripts and its pinyin; `typed`: instead, its pinyin with
    ü typed u (nuguanzi for nvguanzi) and its other readings (pinyin_also: yongyuyue), which find it only
    where no tune has that spelling itself."""
    pinyin = [lookup_key(p) for p in tune.pinyin]
    if typed:
        return [p.replace("v", "u") for p in pinyin if "v" in p] + [lookup_key(p) for p in tune.pinyin_also]
    return [lookup_key(k) for k in (*tune.names, *tune.names_trad)] + pinyin


@functools.lru_cache(maxsize=2)
def tune_table(path: Path = TABLE_PATH) -> TuneTable:
    try:
        raw = json.loads(gzip.decompress(Path(path).read_bytes()).decode("utf-8"))
        return TuneTable(raw)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise TableUnavailable(f"cannot read the 词谱 table {path}: {error}") from None


def variant_spelling(name: str) -> str:
    """A tune name as typed, with a full-width ＃ (浣溪沙＃3, as typed in Chinese) read as "#"."""
    return name.strip().replace("＃", "#")


def resolve(name: str, variant: int | None = None) -> Variant:
    """The variant of a tune named by any of its names, with an optional "#k" (as errors, the SavedModel
    and `poetgen tunes` spell a variant: 浣溪沙#3); the tune's usual one (Tune.usual) when neither gives one."""
    base, mark, number = variant_spelling(name).partition("#")
    if not base.strip():
        raise BadInput(f"{name!r}: no tune name" + (" before '#' (浣溪沙#3)" if mark else ""), field="tune")
    if mark:
        if not re.fullmatch(r"[1-9][0-9]{0,3}", number.strip()):   # as the SavedModel reads it (not ２, 01 or ²)
            raise BadInput(f"{name!r}: a variant after '#' is a number (浣溪沙#3)", field="tune")   # typed there
        if variant is not None and variant != int(number):
            raise BadInput(f"{name!r} names variant {int(number)} but the variant asked is {variant}", field="variant")
        name, variant = base, int(number)
    return tune_table().get(name).variant(variant, name)


def shown_name(asked: str, name: str, label: str = "") -> str:
    """How messages name a tune (`name`) or one of its variants (`label`: 归字谣#1): after the name the
    user gave when that differs (十六字令 is 归字谣's other name: "十六字令 (归字谣#1 in the 词谱)", which does
    not read as a name to type back)."""
    asked = _short(asked.partition("#")[0])   # one line, however it was spaced
    return label or name if not asked or asked == name else f"{asked} ({label or name} in the 词谱)"
