"""What a caller asks for (PoemRequest), its validation, and the PreparedRequest the rules are built from.

Every refusal of a request is raised here, as BadInput; nothing here runs the model.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import unicodedata

from poetgen.ci_request import check_acrostic_repeats, check_ci_prompt_rhymes
from poetgen.control import DEFAULT_STYLE, MAX_TITLE, STYLES
from poetgen.corpus import PUNCTUATION, is_han, normalize_text
from poetgen.errors import BadInput
from poetgen.layout import FORM_ALIASES, FORMS, Layout, layout_of
from poetgen.options import check_settings, setting
from poetgen.sampling import SampleOptions, Shape, new_seed
from poetgen.tables import VocabularyTables
from poetgen.tokenizer import Tokenizer
from poetgen.tunes import Variant, lookup_key, resolve, shown_name

MAX_POEMS = 1000          # poems per request
MAX_CANDIDATES = 64       # candidates per poem (best-of)
MAX_BATCH_SIZE = 4096     # rows stepped together: each holds ~3 vocabulary-wide float32 rows (4096: ~0.5 GB)
MAX_PROMPT = 300          # characters of prompt: the longest tune's whole text with its punctuation (莺啼序, 295)
MAX_THEME = 200           # characters of theme
MAX_POLISH = 4            # polishing rounds (each visits every line, or --polish-lines of them; poetgen.polish)
MAX_POLISH_LINES = 16     # lines a round visits (a ci has up to ~16 clauses a stanza)
# A public server keeps each request cheap: tighter limits on the same quantities (poetgen serve).
SERVER_MAX_POEMS = 10
SERVER_MAX_BEST_OF = 16   # candidates per poem: a request costs n × best_of rows
SERVER_MAX_PROMPT = 64    # a whole qilv with its punctuation
SERVER_MAX_ACROSTIC = 8   # one character per line of a lüshi
SERVER_MAX_TEMPERATURE = 10.0
RAW_TEXT = 4              # a prompt, theme or title is refused unread beyond this many times its limit
SERVER_MAX_CHARS = 300   # a free verse poem's length cap: the longest tune's
REPEAT_PENALTY = 1.0      # the default repeat penalty (the SavedModel's graph applies it too); see README, Blind reading
SERVER_MAX_POLISH = 2     # polishing rounds: two cost ~0.1-0.5 s a poem
FORM_NAMES = (*FORMS, "free", *FORM_ALIASES)
# Words of the request itself ("write a poem about …"), not of its theme.
_REQUEST_WORDS = frozenset("写 作 写诗 作诗 赋诗 一首 一篇 首 篇 关于 有关 诗 诗歌 诗词 古诗 请 帮 帮我 我 给 创作 描写 表达 主题 一下 的".split())


def holds_surrogate(text: str) -> bool:
    """Whether `text` holds a lone surrogate (U+D800-DFFF): bytes that were not UTF-8 (surrogateescape), or a
    JSON escape of half a UTF-16 pair; no text a poem can hold."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


@dataclasses.dataclass(frozen=True)
class PoemRequest:
    prompt: str = ""                 # the poem starts with this text (may span lines)
    form: str | None = None          # wujue|qijue|wulv|qilv|free or 五绝…; default wujue (wulv for 8 heads)
    tune: str = ""                   # write a ci (词) to this tune: a name, other name or pinyin, instead of a form
    variant: int | None = setting(None, low=1)   # the tune's variant (格), 1-based; default: the one most ci take
    acrostic: str = ""               # 藏头: line i starts with character i
    theme: str = ""                  # free text; keywords steer the lines
    title: str = ""                  # write to this title (a model trained with --titles reads it first; shi only)
    rhyme: bool | None = None        # rhyme lines 2, 4, 6, 8 in one 平水韵 group; default: on for regular forms
    tone: bool = True                # steer toward a standard 平仄 pattern (--no-tone: off)
    no_repeat: bool = True           # no character twice within a line
    repeat_penalty: float = setting(REPEAT_PENALTY, low=0, high=20)   # logit taken off each character the poem already has (0: off)
    n: int = setting(1, low=1, high=MAX_POEMS)                 # poems to return
    best_of: int = setting(2, low=1, high=MAX_CANDIDATES)      # candidates per poem; the best score wins (1: fastest)
    max_chars: int = setting(120, low=5, high=1000)            # free verse length cap, punctuation included
    reverse_weight: float = setting(0.5, low=0, high=1)        # weight of the bundle's reverse model in best-of scores
    polish: int = setting(0, low=0, high=MAX_POLISH)           # rounds of line-by-line rewriting judged by both models (0: off; slow)
    polish_lines: int = setting(0, low=0, high=MAX_POLISH_LINES)   # lines a polishing round visits, the weakest first-read (0: every line)
    style: str | None = setting(None, choices=STYLES)          # a conditioned model's style: tang shi (default), song shi, or ci (free verse; a tune writes ci); other models ignore it
    batch_size: int = setting(256, low=1, high=MAX_BATCH_SIZE)   # sequences stepped together
    sample: SampleOptions = SampleOptions()                    # temperature, top-k, top-p and seed

    def resolved_form(self) -> str:
        for name in BLANK_REFUSED:   # given, but blank: refused, not read as left out
            value = getattr(self, name)
            if isinstance(value, str) and (value or name == "form") and not value.strip():
                raise blank(name)
        if self.tune.strip():
            if self.form:
                raise BadInput("give a form or a tune, not both", field="form")
            return "ci"
        if self.variant is not None:
            raise BadInput("a variant needs a tune", field="variant")
        key = lookup_key(self.form) if self.form else None   # as tunes are looked up: Qi Jue, QIJUE
        form = FORM_ALIASES.get(key, key) if self.form else None   # "'" (no key left) is an unknown form
        if form is None and self.style == "ci" and not self.acrostic:
            form = "free"   # a ci has no shi layout
        if form is None:
            acrostic = normalize_text(self.acrostic)
            form = "wulv" if len(acrostic) == 8 else "wujue"
        if form not in FORMS + ("free",):
            raise BadInput(f"unknown form {self.form!r}; choose wujue, qijue, wulv, qilv or free "
                           f"({' '.join(FORM_ALIASES)})", field="form")
        return form

    def validate(self) -> None:
        if not isinstance(self.sample, SampleOptions):   # Poet.run(PoemRequest(sample=None)): an AttributeError
            raise BadInput(f"sample must be a SampleOptions (temperature, top_k, top_p, seed), not {self.sample!r}",
                           field="sample")
        self.sample.validate()
        check_settings(self)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str) and holds_surrogate(value):   # undecodable bytes (surrogateescape)
                raise BadInput(f"{field.name} is not valid text: it holds bytes that are not UTF-8", field=field.name)
        for name, limit in (("prompt", MAX_PROMPT), ("theme", MAX_THEME), ("title", MAX_TITLE)):
            text = getattr(self, name)   # counted as prepared: spaces and quote marks do not count
            if len(text) > RAW_TEXT * limit or len(normalize_text(text, simplify=False)) > limit:
                raise BadInput(f"{name} is longer than {limit} characters", field=name)
        if self.resolved_form() == "ci":
            self.resolved_variant()
            if self.style in ("tang", "song"):   # a tune writes ci: a shi style would be ignored
                raise BadInput(f"a tune writes a ci, in the ci style: style {self.style} is for shi; leave style out",
                               field="style")
            if self.title.strip():
                raise BadInput("a title is for shi: a ci is written to its tune", field="title")
        if self.rhyme and self.resolved_form() == "free":   # was ignored without a word
            raise BadInput("rhyme needs a regular form or a tune: free verse has no rhyming lines", field="rhyme")
        if self.polish and self.resolved_form() == "free":
            raise BadInput("polish rewrites a poem line by line: it needs a form or a tune, not free verse",
                           field="polish")

    def resolved_style(self) -> str:
        """The style asked for; none given: tang (a tune's ci reads the ci prefix whatever this says)."""
        return self.style or DEFAULT_STYLE

    def resolved_variant(self) -> Variant | None:
        """The tune variant asked for (None for shi); UnknownTune naming the closest names."""
        return resolve(self.tune, self.variant) if self.tune.strip() else None


@dataclasses.dataclass(frozen=True)
class PreparedRequest:
    request: PoemRequest          # the request as given (validated)
    form: str                     # the resolved form: wujue|qijue|wulv|qilv|free
    prompt: str                   # normalised and laid onto the form's lines
    acrostic: str                 # normalised; "" for none
    keywords: tuple               # theme words found in the request's theme
    theme_ids: tuple              # ids of their characters, the Theme rule's plan
    options: SampleOptions        # the request's sampling options, seed filled in when it had none
    shape: Shape                  # what the sampling loop needs to know about the form
    prompt_ids: tuple = ()        # the prompt's ids (all known to the model)
    acrostic_ids: tuple = ()      # the acrostic's ids (all known to the model)
    variant: Variant | None = None  # the ci tune variant written (form "ci"), None for shi
    title: str = ""               # normalised; "" for none
    pattern: str | None = None    # every row's 平仄 pattern (polish keeps a poem's own); None: each row draws one

    @property
    def layout(self) -> Layout | None:
        return self.shape.layout

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def row_length(self) -> int:
        """The most characters, marks included, one row of this request steps: its layout's length (a
        莺啼序 295, a qilv 64), free verse's max_chars. A request costs its n × best_of rows times this."""
        return self.layout.length if self.layout is not None else self.request.max_chars

    def batch_key(self) -> tuple:
        """Everything the rules and the loop read except the seed: equal keys may share one batch."""
        request, options = self.request, self.options
        tune = (self.variant.tune, self.variant.number) if self.variant else None
        return (self.form, tune, self.prompt, self.acrostic, self.theme_ids, request.rhyme, request.tone,
                request.no_repeat, request.repeat_penalty, request.max_chars, options.temperature, options.top_k, options.top_p,
                request.resolved_style(), self.title, self.pattern)


def prepare(request: PoemRequest, tables: VocabularyTables) -> PreparedRequest:
    """Validate and normalise a request; raise BadInput with a sentence for what cannot be used."""
    request.validate()
    form = request.resolved_form()
    variant = request.resolved_variant()
    layout = variant.layout if variant else layout_of(form)
    shown = shown_name(request.tune, variant.tune, layout.name) if variant else ""   # as the user named it: 十六字令 (归字谣#1 in the 词谱)
    prompt = normalize_text(request.prompt)
    check_chars(prompt, "prompt", allow_punctuation=True)
    prompt = layout.fit_prompt(prompt, shown) if layout else check_free_prompt(prompt)
    if layout is None and len(prompt) > request.max_chars:   # free verse stops there: the prompt would be cut
        raise BadInput(f"the prompt has {len(prompt)} characters, more than max_chars ({request.max_chars}); "
                       f"shorten it or raise --max-chars (max_chars)", field="prompt")
    if layout is None and len(prompt) == request.max_chars and prompt[-1] not in PUNCTUATION:
        raise BadInput(f"the prompt has {len(prompt)} characters, as many as max_chars ({request.max_chars}), and "
                       f"no mark to end its last clause: end it with one or raise --max-chars (max_chars)",
                       field="prompt")
    if request.polish_lines and not request.polish:
        raise BadInput("--polish-lines (polish_lines) chooses the lines a polishing round visits: it needs "
                       "--polish 1 or more (polish)",
                       field="polish_lines")
    acrostic = normalize_text(request.acrostic)
    check_chars(acrostic, "acrostic", allow_punctuation=False)
    check_acrostic(acrostic, prompt, form, layout, shown)
    if variant is not None and variant.repeats:
        check_acrostic_repeats(acrostic, prompt, variant, shown)
    prompt_ids = encode_known(tables.tokenizer, prompt, "prompt")
    acrostic_ids = encode_known(tables.tokenizer, acrostic, "acrostic")
    if layout is not None and (request.rhyme if request.rhyme is not None else True):
        if variant is None:
            check_prompt_rhymes(prompt, prompt_ids, layout, tables)
        else:
            check_ci_prompt_rhymes(prompt, acrostic, variant, shown)
    words, theme_ids = theme_keywords(request.theme, tables.tokenizer) if request.theme.strip() else ([], [])
    title = normalize_text(request.title)
    check_chars(title, "title", allow_punctuation=False)
    encode_known(tables.tokenizer, title, "title")
    options = request.sample
    seed = options.seed if options.seed is not None else new_seed()
    shape = Shape(layout, request.max_chars, frozenset(tables.punctuation_ids))
    return PreparedRequest(request, form, prompt, acrostic, tuple(words), tuple(theme_ids),
                           dataclasses.replace(options, seed=seed), shape, tuple(prompt_ids), tuple(acrostic_ids),
                           variant, title)


# The text fields a blank value is refused in rather than read as left out (a blank tune would write a
# shi, a blank acrostic a poem without one), with what to give instead.
BLANK_REFUSED = {"tune": "a tune's name, or leave tune out for shi",
                 "form": "wujue, qijue, wulv, qilv or free, or leave form out",
                 "acrostic": "the characters that start the lines, or leave acrostic out",
                 "theme": "a few words, or leave theme out",
                 "title": "a title, or leave title out"}


def blank(name: str) -> BadInput:
    """A text field given but blank (the CLI's `--tune ""` too, which parses as left out)."""
    return BadInput(f"{name} is blank: give {BLANK_REFUSED[name]}", field=name)


def check_prompt_rhymes(prompt: str, prompt_ids, layout: Layout, tables: VocabularyTables) -> None:
    """A prompt that ends rhyming lines (2, 4, 6, 8) must leave them a shared 平水韵 level-tone group: the
    rule could not rhyme the rest with them, and the poem would fail its rhyme (--no-rhyme keeps it)."""
    ends, used = [], {}   # used: a rhyme fixed by the prompt -> its line (1-based)
    for line, (start, length) in enumerate(zip(layout.starts, layout.line_lengths)):
        end = start + length - 1
        if line not in layout.rhyme_lines or end >= len(prompt):
            continue
        if prompt[end] in used:   # the checker fails a rhyme used twice (line 1's end it leaves alone)
            raise BadInput(f"prompt lines {used[prompt[end]]} and {line + 1} both end in {prompt[end]!r}: no rhyme "
                           f"is used twice; change one, or pass --no-rhyme (rhyme: false) to keep them",
                           field="prompt")
        used[prompt[end]] = line + 1
        ends.append(prompt_ids[end])
        if not tables.share_rhyme(ends):
            own = tables.prosody.rhyme_groups(prompt[end])
            why = "shares no rhyme group with the lines before" if own else \
                "is not in the rhyme table (no 平水韵 level-tone group is known for it)" \
                if not tables.prosody.tones(prompt[end]) else "has no level-tone (平) reading to rhyme in"
            raise BadInput(f"prompt line {line + 1} ends in {prompt[end]!r}, which {why}"
                           f"{_rare_reading_note([prompt[e] for e in _rhyme_ends(layout, len(prompt))], tables)}; "
                           f"change it, or pass --no-rhyme (rhyme: false) to keep it", field="prompt")


def _rhyme_ends(layout: Layout, size: int) -> list[int]:
    """The positions of the rhyme lines' last characters that a prompt of `size` characters fixes."""
    return [start + length - 1 for line, (start, length) in enumerate(zip(layout.starts, layout.line_lengths))
            if line in layout.rhyme_lines and start + length - 1 < size]


def _rare_reading_note(chars: list[str], tables: VocabularyTables) -> str:
    """Why a rhyme the checker accepts is refused: the group the characters share is a reading poets barely
    used for one of them (衰 cuī in 十灰, 回乡偶书), which generation never asks for (prosody.usual_table)."""
    shared = set.intersection(*(tables.checking.rhyme_groups(ch) for ch in chars)) if chars else set()
    rare = [ch for ch in chars if not shared <= tables.prosody.rhyme_groups(ch)]
    if not shared or not rare:
        return ""
    group = min(shared)
    return (f" ({'、'.join(dict.fromkeys(chars))} share {group} only in a reading poets barely used for "
            f"{'、'.join(dict.fromkeys(rare))}, which the checker accepts but generation never asks for)")


def check_free_prompt(prompt: str) -> str:
    """Free verse has no layout to fit a prompt to, but each of its clauses still needs a character
    before its mark (a prompt of marks alone was kept in the text and dropped from the lines)."""
    for at, ch in enumerate(prompt):
        if ch in PUNCTUATION and (at == 0 or prompt[at - 1] in PUNCTUATION):
            raise BadInput(f"prompt has a mark with no character before it ({ch!r} at character {at + 1}): "
                           f"each clause needs one", field="prompt")
    return prompt


def check_chars(text: str, what: str, allow_punctuation: bool) -> None:
    for ch in text:
        if is_han(ch) or (allow_punctuation and ch in PUNCTUATION):
            continue
        kind = ("a Latin letter or digit" if ch.isascii() and ch.isalnum() else
                f"punctuation, and the {what} holds Chinese characters only" if ch in PUNCTUATION else
                f"a mark poetgen does not write (it writes {PUNCTUATION})" if unicodedata.category(ch)[0] == "P"
                else "not a Chinese character")
        raise BadInput(f"{what} contains {shown_char(ch)}, which is {kind}", field=what)


def shown_char(ch: str) -> str:
    """A character as a message names it: quoted, and as its code point when it would not show (a
    combining mark, a variation selector, a format or control character): '\\ufe0f'."""
    invisible = unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc", "Co", "Cn", "Zl", "Zp")
    return f"'\\u{ord(ch):04x}'" if invisible and ord(ch) < 0x10000 else \
        f"'\\U{ord(ch):08x}'" if invisible else repr(ch)


def fit_prompt(prompt: str, form: str) -> str:
    """Lay the prompt onto the form's layout (poetgen.layout): line-end marks inserted where missing,
    replaced by the layout's own where it does not accept them, an error inside a line."""
    layout = layout_of(form)
    return layout.fit_prompt(prompt) if layout else prompt


def check_acrostic(acrostic: str, prompt: str, form: str, layout: Layout | None = None, shown: str = "") -> None:
    """Shi: one head per line; ci (form "ci"): heads of the first clauses, as many as given. `shown`: how
    errors name the layout (its name by default)."""
    if not acrostic:
        return
    layout = layout or layout_of(form)
    if layout is None:
        raise BadInput("an acrostic needs a regular form (wujue, qijue, wulv or qilv) or a tune", field="acrostic")
    if form == "ci":
        if len(acrostic) > layout.line_count:
            raise BadInput(f"acrostic has {len(acrostic)} characters but {shown or layout.name} has "
                           f"{layout.line_count} clauses", field="acrostic")
    elif len(acrostic) != layout.line_count:
        raise BadInput(f"acrostic has {len(acrostic)} characters but a {form} poem has {layout.line_count} lines",
                       field="acrostic")
    heads = [prompt[start] for start in layout.starts if start < len(prompt)][:len(acrostic)]   # a ci's may be fewer
    for i, head in enumerate(heads):
        if head != acrostic[i]:
            raise BadInput(f"prompt line {i + 1} starts with {head!r}, but the acrostic asks for {acrostic[i]!r}",
                           field="acrostic")


def encode_known(tokenizer: Tokenizer, text: str, what: str) -> list[int]:
    """The ids of `text`; BadInput naming the first character the model does not know."""
    unknown = tokenizer.unknown(text)
    if unknown:
        raise BadInput(f"the model does not know the character {unknown[0]!r} in the {what}", field=what)
    return tokenizer.encode(text)


_JIEBA_STARTING = threading.Lock()
# A fork waits for jieba's start: a child forked mid-start found this lock, and jieba's own, held for ever.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_JIEBA_STARTING.acquire, after_in_parent=_JIEBA_STARTING.release,
                        after_in_child=_JIEBA_STARTING.release)


@functools.lru_cache(maxsize=None)
def _keyword_extractor():
    """jieba's TF-IDF keywords, its dictionary loaded once a process (~1 s), with the notices it logs
    then muted; its logger keeps the level a program set (jieba.setLogLevel muted it for good)."""
    with _JIEBA_STARTING:   # one thread loads it, the others wait for it
        import jieba
        import jieba.analyse

        logger = logging.getLogger("jieba")
        level = logger.level
        logger.setLevel(logging.CRITICAL + 10)
        try:
            jieba.initialize()
        finally:
            logger.setLevel(level)
        return jieba.analyse.extract_tags


def theme_keywords(theme: str, tokenizer: Tokenizer) -> tuple[list[str], list[int]]:
    """Up to six keywords of a free-text theme (jieba's TF-IDF), and the ids of their known characters.
    jieba drops one-character words, so a theme it finds no Chinese keyword in (月) gives its own
    characters but the request words', one keyword each; a theme with no character the model knows is
    refused."""
    text = normalize_text(theme)
    words = [w for w in _keyword_extractor()(text, topK=12)
             if w not in _REQUEST_WORDS and any(is_han(ch) for ch in w)][:6]
    if not words:   # the request words out first, the longest first (一首, 关于 before 一, 关), then each character
        for word in sorted(_REQUEST_WORDS, key=len, reverse=True):
            text = text.replace(word, " ")
        words = [ch for ch in dict.fromkeys(text) if is_han(ch)][:6]
    chars = [ch for ch in dict.fromkeys("".join(words)) if ch in tokenizer.index]
    if not chars:
        raise BadInput(f"theme {theme!r} names nothing to write about in characters the model knows; give "
                       f"one such as 写一首关于秋天思乡的诗, or 月", field="theme")
    return words, [tokenizer.id_of(ch) for ch in chars]
