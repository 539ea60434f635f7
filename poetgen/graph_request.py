"""The SavedModel's request, read in the graph (poetgen.export_graph's `generate`): one value per input,
the form or tune and its variant, the prompt fitted to the layout, the acrostic's heads (and the 叠 they
meet), the marks the layout writes, and what the fixed characters leave possible (the 平仄 patterns and the
rhyme groups). Each mirrors poetgen.request's check of the same input, and bad input raises
InvalidArgumentError whose message starts with the field's name, as the CLI's BadInput names it.

GraphRequest holds no tables of its own: it reads those PoemGraph keeps (the tf.Module the SavedModel
tracks), so it is PoemGraph's base, not a module of its own in the saved object graph.
"""

from __future__ import annotations

from poetgen.corpus import DECORATION   # as normalize_text reads a prompt: one spec
from poetgen.graph_tables import SPACES, TONE_BITS, TONE_RESCUE, TONE_STRICT, TONE_UNCHECKED
from poetgen.layout import FORM_ALIASES
from poetgen.options import field_of
from poetgen.quiet import import_tensorflow
from poetgen.sampling import SampleOptions
from poetgen.tokenizer import UNK

tf = import_tensorflow()


def check(condition, *message):
    return tf.debugging.Assert(condition, list(message), summarize=64)


def within(value, name: str, options=SampleOptions):
    """An assertion that `value` holds in the range `options` declares for field `name` (SampleOptions:
    the CLI's, the API's and serve's limits, one spec), a float finite too (as options.Range.holds), said
    as check_settings says it: "temperature must be between 0 and 100, not 101"."""
    allowed = field_of(options, name).metadata["range"]
    holds = tf.math.is_finite(value) if value.dtype.is_floating else tf.constant(True)
    if allowed.low is not None:
        holds &= value > allowed.low if allowed.low_open else value >= allowed.low
    if allowed.high is not None and allowed.high <= value.dtype.max:   # seed's 2**63 holds every int64
        holds &= value < allowed.high if allowed.high_open else value <= allowed.high
    return check(holds, f"{name} must be {allowed.describe()}{OFF.get(name, '')}, not", value)


OFF = {"top_k": " (0 turns it off)", "top_p": " (1 turns it off)"}   # what the signature's value means there
MAX_REPEAT_CHAIN = 4   # 叠 that repeat a 叠 (a chain of copies) followed back to a fixed source


def one_value(value, name: str):
    """`value` as a scalar, refused unless it holds exactly one value; a string's invalid UTF-8 is
    refused too, and replaced (U+FFFD) so no later message carries bytes a caller cannot decode."""
    one = check(tf.equal(tf.size(value), 1), f"{name} must be one value (shape [] or [1]), not shape",
                 tf.shape(value))
    with tf.control_dependencies([one]):
        value = tf.reshape(value, [])
    if value.dtype != tf.string:
        return value
    readable = tf.strings.unicode_transcode(value, "UTF-8", "UTF-8", errors="replace")
    with tf.control_dependencies([check(tf.equal(readable, value), f"{name} is not UTF-8 text")]):
        return tf.identity(readable)


class GraphRequest:
    """The request-reading half of PoemGraph (its tables: char_ids, half_width, form_index, layout rows…)."""

    def _fitting_patterns(self, forced, layout):
        """(patterns,) bool, as poetgen.shi_rules.fitting_patterns: the standard 平仄 patterns that the fixed
        characters allow (their tone at strict columns; a shared 平水韵 group at the pattern's rhyme
        positions, line 1's end too where it rhymes), else those keeping the rhyme, the tones, or all; and
        whether any pattern keeps the rhyme."""
        given = (forced >= 0) & (layout["column"] >= 0)   # characters: marks are fixed too
        ids = tf.maximum(forced, 0)
        codes = layout["tone"]                             # (patterns, positions), -1: no tone asked
        required = tf.where(codes >= 0, tf.bitwise.bitwise_and(codes, TONE_BITS), -1)
        pairs = tf.stack([tf.maximum(required, 0), tf.broadcast_to(ids[None, :], tf.shape(required))], -1)
        can = tf.gather_nd(self.can_be, pairs) | ~tf.gather(self.tone_known, ids)[None, :]   # unknown: not judged
        read = self._pair_tones(forced)                    # a fixed pair's reading (万重: 重 平), -1 none
        can = can & ((read < 0)[None, :] | tf.equal(tf.cast(read, required.dtype)[None, :], required))
        flagged = lambda flag: (codes >= 0) & (tf.bitwise.bitwise_and(codes, flag) > 0)   # noqa: E731
        checked = given[None, :] & flagged(TONE_STRICT) & ~flagged(TONE_UNCHECKED)
        # a rescue whose first and third columns both hold fixed non-平 characters cannot avoid 孤平
        lone = flagged(TONE_RESCUE) & (self._fixed_not_ping(forced, 2) & self._fixed_not_ping(forced, 0))[None, :]
        tones_fit = tf.reduce_all(~checked | can, axis=1) & ~tf.reduce_any(lone, axis=1)
        slots = (layout["rhyme_group"] >= 0)[None, :] | (self.first_line_rhymes[:, None] & layout["first_line_end"][None, :])
        considered = slots & given[None, :]                # (patterns, positions)
        groups = tf.gather(self.membership[:, :self.shi_groups], ids)   # (positions, 平水韵 groups)
        rhymes_fit = tf.reduce_any(tf.reduce_all(~considered[:, :, None] | groups[None, :, :], axis=1), axis=1)
        both = tones_fit & rhymes_fit
        for fallback in (rhymes_fit, tones_fit, tf.ones_like(both)):
            both = tf.where(tf.reduce_any(both), both, fallback)
        return both, tf.reduce_any(rhymes_fit)   # and whether the rhyme lines can rhyme at all (CLI: check_prompt_rhymes)

    def _fixed_not_ping(self, forced, back: int):
        """(positions,) bool: the position `back` before each holds a fixed character the tone table
        knows and that cannot be read 平 (rules.build_rules' `rescued`)."""
        fixed = tf.concat([tf.fill([back], -1), forced[:tf.size(forced) - back]], 0) if back else forced
        ids = tf.maximum(fixed, 0)
        return (fixed >= 0) & tf.gather(self.tone_known, ids) & ~tf.gather(self.can_be[0], ids)

    def _ci_rhymes_possible(self, forced, layout):
        """Whether each rhyme group of a tune keeps a column (a 部 of its tone) that every character the
        prompt and acrostic fix at its slots has, read through 叶 at a 叶 slot; one the table does not
        know is left out, as the rule leaves it (CLI: ci_request.check_ci_prompt_rhymes)."""
        start, in_group, together = self._group_start(forced, layout)
        return tf.reduce_all(~tf.reduce_any(in_group, axis=0) | tf.reduce_any(start & together, axis=1))

    def _group_start(self, forced, layout):
        """The columns each rhyme group starts from, (groups, columns): its kind's, or its fallback kind's
        where the characters fixed at its slots share none of the kind's but some of the fallback's (an 入声
        group a prompt rhymes in 上去: ci_rhyme.codes_for_group); with which group each fixed rhyme
        character is in and the columns they all have, per group."""
        group_rows = tf.shape(layout["group_kind"])[0]
        codes = tf.gather(self.membership, tf.maximum(forced, 0))                  # (positions, columns)
        known = tf.reduce_any(codes[:, self.shi_groups:], axis=1)   # a character outside the table is left out
        fixed = (layout["rhyme_group"] >= 0) & (forced >= 0) & known
        codes = tf.where(layout["rhyme_xie"][:, None], tf.gather(codes, self.flip, axis=1), codes)
        in_group = tf.equal(layout["rhyme_group"][:, None], tf.range(group_rows)[None, :]) & fixed[:, None]
        together = tf.reduce_all(~in_group[:, :, None] | codes[:, None, :], axis=0)   # (groups, columns)
        kind = tf.maximum(layout["group_kind"], 0)
        start = tf.gather(self.rhyme_kinds, kind)
        wider = tf.gather(self.rhyme_kinds, tf.gather(self.fallback_kinds, kind))
        widen = tf.reduce_any(in_group, axis=0) & ~tf.reduce_any(start & together, axis=1) & \
            tf.reduce_any(wider & together, axis=1)
        start = tf.where(widen[:, None], wider, start) & (layout["group_kind"] >= 0)[:, None]
        return start, in_group, together

    def _normalised(self, text):
        """Characters of a prompt or acrostic as normalize_text leaves them: no spaces or quote marks,
        full-width marks."""
        chars = tf.strings.unicode_split(text, "UTF-8")
        chars = tf.boolean_mask(chars, ~tf.strings.regex_full_match(chars, f"[{SPACES}{DECORATION}]"))
        full = self.half_width.lookup(chars)
        return tf.where(tf.equal(full, ""), chars, full)

    def _form(self, form, acrostic_size):
        """The layout row and entry of `form`: a shi form, or a tune by any name `--tune` accepts, with an
        optional 1-based variant after "#" ("浣溪沙#2"; without, the tune's usual one: tunes.Tune.usual), or
        after a full-width "＃" as typed in Chinese, read as "#" as the CLI reads it (tunes.variant_spelling)."""
        form = tf.strings.regex_replace(form, f"^[{SPACES}]+|[{SPACES}]+$", "")   # any space, as str.strip
        form = tf.strings.regex_replace(form, "＃", "#")
        parts = tf.strings.split(form, "#", maxsplit=1)
        name = tf.strings.lower(parts[0], encoding="utf-8")   # as poetgen.tunes.lookup_key: no spaces,
        name = tf.strings.regex_replace(name, f"[{SPACES}'’\\-]", "")   # apostrophes or hyphens; ü is v
        name = tf.strings.regex_replace(tf.strings.regex_replace(name, "ü", "v"), "u:", "v")
        numbered = tf.size(parts) > 1
        suffix = tf.strings.regex_replace(parts[-1], f"^[{SPACES}]+|[{SPACES}]+$", "")   # "#1 2" stays refused
        digits = tf.strings.regex_full_match(suffix, "[1-9][0-9]{0,3}")
        number = tf.where(numbered & digits, tf.strings.to_number(tf.where(digits, suffix, "1"), tf.int32), 1)
        default = tf.where(tf.equal(acrostic_size, 8), self.default_forms[1], self.default_forms[0])
        entry = tf.where(tf.equal(form, ""), tf.cast(default, tf.int64), self.form_index.lookup(name))
        exported = check((entry >= 0) | tf.equal(self.left_out.lookup(name), 0),
                          "form names a ci tune this export left out (export --tunes N writes the N most written "
                          "tunes; --tunes -1, the default, every tune):", form)
        with tf.control_dependencies([exported]):   # that first: the tune exists, the export lacks it
            known = check(entry >= 0, f"form must be one of {self.form_names} (or {' '.join(FORM_ALIASES)}) or a ci "
                                       "tune's name, other name or pinyin (`poetgen tunes`), not", form)
        entry = tf.cast(tf.maximum(entry, 0), tf.int32)
        count = tf.gather(self.entry_count, entry)
        number = tf.where(numbered, number, tf.gather(self.entry_usual, entry))   # none named: the usual one
        with tf.control_dependencies([known]):
            is_tune = check(~numbered | tf.gather(self.entry_tune, entry),
                             "form: only a ci tune takes a variant (#n), not the shi form", name)
        with tf.control_dependencies([is_tune]):
            variant_ok = check(~numbered | (digits & (number <= count)), "form names variant", suffix,
                                "but its tune has", count, "variant(s): write <tune>#1 to #", count)
        return tf.gather(self.entry_first, entry) + tf.minimum(number, count) - 1, entry, \
            tf.group(exported, known, is_tune, variant_ok)

    def _prompt(self, chars, layout):
        """Forced ids per position: the prompt's characters in the character slots, its marks at the ends
        of their lines (replaced by the layout's own where the layout does not accept them)."""
        mark = tf.cast(self.mark_index.lookup(chars), tf.int32)
        is_mark = mark >= 0
        text = tf.boolean_mask(chars, ~is_mark)
        ids = tf.cast(self.char_ids.lookup(text), tf.int32)
        unknown = tf.boolean_mask(text, tf.equal(ids, UNK))
        capacity = layout["line_ends"][layout["line_count"] - 1]
        count = tf.size(ids)
        known = check(tf.size(unknown) == 0, "prompt: the model does not know these prompt characters:", unknown)
        fits = check(count <= capacity, "prompt has", count, "characters but the form holds only", capacity)
        # A mark is in place right after the last character of a line, and not right after another mark.
        before = tf.cumsum(tf.cast(~is_mark, tf.int32), exclusive=True)
        after_mark = tf.concat([[False], is_mark[:-1]], 0)
        ends = tf.equal(before[:, None], layout["line_ends"][None, :]) & (layout["line_ends"][None, :] > 0)
        misplaced = is_mark & ~(tf.reduce_any(ends, 1) & ~after_mark)
        placed = check(~tf.reduce_any(misplaced),   # named by the characters before the first misplaced mark
                        "prompt does not fit the form: a mark stands inside a line or after another mark, after "
                        "character", tf.reduce_min(tf.boolean_mask(before, misplaced)))
        with tf.control_dependencies([known, fits, placed]):
            count = tf.minimum(count, capacity)
            forced = tf.fill([self.positions], -1)
            forced = tf.tensor_scatter_nd_update(forced, layout["char_slots"][:count, None], ids[:count])
            line = tf.cast(tf.argmax(tf.cast(tf.boolean_mask(ends, is_mark), tf.int32), 1), tf.int32)
            given = tf.boolean_mask(mark, is_mark)
            accepted = tf.gather_nd(layout["accepted"], tf.stack([line, given], 1))
            written = tf.where(accepted, tf.gather(self.mark_ids, given), tf.gather(layout["end_ids"], line))
            slots = tf.gather(layout["char_slots"], tf.gather(layout["line_ends"], line) - 1) + 1
            forced = tf.tensor_scatter_nd_update(forced, slots[:, None], written)
        return forced, [known, fits, placed]

    def _acrostic(self, heads, forced, layout):
        """Line heads forced where the prompt does not already decide them (then they must agree)."""
        ids = tf.cast(self.char_ids.lookup(heads), tf.int32)
        count = tf.size(ids)
        lines = layout["line_count"]
        checks = [
            check((count == 0) | tf.equal(count, lines) | (layout["partial_acrostic"] & (count <= lines)),
                   "acrostic has", count, "characters but the form has", lines, "lines (a tune: at most that many)"),
            check(tf.reduce_all(self.mark_index.lookup(heads) < 0), "acrostic must hold characters only, not marks"),
            check(tf.reduce_all(tf.not_equal(ids, UNK)), "acrostic: the model does not know these characters:",
                   tf.boolean_mask(heads, tf.equal(ids, UNK)))]
        with tf.control_dependencies(checks):
            count = tf.where(count <= lines, count, 0)
            starts = layout["line_starts"][:count]
            given = tf.gather(forced, starts)
            agree = check(tf.reduce_all((given < 0) | tf.equal(given, ids[:count])),
                           "acrostic and prompt disagree on a line's first character")
            forced = tf.tensor_scatter_nd_update(forced, starts[:, None], tf.where(given < 0, ids[:count], given))
            repeats = self._acrostic_repeats(forced, starts, given, ids[:count], layout)
        return forced, checks + [agree, repeats]

    def _acrostic_repeats(self, forced, starts, given, ids, layout):
        """An acrostic head a 叠 repeats must be the character its source holds as the prompt or the
        acrostic fixes it (ci_request.check_acrostic_repeats): a head the rules kept broke the 叠, and a
        source nothing fixes is written freely before the head."""
        copy_from = layout["copy_from"]
        source = tf.gather(copy_from, starts)
        for _ in range(MAX_REPEAT_CHAIN):   # a 叠 that repeats a 叠 the request leaves free: its source
            further = tf.gather(copy_from, tf.maximum(source, 0))
            follow = (source >= 0) & (tf.gather(forced, tf.maximum(source, 0)) < 0) & (further >= 0)
            source = tf.where(follow, further, source)
        held = tf.gather(forced, tf.maximum(source, 0))
        broken = (given < 0) & (source >= 0) & tf.not_equal(held, ids)
        return check(~tf.reduce_any(broken), "acrostic puts a character at the head of a clause that a 叠 repeats "
                      "other than the character it repeats (or one nothing fixes): give that character there, write "
                      "it with the prompt, or end the acrostic before that clause; clause heads:",
                      tf.boolean_mask(tf.range(1, tf.size(ids) + 1), broken))

    def _end_marks(self, forced, layout):
        """Every mark slot the prompt left open gets the mark the layout writes there."""
        ends = tf.gather(layout["end_ids"], tf.maximum(layout["line"], 0))
        return tf.where((forced < 0) & tf.equal(layout["column"], -1) & (layout["line"] >= 0), ends, forced)
