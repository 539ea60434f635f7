"""Experiment (issue 11, titles): does a model trained with `--titles` read better when it writes to a
title? A blind set of held-out real Tang poems and, per setting, poems written with no title, with a
title the model writes itself first (sampled after the control prefix up to the title mark, like any
text), or with a real title drawn from the training split's cleaned titles of the same form.

    python benchmarks/title_reading.py --out runs/blind/t241 --seed 241 \\
        --setting old=checkpoints/default:none --setting none=runs/titled:none \\
        --setting auto=runs/titled:auto --setting realt=runs/titled:real
    python benchmarks/blind_score.py runs/blind/t241/key.json judgements.json

Every poem uses `generate`'s defaults otherwise (T 0.8, --tone, best of 2 with the reverse model).
Result (README, Blind reading): see "Titles".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

MAX_AUTO_TITLE = 8   # characters of a title the model writes itself; the title mark is forced after them
MODES = ("none", "auto", "real")


def han_ids(tokenizer) -> np.ndarray:
    """(vocab,) True for the ids of Han characters: what a title is made of."""
    import re

    from poetgen.corpus import HAN

    han = re.compile(f"[{HAN}]")
    allowed = np.zeros(tokenizer.vocab_size, bool)
    allowed[[tokenizer.id_of(ch) for ch in tokenizer.chars if han.fullmatch(ch)]] = True
    return allowed


def own_title(generator, prepared, rng: np.random.Generator, allowed: np.ndarray) -> str:
    """A title the model writes after the control prefix: Han characters until it writes the title mark."""
    from poetgen.control import TITLE_END
    from poetgen.sampling import choose

    end = generator.tokenizer.id_of(TITLE_END)
    state, previous = generator.stepper.after_prefix(tuple(generator.controls(prepared)), 1)
    ids = []
    for position in range(MAX_AUTO_TITLE + 1):
        state = generator.stepper.advance(previous, state)
        logits = generator.stepper.logits(state).copy()
        mask = allowed.copy()
        mask[end] = position > 0
        if position == MAX_AUTO_TITLE:
            mask[:] = False
            mask[end] = True
        logits[0, ~mask] = -np.inf
        chosen = int(choose(logits, prepared.options, [rng])[0])
        if chosen == end:
            break
        ids.append(chosen)
        previous = np.array([chosen])
    return generator.tokenizer.decode(ids)


def real_titles(form: str, tokenizer) -> list[str]:
    """The cleaned titles of the training split's Tang poems of `form` whose characters the model knows."""
    from poetgen.control import clean_title
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.importers import load_corpus

    titles = {clean_title(p.title) for p in load_corpus(shipped_corpus_path())
              if p.form == form and not is_held_out(p.text)}
    return sorted(t for t in titles if t and len(t) >= 2 and not tokenizer.unknown(t))


def poems(generator, form: str, n: int, seed: int, mode: str) -> list[tuple[str, str]]:
    """(title, text) of n poems of `form` written with `mode`'s title."""
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    titles = real_titles(form, generator.tokenizer) if mode == "real" else None
    pick, allowed, written = random.Random(seed), han_ids(generator.tokenizer), []
    for i in range(n):
        options = SampleOptions(seed=seed * 100 + i)
        title = ""
        if mode == "auto":
            prepared = generator.prepare(PoemRequest(form=form, sample=options))
            title = own_title(generator, prepared, np.random.default_rng([seed, i, 7]), allowed)
        elif mode == "real":
            title = pick.choice(titles)
        result = generator.generate(PoemRequest(form=form, title=title, sample=options))
        written.append((title, result["poems"][0]["text"]))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for poems.md and key.json")
    parser.add_argument("--seed", type=int, default=241, help="chooses the real poems, titles, samples and order")
    parser.add_argument("--per-form", type=int, default=5)
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=MODEL:MODE",
                        help=f"a bundle and a title mode ({', '.join(MODES)}); repeatable")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from blind_set import SetModels, poems_markdown, real_poems

    from poetgen.generate import Generator
    from poetgen.layout import FORMS

    settings = []
    for setting in args.setting:
        name, _, spec = setting.partition("=")
        model, _, mode = spec.rpartition(":")
        if mode not in MODES or not name or name == "real":
            parser.error(f"--setting {setting!r}: expected NAME=MODEL:MODE with MODE one of {', '.join(MODES)}")
        settings.append((name, model, mode))
    # real poems held out from, and writable by, every model read (as blind_set.py picks them)
    models = SetModels([model for _, model, _ in settings])
    entries = [{"source": "real", "form": kind, "text": text}
               for kind, texts in real_poems(list(FORMS), args.per_form, args.seed, None, models).items()
               for text in texts]
    loaded = {}
    for s, (name, model, mode) in enumerate(settings):
        generator = loaded.setdefault(model, Generator.load(model))
        for k, form in enumerate(FORMS):
            for title, text in poems(generator, form, args.per_form, args.seed * 1000 + s * 10 + k, mode):
                entries.append({"source": name, "form": form, "text": text, "title": title})
    random.Random(args.seed).shuffle(entries)
    entries = [{"number": i + 1, **entry} for i, entry in enumerate(entries)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poems.md").write_text(poems_markdown(entries), encoding="utf-8")   # titles are never shown
    key = {"seed": args.seed, "settings": dict(s.partition("=")[::2] for s in args.setting),
           "poems": {str(e["number"]): {k: e[k] for k in ("source", "form", "text", "title") if k in e}
                     for e in entries}}
    (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(entries)} poems to {args.out / 'poems.md'} and the key to {args.out / 'key.json'}")


if __name__ == "__main__":
    main()
