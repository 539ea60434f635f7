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
    assert east["lines"][0]["faults"] == [] and east["faults"] == 1
    assert json.loads(run("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "--format",
                          "json").stdout)["faults"] == 0


def test_a_poem_rhyming_in_an_oblique_group_says_so():
    result = run("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。")
    assert "rhyme 入九屑 ok" in result.stdout and "仄韵 (古绝)" in result.stdout.splitlines()[0]


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
    (["--form", "wujue", "--tune", "浣溪沙", STORK], "not both"),
    (["--variant", "2", STORK], "give the tune too"),
    (["--tune", "浣溪沙", STORK], "浣溪沙's variants have"),
    (["--tune", "浣溪沙#2", "--variant", "2", YAN_SHU], "give the variant once"),
    (["--tune", "浣溪沙", "--variant", "9", YAN_SHU], "the variant must be 1 to"),
    (["--tune", "没有这个词牌", YAN_SHU], "没有这个词牌"),
])
def test_what_cannot_be_scanned_is_one_line_and_exit_2(args, said):
    result = run(*args)
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
