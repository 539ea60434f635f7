"""Evaluation: perplexity maths checked against a uniform model and the NumPy stepper, and the
report of a tiny model (finite numbers, perfect layout) as pure JSON on stdout."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.cli import cli
from poetgen.corpus import FORMS, is_held_out, shipped_corpus_path
from poetgen.evaluate import EvalOptions, Evaluation, config_hash, distinct, form_census, perplexity, unknown_report
from poetgen.importers import load_corpus
from poetgen.prosody import table
from poetgen.tokenizer import BOUNDARY

KEYS = ("form_compliance", "rhyme_compliance", "tone_compliance", "copied_line_rate", "distinct_1", "distinct_2",
        "ms_per_poem")


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    from poetgen.bundle import load_bundle

    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def texts(tiny_corpus):
    return [poem.text for poem in load_corpus(tiny_corpus)][:60]


def test_uniform_model_perplexity_is_the_vocabulary_size(tiny_bundle, texts):
    from poetgen.bundle import load_bundle

    uniform = load_bundle(tiny_bundle)   # a copy of its own: the shared fixture stays trained
    logits = uniform.model.get_layer("logits")
    logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])
    tokens = [uniform.tokenizer.encode(t) for t in texts]
    scored = perplexity(uniform.model, tokens, batch_size=16)
    vocab = uniform.tokenizer.vocab_size
    assert scored["perplexity"] == pytest.approx(vocab, rel=1e-5)
    assert scored["bits_per_char"] == pytest.approx(math.log2(vocab), rel=1e-5)
    assert scored["tokens"] == sum(len(t) + 1 for t in tokens)   # every character and each poem's end mark


def test_perplexity_equals_stepping_the_model_one_character_at_a_time(bundle, texts):
    from poetgen.stepper import NumpyStepper

    stepper = NumpyStepper.from_model(bundle.model, bundle.model_config)
    total, count = 0.0, 0
    for text in texts[:8]:
        ids = [BOUNDARY] + bundle.tokenizer.encode(text) + [BOUNDARY]
        state = stepper.initial_state(1)
        for current, following in zip(ids, ids[1:]):
            logits, state = stepper.step(np.array([current]), state)
            logits = logits[0].astype(np.float64)
            total += logits[following] - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
            count += 1
    scored = perplexity(bundle.model, [bundle.tokenizer.encode(t) for t in texts[:8]], batch_size=3)
    assert scored["tokens"] == count
    assert scored["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-4)


def test_unknown_characters_are_counted_not_dropped(bundle):
    known = bundle.tokenizer.index
    report = unknown_report(["龘龘春风。", "𪚥月。"], known)
    expected = sum(ch not in known for ch in "龘龘春风。𪚥月。")
    assert report["count"] == expected >= 3
    assert report["distinct"] == len({ch for ch in "龘龘春风。𪚥月。" if ch not in known})
    assert report["examples"].startswith("龘")   # the most frequent first
    assert report["share"] == pytest.approx(expected / 8, abs=1e-6)


def test_distinct_n_counts_within_lines():
    assert distinct(["白日依山尽", "白日入海流"], 1) == pytest.approx(8 / 10)
    assert distinct(["白日依山尽", "白日入海流"], 2) == pytest.approx(7 / 8)   # 白日 twice; no bigram across lines
    assert distinct([], 2) == 0.0


def test_default_scores_the_held_out_split_and_knows_the_training_lines(bundle, tiny_corpus):
    evaluation = Evaluation(bundle, EvalOptions(samples=1))
    split = bundle.config["train"]["val_split"]
    shipped = load_corpus(shipped_corpus_path())   # Tang only: the figure stays comparable
    assert evaluation.source["subset"] == {"dynasty": "tang", "genre": "all"}
    assert evaluation.texts == [p.text for p in shipped if is_held_out(p.text, split)]
    trained = [p.text for p in load_corpus(tiny_corpus) if not is_held_out(p.text, split)]
    assert not set(evaluation.texts) & set(trained)
    first_line = trained[0].split("，")[0]
    assert first_line in evaluation.training_lines
    assert evaluation.work == len(evaluation.texts) + 5   # four forms and the unconstrained samples


def test_a_reverse_model_is_scored_backwards_as_in_training_and_writes_no_poems(with_reverse, tiny_corpus, tmp_path):
    from poetgen.corpus import write_corpus

    bundle, run = with_reverse
    reverse = bundle / "reverse"
    split = run.config.val_split
    held = tmp_path / "held.jsonl"
    write_corpus([p for p in load_corpus(tiny_corpus) if is_held_out(p.text, split)], held)
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(reverse), "--corpus", str(held), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    trained = json.loads((reverse / "config.json").read_text(encoding="utf-8"))["metrics"]["best_val_perplexity"]
    assert report["perplexity"] == pytest.approx(trained, rel=1e-3)   # the held-out figure of training
    assert report["reverse"] is True and report["samples"] == 0
    text = CliRunner().invoke(cli, ["evaluate", "--model", str(reverse), "--corpus", str(held)])
    assert text.exit_code == 0 and "scored backwards" in text.stdout, text.output
    refused = CliRunner().invoke(cli, ["generate", "--model", str(reverse)])
    assert refused.exit_code == 2 and not refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1 and "reverse model" in refused.stderr


def test_evaluate_json_is_finite_and_layout_is_perfect(tiny_bundle, tiny_corpus, bundle):
    done = subprocess.run([sys.executable, "-m", "poetgen", "evaluate", "--model", str(tiny_bundle),
                           "--corpus", str(tiny_corpus), "--samples", "30", "--format", "json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)   # the whole of stdout is one JSON object
    assert "evaluating" in done.stderr
    assert report["config_hash"] == config_hash(bundle.config)
    assert math.isfinite(report["perplexity"]) and 1 < report["perplexity"] < bundle.tokenizer.vocab_size
    assert report["bits_per_char"] == pytest.approx(math.log2(report["perplexity"]), abs=1e-3)
    texts = [p.text for p in load_corpus(tiny_corpus)]
    assert report["corpus"]["poems"] == len(texts)
    assert report["unknown_chars"]["count"] == sum(ch not in bundle.tokenizer.index for t in texts for ch in t)
    for key in KEYS:
        assert set(report[key]) == set(FORMS)
    for form in FORMS:
        assert report["form_compliance"][form] == 1.0
        assert report["rhyme_compliance"][form] == 1.0
        tone = report["tone_compliance"][form]
        assert 0 <= tone["overall"] <= 1 and all(0 <= v <= 1 for v in tone["by_position"].values())
        assert 0 <= report["copied_line_rate"][form] <= 1
        assert 0 < report["distinct_1"][form] <= 1 and 0 < report["distinct_2"][form] <= 1
        assert math.isfinite(report["ms_per_poem"][form]) and report["ms_per_poem"][form] > 0
    assert list(report["tone_compliance"]["qijue"]["by_position"]) == ["2", "3", "4", "5", "6", "7"]
    free = report["unconstrained"]
    assert set(free["by_form"]) == set(FORMS) and 0 <= free["regular_share"] <= 1
    assert free["regular_share"] == pytest.approx(sum(free["by_form"].values()), abs=1e-3)


def test_form_census_sorts_unconstrained_samples():
    rhyming = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"      # 尤 rhymes
    unrhymed = "白日依山尽，黄河入海流。欲穷千里目，更上一层山。"     # 流 / 山: no shared group
    qijue = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    census = form_census([rhyming, unrhymed, qijue, "白日依山尽。", "白日依山尽，黄河入海流，欲穷千里目，更上一层楼。"],
                         table())
    assert census["regular_share"] == 0.6                # the last two are not regular (length; punctuation)
    assert census["by_form"] == {"wujue": 0.4, "qijue": 0.2, "wulv": 0.0, "qilv": 0.0}
    assert census["rhyme_given_regular"] == round(2 / 3, 4)
    assert 0 < census["tone_given_regular"] <= 1


def test_evaluate_text_report_on_the_default_corpus(tiny_bundle):
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--samples", "5"])
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.stdout and "held-out (0.05)" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in ([f] for f in FORMS)]
    assert [row[1] for row in rows[:4]] == ["1.000"] * 4   # layout column of the table


@pytest.mark.parametrize("args, message", [
    (["--samples", "0"], "--samples"),
    (["--corpus", "/nonexistent/poems.txt"], "no such file"),
    (["--model", "/nonexistent/model"], "model bundle not found"),
])
def test_evaluate_errors_are_one_line(tiny_bundle, args, message):
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tiny_bundle), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


@pytest.fixture(scope="module")
def mixed_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus's poems retagged by position: Tang shi, Song shi, and Song and 五代 ci."""
    import dataclasses

    from poetgen.corpus import write_corpus

    tags = [("tang", "shi", ""), ("song", "shi", ""), ("song", "ci", "浣溪沙"), ("wudai", "ci", "菩萨蛮")]
    poems = [dataclasses.replace(p, dynasty=d, genre=g, tune=t, form="ci" if g == "ci" else p.form)
             for i, p in enumerate(load_corpus(tiny_corpus)[:80]) for d, g, t in [tags[i % 4]]]
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    write_corpus(poems, path)
    return path, poems


@pytest.mark.parametrize("dynasty, genre", [(None, None), ("song", None), (None, "ci"), ("song", "ci"),
                                            ("tang", "shi"), ("all", "shi")])
def test_evaluate_scores_the_chosen_subset_of_a_file(bundle, mixed_corpus, dynasty, genre):
    path, poems = mixed_corpus
    evaluation = Evaluation(bundle, EvalOptions(str(path), samples=1, dynasty=dynasty, genre=genre))
    expected = [p.text for p in poems if dynasty in (None, "all", p.dynasty) and genre in (None, "all", p.genre)]
    assert evaluation.texts == expected and expected
    if (dynasty, genre) != (None, None):
        assert len(expected) < len(poems)   # the filter left some out
    assert evaluation.source["subset"] == {"dynasty": dynasty or "all", "genre": genre or "all"}


def test_evaluate_subset_of_the_shipped_corpus_and_empty_subsets(tiny_bundle, mixed_corpus):
    from poetgen.corpus import shipped_corpus_paths

    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--dynasty", "wudai", "--samples", "1",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    split = 0.05   # the tiny model's val_split
    wudai = [p.text for p in load_corpus(shipped_corpus_paths()[2:]) if p.dynasty == "wudai" and is_held_out(p.text, split)]
    assert report["corpus"]["poems"] == len(wudai) > 0
    assert report["corpus"]["subset"] == {"dynasty": "wudai", "genre": "all"}
    empty = CliRunner().invoke(cli, ["evaluate", "--model", str(tiny_bundle), "--corpus", str(mixed_corpus[0]),
                                     "--dynasty", "tang", "--genre", "ci"])
    assert empty.exit_code == 2
    lines = empty.output.strip().splitlines()
    assert len(lines) == 1 and "no poem to score" in lines[0] and "genre ci" in lines[0]


def test_the_model_alone_is_one_untoned_candidate_at_a_fixed_temperature(tiny_bundle, monkeypatch):
    """Whatever generate's defaults (best-of, --tone), the unconstrained figure samples the model alone."""
    from poetgen.bundle import load_bundle
    from poetgen.evaluate import FREE_TEMPERATURE, EvalOptions, Evaluation
    from poetgen.generate import Generator

    seen = []
    original = Generator.generate

    def spy(self, request):
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(Generator, "generate", spy)
    evaluation = Evaluation(load_bundle(tiny_bundle, keras=False), EvalOptions(samples=3))
    report = {"unconstrained": evaluation.unconstrained_report(Generator(evaluation.bundle))}
    (request,) = seen
    assert request.best_of == 1 and request.tone is False and request.rhyme is False
    assert request.sample.temperature == FREE_TEMPERATURE == report["unconstrained"]["temperature"]


def test_a_conditioned_model_alone_is_asked_for_each_form(tmp_path, monkeypatch):
    """Free verse's control token (<other>) asks a conditioned model for a poem in none of the four forms:
    read alone under it, the shipped model came out regular 18 % of the time, against 99 % when asked."""
    from poetgen.bundle import default_model_dir, load_bundle
    from poetgen.corpus import Poem, write_corpus
    from poetgen.generate import Generator

    monkeypatch.setattr(Evaluation, "_training_lines", lambda self: None)   # the whole shipped corpus: slow
    corpus = tmp_path / "one.jsonl"
    write_corpus([Poem("床前明月光，疑是地上霜。举头望明月，低头思故乡。", form="wujue")], corpus)
    bundle = load_bundle(default_model_dir(), keras=False)
    evaluation = Evaluation(bundle, EvalOptions(str(corpus), samples=4))
    tokenizer, read = bundle.tokenizer, []
    original = Generator.prefix

    def prefix(self, prepared):
        ids = original(self, prepared)
        read.append(tuple(tokenizer.controls[i - tokenizer.char_limit] for i in ids))
        return ids

    monkeypatch.setattr(Generator, "prefix", prefix)
    free = evaluation.unconstrained_report(Generator(bundle))
    assert set(read) == {("<tang>", f"<{form}>") for form in FORMS}
    assert set(free["in_asked_form"]) == set(FORMS) and free["regular_share"] > 0.5
    assert free["regular_share"] == pytest.approx(sum(free["by_form"].values()), abs=1e-3)
    assert evaluation.work == 1 + 2 * len(FORMS) * 4   # the forms with their rules, then alone


def test_evaluate_writes_its_poems_in_generates_precision(tmp_path, monkeypatch):
    """A Generator over the Keras model in memory ran in float32: other poems than `generate` writes by
    default (int8 where the bundle carries its products), at twice its ms_per_poem."""
    from poetgen.bundle import default_model_dir, load_bundle
    from poetgen.corpus import Poem, write_corpus
    from poetgen.generate import Generator

    made = []

    class Seen(Generator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sys.modules["poetgen.evaluate"], "Generator", Seen)
    monkeypatch.setattr(Evaluation, "_training_lines", lambda self: None)   # the whole shipped corpus: slow
    corpus = tmp_path / "one.jsonl"
    write_corpus([Poem("床前明月光，疑是地上霜。举头望明月，低头思故乡。", form="wujue")], corpus)
    report = Evaluation(load_bundle(default_model_dir()), EvalOptions(str(corpus), samples=1)).run()
    generated = Generator.load(default_model_dir())
    assert [g.int8 for g in made] == [generated.int8] and report["int8"] == generated.int8


def test_held_out_scores_a_corpus_file_s_held_out_poems_by_the_model_s_own_split(bundle, tiny_corpus):
    """A user who trained on their own file could score it only whole (training poems included) or score
    the shipped Tang split: never the poems training held out of their file and reported on."""
    poems = load_corpus(tiny_corpus)
    val_split = float(bundle.train_options.get("val_split", 0.02))
    held = [p.text for p in poems if is_held_out(p.text, val_split)]
    assert 0 < len(held) < len(poems)
    evaluation = Evaluation(bundle, EvalOptions(str(tiny_corpus), held_out=True))
    assert evaluation.texts == held and evaluation.source["split"] == f"held-out ({val_split:g})"
    assert Evaluation(bundle, EvalOptions(str(tiny_corpus))).source["split"] == "whole file"
    result = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert "--held-out" in result.output
