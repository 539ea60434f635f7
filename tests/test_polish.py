"""Polishing (--polish): lines rewritten only when both models read the whole poem better, every check the
poem passed kept, the prompt and acrostic untouched, the same poems for the same seed."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from poetgen.checks import check_poem
from poetgen.cli import cli
from poetgen.errors import BadInput
from poetgen.layout import clauses
from poetgen.polish import _repeats
from poetgen.request import PoemRequest
from poetgen.rerank import Reading
from poetgen.sampling import Resume, SampleOptions, row_streams
from poetgen.tokenizer import BOUNDARY


@pytest.fixture(scope="module")
def ranked(with_reverse):
    from poetgen.generate import Generator

    return Generator.load(with_reverse[0])


def read(generator, ids, prefix=()):
    """The forward model's reading of a poem's ids (and the boundary), as polishing reads it."""
    return Reading.read(generator.stepper, [*ids, BOUNDARY], list(prefix))


def forward_mean(generator, prepared, text):
    return read(generator, generator.tokenizer.encode(text), generator.prefix(prepared)).mean()


def joint(generator, prepared, texts):
    forward = np.array([forward_mean(generator, prepared, text) for text in texts])
    return 0.5 * forward + 0.5 * generator.reverse_scorer.mean_log_probs(texts, generator.prefix(prepared))


def test_polishing_raises_the_joint_score_and_keeps_every_check(ranked):
    request = PoemRequest(form="wujue", n=6, polish=2, sample=SampleOptions(seed=5))
    polished = ranked.generate(request)["poems"]
    plain = ranked.generate(PoemRequest(form="wujue", n=6, sample=SampleOptions(seed=5)))["poems"]
    prepared = ranked.prepare(request)
    prosody = ranked.tables.prosody
    before = joint(ranked, prepared, [p["text"] for p in plain])
    after = joint(ranked, prepared, [p["text"] for p in polished])
    changed = 0
    for old, new, old_score, new_score in zip(plain, polished, before, after):
        assert (new["polished"] == 0) == (new["text"] == old["text"])
        if new["text"] == old["text"]:
            continue
        changed += 1
        assert new_score > old_score
        was, now = check_poem(old["text"], "wujue", prosody), check_poem(new["text"], "wujue", prosody)
        assert now.layout_ok and now.rhyme_group == was.rhyme_group and (now.rhyme_ok or not was.rhyme_ok)
        assert (now.tone_score or 0) >= (was.tone_score or 0)
        assert all(a <= b for a, b in zip(_repeats(new["text"]), _repeats(old["text"])))
        differing = sum(a != b for a, b in zip(clauses(old["text"]), clauses(new["text"])))
        assert 1 <= differing <= new["polished"]
        # the record is rescored: its logprob is the forward model's mean over the whole poem
        assert new["logprob"] == pytest.approx(forward_mean(ranked, prepared, new["text"]), abs=1e-4)
        assert new["score"] == pytest.approx(0.5 * new["logprob"] + 0.5 * new["reverse_logprob"]
                                             + (0.5 if now.rhyme_ok else 0) + 0.5 * (now.tone_score or 0), abs=2e-4)
    assert changed >= 2   # the tiny model's poems leave room to polish: the test must see it happen


def line_scores(generator, prepared, text):
    """Each line's mean log-probability under both models, weighted as the poem's score (0.5 each)."""
    forward = read(generator, generator.tokenizer.encode(text), generator.prefix(prepared)).log_probs
    backward = generator.reverse_scorer.reading(text, generator.controls(prepared)).log_probs
    scores, start = [], 0
    for line in clauses(text):
        end = start + len(line)
        scores.append(0.5 * forward[start:end].mean() + 0.5 * backward[len(text) - end:len(text) - start].mean())
        start = end
    return scores


@pytest.mark.parametrize("lines", [1, 2])
def test_polish_lines_visits_only_the_weakest_lines(ranked, lines):
    """--polish-lines k: a round visits the k lines both models read worst, so only they can change,
    and at most k a round."""
    request = PoemRequest(form="qijue", n=8, polish=1, polish_lines=lines, sample=SampleOptions(seed=5))
    prepared = ranked.prepare(request)
    plain = ranked.generate(dataclasses.replace(request, polish=0, polish_lines=0))["poems"]
    polished = ranked.generate(request)["poems"]
    changed = 0
    for old, new in zip(plain, polished):
        scores = line_scores(ranked, prepared, old["text"])
        weakest = set(np.argsort(scores)[:lines].tolist())
        differing = {i for i, (a, b) in enumerate(zip(clauses(old["text"]), clauses(new["text"]))) if a != b}
        assert differing <= weakest and new["polished"] <= lines
        changed += bool(differing)
    assert changed >= 1   # the test must see a line replaced
    assert ranked.generate(dataclasses.replace(request, polish_lines=4))["poems"] == \
        ranked.generate(dataclasses.replace(request, polish_lines=0))["poems"]   # as many as the poem has: all


def test_polish_lines_never_picks_a_line_the_prompt_fixes(ranked, monkeypatch):
    from poetgen.polish import Polisher

    visited, visit = [], Polisher._visit
    monkeypatch.setattr(Polisher, "_visit", lambda self, prepared, current, i, *rest:
                        visited.append(i) or visit(self, prepared, current, i, *rest))
    head = "白日依山尽，黄河入海流。"
    poems = ranked.generate(PoemRequest(prompt=head, form="wujue", n=4, polish=1, polish_lines=2,
                                        sample=SampleOptions(seed=3)))["poems"]
    assert all(p["text"].startswith(head) for p in poems)
    assert sorted(set(visited)) == [2, 3] and len(visited) == 8   # the two open lines of each poem
    with pytest.raises(BadInput, match="polish-lines"):
        PoemRequest(polish_lines=-1).validate()


def test_polishing_is_deterministic_and_leaves_prompt_and_acrostic(ranked):
    request = PoemRequest(prompt="春风", acrostic="春花秋月", form="wujue", n=4, polish=1,
                          sample=SampleOptions(seed=8))
    first, again = ranked.generate(request)["poems"], ranked.generate(request)["poems"]
    assert [p["text"] for p in first] == [p["text"] for p in again]
    for poem in first:
        lines = clauses(poem["text"])
        assert poem["text"].startswith("春风") and [line[0] for line in lines] == list("春花秋月")


def test_a_prompt_of_whole_lines_is_never_rewritten(ranked):
    head = "白日依山尽，黄河入海流。欲穷千里目，"
    poems = ranked.generate(PoemRequest(prompt=head, form="wujue", n=3, polish=2,
                                        sample=SampleOptions(seed=2)))["poems"]
    assert all(p["text"].startswith(head) for p in poems)


def test_polishing_without_a_reverse_model_uses_the_forward_model(generator):
    assert generator.reverse_scorer is None
    poems = generator.generate(PoemRequest(form="qijue", n=3, polish=1, sample=SampleOptions(seed=4)))["poems"]
    assert all(check_poem(p["text"], "qijue", generator.tables.prosody).layout_ok for p in poems)
    assert all("reverse_logprob" not in p for p in poems)


def test_polishing_a_ci_keeps_its_tune(ranked):
    from poetgen.ci_checks import check_ci

    result = ranked.generate(PoemRequest(tune="浣溪沙", n=2, polish=1, sample=SampleOptions(seed=1)))
    variant = ranked.prepare(PoemRequest(tune="浣溪沙")).variant
    for poem in result["poems"]:
        assert check_ci(poem["text"], variant, ranked.tables.prosody, ranked.tables.ci_rhyme).layout_ok
        assert "polished" in poem


def test_repeats_count_the_body_and_the_line_ends():
    assert _repeats("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。") == (0, 0)
    # 开 ends lines 1 and 4 (a rhyme used twice), 秋 is repeated inside
    assert _repeats("仲夏橘花开，秋深水渐回。山川秋色近，天际夕阳开。") == (2, 1)


def test_free_verse_cannot_be_polished(tiny_bundle):
    with pytest.raises(BadInput, match="polish"):
        PoemRequest(form="free", polish=1).validate()
    result = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--form", "free", "--polish", "1"])
    assert result.exit_code != 0
    assert "polish" in result.output and "Traceback" not in result.output


def test_cli_polish_reports_the_lines_replaced(with_reverse):
    result = CliRunner().invoke(cli, ["generate", "--model", str(with_reverse[0]), "--polish", "1", "-n", "2",
                                      "--seed", "3", "--format", "json"])
    assert result.exit_code == 0, result.output
    poems = json.loads(result.output)["poems"]
    assert all(isinstance(p["polished"], int) for p in poems)


def test_the_forward_reading_is_the_models_likelihood(with_reverse, generator):
    """The polisher's forward score of a poem is the Keras model's mean log-likelihood of it (and the
    boundary after it), and a splice read from its first differing position scores as read whole."""
    from poetgen.bundle import load_bundle
    from poetgen.model import sequence_log_likelihood

    bundle = load_bundle(with_reverse[0])
    texts = [p["text"] for p in generator.generate(PoemRequest(n=3, sample=SampleOptions(seed=6)))["poems"]]
    for text in texts:
        ids = generator.tokenizer.encode(text)
        total, count = sequence_log_likelihood(bundle.model, [ids])
        assert read(generator, ids).mean() == pytest.approx(total / count, abs=1e-3)
    first, others = texts[0], np.array([generator.tokenizer.encode(t) + [BOUNDARY] for t in texts])
    others[:, :6] = generator.tokenizer.encode(first[:6])          # the same first line, their own rest
    reading = read(generator, generator.tokenizer.encode(first))
    continued = reading.continued(generator.stepper, others, 6)   # read from the second line on, as one batch
    for row, ahead in zip(others, continued):   # each is the reading made afresh, states and all
        afresh = read(generator, row[:-1].tolist())
        np.testing.assert_allclose(ahead.log_probs, afresh.log_probs, atol=1e-5)
        assert ahead.mean() == pytest.approx(afresh.mean(), abs=1e-5) and ahead.previous == afresh.previous
        assert len(ahead.states) == len(row) == len(afresh.states)
        for mine, theirs in zip(ahead.states[6:], afresh.states[6:]):
            assert all(a.shape == (1, b.shape[1]) for a, b in zip(mine, theirs))
            np.testing.assert_allclose(np.concatenate(mine, 1), np.concatenate(theirs, 1), atol=1e-5)


@pytest.mark.parametrize("head", ["", "春风吹", "白日依山尽，", "白日依山尽，黄河入海流。欲"])
def test_versions_resumed_from_a_reading_are_the_versions_stepped_from_the_start(tiny_bundle, head):
    """Polishing samples a line's versions from the state its reading kept after the earlier lines; in
    int8 (each row quantized alone) that gives exactly the poems stepped through those lines again."""
    from poetgen.generate import Generator

    quantized = Generator.load(tiny_bundle, int8=True)
    prepared = quantized.prepare(PoemRequest(prompt=head, form="wujue", n=4, sample=SampleOptions(seed=9)))
    streams = row_streams(9, 0, 4)
    whole = quantized.sample_texts(prepared, streams, 24)
    reading = read(quantized, quantized.tokenizer.encode(whole[0]))
    at = len(prepared.prompt)
    assert quantized.sample_texts(prepared, streams, 24, Resume(at, reading.states[at], reading.previous[at])) == whole
    # the one-graph step's reading (its logits read at each step) is the products' (the output layer
    # read in blocks) within int8's rounding
    quantized.stepper.fused = None
    products = read(quantized, quantized.tokenizer.encode(whole[0]))
    np.testing.assert_allclose(products.log_probs, reading.log_probs, atol=0.02)
    assert products.mean() == pytest.approx(reading.mean(), abs=2e-3)


def test_resuming_needs_forced_positions(generator):
    prepared = generator.prepare(PoemRequest(prompt="春风", sample=SampleOptions(seed=1)))
    state = generator.stepper.initial_state(1)
    with pytest.raises(ValueError, match="not forced"):
        generator.sample_texts(prepared, row_streams(1, 0, 2), 24, Resume(4, state, 3))


def test_the_python_api_passes_polish_on(with_reverse):
    import poetgen

    poems = poetgen.load(with_reverse[0]).generate(form="wujue", n=2, seed=3, polish=1)
    assert all(isinstance(poem.extra["polished"], int) for poem in poems)
    with pytest.raises(BadInput, match="polish"):
        poetgen.load(with_reverse[0]).generate(form="free", polish=1)


def test_the_reverse_reading_keeps_its_states_and_reads_splices_from_their_line(ranked):
    """Polishing reads a poem backwards once; a splice is read from its changed line on (read backwards,
    the later lines come first and are the same), and an accepted one continues that reading."""
    scorer = ranked.reverse_scorer
    texts = [p["text"] for p in ranked.generate(PoemRequest(form="wujue", n=4, sample=SampleOptions(seed=12)))["poems"]]
    first = texts[0]
    splices = [first[:6] + t[6:12] + first[12:] for t in texts[1:]]
    reading = scorer.reading(first, [])
    assert reading.mean() == pytest.approx(float(scorer.mean_log_probs([first], [])[0]), abs=1e-5)
    unchanged = len(first) - 12                     # the splices differ in line 2 only
    continued = scorer.continued(reading, splices, unchanged)
    np.testing.assert_allclose([r.mean() for r in continued], scorer.mean_log_probs(splices, []), atol=1e-5)
    for splice, ahead in zip(splices, continued):   # an accepted splice keeps its row's reading as it is
        np.testing.assert_allclose(ahead.log_probs, scorer.reading(splice, []).log_probs, atol=1e-5)
        assert reading.log_probs.shape == ahead.log_probs.shape == (len(first) + 1,)


def test_every_line_of_the_longest_tune_is_visited(ranked, monkeypatch):
    """A line's versions are sampled after the lines before it, given as their prompt: the prompt limit
    must hold the longest tune (莺啼序), or its last lines would never be polished."""
    from poetgen.polish import Polisher
    from poetgen.request import MAX_PROMPT
    from poetgen.tunes import tune_table

    longest = max((v.layout.length, v.number, t.name) for t in tune_table().tunes for v in t.variants)
    assert longest[0] <= MAX_PROMPT
    heads, versions = [], Polisher._versions

    def recorded(self, prepared, head, end, resume, stream):
        heads.append(len(head))
        return versions(self, prepared, head, end, resume, stream)

    monkeypatch.setattr(Polisher, "_versions", recorded)
    poem = ranked.generate(PoemRequest(tune=longest[2], variant=longest[1], polish=1, sample=SampleOptions(seed=2)))
    lines = len(ranked.prepare(PoemRequest(tune=longest[2], variant=longest[1])).variant.layout.line_lengths)
    assert len(heads) == lines and max(heads) > 200 and poem["poems"][0]["text"]


def test_polished_results_score_every_poem_alike(ranked):
    """With --polish every poem's logprob is the forward model's mean over the whole poem, whether a line
    changed or not (a sampled poem's counts its sampled characters only); a poem the prompt fills whole
    still gets a real score."""
    from poetgen.rerank import Reading

    result = ranked.generate(PoemRequest(form="wujue", n=6, polish=1, sample=SampleOptions(seed=2)))
    prepared = ranked.prepare(PoemRequest(form="wujue"))
    for poem in result["poems"]:
        ids = ranked.tokenizer.encode(poem["text"]) + [BOUNDARY]
        whole = Reading.read(ranked.stepper, ids, ranked.prefix(prepared)).mean()
        assert poem["logprob"] == pytest.approx(whole, abs=1e-3)
    full = ranked.generate(PoemRequest(prompt="白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", polish=1))
    assert full["poems"][0]["logprob"] < 0


@pytest.fixture(scope="module")
def shipped():
    from poetgen.generate import Generator

    return Generator.load()


def holds_its_pattern(poem: dict, form: str, prosody) -> bool:
    """The poem fits the 平仄 pattern its record names at every strict position, and in a 入韵 pattern
    line 1 ends in the rhyme lines' group."""
    from poetgen.layout import layout_of
    from poetgen.metre import strict_positions, tone_fits, tone_patterns

    layout, lines = layout_of(form), clauses(poem["text"])
    pattern = tone_patterns(layout.uniform_length, layout.line_count)[poem["tone_pattern"]]
    fits = all(tone_fits(line[col], pattern[i][col], prosody)
               for i, line in enumerate(lines) for col in strict_positions(layout.uniform_length))
    first = not poem["tone_pattern"].endswith("入韵") or poem["rhyme_group"] in prosody.rhyme_groups(lines[0][-2])
    return fits and first


def test_polished_shipped_poems_keep_the_pattern_they_report(shipped):
    """A version of line 1 was sampled under a freshly drawn pattern: 11 of these 40 wujue ended in
    none of the four (line 1's end off its pattern's tone, or a 入韵 line 1 off the rhyme), while
    their records still named the old one."""
    prosody = shipped.tables.prosody
    poems = shipped.generate(PoemRequest(form="wujue", n=40, polish=2, sample=SampleOptions(seed=3)))["poems"]
    assert sum(p["polished"] for p in poems) >= 40   # the test must see lines replaced, line 1 among them
    assert [i for i, poem in enumerate(poems) if not holds_its_pattern(poem, "wujue", prosody)] == []


def test_polishing_never_reads_the_poems_own_lines_as_a_users_prompt(shipped):
    """The model writes traditional forms its vocabulary holds (沈 ends line 2 of this qilv). Polishing
    once sent the lines before a visited one through the prompt's normalisation, which made 沈 into 沉,
    a character in no rhyme group, and refused the poem's own line as a bad prompt."""
    from poetgen import ranking

    text = ("竹沼清涟满碧浔，烟波人静绿浮沈。明河水静知何处，落月笙吹喜欲吟。"
            "雨迸久花惊夏口，浪飞轻练见秋岑。五更摇落门前见，寂寞村东鼓吹深。")
    prepared = shipped.prepare(PoemRequest(form="qilv", polish=2, sample=SampleOptions(seed=1)))
    check = check_poem(text, "qilv", shipped.tables.prosody)
    assert check.rhyme_ok and "沈" in text
    record = ranking.poem_record(text, "qilv", -4.0, check, "仄起入韵")
    poem = shipped.polish(prepared, {"poems": [record], "ms_per_poem": 0.0})["poems"][0]
    assert poem["polished"] >= 1 and poem["rhyme_ok"] and holds_its_pattern(poem, "qilv", shipped.tables.prosody)


def test_polish_lines_without_polish_is_one_line_naming_both_options(tiny_bundle):
    result = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--polish-lines", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--polish-lines" in result.output and "--polish 1 or more" in result.output
