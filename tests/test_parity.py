"""The CLI's Generator and the SavedModel's in-graph `generate` on the same requests: every poem from
both passes the project's checker (checks.py for shi, ci_checks.py for a tune), and each rule gets the
same verdict on both sides. A conditioned model's export reads the control prefix the CLI feeds."""

from __future__ import annotations

import dataclasses
import re

import pytest

from poetgen.checks import check_poem
from poetgen.ci_checks import check_ci, han_chars
from poetgen.ci_rhyme import ci_rhyme
from poetgen.corpus import normalize_text
from poetgen.errors import BadInput
from poetgen.export import ExportOptions, export
from poetgen.generate import PoemRequest
from poetgen.layout import FORMS, clauses, layout_of
from poetgen.metre import guard_columns, strict_columns, tone_fits, tone_patterns
from poetgen.prosody import table, usual_table
from poetgen.sampling import SampleOptions
from poetgen.tunes import EITHER, resolve

PROMPTS = {5: ("白日依山", "白日依山尽。黄河"), 7: ("春风不度玉", "春风不度玉门关。")}
ACROSTICS = {4: "春秋山水", 8: "春秋山水花鸟云月"}


def requests():
    """(form, prompt, acrostic, tone, top_p) covering every form, prompts plain and punctuated, acrostics,
    tone and top-p."""
    for form in FORMS:
        length, count = layout_of(form).line_lengths[0], layout_of(form).line_count
        plain, punctuated = PROMPTS[length]
        yield form, "", "", False, 1.0
        yield form, plain, "", False, 1.0
        yield form, punctuated, "", False, 0.9
        yield form, "", ACROSTICS[count], False, 1.0
        yield form, "", "", True, 1.0
        yield form, ACROSTICS[count][0], ACROSTICS[count], True, 0.8   # a prompt column off-pattern could not fit
        yield form, plain, "", True, 1.0         # the pattern drawn among those the prompt's tones allow
        yield form, punctuated, "", True, 0.9


def verdict(poem: str, form: str, acrostic: str, tone: bool) -> dict:
    check = check_poem(poem, form, table(), acrostic)
    lines = clauses(poem)
    return {"layout": check.layout_ok, "rhyme": check.rhyme_ok, "acrostic": check.acrostic_ok,
            "tone": check.tone_score == 1.0 if tone else None,
            "no_repeat": all(len(set(line[:-1])) == len(line) - 1 for line in lines)}


@pytest.fixture(scope="module")
def poet(tiny_bundle, tmp_path_factory):
    import tensorflow as tf

    from poetgen.bundle import load_bundle

    out = export(load_bundle(tiny_bundle), ExportOptions(tmp_path_factory.mktemp("parity") / "sm", "savedmodel"))
    return tf.saved_model.load(str(out))


def graph_poem(poet, form="", prompt="", acrostic="", tone=False, top_p=1.0, seed=0, temperature=0.8,
               top_k=0) -> str:
    return poet.generate(prompt=prompt, form=form, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                         acrostic=acrostic, tone=tone)["poem"].numpy().decode("utf-8")


@pytest.mark.parametrize("form, prompt, acrostic, tone, top_p", list(requests()))
def test_same_request_same_verdicts(generator, poet, form, prompt, acrostic, tone, top_p):
    fitted = layout_of(form).fit_prompt(normalize_text(prompt))
    for seed in (1, 2):
        request = PoemRequest(prompt=prompt, form=form, acrostic=acrostic, tone=tone,
                              sample=SampleOptions(top_p=top_p, seed=seed))
        cli = generator.generate(request)["poems"][0]["text"]
        graph = graph_poem(poet, form, prompt, acrostic, tone, top_p, seed)
        expected = verdict(cli, form, acrostic, tone)
        assert verdict(graph, form, acrostic, tone) == expected, (cli, graph)
        assert expected["layout"] and expected["rhyme"] and expected["no_repeat"], cli
        assert expected["acrostic"] is (True if acrostic else None) and expected["tone"] is (True if tone else None)
        assert cli.startswith(fitted) and graph.startswith(fitted)


def test_defaults_resolve_the_form_alike(generator, poet):
    for acrostic, form in (("", "wujue"), (ACROSTICS[8], "wulv")):
        cli = generator.generate(PoemRequest(acrostic=acrostic, sample=SampleOptions(seed=3)))["poems"][0]["text"]
        graph = graph_poem(poet, acrostic=acrostic, seed=3)
        assert layout_of(form).fits(cli) and layout_of(form).fits(graph)


def test_greedy_graph_poem_is_the_greedy_cli_poem(generator, poet):
    """Temperature 0 leaves no randomness: both sides must pick the same ids at every step."""
    for form in FORMS:
        cli = generator.generate(PoemRequest(form=form, tone=False, best_of=1,
                                             sample=SampleOptions(temperature=0, seed=0)))["poems"][0]
        assert graph_poem(poet, form, temperature=0.0) == cli["text"]


def test_both_sides_write_a_character_of_one_tone_alone_at_the_columns_that_guard_a_line(generator, poet):
    """仄仄仄平平's third and 平平仄仄平's first (metre.guard_columns): a character the generation table
    reads in both tones could make 三平尾 or 孤平 there; neither side writes one (rules.Tone, TONE_GUARD)."""
    usual, guarded = usual_table(), 0
    for form in FORMS:
        for seed in range(4):
            cli = generator.generate(PoemRequest(form=form, best_of=1, sample=SampleOptions(seed=seed)))["poems"][0]
            for poem in (cli["text"], graph_poem(poet, form, tone=True, seed=seed)):
                lines = [line[:-1] for line in clauses(poem)]
                pattern = tone_patterns(len(lines[0]), len(lines))[check_poem(poem, form, usual).tone_pattern]
                for line, tones in zip(lines, pattern):
                    for column in guard_columns(tones):
                        guarded += 1
                        assert usual.tones(line[column]) == {tones[column]}, (poem, line, column)
    assert guarded >= 100


@pytest.mark.parametrize("field, request_args, graph_args", [
    ("form", {"form": "sonnet"}, {"form": "sonnet"}),
    ("acrostic", {"form": "wujue", "acrostic": "春秋"}, {"form": "wujue", "acrostic": "春秋"}),
    ("prompt", {"form": "wujue", "prompt": "龘"}, {"form": "wujue", "prompt": "龘"}),
    ("prompt", {"form": "wujue", "prompt": "白日，依山"}, {"form": "wujue", "prompt": "白日，依山"}),
    ("prompt", {"form": "wujue", "prompt": "白" * 21}, {"form": "wujue", "prompt": "白" * 21}),
    ("prompt", {"form": "wujue", "prompt": "白日依山尽，黄河依山尽"}, {"form": "wujue", "prompt": "白日依山尽，黄河依山尽"}),
    ("acrostic", {"form": "wujue", "acrostic": "龘龘龘龘"}, {"form": "wujue", "acrostic": "龘龘龘龘"}),
    ("top_p", {"sample": SampleOptions(top_p=0.0)}, {"top_p": 0.0}),
    ("acrostic", {"form": "wujue", "acrostic": " \u3000"}, {"form": "wujue", "acrostic": " \u3000"}),   # blank
    ("form", {"form": "'"}, {"form": "'"}), ("form", {"form": "-"}, {"form": "-"}),   # no name left: unknown
    ("form", {"tune": "浣溪沙#1 2"}, {"form": "浣溪沙#1 2"}), ("form", {"tune": "浣溪沙#01"}, {"form": "浣溪沙#01"}),
    ("form", {"form": "\u3000"}, {"form": "\u3000"}),
    ("form", {"tune": "浣溪莎"}, {"form": "浣溪莎"}),
    ("form", {"tune": "浣溪沙", "variant": 99}, {"form": "浣溪沙#99"}),
    ("acrostic", {"tune": "十六字令", "acrostic": "春夏秋冬五"}, {"form": "十六字令", "acrostic": "春夏秋冬五"}),
    ("prompt", {"tune": "十六字令", "prompt": "春风，"}, {"form": "十六字令", "prompt": "春风，"}),
    ("prompt", {"form": "wujue", "prompt": "白日依山尽黄河入海流春风吹柳絮秋水向东流"},   # 流 rhymes twice
     {"form": "wujue", "prompt": "白日依山尽黄河入海流春风吹柳絮秋水向东流"}),
    ("acrostic", {"tune": "十六字令", "acrostic": "月夏秋"}, {"form": "十六字令", "acrostic": "月夏秋"}),   # 入 at a 平 rhyme
    ("prompt", {"tune": "浣溪沙", "prompt": "白日依山尽黄尽"}, {"form": "浣溪沙", "prompt": "白日依山尽黄尽"}),   # 仄 at a 平 rhyme
])
def test_bad_input_is_refused_on_both_sides_naming_the_field(generator, poet, field, request_args, graph_args):
    import tensorflow as tf

    with pytest.raises(BadInput):
        generator.generate(PoemRequest(**request_args))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assertion failed: \[{field}"):
        graph_poem(poet, **graph_args)


@pytest.mark.parametrize("field, value", [
    ("temperature", 100.5), ("temperature", 1e9), ("temperature", -0.5), ("temperature", float("nan")),
    ("temperature", float("inf")), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5), ("top_p", float("nan")),
    ("seed", -1)])
def test_sampling_inputs_out_of_the_cli_s_range_are_refused_as_the_cli_says(poet, field, value):
    """The signature took temperature 100.5 (the CLI, the API and `serve` refuse above 100: SampleOptions
    declares [0, 100]): each numeric input is checked against the range SampleOptions declares, one spec,
    and refused in the words check_settings uses, naming the field."""
    import tensorflow as tf

    from poetgen.options import field_of

    with pytest.raises(BadInput, match=field.replace("_", "-")):
        SampleOptions(**{field: value}).validate()
    said = field_of(SampleOptions, field).metadata["range"].describe()
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assertion failed: \[{field} must be "
                                                             rf"{re.escape(said)}"):
        graph_poem(poet, "wujue", **{field: value})


def test_sampling_inputs_at_the_ends_of_the_cli_s_range_write_a_poem(poet):
    for args in ({"temperature": 100.0}, {"temperature": 0.0}, {"top_p": 1.0}, {"top_k": 2**31 - 1},
                 {"seed": 2**63 - 1}, {"top_p": 1e-6}):
        assert layout_of("wujue").fits(graph_poem(poet, "wujue", **args)), args


def test_each_generate_input_is_one_value_and_serve_ids_are_in_the_vocabulary(poet):
    """A [2] prompt was joined into one text (the declared [] shape was folded away), a [2] acrostic failed
    in an opaque op, TF Serving's row format ([1] each) was refused, invalid UTF-8 raised a Python
    UnicodeDecodeError, and `serve` read a negative id as another row of the embedding."""
    import tensorflow as tf

    scalars = dict(prompt="春风", form="wujue", temperature=0.0, top_k=0, top_p=1.0, seed=3, acrostic="", tone=True)
    types = dict(temperature=tf.float32, top_k=tf.int32, top_p=tf.float32, seed=tf.int64, tone=tf.bool)

    def call(inputs):
        return poet.signatures["generate"](**{k: tf.constant(v, types.get(k, tf.string)) for k, v in inputs.items()})

    one = call(scalars)["poem"].numpy()
    rows = call({k: [v] for k, v in scalars.items()})["poem"].numpy()
    assert rows == one and one.decode("utf-8").startswith("春风")   # TF Serving's row format: the same poem
    for field, value in (("prompt", ["春风", "明月"]), ("acrostic", ["春", "秋"]), ("seed", [1, 2]), ("tone", [])):
        bad = {**scalars, field: value}
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assertion failed: \[{field} must be one value"):
            call(bad)
    for field in ("form", "prompt", "acrostic"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assertion failed: \[{field} is not UTF-8"):
            poet.generate(**{**scalars, field: b"\xff"})
    serve = poet.signatures["serving_default"]
    assert serve(ids=tf.constant([[2, 5]], tf.int32))["logits"].shape[0] == 1
    for ids in ([[2, -5]], [[2, 10 ** 6]]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[ids must be in \[0, "):
            serve(ids=tf.constant(ids, tf.int32))


def test_the_poem_has_the_prompt_s_shape_and_serve_refuses_rows_of_no_ids(poet):
    """TF Serving's row format ("instances": [{…}]) sends every input as [1] and answers only outputs with
    that batch dimension (its json_tensor.cc: "Tensor name: poem has no shape information"): the poem was a
    scalar whatever the inputs' shape. And `serve` on rows of no ids failed inside the RNN naming no field."""
    import tensorflow as tf

    scalars = dict(prompt="春风", form="wujue", temperature=0.0, top_k=0, top_p=1.0, seed=3, acrostic="", tone=True)
    types = dict(temperature=tf.float32, top_k=tf.int32, top_p=tf.float32, seed=tf.int64, tone=tf.bool)
    generate = poet.signatures["generate"]
    one = generate(**{k: tf.constant(v, types.get(k, tf.string)) for k, v in scalars.items()})["poem"]
    rows = generate(**{k: tf.constant([v], types.get(k, tf.string)) for k, v in scalars.items()})["poem"]
    assert one.shape == () and rows.shape == (1,) and rows.numpy()[0] == one.numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[ids must hold at least one id"):
        poet.signatures["serving_default"](ids=tf.zeros([1, 0], tf.int32))


@pytest.mark.parametrize("form, prompt, acrostic", [("如梦令", "", "春夏秋冬花月"), ("忆秦娥", "", "春夏秋"),
                                                  ("钗头凤#5", "", "春花秋月夜风江江山")])
def test_an_acrostic_that_breaks_a_repeat_is_refused_on_both_sides(generator, poet, form, prompt, acrostic):
    """The graph kept an acrostic head a 叠 repeats and broke the 叠, as the CLI did (ci_request.check_acrostic_repeats)."""
    import tensorflow as tf

    tune, _, variant = form.partition("#")
    with pytest.raises(BadInput, match="a 叠 that repeats"):
        generator.prepare(PoemRequest(tune=tune, variant=int(variant) if variant else None, acrostic=acrostic))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[acrostic puts a character at the "
                                                             r"head of a clause that a 叠 repeats"):
        graph_poem(poet, form, prompt, acrostic)


def test_an_acrostic_head_that_is_the_repeated_character_stands_in_the_graph(generator, poet):
    variant = resolve("如梦令")
    for seed in range(3):
        poem = graph_poem(poet, "如梦令", "", "春夏秋冬花花", tone=True, seed=seed)
        check = check_ci(poem, variant, table(), ci_rhyme(), "春夏秋冬花花")
        assert check.acrostic_ok and check.repeat_ok, poem
    poem = graph_poem(poet, "忆秦娥", "春声咽。夏娥梦断秋", "春夏秋", seed=1)   # the prompt writes the source
    assert check_ci(poem, resolve("忆秦娥"), table(), ci_rhyme(), "春夏秋").repeat_ok, poem


def test_traditional_characters_and_unicode_spaces_read_as_the_cli_reads_them(generator, poet):
    """The graph knew one traditional spelling per character (发 → 發: 白髮 was refused) and dropped
    ASCII spaces only (RE2's \\s): an ideographic or no-break space was an unknown character."""
    from poetgen.corpus import to_simplified

    known = generator.tokenizer.index
    spellings = [c for c in "髮裡週鐘麵隻迴纔颱檯嚮於" if to_simplified(c) in known and c not in known]
    assert len(spellings) >= 2, spellings   # traditional spellings the tiny model knows simplified only
    prompt = "\u3000".join(spellings[:4]) + "\u00a0"
    heads = "\u00a0".join(spellings[:4])
    for form, acrostic in (("wujue", ""), ("wujue", heads)):
        cli = generator.generate(PoemRequest(prompt=prompt, form=form, acrostic=acrostic, tone=False, best_of=1,
                                             sample=SampleOptions(temperature=0, seed=0)))["poems"][0]["text"]
        graph = graph_poem(poet, form, prompt, acrostic, temperature=0.0)
        assert graph == cli and cli.startswith(normalize_text(prompt)), (cli, graph)


# (form as the graph reads it, tune, variant, prompt, acrostic, tone): 浣溪沙 one 平 rhyme; 西江月 叶 slots;
# 菩萨蛮 four rhymes, 仄 and 平 in turn; a variant by pinyin, with a prompt and an acrostic on clause heads;
# a punctuated prompt (any mark is accepted after a clause but the last).
TUNE_REQUESTS = [("浣溪沙", "浣溪沙", None, "", "", False), ("浣溪沙", "浣溪沙", None, "", "", True),
                 ("西江月", "西江月", None, "", "", True), ("菩萨蛮", "菩萨蛮", None, "", "春夏", False),
                 ("huanxisha#3", "浣溪沙", 3, "春风", "春花秋月", True), ("菩萨蛮", "菩萨蛮", None, "山月", "山", True),
                 ("十六字令", "十六字令", None, "天,", "", True),
                 # no variant named: the usual one, not the 谱's first (临江仙's 8th, 60 characters)
                 ("linjiangxian", "临江仙", None, "", "", True),
                 # 满江红 rhymes in 入声; a prompt that rhymes it in 上去 (住) turns the group back to 仄
                 ("满江红", "满江红", None, "", "", True), ("满江红", "满江红", None, "怒发冲冠，凭栏处，萧然雨住", "", True)]


def ci_verdict(poem: str, variant, acrostic: str, tone: bool, forced: set[int]) -> dict:
    """The ci checker's verdicts; tone as the fit of each 平/仄 character that no prompt or acrostic forced."""
    check = check_ci(poem, variant, table(), ci_rhyme(), acrostic)
    chars = han_chars(poem)
    tones = [tone_fits(ch, t, table()) for k, (ch, t) in enumerate(zip(chars, variant.tones))
             if t != EITHER and k not in forced]
    return {"layout": check.layout_ok, "rhyme": check.rhyme_ok, "acrostic": check.acrostic_ok,
            "entering": [part.endswith("入") for g, part in enumerate(check.rhyme_parts or ()) if g in variant.entering],
            "tone": tones if tone else None,
            "no_repeat": all(len(set(line[:-1])) == len(line) - 1 for line in clauses(poem))}


@pytest.mark.parametrize("form, tune, variant, prompt, acrostic, tone", TUNE_REQUESTS)
def test_same_tune_request_same_ci_verdicts(generator, poet, form, tune, variant, prompt, acrostic, tone):
    variant_ = resolve(tune, variant)
    fitted = variant_.layout.fit_prompt(normalize_text(prompt))
    heads = [sum(variant_.line_lengths[:i]) for i in range(len(acrostic))]
    forced = set(range(len(han_chars(fitted)))) | set(heads)
    for seed in (1, 2):
        request = PoemRequest(tune=tune, variant=variant, prompt=prompt, acrostic=acrostic, tone=tone,
                              sample=SampleOptions(seed=seed))
        cli = generator.generate(request)["poems"][0]["text"]
        graph = graph_poem(poet, form, prompt, acrostic, tone, seed=seed)
        expected = ci_verdict(cli, variant_, acrostic, tone, forced)
        assert ci_verdict(graph, variant_, acrostic, tone, forced) == expected, (cli, graph)
        assert expected["layout"] and expected["rhyme"] and expected["no_repeat"], cli
        assert expected["acrostic"] is (True if acrostic else None)
        assert expected["tone"] is None or all(expected["tone"]), cli
        assert cli.startswith(fitted) and graph.startswith(fitted)
        if tune == "满江红":   # its group rhymes in 入声, but for a prompt that rhymes it in 上去
            assert expected["entering"] == [not prompt], cli


def test_greedy_graph_ci_is_the_greedy_cli_ci(generator, poet):
    for tune, tone in (("菩萨蛮", True), ("西江月", False), ("如梦令", True), ("忆秦娥", False)):
        request = PoemRequest(tune=tune, tone=tone, sample=SampleOptions(temperature=0, seed=0))
        assert graph_poem(poet, tune, tone=tone, temperature=0.0) == generator.generate(request)["poems"][0]["text"]
    for prompt in ("怒发冲冠，凭栏处，萧然雨住", "怒发冲冠，凭栏处，萧然雨歇"):   # 上去, then 入, where 满江红 rhymes 入
        request = PoemRequest(tune="满江红", prompt=prompt, tone=False, sample=SampleOptions(temperature=0, seed=0))
        assert graph_poem(poet, "满江红", prompt, temperature=0.0) == generator.generate(request)["poems"][0]["text"]


def test_the_graph_repeats_a_phrase_as_the_cli_does(poet):
    """叠 (如梦令's 如梦。如梦, 忆秦娥's 秦楼月), sampled: the graph copies the source's characters, and a
    prompt that does not repeat is kept on both sides."""
    from poetgen.ci_checks import check_ci
    from poetgen.ci_rhyme import ci_rhyme
    from poetgen.prosody import table

    for tune, number in (("如梦令", 1), ("忆秦娥", 1), ("撷芳词", 5), ("调笑令", 1)):   # 调笑令: 转应 too
        variant = resolve(tune, number)
        for seed in (1, 2, 3):
            poem = graph_poem(poet, f"{tune}#{number}", seed=seed)
            chars = han_chars(poem)
            assert all(chars[p] == chars[s] for p, s in variant.repeats), poem
            assert check_ci(poem, variant, table(), ci_rhyme()).repeat_ok, poem
            assert check_ci(poem, variant, table(), ci_rhyme()).rhyme_ok, poem   # 转应's turned rhyme too


def test_a_form_is_found_as_the_cli_finds_it(generator, poet):
    """The graph lowercased form names (QIJUE) and, once tunes were, dropped their spaces (qi jue); the
    CLI took only the exact names: both now read a form as a tune's name is read, and in traditional characters
    (七絕) as prompts are read."""
    for typed in ("QIJUE", "Qi Jue", "qi-jue", "七絕"):
        cli = generator.generate(PoemRequest(form=typed, tone=False, sample=SampleOptions(seed=1)))
        assert cli["form"] == "qijue"
        assert layout_of("qijue").fits(graph_poem(poet, typed, seed=1))


def test_a_tune_is_found_by_every_name_the_cli_takes(poet):
    """Other name, pinyin (any case, spaced or hyphenated) and "#1" find the same variant as the tune's name;
    a full-width ＃ (浣溪沙＃2, as typed in Chinese) is "#", as the CLI reads it: the graph found no such tune;
    nor a name in characters OpenCC t2s simplifies (浣谿沙), which the CLI reads as 浣溪沙; 徵招 stays 徵招."""
    import tensorflow as tf

    for name, other in (("念奴娇", "大江东去"), ("浣溪沙", "HuanXiSha"), ("浣溪沙", " 浣溪沙#1 "),
                        ("满江红", "Man Jiang-Hong"), ("满江红", "上江虹"),
                        ("满江红", "满\u3000江红"), ("满江红", "\u3000Man\xa0Jiang Hong\u3000"),   # any space
                        ("浣溪沙#2", "浣溪沙＃2"), ("浣溪沙#2", "\u3000huanxisha＃2 "),
                        ("浣溪沙", "浣谿沙"), ("浣溪沙#2", "浣谿紗#2")):
        assert graph_poem(poet, name, seed=4) == graph_poem(poet, other, seed=4)
    assert resolve("浣溪沙", 2).layout.fits(graph_poem(poet, "浣溪沙#2", seed=4))
    assert resolve("徵招").layout.fits(graph_poem(poet, "徵招", seed=4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="form names variant"):   # not an unknown form
        graph_poem(poet, "浣溪沙＃9")
    with pytest.raises(tf.errors.InvalidArgumentError, match="form must be one of"):   # as --tune 征招 is refused
        graph_poem(poet, "征招")


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
    """An untrained conditioned bundle (random weights: the prefix changes what it predicts) and its
    export with the ten most common tunes."""
    import tensorflow as tf

    from conftest import shipped_records
    from poetgen.bundle import load_bundle, save_bundle
    from poetgen.control import control_vocabulary
    from poetgen.model import ModelConfig, build_model
    from poetgen.tokenizer import Tokenizer

    texts = [r["text"] for r in shipped_records(300)]
    controls = control_vocabulary([], 0) + ["<tune:浣溪沙>"]   # styles, forms, <anytune>, one tune
    tokenizer = Tokenizer.build(texts, controls=controls)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, units=16, embedding_dim=8)
    path = tmp_path_factory.mktemp("conditioned") / "bundle"
    save_bundle(path, build_model(config), tokenizer, {"model": dataclasses.asdict(config)})
    out = export(load_bundle(path), ExportOptions(path.parent / "sm", "savedmodel", tunes=10))
    return path, tf.saved_model.load(str(out))


def test_a_conditioned_export_reads_the_prefix_the_cli_feeds(conditioned, monkeypatch):
    """Greedy poems leave no randomness: the graph's equal the CLI's (shi: <tang> <form>; a tune with a token
    and one with the generic <anytune>), and the CLI's own without the prefix differ."""
    from poetgen.generate import Generator

    path, poet = conditioned
    generator = Generator.load(path)
    single = dict(tone=False, best_of=1)   # the graph's one untoned candidate
    requests = [("wujue", PoemRequest(form="wujue", **single)), ("浣溪沙", PoemRequest(tune="浣溪沙", **single)),
                ("菩萨蛮", PoemRequest(tune="菩萨蛮", **single))]
    greedy = SampleOptions(temperature=0, seed=0)
    poems = {form: generator.generate(dataclasses.replace(request, sample=greedy))["poems"][0]["text"]
             for form, request in requests}
    assert [generator.prefix(generator.prepare(r)) for _, r in requests] == [
        [generator.tokenizer.control_id(t) for t in tokens]
        for tokens in (("<tang>", "<wujue>"), ("<ci>", "<tune:浣溪沙>"), ("<ci>", "<anytune>"))]
    for form, text in poems.items():
        assert graph_poem(poet, form, temperature=0.0) == text
    monkeypatch.setattr(Generator, "prefix", lambda self, prepared: [])
    unprefixed = {form: generator.generate(dataclasses.replace(request, sample=greedy))["poems"][0]["text"]
                  for form, request in requests}
    assert unprefixed != poems


def test_export_tunes_keeps_the_most_common_tunes(conditioned):
    """--tunes 10: the ten tunes with the most poems in the shipped ci corpus, by any name; others refused."""
    import tensorflow as tf
    from click.testing import CliRunner

    from poetgen.cli import cli
    from poetgen.export import exported_tunes
    from poetgen.graph_tables import spellings_of
    from poetgen.tunes import tune_table

    _, poet = conditioned
    kept = exported_tunes(10)
    assert len(kept) == 10 and {"浣溪沙", "菩萨蛮"} <= {t.name for t in kept}
    for tune in kept[:3]:
        assert tune.variants[-1].layout.fits(graph_poem(poet, f"{tune.pinyin[0]}#{len(tune.variants)}", seed=1))
    dropped = next(t for t in tune_table().tunes if t not in kept)
    # a spelling in characters OpenCC t2s simplifies (浣谿沙 for 浣溪沙), which the graph's table holds too
    respelt = next(key for t in tune_table().tunes if t not in kept
                   for key in spellings_of(tune_table(), t) if key not in tune_table().keys_of(t))
    # a tune this export left out is named as such, by any of its names (it was "form must be one of…")
    for name in (dropped.name, next(k for k in dropped.pinyin if k.lower() not in tune_table().shared_keys), respelt):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[form names a ci tune this "
                                                                 r"export left out"):
            graph_poem(poet, name)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"assertion failed: \[form must be one of"):
        graph_poem(poet, "no such tune")
    # a shi form takes no variant (it said "form names variant [2] but its tune has [1]")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"only a ci tune takes a variant"):
        graph_poem(poet, "wujue#2")
    result = CliRunner().invoke(cli, ["export", "--out", "unused", "--tunes", "-2"])
    assert result.exit_code == 2 and "--tunes" in result.output


def test_graph_keeps_line_one_ending_from_later_rhymes_as_the_cli_rule_does(tiny_bundle):
    """poetgen.rules.Rhyme bans line 1's last character from every later rhyme, rhyming or not (重韵); the
    graph's _observe_rhyme must too: at line 1's end (no rhyme slot there) the chosen id joins `used`."""
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.export import generation_tables
    from poetgen.export_graph import PoemGraph

    bundle = load_bundle(tiny_bundle)
    vocabulary, layouts = generation_tables(bundle, [])
    graph = PoemGraph(bundle.model, bundle.model_config, vocabulary, layouts)
    allowed = tf.ones([2, graph.membership.shape[1]], tf.bool)
    used = tf.zeros([graph.vocab_size], tf.bool)
    no_slot = (tf.constant(-1), tf.constant(False))
    for first_line_end in (False, True):
        _, after = graph._observe_rhyme(tf.constant(2), tf.constant(7), no_slot, allowed, used,
                                        tf.constant(first_line_end))
        assert bool(after[7]) == first_line_end and int(tf.reduce_sum(tf.cast(after, tf.int32))) == first_line_end


def test_a_misplaced_mark_is_named_by_one_position(poet):
    """The message printed the running count of every character ([0 1 2 3 4 5 5]), not where it went wrong."""
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"after character\] \[5\]"):
        graph_poem(poet, "wujue", "白日依山尽，，")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"after character\] \[2\]"):
        graph_poem(poet, "wujue", "白日，依山")


def test_line_one_may_end_as_a_rhyming_line_does_on_both_sides(generator, poet):
    """Real poems do (幸免低头向府中…寒山映月在湖中); the checker leaves line 1's end alone, so neither
    side refuses such a prompt."""
    prompt = "白日依山流，黄河入海流。"
    cli = generator.generate(PoemRequest(prompt=prompt, form="wujue", sample=SampleOptions(seed=1)))["poems"][0]
    assert cli["text"].startswith(prompt) and cli["rhyme_ok"]
    assert graph_poem(poet, "wujue", prompt, seed=1).startswith(prompt)



@pytest.mark.parametrize("form, prompt", [("wujue", "入云乱"), ("qijue", "落日入云乱"), ("wujue", "白云")])
def test_a_prompt_that_leaves_lone_ping_unavoidable_rules_its_pattern_out(generator, poet, form, prompt):
    """入 and 乱 (both 仄) at 平平仄仄平's first and third columns: no rescue is left, yet the pattern counted
    as fitting, and half the seeds drew it (tone_score 0.93). The CLI and the graph now both draw among the
    patterns that keep every tone."""
    for seed in range(4):
        request = PoemRequest(prompt=prompt, form=form, tone=True, sample=SampleOptions(seed=seed))
        cli = generator.generate(request)["poems"][0]["text"]
        graph = graph_poem(poet, form, prompt, "", True, 1.0, seed)
        assert verdict(cli, form, "", True)["tone"] and verdict(graph, form, "", True)["tone"], (cli, graph)


@pytest.mark.parametrize("form, prompt, acrostic", [
    ("wujue", "白云", ""), ("wujue", "入云乱", ""), ("wujue", "白日依山", ""), ("qijue", "落日入云乱", ""),
    ("qijue", "春风不度玉", ""), ("wulv", "", "月雪柳鸟水木竹石"), ("wujue", "", "雪月柳鸟"), ("qilv", "青山", "")])
def test_the_graph_allows_the_patterns_the_cli_allows(tiny_bundle, generator, form, prompt, acrostic):
    """The patterns a request's fixed characters allow, in the graph (its tone table's flags: a rescue's
    first column is not checked, both its columns fixed non-平 rule the pattern out) and in the CLI
    (rules.fitting_patterns): verdicts alone could not tell a pattern that is never drawn."""
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.export import generation_tables
    from poetgen.export_graph import PoemGraph, _widened
    from poetgen.graph_tables import control_prefixes
    from poetgen.metre import tone_patterns
    from poetgen.rules import fitting_patterns, forced_ids

    bundle = load_bundle(tiny_bundle)
    vocabulary, layouts = generation_tables(bundle, [])
    graph = PoemGraph(bundle.model, bundle.model_config, vocabulary, layouts,
                      control_prefixes(bundle.tokenizer, layouts, []))
    heads = graph._normalised(tf.constant(acrostic))
    f, _, _ = graph._form(tf.constant(form), tf.size(heads))
    layout = {name: _widened(tf.gather(table, f)) for name, table in graph.layout.items()}
    prompted, _ = graph._prompt(graph._normalised(tf.constant(prompt)), layout)
    forced, _ = graph._acrostic(heads, prompted, layout)
    fitting, _ = graph._fitting_patterns(graph._end_marks(forced, layout), layout)

    prepared = generator.prepare(PoemRequest(form=form, prompt=prompt, acrostic=acrostic, tone=True))
    shape = prepared.shape.layout
    standard = tone_patterns(shape.uniform_length, shape.line_count)
    cli = fitting_patterns(standard, shape, forced_ids(prepared, shape), generator.tables, True)
    assert [k for k, name in enumerate(standard) if name in cli] == [int(k) for k in tf.where(fitting)[:, 0]]


def test_both_sides_forbid_a_character_whose_word_reads_it_off_the_column(tiny_bundle, poet, tmp_path, monkeypatch):
    """The pairs that fix a reading (prosody words: 万重 reads 重 平, 相逢 reads 相 平), on both sides
    (word_rules.WordTone, the graph's _word_off), in a shi and a ci. In each side's greedy tone poem, a
    pair of characters at a position that asks a tone is declared to read that position's character in
    the other tone: the pair's second (round 0), or its first (round 1: the character after it, at a
    position that asks no tone, is the one refused). Rewritten with that table, each side's poem keeps
    every character before the refused one and changes it."""
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.ci_rules import char_positions
    from poetgen.generate import Generator

    variant = resolve("浣溪沙")
    requests = {"wujue": PoemRequest(form="wujue", tone=True, best_of=1, sample=SampleOptions(temperature=0, seed=0)),
                "浣溪沙": PoemRequest(tune="浣溪沙", tone=True, best_of=1, sample=SampleOptions(temperature=0, seed=0))}

    def asked(poem: str, form: str) -> dict[int, str]:
        """Position -> the tone asked there (shi: strict columns of the poem's pattern; ci: 平/仄 positions)."""
        if form != "wujue":
            return {int(pos): tone for pos, tone in zip(char_positions(variant), variant.tones) if tone in "平仄"}
        pattern = tone_patterns(5, 4)[check_poem(poem, "wujue", usual_table()).tone_pattern]
        return {6 * i + c: tones[c] for i, tones in enumerate(pattern) for c in strict_columns(tones)}

    def a_pair(poem: str, form: str, which: int) -> tuple[str, int, str]:
        """(pair, position of the character refused, the tone the pair is declared to read)."""
        tones = asked(poem, form)
        for pos, tone in sorted(tones.items()):
            refused = pos + which
            pair = poem[pos - 1 + which:pos + 1 + which]
            if len(pair) == 2 and "，" not in pair and "。" not in pair and not (which and refused in tones):
                return pair, refused, "平" if tone == "仄" else "仄"
        raise AssertionError(poem)

    for which in (0, 1):
        before = {(side, form): poem for form, request in requests.items() for side, poem in (
            ("cli", Generator.load(tiny_bundle).generate(request)["poems"][0]["text"]),
            ("graph", graph_poem(poet, form, tone=True, temperature=0.0)))}
        picked = {key: a_pair(poem, key[1], which) for key, poem in before.items()}
        words = {pair: (other, None) if which else (None, other) for pair, _, other in picked.values()}
        for prosody in (table(), usual_table()):
            monkeypatch.setattr(prosody, "words", words)
        out = tf.saved_model.load(str(export(load_bundle(tiny_bundle),
                                             ExportOptions(tmp_path / f"sm{which}", "savedmodel"))))
        generator = Generator.load(tiny_bundle)
        for (side, form), poem in before.items():
            again = generator.generate(requests[form])["poems"][0]["text"] if side == "cli" else \
                graph_poem(out, form, tone=True, temperature=0.0)
            pair, refused, _ = picked[(side, form)]
            assert again[:refused] == poem[:refused] and again[refused] != poem[refused], (side, form, pair, poem, again)
        monkeypatch.undo()


def test_a_pair_that_fixes_a_rhyme_s_group_is_read_alike_by_the_rule_and_the_graph(tiny_bundle, monkeypatch):
    """A pair ending a rhyming line fixes its group (prosody rhyme_words: 泪成行 is háng, 七阳 only): where
    the rhyme allows only the character's other group, neither rules.Rhyme nor the graph's _edit writes it
    after the pair's first character, and once written, both keep the pair's group alone, not every group
    of the character. A character in two groups of the tiny vocabulary stands in for 行."""
    import numpy as np
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.export import generation_tables
    from poetgen.export_graph import PoemGraph
    from poetgen.layout import layout_of
    from poetgen.rule_base import Step
    from poetgen.rules import Rhyme
    from poetgen.tables import VocabularyTables

    bundle = load_bundle(tiny_bundle)
    probe = VocabularyTables(bundle.tokenizer)
    groups = probe.prosody.level_groups
    last = next(i for i in range(len(probe.rhyme_membership)) if probe.rhyme_membership[i].sum() == 2)
    kept, fixed = (groups[k] for k in np.flatnonzero(probe.rhyme_membership[last]))
    first = bundle.tokenizer.id_of("春")
    assert first != last
    pair = bundle.tokenizer.decode([first]) + bundle.tokenizer.decode([last])
    for prosody in (table(), usual_table()):
        monkeypatch.setattr(prosody, "rhyme_words", {pair: fixed})
    tables = VocabularyTables(bundle.tokenizer)
    vocabulary, layouts = generation_tables(bundle, [])
    graph = PoemGraph(bundle.model, bundle.model_config, vocabulary, layouts)
    only_kept = np.zeros(graph.membership.shape[1], bool)
    only_kept[groups.index(kept)] = True
    width = graph.membership.shape[1]
    layout = layout_of("wujue")
    end = layout.starts[1] + 4   # line 2's last character: a rhyme
    for previous, refused in ((first, True), (bundle.tokenizer.id_of("，"), False)):
        rule = Rhyme(tables.rhyme_membership, np.array([False]), tables.rhyme_masks, tables.rhyme_word_groups)
        rule.allowed[0] = only_kept[:len(groups)]
        history = np.full((1, end), previous)
        logits = np.zeros((1, tables.tokenizer.vocab_size), np.float32)
        rule.apply(logits, Step(end, np.array([1]), np.array([4]), layout, history))
        allowed = tf.constant(np.stack([only_kept, np.ones(width, bool)]))
        edited = graph._edit(tf.zeros([graph.vocab_size]), tf.constant(previous), tf.zeros([0], tf.int32),
                             (tf.constant(0), tf.constant(False)), allowed, tf.zeros([graph.vocab_size], tf.bool),
                             tf.constant(-1), tf.constant(False), tf.zeros([graph.vocab_size], tf.bool),
                             tf.zeros([graph.vocab_size], tf.bool))
        assert bool(np.isinf(logits[0, last])) is refused and bool(np.isinf(edited[last].numpy())) is refused
        # written after the pair's first, the character keeps the pair's group alone on both sides
        rule = Rhyme(tables.rhyme_membership, np.array([False]), tables.rhyme_masks, tables.rhyme_word_groups)
        rule.observe(np.array([last]), Step(end, np.array([1]), np.array([4]), layout, history))
        after, _ = graph._observe_rhyme(tf.constant(previous), tf.constant(last), (tf.constant(0), tf.constant(False)),
                                        tf.ones([2, width], tf.bool), tf.zeros([graph.vocab_size], tf.bool),
                                        tf.constant(False))
        expected = {fixed} if refused else {kept, fixed}
        assert {groups[k] for k in np.flatnonzero(rule.allowed[0])} == expected
        assert {groups[k] for k in np.flatnonzero(after[0].numpy()[:len(groups)])} == expected
        # after the pair's first, another character keeps all of its own groups
        other = next(i for i in range(len(probe.rhyme_membership)) if i != last
                     and probe.rhyme_membership[i][groups.index(kept)])
        rule = Rhyme(tables.rhyme_membership, np.array([False]), tables.rhyme_masks, tables.rhyme_word_groups)
        rule.observe(np.array([other]), Step(end, np.array([1]), np.array([4]), layout, history))
        after, _ = graph._observe_rhyme(tf.constant(previous), tf.constant(other), (tf.constant(0), tf.constant(False)),
                                        tf.ones([2, width], tf.bool), tf.zeros([graph.vocab_size], tf.bool),
                                        tf.constant(False))
        own = set(np.flatnonzero(probe.rhyme_membership[other]))
        assert set(np.flatnonzero(rule.allowed[0])) == own == set(np.flatnonzero(after[0].numpy()[:len(groups)]))
    # rows whose line 1 does not rhyme are not refused there (a batch of a 入韵 row and another)
    rule = Rhyme(tables.rhyme_membership, np.array([True, False]), tables.rhyme_masks, tables.rhyme_word_groups)
    rule.allowed[:] = only_kept[:len(groups)]
    logits = np.zeros((2, tables.tokenizer.vocab_size), np.float32)
    rule.apply(logits, Step(4, np.array([0, 0]), np.array([4, 4]), layout, np.full((2, 4), first)))
    assert np.isinf(logits[0, last]) and np.isfinite(logits[1, last])
    # a ci's rhyme (its columns are 词林正韵 codes, not 平水韵 groups) is not read by the pairs
    ci_only = np.arange(width) >= len(groups)
    edited = graph._edit(tf.zeros([graph.vocab_size]), tf.constant(first), tf.zeros([0], tf.int32),
                         (tf.constant(0), tf.constant(False)), tf.constant(np.stack([ci_only, ci_only])),
                         tf.zeros([graph.vocab_size], tf.bool), tf.constant(-1), tf.constant(False),
                         tf.zeros([graph.vocab_size], tf.bool), tf.zeros([graph.vocab_size], tf.bool))
    in_ci = bool(graph.membership[last].numpy()[len(groups):].any())
    assert bool(np.isfinite(edited[last].numpy())) is in_ci
    after, _ = graph._observe_rhyme(tf.constant(first), tf.constant(last), (tf.constant(0), tf.constant(False)),
                                    tf.constant(np.stack([ci_only, ci_only])), tf.zeros([graph.vocab_size], tf.bool),
                                    tf.constant(False))
    narrowed = ci_only & graph.membership[last].numpy()
    assert (after[0].numpy() == (narrowed if in_ci else ci_only)).all()


@pytest.mark.parametrize("of_first", [False, True])
def test_a_prompt_s_pair_reads_its_character_when_the_pattern_is_chosen_on_both_sides(tiny_bundle, generator,
                                                                                        monkeypatch, of_first):
    """A prompt 万重 puts 重 at column 2, which 平起 patterns ask 平 and 仄起 ones 仄: by its readings 重
    fits both, by its pair (万重: 重 chóng, 平) only 平起. The CLI (shi_rules.fitting_patterns, pair_tones) and the
    graph (_fitting_patterns, _pair_tones) choose among the same patterns. Characters of the tiny
    vocabulary stand in for 万重: the pair fixes its second (at column 2), or with `of_first` its first,
    at column 2 before a third character."""
    import tensorflow as tf

    from poetgen.bundle import load_bundle
    from poetgen.export import generation_tables
    from poetgen.export_graph import PoemGraph, _widened
    from poetgen.rules import fitting_patterns, forced_ids
    from poetgen.tables import VocabularyTables

    bundle = load_bundle(tiny_bundle)
    probe = VocabularyTables(bundle.tokenizer)
    both = next(ch for ch in bundle.tokenizer.chars if usual_table().tones(ch) == {"平", "仄"})
    first = next(ch for ch in bundle.tokenizer.chars if ch != both and usual_table().tones(ch))
    assert probe.tone_masks["平"][bundle.tokenizer.id_of(both)]
    third = next(ch for ch in bundle.tokenizer.chars if ch not in (both, first) and usual_table().tones(ch))
    prompt, pair = (first + both + third, both + third) if of_first else (first + both, first + both)
    standard = tone_patterns(5, 4)
    found = {}
    for fixed in (None, "平", "仄"):
        monkeypatch.undo()
        if fixed:
            for prosody in (table(), usual_table()):
                monkeypatch.setattr(prosody, "words", {pair: (fixed, None) if of_first else (None, fixed)})
        vocabulary, layouts = generation_tables(bundle, [])
        graph = PoemGraph(bundle.model, bundle.model_config, vocabulary, layouts)
        f, _, _ = graph._form(tf.constant("wujue"), tf.constant(0))
        layout = {name: _widened(tf.gather(t, f)) for name, t in graph.layout.items()}
        forced, _ = graph._prompt(graph._normalised(tf.constant(prompt)), layout)
        fitting, _ = graph._fitting_patterns(graph._end_marks(forced, layout), layout)
        prepared = generator.prepare(PoemRequest(form="wujue", prompt=prompt, tone=True))
        tables = VocabularyTables(bundle.tokenizer)
        cli = fitting_patterns(standard, prepared.shape.layout, forced_ids(prepared, prepared.shape.layout), tables, True)
        assert [name for k, name in enumerate(standard) if bool(fitting[k])] == cli, fixed
        found[fixed] = {name for name in cli}
    assert {standard[name][0][1] for name in found[None]} == {"平", "仄"}   # by its readings: both
    for fixed in ("平", "仄"):   # by its pair: those that ask its tone at column 2
        assert found[fixed] == {name for name in found[None] if standard[name][0][1] == fixed}
