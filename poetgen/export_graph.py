"""The SavedModel's endpoints as one tf.Module: `serve` (ids → next-character logits) and `generate`
(a whole poem in-graph: layout, prompt fitting, acrostic, 平水韵 rhyme, 平仄 tone, no-repeat, the
generate default's repeat penalty, top-k/top-p),
of a shi form or of a ci tune's variant (词林正韵 rhyme groups, 叶, the tune's 平/仄), after the control
prefix a conditioned model reads (the one `poetgen generate` feeds).

The rules mirror poetgen.rules one for one and read the same layout spec (poetgen.layout, unrolled by
poetgen.graph_tables); the request is read by poetgen.graph_request, PoemGraph's base. Bad input raises
InvalidArgumentError whose message starts with the field's name.
It writes no files.
"""

from __future__ import annotations

import numpy as np

from poetgen.corpus import HALF_WIDTH   # as normalize_text reads a prompt: one spec
from poetgen.graph_request import GraphRequest, check, one_value, within
from poetgen.graph_tables import (FIRST_LINE_RHYMES, SPACES, GraphVocabulary, LayoutTables, TONE_BITS, TONE_GUARD,
                                  TONE_RESCUE, TONE_STRICT, rhyme_columns)
from poetgen.layout import MARKS
from poetgen.model import ModelConfig, states_per_layer
from poetgen.quiet import import_tensorflow
from poetgen.request import REPEAT_PENALTY
from poetgen.shi_rules import TONE_NUDGE
from poetgen.tokenizer import BOUNDARY, UNK

tf = import_tensorflow()

NEG = float("-inf")


def _table(keys, values, default, value_dtype=tf.int64):
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values, value_dtype))
    return tf.lookup.StaticHashTable(initializer, default_value=default)


class _Untracked:
    """Holds the Keras model out of tf.Module's tracking: the SavedModel tracks the raw tf.Variables
    instead, which TF1-style loaders (saved_model_cli run, TensorFlow Serving) restore; Keras 3's
    variable wrappers alone leave them unrestored there ("Could not find variable …")."""

    def __init__(self, model):
        self.model = model


def _widened(table):
    """A row gathered from a narrow table (int8/int16 keep the export small) as int32."""
    return tf.cast(table, tf.int32) if table.dtype in (tf.int8, tf.int16) else table


class PoemGraph(GraphRequest, tf.Module):
    """The exported model. Its functions use only TensorFlow ops, so loading needs no poetgen."""

    def __init__(self, model, model_config: ModelConfig, vocabulary: GraphVocabulary, layouts: LayoutTables,
                 prefixes: np.ndarray | None = None):
        super().__init__(name="poetgen")
        self.keras = _Untracked(model)      # (batch, time) ids → (batch, time, vocab) logits, no dropout
        self.weights = [w.value for w in model.weights]   # the tf.Variables both endpoints read
        self.cells = [model.get_layer(f"rnn_{i}").cell for i in range(model_config.layers)]
        self.states_per_layer = states_per_layer(model_config.cell)
        self.state_count = self.states_per_layer * model_config.layers
        self.units = model_config.units
        self.projection = model_config.projection        # a linear layer before the output (0: none)
        self.tied = model_config.tie_embeddings          # output = the embedding table read in reverse
        self.vocab_size = model_config.vocab_size
        self.char_ids = _table(list(vocabulary.lookup), list(vocabulary.lookup.values()), UNK)
        self.mark_index = _table(list(MARKS), list(range(len(MARKS))), -1)
        self.half_width = _table(list(HALF_WIDTH), list(HALF_WIDTH.values()), "", tf.string)
        self.form_index = _table(list(layouts.aliases), list(layouts.aliases.values()), -1)
        self.left_out = _table(["\0", *layouts.left_out], [0] + [1] * len(layouts.left_out), 0)   # tunes not exported
        self.entry_tune = tf.constant(layouts.entry_tune)
        self.form_names = ", ".join(layouts.names[:int(np.sum(~layouts.entry_tune))])
        self.default_forms = (layouts.aliases["wujue"], layouts.aliases["wulv"])
        self.entry_first = tf.constant(layouts.entry_first)
        self.entry_count = tf.constant(layouts.entry_count)
        self.entry_usual = tf.constant(layouts.entry_usual)
        # (entries, prefix length): the control ids fed after the boundary (none for an unconditioned model)
        self.prefixes = tf.constant(np.zeros((len(layouts.entry_first), 0), np.int32) if prefixes is None
                                    else prefixes.astype(np.int32))
        self.chars = tf.constant(vocabulary.chars)
        self.banned = tf.constant(vocabulary.banned)
        # rhyme columns: the 平水韵 groups, then the 词林正韵 codes (graph_tables.rhyme_columns)
        self.membership = tf.constant(np.concatenate([vocabulary.rhyme_membership, vocabulary.ci_membership], 1))
        self.shi_groups = vocabulary.rhyme_membership.shape[1]   # the 平水韵 columns come first
        kinds, flip, fallback = rhyme_columns(vocabulary.rhyme_membership.shape[1])
        self.rhyme_kinds, self.flip, self.fallback_kinds = tf.constant(kinds), tf.constant(flip), tf.constant(fallback)
        self.can_be = tf.constant(vocabulary.can_be)
        only = vocabulary.can_be & (vocabulary.can_be.sum(axis=0) == 1)   # read in that tone alone
        self.tone_rows = tf.constant(np.concatenate([vocabulary.can_be, only]))   # (4, vocab): 平, 仄, 平 alone, 仄 alone
        self.tone_known = tf.constant(vocabulary.tone_known)
        # the words that fix a two-tone character's reading, by their first id (tables.VocabularyTables.word_tones)
        self.word_starts, self.word_seconds, self.word_codes = (tf.constant(a) for a in vocabulary.word_tones)
        # the pairs that fix a line end's level group, by their first id (tables.VocabularyTables.rhyme_words)
        self.rhyme_starts, self.rhyme_lasts, self.rhyme_groups = (tf.constant(a) for a in vocabulary.rhyme_words)
        self.mark_ids = tf.constant(vocabulary.mark_ids)
        self.first_line_rhymes = tf.constant(FIRST_LINE_RHYMES)
        self.positions = int(layouts.line.shape[1])
        self.layout = {name: tf.constant(getattr(layouts, name)) for name in (
            "length", "line_count", "line", "column", "char_slots", "line_starts", "line_ends", "end_ids",
            "accepted", "rhyme_group", "rhyme_xie", "group_kind", "first_line_end", "has_tones", "tone",
            "partial_acrostic", "copy_from")}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")], autograph=False)
    def serve(self, ids):
        """Logits of the character that follows each row of ids (start a poem with the boundary id 2); an
        id outside the vocabulary is refused (a negative one read another row of the embedding)."""
        size = self.vocab_size
        known = check(tf.reduce_all((ids >= 0) & (ids < size)), f"ids must be in [0, {size}), not",
                       tf.boolean_mask(ids, (ids < 0) | (ids >= size)))
        # no ids: no character to follow (the RNN failed on its empty list, naming none of this)
        some = check(tf.shape(ids)[1] > 0, "ids must hold at least one id per row (start a poem with the "
                                            f"boundary id {BOUNDARY}), not shape", tf.shape(ids))
        with tf.control_dependencies([known, some]):
            return {"logits": self.keras.model(tf.identity(ids), training=False)[:, -1, :]}

    # generate's inputs are one value each, of any shape holding one (TF Serving's row format sends [1]):
    # declared with no shape, since a declared [] is folded away and a [2] prompt was read as one text
    @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="prompt"),
                                  tf.TensorSpec(None, tf.string, name="form"),
                                  tf.TensorSpec(None, tf.float32, name="temperature"),
                                  tf.TensorSpec(None, tf.int32, name="top_k"),
                                  tf.TensorSpec(None, tf.float32, name="top_p"),
                                  tf.TensorSpec(None, tf.int64, name="seed"),
                                  tf.TensorSpec(None, tf.string, name="acrostic"),
                                  tf.TensorSpec(None, tf.bool, name="tone")], autograph=False)
    def generate(self, prompt, form, temperature, top_k, top_p, seed, acrostic, tone):
        """One poem of `form` starting with `prompt`; same seed and inputs, same poem. The poem has the
        prompt's shape: a scalar, or [1] for TF Serving's row format, whose answer needs a batch dimension."""
        shape = tf.shape(prompt)
        prompt, form, temperature, top_k, top_p, seed, acrostic, tone = (
            one_value(value, name) for value, name in ((prompt, "prompt"), (form, "form"),
                                                         (temperature, "temperature"), (top_k, "top_k"),
                                                         (top_p, "top_p"), (seed, "seed"), (acrostic, "acrostic"),
                                                         (tone, "tone")))
        options = [within(value, name) for value, name in ((temperature, "temperature"), (top_k, "top_k"),
                                                             (top_p, "top_p"), (seed, "seed"))]
        heads = self._normalised(acrostic)
        options += [check(~tf.strings.regex_full_match(text, f"[{SPACES}]+"), f"{name} is blank: {advice}")
                    for text, name, advice in ((acrostic, "acrostic", "give the characters that start the lines, "
                                                "or leave it out"),
                                               (form, "form", "give a form or a tune, or leave it out"))]
        f, entry, form_ok = self._form(form, tf.size(heads))
        with tf.control_dependencies([form_ok]):
            layout = {name: _widened(tf.gather(table, f)) for name, table in self.layout.items()}
            prompted, prompt_ok = self._prompt(self._normalised(prompt), layout)
            forced, acrostic_ok = self._acrostic(heads, prompted, layout)
        forced = self._end_marks(forced, layout)
        fitting, rhymes_possible = self._fitting_patterns(forced, layout)   # the patterns the fixed characters allow
        shi = tf.equal(layout["group_kind"][0], 0)   # shi only (kind 0: 平水韵)
        rhyme_ok = check(rhymes_possible | ~shi,
                          "prompt ends a rhyming line in a character that shares no 平水韵 level-tone group with the "
                          "other rhyme ends it gives; change it (the CLI's --no-rhyme keeps it)")
        ends = tf.boolean_mask(forced, (layout["rhyme_group"] >= 0) & (forced >= 0))   # line 1's end aside
        distinct_ok = check(tf.equal(tf.size(tf.unique(ends).y), tf.size(ends)) | ~shi,
                             "prompt ends two rhyming lines in the same character: no rhyme is used twice; change "
                             "one (the CLI's --no-rhyme keeps them)")
        drawn = tf.random.stateless_uniform([], tf.stack([seed, tf.constant(-1, tf.int64)]), 0,
                                            tf.reduce_sum(tf.cast(fitting, tf.int32)), tf.int32)
        pattern = tf.cast(tf.gather(tf.where(fitting)[:, 0], drawn), tf.int32)
        tone = tone & layout["has_tones"]
        first_line = tone & tf.gather(self.first_line_rhymes, pattern) & layout["first_line_end"]
        rhyme_group = tf.where(first_line, 0, layout["rhyme_group"])   # 入韵: line 1 joins the shi's group
        codes = tf.gather(layout["tone"], pattern)          # the pattern's tones and flags (graph_tables.TONE_*)
        asked = tone & (codes >= 0)
        # the tone (0 平, 1 仄), or 2 + the tone at a guard column: that tone alone (rows of self.tone_rows)
        guard = 2 * tf.cast(tf.bitwise.bitwise_and(codes, TONE_GUARD) > 0, codes.dtype)
        required = tf.where(asked, tf.bitwise.bitwise_and(codes, TONE_BITS) + guard, -tf.ones_like(codes))
        strict = asked & (tf.bitwise.bitwise_and(codes, TONE_STRICT) > 0)
        # 拗救 (metre.rescue): a rescue's third column is 平 alone where its first holds a fixed non-平 character
        rescued = asked & (tf.bitwise.bitwise_and(codes, TONE_RESCUE) > 0) & self._fixed_not_ping(forced, 2)
        required = tf.where(rescued, 2, required)
        strict = strict | rescued
        prompt_rhymes = self._ci_rhymes_possible(prompted, layout) | shi
        ci_rhyme_ok = [check(prompt_rhymes, "prompt puts a character at a rhyme of the tune that cannot rhyme with "
                              "the tune's tone there or with the rhymes given before it; change it (the CLI's "
                              "--no-rhyme keeps it)"),
                       check(self._ci_rhymes_possible(forced, layout) | shi | ~prompt_rhymes,
                              "acrostic puts a character at a rhyme of the tune that cannot rhyme with the tune's "
                              "tone there or with the rhymes given before it; change it (the CLI's --no-rhyme "
                              "keeps it)")]
        with tf.control_dependencies(options + prompt_ok + acrostic_ok + [rhyme_ok, distinct_ok] + ci_rhyme_ok):
            ids = self._loop(forced, layout, rhyme_group, required, strict, temperature, top_k, top_p, seed,
                             tf.gather(self.prefixes, entry))
        return {"poem": tf.reshape(tf.strings.reduce_join(tf.gather(self.chars, ids[:layout["length"]])), shape)}

    def _loop(self, forced, layout, rhyme_group, required, strict, temperature, top_k, top_p, seed, prefix):
        """The stepping loop: the control prefix, then one model step per position, forced, copied (a 叠
        phrase) or sampled; returns the poem's ids."""

        def body(pos, previous, state, history, allowed, used, seen):
            logits, state = self._step(previous, state)
            column = tf.maximum(layout["column"][pos], 0)
            rhyme = (rhyme_group[pos], layout["rhyme_xie"][pos])
            before = tf.maximum(pos - 1, 0)   # at pos 0 `previous` is the boundary or a control id: no word
            asked = tf.stack([tf.where(strict[pos], required[pos], -1), tf.where(strict[before], required[before], -1)])
            edited = self._edit(logits, previous, history[pos - column:pos], rhyme, allowed, used,
                                required[pos], strict[pos], seen, self._word_off(previous, asked))
            sampled = self._sample(edited, temperature, top_k, top_p, seed, pos)
            copied = layout["copy_from"][pos]   # a 叠 phrase repeats what its source took (ci_rules.CiRepeat)
            sampled = tf.where(copied >= 0, history[tf.maximum(copied, 0)], sampled)
            chosen = tf.where(forced[pos] >= 0, forced[pos], sampled)
            allowed, used = self._observe_rhyme(previous, chosen, rhyme, allowed, used, layout["first_line_end"][pos])
            is_chosen = tf.equal(tf.range(self.vocab_size), chosen)
            seen = seen | (is_chosen & ~self.banned)   # characters only, as poetgen.tables.repeatable
            history = tf.tensor_scatter_nd_update(history, [[pos]], [chosen])
            return pos + 1, chosen, state, history, allowed, used, seen

        previous = tf.constant(BOUNDARY)
        state = tuple(tf.zeros([1, self.units]) for _ in range(self.state_count))
        for k in range(self.prefixes.shape[1]):   # read after the boundary, before the first character
            _, state = self._step(previous, state)
            previous = prefix[k]
        groups = self._group_start(forced, layout)[0]
        start = (tf.constant(0), previous, state, tf.fill([self.positions], BOUNDARY), groups,
                 tf.zeros([self.vocab_size], tf.bool), tf.zeros([self.vocab_size], tf.bool))
        result = tf.while_loop(lambda pos, *_: pos < layout["length"], body, start)
        return result[3]

    def _step(self, previous, state):
        """One model step with the model's own layers: its embedding, each layer's cell, its projection
        and its output (the tied embedding read in reverse, or the logits layer)."""
        model = self.keras.model
        x = model.get_layer("embedding")(tf.reshape(previous, [1]))
        new_state = []
        for i, cell in enumerate(self.cells):
            mine = list(state[i * self.states_per_layer:(i + 1) * self.states_per_layer])
            x, states = cell(x, mine if len(mine) > 1 else mine[0], training=False)
            new_state += list(states) if isinstance(states, (list, tuple)) else [states]
        if self.projection:
            x = model.get_layer("projection")(x)
        output = model.get_layer("embedding")(x, reverse=True) if self.tied else model.get_layer("logits")(x)
        logits = output[0]
        return logits, tuple(tf.ensure_shape(s, [1, self.units]) for s in new_state)

    def _group_columns(self, allowed, rhyme):
        """The rhyme columns a character must have here: its group's, read through 叶 at a 叶 slot."""
        group, xie = rhyme
        columns = allowed[tf.maximum(group, 0)]
        return tf.where(xie, tf.gather(columns, self.flip), columns)

    def _pair_tones(self, forced):
        """(positions,) the tone (0 平, 1 仄) that the fixed characters' pairs (prosody words) read each
        fixed character in, -1 where none does or two disagree (poetgen.shi_rules.pair_tones)."""
        n = tf.shape(forced)[0]
        before = tf.concat([[-1], forced[:-1]], 0)
        after = tf.concat([forced[1:], [-1]], 0)

        def read(firsts, seconds, of_first):
            """Per position, the tone a pair (firsts, seconds) fixes for its first (of_first) or second."""
            valid = (firsts >= 0) & (seconds >= 0)
            starts = tf.gather(self.word_starts, tf.maximum(firsts, 0))
            ends = tf.where(valid, tf.gather(self.word_starts, tf.maximum(firsts, 0) + 1), starts)
            spans = tf.ragged.range(starts, ends)
            entries, rows = spans.flat_values, tf.cast(spans.value_rowids(), tf.int32)
            codes = tf.cast(tf.gather(self.word_codes, entries), tf.int32)
            match = tf.equal(tf.gather(self.word_seconds, entries), tf.gather(seconds, rows)) & tf.equal(codes >= 2, of_first)
            tones = tf.where(match, tf.bitwise.bitwise_and(codes, 1), -1)
            return tf.math.unsorted_segment_max(tf.concat([tones, -tf.ones([n], tf.int32)], 0),
                                                tf.concat([rows, tf.range(n)], 0), n)

        second, first = read(before, forced, False), read(forced, after, True)
        return tf.where((second >= 0) & (first >= 0) & tf.not_equal(second, first), -1, tf.maximum(second, first))

    def _word_off(self, previous, asked):
        """(vocab,) bool: the characters whose word with `previous` reads one of the two off the tone its
        column asks (word_rules.WordTone); `asked`: the tone asked here and one position back (rows of
        self.tone_rows: 0/2 平, 1/3 仄; -1 none)."""
        entries = tf.range(self.word_starts[previous], self.word_starts[previous + 1])
        codes = tf.cast(tf.gather(self.word_codes, entries), tf.int32)
        # codes >= 2: the pair fixes its first character's tone (previous's, asked one position back)
        wanted = tf.cast(tf.gather(asked, codes // 2), tf.int32)
        off = (wanted >= 0) & (tf.bitwise.bitwise_and(codes, 1) != tf.bitwise.bitwise_and(wanted, 1))
        seconds = tf.gather(self.word_seconds, entries)
        return tf.scatter_nd(seconds[:, None], tf.cast(off, tf.int32), [self.vocab_size]) > 0

    def _rhyme_words(self, previous):
        """(last ids, group columns) of the pairs that start with `previous` and fix a line end's group."""
        entries = tf.range(self.rhyme_starts[previous], self.rhyme_starts[previous + 1])
        return tf.gather(self.rhyme_lasts, entries), tf.gather(self.rhyme_groups, entries)

    def _edit(self, logits, previous, line_so_far, rhyme, allowed, used, required, strict, seen, word_off):
        """Layout, no-repeat, the repeat penalty (`seen`: the characters written so far), tone (and the
        words that fix a reading, `word_off`) and rhyme;
        when together they forbid everything, the layout alone."""
        layout = tf.where(self.banned, NEG, logits)
        repeated = tf.scatter_nd(line_so_far[:, None], tf.ones_like(line_so_far), [self.vocab_size]) > 0
        rhyme_slot = rhyme[0] >= 0
        columns = self._group_columns(allowed, rhyme)
        fits = tf.reduce_any(self.membership & columns[None, :], axis=1) & ~used
        # a shi rhyme (its columns are 平水韵 groups): a pair read in a group it does not allow (shi_rules.Rhyme)
        lasts, groups = self._rhyme_words(previous)
        off_group = tf.reduce_any(columns[:self.shi_groups]) & ~tf.gather(columns, groups)
        fits = fits & ~(tf.scatter_nd(lasts[:, None], tf.cast(off_group, tf.int32), [self.vocab_size]) > 0)
        off_tone = (required >= 0) & ~tf.gather(self.tone_rows, tf.maximum(required, 0))
        forbidden = repeated | (rhyme_slot & ~fits) | (off_tone & strict) | word_off
        nudged = layout - tf.where(off_tone & ~strict, TONE_NUDGE, 0.0) - tf.where(seen, REPEAT_PENALTY, 0.0)
        edited = tf.where(forbidden, NEG, nudged)
        return tf.where(tf.reduce_any(tf.math.is_finite(edited)), edited, layout)

    def _sample(self, logits, temperature, top_k, top_p, seed, pos):
        def greedy():
            return tf.argmax(logits, output_type=tf.int32)

        def nucleus(scaled):
            """Keep the smallest set of most likely ids whose mass reaches top_p (as poetgen.sampling)."""
            probs = tf.nn.softmax(scaled)
            order = tf.argsort(probs, direction="DESCENDING")
            ranked = tf.gather(probs, order)
            cumulative = tf.cumsum(ranked)
            ranked = tf.where(cumulative - ranked > top_p * cumulative[-1], 0.0, ranked)
            return tf.math.log(tf.scatter_nd(order[:, None], ranked, [self.vocab_size]))

        def draw():
            scaled = logits / temperature
            k = tf.minimum(top_k, self.vocab_size)
            kth = tf.cond(k > 0, lambda: tf.math.top_k(scaled, tf.maximum(k, 1)).values[-1], lambda: NEG)
            scaled = tf.where(scaled < kth, NEG, scaled)
            scaled = tf.cond(top_p < 1, lambda: nucleus(scaled), lambda: scaled)
            pair = tf.stack([seed, tf.cast(pos, tf.int64)])
            return tf.cast(tf.random.stateless_categorical(scaled[None, :], 1, seed=pair)[0, 0], tf.int32)

        return tf.cond(temperature > 0, draw, greedy)

    def _observe_rhyme(self, previous, chosen, rhyme, allowed, used, first_line_end):
        """After a rhyming line: its group keeps the columns its last character has (read through 叶 at
        a 叶 slot; by its pair with `previous` where that fixes one), and that character is banned from
        later rhymes; so is line 1's last character, rhyming or not (poetgen.shi_rules.Rhyme)."""
        group, xie = rhyme
        rhyme_slot = group >= 0
        codes = self.membership[chosen]
        # a shi rhyme's pair that fixes its group (泪成行: 七阳) keeps that group alone (shi_rules.Rhyme)
        lasts, groups = self._rhyme_words(previous)
        match = tf.equal(lasts, chosen)
        shi = tf.reduce_any(allowed[tf.maximum(group, 0)][:self.shi_groups])
        fixed = tf.equal(tf.range(tf.shape(codes)[0]), tf.reduce_max(tf.where(match, groups, -1)))
        codes = tf.where(shi & tf.reduce_any(match), fixed, codes)
        narrowed = allowed[tf.maximum(group, 0)] & tf.where(xie, tf.gather(codes, self.flip), codes)
        keep = rhyme_slot & tf.reduce_any(narrowed)   # a prompt character outside the table keeps the old set
        row = tf.equal(tf.range(tf.shape(allowed)[0]), group)[:, None]
        allowed = tf.where(keep & row, narrowed[None, :], allowed)
        used = tf.where(rhyme_slot | first_line_end, used | tf.equal(tf.range(self.vocab_size), chosen), used)
        return allowed, used
