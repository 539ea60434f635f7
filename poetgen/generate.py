"""From a request (prompt, form, acrostic, theme, rhyme, tone, sampling) to finished, checked poems.

It validates and normalises the request, assembles the logit rules, runs the sampling loop in
batches and keeps the best of K candidates. The model is loaded once per Generator; it serves no HTTP.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import threadpoolctl

from poetgen import constraints as rules
from poetgen.bundle import TOKENIZER_FILE, Bundle, load_bundle, model_config_of, read_config
from poetgen.checks import check_poem
from poetgen.control import DEFAULT_STYLE, STYLES, Prefixer
from poetgen.corpus import FORM_ALIASES, FORM_SHAPES, FORMS, HAN, PUNCTUATION, clauses, normalize_text, to_traditional
from poetgen.errors import BadInput
from poetgen.model import NumpyStepper
from poetgen.prosody import PING, ZE, strict_positions, table, tone_patterns
from poetgen.sampling import SampleOptions, Shape, row_streams, sample
from poetgen.tokenizer import Tokenizer

MAX_POEMS = 1000          # poems per request
MAX_CANDIDATES = 64       # --best-of limit
MAX_PROMPT = 200          # characters
SHARE_ROWS = 16           # a batch is split across CPU cores only when each core gets this many rows
_HAN_ONLY = re.compile(f"[{HAN}]")
# Words of the request itself ("write a poem about …"), not of its theme.
_REQUEST_WORDS = frozenset("写 作 一首 一篇 首 篇 关于 有关 诗 诗歌 诗词 古诗 请 帮 帮我 我 给 创作 描写 表达 主题 一下 的".split())


@dataclasses.dataclass(frozen=True)
class PoemRequest:
    prompt: str = ""                 # the poem starts with this text (may span lines)
    form: str | None = None          # wujue|qijue|wulv|qilv|free or 五绝…; None: wujue, or by acrostic length
    acrostic: str = ""               # 藏头: line i starts with character i
    theme: str = ""                  # free text; keywords steer the lines
    rhyme: bool | None = None        # None: on for the regular forms
    tone: bool = False               # steer toward a standard 平仄 pattern
    no_repeat: bool = True           # no character twice within a line
    n: int = 1                       # poems to return
    best_of: int = 1                 # candidates per poem; the best score wins
    max_chars: int = 120             # free verse length cap, punctuation included
    reverse_weight: float = 0.5      # best-of: weight of the bundle's reverse model (if any) in the score,
                                     # against the forward mean log-probability; 0 ignores it
    style: str = DEFAULT_STYLE       # tang | song | ci: the control prefix of a conditioned model
                                     # (a model without control tokens ignores it)
    batch_size: int = 256            # sequences stepped together
    sample: SampleOptions = SampleOptions()

    def resolved_form(self) -> str:
        form = FORM_ALIASES.get(self.form, self.form) if self.form else None
        if form is None and self.style == "ci" and not self.acrostic:
            form = "free"   # a ci has no shi layout
        if form is None:
            acrostic = normalize_text(self.acrostic)
            form = "wulv" if len(acrostic) == 8 else "wujue"
        if form not in FORMS + ("free",):
            raise BadInput(f"unknown form {self.form!r}; choose wujue, qijue, wulv, qilv or free (五绝 七绝 五律 七律)")
        return form

    def validate(self) -> None:
        self.sample.validate()
        if not 1 <= self.n <= MAX_POEMS:
            raise BadInput(f"n must be between 1 and {MAX_POEMS}, not {self.n}")
        if not 1 <= self.best_of <= MAX_CANDIDATES:
            raise BadInput(f"best-of must be between 1 and {MAX_CANDIDATES}, not {self.best_of}")
        if not 5 <= self.max_chars <= 1000:
            raise BadInput(f"max-chars must be between 5 and 1000, not {self.max_chars}")
        if not 0.0 <= self.reverse_weight <= 1.0:
            raise BadInput(f"reverse weight must be in [0, 1], not {self.reverse_weight}")
        if self.style not in STYLES:
            raise BadInput(f"unknown style {self.style!r}; choose {', '.join(STYLES)}")
        if len(self.prompt) > MAX_PROMPT:
            raise BadInput(f"prompt is longer than {MAX_PROMPT} characters")
        self.resolved_form()


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

    @property
    def seed(self) -> int:
        return self.options.seed

    def batch_key(self) -> tuple:
        """Everything the rules and the loop read except the seed: equal keys may share one batch."""
        request, options = self.request, self.options
        return (self.form, self.prompt, self.acrostic, self.theme_ids, request.rhyme, request.tone,
                request.no_repeat, request.max_chars, options.temperature, options.top_k, options.top_p,
                request.style)


def _check_chars(text: str, what: str, allow_punctuation: bool) -> None:
    for ch in text:
        if _HAN_ONLY.fullmatch(ch) or (allow_punctuation and ch in PUNCTUATION):
            continue
        kind = "a Latin letter or digit" if ch.isascii() and ch.isalnum() else "not a Chinese character"
        raise BadInput(f"{what} contains {ch!r}, which is {kind}")


def fit_prompt(prompt: str, form: str) -> str:
    """Lay the prompt onto the form: layout punctuation inserted where it is missing, checked where given."""
    if form not in FORM_SHAPES:
        return prompt
    length, count = FORM_SHAPES[form]
    total = (length + 1) * count
    fitted = ""
    for ch in prompt:
        if len(fitted) % (length + 1) == length and ch not in PUNCTUATION:
            fitted += "，" if len(fitted) // (length + 1) % 2 == 0 else "。"
        if len(fitted) >= total:
            raise BadInput(f"prompt is longer than a {form} poem ({count} lines of {length} characters)")
        if ch in PUNCTUATION and len(fitted) % (length + 1) != length:
            line, column = divmod(len(fitted), length + 1)
            raise BadInput(f"prompt does not fit {form}: line {line + 1} has {column} characters before "
                           f"{ch!r}, but a {form} line has {length}")
        fitted += ch
    return fitted


class Generator:
    """A loaded model plus everything derived from it that generation needs."""

    def __init__(self, bundle: Bundle, int8: bool = False):
        self.bundle = bundle
        self.tokenizer = bundle.tokenizer
        self.stepper = NumpyStepper.from_model(bundle.model, bundle.model_config)
        if int8:
            self.stepper.quantize()
        self.punctuation_ids = [self.tokenizer.id_of(p) for p in PUNCTUATION if p in self.tokenizer.index]
        self.prefixer = Prefixer(self.tokenizer)   # no prefix for a model without control tokens
        self.control_ids = list(range(self.tokenizer.char_limit, self.tokenizer.vocab_size))
        self._workers = None   # threads for batches split across cores, started on first use
        for mark in "，。":
            if mark not in self.tokenizer.index:
                raise BadInput(f"the model's vocabulary lacks {mark!r}; it cannot write regular forms")

    @classmethod
    def load(cls, path=None, int8: bool = False) -> "Generator":
        return cls(load_bundle(path), int8)

    @functools.cached_property
    def reverse_scorer(self):
        """The bundle's reverse model for best-of ranking, loaded on first use; None without one."""
        from poetgen.rerank import ReverseScorer

        return ReverseScorer.load(self.bundle.path, self.tokenizer)

    @functools.cached_property
    def prosody(self):
        return table()

    @functools.cached_property
    def rhyme_membership(self) -> np.ndarray:
        groups = self.prosody.level_groups
        index = {g: i for i, g in enumerate(groups)}
        membership = np.zeros((self.tokenizer.vocab_size, len(groups)), bool)
        for ch, i in self.tokenizer.index.items():
            for group in self.prosody.rhyme_groups(ch):
                membership[i, index[group]] = True
        return membership

    @functools.cached_property
    def rhyme_membership_t(self) -> np.ndarray:
        return self.rhyme_membership.T.astype(np.float32)

    @functools.cached_property
    def tone_masks(self) -> dict[str, np.ndarray]:
        masks = {PING: np.ones(self.tokenizer.vocab_size, bool), ZE: np.ones(self.tokenizer.vocab_size, bool)}
        for ch, i in self.tokenizer.index.items():
            tones = self.prosody.tones(ch)
            if tones:   # characters outside the table are not judged
                masks[PING][i], masks[ZE][i] = PING in tones, ZE in tones
        return masks

    def encode_known(self, text: str, what: str) -> list[int]:
        unknown = self.tokenizer.unknown(text)
        if unknown:
            raise BadInput(f"the model does not know the character {unknown[0]!r} in the {what}")
        return self.tokenizer.encode(text)

    def theme_keywords(self, theme: str) -> tuple[list[str], list[int]]:
        import jieba
        import jieba.analyse

        jieba.setLogLevel(60)
        words = [w for w in jieba.analyse.extract_tags(normalize_text(theme), topK=12)
                 if w not in _REQUEST_WORDS][:6]
        chars = [ch for ch in dict.fromkeys("".join(words)) if ch in self.tokenizer.index]
        return words, [self.tokenizer.id_of(ch) for ch in chars]

    def _rules(self, request: PoemRequest, form: str, prompt: str, acrostic: str,
               streams: list[tuple[int, int]], theme_ids):
        batch = len(streams)
        shape = FORM_SHAPES.get(form)
        active = [rules.Forced(self.encode_known(prompt, "prompt"), batch)] if prompt else []
        if shape:
            active.append(rules.Layout(self.tokenizer.id_of("，"), self.tokenizer.id_of("。"),
                                       self.punctuation_ids, batch))
        else:
            active.append(rules.FreeVerse(self.punctuation_ids))
        if self.control_ids:
            active.append(rules.Banned(self.control_ids))
        if acrostic:
            active.append(rules.Acrostic(self.encode_known(acrostic, "acrostic"), batch))
        if request.no_repeat:
            active.append(rules.NoRepeat())
        patterns = None
        if shape and request.tone:
            standard = tone_patterns(*shape)
            names = list(standard)
            # Each poem's pattern comes from its own stream, so batching does not change it.
            patterns = [names[np.random.default_rng([seed, index, 1]).integers(len(names))] for seed, index in streams]
            active.append(rules.Tone(self.tone_masks, [standard[p] for p in patterns], strict_positions(shape[0])))
        rhyme = request.rhyme if request.rhyme is not None else shape is not None
        if shape and rhyme:
            first_line = np.array([p is not None and p.endswith("入韵") for p in (patterns or [None] * batch)])
            active.append(rules.Rhyme(self.rhyme_membership, first_line, self.rhyme_membership_t))
        if theme_ids:
            lines = shape[1] if shape else 8
            active.append(rules.Theme([theme_ids[i % len(theme_ids)] for i in range(lines)], theme_ids))
        return active, patterns

    def prepare(self, request: PoemRequest) -> PreparedRequest:
        """Validate and normalise a request; raise BadInput with a sentence for what cannot be used."""
        request.validate()
        form = request.resolved_form()
        prompt = normalize_text(request.prompt)
        _check_chars(prompt, "prompt", allow_punctuation=True)
        prompt = fit_prompt(prompt, form)
        acrostic = normalize_text(request.acrostic)
        _check_chars(acrostic, "acrostic", allow_punctuation=False)
        self._check_acrostic(acrostic, prompt, form)
        if prompt:
            self.encode_known(prompt, "prompt")
        if acrostic:
            self.encode_known(acrostic, "acrostic")
        words, theme_ids = self.theme_keywords(request.theme) if request.theme.strip() else ([], [])
        options = request.sample
        seed = options.seed if options.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        shape = FORM_SHAPES.get(form)
        loop_shape = Shape(shape[0] if shape else None, shape[1] if shape else None, request.max_chars,
                           frozenset(self.punctuation_ids))
        return PreparedRequest(request, form, prompt, acrostic, tuple(words), tuple(theme_ids),
                               dataclasses.replace(options, seed=seed), loop_shape)

    def sample_rows(self, job: PreparedRequest, streams: list[tuple[int, int]]) -> list[dict]:
        """One candidate poem per (seed, index) stream, stepped as one batch under `job`'s rules.

        Any request with the same batch_key() may contribute streams: its poems come out the same.
        A large batch is cut into one share per core, each stepped by its own thread with a
        single-threaded BLAS: NumPy's vocabulary-wide passes run on one core otherwise, and idle BLAS
        threads spin on the other. Rows draw from their own streams, so the poems do not change.
        """
        shares = min(_cores(), len(streams) // SHARE_ROWS)
        if shares < 2:
            return self._sample_share(job, streams)
        size = -(-len(streams) // shares)
        parts = [streams[start:start + size] for start in range(0, len(streams), size)]
        if self._workers is None:
            self._workers = ThreadPoolExecutor(_cores(), thread_name_prefix="poetgen-share")
        with _blas().limit(limits=1):
            done = list(self._workers.map(lambda part: self._sample_share(job, part), parts))
        return [poem for part in done for poem in part]

    def _sample_share(self, job: PreparedRequest, streams: list[tuple[int, int]]) -> list[dict]:
        active, patterns = self._rules(job.request, job.form, job.prompt, job.acrostic, streams, job.theme_ids)
        prefix = self.prefixer.for_request(job.request.style, job.form, getattr(job.request, "tune", ""))
        result = sample(self.stepper, active, job.shape, len(streams), job.options, streams=streams, prefix=prefix)
        return [self._poem(result, row, job.form, job.acrostic, patterns) for row in range(len(streams))]

    def finish(self, job: PreparedRequest, candidates: list[dict], elapsed: float) -> dict:
        """The result for `job` from its n × best_of candidates, in stream order."""
        n, best_of = job.request.n, job.request.best_of
        if best_of > 1 and job.request.reverse_weight > 0 and self.reverse_scorer is not None:
            self._rerank(job, candidates)
        poems = [max(candidates[i * best_of:(i + 1) * best_of], key=lambda p: p["score"]) for i in range(n)]
        return {"poems": poems, "keywords": list(job.keywords), "seed": job.seed, "form": job.form,
                "ms_per_poem": round(1000 * elapsed / n, 3)}

    def _rerank(self, job: PreparedRequest, candidates: list[dict]) -> None:
        """Move each candidate's score toward the reverse model's reading of it (weight w):
        (1 - w) × forward mean log-prob + w × reverse mean log-prob + the rhyme and tone terms."""
        prefix = self.prefixer.for_request(job.request.style, job.form, getattr(job.request, "tune", ""))
        backward = self.reverse_scorer.mean_log_probs([c["text"] for c in candidates], prefix)
        weight = job.request.reverse_weight
        for candidate, value in zip(candidates, backward):
            candidate["reverse_logprob"] = round(float(value), 4)
            candidate["score"] = round(candidate["score"] + weight * (float(value) - candidate["logprob"]), 4)

    def generate(self, request: PoemRequest) -> dict:
        started = time.perf_counter()
        job = self.prepare(request)
        total = request.n * request.best_of
        candidates = []
        for first in range(0, total, request.batch_size):
            streams = row_streams(job.seed, first, min(request.batch_size, total - first))
            candidates += self.sample_rows(job, streams)
        return self.finish(job, candidates, time.perf_counter() - started)

    def _check_acrostic(self, acrostic: str, prompt: str, form: str) -> None:
        if not acrostic:
            return
        if form not in FORM_SHAPES:
            raise BadInput("an acrostic needs a regular form (wujue, qijue, wulv or qilv)")
        length, count = FORM_SHAPES[form]
        if len(acrostic) != count:
            raise BadInput(f"acrostic has {len(acrostic)} characters but a {form} poem has {count} lines")
        for i, head in enumerate(prompt[::length + 1]):
            if head != acrostic[i]:
                raise BadInput(f"prompt line {i + 1} starts with {head!r}, but the acrostic asks for {acrostic[i]!r}")

    def _poem(self, result, row: int, form: str, acrostic: str, patterns) -> dict:
        text = self.tokenizer.decode(i for i in result.ids[row] if i >= 3)
        check = check_poem(text, form, self.prosody, acrostic)
        sampled = max(int(result.sampled[row]), 1)
        logprob = float(result.log_probs[row]) / sampled
        score = logprob + (0.5 if check.rhyme_ok else 0.0) + (check.tone_score or 0.0) * 0.5
        return {"text": text, "lines": clauses(text) or [text], "form": form, "logprob": round(logprob, 4),
                "score": round(score, 4), "rhyme_group": check.rhyme_group,
                "tone_pattern": patterns[row] if patterns else None,
                "tone_score": None if check.tone_score is None else round(check.tone_score, 4),
                "layout_ok": check.layout_ok, "rhyme_ok": check.rhyme_ok, "acrostic_ok": check.acrostic_ok}


@functools.lru_cache(maxsize=None)
def _blas() -> threadpoolctl.ThreadpoolController:
    """NumPy's BLAS, found once (a search of the loaded libraries costs milliseconds)."""
    return threadpoolctl.ThreadpoolController().select(user_api="blas")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def traditional(result: dict) -> dict:
    """The same result with poems in traditional characters."""
    poems = [{**p, "text": to_traditional(p["text"]), "lines": [to_traditional(l) for l in p["lines"]]}
             for p in result["poems"]]
    return {**result, "poems": poems}


def sample_from_model(model, bundle_dir, seed: int = 0) -> str:
    """One wujue from a model being trained (the per-epoch sample), with the run's tokenizer."""
    directory = Path(bundle_dir)
    config = read_config(directory)
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE, expected_hash=config.get("tokenizer_hash"))
    generator = Generator(Bundle(directory, model, tokenizer, config, model_config_of(config, directory)))
    return generator.generate(PoemRequest(sample=SampleOptions(seed=seed)))["poems"][0]["text"]
