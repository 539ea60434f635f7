"""Build poetgen/data/cipu.json.gz, the shipped 词谱 table, from the couyun tables (钦定词谱, MIT).

Reproducible byte for byte: sorted keys, fixed separators, gzip with mtime 0 and no file name.
Usage: python scripts/build_cipu.py [SOURCE_DIR] [OUTPUT]   (default ../shared/data/cipu)

EXTRA_NAMES adds a few other names by hand; the shipped ci corpus (corpus/ci.jsonl.gz) adds others: it labels some ci with two names joined
(凤栖梧・蝶恋花), and a part that no tune has is added to the one tune its other part names (凤栖梧 to
蝶恋花), so `--tune 凤栖梧` finds it.
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from poetgen.control import label_parts  # noqa: E402  (the corpus's joined tune labels, read as poetgen reads them)
from poetgen.corpus import to_simplified, to_traditional  # noqa: E402  (OpenCC, as `--traditional` converts)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cipu_pinyin import read_names  # noqa: E402  (this folder's: the tables' pinyin read as the names mean them)
# ../shared/data/cipu beside the repository (or beside the folder holding its worktree)
DEFAULT_SOURCE = next((p / "shared" / "data" / "cipu" for p in ROOT.parents if (p / "shared" / "data" / "cipu").is_dir()),
                      ROOT.parent / "shared" / "data" / "cipu")
DEFAULT_OUTPUT = ROOT / "poetgen" / "data" / "cipu.json.gz"
CORPUS = ROOT / "corpus" / "ci.jsonl.gz"   # its `tune` labels give other names (see above)
ALSO_CI = 3             # corpus ci titled with a name, of one length its tune lacks, that fit another tune before
ALSO_FIT = 0.9          # mark_also_called gives that tune the name: at this share of their rhyme and 平仄 positions
USUAL_CI = 10           # corpus ci of one variant's clause lengths before mark_usual makes it the default…
USUAL_SHARE = 1 / 4     # …and at least this share of the tune's ci…
USUAL_OVER_FIRST = 2    # …and this many times the ci of the first variant's
ENTERING_VOTES = 5      # a variant's 入声 group needs this many corpus ci to be judged by their share…
ENTERING_SHARE = 2 / 3  # …of which at least this share rhyme it in 入声 (mark_entering)
FREE_VOTES = 20         # one-tone characters a variant's corpus ci put at a 平 or 仄 position before mark_free judges it…
FREE_SHARE = 1 / 3      # …of which at least this share take the other tone: the poets left it free…
FREE_FIT = 0.85         # …counting the ci whose characters fit this share of the variant's other 平仄 marks
FILLED_COLUMNS = {5: (1, 3, 4), 7: (1, 3, 5, 6)}   # 律句 lengths mark_filled fills, and the columns it may fix…
GAP_SHARE = 0.8         # …in a clause the source leaves all 中 but its end, where this share agree…
FILLED_SHARE = 0.95     # …in a clause the 谱 marks in part, where this share of its poets' one-tone characters agree
OPTIONAL_SHARE = 1 / 2  # a rhyme that fewer than this share of FREE_VOTES or more such ci rhyme is optional (mark_optional)
# Marks of the model poems; "、" (读, a pause inside a sentence) breaks a clause like "，".
MARKS = "，。、？！；："
TONES = set("平仄中")
EITHER_TONE = "中"
# the mark after a phrase's tones in ge_lyu_sep, up to its last word: 韵 rhyme, 句 clause, 读 pause, 叶, 叠
# repeat, 重 rhyme again, with a tone or 换 before it (仄韵, 换平韵: a rhyme in that tone, a new rhyme)
PHRASE_MARK = re.compile(r"[^韵句读叶叠重]*[韵句读叶叠重]?")
ATTRIBUTION = ("钦定词谱 (1715) patterns from the couyun project by hulbji (MIT licence, see CIPU_LICENSE), "
               "files ci_pu/ci_index.json and ci_pu/ci_list/cipai_N.json at commit 1744e87 (v2.0.0)")


# Other names of a tune that the couyun tables lack and the shipped ci corpus labels ci with (思佳客 33 ci,
# 摸鱼子 7, 六么令 17, 锁窗寒 7, 红林擒近 9): the 钦定词谱's own 又名, or a variant spelling of the name.
EXTRA_NAMES = {
    "鹧鸪天": ["思佳客"],
    "摸鱼儿": ["摸鱼子", "迈陂塘", "双蕖怨"],
    "六幺令": ["六么令"],
    "琐窗寒": ["锁窗寒", "琐寒窗"],
    "红林檎近": ["红林擒近"],
    # other names readers know the tunes by (the 词谱's 又名), which neither the tables nor the corpus give
    "古调笑": ["转应曲", "宫中调笑"],
    "浪淘沙令": ["卖花声"],
    "忆江南": ["谢秋娘"],
    "长相思": ["双红豆"],
    "卜算子": ["百尺楼", "楚天遥"],
    "满江红": ["上江虹"],
    "虞美人": ["一江春水", "玉壶冰"],
    "一剪梅": ["玉簟秋"],
}
# the full pinyin of the names above that readers know tunes by, so `poetgen tunes maihuasheng` finds them
EXTRA_PINYIN = {"转应曲": "zhuanyingqu", "宫中调笑": "gongzhongtiaoxiao", "卖花声": "maihuasheng",
                "谢秋娘": "xieqiuniang", "双红豆": "shuanghongdou", "百尺楼": "baichilou", "楚天遥": "chutianyao",
                "上江虹": "shangjianghong", "一江春水": "yijiangchunshui", "玉壶冰": "yuhubing", "玉簟秋": "yudianqiu"}
# what the couyun tables hold that is not the 词谱's: 贺新郎's variant 12 is a modern joke poem, and its
# first words (男同久) were made a name of the tune
EXCLUDED = {"贺新郎": {"variants": (12,), "names": ("男同久",), "pinyin": ("nantongjiu", "ntj")}}


def clauses_of(model_poem: str) -> tuple[list[int], str]:
    """Clause lengths and the mark ending each, from the model poem's punctuation."""
    lengths, marks, count = [], [], 0
    for ch in model_poem:
        if ch in MARKS:
            if count == 0:
                raise ValueError(f"two marks in a row in {model_poem!r}")
            lengths.append(count)
            marks.append(ch)
            count = 0
        else:
            count += 1
    if count:
        raise ValueError(f"model poem does not end with a mark: {model_poem!r}")
    return lengths, "".join(marks)


def variant_of(raw: dict, where: str) -> dict:
    tones = raw["ge_lyu_str"]
    if set(tones) - TONES:
        raise ValueError(f"{where}: unknown tone marks {set(tones) - TONES}")
    lengths, marks = clauses_of(raw["origin"])
    if sum(lengths) != len(tones):
        raise ValueError(f"{where}: the model poem has {sum(lengths)} characters, the pattern {len(tones)}")
    ends, pos = set(), 0
    for n in lengths:
        pos += n
        ends.add(pos - 1)
    # Rhyme groups ordered by their first position; a negative position is 叶韵: the group's 部 in the
    # other tone (平 <-> 上去), as couyun's checker reads it.
    groups = sorted((sorted(positions, key=abs) for positions in raw["yun_classify"].values()),
                    key=lambda g: abs(g[0]))
    flat = sorted(abs(p) for g in groups for p in g)
    if flat != sorted(raw["rhyme_pos"]) or any(p not in ends for p in flat):
        raise ValueError(f"{where}: rhyme positions disagree with rhyme_pos or fall inside a clause")
    groups = consistent_xie(split_contradicted(groups, "".join(ch for ch in raw["origin"] if ch not in MARKS)), tones)
    repeats = repeats_of(raw, tones, groups)
    if repeats:   # a source the 谱 marks 中 (either) takes its copy's 平 or 仄: it is written there too
        pinned = list(tones)
        for position, source in reversed(repeats):   # last first, so a chain (错。错。错) pins back to its start
            if pinned[source] == EITHER_TONE:
                pinned[source] = pinned[position]
        tones = "".join(pinned)
    entry = {"tones": tones, "lengths": lengths, "marks": marks, "rhymes": groups}
    if repeats:
        entry["repeats"] = repeats
    return entry


def consistent_xie(groups: list[list[int]], tones: str) -> list[list[int]]:
    """The groups with their 叶 marks made to agree with the tones the pattern asks at them. A 叶 slot
    takes the group's 部 in the other tone, so where most of a group's own (not 叶) slots ask one tone, an
    own slot asking the other is 叶 (相见欢#2 marks 夜初长's 平 group's 江南望 叶 but not 江北望; 拨棹子#2,
    六州歌头#2), and a 叶 slot asking the group's own tone is not (女冠子#7): else only a character read in
    both tones could rhyme there. Two own slots at least must agree. A group of 叶 slots alone echoes the group before it (西江月#3's last
    clause, 羞见东邻娇小, after 绡 桥) and joins it."""
    merged: list[list[int]] = []
    for group in groups:
        if merged and all(p < 0 for p in group):
            merged[-1] = sorted(merged[-1] + group, key=abs)
        else:
            merged.append(group)
    result = []
    for group in merged:
        own = collections.Counter(tones[p] for p in group if p >= 0 and tones[p] != EITHER_TONE)
        ranked = own.most_common()
        if ranked and ranked[0][1] >= 2 and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
            tone = ranked[0][0]
            group = [-abs(p) if tones[abs(p)] not in (tone, EITHER_TONE) else abs(p) if tones[abs(p)] == tone else p
                     for p in group]
        result.append(group)
    return result


def split_contradicted(groups: list[list[int]], text: str) -> list[list[int]]:
    """The groups, each cut into its runs (positions not interrupted by another group's) where the model
    poem itself rhymes the runs apart: each run's characters share a 词林正韵 部, the whole group's share
    neither a 部 nor a 平水韵 group (灰 and 咍 rhyme together, though 词林正韵 puts them in two 部). 减字木兰花's
    main form marks its two 平 pairs one rhyme, but its model poem (欧阳修) rhymes 圆 穿 in 第七部 (先) and
    云 醺 in 第六部 (文): the 谱's 前后段各两仄韵、两平韵, each pair its own. A group whose runs, pairs at
    least, alternate run for run with those of a group so cut is cut too, though its model poem happens to
    keep one 部 (欧阳修's 仄 pairs 袂 起, 齿 事 are both 第三部): the two rhymes change together."""
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table

    rhyme, order = ci_rhyme(), sorted(abs(p) for g in groups for p in g)
    pingshui = table().numbered_groups_of

    def runs_of(group):
        runs, previous = [], None
        for p in group:   # sorted by position
            if previous is None or order.index(abs(p)) != order.index(abs(previous)) + 1:
                runs.append([])
            runs[-1].append(p)
            previous = p
        return runs

    def shared(positions):
        codes = [rhyme.codes(text[abs(p)]) for p in positions]
        return set.intersection(*map(set, codes)) if all(codes) else None

    def apart(group):
        runs = runs_of(group)
        one_group = set.intersection(*(set(pingshui.get(text[abs(p)], ())) for p in group))
        return len(runs) > 1 and shared(group) == set() and not one_group and all(shared(run) for run in runs)

    def alternate(one, other):   # ABAB…: their runs, pairs at least, take turns
        a, b = runs_of(one), runs_of(other)
        turns = sorted([(abs(run[0]), 0) for run in a] + [(abs(run[0]), 1) for run in b])
        return len(a) == len(b) > 1 and all(len(run) >= 2 for run in a + b) and \
            all(turns[k][1] != turns[k + 1][1] for k in range(len(turns) - 1))

    cut = [apart(group) for group in groups]
    cut = [c or any(cut[j] and alternate(group, other) for j, other in enumerate(groups) if j != k)
           for k, (group, c) in enumerate(zip(groups, cut))]
    result = [run for group, c in zip(groups, cut) for run in (runs_of(group) if c else [group])]
    return sorted(result, key=lambda g: abs(g[0]))


def repeats_of(raw: dict, tones: str, groups: list[list[int]]) -> list[list[int]]:
    """[position, source] of every character of a 叠 phrase (ge_lyu_sep marks it 叠) that repeats, in the
    model poem, the character as far before it as the phrase is long: all of 如梦令's 如梦。如梦, 忆秦娥's
    秦楼月 after 秦娥梦断秦楼月 and 钗头凤's 错。错。错; the echoed part of a phrase that varies its source
    (长相思's 汴水流，泗水流: 水流; 醉花间's 深相忆，莫相忆: 相忆). Not a pair whose tones (平 against 仄) or
    rhyme slots disagree, so a copied character keeps the 谱's tone and rhyme (a source marked 中 is given
    its copy's tone: variant_of); nor any of a variant whose phrases do not add up to its model poem.
    Also 调笑令's 转应: a two-character phrase that turns round the last two of the phrase before it in the
    model poem (王建's 百叶桃花树红。红树。红树: the tables mark it a new rhyme, not a 叠), whose tones agree;
    the second character, a rhyme of the new group, copies a character no rule rhymes, and the rhyme rule
    then keeps the group to what it reads."""
    text = "".join(ch for ch in raw["origin"] if ch not in MARKS)
    slot_of = {abs(p): (g, p < 0) for g, positions in enumerate(groups) for p in positions}
    repeats, pos = [], 0
    for words, pattern in zip(raw.get("ci_sep", ()), raw.get("ge_lyu_sep", ())):
        for phrase in words.split("\u3000"):   # each phrase: its tones, then its mark (see PHRASE_MARK)
            n = len(phrase)
            mark = PHRASE_MARK.match(pattern, n).group()
            pattern = pattern[n + len(mark):]
            if text[pos:pos + n] != phrase:
                return []
            if n == 2 and pos >= 2 and pos + n <= len(tones) and text[pos] != text[pos + 1] \
                    and (text[pos], text[pos + 1]) == (text[pos - 1], text[pos - 2]) \
                    and all(tones[a] == tones[b] or EITHER_TONE in (tones[a], tones[b])
                            for a, b in ((pos, pos - 1), (pos + 1, pos - 2))):
                repeats += [[pos, pos - 1], [pos + 1, pos - 2]]   # 转应: 树红 turned round, 红树
            if mark.endswith("叠") and n <= pos and pos + n <= len(tones):
                repeats += [[pos + k, pos - n + k] for k in range(n)
                            if text[pos + k] == text[pos - n + k]
                            and (tones[pos + k] == tones[pos - n + k] or EITHER_TONE in (tones[pos + k], tones[pos - n + k]))
                            and slot_of.get(pos + k) == slot_of.get(pos - n + k)]
            pos += n
    return repeats if pos == len(tones) == len(text) else []


def corpus_poems(corpus: Path | None) -> list[dict]:
    """The corpus's poems (none without a corpus), read once for every use below."""
    if corpus is None:
        return []
    with gzip.open(corpus, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def corpus_names(poems: list[dict], tunes: list[dict]) -> dict[int, list[str]]:
    """Tune index -> other names from the corpus's joined labels: each part no tune has, when exactly
    one tune has another part of the label."""
    owner: dict[str, set[int]] = {}
    for i, tune in enumerate(tunes):
        for name in tune["names"]:
            owner.setdefault(name, set()).add(i)
    labels = {poem.get("tune") or "" for poem in poems}
    added: dict[str, set[int]] = {}
    for label in labels:
        parts = label_parts(label)
        known = set().union(*(owner.get(part, set()) for part in parts))
        if len(parts) < 2 or len(known) != 1:
            continue
        for part in parts:   # a name of two characters or more, all Han (not 凌, not □□□)
            if part not in owner and len(part) > 1 and all("\u4e00" <= ch <= "\u9fff" for ch in part):
                added.setdefault(part, set()).update(known)
    names: dict[int, list[str]] = {}
    for part, tunes_of in sorted(added.items()):
        if len(tunes_of) == 1:   # one a label gives to two tunes (自度曲, "a tune of one's own") names neither
            names.setdefault(next(iter(tunes_of)), []).append(part)
    return names


def build(source: Path, corpus: Path | None = CORPUS) -> dict:
    index = json.loads((source / "ci_index.json").read_text(encoding="utf-8"))
    tunes, model_poems = [], []   # model_poems: per tune, its kept variants' model poems, marks left out
    for entry in sorted(index, key=lambda e: e["idx"]):
        raw_variants = json.loads((source / "ci_list" / f"cipai_{entry['idx']}.json").read_text(encoding="utf-8"))
        excluded = EXCLUDED.get(entry["names"][0], {})
        raw_variants = [v for i, v in enumerate(raw_variants) if i + 1 not in excluded.get("variants", ())]
        variants = [variant_of(v, f"{entry['names'][0]} variant {i + 1}") for i, v in enumerate(raw_variants)]
        model_poems.append(["".join(ch for ch in v["origin"] if ch not in MARKS) for v in raw_variants])
        tunes.append({
            "names": [n for n in entry["names"] if n not in excluded.get("names", ())],   # the tune name first,
            "names_trad": [n for n in entry["names_trad"] if to_simplified(n) not in excluded.get("names", ())],
            "pinyin": [p for p in entry["pinyins"] if p not in excluded.get("pinyin", ())],
            # the same in traditional characters; full pinyin and initials of the names
            "sections": entry["type"][0],         # 单调 / 双调 / 三段 / 四段
            "variants": variants,
        })
    for tune in tunes:   # a name given in traditional first, its simplified spelling after (閒中好, 闲中好)
        names = tune["names"]
        plain = [n for n in names[1:] if n == names[0].replace("閒", "闲")]
        tune["names"] = plain[:1] + [n for n in names if n not in plain[:1]]
    for tune in tunes:   # other names the couyun tables lack, each checked by hand against the 词谱
        tune["names"] = tune["names"] + [n for n in EXTRA_NAMES.get(tune["names"][0], ()) if n not in tune["names"]]
        tune["pinyin"] = tune["pinyin"] + [EXTRA_PINYIN[n] for n in EXTRA_NAMES.get(tune["names"][0], ())
                                           if n in EXTRA_PINYIN and EXTRA_PINYIN[n] not in tune["pinyin"]]
    read_names(tunes)   # polyphones read as the names mean them (cipu_pinyin.READINGS: 长相思, 永遇乐, 踏莎行)
    poems = corpus_poems(corpus)
    for i, names in corpus_names(poems, tunes).items():
        tunes[i]["names"] = tunes[i]["names"] + [n for n in names if n not in tunes[i]["names"]]
    taken = {n for tune in tunes for n in tune["names"]}
    for tune in tunes:   # an other name in traditional characters is found simplified too (雁後归: 雁后归)
        extra = [to_simplified(n) for n in tune["names"][1:] if to_simplified(n) not in taken]
        tune["names"] = tune["names"] + list(dict.fromkeys(extra))
        taken.update(extra)
    add_traditional_names(tunes)
    mark_entering(tunes, model_poems, poems)
    mark_usual(tunes, poems)
    mark_free(tunes, poems)
    mark_optional(tunes, poems)
    mark_filled(tunes, poems)
    borrow_free(tunes)
    mark_also_called(tunes, poems)
    return {"source": ATTRIBUTION, "tunes": tunes}


def clause_starts(lengths: list[int]) -> list[int]:
    """The position of each clause's first character."""
    return [sum(lengths[:j]) for j in range(len(lengths))]


def borrow_free(tunes: list[dict]) -> None:
    """A 又一体 the couyun tables mark in full (no 中: the 谱 prints it as its example poem's tones, with
    "余参前词", the rest as the main form) takes the main form's 中 in the clauses the two share: the
    clause lengths they have in common (difflib's matching runs) whose tones agree with every mark of the
    main form's clause (not another line of that length), position by position, where neither holds a
    rhyme nor the variant a 叠: "borrowed": [positions], 中 to generation and to the checker's
    verdict (tunes.Variant.borrowed). 水调歌头's 2nd–8th, 浣溪沙's 2nd–5th were marked in every position, so
    a ci written to one was held to its example's every tone, and `--variant 2` wrote to them. A ci's
    variant is still chosen by the tables' own marks, as for mark_free: the main form's freedom read into
    a 又一体 would draw ci to it by their punctuation (水调歌头's 6/5 split, an editor's as often as a
    poet's), where its 句中韵 then fail."""
    import difflib

    for tune in tunes:
        main = tune["variants"][0]
        if EITHER_TONE not in main["tones"]:
            continue
        main_starts = clause_starts(main["lengths"])
        filled = {position for position, *_ in main.get("filled", ())}   # a gap mark_filled closed is not free
        main_rhymes = {abs(p) for group in main["rhymes"] for p in group}
        for variant in tune["variants"][1:]:
            if EITHER_TONE in variant["tones"]:
                continue   # the 谱 marks this form's own freedom
            starts = clause_starts(variant["lengths"])
            kept = {abs(p) for group in variant["rhymes"] for p in group} | \
                {pos for pair in variant.get("repeats", ()) for pos in pair}
            borrowed = []
            matcher = difflib.SequenceMatcher(None, main["lengths"], variant["lengths"], autojunk=False)
            for block in matcher.get_matching_blocks():
                for offset in range(block.size):
                    i, j = block.a + offset, block.b + offset
                    ours = variant["tones"][starts[j]:starts[j] + variant["lengths"][j]]
                    theirs = main["tones"][main_starts[i]:main_starts[i] + main["lengths"][i]]
                    if any(mark not in (EITHER_TONE, tone) for mark, tone in zip(theirs, ours)):
                        continue   # another line of that length (its 平仄 differ where the main form marks it)
                    for column in range(main["lengths"][i]):
                        a, b = main_starts[i] + column, starts[j] + column
                        if main["tones"][a] == EITHER_TONE and a not in main_rhymes | filled and b not in kept:
                            borrowed.append(b)
            if borrowed:
                variant["borrowed"] = borrowed


def mark_usual(tunes: list[dict], poems: list[dict]) -> None:
    """Give a tune "usual": the 1-based variant `--tune` writes when none is asked, when the corpus's ci
    under its names take that variant's clause lengths far more often than the first's (USUAL_CI,
    USUAL_SHARE, USUAL_OVER_FIRST). The 谱 puts a tune's oldest form first, which Song poets often did not
    write: 1 of 492 临江仙 has its first form's 54 characters, 370 the eighth's 60; 江城子's first is a
    35-character 单调, 101 of 114 are the fifth's 70 (苏轼's 老夫聊发少年狂)."""
    shapes_of = collections.defaultdict(collections.Counter)
    for poem in poems:
        if poem.get("tune"):
            shapes_of[poem["tune"]][tuple(len(c) for c in re.split(f"[{MARKS}]", poem["text"]) if c)] += 1
    for tune in tunes:
        shapes = collections.Counter()
        for name in dict.fromkeys(tune["names"]):
            shapes.update(shapes_of.get(name, {}))
        counts = [shapes.get(tuple(v["lengths"]), 0) for v in tune["variants"]]
        best = max(range(len(counts)), key=lambda i: (counts[i], -i))
        total = sum(shapes.values())
        if best and counts[best] >= max(USUAL_CI, USUAL_SHARE * total, USUAL_OVER_FIRST * counts[0]):
            tune["usual"] = [best + 1, counts[best], counts[0], total]


def mark_also_called(tunes: list[dict], poems: list[dict]) -> None:
    """Give a tune "also_called": [{"name", "trad", "of", "ci": [[characters, ci], ...], "total"}, ...], the
    names of other tunes that Song poets gave this one too: of the corpus's ci titled with the name alone
    (`total`), those of one length that none of its own tune's (`of`) variants has, at least ALSO_CI, are
    each read against every tune with a variant of that length, as the checker reads a ci
    (ci_checks.check_against_tunes), and at least ALSO_CI of them fit this tune best, at ALSO_FIT or more
    of their rhyme and 平仄 positions. 23 of the 52 ci titled 乌夜啼 are 相见欢's 36 characters (李煜's 无言独上
    西楼), while the 谱's 乌夜啼 has 47 to 50; 163 of the 174 浪淘沙 are 浪淘沙令's 54 (李煜's 帘外雨潺潺), the
    谱's 浪淘沙 being 刘禹锡's 28-character 单调. A name keeps the tune it finds (`--tune 乌夜啼` writes 乌夜啼);
    the checker reads a ci so titled as whichever of them it fits (tunes.TuneTable.readings), and
    `generate` and `tunes` name the other. Run last: it reads the variants as the checker does."""
    from poetgen.ci_checks import check_against_tunes, position_share
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table
    from poetgen.tunes import Tune, variant_from

    prosody, rhyme = table(), ci_rhyme()
    owner = {name: i for i, tune in enumerate(tunes) for name in tune["names"]}
    lengths = [{len(v["tones"]) for v in tune["variants"]} for tune in tunes]
    totals, off = collections.Counter(), collections.defaultdict(list)   # (name, length) -> texts
    for poem in poems:
        name = poem.get("tune") or ""
        if name in owner:
            totals[name] += 1
            length = sum(ch not in MARKS for ch in poem["text"])
            if length not in lengths[owner[name]]:
                off[(name, length)].append(poem["text"])
    read = {}   # tune index -> the tune as tunes.Tune reads it
    for (name, length), texts in sorted(off.items()):
        holders = [i for i in range(len(tunes)) if i != owner[name] and length in lengths[i]]
        if len(texts) < ALSO_CI or not holders:
            continue
        for i in (i for i in holders if i not in read):
            tune = tunes[i]["names"][0]
            read[i] = Tune((tune,), (), (), tunes[i]["sections"],
                           tuple(variant_from(tune, k + 1, v) for k, v in enumerate(tunes[i]["variants"])))
        found = collections.Counter()
        for text in texts:
            check = check_against_tunes(text, [read[i] for i in holders], prosody, rhyme)
            if position_share(check) >= ALSO_FIT:
                found[next(i for i in holders if read[i].name == check.tune)] += 1
        for i, count in sorted(found.items()):
            if count >= ALSO_CI:
                of, trad = tunes[owner[name]], to_traditional(name)
                entry = next((e for e in tunes[i].get("also_called", ()) if e["name"] == name), None)
                if entry is None:
                    entry = {"name": name, "trad": trad if trad in of["names_trad"] else "", "of": of["names"][0],
                             "ci": [], "total": totals[name]}
                    tunes[i].setdefault("also_called", []).append(entry)
                entry["ci"].append([length, count])


def _is_entering(chars: list[str], rhyme) -> bool:
    """A 仄 rhyme in 入声: at least two thirds of its characters have an 入 reading (a ci that 次韵 another
    by a different variant puts a character or two off the slots) and they share no 上去 部 (苏轼's 念奴娇
    rhymes 物 壁 雪 杰 发 灭 月, 入 部 17 and 18 together, as Song poets did)."""
    codes = [rhyme.codes(ch) for ch in chars]
    entering = sum(any(c >= 15 for c in cs) for cs in codes)
    return bool(codes) and 3 * entering >= 2 * len(codes) and \
        not set.intersection(*({c for c in cs if -14 <= c < 0} for cs in codes))


def variant_ci(tunes: list[dict], poems: list[dict], only: set[int] | None = None):
    """(tune index, variant index, the Variant, its characters, its text) for each corpus ci (`poems`) whose label
    names exactly one tune (of `only`, when given), for each variant of its length that it fits best
    (ci_checks.fit; each of them on a tie): the variant a ci was written to, as far as its text tells."""
    from poetgen.ci_checks import check_ci, fit
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table
    from poetgen.tunes import variant_from

    rhyme, prosody = ci_rhyme(), table()
    owner, by_tune = {}, {}
    for i, tune in enumerate(tunes):
        for name in tune["names"]:
            owner.setdefault(name, set()).add(i)
    for poem in poems:
        found = set().union(*(owner.get(part, set()) for part in label_parts(poem.get("tune") or "")))
        if len(found) != 1 or (only is not None and next(iter(found)) not in only):
            continue
        i = next(iter(found))
        if i not in by_tune:
            by_tune[i] = [variant_from(tunes[i]["names"][0], k + 1, entry) for k, entry in enumerate(tunes[i]["variants"])]
        text = poem["text"].replace("、", "，")
        chars = [ch for ch in text if ch not in MARKS]
        fitting = [(k, v) for k, v in enumerate(by_tune[i]) if v.length == len(chars)]
        if len(fitting) > 1:
            fits = [fit(check_ci(text, v.as_marked, prosody, rhyme)) for _, v in fitting]   # as the checker chooses
            fitting = [pair for pair, f in zip(fitting, fits) if f == max(fits)]
        for k, variant in fitting:
            yield i, k, variant, chars, text


def mark_entering(tunes: list[dict], model_poems: list[list[str]], poems: list[dict]) -> None:
    """Give each variant its "entering" groups: the 仄 rhyme groups (without 叶 slots) that the 谱's model
    poem (`model_poems`, per tune and variant) rhymes in 入声 and the corpus's ci (`poems`) of that variant
    do too, in at least ENTERING_SHARE of them (all of them when it has fewer than ENTERING_VOTES): 雨霖铃,
    忆秦娥's main form, 满江红. A ci as long as several variants of its tune (菩萨蛮's have one length)
    counts for the one it fits best (ci_checks.fit), for each on a tie; a group no ci fits is judged by
    the model poem alone. Generation rhymes those groups in 入声 (a prompt's 上去 rhyme there turns the
    group back to 仄); the checker accepts 上去 as well."""
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.tunes import ZE, variant_from

    rhyme = ci_rhyme()
    models = {}
    for i, tune in enumerate(tunes):
        for k, (entry, text) in enumerate(zip(tune["variants"], model_poems[i])):
            variant = variant_from(tune["names"][0], k + 1, entry)
            for group in range(variant.group_count):
                slots = [s for s in variant.rhymes if s.group == group]
                if variant.group_tone(group) == ZE and not any(s.xie for s in slots) and \
                        _is_entering([text[s.pos] for s in slots], rhyme):
                    models[(i, k, group)] = variant
    votes = {key: [0, 0] for key in models}   # [ci rhyming the group in 入声, ci of the variant]
    for i, k, variant, chars, _ in variant_ci(tunes, poems, {i for i, _, _ in models}):
        for group in range(variant.group_count):
            if (i, k, group) in votes:
                slots = [chars[s.pos] for s in variant.rhymes if s.group == group]
                votes[(i, k, group)][1] += 1
                votes[(i, k, group)][0] += _is_entering(slots, rhyme)
    for (i, k, group), (entering, count) in sorted(votes.items()):
        if entering >= (ENTERING_SHARE * count if count >= ENTERING_VOTES else count):
            tunes[i]["variants"][k].setdefault("entering", []).append(group)


def _written_to(variant, chars: list[str], text: str, prosody) -> list[tuple[int, str, set]] | None:
    """Whether a corpus ci was written to `variant`: its clauses (满庭芳#2's ci, read as #1 by their 平仄, are
    not #1's) and at least FREE_FIT of the 谱's 平/仄 marks outside rhymes and 叠 phrases read in their
    tone (not another form of its length, one the 谱 lacks). Those marks as (position, tone, the
    character's tones) when it was; None when not. mark_free and mark_optional count the same ci."""
    from poetgen.prosody import PING, ZE

    if not variant.layout.fits(text):
        return None
    variant = variant.as_marked   # the 谱's marks, as mark_free sees them before it frees any
    kept = {s.pos for s in variant.rhymes} | {pos for pair in variant.repeats for pos in pair}
    asked = [(pos, tone, prosody.tones(ch)) for pos, (ch, tone) in enumerate(zip(chars, variant.tones))
             if tone in (PING, ZE) and pos not in kept]
    return asked if sum(tone in tones for _, tone, tones in asked) >= FREE_FIT * len(asked) else None


def mark_free(tunes: list[dict], poems: list[dict]) -> None:
    """Give a variant "free": [[position, votes for the other tone, votes], ...], the positions its 谱 marks
    平 or 仄 that the corpus's ci of that variant (variant_ci) leave free: of the characters there that have
    one tone only, at least FREE_VOTES, a share of at least FREE_SHARE take the other tone. The 谱 marks
    its model poem's tones where its few examples agree: 贺新郎's main form is 叶梦得's, whose 吹尽残花无人问
    is 平仄平平平平仄, while 175 of the 236 one-tone first characters its ci put there are 仄 and 165 of 237
    sixth ones (仄仄平平平仄仄, a regular 七言 line); 玉楼春's and 南乡子's 七言 lines leave their first and third
    characters free (一三五不论) where the 谱 marks them. Only ci written to the variant count: its clauses
    (满庭芳#2's ci, read as #1 by their 平仄, would free #1's one mark apart from #2's) and at least FREE_FIT
    of its other marks. Rhyme positions and a 叠 phrase's (a copy asks its source's tone) are never freed.
    Generation and the checker leave these positions free (tunes.Variant.free); ci_checks.check_against_tune
    still chooses a ci's variant by the 谱's own marks (Variant.marked), so no ci changes variant."""
    from poetgen.prosody import table

    prosody = table()
    votes: dict[tuple[int, int], dict[int, list[int]]] = {}   # (tune, variant) -> position -> [other, votes]
    for i, k, variant, chars, text in variant_ci(tunes, poems):
        asked = _written_to(variant, chars, text, prosody)
        if asked is None:
            continue
        counts = votes.setdefault((i, k), {})
        for pos, tone, tones in asked:
            if len(tones) == 1:
                count = counts.setdefault(pos, [0, 0])
                count[0] += tone not in tones
                count[1] += 1
    for (i, k), counts in sorted(votes.items()):
        free = [[pos, other, count] for pos, (other, count) in sorted(counts.items())
                if count >= FREE_VOTES and other >= FREE_SHARE * count]
        if free:
            tunes[i]["variants"][k]["free"] = free


def mark_optional(tunes: list[dict], poems: list[dict]) -> None:
    """Give a variant "optional": [[position, ci that rhyme there, ci], ...], the rhyme positions (句中韵)
    that fewer than OPTIONAL_SHARE of its ci rhyme, of at least FREE_VOTES written to it (_written_to, as
    mark_free counts them): 辛弃疾's and most 青玉案 of the first form do not rhyme 玉壶光转
    (16 of 73) nor 那人却在 (22 of 73). The checker accepts either there; generation still rhymes them, as the
    谱 does. The next lowest share is about 70 % (千秋岁, 柳梢青): a share that low is a choice, not a slip."""
    from poetgen.ci_checks import check_ci
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table

    prosody, rhyme = table(), ci_rhyme()
    votes: dict[tuple[int, int], dict[int, list[int]]] = {}   # (tune, variant) -> position -> [rhymed, ci]
    for i, k, variant, chars, text in variant_ci(tunes, poems):
        if _written_to(variant, chars, text, prosody) is None:
            continue
        check = check_ci(text, variant.as_marked, prosody, rhyme)
        counts = votes.setdefault((i, k), {})
        for slot, ok in zip(variant.rhymes, check.rhyme_positions):
            count = counts.setdefault(slot.pos, [0, 0])
            count[0] += ok
            count[1] += 1
    for (i, k), counts in sorted(votes.items()):
        optional = [[pos, rhymed, count] for pos, (rhymed, count) in sorted(counts.items())
                    if count >= FREE_VOTES and rhymed < OPTIONAL_SHARE * count]
        if optional:
            tunes[i]["variants"][k]["optional"] = optional


def mark_filled(tunes: list[dict], poems: list[dict]) -> None:
    """Give a variant "filled": [[position, tone, characters in that tone, characters], ...], the 律句
    columns (the second, fourth, sixth and the last: FILLED_COLUMNS) of a five- or seven-character clause
    that the couyun tables leave 中 though the variant's poets keep them. A clause all 中 but its end is a
    gap in the source (no 谱 leaves a 律句 free, yet 鹧鸪天's first line 彩袖殷勤捧玉钟 reads 中中中中中中平,
    卜算子's 中中中中平, 水调歌头's 中中中中仄): a column is filled where more than GAP_SHARE of its
    one-tone characters take one tone (满江红's 227 of 331 do not: a fifth of its ci would then fail). A clause with at least
    two of its key columns 中 and others marked (渔家傲's 中中中中平中仄: 233 of 233 仄 at the second) is
    filled only where FILLED_SHARE of them agree. Either way at least FREE_VOTES one-tone characters of the
    corpus's ci written to the variant (_written_to) count, and the 律句 (of the four of its length, as the
    clause's marks allow) is the one they fit best: 鹧鸪天 中仄中平中仄平 (一三五不论). Generation and the
    checker use it (tunes.Variant.filled); a ci's variant is still chosen by the 谱's own marks."""
    from poetgen.metre import tone_patterns
    from poetgen.prosody import table

    prosody = table()
    shapes = {n: sorted({line for pattern in tone_patterns(n, 4).values() for line in pattern}) for n in FILLED_COLUMNS}
    clauses: dict[tuple[int, int], list[range]] = {}
    for i, tune in enumerate(tunes):
        for k, variant in enumerate(tune["variants"]):
            starts = clause_starts(variant["lengths"])
            found = [range(start, start + n) for start, n in zip(starts, variant["lengths"]) if n in FILLED_COLUMNS
                     and sum(variant["tones"][start + c] == EITHER_TONE for c in FILLED_COLUMNS[n][:-1]) >= 2]
            if found:
                clauses[(i, k)] = found
    votes: dict[tuple[int, int], dict[int, collections.Counter]] = {}
    for i, k, variant, chars, text in variant_ci(tunes, poems, only={i for i, _ in clauses}):
        if (i, k) not in clauses or _written_to(variant, chars, text, prosody) is None:
            continue
        counts = votes.setdefault((i, k), collections.defaultdict(collections.Counter))
        for clause in clauses[(i, k)]:
            for pos in clause:
                tones = prosody.tones(chars[pos])
                if len(tones) == 1:
                    counts[pos][next(iter(tones))] += 1
    for (i, k), counts in sorted(votes.items()):
        variant, filled = tunes[i]["variants"][k], []
        for clause in clauses[(i, k)]:
            marked = variant["tones"][clause[0]:clause[-1] + 1]
            share = GAP_SHARE if set(marked[:-1]) == {EITHER_TONE} else FILLED_SHARE
            kept = {pos for group in variant["rhymes"] for pos in map(abs, group)} | \
                {pos for pair in variant.get("repeats", ()) for pos in pair}   # a rhyme's, a 叠's: not filled
            columns = [c for c in FILLED_COLUMNS[len(clause)] if marked[c] == EITHER_TONE and clause[c] not in kept]
            fitting = [shape for shape in shapes[len(clause)]
                       if all(mark in (EITHER_TONE, tone) for mark, tone in zip(marked, shape))]
            if not fitting:
                continue   # no 律句 (平中平中平中仄, 上一下四 clauses): left as the 谱 has it
            shape = max(fitting, key=lambda shape: sum(counts[clause[c]][shape[c]] for c in columns))
            for c in columns:
                agree, total = counts[clause[c]][shape[c]], sum(counts[clause[c]].values())
                if total >= FREE_VOTES and agree > share * total:
                    filled.append([clause[c], shape[c], agree, total])
        if filled:
            variant["filled"] = filled

def add_traditional_names(tunes: list[dict]) -> None:
    """Give every name its traditional spelling: the couyun tables spell only some (渔父词, 宴齐云 and the
    names added above had none), so `--tune 漁父詞` was unknown. A spelling another tune already has as a
    key is left out, so no key that found one tune becomes shared."""
    owner: dict[str, set[int]] = {}
    for i, tune in enumerate(tunes):
        for key in (*tune["names"], *tune["names_trad"], *tune["pinyin"]):
            owner.setdefault(key.lower(), set()).add(i)
    for i, tune in enumerate(tunes):
        for name in tune["names"]:
            spelling = to_traditional(name)
            if spelling not in tune["names_trad"] and owner.get(spelling.lower(), {i}) == {i}:
                tune["names_trad"] = tune["names_trad"] + [spelling]
                owner.setdefault(spelling.lower(), set()).add(i)


def write(table: dict, output: Path) -> None:
    text = json.dumps(table, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as stream:
        stream.write(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(buffer.getvalue())


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    table = build(source)
    write(table, output)
    variants = sum(len(t["variants"]) for t in table["tunes"])
    print(f"{output}: {len(table['tunes'])} tunes, {variants} variants, {output.stat().st_size} bytes",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
