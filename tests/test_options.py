"""Options derived from the dataclasses: one default, range and choice list for the CLI, the API and serve."""

from __future__ import annotations

import dataclasses
import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.batching import BatchOptions
from poetgen.cli import cli
from poetgen.errors import BadInput
from poetgen.evaluate import EvalOptions
from poetgen.export import ExportOptions
from poetgen.model import ModelConfig
from poetgen.cli_options import click_type, option
from poetgen.options import check_settings, field_help, setting
from poetgen.request import PoemRequest
from poetgen.sampling import DRAWN_SEED_LIMIT, SampleOptions
from poetgen.train import TrainConfig
from poetgen.train_setup import refuse_multiworker

# command -> {click parameter name: (dataclass, field)} for every option a dataclass owns
OWNED = {
    "train": {f.name: (TrainConfig, f.name) for f in dataclasses.fields(TrainConfig)},
    "generate": {**{name: (PoemRequest, name) for name in ("form", "acrostic", "theme", "rhyme", "tone",
                                                           "no_repeat", "repeat_penalty", "n", "best_of",
                                                           "max_chars")},
                 **{f.name: (SampleOptions, f.name) for f in dataclasses.fields(SampleOptions)}},
    "serve": {"max_rows": (BatchOptions, "max_rows"), "max_wait_ms": (BatchOptions, "max_wait_ms"),
              "max_queue": (BatchOptions, "max_queue")},
    "export": {"out": (ExportOptions, "out"), "fmt": (ExportOptions, "format"), "force": (ExportOptions, "force")},
    "evaluate": {name: (EvalOptions, name) for name in ("corpus", "dynasty", "genre", "samples", "seed")},
}


@pytest.mark.parametrize("command", sorted(OWNED))
def test_every_option_has_its_dataclass_default_range_and_choices(command):
    params = {param.name: param for param in cli.commands[command].params}
    for name, (cls, field_name) in OWNED[command].items():
        field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
        param = params[name]
        if field.default is dataclasses.MISSING:
            assert param.required, name
        else:
            assert param.default == field.default, name
        if "choices" in field.metadata:
            assert tuple(param.type.choices) == field.metadata["choices"], name
        allowed = field.metadata.get("range")
        if allowed is not None:
            expected = click_type(allowed, int if isinstance(param.type, click.IntRange) else float)
            assert (param.type.min, param.type.max, param.type.min_open, param.type.max_open) == \
                (expected.min, expected.max, expected.min_open, expected.max_open), name


def test_a_changed_default_reaches_the_option():
    @dataclasses.dataclass(frozen=True)
    class Knobs:
        width: int = setting(7, low=1, high=9)      # how wide
        mode: str = setting("b", choices=("a", "b"))   # which mode
        loud: bool = False                          # shout

    @click.command()
    @option(Knobs, "width")
    @option(Knobs, "mode")
    @option(Knobs, "loud")
    def show(width, mode, loud):
        click.echo(f"{width} {mode} {loud}")

    assert CliRunner().invoke(show, []).output == "7 b False\n"
    assert CliRunner().invoke(show, ["--width", "3", "--mode", "a", "--loud"]).output == "3 a True\n"
    refused = CliRunner().invoke(show, ["--width", "10"])
    assert refused.exit_code == 2 and "1<=x<=9" in refused.output
    helped = CliRunner().invoke(show, ["--help"]).output
    assert "How wide." in helped and "[default: 7; 1<=x<=9]" in helped and "Shout." in helped


def test_help_comes_from_the_field_comment():
    assert field_help(TrainConfig, "seq_len") == "Characters per window."
    assert field_help(SampleOptions, "top_k") == "Sample among the k likeliest (0: off)."
    assert field_help(TrainConfig, "val_split").startswith("Held-out")          # a hyphenated word
    assert field_help(TrainConfig, "strategy").startswith("Distribution;")   # a word before a mark
    assert field_help(TrainConfig, "precision").startswith("mixed_bfloat16")  # a value stays as it is


@pytest.mark.parametrize("instance, field", [
    (SampleOptions(temperature=-1), "temperature"), (SampleOptions(temperature=float("nan")), "temperature"),
    (SampleOptions(top_p=0), "top_p"), (SampleOptions(seed=2**63), "seed"),
    (PoemRequest(n=0), "n"), (PoemRequest(best_of=65), "best_of"), (TrainConfig(out="x", cell="lstn"), "cell"),
    (TrainConfig(out="x", val_split=0.5), "val_split"), (BatchOptions(max_rows=0), "max_rows"),
    (EvalOptions(samples=0), "samples"), (ExportOptions(out="x", format="onnx"), "format"),
])
def test_check_settings_names_the_field(instance, field):
    with pytest.raises(BadInput) as refused:
        check_settings(instance)
    assert refused.value.field == field and str(refused.value).startswith(field.replace("_", "-"))


@pytest.mark.parametrize("options, field", [
    (dict(layers=0), "layers"), (dict(cell="transformer"), "cell"), (dict(dropout=1.0), "dropout")])
def test_model_config_refusals_are_bad_input_with_a_field(options, field):
    with pytest.raises(BadInput) as refused:
        ModelConfig(vocab_size=10, **options).validate()
    assert refused.value.field == field


def test_train_config_never_lets_a_plain_value_error_escape(monkeypatch):
    import importlib

    train = importlib.import_module("poetgen.train")   # `poetgen.train` the attribute is the API function
    monkeypatch.setattr(train, "check_settings", lambda config: None)   # only the model's own check is left
    with pytest.raises(BadInput) as refused:
        TrainConfig(out="x", units=0).validate()
    assert refused.value.field == "units"


def test_serve_limits_share_the_request_defaults_and_ranges():
    pytest.importorskip("pydantic")
    from poetgen.serve_body import GenerateBody

    body, request, sample = GenerateBody(), PoemRequest(), SampleOptions()
    assert (body.form, body.rhyme, body.tone, body.n) == (request.form, request.rhyme, request.tone, request.n)
    assert (body.temperature, body.top_k, body.top_p, body.seed) == \
        (sample.temperature, sample.top_k, sample.top_p, sample.seed)
    for name in ("top_p", "seed"):
        constraints = {type(c).__name__: c for c in GenerateBody.model_fields[name].metadata}
        allowed = next(f for f in dataclasses.fields(SampleOptions) if f.name == name).metadata["range"]
        assert getattr(constraints["Gt" if allowed.low_open else "Ge"], "gt" if allowed.low_open else "ge") == \
            allowed.low


def test_drawn_seeds_follow_one_rule(generator, monkeypatch):
    import poetgen.sampling as sampling

    class HugeEntropy:
        entropy = 2**100 + 12345

    monkeypatch.setattr(np.random, "SeedSequence", lambda: HugeEntropy())
    prepared = generator.prepare(PoemRequest())
    assert prepared.seed == (2**100 + 12345) % DRAWN_SEED_LIMIT
    seen = []
    monkeypatch.setattr(sampling, "row_generators", lambda seed, first, batch: seen.append(seed) or
                        [np.random.default_rng(seed)] * batch)
    sampling.sample(generator.stepper, [], prepared.shape, 1, SampleOptions())
    assert seen == [prepared.seed]


def test_multiworker_cluster_is_refused_in_one_line(tiny_corpus, tmp_path, monkeypatch):
    cluster = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    result = CliRunner().invoke(cli, ["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "poetgen: error: multi-worker training is not supported (TF_CONFIG names 2 machines): "
        "MultiWorkerMirroredStrategy does not work with Keras 3; unset TF_CONFIG and train on one machine "
        "(--strategy mirrored uses all of its GPUs or CPUs)"]
    assert not (tmp_path / "run").exists()


def test_a_one_machine_tf_config_is_accepted():
    refuse_multiworker({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})})
    refuse_multiworker({})
    with pytest.raises(BadInput):
        refuse_multiworker({"TF_CONFIG": "not json"})


def test_multiworker_is_no_strategy_choice():
    result = CliRunner().invoke(cli, ["train", "--out", "x", "--strategy", "multiworker"])
    assert result.exit_code == 2 and "'multiworker' is not one of 'default', 'mirrored'" in result.output


def test_serve_maps_refusals_by_their_field_not_their_words():
    pytest.importorskip("starlette")
    from poetgen.serve_body import body_field

    assert body_field(BadInput("the prompt line 1 starts with 春, but …", field="acrostic")) == "acrostic"
    assert body_field(BadInput("top-p must be in (0, 1]", field="top_p")) == "top_p"
    assert body_field(BadInput("batch-size must be at least 1", field="batch_size")) == "request"   # not in the body
    assert body_field(BadInput("the model's vocabulary lacks '，'")) == "request"


def test_the_python_api_signature_carries_the_dataclass_defaults():
    import inspect

    from poetgen.api import Poet

    defaults = {**{f.name: f.default for f in dataclasses.fields(PoemRequest)},
                **{f.name: f.default for f in dataclasses.fields(SampleOptions)}}
    parameters = inspect.signature(Poet.generate).parameters
    for name, parameter in parameters.items():
        if name in defaults:
            assert parameter.default == defaults[name], name
    assert {"prompt", "n", "seed", "temperature", "top_p"} <= set(parameters)


@pytest.mark.parametrize("args, option", [
    (["serve", "--batch-wait-ms", "nan"], "--batch-wait-ms"), (["serve", "--request-timeout", "nan"], "--request-timeout"),
    (["generate", "--temperature", "nan"], "--temperature"), (["generate", "--reverse-weight", "-inf"], "--reverse-weight"),
])
def test_a_number_that_is_not_finite_is_refused_under_the_options_own_name(args, option):
    """nan passed click's range check and was refused later under the field's name (max-wait-ms, timeout-s)."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and f"'{option}'" in result.output, result.output
