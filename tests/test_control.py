"""Conditioning: control tokens in the tokenizer, the training stream, held-out scoring and `generate --style`."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.cli import cli
from poetgen.control import ANY_TUNE, Labels, Prefixer, control_vocabulary, labels_of, tune_token
from poetgen.errors import BadModel
from poetgen.tokenizer import BOUNDARY, Tokenizer
from conftest import REPO, train_tagged


@dataclasses.dataclass(frozen=True)
class Record:   # a corpus poem with the shared contract's tags
    text: str
    form: str = "other"
    dynasty: str = ""
    genre: str = ""
    tune: str = ""


def test_records_without_tags_are_tang_shi():
    assert labels_of(Record("床前明月光，", "wujue")) == Labels("tang", "wujue", "")
    assert labels_of(Record("x", "qilv", "song", "shi")) == Labels("song", "qilv", "")
    assert labels_of(Record("x", "ci", "wudai", "ci", "浣溪沙")) == Labels("ci", "ci", "浣溪沙")


def test_common_tunes_get_tokens_and_the_rest_share_one():
    poems = [Record("x", "ci", "song", "ci", "浣溪沙")] * 3 + [Record("x", "ci", "song", "ci", "鹧鸪天")] * 2 + \
        [Record("x", "ci", "song", "ci", "稀有调")]
    controls = control_vocabulary(poems, top_tunes=2)
    assert tune_token("浣溪沙") in controls and tune_token("鹧鸪天") in controls and tune_token("稀有调") not in controls
    tokenizer = Tokenizer(list("甲乙"), controls=controls)
    prefixer = Prefixer(tokenizer)
    assert prefixer.for_poem(poems[0]) == [tokenizer.control_id("<ci>"), tokenizer.control_id(tune_token("浣溪沙"))]
    assert prefixer.for_poem(poems[-1]) == [tokenizer.control_id("<ci>"), tokenizer.control_id(ANY_TUNE)]
    assert prefixer.for_request("song", "qijue") == [tokenizer.control_id("<song>"), tokenizer.control_id("<qijue>")]


def test_tokenizer_with_controls_round_trips_and_old_files_keep_their_hash(tmp_path):
    plain = Tokenizer(list("春风"))
    record = json.loads(plain.to_json())
    assert "controls" not in record and record["format_version"] == 1   # byte-for-byte as before
    conditioned = Tokenizer(list("春风"), controls=["<tang>", "<wujue>"])
    assert conditioned.hash != plain.hash and conditioned.vocab_size == plain.vocab_size + 2
    conditioned.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json", expected_hash=conditioned.hash)
    assert again.controls == ["<tang>", "<wujue>"] and again.control_id("<wujue>") == 6
    assert again.decode([BOUNDARY, 5, 6, 3]) == "春"   # control ids decode to nothing
    edited = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    edited["controls"] = ["<song>", "<wujue>"]
    (tmp_path / "t.json").write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(BadModel, match="hash"):
        Tokenizer.load(tmp_path / "t.json")


def test_shipped_tokenizer_still_loads_with_its_hash():
    from poetgen.bundle import default_model_dir, read_config

    directory = default_model_dir()
    tokenizer = Tokenizer.load(directory / "tokenizer.json", read_config(directory)["tokenizer_hash"])
    # the shipped model is conditioned: style, form and tune tokens after the characters
    assert {"<tang>", "<song>", "<wujue>", "<ci>"} <= set(tokenizer.controls)
    assert tokenizer.char_limit == tokenizer.vocab_size - len(tokenizer.controls)


def test_prefix_is_read_after_the_boundary_before_the_first_character():
    from poetgen.rules import Prompt
    from poetgen.sampling import SampleOptions, Shape, sample

    from poetgen.stepper import Stepper

    class Recorder(Stepper):   # a stepper that records what it is fed
        def __init__(self):
            self.fed = []

        def initial_state(self, batch):
            return [np.zeros((batch, 1), np.float32)]

        def advance(self, ids, state):
            self.fed.append(int(ids[0]))
            return state

    stepper = Recorder()
    sample(stepper, [Prompt([7, 8], 1)], Shape(None, 2, frozenset()), 1, SampleOptions(seed=0),
           prefix=[40, 41])
    assert stepper.fed == [BOUNDARY, 40, 41, 7]
    sample(stepper, [Prompt([7, 8], 1)], Shape(None, 2, frozenset()), 1, SampleOptions(seed=0),
           prefix=[40, 41])
    assert stepper.fed == [BOUNDARY, 40, 41, 7, 41, 7]   # the prefix's state is kept: read once


@pytest.fixture(scope="module")
def conditioned_bundle(tmp_path_factory):
    return train_tagged(tmp_path_factory, "conditioned")


def test_conditioned_training_prefixes_every_poem(conditioned_bundle):
    out, run = conditioned_bundle
    tokenizer = run.tokenizer
    assert {"<tang>", "<song>", "<ci>", tune_token("浣溪沙"), tune_token("蝶恋花")} <= set(tokenizer.controls)
    stream = run.train_stream
    starts = np.flatnonzero(stream[:-1] == BOUNDARY) + 1
    styles = {tokenizer.control_id(f"<{s}>") for s in ("tang", "song", "ci")}
    assert all(stream[i] in styles for i in starts[:-1])          # style first …
    assert all(stream[i + 1] >= tokenizer.char_limit for i in starts[:-1])   # … then form or tune
    assert len(run.held_out_prefixes) == len(run.held_out) and all(len(p) == 2 for p in run.held_out_prefixes)
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["metrics"]["best_val_perplexity"] > 1


@pytest.mark.parametrize("style", ["tang", "song", "ci"])
def test_generate_style_on_a_conditioned_model(conditioned_bundle, style):
    out, run = conditioned_bundle
    result = CliRunner().invoke(cli, ["generate", "--model", str(out), "--style", style, "-n", "4", "--seed", "1",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    poems = json.loads(result.output)["poems"]
    assert len(poems) == 4
    for poem in poems:   # only characters: no control token is ever sampled
        assert poem["text"] and all(ch in run.tokenizer.index for ch in poem["text"])
        assert poem["layout_ok"] is not False
    assert json.loads(result.output)["form"] == ("free" if style == "ci" else "wujue")


def test_the_prefix_changes_what_a_conditioned_model_predicts(conditioned_bundle):
    from poetgen.generate import Generator

    out, _ = conditioned_bundle
    generator = Generator.load(out)
    states = {}
    for style in ("tang", "ci"):
        state = generator.stepper.initial_state(1)
        for token in [BOUNDARY] + generator.prefixer.for_request(style, "wujue"):
            state = generator.stepper.advance(np.array([token]), state)
        states[style] = generator.stepper.logits(state)
    assert not np.allclose(states["tang"], states["ci"])


def test_an_unconditioned_model_ignores_style(tiny_bundle):
    runner = CliRunner()
    args = ["generate", "--model", str(tiny_bundle), "-n", "3", "--seed", "5"]
    plain, song = runner.invoke(cli, args), runner.invoke(cli, args + ["--style", "song"])
    assert plain.exit_code == song.exit_code == 0
    assert plain.output == song.output


def test_unknown_style_is_one_line():
    result = CliRunner().invoke(cli, ["generate", "--style", "yuan"])
    assert result.exit_code == 2 and "yuan" in result.output


def test_a_tune_the_corpus_names_with_another_gets_its_joined_token():
    """The corpus spells 忆江南 as 望江南・忆江南 (181 ci), and the model has a token for that: it was
    given <anytune>, so the model wrote the tune blind (1 % of its ci rhymed alone, 68 % with the token)."""
    from poetgen.control import tune_label
    from poetgen.generate import Generator
    from poetgen.request import PoemRequest
    from poetgen.tokenizer import Tokenizer
    from poetgen.tunes import tune_table

    tokenizer = Tokenizer.load(REPO / "checkpoints" / "default" / "tokenizer.json")
    assert tune_label(tokenizer, tune_table().get("忆江南").names) == "望江南・忆江南"
    assert tune_label(tokenizer, tune_table().get("一斛珠").names) == "醉落魄・一斛珠"
    assert tune_label(tokenizer, tune_table().get("浣溪沙").names) == "浣溪沙"   # its own token first
    generator = Generator.load()
    prefix = generator.prefix(generator.prepare(PoemRequest(tune="忆江南")))
    assert tokenizer.control_id("<tune:望江南・忆江南>") in prefix
    assert tokenizer.control_id("<anytune>") not in prefix


def test_no_style_reads_the_tang_prefix_and_a_tune_the_ci_one(conditioned_bundle):
    """`style` left out (None) is tang for shi: on a conditioned model the prefix says so (a test on an
    unconditioned model, whose prefix is empty for every style, could not tell)."""
    from poetgen.generate import Generator
    from poetgen.request import PoemRequest

    generator = Generator.load(conditioned_bundle[0])
    prefix = lambda **kw: generator.prefix(generator.prepare(PoemRequest(**kw)))   # noqa: E731
    assert prefix() == prefix(style="tang") != prefix(style="song")
    assert prefix(tune="浣溪沙") == prefix(tune="浣溪沙", style="ci") != prefix(style="ci")[:1] + prefix()[1:]
    assert prefix(tune="浣溪沙")[0] == generator.tokenizer.control_id("<ci>")


def test_a_model_trained_on_traditional_tune_labels_gets_its_token():
    """A corpus imported before tune names were simplified gave <tune:蝶戀花>: `--tune 蝶恋花` looked for
    the simplified names only and fed <anytune>. The traditional names are looked for after them."""
    import json

    from poetgen.generate import Generator
    from poetgen.tokenizer import Tokenizer, _fields

    record = json.loads((REPO / "checkpoints" / "default" / "tokenizer.json").read_text(encoding="utf-8"))
    record["controls"] = [c.replace("<tune:蝶恋花>", "<tune:蝶戀花>") for c in record["controls"]]
    generator = Generator.load()
    generator.tokenizer = Tokenizer(*_fields(record))
    assert generator._tune_label("蝶恋花") == "蝶戀花"
    assert generator._tune_label("浣溪沙") == "浣溪沙"   # a simplified token still comes first
