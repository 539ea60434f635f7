"""Titles: `poetgen train --titles` reads a shi's cleaned title after its controls, `generate --title`
writes to one; the reverse model and the held-out perplexity never read titles."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.cli import cli
from poetgen.control import TITLE_END, Prefixer, clean_title, reads_title, vocabulary_texts
from poetgen.tokenizer import BOUNDARY, Tokenizer
from conftest import TINY_TRAIN
from test_control import Record


@pytest.mark.parametrize("title, cleaned", [
    ("帝京篇十首一", "帝京篇"), ("涤虑轩其一", "涤虑轩"), ("学舍直归晚霁三首其一", "学舍直归晚霁"),
    ("立春日二首其二", "立春日"), ("诗（并序）一○三", "诗"), ("相和歌辞置酒行", "置酒行"), ("鼓吹曲辞凯乐歌辞破阵乐", "破阵乐"),
    ("十五夜望月", "十五夜望月"), ("送王伦", "送王伦"), ("秋夜。", "秋夜"), ("《静安》", "静安"),
    ("大中祥符五岳加帝号祭告八首送神用《静安》。", None),   # a sentence: punctuation inside
    ("秋移宛丘牡丹植圭窦斋前作二绝示秬秸和其二", None),      # longer than MAX_TITLE
    ("", None), ("其一", None)])
def test_clean_title(title, cleaned):
    assert clean_title(title) == cleaned


def test_ci_read_no_title_and_a_share_of_shi_do():
    assert clean_title("浣溪沙", "ci") is None
    assert reads_title(Record("一二三", genre="ci", form="ci", tune="浣溪沙")) is None
    poems = [Record(f"春风{i}", form="wujue") for i in range(400)]
    for poem in poems:
        object.__setattr__(poem, "title", "送友人")
    titled = [reads_title(p) for p in poems]
    assert set(titled) == {"送友人", None}
    assert 0.65 < sum(t is not None for t in titled) / len(titled) < 0.85   # TITLE_SHARE, by hash
    assert titled == [reads_title(p) for p in poems]                        # the same every run


def test_the_title_end_joins_a_vocabulary_only_when_missing():
    texts = ["春眠不觉晓", "处处闻啼鸟"]
    assert vocabulary_texts(texts, False, 3) == texts
    assert TITLE_END in Tokenizer.build(vocabulary_texts(texts, True, 3), 3).index
    with_colon = texts + ["曰：可", "曰：否", "曰：然"]
    assert vocabulary_texts(with_colon, True, 3) == with_colon   # already known: the tokenizer is unchanged


def test_titled_training_reads_titles_after_the_controls(titled_bundle):
    from poetgen.corpus import is_held_out
    from poetgen.importers import load_corpus

    out, run = titled_bundle
    tokenizer, stream = run.tokenizer, run.train_stream
    poems = [p for p in load_corpus(out.parent / "tagged.jsonl") if not is_held_out(p.text, TINY_TRAIN["val_split"])]
    sequences = np.split(stream[1:-1], np.flatnonzero(stream[1:-1] == BOUNDARY))
    sequences = [list(s[1:]) if i else list(s) for i, s in enumerate(sequences)]   # each after its boundary
    assert len(sequences) == len(poems)
    titled = 0
    for poem, sequence in zip(poems, sequences):
        controls = Prefixer(tokenizer).for_poem(poem)
        title = reads_title(poem)
        read = tokenizer.encode(title) + [tokenizer.id_of(TITLE_END)] if title else []
        assert sequence == controls + read + tokenizer.encode(poem.text)
        titled += bool(title)
    assert 0.3 * len(poems) < titled < 0.8 * len(poems)    # ci and a quarter of the shi read none
    assert all(len(p) == 2 for p in run.held_out_prefixes)  # held-out perplexity reads no title
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["train"]["titles"] is True


def test_generate_to_a_title(titled_bundle):
    out, _ = titled_bundle
    args = ["generate", "--model", str(out), "-n", "2", "--seed", "3", "--format", "json"]
    result = CliRunner().invoke(cli, args + ["--title", "春日"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["title"] == "春日" and len(answer["poems"]) == 2
    untitled = json.loads(CliRunner().invoke(cli, args).output)
    assert "title" not in untitled
    text = CliRunner().invoke(cli, args[:-2] + ["--title", "春日"]).output
    assert text.startswith("《春日》\n")


def test_the_title_is_read_by_the_forward_model_only(titled_bundle):
    from poetgen.generate import Generator, PoemRequest

    out, _ = titled_bundle
    generator = Generator.load(out)
    prepared = generator.prepare(PoemRequest(title="春 日"))   # normalised: spaces dropped
    assert prepared.title == "春日"
    controls = generator.controls(prepared)
    assert generator.prefix(prepared) == controls + generator.tokenizer.encode("春日") + [
        generator.tokenizer.id_of(TITLE_END)]
    assert controls == Prefixer(generator.tokenizer).for_request("tang", "wujue")
    after = {}
    for name, prefix in (("titled", generator.prefix(prepared)), ("untitled", controls)):
        state, previous = generator.stepper.after_prefix(tuple(prefix), 1)
        after[name] = generator.stepper.step(previous, state)[0]
    assert not np.allclose(after["titled"], after["untitled"])   # the model reads it
    assert prepared.batch_key() != generator.prepare(PoemRequest()).batch_key()


@pytest.mark.parametrize("options, message", [
    (["--title", "春日", "--tune", "浣溪沙"], "a title is for shi"),
    (["--title", "春日。"], "title contains '。'"),
    (["--title", "春" * 13], "longer than 12"),
    (["--title", "abc"], "Latin letter"),
])
def test_bad_titles_are_one_line(titled_bundle, options, message):
    out, _ = titled_bundle
    result = CliRunner().invoke(cli, ["generate", "--model", str(out), *options])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_title_for_a_model_without_titles_is_one_line(tiny_bundle):
    result = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--title", "送友人"])
    assert result.exit_code != 0 and "not trained with titles" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_titles_need_controls_and_a_forward_model(tmp_path):
    runner = CliRunner()
    for extra, message in ((["--titles"], "--titles needs --conditioned"),
                           (["--titles", "--conditioned", "--reverse"], "reads no titles")):
        result = runner.invoke(cli, ["train", "--out", str(tmp_path / "m"), *extra])
        assert result.exit_code != 0 and message in result.output, result.output
        assert not (tmp_path / "m").exists()


def test_the_python_api_takes_a_title(titled_bundle):
    import poetgen

    out, _ = titled_bundle
    poems = poetgen.load(out).generate(form="wujue", n=2, seed=4, title="春日")
    assert poems.title == "春日" and poems.to_dict()["title"] == "春日" and str(poems).startswith("《春日》\n")
    cli_answer = json.loads(CliRunner().invoke(cli, ["generate", "--model", str(out), "-n", "2", "--seed", "4",
                                                     "--title", "春日", "--format", "json"]).output)
    assert [p["text"] for p in cli_answer["poems"]] == [p.text for p in poems]


def test_polishing_a_titled_poem_reads_the_title_forwards_only(titled_bundle, tiny_corpus, tmp_path):
    import shutil

    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions
    from poetgen.train import TrainConfig, train

    out, _ = titled_bundle
    bundle = tmp_path / "model"
    shutil.copytree(out, bundle)
    train(TrainConfig(out=str(bundle / "reverse"), corpus=str(out.parent / "tagged.jsonl"), conditioned=True,
                      reverse=True, sampled_softmax=32, **{**TINY_TRAIN, "epochs": 1}))
    generator = Generator.load(bundle)
    seen = []
    reading = generator.reverse_scorer.reading
    generator.reverse_scorer.reading = lambda text, prefix, *rest: seen.append(prefix) or reading(text, prefix, *rest)
    request = PoemRequest(title="春日", polish=1, sample=SampleOptions(seed=2))
    result = generator.generate(request)
    assert result["title"] == "春日" and "polished" in result["poems"][0]
    prepared = generator.prepare(request)
    assert seen and all(prefix == generator.controls(prepared) for prefix in seen)   # no title backwards
