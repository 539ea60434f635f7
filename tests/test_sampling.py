"""Forced-logit tests: a fake model that strongly prefers given ids, so every outcome is exact."""

import numpy as np
import pytest

from poetgen import rule_base, rules
from poetgen.errors import BadInput
from poetgen.layout import layout_of
from poetgen.metre import strict_columns
from poetgen.sampling import SampleOptions, Shape, choose, sample
from poetgen.stepper import Stepper
from poetgen.tokenizer import BOUNDARY

COMMA, PERIOD = 3, 4
VOCAB = 40


class FakeStepper(Stepper):
    """Logits favour `preferred[pos]` (one id per step) by a large margin, then id order."""

    def __init__(self, preferred):
        self.preferred = preferred
        self.pos = 0

    def initial_state(self, batch):
        return [np.zeros((batch, 1), np.float32)]
    def advance(self, ids, state):
        self.pos += 1
        return [np.zeros((len(ids), 1), np.float32)]

    def logits(self, state, out=None):
        logits = np.tile(-np.arange(VOCAB, dtype=np.float32) / 10, (len(state[0]), 1))
        if self.preferred:
            logits[:, self.preferred[min(self.pos - 1, len(self.preferred) - 1)]] += 100.0
        return logits

    def logit_at(self, state, ids):
        return self.logits(state)[np.arange(len(ids)), ids]


def wujue_shape():
    return Shape(layout_of("wujue"), 120, frozenset([COMMA, PERIOD]))


def layout(batch):
    return rules.Layout([COMMA, PERIOD] * 2, [COMMA, PERIOD], batch)


def run(preferred, active, batch=1, shape=None, options=SampleOptions(temperature=0)):
    return sample(FakeStepper(preferred), active, shape or wujue_shape(), batch, options).ids


def test_layout_forces_punctuation_and_bans_specials():
    ids = run([COMMA] * 30, [layout(2)], batch=2)   # the model wants punctuation everywhere
    for row in ids:
        assert list(row[5::6]) == [COMMA, PERIOD, COMMA, PERIOD]
        chars = np.delete(row, np.s_[5::6])
        assert not set(chars) & {0, 1, 2, COMMA, PERIOD}


def test_no_repeat_within_a_line():
    ids = run([10] * 30, [layout(1), rules.NoRepeat()])[0]
    for line in ids.reshape(4, 6)[:, :5]:
        assert len(set(line)) == 5
        assert line[0] == 10


def test_no_repeat_fixed_layout_path_matches_the_per_row_path():
    """At a fixed layout every row is at the same column, so NoRepeat takes one fancy-index write;
    it must forbid exactly what the per-row path (free verse) forbids."""
    rng = np.random.default_rng(0)
    history = rng.integers(5, VOCAB, (6, 9))
    for pos, column in ((9, 3), (9, 0), (4, 4), (2, 5), (9, -1)):
        step = rule_base.Step(pos, np.zeros(6, np.int64), np.full(6, column), layout_of("wujue"), history[:, :pos])
        fixed, per_row = np.zeros((6, VOCAB), np.float32), np.zeros((6, VOCAB), np.float32)
        rules.NoRepeat().apply(fixed, step)
        rules.NoRepeat().apply(per_row, rule_base.Step(pos, step.line, step.column, None, step.history))
        np.testing.assert_array_equal(fixed, per_row)
        back = max(min(column, pos), 0)
        assert (fixed == rule_base.NEG).sum() == sum(len(set(row)) for row in history[:, pos - back:pos])


def test_acrostic_forces_line_heads():
    ids = run([10] * 30, [layout(1), rules.Acrostic([20, 21, 22, 23], 1)])[0]
    assert list(ids[0::6]) == [20, 21, 22, 23]


def test_prompt_is_forced_first():
    ids = run([10] * 30, [rules.Prompt([30, 31, 32], 1), layout(1)])[0]
    assert list(ids[:3]) == [30, 31, 32]


def test_rhyme_keeps_one_group_and_no_repeated_rhyme():
    membership = np.zeros((VOCAB, 3), bool)
    membership[[11, 12, 13, 14], 0] = True      # group 0
    membership[[12, 15, 16], 1] = True          # group 1 (12 is in both)
    preferred = [12 if pos in (10, ) else 15 if pos == 22 else 10 for pos in range(24)]
    ids = run(preferred, [layout(1), rules.Rhyme(membership, np.array([False]))])[0]
    endings = [ids[10], ids[22]]
    assert endings[0] == 12
    assert endings[1] in (11, 13, 14, 15, 16) and endings[1] != 12


def test_no_rhyme_takes_line_one_ending_again_even_where_line_one_need_not_rhyme():
    """重韵: a line 1 outside the rhyme (first_line False) that ends in a rhyming character must not
    see a later rhyme take the same character; line 1's ending itself is free."""
    membership = np.zeros((VOCAB, 1), bool)
    membership[[12, 13, 14], 0] = True
    preferred = [12 if pos in (4, 10, 22) else 10 for pos in range(24)]   # the model wants 12 at each line end
    for first_line in (False, True):
        ids = run(preferred, [layout(1), rules.Rhyme(membership, np.array([first_line]))])[0]
        assert ids[4] == 12                                   # line 1 ends as the model wants
        assert ids[10] in (13, 14) and ids[22] in (13, 14) and ids[10] != ids[22]


def test_repeated_penalises_each_character_the_poem_holds_but_not_punctuation():
    repeatable = np.ones(VOCAB, np.float32)
    repeatable[[0, 1, 2, COMMA, PERIOD]] = 0
    history = np.array([[10, 11, 10, COMMA], [12, 12, PERIOD, 13]])
    step = rule_base.Step(4, np.zeros(2, np.int64), np.zeros(2, np.int64), layout_of("wujue"), history)
    logits = np.zeros((2, VOCAB), np.float32)
    rules.Repeated(repeatable, 1.5).apply(logits, step)
    expected = np.zeros((2, VOCAB), np.float32)
    expected[0, [10, 11]] = expected[1, [12, 13]] = -1.5   # once per character, however often it came
    np.testing.assert_array_equal(logits, expected)
    rules.Repeated(repeatable, 1.5).apply(logits, rule_base.Step(0, step.line, step.column, None, history[:, :0]))
    np.testing.assert_array_equal(logits, expected)       # nothing written yet: nothing penalised


def test_repeated_steers_away_from_used_characters_softly():
    """The model prefers 10 at every position and 11 a little less: a penalty above the margin makes
    each line take a character the poem has not used; the hard NoRepeat bans only within a line."""
    preferred = [10] * 24
    ids = run(preferred, [layout(1), rules.NoRepeat()])[0]
    lines = ids.reshape(4, 6)[:, :5]
    assert all(line[0] == 10 for line in lines)              # each line starts over with the favourite
    repeatable = np.ones(VOCAB, np.float32)
    repeatable[[0, 1, 2, COMMA, PERIOD]] = 0
    ids = run(preferred, [layout(1), rules.NoRepeat(), rules.Repeated(repeatable, 1000.0)])[0]
    chars = np.delete(ids, np.s_[5::6])
    assert len(set(chars)) == len(chars) == 20               # no character twice in the poem
    assert list(ids[5::6]) == [COMMA, PERIOD, COMMA, PERIOD]


def test_tone_enforces_strict_positions():
    level = np.zeros(VOCAB, bool)
    level[20:] = True
    masks = {"平": level, "仄": ~level}
    pattern = ["仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"]
    ids = run([10] * 30, [layout(1), rules.Tone(masks, [pattern])])[0]
    for line, tones in zip(ids.reshape(4, 6)[:, :5], pattern):
        for column in strict_columns(tones):   # 仄仄仄平平's third and 平平仄仄平's first too
            assert (line[column] >= 20) == (tones[column] == "平")
    # a fixed 仄 at 平平仄仄平's first column: its third is 平 instead (拗救)
    ids = run([10] * 30, [layout(1), rules.Tone(masks, [pattern], rescued=frozenset({(1, 0)}))])[0]
    assert ids[6 + 2] >= 20 and ids[6 + 1] >= 20


def test_tone_writes_a_character_of_one_tone_alone_where_a_line_could_end_in_three_level_tones():
    """仄仄仄平平's third and 平平仄仄平's first keep the line from 三平尾 and 孤平: a character the table
    reads in both tones (长: 长安 平, 长大 仄) may be the wrong one there, so it is not written there, nor
    at the end of a line that ends 仄 (人间 would end it 平); at the other strict columns it still is (思
    in 相思), and a rescued third is 平 alone too."""
    level = np.zeros(VOCAB, bool)
    level[20:] = True
    oblique = ~level
    oblique[10] = level[10] = True           # the model's favourite reads both ways
    masks = {"平": level, "仄": oblique}
    pattern = ["仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"]
    lines = run([10] * 30, [layout(1), rules.Tone(masks, [pattern])])[0].reshape(4, 6)[:, :5]
    assert lines[3][2] != 10 and lines[3][2] < 20 and lines[1][0] != 10 and lines[1][0] >= 20
    assert list(lines[0][:4]) == [10] * 4 and lines[1][1] == lines[3][3] == 10   # at other strict columns it is
    assert all(line[4] != 10 and line[4] < 20 for line in (lines[0], lines[2]))   # a 仄 line end: 仄 alone
    ids = run([10] * 30, [layout(1), rules.Tone(masks, [pattern], rescued=frozenset({(1, 0)}))])[0]
    assert ids[6 + 2] >= 20 and ids[6 + 2] != 10


def test_theme_nudges_planned_character():
    ids = run([], [layout(1), rules.Theme([25, 26, 27, 28], [25, 26, 27, 28])],
              options=SampleOptions(temperature=0))
    # With no preference the lowest free id would win; each line's planned keyword wins instead.
    for line, planned in zip(ids[0].reshape(4, 6), [25, 26, 27, 28]):
        assert planned in line


def test_impossible_rules_fall_back_to_essentials():
    membership = np.zeros((VOCAB, 1), bool)    # no character rhymes at all
    ids = run([10] * 30, [layout(1), rules.Rhyme(membership, np.array([False]))])[0]
    assert list(ids[5::6]) == [COMMA, PERIOD, COMMA, PERIOD]
    # the rows the rhyme left nothing are redone with the essential rules alone: the model's favourite, not
    # a padding id the dead rule would leave
    assert list(np.delete(ids, np.s_[5::6])) == [10] * 20


def test_free_verse_stops_at_boundary():
    preferred = [10, 11, 12, 13, 14, COMMA, 15, BOUNDARY]
    ids = run(preferred, [rules.FreeVerse([COMMA, PERIOD])], shape=Shape(None, 50, frozenset([COMMA, PERIOD])))
    assert list(ids[0]) == [10, 11, 12, 13, 14, COMMA, 15, BOUNDARY]


def test_free_verse_at_its_cap_closes_a_clause_no_mark_has_closed():
    """A model that never writes a mark stopped at the cap mid-clause; it writes a stop mark there now,
    only where no mark followed the prompt (a clause already closed is left to cut_to_clause)."""
    shape, stops = Shape(None, 6, frozenset([COMMA, PERIOD])), [PERIOD]
    capped = rules.FreeVerse([COMMA, PERIOD], max_chars=6, stop_ids=stops)
    assert list(run([10, 11, 12, 13, 14, 15], [capped], shape=shape)[0]) == [10, 11, 12, 13, 14, PERIOD]
    assert list(run([10, 11, COMMA, 13, 14, 15], [capped], shape=shape)[0]) == [10, 11, COMMA, 13, 14, 15]
    prompt = [rules.Prompt([10, 11, 12, 13, COMMA], 1), rules.FreeVerse([COMMA, PERIOD], max_chars=6, stop_ids=stops,
                                                                        kept=5)]
    assert list(run([10] * 6, prompt, shape=shape)[0]) == [10, 11, 12, 13, COMMA, BOUNDARY]   # the prompt's clause


def test_top_k_and_top_p_restrict_choices():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    rngs = [np.random.default_rng(i) for i in range(1)]
    picks_k = {int(choose(logits.copy(), SampleOptions(1.0, top_k=2), [np.random.default_rng(i)])[0])
               for i in range(200)}
    picks_p = {int(choose(logits.copy(), SampleOptions(1.0, top_p=0.6), [np.random.default_rng(i)])[0])
               for i in range(200)}
    assert picks_k == {0, 1} and picks_p == {0, 1}
    assert choose(logits.copy(), SampleOptions(0.0), rngs)[0] == 0


def test_extreme_temperatures_keep_the_rules():
    """A temperature so small that 1 / T overflows samples greedily, as 0 does; masked ids stay masked
    at the highest temperature allowed (100; more is refused)."""
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    masked = logits.copy()
    masked[0, 0] = rule_base.NEG
    for temperature in (1e-39, 1e-7):
        assert choose(logits.copy(), SampleOptions(temperature), [np.random.default_rng(1)])[0] == 0
    picks = {int(choose(masked.copy(), SampleOptions(100.0), [np.random.default_rng(i)])[0]) for i in range(100)}
    assert picks == {1, 2, 3}
    with pytest.raises(BadInput, match="temperature"):
        SampleOptions(100.5).validate()


@pytest.mark.parametrize("options", [SampleOptions(-1), SampleOptions(float("nan")), SampleOptions(top_k=-1),
                                     SampleOptions(top_p=0), SampleOptions(top_p=1.5)])
def test_bad_sampling_options(options):
    with pytest.raises(BadInput):
        options.validate()


def test_two_level_sampling_matches_the_distribution():
    rng = np.random.default_rng(0)
    probs = rng.random(150).astype(np.float32) ** 4
    probs[[0, 64, 149]] = 0                       # never drawn
    batch = np.tile(probs, (4000, 1))
    rngs = [np.random.default_rng([1, i]) for i in range(4000)]
    with np.errstate(divide="ignore"):
        logits = np.log(batch)
    chosen = choose(logits, SampleOptions(1.0), rngs)
    counts = np.bincount(chosen, minlength=150)
    expected = 4000 * probs / probs.sum()
    assert counts[[0, 64, 149]].sum() == 0
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max()) + 3


def test_row_by_row_draw_picks_what_the_batched_search_picks():
    """Few rows take _draw one row at a time; it must pick exactly the batched search's ids."""
    from poetgen.sampling import FEW_ROWS, _inverse_cdf, padded_buffer

    rng = np.random.default_rng(3)
    probs = padded_buffer(64, 300)
    probs[:, :300] = rng.random((64, 300)).astype(np.float32) ** 6
    probs[:8, 100:] = 0                                   # mass in early blocks only
    probs[8:16, :250] = 0                                 # mass in the last, padded block only
    batched = _inverse_cdf(probs, [np.random.default_rng([2, i]) for i in range(64)])
    assert len(probs) >= FEW_ROWS
    one_by_one = [_inverse_cdf(probs[i:i + 1], [np.random.default_rng([2, i])])[0] for i in range(64)]
    assert batched.tolist() == [int(i) for i in one_by_one]
    assert (probs[np.arange(64), batched] > 0).all()


def test_row_by_row_draw_agrees_with_the_batched_search_at_block_boundaries():
    """_draw scaled the uniform by a float32 total (NumPy 2 keeps a Python float times a float32 in
    float32), the batched search by a float64 one: a draw near a boundary took the next id alone and not
    in a batch of four (`generate --seed 9` and `-n 4` wrote different first poems)."""
    from poetgen.stepper import row_sums
    from poetgen.sampling import BLOCK, FEW_ROWS, _inverse_cdf, padded_buffer

    class Fixed:
        def __init__(self, value):
            self.value = value

        def random(self):
            return self.value

    rng = np.random.default_rng(5)
    for _ in range(20):
        probs = padded_buffer(1, 9 * BLOCK - 7)
        probs[0, :9 * BLOCK - 7] = rng.random(9 * BLOCK - 7).astype(np.float32) ** 6
        blocks = np.cumsum(row_sums(probs[0].reshape(-1, BLOCK)))   # as the search sums them, in float32
        total = float(blocks[-1])
        edges = [float(edge) for edge in blocks] + [float(blocks[2]) + float(within) for within in
                                                    np.cumsum(probs[0, 3 * BLOCK:4 * BLOCK])[::4]]
        for edge in edges:   # uniforms at and around the sums the search compares with, where rounding decides
            for uniform in (edge / total, np.nextafter(edge / total, 0), np.nextafter(edge / total, 1)):
                if not 0 <= uniform < 1:
                    continue
                alone = _inverse_cdf(probs, [Fixed(uniform)])[0]
                batched = _inverse_cdf(np.repeat(probs, FEW_ROWS, axis=0), [Fixed(uniform)] * FEW_ROWS)[0]
                assert alone == batched, uniform


def test_row_sums_of_a_row_do_not_depend_on_its_batch():
    """The log-normaliser (hence logprob and best-of scores) and the draw sum rows: a row's sum must be
    the same bits alone as among other rows (one matrix-vector product rounds it by the batch's shape)."""
    from poetgen.stepper import row_sums
    from poetgen.sampling import padded_buffer

    rng = np.random.default_rng(4)
    batch = padded_buffer(11, 9398)
    batch[:, :9398] = np.exp(rng.standard_normal((11, 9398))).astype(np.float32)
    together = row_sums(batch)
    assert [float(s) for s in together] == [float(row_sums(batch[i:i + 1])[0]) for i in range(11)]
    np.testing.assert_allclose(together, batch.astype(np.float64).sum(axis=1), rtol=1e-5)


class RowPaced(FakeStepper):
    """Row r's state holds r; row 0 wants the boundary from position 6 on, the other rows from 12 on."""

    def initial_state(self, batch):
        return [np.arange(batch, dtype=np.float32)[:, None]]

    def advance(self, ids, state):
        self.pos += 1
        return state

    def logits(self, state, out=None):
        rows = len(state[0])
        logits = np.tile(-np.arange(VOCAB, dtype=np.float32) / 10, (rows, 1))
        logits[:, 10 + self.pos % 7] += 5.0
        ends = np.where(state[0][:, 0] == 0, 6, 12) <= self.pos
        logits[ends, BOUNDARY] += 50.0
        return logits


def test_a_finished_free_verse_row_scores_only_its_own_characters():
    """A row that has ended stops adding to its log-probability and count: in a batch it scores as alone
    (its score had kept growing with the later rows' steps, so best-of ranked free verse wrongly)."""
    shape, active = Shape(None, 40, frozenset([COMMA, PERIOD])), [rules.FreeVerse([COMMA, PERIOD])]
    options = SampleOptions(temperature=0)
    alone = sample(RowPaced([]), active, shape, 1, options)
    both = sample(RowPaced([]), active, shape, 2, options)
    assert list(both.ids[0][:alone.ids.shape[1]]) == list(alone.ids[0]) and both.ids.shape[1] > alone.ids.shape[1]
    assert both.sampled[0] == alone.sampled[0] < both.sampled[1]
    assert both.log_probs[0] == pytest.approx(alone.log_probs[0])
