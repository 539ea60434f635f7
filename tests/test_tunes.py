"""The 词谱 table, its build script, tune lookup, ci rhyme (词林正韵) and the ci checker."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.ci_checks import check_against_tune, check_ci, han_chars
from poetgen.ci_rhyme import CODES, ci_rhyme, codes_for_tone, flip
from poetgen.cli import cli
from poetgen.prosody import PING, ZE, table
from poetgen.tunes import EITHER, TABLE_PATH, UnknownTune, resolve, tune_table, variant_from

REPO = Path(__file__).resolve().parent.parent
SOURCE = next((p / "shared" / "data" / "cipu" for p in REPO.parents if (p / "shared" / "data" / "cipu").is_dir()), None)
YAN_SHU = "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回？无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_cipu", REPO / "scripts" / "build_cipu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_source(root: Path) -> Path:
    (root / "ci_list").mkdir(parents=True)
    index = [{"idx": 0, "names": ["甲调", "乙名"], "names_trad": ["甲調", "乙名"], "pinyins": ["jiadiao", "jd"],
              "type": ["单调", 10, ["平"]]}]
    variants = [{"ge_lyu_str": "平平仄仄平中仄仄平平", "rhyme_pos": [4, 9], "yun_classify": {"0": [4, -9]},
                 "origin": "春风入画堂，明月照人来。"}]
    (root / "ci_index.json").write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    (root / "ci_list" / "cipai_0.json").write_text(json.dumps(variants, ensure_ascii=False), encoding="utf-8")
    return root


def test_build_is_reproducible_and_reads_clauses_and_xie(tmp_path):
    build = _build_module()
    source = _fake_source(tmp_path / "src")
    build.write(build.build(source), tmp_path / "a.json.gz")
    build.write(build.build(source), tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    variant = json.loads(gzip.decompress((tmp_path / "a.json.gz").read_bytes()))["tunes"][0]["variants"][0]
    assert variant["lengths"] == [5, 5] and variant["marks"] == "，。" and variant["rhymes"] == [[4, -9]]


def test_build_keeps_what_a_repeated_phrase_repeats():
    """叠 in ge_lyu_sep: 如梦令's 如梦。如梦 (a phrase mark with a tone before it, 仄韵, counts no
    character); 长相思's 汴水流，泗水流 echoes 水流 only; a copy whose tones disagree with its source is dropped."""
    build = _build_module()
    raw = {"origin": "和泪出门相送。如梦。如梦。", "ci_sep": ["和泪出门相送", "如梦", "如梦"],
           "ge_lyu_sep": ["中仄中平中仄仄韵", "中仄韵", "中仄叠"]}
    groups = [[5, 7, 9]]
    assert build.repeats_of(raw, "中仄中平中仄中仄中仄", groups) == [[8, 6], [9, 7]]
    assert build.repeats_of(raw, "中仄中平中仄中仄平平", groups) == [[8, 6]]    # 平 would copy a 仄: that pair only out
    echo = {**raw, "origin": "和泪出门相送。汴水。泗水。", "ci_sep": ["和泪出门相送", "汴水", "泗水"]}
    assert build.repeats_of(echo, "中仄中平中仄中仄中仄", groups) == [[9, 7]]   # the echoed 水 only
    assert build.repeats_of({"origin": raw["origin"]}, "中仄中平中仄中仄中仄", groups) == []   # no phrases given
    shipped = {tune.name: tune for tune in tune_table().tunes}
    assert shipped["如梦令"].variants[0].repeats == ((25, 23), (26, 24))
    assert len(shipped["忆秦娥"].variants[0].repeats) == 6
    assert shipped["长相思"].variants[0].repeats == ((4, 1), (5, 2), (22, 19), (23, 20))   # 汴水流，泗水流: 水流


def test_build_refuses_a_rhyme_inside_a_clause(tmp_path):
    build = _build_module()
    source = _fake_source(tmp_path / "src")
    path = source / "ci_list" / "cipai_0.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw[0]["rhyme_pos"], raw[0]["yun_classify"] = [3, 9], {"0": [3, 9]}
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="inside a clause"):
        build.build(source)


@pytest.mark.skipif(SOURCE is None, reason="the couyun source tables (../shared/data/cipu) are not here")
def test_shipped_table_is_what_the_script_builds(tmp_path):
    build = _build_module()
    build.write(build.build(SOURCE), tmp_path / "cipu.json.gz")
    assert (tmp_path / "cipu.json.gz").read_bytes() == TABLE_PATH.read_bytes()


def test_every_variant_is_a_valid_layout_with_rhymes_at_clause_ends():
    tunes = tune_table().tunes
    assert len(tunes) == 817 and sum(len(t.variants) for t in tunes) == 2293   # 贺新郎#12 left out
    for tune in tunes:
        for variant in tune.variants:
            layout = variant.layout
            assert sum(layout.line_lengths) == variant.length == len(variant.tones)
            ends = {sum(layout.line_lengths[:i + 1]) - 1 for i in range(layout.line_count)}
            assert {s.pos for s in variant.rhymes} <= ends
            assert layout.end_marks[-1] == "。"
            for group in range(variant.group_count):
                assert variant.group_tone(group) in (PING, ZE, EITHER)


@pytest.mark.parametrize("name", ["浣溪沙", "huanxisha", "HXS", "十六字令", "蒼梧謠", " 归字谣 "])
def test_lookup_by_any_name(name):
    tune = tune_table().get(name)
    assert name.strip().lower() in [k.lower() for k in (*tune.names, *tune.names_trad, *tune.pinyin)]


@pytest.mark.parametrize("typed, name", [("Man Jiang Hong", "满江红"), ("xi'jiang-yue", "西江月"),
                                         ("nüguanzi", "女冠子"), ("nuguanzi", "女冠子"), ("NU:GUANZI", "女冠子"),
                                         ("转应曲", "古调笑"), ("卖花声", "浪淘沙令"), ("一江春水", "虞美人")])
def test_a_tune_is_found_as_readers_type_it(typed, name):
    """Man Jiang Hong, nuguanzi (ü typed u) and names readers know a tune by (转应曲) found nothing."""
    assert tune_table().get(typed).name == name
    assert name in [t.name for t in tune_table().search(typed)]


def test_a_u_typed_for_u_umlaut_never_hides_a_tune_that_has_that_spelling():
    table = tune_table()
    typed: dict[str, list] = {}
    for tune in table.tunes:
        for k in tune.pinyin:
            if "v" in k:
                typed.setdefault(k.replace("v", "u"), []).append(tune)
    found = {k: table.find(k) for k in typed if k not in {p for t in table.tunes for p in t.pinyin}}
    assert found and all(tune in typed[k] for k, tune in found.items())   # ü typed u finds its own tune…
    assert table.find("nuguanzi").name == "女冠子" and table.find("lvyi") is table.find("luyi") is not None
    for tune in table.tunes:   # …but every own pinyin still finds its tune (or is shared and refused)
        for key in tune.pinyin:
            assert table.find(key) is tune or key.lower() in table.shared_keys


def test_unknown_tune_names_the_closest():
    with pytest.raises(UnknownTune, match="浣溪沙") as error:
        resolve("浣溪莎")
    assert error.value.field == "tune" and "\n" not in str(error.value)
    # each close tune once, by its name: 浣溪纱 and 浣沙溪 are other names of 浣溪沙 (corpus labels)
    assert "closest: 浣溪沙, " in str(error.value) and "浣溪纱," not in str(error.value)


def test_variant_out_of_range_is_one_line():
    count = len(tune_table().get("浣溪沙").variants)
    assert resolve("浣溪沙", count).number == count
    with pytest.raises(ValueError, match=f"1 to {count}") as error:
        resolve("浣溪沙", count + 1)
    assert error.value.field == "variant"


def test_cilin_covers_every_pingshui_group():
    prosody, rhyme = table(), ci_rhyme()
    seen = {c for codes in rhyme.codes_of.values() for c in codes}
    assert seen == set(CODES)
    # every 平水韵 group of a character maps to exactly one code of the matching tone class
    for ch, groups in list(prosody.numbered_groups_of.items())[:3000]:
        kinds = {kind for kind, _ in groups}
        codes = rhyme.codes(ch)
        assert (PING in kinds) == any(0 < c <= 14 for c in codes)
        assert ("入" in kinds) == any(c >= 15 for c in codes)
        assert bool(kinds & {"上", "去"}) == any(c < 0 for c in codes)


def test_cilin_merges_and_splits():
    rhyme = ci_rhyme()
    # 东 and 冬 share 第一部; 江 joins 阳 in 第二部; 上 and 去 rhyme together (董 and 送)
    assert rhyme.codes("东") & rhyme.codes("冬") and rhyme.codes("江") & rhyme.codes("阳")
    assert rhyme.codes("董") & rhyme.codes("送")
    # 灰 splits: 回 stays with 支 (第三部), 来 goes with 佳 (第五部)
    assert rhyme.codes("回") & rhyme.codes("支") and not rhyme.codes("来") & rhyme.codes("回") - {-3}
    assert rhyme.codes("来") & rhyme.codes("街")
    # the 咍 half of 十一队 (代韵) goes with 第五部 as 咍 does: 裁 was 第五部 in 平 but 第三部 in 仄
    from poetgen.ci_rhyme import _QU

    assert all(ch in _QU[10][2] for ch in "裁代载再在叇劾") and not set(_QU[10][2]) & set("队内对退配佩碎")
    # 入声 stand apart from 平 and 上去
    assert all(c >= 15 for c in rhyme.codes("月"))
    assert flip(3) == -3 and flip(-3) == 3 and flip(17) == 17
    assert codes_for_tone(PING).isdisjoint(codes_for_tone(ZE))


def test_checker_judges_layout_rhyme_and_tone():
    variant, prosody, rhyme = resolve("浣溪沙"), table(), ci_rhyme()
    check = check_ci(YAN_SHU, variant, prosody, rhyme)
    assert check.layout_ok and check.chars_ok and len(check.tone_positions) == variant.tones.count(PING) + \
        variant.tones.count(ZE)
    # a clause one character short: the layout fails and rhyme/tone are not judged
    short = YAN_SHU.replace("一曲新词", "曲新词", 1)
    assert not check_ci(short, variant, prosody, rhyme).layout_ok
    assert check_ci(short, variant, prosody, rhyme).rhyme_score is None
    # a 平 position given a character read only 仄 lowers the tone score
    chars = han_chars(YAN_SHU)
    pos = next(i for i, t in enumerate(variant.tones) if t == PING and prosody.tones(chars[i]) == {PING})
    assert check_ci(_replace_char(YAN_SHU, pos, "去"), variant, prosody, rhyme).tone_score < check.tone_score


def _replace_char(text: str, pos: int, new: str) -> str:
    """`text` with its pos-th Han character replaced."""
    out, k = [], 0
    for ch in text:
        if ch not in "，。？、":
            ch, k = (new if k == pos else ch), k + 1
        out.append(ch)
    return "".join(out)


def test_check_against_tune_reads_dou_marks():
    tune, prosody, rhyme = tune_table().get("满江红"), table(), ci_rhyme()
    text = ("怒发冲冠，凭栏处、潇潇雨歇。抬望眼、仰天长啸，壮怀激烈。三十功名尘与土，八千里路云和月。莫等闲、白了少年头，空悲切。"
            "靖康耻，犹未雪。臣子恨，何时灭。驾长车，踏破贺兰山缺。壮志饥餐胡虏肉，笑谈渴饮匈奴血。待从头、收拾旧山河，朝天阙。")
    # its 读 marks (、) read as clause breaks: variant 3's layout fits it
    assert check_ci(text, tune.variants[2], prosody, rhyme).layout_ok
    # but the variant it fits best is the 谱's main form, 柳永's: all its 平仄 but 激 and 靖 fit there, 13
    # miss in variant 3; it breaks 驾长车，踏破贺兰山缺 three and six where the 谱 breaks five and four
    check = check_against_tune(text, tune, prosody, rhyme)
    assert (check.variant, check.layout_ok, check.rhyme_ok, check.rhyme_parts) == (1, False, True, ["第十八部入"])
    assert check.tone_score > check_ci(text, tune.variants[2].as_marked, prosody, rhyme).tone_score + 0.1   # the 谱's marks
    # a rhyme position given a 平 character of another 部 fails, and only that one
    variant = tune.variants[check.variant - 1]
    broken = check_ci(_replace_char(text, variant.rhymes[2].pos, "东"), variant, prosody, rhyme)
    assert not broken.rhyme_ok and broken.rhyme_score == 1 - 1 / len(variant.rhymes)


def test_a_dou_the_text_leaves_unmarked_still_fits_the_layout():
    """李煜's 虞美人 as editions print it (故国不堪回首月明中, no mark at the 谱's 读) failed the layout, and so
    did 相见欢 and any ci with a 读 printed without its mark; the same text with a mark at another place
    still fails."""
    prosody, rhyme = table(), ci_rhyme()
    yu = ("春花秋月何时了，往事知多少。小楼昨夜又东风，故国不堪回首月明中。"
          "雕栏玉砌应犹在，只是朱颜改。问君能有几多愁，恰似一江春水向东流。")
    xiang = "无言独上西楼，月如钩。寂寞梧桐深院锁清秋。剪不断，理还乱，是离愁。别是一般滋味在心头。"
    for name, text in (("虞美人", yu), ("相见欢", xiang)):
        check = check_against_tune(text, tune_table().get(name), prosody, rhyme)
        assert check.layout_ok and check.rhyme_ok and check.tone_score == 1.0, (name, check)
    misplaced = yu.replace("故国不堪回首月明中", "故国不堪，回首月明中")
    assert not check_against_tune(misplaced, tune_table().get("虞美人"), prosody, rhyme).layout_ok


def test_tunes_command_lists_searches_and_counts(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["tunes", "浣溪"])
    assert result.exit_code == 0 and "浣溪沙" in result.output
    corpus = tmp_path / "ci.jsonl"
    corpus.write_text("".join(json.dumps({"text": "x", "genre": "ci", "tune": t}, ensure_ascii=False) + "\n"
                              for t in ["浣溪沙", "浣溪沙", "山花子", "无此调"]), encoding="utf-8")
    result = runner.invoke(cli, ["tunes", "huanxi", "--format", "json", "--corpus", str(corpus)])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["浣溪沙"]["ci_in_corpus"] == 2 and rows["浣溪沙"]["variants"] == 5
    result = runner.invoke(cli, ["tunes", "--corpus", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    # chinese-poetry's own JSON (a list with `rhythmic`) counts too; it was a raw parser error
    songci = tmp_path / "ci.song.0.json"
    songci.write_text(json.dumps([{"rhythmic": "浣溪沙", "author": "晏殊", "paragraphs": ["一曲新词酒一杯。"]},
                                  {"rhythmic": "浣溪沙", "author": "苏轼", "paragraphs": ["山下兰芽短浸溪。"]}],
                                 ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(cli, ["tunes", "浣溪沙", "--format", "json", "--corpus", str(songci)])
    assert result.exit_code == 0, result.output
    assert {row["name"]: row["ci_in_corpus"] for row in json.loads(result.output)}["浣溪沙"] == 2
    # a record `corpus import` would drop is a corpus the counts cannot trust: one line, not a silent skip
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"tune": "如梦令", "text": "x"}\nnot json\n', encoding="utf-8")
    result = runner.invoke(cli, ["tunes", "如梦令", "--corpus", str(broken)])
    assert result.exit_code == 2 and "record 2: not valid JSON" in result.output


def test_a_variant_that_doubles_a_single_stanza_tune_is_listed_as_two_stanzas():
    """The 谱 calls 江城子 单调 after its first form (35 characters); the form written by default, the 5th
    (70, 苏轼's 老夫聊发少年狂), is its 双调, and `poetgen tunes` showed 单调 beside [70]."""
    runner = CliRunner()
    rows = {row["name"]: row for row in json.loads(runner.invoke(cli, ["tunes", "--format", "json"]).output)}
    assert rows["江城子"]["sections"] == "双调" and rows["江城子"]["usual"] == 5
    assert rows["江城子"]["variant_sections"][:5] == ["单调", "单调", "单调", "单调", "双调"]
    assert rows["南乡子"]["sections"] == "双调" and rows["南乡子"]["variant_sections"][0] == "单调"
    assert rows["竹枝"]["sections"] == "单调" and rows["浣溪沙"]["sections"] == "双调"
    assert set(rows["浣溪沙"]["variant_sections"]) == {"双调"}
    line = next(line for line in runner.invoke(cli, ["tunes", "江城子"]).output.splitlines() if line.startswith("江城子"))
    assert "双调" in line and "[70]" in line


def test_the_pinyin_column_lists_the_full_pinyin_keys_not_the_longest():
    """念奴娇 showed dajiangdongqu (大江东去's pinyin): the 词谱's pinyin list is sorted, not aligned with the
    names, so the column lists every full form, initials left out."""
    result = CliRunner().invoke(cli, ["tunes", "念奴娇", "--format", "json"])
    row = next(r for r in json.loads(result.output) if r["name"] == "念奴娇")
    assert "niannujiao" in row["pinyin"].split("/") and "nnj" not in row["pinyin"].split("/")
    assert row["pinyin"] == "dajiangdongqu/leijiangyue/niannujiao"


def test_tunes_with_a_corrupt_gzip_corpus_is_one_line(tmp_path):
    import gzip

    data = bytearray(gzip.compress(("\n".join(json.dumps({"text": "x", "tune": "浣溪沙"}) for _ in range(200))
                                    ).encode()))
    data[20:40] = bytes(20)   # inside the deflate stream: zlib.error
    corrupt = tmp_path / "ci.jsonl.gz"
    corrupt.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["tunes", "--corpus", str(corrupt)])
    assert result.exit_code == 2 and "internal error" not in result.output
    assert str(corrupt) in result.output and len(result.output.strip().splitlines()) == 1


def test_the_table_and_its_licence_are_package_data():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    listed = config["options.package_data"]["poetgen"].split()
    for name in ("data/cipu.json.gz", "data/CIPU_LICENSE"):
        assert name in listed and (REPO / "poetgen" / name).is_file()
    assert "MIT License" in (REPO / "poetgen" / "data" / "CIPU_LICENSE").read_text(encoding="utf-8")


def test_blank_names_and_shared_pinyin_initials_are_refused_naming_tune():
    """A blank tune wrote a 五绝 (exit 0); '#3' said "unknown tune ''"; pinyin initials that several
    tunes share (yjm: 谒金门 and 一剪梅) silently took the first."""
    from poetgen.errors import BadInput
    from poetgen.request import PoemRequest
    from poetgen.tunes import resolve, tune_table

    for blank in ("  ", "\u3000"):
        with pytest.raises(BadInput, match="tune is blank") as error:
            PoemRequest(tune=blank).validate()
        assert error.value.field == "tune"
    # `--tune ""` parses as the default (no tune: shi), so the CLI itself refuses it; it wrote a 五绝
    from click.testing import CliRunner

    from poetgen.cli import cli

    for args in (["--tune", ""], ["--tune=", "--interactive"]):
        result = CliRunner().invoke(cli, ["generate", *args], input="")
        assert result.exit_code == 2 and "tune is blank" in result.output, (args, result.output)
    with pytest.raises(BadInput, match="no tune name before '#'"):
        resolve("#3")
    with pytest.raises(BadInput, match="'yjm' names 2 tunes: 谒金门, 一剪梅") as error:
        resolve("yjm")
    assert error.value.field == "tune"
    assert tune_table().find("yjm") is None
    assert resolve("yijianmei").tune == resolve("一剪梅").tune == "一剪梅"


def test_the_savedmodel_tables_find_no_tune_by_a_shared_key():
    from poetgen.graph_tables import layout_tables, shi_layouts
    from poetgen.layout import MARKS
    from poetgen.tunes import tune_table

    table = tune_table()
    tables = layout_tables(shi_layouts(), np.arange(len(MARKS), dtype=np.int32) + 3, tunes=[table.get("谒金门"), table.get("一剪梅")])
    assert "yjm" not in tables.aliases and "一剪梅" in tables.aliases and "yijianmei" in tables.aliases


def test_other_names_the_corpus_joins_to_a_tune_find_it_and_its_ci_are_counted(tmp_path):
    """凤栖梧, 醉落魄, 一翦梅, 台城路… were unknown tunes with unrelated suggestions, though the corpus
    labels its ci 凤栖梧・蝶恋花 and so on; `poetgen tunes 忆江南` counted 0 of its 望江南・忆江南 ci."""
    from poetgen.cli_tunes import ci_counts
    from poetgen.tunes import resolve, tune_table

    for alias, tune in (("凤栖梧", "蝶恋花"), ("鹊踏枝", "蝶恋花"), ("醉落魄", "一斛珠"), ("一翦梅", "一剪梅"),
                        ("台城路", "齐天乐"), ("百字令", "念奴娇"), ("江神子", "江城子"), ("南柯子", "南歌子")):
        assert resolve(alias).tune == tune, alias
    assert tune_table().find("自度曲") is None   # a label two tunes share names neither
    corpus = tmp_path / "ci.jsonl"
    corpus.write_text("".join(json.dumps({"tune": t, "text": "x"}, ensure_ascii=False) + "\n"
                              for t in ("望江南・忆江南", "忆江南", "一剪梅・一翦梅", "渔父・渔歌子")), encoding="utf-8")
    counts = ci_counts(corpus, tune_table())
    assert counts["忆江南"] == 2 and counts["一剪梅"] == 1


def test_export_ranks_tunes_by_the_counts_poetgen_tunes_reports():
    """export --tunes N counted 5 ci for 忆江南 (its 望江南・忆江南 label went uncounted), so the top 100
    left it out while `poetgen tunes` counted 202."""
    from poetgen.cli_tunes import CI_CORPUS, ci_counts
    from poetgen.export import exported_tunes
    from poetgen.resources import shipped_path
    from poetgen.tunes import tune_table

    counts = ci_counts(shipped_path(CI_CORPUS), tune_table())
    top = {t.name for t in exported_tunes(100)}
    assert "忆江南" in top and "一斛珠" in top
    assert min(counts[name] for name in top) >= max(counts[t.name] for t in tune_table().tunes if t.name not in top)


def test_a_savedmodel_of_some_tunes_refuses_keys_the_whole_table_shares():
    """With --tunes N, a shared key (htc: 画堂春 and 海棠春) whose second tune was not exported found the
    first in the graph, while the CLI refuses it."""
    from poetgen.graph_tables import layout_tables, shi_layouts
    from poetgen.layout import MARKS
    from poetgen.tunes import tune_table

    table = tune_table()
    tables = layout_tables(shi_layouts(), np.arange(len(MARKS), dtype=np.int32) + 3, tunes=[table.get("画堂春")])
    assert table.find("htc") is None and "htc" not in tables.aliases and "画堂春" in tables.aliases


def test_the_savedmodel_tables_take_every_spelling_the_cli_reads_through_t2s():
    """The graph found no 浣谿沙 (谿, which OpenCC t2s writes 溪), which `--tune` reads as 浣溪沙: every name
    the graph's table holds finds, through TuneTable.find, the tune of its entry; 浣谿沙 is 浣溪沙's, 徵招,
    which the 谱 has as typed, stays its own, and a spelling of a tune left out is refused as left out."""
    from poetgen.graph_tables import layout_tables, shi_layouts
    from poetgen.layout import MARKS

    table, shi = tune_table(), shi_layouts()
    tables = layout_tables(shi, np.arange(len(MARKS), dtype=np.int32) + 3, tunes=table.tunes)
    tune_of = {key: table.tunes[entry - len(shi)] for key, entry in tables.aliases.items() if entry >= len(shi)}
    assert [key for key, tune in tune_of.items() if table.find(key) is not tune] == []
    assert tune_of["浣谿沙"].name == tune_of["浣溪沙"].name == "浣溪沙" and tune_of["浣谿紗"].name == "浣溪沙"
    assert tune_of["徵招"].name == "徵招" and "征招" not in tables.aliases
    some = layout_tables(shi, np.arange(len(MARKS), dtype=np.int32) + 3, tunes=[table.get("画堂春")])
    assert "浣谿沙" in some.left_out and "浣谿沙" not in some.aliases


def test_other_names_the_tables_lack_find_their_tune():
    """思佳客 (33 ci in the corpus) and 摸鱼子 were unknown tunes: the 词谱's 又名 the couyun tables lack."""
    from poetgen.tunes import resolve

    for name, tune in (("思佳客", "鹧鸪天"), ("摸鱼子", "摸鱼儿"), ("迈陂塘", "摸鱼儿"), ("六么令", "六幺令"),
                       ("锁窗寒", "琐窗寒"), ("红林擒近", "红林檎近")):
        assert resolve(name).tune == tune, name


def test_every_name_is_found_by_its_traditional_spelling_too():
    """The couyun tables spell only some names in traditional characters: 漁父詞, 浣溪紗, 摸魚子 and
    鳳棲梧 (the names added from the corpus and by hand) were unknown tunes. A spelling another tune
    has as a key is left out rather than shared."""
    from poetgen.corpus import to_traditional
    from poetgen.tunes import resolve

    for name, tune in (("漁父詞", "渔歌子"), ("浣溪紗", "浣溪沙"), ("摸魚子", "摸鱼儿"), ("鳳棲梧", "蝶恋花"),
                       ("臺城路", "齐天乐"), ("紅林擒近", "红林檎近")):
        assert resolve(name).tune == tune, name
    table = tune_table()
    keys = {}
    for t in table.tunes:
        for key in (*t.names, *t.names_trad, *t.pinyin):
            keys.setdefault(key.lower(), set()).add(t.name)
    missing = [(t.name, name) for t in table.tunes for name in t.names
               if to_traditional(name) not in t.names_trad and keys.get(to_traditional(name).lower()) == {t.name}]
    assert missing == []
    assert table.shared_keys == {key for key, owners in keys.items() if len(owners) > 1}


def test_a_variant_spelling_the_table_lacks_reads_as_simplified_chinese_writes_it(tmp_path):
    """浣谿沙 (谿, which OpenCC t2s writes 溪) was no tune to `tunes`, `--tune` and `check`, though a prompt in
    such characters reads as simplified; a name the 谱 has as typed is still found so (徵招, not 征招)."""
    from poetgen.importers import simplified_tune

    table = tune_table()
    assert table.find("浣谿沙").name == resolve("浣谿沙").tune == "浣溪沙"
    assert table.find("徵招").name == "徵招" and table.find("征招") is None and simplified_tune("浣谿沙") == "浣溪沙"
    assert [t.name for t in table.search("浣谿沙")] == [t.name for t in table.search("浣溪沙")]
    result = CliRunner().invoke(cli, ["tunes", "浣谿沙"])
    assert result.exit_code == 0 and result.stdout.startswith("浣溪沙 ("), result.output
    result = CliRunner().invoke(cli, ["check", "--tune", "浣谿沙", "一曲新词酒一杯，去年天气旧亭台，夕阳西下几时回。"
                                                                "无可奈何花落去，似曾相识燕归来，小园香径独徘徊。"])
    assert result.exit_code == 0 and result.stdout.startswith("浣溪沙 · variant 1"), result.output


def test_a_repeated_character_is_asked_the_tone_its_copy_is_asked():
    """章台柳: the copy's 平 sat on a source the 谱 marks 中, so the repeat wrote a 仄 at a 平 position (9 of
    20 poems); a source marked 中 now takes its copy's tone, chains (错。错。错) back to their start."""
    for tune in tune_table().tunes:
        for variant in tune.variants:
            for position, source in variant.repeats:
                copy, original = variant.tones[position], variant.tones[source]
                assert copy == EITHER or original == copy, (tune.name, variant.number, position, source)
    zhangtai = tune_table().get("章台柳").variants[0]
    assert zhangtai.repeats and zhangtai.tones[1] == zhangtai.tones[4] == "平"


def test_a_rhyme_the_model_poem_changes_is_two_rhymes_not_one():
    """减字木兰花's main form had its two 平 pairs as one rhyme (the tables' grouping), so every ci rhymed
    云 醺 with 圆 穿, and 欧阳修's own model poem failed its rhyme; its 仄 pairs change with them (前后段各两仄韵、
    两平韵); 灰 and 咍 (定西番: 梅 台 来 徊, one 平水韵
    group in two 部 of the 词林正韵) stay one rhyme."""
    variant = resolve("减字木兰花")
    assert variant.group_count == 4 and [variant.group_tone(g) for g in range(4)] == [ZE, PING, ZE, PING]
    ouyang = "歌檀敛袂，缭绕雕梁尘暗起。柔润清圆，百琲明珠一线穿。樱唇玉齿，天上仙音心下事。留住行云，满座迷魂酒半醺。"
    assert check_ci(ouyang, variant, table(), ci_rhyme()).rhyme_ok
    assert resolve("定西番").group_count == 2


def test_split_contradicted_cuts_only_a_group_its_model_poem_rhymes_apart():
    build = _build_module()
    text = "歌檀敛袂缭绕雕梁尘暗起柔润清圆百琲明珠一线穿樱唇玉齿天上仙音心下事留住行云满座迷魂酒半醺"
    groups = [[3, 10, 25, 32], [14, 21, 36, 43]]
    assert build.split_contradicted(groups, text) == [[3, 10], [14, 21], [25, 32], [36, 43]]   # 仄 pairs alike
    same = text[:36] + "天" + text[37:43] + "仙"   # 天 仙 at the second pair's ends: 先, as 圆 穿 are
    assert len(same) == len(text) and (same[36], same[43]) == ("天", "仙")
    assert build.split_contradicted(groups, same) == groups


def test_a_rhyme_within_one_pingshui_group_the_cilin_splits_is_accepted_by_the_checker():
    """晏殊's 浣溪沙 rhymes 杯 回 徊 (第三部) with 台 来 (第五部): all 十灰, which the 词林正韵 cuts in two. The
    checker failed it (the 谱's own model poems: 16 more pass); a rhyme across 平水韵 groups still fails."""
    variant, prosody, rhyme = resolve("浣溪沙"), table(), ci_rhyme()
    check = check_ci(YAN_SHU, variant, prosody, rhyme)
    assert check.rhyme_ok and check.rhyme_parts == ["第三部平·第五部平（十灰）"]
    ends = [s.pos for s in variant.rhymes]
    across = _replace_char(YAN_SHU, ends[1], "鞋")   # 佳: 第五部 (or 第十部), not 十灰
    assert not check_ci(across, variant, prosody, rhyme).rhyme_ok


SU_SHI = ("明月几时有，把酒问青天。不知天上宫阙，今夕是何年。我欲乘风归去，又恐琼楼玉宇，高处不胜寒。起舞弄清影，"
          "何似在人间。转朱阁，低绮户，照无眠。不应有恨，何事长向别时圆。人有悲欢离合，月有阴晴圆缺，此事古难全。"
          "但愿人长久，千里共婵娟。")


def test_neighbouring_bu_that_song_poets_rhymed_together_pass_the_checker_and_are_named():
    """苏轼's 水调歌头, the 谱's own model poem for its 3rd variant, rhymes 合 (第十九部) with 缺 (第十八部): 通押,
    which the checker failed (of the 谱's 2,293 model poems, 329 failed; 143 with 通押 accepted). A pair of 部
    that are no neighbours still fails, and the rules keep one 部."""
    variant, prosody, rhyme = resolve("水调歌头", 3), table(), ci_rhyme()
    check = check_ci(SU_SHI, variant, prosody, rhyme)
    assert check.rhyme_ok and check.rhyme_parts[2] == "第十八部入·第十九部入（通押）"
    slots = [s.pos for s in variant.rhymes if s.group == 2]
    far = _replace_char(SU_SHI, slots[1], "国")   # 国: 第十七部 (职) with 合's 第十九部: a neighbour too
    assert check_ci(far, variant, prosody, rhyme).rhyme_ok
    off = _replace_char(SU_SHI, slots[1], "绿")   # 绿: 第十五部 (沃), no neighbour of 第十九部
    assert not check_ci(off, variant, prosody, rhyme).rhyme_ok
    from poetgen.errors import BadInput
    from poetgen.ci_request import check_ci_prompt_rhymes

    with pytest.raises(BadInput, match=r"合、缺 rhyme in neighbouring 部 \(通押\), which the checker accepts"):
        check_ci_prompt_rhymes(SU_SHI[:SU_SHI.index("缺") + 1], "", variant)   # the rules keep one 部: says why
    result = CliRunner().invoke(cli, ["generate", "--tune", "水调歌头#3", "-n", "6", "--seed", "1", "--format", "json"])
    for poem in json.loads(result.stdout)["poems"]:   # generation: one 部 a group, never 通押
        assert poem["rhyme_ok"] and "通押" not in poem["rhyme_group"], poem["text"]


def test_a_prompt_refused_for_that_split_says_why():
    from poetgen.errors import BadInput
    from poetgen.ci_request import check_ci_prompt_rhymes

    with pytest.raises(BadInput, match="share 十灰 in the 平水韵, but the rules rhyme a ci within one 部"):
        check_ci_prompt_rhymes("一曲新词酒一杯，去年天气旧亭台。", "", resolve("浣溪沙"))


def test_a_tune_is_found_by_its_name_read_as_the_name_means_it():
    """The tables spelled 长相思 zhangxiangsi, 卜算子 bosuanzi, 小重山 xiaozhongshan, 还京乐 haijingyue and 徵招
    zhengzhao; typing the right reading found nothing."""
    table = tune_table()
    for typed, name in (("changxiangsi", "长相思"), ("cxs", "长相思"), ("busuanzi", "卜算子"), ("yingtianchang", "应天长"),
                        ("xiaochongshan", "小重山"), ("huanjingle", "还京乐"), ("zhishao", "徵招"), ("ganheye", "乾荷叶")):
        assert table.find(typed) is not None and table.find(typed).name == name, typed
    # the tables' readings still find them (pinyin_also), where no tune has that spelling, but are not shown
    assert table.find("zhangxiangsi").name == "长相思" and table.find("bosuanzi").name == "卜算子"
    assert "zhang" not in table.get("长相思").full_pinyin and "bosuanzi" not in table.get("卜算子").full_pinyin
    assert "changxiangsi" in table.get("长相思").full_pinyin and table.get("闲中好").name == "闲中好"   # not 閒中好
    assert resolve("busuanzi").tune == "卜算子"
    # initials another tune already has are left as the tables give them: ytc stays 玉堂春's
    assert table.find("ytc").name == "玉堂春" and table.find("ytz").name == "应天长"
    assert table.find("雁后归").name == "临江仙"   # an other name the tables spell 雁後归, found simplified too


def _pinyin_module():
    spec = importlib.util.spec_from_file_location("cipu_pinyin", REPO / "scripts" / "cipu_pinyin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_polyphones_in_tune_names_are_read_as_the_names_mean_them():
    """`poetgen tunes` showed 渔父乐 (渔歌子) as yufuyue: the tables read 乐 yuè in every name (永遇乐, 还京乐: lè,
    a joy), 都 dōu (宴清都: dū), 薄 báo, 莎 shā (踏莎行: suō), 佛 fú, 唝 gòng; a fix per key left the rest. The
    shipped table is now what cipu_pinyin.READINGS make of it (nothing left to read again), and a name's reading finds it."""
    import copy

    readings = _pinyin_module()
    table = tune_table()
    raw = json.loads(gzip.decompress(TABLE_PATH.read_bytes()))["tunes"]
    assert readings.read_names(copy.deepcopy(raw)) == {}   # every polyphone of READINGS already read so
    for typed, name in (("yufule", "渔歌子"), ("yongyule", "永遇乐"), ("huanjingle", "还京乐"), ("changshoule", "长寿乐"),
                        ("qingpingyue", "清平乐"), ("qitianyue", "齐天乐"), ("yanqingdu", "宴清都"), ("boxing", "薄倖"),
                        ("tasuoxing", "踏莎行"), ("raofoge", "绕佛阁"), ("luohongqu", "啰唝曲"), ("jiqunyao", "系裙腰"),
                        ("jueshao", "角招"), ("changxiangsi", "长相思")):
        assert table.find(typed) is not None and table.find(typed).name == name, typed
    for misread, name in (("yufuyue", "渔歌子"), ("yongyuyue", "永遇乐"), ("yanqingdou", "宴清都"), ("tashaxing", "踏莎行"),
                          ("luogongqu", "啰唝曲"), ("zhangxiangsi", "长相思")):   # as many type them: found, not shown
        assert table.find(misread).name == name and misread not in table.find(misread).full_pinyin, misread
        assert misread in table.keys_of(table.find(misread))
    result = CliRunner().invoke(cli, ["tunes", "渔父乐"])
    assert result.exit_code == 0 and "yufule" in result.output and "yufuyue" not in result.output
    assert "永遇乐" in CliRunner().invoke(cli, ["tunes", "yongyuyue"]).output


def test_tune_name_readings_change_a_key_and_its_initials_unless_another_tune_has_them():
    readings = _pinyin_module()
    tunes = [{"names": ["永遇乐", "消息"], "pinyin": ["xiaoxi", "yongyuyue", "yyy", "xx"]},
             {"names": ["一叶落"], "pinyin": ["yiyeluo", "yyl"]},
             {"names": ["长寿乐"], "pinyin": ["changshouyue", "csy"]},   # 长 already chang: 乐 is still read
             {"names": ["西江月"], "pinyin": ["xijiangyue", "xjy"]}]      # 月, not 乐: untouched
    changed = readings.read_names(tunes)
    assert tunes[0]["pinyin"] == ["xiaoxi", "yongyule", "yyy", "xx"]   # yyl is 一叶落's
    assert tunes[0]["pinyin_also"] == ["yongyuyue"] and tunes[2]["pinyin_also"] == ["changshouyue"]   # still typed
    assert "pinyin_also" not in tunes[1] and "pinyin_also" not in tunes[3]
    assert tunes[2]["pinyin"] == ["changshoule", "csl"] and tunes[3]["pinyin"] == ["xijiangyue", "xjy"]
    assert changed == {("永遇乐", "yongyuyue"): "yongyule", ("长寿乐", "changshouyue"): "changshoule",
                       ("长寿乐", "csy"): "csl"}


def test_a_tune_without_a_variant_writes_the_form_most_ci_take():
    """The 谱 puts a tune's oldest form first: 临江仙's 54 characters, which 1 of the corpus's 492 临江仙 takes
    (370 take the 8th's 60); 江城子's first is a 35-character 单调 (101 of 114 are the 5th's 70, 苏轼's)."""
    assert (resolve("临江仙").number, resolve("临江仙").length) == (8, 60)
    assert (resolve("江城子").number, resolve("江城子").length) == (5, 70)
    assert resolve("浣溪沙").number == 1 and resolve("临江仙", 1).length == 54   # asked for, the first still
    table = tune_table()
    usual = [tune for tune in table.tunes if tune.usual != 1]
    assert 15 <= len(usual) <= 40 and all(1 <= t.usual <= len(t.variants) for t in usual)
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--tune", "临江仙", "--seed", "2", "--format", "json"])
    poem = json.loads(result.stdout)["poems"][0]
    assert (poem["variant"], sum(ch not in "，。" for ch in poem["text"])) == (8, 60)
    listed = runner.invoke(cli, ["tunes", "临江仙"]).output.splitlines()[0]
    assert listed.count("[60]") == 1   # the variant written by default, bracketed
    rows = json.loads(runner.invoke(cli, ["tunes", "临江仙", "--format", "json"]).stdout)
    assert rows[0]["usual"] == 8


LI_YU_XIANGJIANHUAN = "无言独上西楼，月如钩。寂寞梧桐深院锁清秋。剪不断，理还乱，是离愁。别是一般滋味在心头。"
LI_YU_WUYETI = "昨夜风兼雨，帘帏飒飒秋声。烛残漏断频攲枕，起坐不能平。世事漫随流水，算来一梦浮生。醉乡路稳宜频到，此外不堪行。"
# the names Song poets gave two tunes (build_cipu.mark_also_called): name -> (the tune it finds, the other)
SHARED_NAMES = {"乌夜啼": ("乌夜啼", "相见欢"), "浪淘沙": ("浪淘沙", "浪淘沙令"), "诉衷情": ("诉衷情", "诉衷情令"),
                "木兰花令": ("木兰花令", "玉楼春"), "浣溪沙": ("浣溪沙", "山花子"), "杨柳枝": ("杨柳枝", "添声杨柳枝"),
                "酒泉子": ("酒泉子", "忆馀杭"), "过秦楼": ("过秦楼", "选冠子"), "鹤冲天": ("鹤冲天", "喜迁莺"),
                "庆春泽": ("庆春泽", "高阳台"), "长相思": ("长相思", "长相思慢"), "梅花引": ("梅花引", "江城梅花引")}


def test_a_name_that_is_also_another_tunes_is_read_as_the_tune_its_ci_fit():
    """乌夜啼 is the 谱's 47-to-50-character tune (李煜's 昨夜风兼雨), and Song poets also called 相见欢 so
    (李煜's 无言独上西楼): 23 of the corpus's 52 ci titled 乌夜啼 are 相见欢's 36 characters. Every one was
    checked against 乌夜啼 and failed its length; `check --tune 乌夜啼` refused 无言独上西楼."""
    from poetgen.ci_checks import check_against_tunes

    tunes = tune_table()
    found = {(shared.name, shared.of, tune.name) for tune in tunes.tunes for shared in tune.also_called}
    assert found == {(name, of, other) for name, (of, other) in SHARED_NAMES.items()}
    assert tunes.get("相见欢").also_called[0].ci == ((36, 23),) and tunes.get("相见欢").also_called[0].total == 52
    for name in ("乌夜啼", "烏夜啼", " 乌夜啼 "):
        assert [t.name for t in tunes.readings(name)] == ["乌夜啼", "相见欢"], name
        assert tunes.get(name).name == "乌夜啼" and resolve(name).tune == "乌夜啼"   # generation keeps the tune of the name
    assert [t.name for t in tunes.readings("相见欢")] == ["相见欢"] and [t.name for t in tunes.readings("圣无忧")] == ["乌夜啼"]
    assert [t.name for t in tunes.readings("yjm")] == ["谒金门", "一剪梅"] and tunes.readings("没有这个调") == []
    prosody, rhyme = table(), ci_rhyme()
    readings = tunes.readings("乌夜啼")
    assert check_against_tunes(LI_YU_XIANGJIANHUAN, readings, prosody, rhyme).tune == "相见欢"
    assert check_against_tunes(LI_YU_WUYETI, readings, prosody, rhyme).tune == "乌夜啼"
    assert tunes.find_written("乌夜啼", LI_YU_XIANGJIANHUAN).name == "相见欢"
    assert tunes.find_written("乌夜啼", LI_YU_WUYETI).name == "乌夜啼"


def test_generate_and_tunes_say_which_tune_a_shared_name_writes():
    """`--tune 乌夜啼` writes the 谱's 乌夜啼 and says which tune writes 李煜's 36 characters, as `--tune 浪淘沙`
    (刘禹锡's 28-character 单调; 163 of the corpus's 174 ci so titled are 浪淘沙令's 54) already did."""
    runner = CliRunner()
    for name, other in (("乌夜啼", "相见欢"), ("浪淘沙", "浪淘沙令")):
        noted = runner.invoke(cli, ["generate", "--tune", name, "--seed", "1"])
        assert noted.exit_code == 0 and f"--tune {name} writes {name} (" in noted.stderr, noted.output
        assert f"--tune {other} writes that form" in noted.stderr
    assert "--tune 乌夜啼 writes 乌夜啼 (48 characters); 23 of the corpus's 52 ci so titled have 相见欢's 36" in \
        runner.invoke(cli, ["generate", "--tune", "乌夜啼", "--seed", "1"]).stderr
    for typed in ("wuyeti", "langtaosha", "Lang Tao Sha"):   # the name in pinyin: the same readings and note
        assert "writes that form" in runner.invoke(cli, ["generate", "--tune", typed, "--seed", "1"]).stderr, typed
    from poetgen.tunes import tune_table

    assert [t.name for t in tune_table().readings("wuyeti")] == ["乌夜啼", "相见欢"]
    # a few ci of another form under a name are no reason to say so on every poem (12 of 804 浣溪沙)
    for chosen in (["--tune", "浪淘沙#1"], ["--tune", "浪淘沙", "--variant", "1"], ["--tune", "浪淘沙令"], ["--tune", "相见欢"],
                   ["--tune", "圣无忧"], ["--tune", "浣溪沙"], ["--tune", "长相思"]):
        assert "note:" not in runner.invoke(cli, ["generate", *chosen, "--seed", "1"]).stderr, chosen
    listed = runner.invoke(cli, ["tunes", "乌夜啼"])
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert set(rows) == {"乌夜啼", "相见欢"}   # 相见欢 is found by the name its poets also gave it
    assert "(乌夜啼 also names 相见欢: 23 of 52 ci so titled)" in rows["乌夜啼"]
    assert "(also called 乌夜啼: --tune 乌夜啼 writes 乌夜啼)" in rows["相见欢"]
    assert "--tune 相见欢 writes that form" in listed.stderr
    assert "(浪淘沙 also names 浪淘沙令: 163 of 174 ci so titled, most)" in runner.invoke(cli, ["tunes", "浪淘沙"]).stdout
    rows = {row["name"]: row for row in json.loads(runner.invoke(cli, ["tunes", "乌夜啼", "--format", "json"]).stdout)}
    assert rows["乌夜啼"]["also_names"] == [{"name": "乌夜啼", "tune": "相见欢", "ci": 23, "of": 52}]
    assert rows["相见欢"]["also_called"] == [{"name": "乌夜啼", "tune": "乌夜啼", "ci": 23, "of": 52}]
    assert rows["乌夜啼"]["written_as"] is None and rows["乌夜啼"]["ci_in_corpus"] == 33   # 23 of 相见欢's counted there
    assert rows["相见欢"]["ci_in_corpus"] == 46
    rows = json.loads(runner.invoke(cli, ["tunes", "浪淘沙", "--format", "json"]).stdout)
    assert rows[0]["written_as"] == "浪淘沙令" and rows[1]["written_as"] is None


def test_positions_the_poets_left_free_are_free_to_generation_and_the_checker(tmp_path):
    """The 谱 marks its model poem's tones where its few examples agree: 贺新郎's main form is 叶梦得's 拗 line
    吹尽残花无人问 (平仄平平平平仄), while most of its ci write 仄仄平平平仄仄 there. A 平 or 仄 position where at
    least FREE_SHARE of FREE_VOTES or more one-tone characters of the variant's ci take the other tone is
    free (中): only ci that fit the variant's other marks count, and rhyme and 叠 positions stay."""
    build = _build_module()
    source = _fake_source(tmp_path / "src")   # 甲调: 平平仄仄平中仄仄平平, rhymes at 4 and 9
    written = ["春风入画堂，明月照人来。"] * 12 + ["月风入画堂，明月照人来。"] * 12   # position 0: 仄 in a third
    written += ["春风入画月，明月照人来。"] * 12   # a 仄 at the rhyme 4 as often: a rhyme is never freed
    written += ["春月入画堂明，月照人来。"] * 24   # 仄 at 1, but clauses of another form: not counted
    written += ["月月春春月，春花花月月。"] * 20   # another form of ten characters: fits few marks, not counted
    corpus = tmp_path / "ci.jsonl.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as stream:
        for text in written:
            stream.write(json.dumps({"text": text, "tune": "甲调", "genre": "ci"}, ensure_ascii=False) + "\n")
    variant = build.build(source, corpus)["tunes"][0]["variants"][0]
    assert variant["free"] == [[0, 12, 36]]   # not 1 (平 in every counted ci), nor the rhymes 4 and 9
    loaded = variant_from("甲调", 1, variant)
    assert loaded.tones == "中平仄仄平中仄仄平平" and loaded.free == (0,)
    assert build.FREE_VOTES > 12 and not build.build(source, None)["tunes"][0]["variants"][0].get("free")

    from poetgen.ci_checks import check_ci
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.ci_rules import CiTone, char_positions

    main = tune_table().get("贺新郎").variants[0]
    assert {16, 21, 75, 80} <= set(main.free) and all(main.tones[p] == EITHER for p in main.free)
    assert not {s.pos for s in main.rhymes} & set(main.free)
    masks = CiTone(main, {PING: np.ones(3, bool), ZE: np.ones(3, bool)}).masks
    positions = char_positions(main)
    assert positions[16] not in masks and positions[17] in masks   # 仄 asked at 17 still
    for tune in tune_table().tunes:
        for v in tune.variants:
            assert not {s.pos for s in v.rhymes} & set(v.free), (tune.name, v.number)
            assert not {p for pair in v.repeats for p in pair} & set(v.free), (tune.name, v.number)
    # a ci is read against the variant it fits best by the 谱's own marks, so freeing a mark never draws
    # it to another variant: this 更漏子 is the second form (its rhyme fits), though the first frees 23
    gengluo = tune_table().get("更漏子")
    assert 23 in gengluo.variants[0].free and gengluo.variants[0].marked[23] != EITHER
    check = check_against_tune("杜陵春，秦树晚。伤别更堪临远。南去信，欲凭谁。归鸿多北归。小桃枝，红蓓发。"
                               "今夜昔时风月。休苦意，说相思。少情人不知。", gengluo, table(), ci_rhyme())
    assert (check.variant, check.rhyme_ok) == (2, True)
    # the variant chosen by its marks is reported by its freed tones: as many 平仄 positions as they fix
    chars = iter("月" if tone == ZE else "春" for tone in main.marked)   # every mark of the main form kept
    fitting = "".join("".join(next(chars) for _ in range(length)) + mark
                      for length, mark in zip(main.line_lengths, main.marks))
    chosen = check_against_tune(fitting, tune_table().get("贺新郎"), table(), ci_rhyme())
    assert chosen.variant == 1 and len(chosen.tone_positions) == sum(tone != EITHER for tone in main.tones)
    # the checker judges the marked positions only: four fewer than the 谱's own marks
    text = "".join("春" * length + mark for length, mark in zip(main.line_lengths, main.marks))
    check = check_ci(text, main, table(), ci_rhyme())
    assert check.chars_ok and len(check.tone_positions) == sum(tone != EITHER for tone in main.tones)
    assert sum(tone != EITHER for tone in variant_tones("贺新郎", 1)) == len(check.tone_positions) + len(main.free)


def variant_tones(tune: str, number: int) -> str:
    """The 谱's own marks of a variant, before the positions its poets left free."""
    raw = json.loads(gzip.decompress(TABLE_PATH.read_bytes()))
    entry = next(t for t in raw["tunes"] if t["names"][0] == tune)
    return entry["variants"][number - 1]["tones"]


def test_a_rhyme_most_poets_left_unrhymed_is_optional_to_the_checker(tmp_path):
    """辛弃疾's 青玉案 (and 57 of 73 of the first form) does not rhyme 玉壶光转, nor 51 那人却在: the checker
    accepts either there (Variant.optional), and still holds the other rhymes."""
    build = _build_module()
    root = tmp_path / "src"
    (root / "ci_list").mkdir(parents=True)
    index = [{"idx": 0, "names": ["丙调"], "names_trad": ["丙調"], "pinyins": ["bingdiao", "bd"], "type": ["单调", 15, ["平"]]}]
    variants = [{"ge_lyu_str": "平平仄仄中平仄仄平平仄仄仄平平", "rhyme_pos": [4, 9, 14], "yun_classify": {"0": [4, 9, 14]},
                 "origin": "春风入画堂，明月照空廊。远客在他乡。"}]
    (root / "ci_index.json").write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    (root / "ci_list" / "cipai_0.json").write_text(json.dumps(variants, ensure_ascii=False), encoding="utf-8")
    corpus = tmp_path / "ci.jsonl.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as stream:
        for text in ["春风入画堂，明月照空廊。远客在他乡。"] * 8 + ["春风入画去，明月照空廊。远客在他乡。"] * 16:
            stream.write(json.dumps({"text": text, "tune": "丙调", "genre": "ci"}, ensure_ascii=False) + "\n")
    entry = build.build(root, corpus)["tunes"][0]["variants"][0]
    assert entry["optional"] == [[4, 8, 24]]   # 9 and 14 rhyme in every ci
    variant = variant_from("丙调", 1, entry)
    assert variant.optional == (4,)
    unrhymed = check_ci("春风入画去，明月照空廊。远客在他乡。", variant, table(), ci_rhyme())
    assert unrhymed.rhyme_ok and unrhymed.rhyme_positions == [False, True, True] and unrhymed.rhyme_score == 1.0
    assert not check_ci("春风入画堂，明月照空去。远客在他乡。", variant, table(), ci_rhyme()).rhyme_ok

    xin = ("东风夜放花千树，更吹落、星如雨。宝马雕车香满路。凤箫声动，玉壶光转，一夜鱼龙舞。蛾儿雪柳黄金缕，笑语盈盈暗香去。"
           "众里寻他千百度。蓦然回首，那人却在，灯火阑珊处。")
    main = tune_table().get("青玉案").variants[0]
    assert set(main.optional) == {27, 61}
    check = check_against_tune(xin, tune_table().get("青玉案"), table(), ci_rhyme())
    assert (check.variant, check.rhyme_ok) == (1, True) and check.rhyme_positions.count(False) == 2
    # an optional rhyme left out costs the required ones nothing: 水 (第三部) rhymes with 第四部 by 通押 as
    # when 玉壶光转 and 那人却在 rhyme; it failed when the optional positions voted
    water = check_against_tune(xin.replace("星如雨", "星如水"), tune_table().get("青玉案"), table(), ci_rhyme())
    assert water.rhyme_ok and "通押" in water.rhyme_parts[0]


def test_a_lyric_line_the_source_leaves_free_takes_the_tones_its_poets_keep(tmp_path):
    """The couyun tables give 鹧鸪天's first line as 中中中中中中平 (a gap: no 谱 leaves a 律句 free). Where a
    five- or seven-character clause is all 中 but its end, the 律句 the variant's ci fit best fills its key
    columns that more than GAP_SHARE of FREE_VOTES or more one-tone characters keep; a clause marked
    in part, only where FILLED_SHARE keep them. Generation and the checker use the filled tones; the
    variant is still chosen by the 谱's own marks."""
    build = _build_module()
    root = tmp_path / "src"
    (root / "ci_list").mkdir(parents=True)
    index = [{"idx": 0, "names": ["丁调"], "names_trad": ["丁調"], "pinyins": ["dingdiao", "dd"], "type": ["单调", 14, ["平"]]}]
    variants = [{"ge_lyu_str": "中中中中中中平中平中仄仄平平", "rhyme_pos": [6, 13], "yun_classify": {"0": [6, 13]},
                 "origin": "彩袖殷勤捧玉钟，当年拚却醉颜红。"}]
    (root / "ci_index.json").write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    (root / "ci_list" / "cipai_0.json").write_text(json.dumps(variants, ensure_ascii=False), encoding="utf-8")
    corpus = tmp_path / "ci.jsonl.gz"
    kept = "月雪春花月雪春，春花月雪月花人。"     # 仄仄平平仄仄平: the 律句 中仄中平中仄平
    other = "春花月雪月花春，春花月雪月花人。"    # 平平仄仄仄平平 at one ci in six: more than GAP_SHARE keep the 律句
    with gzip.open(corpus, "wt", encoding="utf-8") as stream:
        for text in [kept] * 20 + [other] * 4:
            stream.write(json.dumps({"text": text, "tune": "丁调", "genre": "ci"}, ensure_ascii=False) + "\n")
    entry = build.build(root, corpus)["tunes"][0]["variants"][0]
    assert entry["filled"] == [[1, ZE, 20, 24], [3, PING, 20, 24], [5, ZE, 20, 24]]   # not the rhyme at 6
    variant = variant_from("丁调", 1, entry)
    assert variant.tones[:7] == "中仄中平中仄平" and variant.filled == (1, 3, 5)
    assert variant.as_marked.tones[:7] == "中中中中中中平" and variant.as_marked.filled == ()
    assert not build.build(root, None)["tunes"][0]["variants"][0].get("filled")   # no corpus: as the source
    with gzip.open(corpus, "wt", encoding="utf-8") as stream:   # 18 of 24 keep it: not GAP_SHARE, nothing filled
        for text in [kept] * 18 + [other] * 6:
            stream.write(json.dumps({"text": text, "tune": "丁调", "genre": "ci"}, ensure_ascii=False) + "\n")
    assert not build.build(root, corpus)["tunes"][0]["variants"][0].get("filled")

    from poetgen.ci_rules import CiTone, char_positions

    zhegu = tune_table().get("鹧鸪天").variants[0]
    assert zhegu.marked[:7] == "中中中中中中平" and zhegu.tones[:7] == "中仄中平中仄平"
    masks = CiTone(zhegu, {PING: np.ones(3, bool), ZE: np.ones(3, bool)}).masks
    assert char_positions(zhegu)[1] in masks and char_positions(zhegu)[0] not in masks   # generation keeps them
    yujia = tune_table().get("渔家傲").variants[0]   # marked in part (中中中中平中仄), 233 of 233 keep 仄 at 1
    assert yujia.marked[:7] == "中中中中平中仄" and yujia.tones[:7] == "中仄中平平仄仄" and yujia.filled[:3] == (1, 3, 5)
    # the checker now judges the first line: 彩云 and 金 break it (云 平 where 仄 is kept, 金 平)
    wrong = check_against_tune("彩云殷勤捧金钟，当年拚却醉颜红。舞低杨柳楼心月，歌尽桃花扇影风。从别后，忆相逢。"
                               "几回魂梦与君同。今宵剩把银釭照，犹恐相逢是梦中。", tune_table().get("鹧鸪天"), table(), ci_rhyme())
    assert wrong.variant == 1 and wrong.tone_positions.count(False) == 2


def test_xie_marks_agree_with_the_tones_the_pattern_asks():
    """A 叶 slot takes its group's 部 in the other tone. The couyun tables mark some slots against their tone
    (相见欢#2's 江北望 仄 in the 平 group, not 叶, beside 叶 江南望; 女冠子#7's 仄 叶 in a 仄 group), so only a
    character read both ways could rhyme there; and 西江月#3's last clause is a group of one 叶 slot."""
    build = _build_module()
    tones = "平仄平仄平仄"
    assert build.consistent_xie([[0, 1, 2, 4]], tones) == [[0, -1, 2, 4]]          # 仄 among 平: 叶
    assert build.consistent_xie([[0, -2, 4]], tones) == [[0, 2, 4]]                # 平 叶 in a 平 group: own
    assert build.consistent_xie([[0, -2]], tones) == [[0, -2]]                     # …of two own slots at least
    assert build.consistent_xie([[0, 1]], tones) == [[0, 1]]                       # one against one: as marked
    assert build.consistent_xie([[0, 2], [-1]], tones) == [[0, -1, 2]]             # 叶 alone joins the group before
    assert build.consistent_xie([[-1], [0, 2]], tones) == [[-1], [0, 2]]           # …where there is one
    table_ = tune_table()
    slots = {s.pos: s for s in table_.get("相见欢").variants[1].rhymes}
    assert slots[20].xie and slots[23].xie and [23, 20] in [list(r) for r in table_.get("相见欢").variants[1].repeats]
    assert not any(s.xie for s in table_.get("女冠子").variants[6].rhymes)
    assert table_.get("西江月").variants[2].group_count == 2
    for tune in table_.tunes:   # no slot asks a tone its group cannot give without a two-tone character
        for v in tune.variants:
            for s in v.rhymes:
                own = v.group_tone(s.group)
                if own != EITHER and v.tones[s.pos] != EITHER:
                    assert (v.tones[s.pos] != own) == s.xie, (tune.name, v.number, s.pos)


def test_a_split_groups_other_half_is_found_in_traditional_characters_too():
    """十灰's 咍 half (开 来 台) is 第五部 and 十三元's 魂 half (门 孙 温) 第六部: the lists are simplified, so
    開 臺 來 門 孫 溫 read 第三部 and 第七部, and 晏殊's 浣溪沙 typed in traditional characters broke its rhyme."""
    rhyme = ci_rhyme()
    for traditional, simplified in zip("開臺來門孫溫", "开台来门孙温"):
        assert rhyme.codes(traditional) <= rhyme.codes(simplified) and rhyme.codes(traditional)
    assert rhyme.codes("灰") == rhyme.codes("恢") == frozenset({3})
    assert rhyme.codes("概") == frozenset({-3, -5})   # a simplified one stays as it is (jp2t made it 槪: 第三部 only)
    assert rhyme.codes("蛻") == rhyme.codes("蜕")
    both = [check_against_tune(text, tune_table().get("浣溪沙"), table(), rhyme)
            for text in (YAN_SHU, "一曲新詞酒一杯，去年天氣舊亭臺。夕陽西下幾時回？無可奈何花落去，似曾相識燕歸來。小園香徑獨徘徊。")]
    assert [c.rhyme_parts for c in both][0] == [c.rhyme_parts for c in both][1] and all(c.rhyme_ok for c in both)


def test_a_variant_marked_in_full_borrows_the_main_forms_free_positions():
    """The couyun tables mark most 又一体 in every position (their example's tones): in the clauses it
    shares with the main form, a variant with no 中 of its own takes the main form's 中 (not at a rhyme of
    either, nor at its 叠, nor where mark_filled closed the main form's gap), for generation and the
    checker's verdict; a ci's variant is still chosen by the tables' own marks."""
    build = _build_module()
    main = {"tones": "中中中平仄中平仄仄平", "lengths": [5, 5], "rhymes": [[9]], "filled": [[1, ZE, 30, 30]]}
    full = {"tones": "平仄仄平仄仄平仄仄平仄仄平", "lengths": [3, 5, 5], "marks": "，，。", "rhymes": [[7], [12]]}
    other = {"tones": "仄仄平平平仄平仄仄平", "lengths": [5, 5], "rhymes": [[9]]}   # its first line is another
    own = {"tones": "中仄仄平仄平平仄仄平", "lengths": [5, 5], "rhymes": [[9]]}
    tunes = [{"variants": [main, full, other, own]}]
    build.borrow_free(tunes)
    assert full["borrowed"] == [3, 5, 8]   # main's 0 and 2 (1 was filled) in its first clause, 5 in the second; not 12
    assert other["borrowed"] == [5]        # 仄仄平平平 is not 中中中平仄: nothing from that line
    assert "borrowed" not in own and "borrowed" not in main
    variant = variant_from("x", 2, full)
    assert variant.tones == "平仄仄中仄中平仄中平仄仄平" and variant.as_marked.tones == full["tones"]

    su = ("皓月几时有？把酒问青天。不知天上宫阙，今夕是何年。我欲乘风归去，又恐琼楼玉宇，高处不胜寒。起舞弄清影，何似在人间。"
          "转朱阁，低绮户，照无眠。不应有恨，何事长向别时圆？人有悲欢离合，月有阴晴圆缺，此事古难全。但愿人长久，千里共婵娟。")
    shuidiao = tune_table().get("水调歌头")
    third = shuidiao.variants[2]
    assert third.marked[:5] == "平仄仄平仄" and third.tones[:5] == "中仄中平仄"   # 明月几时有, read as the main form's
    check = check_against_tune(su, shuidiao, table(), ci_rhyme())
    assert check.variant == 3 and all(check.tone_positions)   # 皓 (仄) where 明 (平) stands: free
