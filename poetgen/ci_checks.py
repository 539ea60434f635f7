"""Checks a ci against a tune variant: layout (clauses and marks), rhyme at its rhyme positions by
词林正韵 部, 平仄 at its 平/仄 positions (中 free), and its 叠 phrases repeated. The shi checker is checks.py.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Callable

from poetgen.ci_rhyme import LEVEL_CODES, OBLIQUE_CODES, CiRhyme, codes_for_tone, describe, flip
from poetgen.metre import PING, tone_fits
from poetgen.prosody import Prosody
from poetgen.tunes import EITHER, Tune, Variant

_NOT_HAN = re.compile(r"[，。、？！；：\s]")


@dataclasses.dataclass
class CiCheck:
    tune: str                          # the tune's name
    variant: int                       # the variant checked against (1-based)
    layout_ok: bool                    # clause count, lengths and marks of the variant
    chars_ok: bool                     # as many characters as the variant (rhyme and tone are judged only then)
    rhyme_ok: bool | None              # every rhyme position fits its group's 部 (Variant.optional ones aside)
    rhyme_score: float | None          # share of rhyme positions that fit (Variant.optional ones aside)
    rhyme_parts: list[str] | None      # each group's 部, e.g. 第七部平
    rhyme_positions: list[bool] | None # per rhyme position: fits its group or not
    tone_score: float | None           # share of 平/仄 positions whose character can be read in that tone
    tone_positions: list[bool] | None  # per 平/仄 position: fits or not
    acrostic_ok: bool | None           # clause heads spell the acrostic (None: none asked)
    repeat_ok: bool | None = None      # every 叠 phrase repeats the characters before it (None: the variant has
                                       # none, or the character count is off)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def han_chars(text: str) -> str:
    return _NOT_HAN.sub("", text)


def normalize_marks(text: str) -> str:
    """Real ci mark 读 with "、"; the layout reads it as the clause break "，"."""
    return text.replace("、", "，")


def rhyme_of(chars: str, variant: Variant, rhyme: CiRhyme) -> tuple[list[bool], list[str]]:
    """Per rhyme slot: fits its group's most shared 部; and each group's 部 (— when none is shared). A
    character the rhyme table does not know (盏, 葱, 遍…) is not judged, as tone_fits does not judge one
    the tone table lacks: the rules never write one at a rhyme slot, and a prompt that fixes one there
    is not refused for it (ci_request.check_ci_prompt_rhymes), so the ci keeps its rhyme."""
    fits, parts = {}, []
    for group in range(variant.group_count):
        slots = [s for s in variant.rhymes if s.group == group and rhyme.codes(chars[s.pos])]
        fits.update({s.pos: True for s in variant.rhymes if s.group == group and s not in slots})
        allowed = codes_for_tone(variant.group_tone(group))
        # the group's rhyme is decided by its required positions; one most poets left unrhymed
        # (Variant.optional) is judged against it after, so leaving it out costs the others nothing
        optional = [s for s in slots if s.pos in variant.optional]
        required = [s for s in slots if s.pos not in variant.optional] or optional
        optional = [s for s in optional if s not in required]
        sets = {s.pos: {c for c in (flip(c) if s.xie else c for c in rhyme.codes(chars[s.pos])) if c in allowed}
                for s in slots}
        kept = {s.pos: sets[s.pos] for s in required}
        votes = collections.Counter(c for codes in kept.values() for c in codes)
        best = min(votes, key=lambda c: (-votes[c], c)) if votes else None
        fitting = {pos: best is not None and best in codes for pos, codes in kept.items()}
        merged = None if all(fitting.values()) else _one_pingshui_group(chars, required, allowed, rhyme)
        merged = merged or (None if all(fitting.values()) else neighbouring_bu(kept, required))
        if merged is not None:   # 杯 台: 第三部 and 第五部, both 十灰; 合 缺: 第十九部 and 第十八部, 通押
            fitting = dict.fromkeys(fitting, True)
        shared = {best} if merged is None else set(sorted(votes, key=lambda c: (-votes[c], c))[:2])
        fitting.update({s.pos: bool(sets[s.pos] & shared) for s in optional})
        if best is None:
            parts.append("—")
        elif merged is None:
            parts.append(describe(best))
        else:   # the 部 its characters fall in, and why they rhyme: 第三部平·第五部平（十灰）
            parts.append("·".join(describe(c) for c in sorted(votes, key=lambda c: (-votes[c], c))[:2]) + f"（{merged}）")
        fits.update(fitting)
    return [fits[s.pos] for s in variant.rhymes], parts


# The 平水韵 groups whose two halves in the 词林正韵 Song poets rhymed as one: 灰 (杯 回 in 第三部, 台 来 in
# 第五部) and its 上 and 去, 贿 and 队 (晏殊's 浣溪沙 rhymes 杯 台 回 来 徊). Not 元 (园 言 with 寒先, 门 魂 with
# 真文: rhyming 樽 园 门 is the classic 出韵 of ci), 佳, 泰 or 卦.
HALVES_RHYMED_AS_ONE = {(PING, 9): "十灰", ("上", 9): "十贿", ("去", 10): "十一队"}


def _one_pingshui_group(chars: str, slots: list, allowed: frozenset, rhyme: CiRhyme) -> str | None:
    """The group of HALVES_RHYMED_AS_ONE that every character of a rhyme group (叶 slots aside: none may be
    one) shares, in the group's tone, or None: the checker accepts such a group, the rules keep to one 部."""
    if not slots or any(s.xie for s in slots):
        return None
    kinds = {PING} if allowed == LEVEL_CODES else {"上", "去", "入"} if allowed == OBLIQUE_CODES else \
        {PING, "上", "去", "入"}
    common = set.intersection(*({g for g in rhyme.groups_of.get(chars[s.pos], ()) if g[0] in kinds} for s in slots))
    common &= set(HALVES_RHYMED_AS_ONE)
    return HALVES_RHYMED_AS_ONE[min(common)] if common else None


# Neighbouring 部 that Song poets rhymed together (通押), by 部 number, in either tone: -n with -m (元寒删先
# with 覃盐咸), 真文 with 庚青蒸 and with 侵, 支微齐 with 鱼虞, 萧肴豪 with 尤, and the 入声 部 of -t, -k and
# -p endings (苏轼's 水调歌头 rhymes 合 of 第十九部 with 缺 of 第十八部, the 谱's own model poem for it).
TONGYA = frozenset(map(frozenset, [(7, 14), (6, 11), (6, 13), (3, 4), (8, 12), (17, 18), (17, 19), (18, 19)]))


def neighbouring_bu(sets: dict, slots: list) -> str | None:
    """"通押" when every character of a rhyme group (叶 slots aside: none may be one) rhymes in one of two
    neighbouring 部 of TONGYA, in the group's tone, and both are rhymed; None otherwise. The checker
    accepts such a group; the rules keep to one 部."""
    if not slots or any(s.xie for s in slots):
        return None
    found = set().union(*sets.values())
    for one in found:
        for other in found:
            if one != other and (one > 0) == (other > 0) and frozenset((abs(one), abs(other))) in TONGYA:
                pair = {one, other}
                if all(codes & pair for codes in sets.values()) and \
                        all(any(code in codes for codes in sets.values()) for code in pair):
                    return "通押"
    return None


def tone_of(chars: str, variant: Variant, prosody: Prosody) -> list[bool]:
    return [tone_fits(ch, required, prosody) for ch, required in zip(chars, variant.tones) if required != EITHER]


def with_dou_marks(text: str, variant: Variant) -> str:
    """`text` with "，" where the variant has a 读 ("、", a pause inside a sentence) and the text no mark:
    editions seldom mark a 读 (故国不堪回首月明中, the 谱's 故国不堪回首、月明中)."""
    ends, count = set(), 0
    for length, mark in zip(variant.line_lengths, variant.marks):
        count += length
        if mark == "、":
            ends.add(count)
    out, count = [], 0
    for i, ch in enumerate(text):
        out.append(ch)
        if not _NOT_HAN.match(ch):
            count += 1
            if count in ends and (i + 1 >= len(text) or not _NOT_HAN.match(text[i + 1])):
                out.append("，")
    return "".join(out)


def check_ci(text: str, variant: Variant, prosody: Prosody, rhyme: CiRhyme, acrostic: str = "") -> CiCheck:
    text = normalize_marks(text)
    lines = variant.layout.lines(text)
    if lines is None and "、" in variant.marks:   # a 读 the text leaves unmarked still ends a clause
        lines = variant.layout.lines(with_dou_marks(text, variant))
    chars = han_chars(text)
    acrostic_ok = None
    if acrostic:
        heads = [line[0] for line in lines or []]
        acrostic_ok = heads[:len(acrostic)] == list(acrostic)
    if len(chars) != variant.length:
        return CiCheck(variant.tune, variant.number, False, False, None, None, None, None, None, None, acrostic_ok)
    rhyme_fits, parts = rhyme_of(chars, variant, rhyme)
    # a position most poets left unrhymed (Variant.optional) is reported, never held against the ci
    required = [ok for slot, ok in zip(variant.rhymes, rhyme_fits) if slot.pos not in variant.optional]
    tones = tone_of(chars, variant, prosody)
    repeat_ok = all(chars[p] == chars[s] for p, s in variant.repeats) if variant.repeats else None
    return CiCheck(variant.tune, variant.number, lines is not None, True, all(required),
                   sum(required) / len(required) if required else 1.0, parts, rhyme_fits,
                   sum(tones) / len(tones) if tones else 1.0, tones, acrostic_ok, repeat_ok)


LAYOUT_WEIGHT = 0.05   # what a layout that fits adds to a variant's rhyme and 平仄 scores (check_against_tune)


def check_against_tune(text: str, tune: Tune, prosody: Prosody, rhyme: CiRhyme,
                       lay: Callable[[str, Variant], str] | None = None) -> CiCheck:
    """Against the variant the ci fits best (`fit`, by the 谱's own marks): of those with its character
    count, the most rhyme and 平仄 positions that fit, a layout that fits adding LAYOUT_WEIGHT. Editions
    punctuate clauses differently (岳飞's 满江红 breaks 驾长车，踏破贺兰山缺 three and six where the 谱
    breaks five and four), while the 平仄 of ninety
    characters tells variants apart: ranked by layout first, that 满江红 was read as variant 3, 13 of its
    平仄 wrong, rather than variant 1, where all fit. `lay`: the text as laid on a variant's clauses, judged
    against that variant (`poetgen check`'s ci typed with fewer marks than its clauses; default: as it is)."""
    texts = [lay(text, v) if lay else text for v in tune.variants]
    checks = [check_ci(laid, v.as_marked, prosody, rhyme) for laid, v in zip(texts, tune.variants)]
    best = max(checks, key=lambda c: (fit(c), -c.variant))
    # chosen by the 谱's own marks (Variant.marked), reported by the marks poets kept (Variant.free):
    # counting freed positions as fits would draw 满庭芳#2's ci to #1, whose one mark apart they were
    chosen = tune.variants[best.variant - 1]
    return best if chosen.as_marked is chosen else check_ci(texts[best.variant - 1], chosen, prosody, rhyme)


def fit(check: CiCheck) -> tuple:
    """How well a ci fits the variant `check` read it against: its character count, then the share of its
    rhyme and 平/仄 positions that fit, each position alike (a variant with one more 句中韵 loses one
    position, not a ninth of its rhyme score: 苏轼's 水调歌头 is the 谱's third variant, his own), a layout
    that fits adding LAYOUT_WEIGHT."""
    return check.chars_ok, position_share(check) + (LAYOUT_WEIGHT if check.layout_ok else 0)


def position_share(check: CiCheck) -> float:
    """The share of a ci's rhyme and 平/仄 positions that fit the variant it was read against."""
    positions = (check.rhyme_positions or []) + (check.tone_positions or [])
    return sum(positions) / len(positions) if positions else 0.0


def check_against_tunes(text: str, tunes: list[Tune], prosody: Prosody, rhyme: CiRhyme,
                        lay: Callable[[str, Variant], str] | None = None) -> CiCheck:
    """Against the tune of `tunes` (those a name may mean: tunes.TuneTable.readings) whose variants the ci
    fits best (`fit`), the first on a tie: a ci titled 乌夜啼 of 36 characters is 相见欢's (李煜's 无言独上西楼),
    one of 48 the 谱's 乌夜啼. CiCheck.tune says which. `lay` as check_against_tune takes it."""
    checks = [check_against_tune(text, tune, prosody, rhyme, lay) for tune in tunes]
    return max(enumerate(checks), key=lambda pair: (fit(pair[1]), -pair[0]))[1]
