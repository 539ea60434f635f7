"""Ci by tune on the tiny model: layout, rhyme and 平仄 hold by construction for every poem."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from poetgen.ci_checks import check_ci, han_chars
from poetgen.ci_rhyme import ci_rhyme, codes_for_tone, flip
from poetgen.cli import cli
from poetgen.errors import BadInput
from poetgen.prosody import table
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions
from poetgen.tunes import resolve

# 浣溪沙: one 平 rhyme; 西江月: 叶 (the 仄 of the 平 rhyme's 部); 菩萨蛮: four rhymes, 仄 and 平 in turn;
# 定风波: a 平 rhyme broken by three 仄 ones
TUNES = ["浣溪沙", "西江月", "菩萨蛮", "定风波"]


@pytest.mark.parametrize("tune", TUNES)
def test_every_ci_fits_its_tune(generator, tune):
    result = generator.generate(PoemRequest(tune=tune, tone=True, n=30, sample=SampleOptions(seed=3)))
    variant, prosody, rhyme = resolve(tune), table(), ci_rhyme()
    assert result["tune"] == variant.tune and result["variant"] == 1 and result["form"] == "ci"
    for poem in result["poems"]:
        check = check_ci(poem["text"], variant, prosody, rhyme)
        assert check.layout_ok and check.rhyme_ok and check.tone_score == 1.0, poem["text"]
        assert poem["checks"]["rhyme_ok"] and poem["tune"] == tune and poem["variant"] == 1
        assert [len(line) - 1 for line in poem["lines"]] == list(variant.line_lengths)
        rhymes = [han_chars(poem["text"])[s.pos] for s in variant.rhymes]
        assert len(set(rhymes)) == len(rhymes)   # no character rhymes twice


def test_layout_holds_across_the_table(generator):
    """One ci for every 100th variant of the table (the Layout of every variant is tested in test_tunes)."""
    from poetgen.tunes import tune_table

    variants = [v for tune in tune_table().tunes for v in tune.variants][::100]
    prosody, rhyme = table(), ci_rhyme()
    for variant in variants:
        result = generator.generate(PoemRequest(tune=variant.tune, variant=variant.number, tone=True,
                                                sample=SampleOptions(seed=variant.number)))
        check = check_ci(result["poems"][0]["text"], variant, prosody, rhyme)
        assert check.layout_ok and check.tone_score == 1.0, (variant.tune, variant.number)


def test_xie_slots_take_the_other_tone_of_the_same_bu(generator):
    variant, rhyme = resolve("西江月"), ci_rhyme()
    result = generator.generate(PoemRequest(tune="西江月", n=20, sample=SampleOptions(seed=5)))
    for poem in result["poems"]:
        chars = han_chars(poem["text"])
        level = set.intersection(*(set(rhyme.codes(chars[s.pos])) for s in variant.rhymes if not s.xie))
        for slot in (s for s in variant.rhymes if s.xie):
            assert level & {flip(c) for c in rhyme.codes(chars[slot.pos])}, poem["text"]


def test_variant_prompt_acrostic_and_seed(generator):
    variant = resolve("浣溪沙", 3)
    request = PoemRequest(tune="浣溪沙", variant=3, prompt="春风", acrostic="春花秋月", n=8,
                          sample=SampleOptions(seed=11))
    first, again = generator.generate(request), generator.generate(request)
    assert [p["text"] for p in first["poems"]] == [p["text"] for p in again["poems"]]
    for poem in first["poems"]:
        check = check_ci(poem["text"], variant, table(), ci_rhyme(), acrostic="春花秋月")
        assert poem["text"].startswith("春风") and check.layout_ok and check.acrostic_ok and check.rhyme_ok


def test_best_of_keeps_the_best_candidate(generator):
    request = PoemRequest(tune="菩萨蛮", n=2, best_of=4, sample=SampleOptions(seed=2))
    best = generator.generate(request)["poems"]
    every = generator.generate(PoemRequest(tune="菩萨蛮", n=8, best_of=1, sample=SampleOptions(seed=2)))["poems"]
    assert [p["score"] for p in best] == [max(p["score"] for p in every[i * 4:(i + 1) * 4]) for i in range(2)]


@pytest.mark.parametrize("request_args, field", [
    ({"tune": "浣溪莎"}, "tune"), ({"tune": "浣溪沙", "variant": 99}, "variant"),
    ({"tune": "浣溪沙", "form": "wujue"}, "form"), ({"variant": 2}, "variant"),
    ({"tune": "十六字令", "acrostic": "春夏秋冬五"}, "acrostic")])
def test_bad_ci_requests_name_their_field(generator, request_args, field):
    with pytest.raises(BadInput) as error:
        generator.generate(PoemRequest(**request_args))
    assert error.value.field == field and "\n" not in str(error.value)


def test_cli_warns_for_a_model_without_ci_and_prints_json(tiny_bundle):
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--model", str(tiny_bundle), "--tune", "huanxisha", "--tone",
                                 "--seed", "1", "-n", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "not trained on ci" in result.stderr
    answer = json.loads(result.stdout)
    assert answer["tune"] == "浣溪沙" and all(p["checks"]["layout_ok"] for p in answer["poems"])
    result = runner.invoke(cli, ["generate", "--model", str(tiny_bundle), "--tune", "浣溪莎"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "浣溪沙" in result.stderr


def test_knows_ci_reads_the_control_token(generator, monkeypatch):
    assert not generator.knows_ci()
    monkeypatch.setattr(generator.tokenizer, "controls", ["<tang>", "<ci>"], raising=False)
    assert generator.knows_ci()


def test_evaluate_tune_reports_rules_and_the_model_alone(tiny_bundle):
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--tune", "浣溪沙", "--tune", "pusaman",
                                 "--samples", "6", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["tunes"]) == {"浣溪沙", "菩萨蛮"} and report["knows_ci"] is False
    for values in report["tunes"].values():
        ruled, alone = values["with_rules"], values["model_alone"]
        assert ruled["layout"] == ruled["rhyme_poems"] == ruled["tone_positions"] == 1.0
        assert alone["layout"] == 1.0 and 0 <= alone["rhyme_positions"] <= 1
    result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--tune", "浣溪莎"])
    assert result.exit_code == 2 and "浣溪沙" in result.stderr


def test_evaluate_tune_keeps_each_variant_and_refuses_what_it_would_ignore(tiny_bundle):
    """Two variants of one tune were keyed by the tune alone (the first scored, then overwritten), and
    --corpus, --dynasty and --genre (even a missing corpus) were ignored silently (--held-out
    too, after them); a bad seed was refused after the whole evaluation."""
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--tune", "浣溪沙", "--tune", "浣溪沙#3",
                                 "--tune", "huanxisha", "--samples", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["tunes"]) == ["浣溪沙", "浣溪沙#3"] and report["tunes"]["浣溪沙#3"]["variant"] == 3
    # a bare name is the tune's usual variant (临江仙's 8th): its row is keyed by the name, the first by #1
    result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--tune", "临江仙", "--tune", "临江仙#1",
                                 "--samples", "1", "--format", "json"])
    rows = json.loads(result.stdout)["tunes"]
    assert (rows["临江仙"]["variant"], rows["临江仙#1"]["variant"]) == (8, 1), rows
    for extra in (["--corpus", "/nonexistent"], ["--dynasty", "song"], ["--genre", "shi"], ["--held-out"]):
        result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--tune", "浣溪沙", *extra])
        assert result.exit_code == 2 and extra[0] in result.stderr, result.output
    result = runner.invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output


def test_quiet_shows_no_progress(tiny_bundle, tmp_path):
    """--quiet keeps only warnings and errors: evaluate's bar, import's bar and tunes' count were shown."""
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(tiny_bundle), "--tune", "浣溪沙",
                                      "--samples", "2", "--format", "json"])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    result = CliRunner().invoke(cli, ["-q", "tunes", "浣溪"])
    assert result.exit_code == 0 and result.stderr == "" and "浣溪沙" in result.stdout
    result = CliRunner().invoke(cli, ["tunes", "浣溪"])
    assert "tune" in result.stderr   # the count is shown without -q


def test_a_conditioned_model_reads_the_ci_prefix_with_the_tunes_token():
    from types import SimpleNamespace

    from poetgen.control import Prefixer
    from poetgen.generate import Generator
    from poetgen.tokenizer import Tokenizer

    tokenizer = Tokenizer("春风", controls=["<tang>", "<ci>", "<anytune>", "<tune:酹江月>"])
    generator = Generator.__new__(Generator)   # the prefix needs the tokenizer only, no model
    generator.tokenizer, generator.prefixer = tokenizer, Prefixer(tokenizer)
    assert generator.knows_ci()
    ci = SimpleNamespace(variant=resolve("大江东去"), form="ci", request=PoemRequest(tune="大江东去"))
    # 念奴娇's token is spelled by its other name 酹江月 in this model's corpus
    assert generator.prefix(ci) == [tokenizer.control_id("<ci>"), tokenizer.control_id("<tune:酹江月>")]
    other = SimpleNamespace(variant=resolve("浣溪沙"), form="ci", request=PoemRequest(tune="浣溪沙"))
    assert generator.prefix(other) == [tokenizer.control_id("<ci>"), tokenizer.control_id("<anytune>")]


def test_the_model_alone_row_is_one_candidate_without_rules_whatever_the_defaults(generator, monkeypatch):
    """generate's defaults rank best-of candidates by rhyme and 平仄; the 'alone' row must not."""
    from poetgen import evaluate_ci

    requests = []
    monkeypatch.setattr(evaluate_ci, "_compliance", lambda g, variant, request: requests.append(request) or {})
    evaluate_ci.tune_report(generator, ["浣溪沙"], samples=2, seed=0)
    ruled, alone = requests
    assert ruled.tone and ruled.best_of == PoemRequest().best_of
    assert (alone.rhyme, alone.tone, alone.no_repeat, alone.best_of) == (False, False, False, 1)


def test_a_ci_acrostic_shorter_than_the_prompt_or_polished_is_no_crash(generator):
    """A ci acrostic may give fewer heads than the tune has clauses; a prompt (or polishing, which
    re-prepares each version with the lines before it as the prompt) covering more clause heads than
    the acrostic gives used to index past its end (IndexError, HTTP 500)."""
    prompted = generator.generate(PoemRequest(tune="浣溪沙", acrostic="春", prompt="春风吹雨过江城，花",
                                              sample=SampleOptions(seed=1)))["poems"][0]
    assert prompted["text"].startswith("春风吹雨过江城，花") and prompted["acrostic_ok"]
    request = PoemRequest(tune="浣溪沙", acrostic="春花秋月", polish=1, sample=SampleOptions(seed=7))
    polished = generator.generate(request)["poems"][0]   # generate polishes
    assert [clause[0] for clause in polished["lines"][:4]] == list("春花秋月")
    with pytest.raises(BadInput, match="acrostic asks for"):
        generator.generate(PoemRequest(tune="浣溪沙", acrostic="夏", prompt="春风吹雨过江城，"))


def test_a_tune_name_may_carry_its_variant_as_errors_and_the_savedmodel_spell_it(generator):
    """Errors name a variant 浣溪沙#1 and the SavedModel takes 浣溪沙#3: --tune takes that spelling too."""
    spelled = generator.generate(PoemRequest(tune="浣溪沙#3", sample=SampleOptions(seed=1)))
    numbered = generator.generate(PoemRequest(tune="浣溪沙", variant=3, sample=SampleOptions(seed=1)))
    assert spelled["variant"] == 3 and spelled["poems"] == numbered["poems"]
    # a variant at odds with the one asked is the variant field's; a malformed #k the tune field's, where it was typed
    for tune, variant, message, field in (("浣溪沙#3", 2, "names variant 3", "variant"),
                                          ("浣溪沙#x", None, "is a number", "tune")):
        with pytest.raises(BadInput, match=message) as refused:
            generator.generate(PoemRequest(tune=tune, variant=variant))
        assert refused.value.field == field


def strictly_fits(text: str, variant, prosody) -> list[str]:
    """The characters of a ci at 平 or 仄 positions that the tone table does not show in that tone
    (a character it lacks included: check_ci does not judge those, a rule must not write them)."""
    from poetgen.tunes import EITHER

    return [ch for ch, required in zip(han_chars(text), variant.tones)
            if required != EITHER and required not in prosody.tones(ch)]


@pytest.mark.parametrize("tune, seed", [("临江仙", 5), ("长相思", 5), ("莺啼序", 3)])
def test_no_character_the_tone_table_lacks_is_written_where_a_tone_is_required(tune, seed):
    """The shipped model wrote 啼, 遍, 懒, 葱 (absent from the tone table) at 平/仄 positions, some in the
    wrong tone, and the ci still scored 平仄 1.0. Shi's strict columns likewise."""
    from poetgen.generate import Generator
    from poetgen.metre import strict_positions, tone_patterns

    shipped, prosody = Generator.load(), table()
    variant = resolve(tune)
    for poem in shipped.generate(PoemRequest(tune=tune, n=12, sample=SampleOptions(seed=seed)))["poems"]:
        assert not strictly_fits(poem["text"], variant, prosody), poem["text"]
    for form in ("wujue", "qilv"):
        for poem in shipped.generate(PoemRequest(form=form, n=12, sample=SampleOptions(seed=seed)))["poems"]:
            lines = [line[:-1] for line in poem["lines"]]
            strict = strict_positions(len(lines[0]))
            pattern = tone_patterns(len(lines[0]), len(lines))[poem["tone_pattern"]]
            off = [line[c] for i, line in enumerate(lines) for c in strict if pattern[i][c] not in prosody.tones(line[c])]
            assert not off, (poem["text"], off)


def test_a_prompt_rhyme_the_table_lacks_is_kept_and_the_ci_still_rhymes():
    """The prompt check leaves out a character the rhyme table does not know (做; 盏 was one until its
    平水韵 group was added), so check_ci must not count it as a miss either: the ci it allowed failed its
    own rhyme check. A known 仄 character at 浣溪沙's 平 rhyme is refused."""
    from poetgen.generate import Generator

    shipped = Generator.load()
    assert not ci_rhyme().codes("做") and ci_rhyme().codes("酒") and ci_rhyme().codes("盏")
    for seed in (1, 2, 3):
        poem = shipped.generate(PoemRequest(prompt="一曲新词酒一做", tune="浣溪沙", sample=SampleOptions(seed=seed)))["poems"][0]
        assert poem["text"].startswith("一曲新词酒一做") and poem["checks"]["rhyme_ok"], poem
    with pytest.raises(BadInput, match="puts '酒' at character 7"):
        shipped.generate(PoemRequest(prompt="一曲新词饮美酒", tune="浣溪沙"))


@pytest.mark.parametrize("tune, seed, n", [("醉公子#3", 2, 1), ("穆护砂", 2, 1), ("哨遍#7", 4, 10), ("哨遍#7", 5, 10)])
def test_a_group_with_xie_slots_never_keeps_a_rusheng_bu(tune, seed, n):
    """A 仄 group with 平 叶 slots could pick an 入声 部, which has no 平 reading: its 叶 slots ran out
    and the rules gave way silently (rhyme_ok false, a 去声 character on a 平 position)."""
    from poetgen.ci_rhyme import codes_for_group, flip
    from poetgen.generate import Generator

    from poetgen.ci_rhyme import CODES
    from poetgen.ci_rules import CiRhyme

    variant = resolve(tune)
    xie_groups = {s.group for s in variant.rhymes if s.xie}
    assert xie_groups and all(flip(c) != c for g in xie_groups for c in codes_for_group(variant, g))
    shipped = Generator.load()
    rule = CiRhyme(variant, shipped.tables.ci_membership, shipped.tables.ci_masks, 2)
    rusheng = [i for i, code in enumerate(CODES) if flip(code) == code]
    assert not rule.allowed[:, sorted(xie_groups)][..., rusheng].any()   # the rule starts such groups without 入
    from poetgen.graph_tables import RHYME_KINDS, rhyme_columns   # and the SavedModel's graph alike
    kinds = rhyme_columns(0)[0]
    assert kinds[RHYME_KINDS.index("仄"), rusheng].all() and not kinds[RHYME_KINDS.index("仄叶"), rusheng].any()
    result = shipped.generate(PoemRequest(tune=tune, n=n, best_of=1, sample=SampleOptions(seed=seed)))
    for poem in result["poems"]:
        assert poem["checks"]["rhyme_ok"] and poem["checks"]["tone_score"] == 1.0, poem["text"]


def test_a_prompt_character_the_tone_table_lacks_fits_any_pattern_when_one_is_chosen():
    """Once unknown characters fitted no tone, 啼 in a prompt made every pattern "not fit" and the
    pattern was drawn at random, against the prompt's known characters (落 at a strict 平 column). 啼 is
    in the table now (prosody_extra.json); 忻 is not."""
    from poetgen.generate import Generator
    from poetgen.metre import tone_patterns
    from poetgen.rules import fitting_patterns, forced_ids

    shipped = Generator.load()
    assert not table().tones("忻") and not shipped.tables.tone_known[shipped.tokenizer.index["忻"]]
    for prompt in ("月落乌忻霜满天", "月落乌鸣霜满天"):
        prepared = shipped.prepare(PoemRequest(form="qijue", prompt=prompt))
        layout = prepared.shape.layout
        assert fitting_patterns(tone_patterns(7, 4), layout, forced_ids(prepared, layout), shipped.tables,
                                True) == ["仄起入韵"], prompt
    for poem in shipped.generate(PoemRequest(form="qijue", prompt="月落乌忻霜满天", n=3,
                                             sample=SampleOptions(seed=1)))["poems"]:
        assert poem["tone_pattern"] == "仄起入韵" and poem["tone_score"] == 1.0, poem


@pytest.mark.parametrize("tune, variant", [("如梦令", 1), ("忆秦娥", 1), ("撷芳词", 5), ("东坡引", 3), ("长相思", 1)])
def test_a_repeated_phrase_repeats_what_it_follows(generator, tune, variant):
    """叠: 如梦令's 如梦。如梦, 忆秦娥's 秦楼月 after 秦娥梦断秦楼月, 钗头凤's 难。难。难 were written as
    two different phrases (the rule that no character rhymes twice even forbade the repeat)."""
    chosen = resolve(tune, variant)
    assert chosen.repeats
    result = generator.generate(PoemRequest(tune=tune, variant=variant, tone=True, n=8, best_of=2,
                                            sample=SampleOptions(seed=5)))
    for poem in result["poems"]:
        chars = han_chars(poem["text"])
        assert all(chars[p] == chars[s] for p, s in chosen.repeats), poem["text"]
        check = check_ci(poem["text"], chosen, table(), ci_rhyme())
        assert check.repeat_ok and check.rhyme_ok and check.tone_score == 1.0 and check.layout_ok, poem["text"]
        assert poem["checks"]["repeat_ok"] is True


def test_the_check_reads_repeats_in_real_ci_and_a_prompt_is_kept_as_given(generator):
    """李清照's 如梦令 repeats 争渡 and passes; a prompt that does not repeat is the user's text: kept, and
    the check says so (repeat_ok false), as a prompt's rhyme is kept when it cannot be judged."""
    from poetgen.ci_checks import check_against_tune
    from poetgen.tunes import tune_table

    real = "常记溪亭日暮，沉醉不知归路。兴尽晚回舟，误入藕花深处。争渡，争渡，惊起一滩鸥鹭。"
    check = check_against_tune(real, tune_table().get("如梦令"), table(), ci_rhyme())
    assert check.repeat_ok is True and check.layout_ok
    assert check_ci(real.replace("争渡，争渡", "争渡，抢渡"), resolve("如梦令"), table(), ci_rhyme()).repeat_ok is False
    assert check_ci("小山重叠金明灭，鬓云欲度香腮雪。懒起画蛾眉，弄妆梳洗迟。照花前后镜，花面交相映。新帖绣罗襦，双双金鹧鸪。",
                    resolve("菩萨蛮"), table(), ci_rhyme()).repeat_ok is None   # a tune without 叠
    # the tiny model's own 如梦令 up to its repeated phrase, which the prompt then writes reversed
    first = generator.generate(PoemRequest(tune="如梦令", sample=SampleOptions(seed=1)))["poems"][0]["text"]
    repeat = first.index("。", first.index("。", first.index("。", first.index("。") + 1) + 1) + 1) + 1   # 5th clause
    source = first[repeat - 3:repeat - 1]
    prompt = first[:repeat] + source[::-1]
    assert source[::-1] != source
    poem = generator.generate(PoemRequest(tune="如梦令", prompt=prompt, rhyme=False,   # its last character rhymes
                                          sample=SampleOptions(seed=1)))["poems"][0]
    assert poem["text"].startswith(prompt) and poem["checks"]["repeat_ok"] is False


def test_polishing_keeps_the_repeats(generator):
    result = generator.generate(PoemRequest(tune="忆秦娥", polish=2, n=2, sample=SampleOptions(seed=2)))
    variant = resolve("忆秦娥")
    for poem in result["poems"]:
        chars = han_chars(poem["text"])
        assert all(chars[p] == chars[s] for p, s in variant.repeats), poem["text"]


@pytest.mark.parametrize("style", ["song", "tang"])
def test_a_shi_style_with_a_tune_is_refused_not_ignored(style):
    """`--style song --tune 浣溪沙` wrote the same ci as `--style ci`, silently; so did `--style tang`,
    which was the default and so could not be told from no choice."""
    result = CliRunner().invoke(cli, ["generate", "--style", style, "--tune", "浣溪沙", "--seed", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"style {style} is for shi" in result.output.strip().splitlines()[-1]


def test_no_style_is_tang_for_shi_and_ci_for_a_tune(generator):
    """The style left out writes what --style tang writes, and a tune's ci as --style ci does."""
    same = dict(n=2, best_of=1, sample=SampleOptions(seed=3))
    assert generator.generate(PoemRequest(**same))["poems"] == \
        generator.generate(PoemRequest(style="tang", **same))["poems"]
    assert generator.generate(PoemRequest(tune="浣溪沙", **same))["poems"] == \
        generator.generate(PoemRequest(tune="浣溪沙", style="ci", **same))["poems"]


@pytest.mark.parametrize("request_args, shown", [
    ({"tune": "十六字令", "acrostic": "春夏秋冬五"}, "十六字令 (归字谣#1 in the 词谱) has 4 clauses"),
    ({"tune": "十六字令", "variant": 3}, "十六字令 (归字谣 in the 词谱) has one variant: leave the variant out"),
    ({"tune": "十六字令", "prompt": "春" * 20}, "a 十六字令 (归字谣#1 in the 词谱) poem"),
    ({"tune": "归字谣", "variant": 3}, "归字谣 has one variant"), ({"tune": "浣溪沙", "variant": 9}, "浣溪沙 has 5 variants;"),
    ({"tune": "十六字令", "acrostic": "月夏秋"}, "a rhyme of 十六字令 (归字谣#1 in the 词谱)")])
def test_errors_name_the_tune_as_the_user_named_it(generator, request_args, shown):
    """`--tune 十六字令 --variant 3` answered "归字谣 has 1 variant(s)": the user never wrote 归字谣."""
    with pytest.raises(BadInput) as error:
        generator.generate(PoemRequest(**request_args))
    assert shown in str(error.value)


@pytest.mark.parametrize("tune", ["满\n江红", "满" + "-" * 300 + "江红", "y" + "-" * 5000 + "jm"])
def test_a_tune_named_across_lines_or_at_length_is_one_short_line_in_errors(generator, tune):
    with pytest.raises(BadInput) as error:
        generator.generate(PoemRequest(tune=tune, variant=99))
    assert "\n" not in str(error.value) and len(str(error.value)) < 160


def test_the_note_on_a_split_rhyme_group_is_given_only_for_one(generator):
    """卜算子 rhymes in 仄, and 安 is 平: the note said 看 and 安 share 十四寒, as if the 词林正韵 were at fault."""
    with pytest.raises(BadInput) as error:
        generator.generate(PoemRequest(tune="卜算子", prompt="春风吹柳岸，明月照江看。白日依山尽山远，清溪绕长安。"))
    assert "cannot rhyme" in str(error.value) and "平水韵" not in str(error.value)


def test_preparing_a_ci_builds_no_rhyme_table(monkeypatch):
    """A ci's prompt check built the 词林正韵 codes of every character anew for each request (~20 ms,
    doubling a 浣溪沙's latency): the tables are built once and shared."""
    from poetgen import ci_rhyme
    from poetgen.generate import Generator

    generator = Generator.load()
    generator.prepare(PoemRequest(tune="浣溪沙", prompt="一曲新词酒一杯"))   # warm
    built = []
    original = ci_rhyme.CiRhyme.__init__
    monkeypatch.setattr(ci_rhyme.CiRhyme, "__init__", lambda self, p: (built.append(p), original(self, p))[1])
    for _ in range(3):
        generator.prepare(PoemRequest(tune="浣溪沙", prompt="一曲新词酒一杯"))
    assert built == [] and generator.tables.ci_rhyme is ci_rhyme.usual_ci_rhyme()


def test_a_tune_that_rhymes_in_rusheng_is_written_in_rusheng_unless_the_prompt_rhymes_otherwise(generator):
    """满江红, 雨霖铃 and 忆秦娥's main form rhyme in 入声 (the 谱's model poem and most of the corpus), but
    their groups were only 仄, so half the ci rhymed in 上去. A prompt's 上去 rhyme is kept: the group
    then rhymes in 仄, where it was refused as unrhymable."""
    from poetgen.ci_rhyme import ENTERING_CODES, codes_for_group

    variant = resolve("满江红")
    assert variant.entering == (0,) and resolve("念奴娇").entering == ()
    assert codes_for_group(variant, 0) == ENTERING_CODES
    assert codes_for_group(variant, 0, [frozenset({-4})]) == codes_for_tone("仄")   # 住: 上去 only
    for tune in ("满江红", "雨霖铃", "忆秦娥"):
        result = generator.generate(PoemRequest(tune=tune, n=6, best_of=1, sample=SampleOptions(seed=40)))
        for poem in result["poems"]:
            assert poem["checks"]["rhyme_ok"] and all(p.endswith("入") for p in poem["checks"]["rhyme_parts"]), \
                poem["text"]
    kept = generator.generate(PoemRequest(tune="满江红", prompt="怒发冲冠，凭栏处，萧然雨住", n=3,
                                          sample=SampleOptions(seed=4)))
    for poem in kept["poems"]:
        assert poem["checks"]["rhyme_ok"] and poem["checks"]["rhyme_parts"] == ["第四部仄"], poem["text"]


def test_tiaoxiaoling_turns_round_the_clause_before_it(generator):
    """调笑令's 转应 (王建: 百叶桃花树红。红树。红树。) was written freely: the 谱's tables mark the clause a new
    rhyme, not a 叠. Its two characters are now the previous clause's last two, turned round, and the new
    rhyme group keeps to the turned character."""
    variant = resolve("转应曲")
    assert [[22, 21], [23, 20]] == [list(pair) for pair in variant.repeats if pair[0] in (22, 23)]
    for tone in (True, False):   # without --tone too: the turned character is written as the new rhyme
        result = generator.generate(PoemRequest(tune="调笑令", n=8, tone=tone, sample=SampleOptions(seed=3)))
        for poem in result["poems"]:
            chars = han_chars(poem["text"])
            assert (chars[22], chars[23]) == (chars[21], chars[20]) == (chars[24], chars[25]), poem["text"]
            assert poem["checks"]["repeat_ok"] and poem["checks"]["rhyme_ok"], poem["text"]
    # a prompt that fixes the turned character in another tone cannot rhyme there: refused, as any rhyme is
    with pytest.raises(BadInput, match="puts '丝' at character 21"):   # 丝弦 turned: 弦丝, 丝 a 仄 rhyme
        generator.generate(PoemRequest(tune="调笑令", prompt="团扇，团扇，美人病来遮面。玉颜憔悴三年，谁复商量丝弦。"))


@pytest.mark.parametrize("tune, variant, acrostic, said", [
    # clause 6 repeats clause 5's head (争渡。争渡): 月 where 花 must stand
    ("如梦令", None, "春夏秋冬花月", "clause 6 of 如梦令#1, a 叠 that repeats character 24 (clause 5), '花': give '花'"),
    # 秦楼月 after 秦娥梦断秦楼月: clause 3's head repeats character 8, mid clause 2, which nothing fixes
    ("忆秦娥", None, "春夏秋", "clause 3 of 忆秦娥#1, a 叠 that repeats character 8 (clause 2), which nothing fixes"),
    # 错。错。错。: clause 9 repeats clause 8, which the acrostic fixes
    ("钗头凤", 5, "春花秋月夜风江江山", "clause 9 of 钗头凤 (撷芳词#5 in the 词谱), a 叠 that repeats character 28"),
    ("调笑令", None, "春花", "clause 2 of 调笑令 (古调笑#1 in the 词谱), a 叠 that repeats character 1 (clause 1), '春'")])
def test_an_acrostic_head_a_repeat_copies_is_refused_unless_it_is_the_copied_character(generator, tune, variant,
                                                                                       acrostic, said):
    """An acrostic head at a 叠 was kept and the 叠 broken (如梦令: 花树。月树。, repeat_ok false, exit 0)."""
    with pytest.raises(BadInput) as error:
        generator.prepare(PoemRequest(tune=tune, variant=variant, acrostic=acrostic))
    assert error.value.field == "acrostic" and said in str(error.value) and "\n" not in str(error.value)


def test_an_acrostic_head_that_is_what_the_repeat_copies_stands(generator):
    """The copied character as the head (春夏秋冬花花: 花X。花X。), one a prompt writes at a source nothing else
    fixes, or a head the prompt itself writes (the prompt's text, kept) are accepted."""
    for request in (PoemRequest(tune="如梦令", acrostic="春夏秋冬花花", n=4, sample=SampleOptions(seed=2)),
                    PoemRequest(tune="忆秦娥", prompt="春声咽。夏娥梦断秋", acrostic="春夏秋", n=4,
                                sample=SampleOptions(seed=2))):
        for poem in generator.generate(request)["poems"]:
            assert poem["acrostic_ok"] and poem["checks"]["repeat_ok"], poem["text"]
    prompt = "春尽梅花无数。夏日一眠春暑。秋意向人多，冬不有芳菲聚。花树。月"
    prepared = generator.prepare(PoemRequest(tune="如梦令", prompt=prompt, acrostic="春夏秋冬花月", rhyme=False))
    assert prepared.prompt.startswith(prompt)


def test_the_cli_refuses_an_acrostic_that_breaks_a_repeat_in_one_line():
    result = CliRunner().invoke(cli, ["generate", "--tune", "如梦令", "--acrostic", "春夏秋冬花月", "--seed", "1"])
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "clause 6" in result.stderr and "叠" in result.stderr, result.stderr


def test_a_ci_reads_a_two_tone_character_by_its_pair_within_a_clause():
    """浣溪沙's first clause asks 仄 at its second character and 平 at its fourth: after 万, 重 (万重 reads
    chóng, 平) is refused at the second and not at the fourth (word_rules.WordTone, from ci_asked); after
    the clause's mark no pair is read (a pair split by a clause's end is no word). build_rules gives a
    tune's request the rule."""
    import numpy as np

    from poetgen.generate import Generator
    from poetgen.rule_base import Step
    from poetgen.rules import build_rules
    from poetgen.word_rules import WordTone, ci_asked

    generator = Generator.load()   # the shipped vocabulary: 万, 重
    variant, tables = resolve("浣溪沙", 1), generator.tables
    assert variant.tones[:7] == "中仄中平中仄平" and variant.layout.starts[1] == 8
    rule = WordTone(tables, ci_asked(variant, 1))
    wan, zhong, mark = (tables.tokenizer.id_of(ch) for ch in "万重，")
    for pos, previous, refused in ((1, wan, True), (3, wan, False), (8, mark, False)):
        logits = np.zeros((1, tables.tokenizer.vocab_size), np.float32)
        rule.apply(logits, Step(pos, np.zeros(1, int), np.zeros(1, int), variant.layout, np.full((1, pos), previous)))
        assert bool(np.isinf(logits[0, zhong])) is refused, pos
    rules, _ = build_rules(generator.prepare(PoemRequest(tune="浣溪沙", tone=True)), tables, [(0, 0)])
    assert [type(r) for r in rules].count(WordTone) == 1
    rules, _ = build_rules(generator.prepare(PoemRequest(tune="浣溪沙", tone=False)), tables, [(0, 0)])
    assert WordTone not in [type(r) for r in rules]
