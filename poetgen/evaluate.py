"""`poetgen evaluate`: held-out perplexity of a bundle, and how well the poems it writes keep their form.

It measures a model; it never trains or changes one. Poems come from the same Generator as `generate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from typing import Callable, Iterable

from poetgen.bundle import Bundle
from poetgen.checks import check_poem
from poetgen.control import Prefixer
from poetgen.corpus import (DYNASTIES, GENRES, SHIPPED_FILES, corpus_hash, is_held_out,
                            shipped_corpus_paths, shipped_label)
from poetgen.errors import BadCorpus
from poetgen.generate import Generator
from poetgen.importers import load_corpus
from poetgen.layout import FORM_SHAPES, FORMS, clauses, form_of
from poetgen.metre import strict_columns, tone_patterns
from poetgen.model import sequence_log_likelihood
from poetgen.options import check_settings, setting
from poetgen.request import MAX_POEMS, PoemRequest
from poetgen.sampling import SEED_LIMIT, SampleOptions, row_streams
from poetgen.weights import layer_weights

ALL = "all"                 # a subset value that keeps every dynasty or genre
SCORE_CHUNK = 128           # poems scored between two progress updates
UNKNOWN_EXAMPLES = 20       # unknown characters listed by name in the report
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    corpus: str | None = None   # a corpus file scored whole; default: the shipped corpus's held-out split
    samples: int = setting(100, low=1, high=MAX_POEMS)   # poems generated per regular form
    seed: int = setting(0, low=0, high=SEED_LIMIT, high_open=True)   # sampling seed, fixed so that two runs (and two models) compare
    batch_size: int = setting(64, low=1)                 # poems scored together for perplexity
    dynasty: str | None = setting(None, choices=DYNASTIES + (ALL,))   # score only this dynasty's poems
    # (dynasty None: all, except on the shipped corpus with no genre either, where it means tang: the
    # held-out set every earlier perplexity was measured on)
    genre: str | None = setting(None, choices=GENRES + (ALL,))        # score only this genre; default: all
    held_out: bool = False      # a --corpus file's held-out poems only, by the model's own split (as training scored)

    def validate(self) -> None:
        check_settings(self)

    def subset(self) -> tuple[str, str]:
        """(dynasty, genre) actually scored, "all" where a field is not filtered."""
        if self.corpus is None and self.dynasty is None and self.genre is None:
            return "tang", ALL
        return self.dynasty or ALL, self.genre or ALL


def in_subset(poem, dynasty: str, genre: str) -> bool:
    return dynasty in (ALL, poem.dynasty) and genre in (ALL, poem.genre)


def config_hash(config: dict) -> str:
    """A short hash of the bundle's config.json, without the progress counters that change on resume."""
    stable = {key: value for key, value in config.items() if key != "progress"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def unknown_report(texts: Iterable[str], known: dict) -> dict:
    """Characters outside the vocabulary: how many, which; they are scored as <unk>, as in training."""
    counts: dict[str, int] = {}
    total = 0
    for text in texts:
        total += len(text)
        for ch in text:
            if ch not in known:
                counts[ch] = counts.get(ch, 0) + 1
    count = sum(counts.values())
    examples = sorted(counts, key=lambda ch: (-counts[ch], ch))[:UNKNOWN_EXAMPLES]
    return {"count": count, "distinct": len(counts), "share": round(count / total, 6) if total else 0.0,
            "examples": "".join(examples)}


def perplexity(model, token_lists: list[list[int]], batch_size: int = 64,
               advance: Callable[[int], None] = lambda n: None, prefixes: list[list[int]] | None = None) -> dict:
    """exp(mean negative log-likelihood) over every predicted id, each poem's end mark included
    (a conditioned model's control prefix is read, not scored)."""
    prefixes = prefixes or [[] for _ in token_lists]
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))   # less padding per batch
    total, count = 0.0, 0
    for start in range(0, len(order), SCORE_CHUNK):
        chunk = order[start:start + SCORE_CHUNK]
        chunk_total, chunk_count = sequence_log_likelihood(model, [token_lists[i] for i in chunk], batch_size,
                                                           prefixes=[prefixes[i] for i in chunk])
        total, count = total + chunk_total, count + chunk_count
        advance(len(chunk))
    nll = -total / count
    return {"perplexity": math.exp(nll), "bits_per_char": nll / math.log(2), "tokens": count}


def line_bodies(text: str) -> list[str]:
    """The lines of a poem without their closing punctuation."""
    return [line[:-1] for line in clauses(text)]


def distinct(lines: list[str], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams, counted within lines (never across punctuation)."""
    grams = [line[i:i + n] for line in lines for i in range(len(line) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def tone_report(checks: list, form_length: int, line_count: int) -> dict:
    """Share of strict 平仄 positions that fit the poem's best standard pattern, overall and per column
    (a column strict in some lines only, as 仄仄仄平平's third, counts those lines)."""
    patterns = tone_patterns(form_length, line_count)
    fits: dict[int, list[bool]] = {}
    for check in checks:
        if not check.tone_positions:
            continue
        columns = [c for line in patterns[check.tone_pattern] for c in strict_columns(line)]
        for column, ok in zip(columns, check.tone_positions):
            fits.setdefault(column, []).append(ok)
    every = [ok for values in fits.values() for ok in values]
    return {"overall": _share(every), "by_position": {str(c + 1): _share(fits[c]) for c in sorted(fits)}}


def form_census(texts: list[str], prosody) -> dict:
    """What unconstrained samples turn out to be: the share in each regular form (exact layout and
    punctuation), and among those the share that rhyme and the mean 平仄 fit."""
    regular = []   # (form, check) of each sample that is a well-formed regular poem
    for text in texts:
        form = form_of(text)
        check = check_poem(text, form, prosody) if form in FORM_SHAPES else None
        if check is not None and check.layout_ok:
            regular.append((form, check))
    tone = [check.tone_score for _, check in regular if check.tone_score is not None]
    return {"regular_share": _share([True] * len(regular) + [False] * (len(texts) - len(regular))),
            "by_form": {form: round(sum(f == form for f, _ in regular) / len(texts), 4) if texts else None
                        for form in FORMS},
            "rhyme_given_regular": _share([bool(check.rhyme_ok) for _, check in regular]),
            "tone_given_regular": round(sum(tone) / len(tone), 4) if tone else None}


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


FREE_TEMPERATURE = 0.8   # the model alone is sampled at a fixed temperature, comparable across versions


class Evaluation:
    """One evaluation of one bundle.

    The texts to score and the training lines are read up front, so the amount of work is known
    (for a progress bar) before the slow parts start.
    """

    def __init__(self, bundle: Bundle, options: EvalOptions):
        options.validate()
        self.bundle, self.options = bundle, options
        self.val_split = bundle.val_split   # the model's own split, as training held it out
        # a reverse model (train --reverse) reads each poem backwards, as in training; it writes no poems
        self.reverse = bundle.reverse
        self.conditioned = Prefixer(bundle.tokenizer).enabled   # alone, it is asked for each form in turn
        self._corpora: dict[tuple, list] = {}
        dynasty, genre = options.subset()
        if options.corpus is None:
            # the Tang-only default reads only the Tang file: the same poems, as fast as before
            files = SHIPPED_FILES[:1] if dynasty == "tang" and genre in (ALL, "shi") else SHIPPED_FILES
            poems = self._corpus(tuple(shipped_corpus_paths(files)))
            self.poems = [p for p in poems if in_subset(p, dynasty, genre) and is_held_out(p.text, self.val_split)]
            self.source = {"path": shipped_label(files), "split": f"held-out ({self.val_split:g})"}
        else:
            self.poems = [p for p in self._corpus((options.corpus,)) if in_subset(p, dynasty, genre)
                          and (not options.held_out or is_held_out(p.text, self.val_split))]
            self.source = {"path": str(options.corpus),
                           "split": f"held-out ({self.val_split:g})" if options.held_out else "whole file"}
        self.texts = [p.text for p in self.poems]
        self.source["subset"] = {"dynasty": dynasty, "genre": genre}
        if not self.texts:
            raise BadCorpus(f"{self.source['path']}: no poem to score in its {self.source['split']} split"
                            f" (dynasty {dynasty}, genre {genre})")
        self.training_lines = None if self.reverse else self._training_lines()

    @property
    def work(self) -> int:
        """Units of progress: one per poem scored, one per poem generated."""
        return len(self.texts) + (0 if self.reverse else len(FORMS) * self.options.samples + self.free_samples)

    @property
    def free_samples(self) -> int:
        """Poems the model writes alone: `samples`, or as many of each form for a conditioned model."""
        return self.options.samples * (len(FORMS) if self.conditioned else 1)

    def _corpus(self, paths: tuple) -> list:
        key = tuple(map(str, paths))
        if key not in self._corpora:
            self._corpora[key] = load_corpus(list(paths))
        return self._corpora[key]

    def _training_lines(self) -> set[str] | None:
        """Lines of the training split of the corpus the model was trained on; None when it is gone."""
        record = self.bundle.config.get("corpus", {})
        recorded, paths = self.bundle.training_corpus
        if paths is None:
            logger.warning(f"training corpus {recorded} is gone; copied_line_rate is not measured")
            return None
        poems = self._corpus(tuple(paths))
        if record.get("hash") not in (None, corpus_hash(poems)):
            logger.warning(f"the training corpus {recorded} changed since training; "
                f"copied_line_rate compares with it as it is now")
        return {line for p in poems if not is_held_out(p.text, self.val_split) for line in line_bodies(p.text)}

    def run(self, advance: Callable[[int], None] = lambda n: None) -> dict:
        tokenizer = self.bundle.tokenizer
        prefixer = Prefixer(tokenizer)   # a conditioned model reads each poem's control prefix first
        ids = [tokenizer.encode(text[::-1] if self.reverse else text) for text in self.texts]
        scored = perplexity(self.bundle.model, ids, self.options.batch_size, advance,
                            [prefixer.for_poem(p) for p in self.poems])
        report = {"model": str(self.bundle.path), "config_hash": config_hash(self.bundle.config),
                  "corpus": {**self.source, "poems": len(self.texts), "tokens": scored["tokens"]},
                  "perplexity": round(scored["perplexity"], 4), "bits_per_char": round(scored["bits_per_char"], 4),
                  "unknown_chars": unknown_report(self.texts, tokenizer.index),
                  "samples": self.options.samples, "seed": self.options.seed}
        if self.reverse:   # the held-out figure training reports; the poem sections need a forward model
            return {**report, "samples": 0, "reverse": True}
        per_form = {}
        generator = self.generator()
        report["int8"] = generator.int8
        for form in FORMS:
            per_form[form] = self.poem_report(generator, form)
            advance(self.options.samples)
        for key in ("form_compliance", "rhyme_compliance", "tone_compliance", "copied_line_rate",
                    "distinct_1", "distinct_2", "ms_per_poem"):
            report[key] = {form: values[key] for form, values in per_form.items()}
        report["unconstrained"] = self.unconstrained_report(generator)
        advance(self.free_samples)
        return report

    def generator(self) -> Generator:
        """The Generator `generate` loads: int8 where the bundle carries int8 products of these weights
        (one built over a Keras model in memory, as training's samples are, stays float32)."""
        bundle = self.bundle
        if bundle.model is not None:
            bundle = dataclasses.replace(bundle, model=None, weights=layer_weights(bundle.model))
        return Generator(bundle)

    def unconstrained_report(self, generator: Generator) -> dict:
        """The model alone: free verse with no layout, rhyme or repetition rule (only the special ids
        are banned), then sorted by form. The constrained figures above hold by construction; these
        show how much of the form the model itself has learned. A conditioned model reads each regular
        form's control token in turn (`samples` poems each; `in_asked_form`: the share that came out in
        it): free verse's own token, <other>, asks it for a poem in none of the four forms."""
        request = PoemRequest(form="free", n=self.options.samples, no_repeat=False, rhyme=False, tone=False,
                              best_of=1, sample=SampleOptions(FREE_TEMPERATURE, seed=self.options.seed))
        checking = generator.tables.checking
        if not generator.prefixer.enabled:
            texts = [poem["text"] for poem in generator.generate(request)["poems"]]
            return {**form_census(texts, checking), "temperature": request.sample.temperature}
        prepared = generator.prepare(request)
        asked = {form: _free_texts(generator, dataclasses.replace(prepared, form=form)) for form in FORMS}
        texts = [text for form in FORMS for text in asked[form]]
        return {**form_census(texts, checking), "temperature": request.sample.temperature,
                "in_asked_form": {form: form_census(asked[form], checking)["by_form"][form] for form in FORMS}}

    def poem_report(self, generator: Generator, form: str) -> dict:
        request = PoemRequest(form=form, n=self.options.samples, sample=SampleOptions(seed=self.options.seed))
        result = generator.generate(request)
        texts = [poem["text"] for poem in result["poems"]]
        checks = [check_poem(text, form, generator.tables.checking) for text in texts]
        lines = [line for text in texts for line in line_bodies(text)]
        copied = None
        if self.training_lines is not None:
            copied = _share([line in self.training_lines for line in lines])
        return {"form_compliance": _share([c.layout_ok for c in checks]),
                "rhyme_compliance": _share([bool(c.rhyme_ok) for c in checks]),
                "tone_compliance": tone_report(checks, *FORM_SHAPES[form][:2]),
                "copied_line_rate": copied,
                "distinct_1": round(distinct(lines, 1), 4), "distinct_2": round(distinct(lines, 2), 4),
                "ms_per_poem": result["ms_per_poem"]}


def _free_texts(generator: Generator, prepared) -> list[str]:
    """The poems of a free verse request whose `form` names the controls read (Generator.prefix)."""
    n, batch = prepared.request.n, prepared.request.batch_size
    return [poem["text"] for first in range(0, n, batch)
            for poem in generator.sample_rows(prepared, row_streams(prepared.seed, first, min(batch, n - first)))]


def format_text(report: dict) -> str:
    """The report as a short table for a terminal."""
    unknown = report["unknown_chars"]
    corpus = report["corpus"]
    rows = [f"model        {report['model']} (config {report['config_hash']})",
            f"scored on    {corpus['path']}, {corpus['split']}: {corpus['poems']:,} poems, "
            f"{corpus['tokens']:,} predicted ids",
            f"subset       dynasty {corpus['subset']['dynasty']}, genre {corpus['subset']['genre']}",
            f"perplexity   {report['perplexity']:.2f}   bits per character {report['bits_per_char']:.3f}",
            f"unknown      {unknown['count']:,} characters ({unknown['share']:.2%}), {unknown['distinct']} distinct"
            + (f": {unknown['examples']}" if unknown["examples"] else ""),
            ""]
    if report.get("reverse"):
        return "\n".join(rows + ["a reverse model (trained with --reverse): poems scored backwards, none generated"])
    rows += [f"{report['samples']} poems per form, seed {report['seed']}, {'int8' if report['int8'] else 'float32'}",
             "form    layout  rhyme   tone    copied  dist-1  dist-2  ms/poem"]
    for form in FORMS:
        copied = report["copied_line_rate"][form]
        rows.append(f"{form:<7} {report['form_compliance'][form]:<7.3f} {report['rhyme_compliance'][form]:<7.3f} "
                    f"{_fmt(report['tone_compliance'][form]['overall'])} {_fmt(copied)} "
                    f"{report['distinct_1'][form]:<7.3f} {report['distinct_2'][form]:<7.3f} "
                    f"{report['ms_per_poem'][form]:.2f}")
    free = report["unconstrained"]
    forms = ", ".join(f"{form} {share:.0%}" for form, share in free["by_form"].items() if share)
    rows.append("")
    rows.append(f"model alone (free sampling at temperature {free['temperature']:g}, no rules): "
                f"{free['regular_share']:.0%} regular forms" + (f" ({forms})" if forms else ""))
    if "in_asked_form" in free:
        rows.append("             asked for each form in turn, in that form: "
                    + ", ".join(f"{form} {share:.0%}" for form, share in free["in_asked_form"].items()))
    if free["rhyme_given_regular"] is not None:
        rows.append(f"             of these {free['rhyme_given_regular']:.0%} rhyme; 平仄 fit {_fmt(free['tone_given_regular']).strip()}")
    rows.append("")
    rows.append("平仄 by strict position (share that fits the best standard pattern):")
    for form in FORMS:
        positions = report["tone_compliance"][form]["by_position"]
        cells = [f"{column}: {_fmt(value).strip()}" for column, value in positions.items()]
        rows.append(f"{form:<7} " + "  ".join(cells))
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return f"{value:<7.3f}" if value is not None else "n/a    "
