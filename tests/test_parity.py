"""The CLI's Generator and the SavedModel's in-graph `generate` on the same requests: every poem from
both passes the project's checker, and each rule gets the same verdict on both sides."""

from __future__ import annotations

import pytest

from poetgen.checks import check_poem
from poetgen.corpus import normalize_text
from poetgen.errors import BadInput
from poetgen.export import ExportOptions, export
from poetgen.generate import PoemRequest
from poetgen.layout import FORMS, clauses, layout_of
from poetgen.prosody import table
from poetgen.sampling import SampleOptions

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
        cli = generator.generate(PoemRequest(form=form, sample=SampleOptions(temperature=0, seed=0)))["poems"][0]
        assert graph_poem(poet, form, temperature=0.0) == cli["text"]


@pytest.mark.parametrize("field, request_args, graph_args", [
    ("form", {"form": "sonnet"}, {"form": "sonnet"}),
    ("acrostic", {"form": "wujue", "acrostic": "春秋"}, {"form": "wujue", "acrostic": "春秋"}),
    ("prompt", {"form": "wujue", "prompt": "龘"}, {"form": "wujue", "prompt": "龘"}),
    ("prompt", {"form": "wujue", "prompt": "白日，依山"}, {"form": "wujue", "prompt": "白日，依山"}),
    ("prompt", {"form": "wujue", "prompt": "白" * 21}, {"form": "wujue", "prompt": "白" * 21}),
    ("acrostic", {"form": "wujue", "acrostic": "龘龘龘龘"}, {"form": "wujue", "acrostic": "龘龘龘龘"}),
    ("top_p", {"sample": SampleOptions(top_p=0.0)}, {"top_p": 0.0}),
])
def test_bad_input_is_refused_on_both_sides_naming_the_field(generator, poet, field, request_args, graph_args):
    import tensorflow as tf

    with pytest.raises(BadInput):
        generator.generate(PoemRequest(**request_args))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assertion failed: \[{field}"):
        graph_poem(poet, **graph_args)
