"""The SavedModel's endpoints as one tf.Module: `serve` (ids → next-character logits) and `generate`
(a whole poem in-graph: tokenizer, form layout, 平水韵 rhyme, no-repeat, sampling). It writes no files.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poetgen.corpus import FORM_ALIASES, FORM_SHAPES, FORMS, to_traditional
from poetgen.model import ModelConfig, states_per_layer
from poetgen.quiet import import_tensorflow
from poetgen.tables import VocabularyTables
from poetgen.tokenizer import BOUNDARY, SPECIALS, UNK

tf = import_tensorflow()

MAX_POSITIONS = max((length + 1) * count for length, count in FORM_SHAPES.values())   # a qilv: 64
PROMPT_SKIPPED = r"[\s\p{P}]"   # whitespace and punctuation in a prompt: the layout puts its own
NEG = float("-inf")


@dataclasses.dataclass(frozen=True)
class GraphTables:
    chars: list[str]               # id -> character; '' for the special ids
    lookup: dict[str, int]         # character -> id: the vocabulary, plus traditional spellings of it
    banned: np.ndarray             # (vocab,) bool: special ids and punctuation, never inside a line
    rhyme_membership: np.ndarray   # (vocab, groups) bool: the 平水韵 level-tone groups of each id
    comma: int                     # id of "，", which ends odd lines
    period: int                    # id of "。", which ends even lines


def graph_tables(tables: VocabularyTables) -> GraphTables:
    """What the graph needs of a model's vocabulary tables: characters, layout ids, rhyme table."""
    tokenizer = tables.tokenizer
    chars = [""] * len(SPECIALS) + list(tokenizer.chars) + [""] * len(tokenizer.controls)
    lookup = dict(tokenizer.index)
    traditional = to_traditional("\n".join(tokenizer.chars)).split("\n")
    if len(traditional) == len(tokenizer.chars):   # a prompt in traditional characters still encodes
        for simplified, spelled in zip(tokenizer.chars, traditional):
            if len(spelled) == 1 and spelled not in lookup:
                lookup[spelled] = tokenizer.index[simplified]
    banned = np.zeros(tokenizer.vocab_size, bool)
    banned[:len(SPECIALS)] = True
    banned[tokenizer.char_limit:] = True   # a conditioned model's control tokens (the graph feeds no prefix)
    banned[tables.punctuation_ids] = True
    return GraphTables(chars, lookup, banned, tables.rhyme_membership,
                       tokenizer.id_of("，"), tokenizer.id_of("。"))


def _string_table(keys: list[str], values: list[int], default: int):
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values, tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=default)


class PoemGraph(tf.Module):
    """The exported model. Its functions use only TensorFlow ops, so loading needs no poetgen."""

    def __init__(self, model, step_model, model_config: ModelConfig, tables: GraphTables):
        super().__init__(name="poetgen")
        self.model = model                  # training form: (batch, time) ids → (batch, time, vocab) logits
        self.step_model = step_model        # (ids (batch, 1), *states) → (logits, *states)
        self.state_count = states_per_layer(model_config.cell) * model_config.layers
        self.units = model_config.units
        self.vocab_size = model_config.vocab_size
        self.char_ids = _string_table(list(tables.lookup), list(tables.lookup.values()), UNK)
        form_names = list(FORMS) + list(FORM_ALIASES)
        self.form_index = _string_table(form_names, [FORMS.index(FORM_ALIASES.get(f, f)) for f in form_names], -1)
        self.chars = tf.constant(tables.chars)
        self.banned = tf.constant(tables.banned)
        self.membership = tf.constant(tables.rhyme_membership)
        self.comma, self.period = tables.comma, tables.period
        self.line_lengths = tf.constant([FORM_SHAPES[f][0] for f in FORMS], tf.int32)
        self.line_counts = tf.constant([FORM_SHAPES[f][1] for f in FORMS], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")], autograph=False)
    def serve(self, ids):
        """Logits of the character that follows each row of ids (start a poem with the boundary id 2)."""
        return {"logits": self.model(ids, training=False)[:, -1, :]}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="prompt"),
                                  tf.TensorSpec([], tf.string, name="form"),
                                  tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.int32, name="top_k"),
                                  tf.TensorSpec([], tf.int64, name="seed")], autograph=False)
    def generate(self, prompt, form, temperature, top_k, seed):
        """One poem of `form` starting with `prompt`; same seed and inputs, same poem."""
        length, count, form_ok = self._shape(form)
        with tf.control_dependencies([form_ok]):
            prompt_ids, prompt_ok = self._prompt_ids(prompt, length * count)
        checks = prompt_ok + [
            tf.debugging.Assert(tf.math.is_finite(temperature) & (temperature >= 0),
                                ["temperature must be a number >= 0, not", temperature]),
            tf.debugging.Assert(top_k >= 0, ["top_k must be >= 0 (0 turns it off), not", top_k])]
        with tf.control_dependencies(checks):
            ids = self._loop(prompt_ids, length, count, temperature, top_k, seed)
        return {"poem": tf.strings.reduce_join(tf.gather(self.chars, ids))}

    def _shape(self, form):
        index = tf.cast(self.form_index.lookup(tf.strings.strip(form)), tf.int32)
        ok = tf.debugging.Assert(
            index >= 0, ["form must be one of wujue, qijue, wulv, qilv (or 五绝 七绝 五律 七律), not", form])
        index = tf.maximum(index, 0)
        return tf.gather(self.line_lengths, index), tf.gather(self.line_counts, index), ok

    def _prompt_ids(self, prompt, capacity):
        chars = tf.strings.unicode_split(prompt, "UTF-8")
        chars = tf.boolean_mask(chars, ~tf.strings.regex_full_match(chars, PROMPT_SKIPPED))
        ids = tf.cast(self.char_ids.lookup(chars), tf.int32)
        unknown = tf.boolean_mask(chars, tf.equal(ids, UNK))
        known = tf.debugging.Assert(tf.size(unknown) == 0, ["the model does not know these prompt characters:",
                                                             unknown])
        fits = tf.debugging.Assert(tf.size(ids) <= capacity, ["the prompt has", tf.size(ids),
                                                               "characters but the form holds only", capacity])
        padded = tf.pad(ids[:MAX_POSITIONS], [[0, MAX_POSITIONS - tf.minimum(tf.size(ids), MAX_POSITIONS)]],
                        constant_values=-1)
        return padded, [known, fits]

    def _loop(self, prompt_ids, length, count, temperature, top_k, seed):
        """The stepping loop: one model step per position, forced or sampled; returns the poem's ids."""
        width, total = length + 1, (length + 1) * count

        def body(pos, previous, state, history, allowed, used):
            outputs = self.step_model([tf.reshape(previous, [1, 1]), *state], training=False)
            logits = outputs[0][0]
            state = tuple(tf.ensure_shape(s, [1, self.units]) for s in outputs[1:])
            line, column = pos // width, pos % width
            rhyme_slot = tf.equal(column, length - 1) & tf.equal(line % 2, 1)
            punctuation = tf.where(tf.equal(line % 2, 0), self.comma, self.period)
            forced = tf.where(tf.equal(column, length), punctuation, prompt_ids[line * length + column])
            edited = self._edit(logits, history[pos - column:pos], rhyme_slot, allowed, used)
            chosen = tf.where(forced >= 0, forced, self._sample(edited, temperature, top_k, seed, pos))
            allowed, used = self._observe_rhyme(chosen, rhyme_slot, allowed, used)
            history = tf.tensor_scatter_nd_update(history, [[pos]], [chosen])
            return pos + 1, chosen, state, history, allowed, used

        start = (tf.constant(0), tf.constant(BOUNDARY),
                 tuple(tf.zeros([1, self.units]) for _ in range(self.state_count)),
                 tf.fill([MAX_POSITIONS], BOUNDARY), tf.ones([self.membership.shape[1]], tf.bool),
                 tf.zeros([self.vocab_size], tf.bool))
        result = tf.while_loop(lambda pos, *_: pos < total, body, start)
        return result[3][:total]

    def _edit(self, logits, line_so_far, rhyme_slot, allowed, used):
        """Layout, no-repeat and rhyme; when together they forbid everything, the layout alone."""
        layout = tf.where(self.banned, NEG, logits)
        repeated = tf.scatter_nd(line_so_far[:, None], tf.ones_like(line_so_far), [self.vocab_size]) > 0
        fits = tf.reduce_any(self.membership & allowed[None, :], axis=1) & ~used
        edited = tf.where(repeated | (rhyme_slot & ~fits), NEG, layout)
        return tf.where(tf.reduce_any(tf.math.is_finite(edited)), edited, layout)

    def _sample(self, logits, temperature, top_k, seed, pos):
        def greedy():
            return tf.argmax(logits, output_type=tf.int32)

        def draw():
            scaled = logits / temperature
            k = tf.minimum(top_k, self.vocab_size)
            kth = tf.cond(k > 0, lambda: tf.math.top_k(scaled, tf.maximum(k, 1)).values[-1], lambda: NEG)
            scaled = tf.where(scaled < kth, NEG, scaled)
            pair = tf.stack([seed, tf.cast(pos, tf.int64)])
            return tf.cast(tf.random.stateless_categorical(scaled[None, :], 1, seed=pair)[0, 0], tf.int32)

        return tf.cond(temperature > 0, draw, greedy)

    def _observe_rhyme(self, chosen, rhyme_slot, allowed, used):
        """After a rhyming line: keep the groups its last character belongs to, and ban that character."""
        narrowed = allowed & self.membership[chosen]
        keep = rhyme_slot & tf.reduce_any(narrowed)   # a prompt character outside the table keeps the old set
        allowed = tf.where(keep, narrowed, allowed)
        used = tf.where(rhyme_slot, used | tf.equal(tf.range(self.vocab_size), chosen), used)
        return allowed, used
