"""`poetgen check` and `poetgen.check`: a poem someone wrote, scanned against its form or its tune."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import poetgen
from poetgen.cli import cli
from poetgen.errors import EXIT_FAULTS, EXIT_USAGE

STORK = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"     # 登鹳雀楼: 仄起, 尤, fits everywhere
NIGHT = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"     # 静夜思: 古绝, 上 and 头 off the pattern
YAN_SHU = "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回？无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"


def run(*args, stdin=None):
    return CliRunner().invoke(cli, ["check", *args], input=stdin)


def test_a_poem_that_fits_its_form_is_scanned_line_by_line():
    result = run(STORK)
    assert result.exit_code == 0, result.output
    head, *rows = result.stdout.splitlines()
    assert head == "五言绝句 · 仄起 · layout ok · rhyme 下平十一尤 ok · 平仄 14/14"
    assert [row.split()[1] for row in rows] == ["中仄中平仄", "平平中仄平", "中平中仄仄", "中仄仄平平"]
    assert [row.endswith("韵") for row in rows] == [False, True, False, True]
    assert run(STORK, "--strict").exit_code == 0


def test_faults_are_named_where_they_fall_and_strict_exits_with_its_own_code():
    result = run(NIGHT)
    assert result.exit_code == 0 and "平仄 13/15" in result.stdout.splitlines()[0]
    rows = result.stdout.splitlines()[1:]
    assert rows[1].endswith("韵; 上 reads 仄, 平 asked") and rows[2].endswith("头 reads 平, 仄 asked")
    strict = run(NIGHT, "--strict")
    assert strict.exit_code == EXIT_FAULTS == 3 and strict.stdout == result.stdout
    data = json.loads(run(NIGHT, "--format", "json").stdout)
    assert data["faults"] == 2 and data["tone_pattern"] == "平起入韵"
    assert [line["faults"] for line in data["lines"]] == [[], [3], [1], []]
    assert [line["rhyme"] for line in data["lines"]] == [True, True, None, True]


def test_lines_without_marks_from_stdin_and_the_rhymes_off_the_group():
    """One line per line, no punctuation (as people type a poem): closed with ， and 。 in turn. A rhyme
    line off the group is a fault of its own; so is line 1 of a 入韵 poem that ends 平 in another group,
    shown as its rhyme, not as its tone (东 reads 平, as asked)."""
    typed = run("-", "--format", "json", stdin="白日依山尽\n黄河入海流\n欲穷千里目\n更上一层山\n")
    data = json.loads(typed.stdout)
    assert [line["text"][-1] for line in data["lines"]] == ["，", "。", "，", "。"]
    assert not data["rhyme_ok"] and [line["rhyme"] for line in data["lines"]] == [None, False, None, False]
    east = json.loads(run("朝辞白帝彩云东，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "--format", "json").stdout)
    assert east["rhyme_group"] == "上平十五删" and east["lines"][0]["rhyme"] is False
    assert east["lines"][0]["faults"] == [] and east["faults"] == 1 and not east["rhyme_ok"]
    assert json.loads(run("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "--format",
                          "json").stdout)["faults"] == 0


def test_a_poem_rhyming_in_an_oblique_group_is_not_held_to_regular_verse():
    """A 仄韵 poem is a 古绝: its rhyme is judged, its 平仄 not (regular verse's patterns rhyme 平); 鹿柴 was
    marked both 韵 and "响 reads 仄, 平 asked" at its rhymes."""
    result = run("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。")
    assert "rhyme 入九屑 ok" in result.stdout and "仄韵 (古绝): 平仄 not judged" in result.stdout.splitlines()[0]
    deer = json.loads(run("空山不见人，但闻人语响。返景入深林，复照青苔上。", "--format", "json").stdout)
    assert deer["ok"] and deer["tone_score"] is None and deer["tone_pattern"] is None
    assert {line["pattern"] for line in deer["lines"]} == {"中中中中中"}
    assert run("空山不见人，但闻人语响。返景入深林，复照青苔上。", "--strict").exit_code == 0


def test_one_stray_rhyme_is_named_the_others_kept():
    """春望 with 冠 for 簪: 冠 alone is off (出韵, its groups named), the 侵 rhymes fit; a rhyme repeated is
    重韵 on its second line only; a 入韵 line 1 off the rhyme says so in the head line too."""
    spring = json.loads(run("国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，"
                            "浑欲不胜冠。", "--format", "json").stdout)
    assert spring["rhyme_group"] == "下平十二侵" and not spring["rhyme_ok"]
    assert [line["rhyme"] for line in spring["lines"][1::2]] == [True, True, True, False]
    text = run("国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜冠。").stdout
    assert "rhyme 下平十二侵, 1 off" in text and "冠 in 上平十四寒/去十五翰, not 下平十二侵: 出韵" in text
    twice = run("白日依山尽，黄河入海流。欲穷千里目，更上一层流。").stdout.splitlines()
    assert twice[2].endswith("韵") and twice[4].endswith("韵 ✗ (流 rhymes twice: 重韵)")
    east = run("朝辞白帝彩云东，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。").stdout.splitlines()
    assert "rhyme 上平十五删, 1 off" in east[0] and "东 in 上平一东" in east[1]


def test_what_people_type_is_read_as_the_poem():
    """All ， or all 。, doubled marks, a couplet per line, lines apart by spaces, a byte-order mark, a
    trailing attribution, traditional or variant characters the table lacks (迴 盃 read as 回 杯), and
    standard input not in UTF-8 (one line)."""
    expected = json.loads(run(STORK, "--format", "json").stdout)
    for typed in ("白日依山尽，黄河入海流，欲穷千里目，更上一层楼，", "白日依山尽。黄河入海流。欲穷千里目。更上一层楼。",
                  "白日依山尽，，黄河入海流。。欲穷千里目，更上一层楼。", "白日依山尽 黄河入海流　欲穷千里目 更上一层楼",
                  "白日依山尽，黄河入海流\n欲穷千里目，更上一层楼", "\ufeff" + STORK + "\n", STORK + "——王之涣",
                  STORK + "（王之涣）"):
        assert json.loads(run("-", "--format", "json", stdin=typed).stdout) == expected, typed
    old = json.loads(run("風急天高猿嘯哀，渚清沙白鳥飛迴。無邊落木蕭蕭下，不盡長江滾滾來。萬里悲秋常作客，百年多病獨登臺。"
                         "艱難苦恨繁霜鬢，潦倒新停濁酒盃。", "--format", "json").stdout)
    assert old["ok"] and old["rhyme_group"] == "上平十灰" and old["lines"][1]["text"] == "渚清沙白鳥飛迴。"
    unknown = json.loads(run("白日依山淸，黄河入海流。欲穷千里目，更上一层楼。", "--format", "json").stdout)
    assert unknown["unknown"] == "淸"
    result = CliRunner().invoke(cli, ["check", "-"], input=STORK.encode("gbk"))
    assert result.exit_code == EXIT_USAGE and "not UTF-8" in result.stderr


def test_a_ci_typed_one_clause_a_line_ends_with_a_stop_and_a_ci_of_another_name_is_named():
    dream = run("--tune", "如梦令", "-", "--format", "json",
                stdin="昨夜雨疏风骤\n浓睡不消残酒\n试问卷帘人\n却道海棠依旧\n知否\n知否\n应是绿肥红瘦\n")
    assert json.loads(dream.stdout)["ok"], dream.stdout
    li_yu = ("帘外雨潺潺，春意阑珊。罗衾不耐五更寒。梦里不知身是客，一晌贪欢。独自莫凭栏，无限江山。别时容易见时难。"
             "流水落花春去也，天上人间。")
    read = run("--tune", "浪淘沙", li_yu)   # the 谱's 浪淘沙 has 28; Song poets also called 浪淘沙令 so
    assert read.exit_code == 0 and read.stdout.startswith("浪淘沙令 · variant 1 · layout ok")
    assert "read as 浪淘沙令" in read.stderr
    held = run("--tune", "浪淘沙#1", li_yu)   # a variant is the named tune's
    assert held.exit_code == 2 and held.stderr == "poetgen: error: 54 characters: 浪淘沙's variants have 28 (variant 1: 28)\n"
    assert json.loads(run("--tune", "浪淘沙令", li_yu, "--format", "json").stdout)["rhyme_ok"]


def test_a_ci_titled_by_a_name_two_tunes_share_is_read_as_the_one_it_fits():
    """李煜's 无言独上西楼 is often titled 乌夜啼, the 谱's name for a 47-to-50-character tune (his 昨夜风兼雨): it
    was refused ("36 characters: 乌夜啼's variants have 47, 48, 50"); it is read as 相见欢, saying so."""
    xiangjianhuan = "无言独上西楼，月如钩。寂寞梧桐深院锁清秋。剪不断，理还乱，是离愁。别是一般滋味在心头。"
    wuyeti = "昨夜风兼雨，帘帏飒飒秋声。烛残漏断频攲枕，起坐不能平。世事漫随流水，算来一梦浮生。醉乡路稳宜频到，此外不堪行。"
    read = run("--tune", "乌夜啼", xiangjianhuan, "--strict")
    assert read.exit_code == 0, read.output
    assert read.stdout.splitlines()[0] == "相见欢 · variant 1 · layout ok · rhyme 第十二部平、第七部仄 ok · 平仄 24/24"
    assert read.stderr == ("poetgen: note: read as 相见欢, whose 36 characters it has: Song poets also called "
                           "相见欢 乌夜啼, in the 词谱 the name of 乌夜啼 (47/48/50 characters; 乌夜啼#2 holds it to "
                           "that tune)\n")
    scanned = json.loads(run("--tune", "烏夜啼", xiangjianhuan, "--format", "json").stdout)
    assert scanned["form"] == "相见欢" and scanned["ok"] and "Song poets also called 相见欢 烏夜啼" in scanned["read_as"]
    own = run("--tune", "乌夜啼", wuyeti, "--format", "json")
    assert json.loads(own.stdout)["form"] == "乌夜啼" and json.loads(own.stdout)["read_as"] == "" and not own.stderr
    assert json.loads(run("--tune", "相见欢", xiangjianhuan, "--format", "json").stdout)["read_as"] == ""
    for held in (["--tune", "乌夜啼#2"], ["--tune", "乌夜啼", "--variant", "2"]):
        refused = run(*held, xiangjianhuan)
        assert refused.exit_code == 2 and refused.stderr == \
            "poetgen: error: 36 characters: 乌夜啼's variants have 47, 48, 50 (variant 2: 48)\n", held
    neither = run("--tune", "乌夜啼", xiangjianhuan[:-3] + "。")
    assert neither.exit_code == 2 and neither.stderr == \
        "poetgen: error: 34 characters: 乌夜啼's variants have 47, 48, 50; 相见欢's variants have 36\n"
    # a key two tunes share (yjm: 谒金门 and 一剪梅) is read by the same rule; generation still refuses it
    plum = json.loads(run("--tune", "yjm", "红藕香残玉簟秋。轻解罗裳，独上兰舟。云中谁寄锦书来，雁字回时，月满西楼。"
                          "花自飘零水自流。一种相思，两处闲愁。此情无计可消除，才下眉头，却上心头。", "--format", "json").stdout)
    assert plum["form"] == "一剪梅" and plum["read_as"].startswith("yjm names 2 tunes (谒金门, 一剪梅): read as 一剪梅")


def test_a_fault_at_a_guarded_column_names_its_rule():
    """白云千载空悠悠: 空 may be 仄 (kòng) only by a reading poets barely used, so 平平平 ends the line: 三平尾."""
    crane = run("昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。晴川历历汉阳树，芳草萋萋鹦鹉洲。"
                "日暮乡关何处是，烟波江上使人愁。").stdout.splitlines()
    assert crane[4].endswith("空: 仄 asked, read 平 (三平尾)")


def test_a_ci_is_scanned_against_the_variant_it_fits_best_or_the_one_asked():
    result = run("--tune", "浣溪沙", YAN_SHU)
    head, *rows = result.stdout.splitlines()
    assert result.exit_code == 0 and head.startswith("浣溪沙 · variant 1 · layout ok · rhyme 第三部平")
    assert head.endswith("平仄 29/29") and rows[2].startswith("夕阳西下几时回？")   # the poem's own marks
    assert sum(row.endswith("韵") for row in rows) == 5
    asked = json.loads(run("--tune", "huanxisha#2", YAN_SHU, "--format", "json").stdout)
    assert asked["variant"] == 2 and asked["faults"] > 0
    assert json.loads(run("--tune", "浣溪沙", "--variant", "2", YAN_SHU, "--format", "json").stdout) == asked
    # the positions its poets left free (贺新郎's 16th, 21st: tunes.Variant.free) are scanned as 中
    text = "".join("春" * n + "，" for n in (5, 3, 4, 4, 7, 6, 3, 4, 7, 3, 5, 3, 3, 7, 3, 4, 4, 7, 6, 3, 4, 7, 3, 5,
                                                 3, 3))
    free = json.loads(run("--tune", "贺新郎", "--variant", "1", text, "--format", "json").stdout)
    assert free["lines"][4]["pattern"][0] == "中" and free["lines"][4]["pattern"][5] == "中"


@pytest.mark.parametrize("args, said", [
    (["abc"], "Chinese characters"),
    (["春眠不觉晓处处闻啼鸟"], "no regular shi form"),
    (["--form", "qijue", "--strict", STORK], None),
    (["--form", "wujue", "--tune", "浣溪沙", STORK], "not both"),
    (["--variant", "2", STORK], "give the tune too"),
    (["--tune", "浣溪沙", STORK], "浣溪沙's variants have"),
    (["--tune", "浣溪沙#2", "--variant", "2", YAN_SHU], "give the variant once"),
    (["--tune", "浣溪沙#²", YAN_SHU], "the variant after # must be a number"),   # isdigit, yet no int
    (["--tune", "浣溪沙", "--variant", "9", YAN_SHU], "the variant must be 1 to"),
    (["--tune", "没有这个词牌", YAN_SHU], "没有这个词牌"),
])
def test_what_cannot_be_scanned_is_one_line_and_exit_2(args, said):
    result = run(*args)
    if said is None:   # scanned, but not in its form: --strict says so by its own code
        assert result.exit_code == EXIT_FAULTS and "layout off" in result.stdout
        return
    assert result.exit_code == EXIT_USAGE, result.output
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_the_python_api_is_the_command():
    scansion = poetgen.check(NIGHT)
    assert scansion.to_dict() == json.loads(run(NIGHT, "--format", "json").stdout)
    assert str(scansion) == run(NIGHT).stdout.rstrip("\n")
    assert poetgen.check(YAN_SHU, tune="浣溪沙").variant == 1
    for bad in ({"form": "sonnet"}, {"tune": 3}, {"tune": "浣溪沙", "variant": 0}, {"tune": "浣溪沙", "variant": True}):
        with pytest.raises(poetgen.BadInput):
            poetgen.check(YAN_SHU, **bad)
    with pytest.raises(poetgen.BadInput):
        poetgen.check(None)


def test_an_inner_rhyme_most_poets_left_out_is_not_a_fault():
    """辛弃疾's 青玉案 does not rhyme 玉壶光转 nor 那人却在, as most ci of its form do not (Variant.optional)."""
    xin = ("东风夜放花千树，更吹落、星如雨。宝马雕车香满路。凤箫声动，玉壶光转，一夜鱼龙舞。蛾儿雪柳黄金缕，笑语盈盈暗香去。"
           "众里寻他千百度。蓦然回首，那人却在，灯火阑珊处。")
    data = json.loads(run("--tune", "青玉案", xin, "--format", "json").stdout)
    assert data["ok"] and data["variant"] == 1 and [line["rhyme"] for line in data["lines"]][5] is None


def test_characters_the_table_lacks_are_not_judged_where_they_stand_and_faults_name_what_was_read():
    """An unknown character at a rhyme is not judged (流 still rhymes; 江雪 still 仄韵); fault notes read the
    character as the checker did (峯 as 峰, 樑 as 梁: a rhyme repeated, 重韵); line 1 of a 入韵 pattern that
    repeats a rhyme is 重韵, not 出韵 in the poem's own group."""
    clear = json.loads(run("白日依山尽，黄河入海流。欲穷千里目，更上一层淸。", "--format", "json").stdout)
    assert clear["ok"] and clear["unknown"] == "淸" and [line["rhyme"] for line in clear["lines"]][1::2] == [True, None]
    snow = json.loads(run("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江淸。", "--format", "json").stdout)
    assert snow["rhyme_group"] == "入九屑" and snow["tone_score"] is None and snow["faults"] == 0
    dream = json.loads(run("--tune", "如梦令", "昨夜雨疏风淸，浓睡不消残淸。试问卷帘人，却道海棠依淸。知否，知否。应是绿肥红淸。",
                           "--format", "json").stdout)
    assert [line["rhyme"] for line in dream["lines"]][:2] == [None, None]
    assert run("白峯依山尽，黄河入海流。欲穷千里目，更上一层楼。").stdout.splitlines()[1].endswith("峯 reads 平, 仄 asked")
    assert run("白日依山尽，黄河入海樑。欲穷千里目，更上一层梁。").stdout.splitlines()[4].endswith("(梁 rhymes twice: 重韵)")
    assert "(楼 rhymes twice: 重韵)" in run("白日依山楼，黄河入海流。欲穷千里目，更上一层楼。").stdout.splitlines()[1]


def test_the_score_the_head_and_the_ok_agree_with_the_lines():
    """朝辞白帝彩云东: its one fault is line 1's rhyme, so the 平仄 score is whole (it was 0.947); a 入韵 line
    1 votes for the poem's group (间 and 山 are 删: only 天 is off); a 叠 that differs breaks the ci."""
    east = json.loads(run("朝辞白帝彩云东，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "--format", "json").stdout)
    assert east["tone_score"] == 1.0 and east["faults"] == 1 and not east["ok"]
    sky = json.loads(run("朝辞白帝彩云间，千里江陵一日天。两岸猿声啼不住，轻舟已过万重山。", "--format", "json").stdout)
    assert sky["rhyme_group"] == "上平十五删" and [line["rhyme"] for line in sky["lines"]] == [True, False, None, True]
    echo = run("--tune", "如梦令", "昨夜雨疏风骤，浓睡不消残酒。试问卷帘人，却道海棠依旧。知否，知有。应是绿肥红瘦。")
    assert "叠 broken" in echo.stdout.splitlines()[0]
    assert run("--tune", "如梦令", "--strict", "昨夜雨疏风骤，浓睡不消残酒。试问卷帘人，却道海棠依旧。知否，知有。"
               "应是绿肥红瘦。").exit_code == EXIT_FAULTS


def test_leading_marks_an_inner_dash_and_forms_as_requests_spell_them():
    assert json.loads(run("，" + STORK, "--format", "json").stdout)["ok"]
    assert run("白日依山尽，黄河入海流。欲穷千里目——更上一层楼").exit_code == EXIT_USAGE   # a dash inside is no attribution
    for form in ("QIJUE", "七絕"):   # as the CLI's generate reads it, in traditional characters too
        assert json.loads(run("--form", form, "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
                              "--format", "json").stdout)["form"] == "qijue"


def test_a_blank_tune_is_refused_as_generate_refuses_it():
    """`check --tune ""` (or " ") scanned the text as shi where `generate --tune ""` refuses a blank tune:
    one line naming the tune, exit 2; poetgen.check and /api/check read a blank tune alike ("" left out)."""
    from poetgen.errors import BadInput

    for blank in ("", " ", "\u3000"):
        refused = run("--tune", blank, STORK)
        assert refused.exit_code == EXIT_USAGE and refused.stdout == "", (blank, refused.output)
        assert refused.stderr == "poetgen: error: tune is blank: give a tune's name, or leave tune out for shi\n"
    assert run("--tune", "", "--variant", "2", STORK).stderr.startswith("poetgen: error: tune is blank")
    with pytest.raises(BadInput, match="tune is blank"):
        poetgen.check(STORK, tune=" ")
    assert poetgen.check(STORK, tune="").genre == poetgen.check(STORK).genre == "shi"


def test_a_couplet_off_glue_is_named_where_it_breaks():
    """王维's 渭城曲 fits no whole pattern, but each couplet fits one: 劝君更尽一杯酒 does not 粘 (君 平 after
    舍 仄). It was five faults spread over lines 1-2; now it is one 失粘 at line 3. A poem whose couplets do
    not each fit whole keeps the whole pattern's faults (静夜思)."""
    wei = "渭城朝雨浥轻尘，客舍青青柳色新。劝君更尽一杯酒，西出阳关无故人。"
    data = json.loads(run(wei, "--format", "json").stdout)
    assert data["tone_pattern"] == "失粘" and data["faults"] == 1 and not data["ok"]
    assert [line["unglued"] for line in data["lines"]] == [False, False, True, False]
    assert all(line["faults"] == [] for line in data["lines"])
    text = run(wei).stdout.splitlines()
    assert text[0].endswith("平仄 18/19") and text[3].endswith("失粘: 君 平, the line before's 舍 仄")
    assert run(wei, "--strict").exit_code == EXIT_FAULTS
    assert json.loads(run(NIGHT, "--format", "json").stdout)["tone_pattern"] == "平起入韵"


def test_a_couplet_whose_lines_do_not_oppose_is_named_where_it_breaks():
    """失对: each line fits a line of its place alone, but a couplet's two lines take one tone at their second
    character. An early Tang 七绝 (参差 平 潺湲 平, 何须 平 人今 平): 失对 at lines 2 and 4, not faults spread
    over the whole pattern; a made-up 五绝 with 落日 after 白日 (both 仄), the rest 粘 to it; a poem off both ways names both;
    one character off stays a fault at its column."""
    early = json.loads(run("参差碧岫耸莲花，潺湲绿水莹金沙。何须远访三山路，人今已到九仙家。", "--format", "json").stdout)
    assert early["tone_pattern"] == "失对" and early["faults"] == 2 and not early["ok"]
    assert [line["unpaired"] for line in early["lines"]] == [False, True, False, True]
    assert not any(line["unglued"] or line["faults"] for line in early["lines"])
    made = "白日依山尽，落日照江流。独坐幽篁里，清风满客楼。"
    text = run(made).stdout.splitlines()
    assert text[0].startswith("五言绝句 · 失对 ·") and text[0].endswith("平仄 13/14")
    assert text[2].endswith("失对: 日 仄, the line before's 日 仄")
    assert run(made, "--strict").exit_code == EXIT_FAULTS
    both = json.loads(run("萧条起关塞，摇飏下蓬瀛。拂林花乱彩，响谷鸟分声。披云罗影散，泛水织文生。劳歌大风曲，"
                          "威加四海清。", "--format", "json").stdout)
    assert both["tone_pattern"] == "失粘、失对"
    assert both["faults"] == sum(line["unglued"] + line["unpaired"] for line in both["lines"]) > 1
    one = json.loads(run("白日依山尽，黄水入海流。欲穷千里目，更上一层楼。", "--format", "json").stdout)
    assert one["tone_pattern"] == "仄起" and [line["faults"] for line in one["lines"]][1] == [1]


def test_the_guarded_columns_name_their_rule_only_where_it_applies():
    """A 平 at 仄仄仄平平's third is 三平尾 only when the fourth is 平 too: 孟浩然's 八月湖水平 (湖 平, 水 仄)
    breaks at 水 alone. A one-tone character at a guarded column names the rule as a two-tone one does
    (恨别花惊心: 三平尾; 故书抵万金: 孤平)."""
    lake = run("八月湖水平，涵虚混太清。气蒸云梦泽，波撼岳阳城。欲济无舟楫，端居耻圣明。坐观垂钓者，徒有羡鱼情。").stdout
    assert lake.splitlines()[1].endswith("韵; 水 reads 仄, 平 asked") and "湖" not in lake.splitlines()[1][7:]
    spring = run("国破山河在，城春草木深。感时花溅泪，恨别花惊心。烽火连三月，故书抵万金。白头搔更短，浑欲不胜簪。").stdout
    assert "花 reads 平, 仄 asked (三平尾)" in spring and "故 reads 仄, 平 asked (孤平)" in spring
    assert "(三平尾)" not in run("国破山河在，城春草木深。感时花溅泪，恨别空水心。烽火连三月，家书抵万金。白头搔更短，"
                             "浑欲不胜簪。").stdout


def test_check_poem_and_the_scansion_read_the_three_level_guard_alike():
    """A 平 at 仄仄仄平平's third that the next character keeps from 三平尾 (八月湖水平: 水 仄) fits for
    check_poem (evaluate, best-of, polish) as for the scansion: 28 of 29. A true 三平尾 (湖山平) stays a fault
    at 湖, and so does one whose next character the table lacks (㐀 is not known to be 仄)."""
    from poetgen.checks import check_poem
    from poetgen.metre import strict_columns, tone_patterns
    from poetgen.prosody import table
    from poetgen.scansion import scan

    rest = "，涵虚混太清。气蒸云梦泽，波撼岳阳城。欲济无舟楫，端居耻圣明。坐观垂钓者，徒有羡鱼情。"
    for head, faults in (("八月湖水平", (3,)), ("八月湖山平", (2,)), ("八月湖㐀平", (2,))):
        check, scansion = check_poem(head + rest, "wulv", table()), scan(head + rest, "wulv")
        assert check.tone_pattern == scansion.tone_pattern == "仄起入韵", head
        columns = strict_columns(tone_patterns(5, 8)["仄起入韵"][0])   # 1, 2 (the guard), 3, 4
        broken = tuple(c for c, ok in zip(columns, check.tone_positions) if not ok)
        assert broken == scansion.lines[0].faults == faults, head
        assert check.tone_score == pytest.approx(scansion.tone_score) == pytest.approx(28 / 29), head


def test_a_borrowed_first_rhyme_and_a_lone_level_rhyme_read_as_the_checker_reads_them():
    """首句借邻韵 (王翰's 葡萄美酒夜光钗: 钗 九佳 beside 十灰) is what generation and evaluate accept
    (checks.first_line_fault): the scansion says so and does not fail --strict. A quatrain whose two
    rhyme lines are one 平 and one 仄 rhymes the 平 one's group; the 仄 line alone is off."""
    wine = "葡萄美酒夜光钗，欲饮琵琶马上催。醉卧沙场君莫笑，古来征战几人回。"
    assert run(wine, "--strict").exit_code == 0
    assert "韵 (借邻韵: 钗 in 上平九佳)" in run(wine).stdout.splitlines()[1]
    wind = run("风急天高猿啸钗，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。"
               "艰难苦恨繁霜鬓，潦倒新停浊酒红。").stdout.splitlines()   # borrowed though another rhyme is off
    assert "1 off" in wind[0] and "借邻韵" in wind[1] and wind[8].endswith("出韵)")
    gone = json.loads(run("白日依山尽，黄河入海去。欲穷千里目，更上一层楼。", "--format", "json").stdout)
    assert gone["rhyme_group"] == "下平十一尤" and [line["rhyme"] for line in gone["lines"]] == [None, False, None, True]


def test_ellipses_invisible_characters_and_shapes_that_do_not_fit_are_read_as_people_mean_them():
    assert json.loads(run(STORK[:-1] + "……", "--format", "json").stdout)["ok"]
    assert json.loads(run(STORK[:-1] + "...", "--format", "json").stdout)["ok"]
    assert json.loads(run(STORK[:-1] + "……——王之涣", "--format", "json").stdout)["ok"]   # an attribution after it
    assert json.loads(run("白日依\u200b山尽，黄河入海流。欲穷千里目，更上一层楼。", "--format", "json").stdout)["ok"]
    wrong = run("--form", "七绝", STORK)
    assert wrong.exit_code == 0 and "layout off (lines of 5/5/5/5 characters; a 七言绝句 has 4 of 7" in wrong.stdout
    long = run("白日依山尽，黄河入海流。" * 150)
    assert long.exit_code == EXIT_USAGE and "(300 lines)" in long.stderr and len(long.stderr) < 400


def test_a_ci_rhyme_off_names_the_bu_it_is_in_and_a_full_width_hash_names_a_variant():
    su = "细雨斜风作晓寒，淡烟疏柳媚晴滩。入淮清洛渐漫漫。雪沫乳花浮午盏，蓼茸蒿笋试春盘。人间有味是清鸣。"
    assert run("--tune", "浣溪沙", su).stdout.splitlines()[-1].endswith("韵 ✗ (鸣 in 第十一部平: off the rhyme)")
    assert json.loads(run("--tune", "浣溪沙＃1", su, "--format", "json").stdout)["variant"] == 1
    result = CliRunner().invoke(cli, ["generate", "--tune", "浣溪沙＃3", "-n", "1", "--seed", "1", "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["poems"][0]["variant"] == 3


def test_max_chars_given_with_a_form_is_noted_not_ignored_silently():
    noted = CliRunner().invoke(cli, ["generate", "--max-chars", "30", "--seed", "1"])
    assert noted.exit_code == 0 and "--max-chars caps free verse" in noted.stderr
    plain = CliRunner().invoke(cli, ["generate", "--form", "free", "--max-chars", "30", "--seed", "1"])
    assert plain.exit_code == 0 and "note" not in plain.stderr


def test_a_file_named_as_the_poem_says_how_to_read_it(tmp_path, monkeypatch):
    """`poetgen check 静夜思.txt` scanned the name as the poem ('lines of 3 characters are no regular shi
    form'), and `poetgen check poem.txt` said there were no Chinese characters: a file or folder given
    as TEXT is now named as such, with the redirect that reads it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "静夜思.txt").write_text(NIGHT, encoding="utf-8")
    (tmp_path / "poem.txt").write_text(NIGHT, encoding="utf-8")
    (tmp_path / "春晓").mkdir()
    for name, said in (("静夜思.txt", "< 静夜思.txt"), ("poem.txt", "< poem.txt"), ("春晓", "春晓 is a folder")):
        result = run(name)
        assert result.exit_code == EXIT_USAGE and result.stdout == "", result.output
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert run(NIGHT).exit_code == 0 and "no poem to scan" in run("").stderr   # "" is no folder
    long = run(NIGHT * 20)   # longer than a file name may be: still read as the poem (80 lines: no form)
    assert long.exit_code == EXIT_USAGE and "no regular shi form" in long.stderr, long.output


def test_a_poem_typed_without_marks_on_one_line_is_read_by_its_length():
    """床前明月光疑是地上霜举头望明月低头思故乡 (no marks, one line, as people paste a poem) was refused
    ('lines of 20 characters are no regular shi form'), and with --form scanned as one line, layout off:
    its length says the form (20, 28, 40 or 56 characters), and a couplet a line reads so too."""
    whole = json.loads(run(NIGHT.replace("，", "").replace("。", ""), "--format", "json").stdout)
    assert whole == json.loads(run(NIGHT, "--format", "json").stdout)
    couplets = run("--form", "wujue", "床前明月光疑是地上霜\n举头望明月低头思故乡", "--format", "json")
    assert json.loads(couplets.stdout)["layout_ok"], couplets.output
    qilv = "昔人已乘黄鹤去此地空余黄鹤楼黄鹤一去不复返白云千载空悠悠晴川历历汉阳树芳草萋萋鹦鹉洲日暮乡关何处是烟波江上使人愁"
    assert json.loads(run(qilv, "--format", "json").stdout)["form"] == "qilv"
    # a length no form has, or a form the length does not fill, is read as typed
    assert "lines of 19 characters" in run(NIGHT.replace("，", "").replace("。", "")[:-1]).stderr
    off = json.loads(run("--form", "qijue", NIGHT.replace("，", "").replace("。", ""), "--format", "json").stdout)
    assert not off["layout_ok"] and len(off["lines"]) == 1


def test_a_ci_typed_without_marks_is_laid_on_its_variants_clauses():
    """晏殊's 浣溪沙 typed without marks on one line (or a sentence a line) was scanned against the tune's
    clauses but reported 'layout off': a count of characters the variant has lays it on its clauses, the
    marks it lacks being no fault; rows that end inside a clause are still off."""
    plain = YAN_SHU.replace("，", "").replace("。", "").replace("？", "")
    marked = json.loads(run("--tune", "浣溪沙", YAN_SHU, "--format", "json").stdout)
    for typed in (plain, plain[:14] + "\n" + plain[14:28] + "\n" + plain[28:]):
        result = json.loads(run("--tune", "浣溪沙", typed, "--format", "json").stdout)
        assert result["layout_ok"] and result["ok"], result
        assert [line["text"][:-1] for line in result["lines"]] == [line["text"][:-1] for line in marked["lines"]]
        assert (result["variant"], result["faults"], result["rhyme_group"]) == \
            (marked["variant"], marked["faults"], marked["rhyme_group"])
    dream = run("--tune", "如梦令", "常记溪亭日暮沉醉不知归路兴尽晚回舟误入藕花深处争渡争渡惊起一滩鸥鹭")
    assert dream.exit_code == 0 and "layout ok" in dream.stdout.splitlines()[0], dream.output
    off = json.loads(run("--tune", "浣溪沙", plain[:8] + "\n" + plain[8:], "--format", "json").stdout)
    assert not off["layout_ok"] and not off["ok"]
    assert "41 characters" in run("--tune", "浣溪沙", plain[:-1]).stderr   # a count no variant has: refused


def test_a_ci_typed_without_marks_keeps_its_variants_clauses_under_an_attribution():
    """The attribution check has always dropped (——晏殊 under the poem), or a title and author above it,
    took the marks of a ci typed without them: the lines were read as corpus import reads a block, which
    closes each line with ， or 。 by turns, so the one line of 晏殊's 浣溪沙 read 'layout off' with them and
    'layout ok' without."""
    plain = YAN_SHU.replace("，", "").replace("。", "").replace("？", "")
    alone = json.loads(run("--tune", "浣溪沙", plain, "--format", "json").stdout)
    assert alone["layout_ok"], alone
    for typed in (plain + "\n——晏殊", plain + "\n（晏殊）", "【浣溪沙】\n" + plain,
                  plain[:14] + "\n" + plain[14:28] + "\n" + plain[28:] + "\n——晏殊"):
        result = run("--tune", "浣溪沙", typed, "--format", "json")
        assert result.exit_code == 0 and json.loads(result.stdout) == alone, (typed, result.output)


def test_a_ci_typed_without_marks_but_its_closing_stop_is_laid_on_its_variants_clauses():
    """A final 。 (as a sentence is closed) counted as the ci's own marks: typed on one line it read 'layout
    off' with it and 'layout ok' without, where a shi typed so is cut into its lines either way."""
    plain = YAN_SHU.replace("，", "").replace("。", "").replace("？", "")
    alone = json.loads(run("--tune", "浣溪沙", plain, "--format", "json").stdout)
    for typed in (plain + "。", plain[:14] + "\n" + plain[14:28] + "\n" + plain[28:] + "。"):
        result = run("--tune", "浣溪沙", typed, "--format", "json")
        assert result.exit_code == 0 and json.loads(result.stdout) == alone, (typed, result.output)
    off = json.loads(run("--tune", "浣溪沙", plain[:8] + "。" + plain[8:] + "。", "--format", "json").stdout)
    assert not off["layout_ok"]   # a mark inside is the poem's own: read as typed

def test_a_title_and_author_above_the_poem_are_not_its_lines():
    """江雪 / 柳宗元 above the verses (as a poem is copied, and as corpus import reads a block) were scanned
    as two lines of 2 and 3 characters: 'lines of 2/3/5/5/5/5 characters are no regular shi form'."""
    snow = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
    alone = json.loads(run(snow, "--format", "json").stdout)
    for typed in ("江雪\n柳宗元\n" + snow, "《江雪》\n柳宗元\n" + snow.replace("。", "。\n"),
                  "江雪\n作者：柳宗元\n" + snow, "【江雪】\n" + snow + "\n——柳宗元"):
        result = run(typed, "--format", "json")
        assert result.exit_code == 0 and json.loads(result.stdout) == alone, (typed, result.output)


SU_SHI = "细雨斜风作晓寒，淡烟疏柳媚晴滩。入淮清洛渐漫漫。雪沫乳花浮午盏，蓼茸蒿笋试春盘。人间有味是清欢。"
YAN_JIDAO = ("彩袖殷勤捧玉钟，当年拚却醉颜红。舞低杨柳楼心月，歌尽桃花扇影风。从别后，忆相逢，几回魂梦与君同。"
             "今宵剩把银釭照，犹恐相逢是梦中。")
XIN_QIJI = ("何处望神州？满眼风光北固楼。千古兴亡多少事？悠悠。不尽长江滚滚流。年少万兜鍪，坐断东南战未休。"
            "天下英雄谁敌手？曹刘。生子当如孙仲谋。")


def _rows(poem: str, per_row: int, inner: str) -> str:
    """`poem`'s clauses `per_row` a row, joined inside a row by `inner`, each row ending in its last mark."""
    import re

    parts = re.findall(r"[^，。？！]+[，。？！]", poem)
    groups = [parts[i:i + per_row] for i in range(0, len(parts), per_row)]
    rows = ["".join(part[:-1] + inner for part in group[:-1]) + group[-1] for group in groups]
    return "\n".join(rows)


def test_a_ci_typed_with_marks_at_its_row_ends_only_is_laid_on_its_variants_clauses():
    """苏轼's 浣溪沙 or 晏几道's 鹧鸪天 typed two clauses a row, a mark ending each row and none inside it (or
    three a row, or one line with marks left out between clauses) read 'layout off': its own marks made it
    'marked', so it was not laid on the variant's clauses. Every mark it has ends a clause of the variant:
    the clauses it runs together take the variant's marks; a mark inside a clause is still off. Each
    variant judges it laid on its own clauses: 辛弃疾's 南乡子 so typed was read as variant 7 (layout off, 5
    faults), marked as variant 6 (2 faults)."""
    for tune, poem in (("浣溪沙", SU_SHI), ("鹧鸪天", YAN_JIDAO), ("南乡子", XIN_QIJI)):
        marked = json.loads(run("--tune", tune, poem, "--format", "json").stdout)
        assert marked["layout_ok"] and marked["faults"] == (2 if tune == "南乡子" else 0), marked
        for typed in (_rows(poem, 2, ""), _rows(poem, 3, ""), _rows(poem, 2, "，"), poem.replace("，", "")):
            result = run("--tune", tune, typed, "--format", "json")
            data = json.loads(result.stdout)
            assert data["layout_ok"], (typed, result.output)
            assert [line["text"][:-1] for line in data["lines"]] == [line["text"][:-1] for line in marked["lines"]]
            assert (data["variant"], data["faults"], data["rhyme_group"]) == \
                (marked["variant"], marked["faults"], marked["rhyme_group"])
    rows = _rows(SU_SHI, 2, "").splitlines()
    assert "layout ok" in run("--tune", "浣溪沙", "-", stdin="\n".join(rows) + "\n").stdout.splitlines()[0]
    inside = SU_SHI.replace("淡烟疏柳媚晴滩", "淡烟，疏柳媚晴滩")   # a mark inside a clause
    assert not json.loads(run("--tune", "浣溪沙", inside, "--format", "json").stdout)["layout_ok"]
    broken = rows[0][:9] + "\n" + rows[0][9:] + "\n" + "\n".join(rows[1:])   # a row end inside a clause
    assert not json.loads(run("--tune", "浣溪沙", broken, "--format", "json").stdout)["layout_ok"]



def test_a_tune_title_or_author_line_above_the_poem_is_left_out_where_only_the_rest_is_its_form():
    """浣溪沙, 苏轼 or 宋·苏轼 on a line above 苏轼's 浣溪沙 were scanned as a clause of it (45 characters: refused;
    44: 'layout off' as variant 3), and 静夜思 above 静夜思 typed on one line without marks was 'lines of 3/20
    characters'. Left out when the rest is then exactly the form; a line that makes the poem its form with
    it is one of its lines (江南好 opens 白居易's 忆江南, and is the tune's name too)."""
    for poem in (SU_SHI, SU_SHI.replace("。", "。\n").strip(), _rows(SU_SHI, 2, "")):
        alone = json.loads(run("--tune", "浣溪沙", poem, "--format", "json").stdout)
        assert alone["ok"] and alone.pop("left_out") == [], alone
        for heads in ("浣溪沙\n", "苏轼\n", "宋·苏轼\n", "【宋】苏轼\n", "浣溪沙\n苏轼\n", "浣溪沙·游蕲水清泉寺\n宋 苏轼\n"):
            result = run("--tune", "浣溪沙", heads + poem, "--format", "json")
            assert result.exit_code == 0, (heads + poem, result.output)
            data = json.loads(result.stdout)
            left_out = data.pop("left_out")   # as read: 【宋】苏轼 is 苏轼
            assert len(left_out) == len(heads.splitlines()) and data == alone, (heads + poem, result.output)
            assert f"poetgen: note: {' / '.join(left_out)} left out: read as" in result.stderr
    south = "江南好，风景旧曾谙。日出江花红胜火，春来江水绿如蓝。能不忆江南？"
    marked = json.loads(run("--tune", "忆江南", south, "--format", "json").stdout)
    assert marked["ok"] and marked["lines"][0]["text"] == "江南好，"
    plain = "\n".join(line["text"][:-1] for line in marked["lines"])   # 江南好 alone on the first line
    for typed in (plain, "忆江南\n白居易\n" + plain, "忆江南\n唐·白居易\n" + south):
        data = json.loads(run("--tune", "忆江南", typed, "--format", "json").stdout)
        assert data["ok"] and [line["text"][:-1] for line in data["lines"]] == plain.splitlines(), (typed, data)
    assert run("--tune", "浣溪沙", "苏轼\n" + SU_SHI[:-8] + "。").exit_code == EXIT_USAGE   # the rest is no variant
    night = json.loads(run(NIGHT, "--format", "json").stdout)
    assert night.pop("left_out") == []
    one_line = NIGHT.replace("，", "").replace("。", "")
    for typed in ("静夜思\n" + one_line, "静夜思\n李白\n" + one_line, "静夜思\n唐·李白\n" + one_line,
                  "静夜思 李白\n" + one_line[:10] + "\n" + one_line[10:], "李白\n" + one_line):
        result = run(typed, "--format", "json")
        data = json.loads(result.stdout)
        assert result.exit_code == 0 and data.pop("left_out") and data == night, (typed, result.output)
    assert json.loads(run("--form", "五绝", "静夜思\n" + one_line, "--format", "json").stdout) == {**night, "left_out": ["静夜思"]}
    kept = run("白日依山尽\n" + one_line)   # as long as a line of the poem: read as one of its lines
    assert kept.exit_code == EXIT_USAGE and "lines of 5/20 characters" in kept.stderr
    assert run("静夜思\n" + one_line[:-1]).exit_code == EXIT_USAGE   # 19 under it: no form either way


def test_a_ci_whose_marks_fit_one_variant_exactly_is_not_laid_on_another_s_finer_clauses():
    """Laying every variant on its own clauses (for a ci typed with marks left out) also laid a fully
    marked ci on the finer clauses of another variant of the same length: 韩淲's 霜天晓角, its marks exactly
    variant 3's clauses (平仄 22/22), was read as variant 1 with a mark put inside its line 海棠红未落 (海棠。
    红未落。: 棠 off the rhyme, 平仄 18/20), 'layout ok'. Marks that fit the variant it fits best are its own."""
    poem = "雨收云薄。有底情怀恶。一段春风花事，吟得就，又忘却。海棠红未落。细细流霞酌。选甚蝇营狗苟，皆现定，有何错。"
    data = json.loads(run("--tune", "霜天晓角", poem, "--format", "json").stdout)
    assert (data["variant"], data["layout_ok"]) == (3, True), data
    assert "".join(line["text"] for line in data["lines"]) == poem
    rows = poem.replace("。", "。\n").strip()   # a sentence a row, its marks kept: the same reading
    assert json.loads(run("--tune", "霜天晓角", rows, "--format", "json").stdout)["variant"] == 3
