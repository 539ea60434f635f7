"""Tune-name pinyin for scripts/build_cipu.py: the couyun tables' keys with each polyphone read as the name means it.

The tables read a character one way wherever it stands (乐 always yuè, 都 dōu, 薄 báo, 长 often zhǎng); this
reads no text and needs no pinyin library: a key is cut into the name's syllables, and READINGS say which to change.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# a toneless syllable as the tables write it (ü as v): an initial, then a final
SYLLABLE = re.compile(r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|van|"
                      r"ai|ao|an|ei|en|er|ia|ie|in|iu|ou|ua|ue|ui|un|uo|ve|vn|a|e|i|o|u|v)")


class Reading(NamedTuple):
    table: str                       # the syllable the tables give the character
    right: str                       # the syllable it reads in the names below
    names: tuple[str, ...] | None    # the tune names (any of a tune's names) it reads so in; None: every name holding it
    source: str                      # why: the sense, and where the reading is given


# 乐: yuè where the name is a piece of music (清平乐, 破阵乐, 齐天乐), lè where it is a joy; the tables read yuè
# throughout. The lè names are those listed by 金文明 (《咬文嚼字》 2001 no. 12; 守护语林, 2007, p. 53), who reads
# the 词谱 names by sense as 万树 orders them, and 渔父乐 (徐积's name for 渔歌子: the fisherman's joy) by the same
# test. The other 乐 names keep yuè: 回波乐, 平湖乐, 三登乐, 应景乐, 保寿乐, 小圣乐, 安平乐慢, 升平乐 are in neither list.
JOY = ("永遇乐", "归田乐", "倾杯乐", "天下乐", "思归乐", "于飞乐", "长生乐", "长寿乐", "昼夜乐", "逍遥乐", "还京乐",
       "夜半乐", "抛毬乐", "渔父乐")
READINGS: dict[str, tuple[Reading, ...]] = {
    "乐": (Reading("yue", "le", JOY, "lè, joy (金文明, see JOY)"),),
    "长": (Reading("zhang", "chang", None, "cháng, long: 长相思, 应天长, 八节长欢"),),
    "重": (Reading("zhong", "chong", ("小重山", "江月晃重山"), "chóng, layered hills: 小重山"),),
    "还": (Reading("hai", "huan", None, "huán, to return: 还京乐, 梦还京"),),
    "卜": (Reading("bo", "bu", None, "bǔ, divination: 卜算子"),),
    "徵": (Reading("zheng", "zhi", None, "zhǐ, the fourth note of the scale (宫商角徵羽): 徵招"),),
    "招": (Reading("zhao", "shao", ("徵招", "角招", "徵招调中腔"),
                   "sháo, 韶 (music): 《孟子·梁惠王下》 '盖徵招、角招是也', whence 姜夔's 徵招 and 角招"),),
    "角": (Reading("jiao", "jue", ("角招",), "jué, the third note of the scale, as in 徵招 (霜天晓角 keeps jiǎo, a horn)"),),
    "乾": (Reading("qian", "gan", None, "gān, dry: 乾荷叶"),),
    "都": (Reading("dou", "du", None, "dū, a capital: 绛都春, 宴清都 (清都, the heavenly capital)"),),
    "薄": (Reading("bao", "bo", None, "bó, the literary reading: 薄倖 bóxìng (现代汉语词典), 薄媚"),),
    "系": (Reading("xi", "ji", ("系裙腰",), "jì, to tie: a skirt's waist tied"),),
    "唝": (Reading("gong", "hong", None, "hǒng in 啰唝 luóhǒng (现代汉语词典; 刘采春's 啰唝曲)"),),
    "莎": (Reading("sha", "suo", None, "suō, sedge (莎草): 踏莎行"),),
    "佛": (Reading("fu", "fo", None, "fó, the Buddha: 绕佛阁"),),
    "苕": (Reading("shao", "tiao", None, "tiáo, reed flowers (苕溪): 泛青苕"),),
}


def syllables(key: str, count: int) -> list[tuple[str, ...]]:
    """Every way to cut `key` into `count` syllables."""
    if count == 0:
        return [()] if not key else []
    cuts = []
    for length in range(1, min(6, len(key)) + 1):
        if SYLLABLE.fullmatch(key[:length]):
            cuts += [(key[:length], *rest) for rest in syllables(key[length:], count - 1)]
    return cuts


def read_names(tunes: list[dict]) -> dict[tuple[str, str], str]:
    """Each tune's full pinyin keys with its names' polyphones read by READINGS, and their initials with them
    (kept as the tables give them where another tune has the new initials: 应天长's ytz, as ytc is 玉堂春's).
    A full key so changed is kept in `pinyin_also` (the tables' reading, which many readers type: yongyuyue)
    where no other tune has it. Returns {(tune, the key as the tables gave it): the key now}; raises
    ValueError where a key could be read two ways."""
    owners: dict[str, set[int]] = {}
    for number, tune in enumerate(tunes):
        for key in tune["pinyin"]:
            owners.setdefault(key, set()).add(number)
    changed = {}
    for number, tune in enumerate(tunes):
        for name in tune["names"]:
            rules = {i: r for i, char in enumerate(name) for r in READINGS.get(char, ())
                     if r.names is None or name in r.names}
            for at, key in enumerate(tune["pinyin"]):
                cuts = {cut for cut in syllables(key, len(name)) if any(cut[i] == r.table for i, r in rules.items())
                        and all(cut[i] in (r.table, r.right) for i, r in rules.items())}   # 长寿乐: chang already
                if not rules or not cuts:
                    continue
                if len(cuts) > 1:
                    raise ValueError(f"{tune['names'][0]}: {key} reads {name} in {len(cuts)} ways")
                cut = cuts.pop()
                read = tuple(rules[i].right if i in rules else syllable for i, syllable in enumerate(cut))
                tune["pinyin"][at] = "".join(read)
                changed[(tune["names"][0], key)] = "".join(read)
                if not owners.get(key, set()) - {number}:   # the tables' reading still finds it (yongyuyue)
                    tune.setdefault("pinyin_also", []).append(key)
                initials, new = "".join(s[0] for s in cut), "".join(s[0] for s in read)
                if initials != new and initials in tune["pinyin"] and not owners.get(new, set()) - {number}:
                    tune["pinyin"][tune["pinyin"].index(initials)] = new
                    changed[(tune["names"][0], initials)] = new
    return changed
