"""A blind-reading set: held-out real poems and poems each decoding setting writes, shuffled and unlabelled.

Writes DIR/poems.md for the reader (numbered poems, no titles, authors or sources) and DIR/key.json for
blind_score.py (per number: real or the setting's name, the form). It never shows the key to the reader.

    python benchmarks/blind_set.py --out blind/ --per-form 5 --seed 1 \
        --setting defaults= --setting "best16=--temperature 0.5 --best-of 16 --tone"
    python benchmarks/blind_set.py --out blind2/ --model runs/new \
        --setting new= --setting "old=--model checkpoints/default"     # two models in one set
    python benchmarks/blind_set.py --out blind-ci/ --tune 浣溪沙 --per-form 10 --setting defaults=
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import random
import shlex
import sys
from pathlib import Path

from poetgen.corpus import is_held_out, shipped_corpus_path, shipped_corpus_paths
from poetgen.errors import PoetgenError
from poetgen.importers import load_corpus
from poetgen.layout import FORMS, Layout, clauses, layout_of
from poetgen.tunes import tune_table

# generate's options that the set itself chooses for every setting
RESERVED = {"--form", "--tune", "--variant", "-n", "--seed", "--format", "--traditional", "--interactive", "--help",
            "-h"}   # --variant: the real ci are in the tune's usual variant (written_as)
SCORES = ("fluency", "coherence", "imagery", "overall")
RARE_PER_MILLION = 1.5   # a character a model's training split holds less often than this (per million of its
                         # characters: 29 times in the shipped model's 19.4 million) it practically never writes: the
                         # shipped model wrote those at 7 % of their training rate (8,192 regular poems, one candidate
                         # each, generate's temperature: 37 in 344,064 characters, 553 expected), against 25 % at
                         # 100-300 times and 40 % at 300-1,000; a tiny corpus's model has none
INSTRUCTIONS = """# Blind reading

Each poem below is either a real classical poem or one written by a machine. For every poem give
fluency, coherence, imagery and overall, each from 1 (poor) to 5 (excellent), and machine_prob, your
belief from 0 to 1 that a machine wrote it. Write the judgements as JSON, one object per poem, e.g.

    [{"id": 1, "fluency": 4, "coherence": 3, "imagery": 4, "overall": 3, "machine_prob": 0.2}, ...]

and score them with `python benchmarks/blind_score.py key.json judgements.json`.
"""


def parse_setting(text: str) -> tuple[str, list[str]]:
    """NAME=OPTIONS: a name for the key and `poetgen generate` options (shell-quoted)."""
    name, sep, options = text.partition("=")
    if not sep or not name.strip() or name.strip() == "real":
        raise ValueError(f"--setting {text!r}: expected NAME=OPTIONS with a name other than 'real'")
    args = shlex.split(options)
    reserved = sorted({option for option in RESERVED for arg in args if _names(arg, option)})
    if reserved:
        raise ValueError(f"--setting {name}: {', '.join(reserved)} is chosen by blind_set.py itself")
    return name.strip(), args


def _names(arg: str, option: str) -> bool:
    """Whether command-line word `arg` gives `option`: --seed, --seed=3, or a short one joined, -n3."""
    if option.startswith("--"):
        return arg == option or arg.startswith(option + "=")
    return arg.startswith(option) and not arg.startswith("--")


def check_output(parser: argparse.ArgumentParser, out: Path, per_form: int, force: bool) -> None:
    """One line and exit 2, before any poem is generated, for a count below one, an --out under a file or
    a directory one cannot write, or an existing key that --force does not replace."""
    if per_form < 1:
        parser.error("--per-form must be at least 1")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a directory for poems.md and key.json")
    if (out / "key.json").exists() and not force:
        parser.error(f"{out / 'key.json'} exists; pass --force to replace it")
    existing = next(p for p in (out, *out.parents) if p.exists())   # made after the poems are written
    if not existing.is_dir():
        parser.error(f"cannot make --out {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        parser.error(f"cannot make --out {out}: {existing} is not writable")


def written_as(text: str, layout: Layout | None) -> bool:
    """Whether `text` is laid out as `generate` writes `layout`: its clauses, with the mark it writes after
    each. A 水调歌头 in another variant's clauses, or a real wujue with a ？, is told from generated ones."""
    lines = layout.lines(text) if layout else None
    return lines is not None and tuple(line[-1] for line in lines) == layout.end_marks


class SetModels:
    """What the models of a set allow of a real poem: held out from the training of each (its own
    val_split, as `poetgen evaluate` reads it) and written only in characters each writes: none it cannot
    (VocabularyTables.unwritable), nor one it practically never does (rare_chars: 顚, a form of 颠)."""

    def __init__(self, models: list[str | None]):
        from poetgen.bundle import load_bundle
        from poetgen.tables import VocabularyTables

        bundles = [load_bundle(model, keras=False) for model in dict.fromkeys(models)]
        self.splits = sorted({bundle.val_split for bundle in bundles})
        self.tables = [VocabularyTables(bundle.tokenizer) for bundle in bundles]
        self.rare = frozenset().union(*(rare_chars(bundle) for bundle in bundles))

    def held_out(self, text: str) -> bool:
        return all(is_held_out(text, split) for split in self.splits)

    def writable(self, text: str) -> bool:
        return not any(tables.unwritable(text) for tables in self.tables) and self.rare.isdisjoint(text)


def rare_chars(bundle) -> frozenset[str]:
    """The characters of `bundle`'s vocabulary that its training split holds less often than RARE_PER_MILLION
    per million of its characters; none (and a warning) when the corpus it was trained on is gone."""
    recorded, paths = bundle.training_corpus
    if paths is None:
        print(f"warning: {bundle.path}'s training corpus {recorded} is gone: real poems are not screened for "
              f"characters it practically never writes", file=sys.stderr)
        return frozenset()
    counts = training_counts(tuple(map(str, paths)), bundle.val_split)
    below = rare_below(counts)
    return frozenset(ch for ch in bundle.tokenizer.index if len(ch) == 1 and counts[ch] < below)


def rare_below(counts: collections.Counter) -> float:
    """The training count under which a character is rare (RARE_PER_MILLION of the split's characters)."""
    return RARE_PER_MILLION * sum(counts.values()) / 1e6


@functools.lru_cache(maxsize=4)
def training_counts(paths: tuple[str, ...], split: float) -> collections.Counter:
    """Characters of the training split (the poems not held out at `split`) of the corpus in `paths`."""
    counts = collections.Counter()
    for poem in load_corpus(list(paths)):
        if not is_held_out(poem.text, split):
            counts.update(poem.text)
    return counts


def setting_model(args: list[str]) -> str | None:
    """The bundle a setting names with --model (the last one, as click takes it); None: the set's --model."""
    model = None
    for i, arg in enumerate(args):
        if arg == "--model" and i + 1 < len(args):
            model = args[i + 1]
        elif arg.startswith("--model="):
            model = arg.partition("=")[2]
    return model


def set_models(settings: dict[str, list[str]], model: str | None) -> list[str | None]:
    """The bundles whose poems are in the set: each setting's own --model, else `model` (None: shipped)."""
    return list(dict.fromkeys(setting_model(args) or model for args in settings.values()))


def real_poems(kinds: list[str], per_kind: int, seed: int, tune: str | None,
               models: SetModels | None = None) -> dict[str, list[str]]:
    """Held-out real poems: regular Tang shi per form, or Song ci of the tune (no model of the set saw
    them: `models`, default the shipped model), each laid out as `generate` writes the form or the tune's
    usual variant (written_as): whole ones too (the corpus keeps fragments of lost ci, such as a single
    clause under 鹧鸪天). None holds a character a model of the set cannot or practically never writes
    (SetModels.writable): `seed` draws from the held-out poems as it always did, and a draw such a character
    rules out gives its place to the next spare in an order of their own, whatever writable() rules out."""
    models = models or SetModels([None])
    rng = random.Random(seed)
    if tune is None:
        poems = [p for p in load_corpus(shipped_corpus_path()) if models.held_out(p.text)]
    else:
        found = tune_table().find(tune)
        layout = found.variant(None).layout if found else None
        poems = [p for p in load_corpus(shipped_corpus_paths()[2:]) if p.tune == tune and models.held_out(p.text)
                 and written_as(p.text, layout)]
    chosen = {}
    for kind in kinds:
        texts = sorted(p.text for p in poems
                       if (p.tune == tune if tune else p.form == kind and written_as(p.text, layout_of(kind))))
        drawn = rng.sample(texts, min(per_kind, len(texts)))
        spares = sorted(set(texts) - set(drawn))
        random.Random(f"{seed}:{kind}").shuffle(spares)   # its own draws: the later kinds' stay as they were
        spares = [text for text in spares if models.writable(text)]   # after: a new screen keeps their order
        chosen[kind] = [text if models.writable(text) else spares.pop() for text in drawn
                        if models.writable(text) or spares]
        if len(chosen[kind]) < per_kind:
            print(f"warning: only {len(chosen[kind])} held-out real poems of {kind} laid out as generate writes it"
                  f" and written in characters every model of the set writes", file=sys.stderr)
    return chosen


def generated_poems(model: str | None, kind: str, n: int, seed: int, args: list[str], tune: str | None) -> list[str]:
    """Poems that `poetgen generate` writes with these options (its own parsing and defaults)."""
    from click.testing import CliRunner

    from poetgen.cli import cli

    where = ["--tune", tune] if tune else ["--form", kind]
    command = ["generate", *where, "-n", str(n), "--seed", str(seed), "--format", "json", *args]
    if model and setting_model(args) is None:   # a setting may name its own model (compare two in one set)
        command[1:1] = ["--model", model]
    result = CliRunner().invoke(cli, command)
    if result.exit_code != 0:
        raise SystemExit(f"blind_set.py: poetgen {shlex.join(command)} failed: {result.output.strip()}")
    start = result.stdout.find("{")   # anything before the JSON (a warning) is not part of it
    try:
        return [poem["text"] for poem in json.loads(result.stdout[start:])["poems"]]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"blind_set.py: poetgen {shlex.join(command)} wrote no poems as JSON: "
                         f"{' '.join(result.output.split())[:200]}") from None


def build_set(settings: dict[str, list[str]], per_form: int, seed: int, model: str | None = None,
              tune: str | None = None) -> list[dict]:
    """The entries of the set, shuffled: {number, source, form, text}."""
    kinds = [f"ci:{tune}"] if tune else list(FORMS)
    real = real_poems(kinds, per_form, seed, tune, SetModels(set_models(settings, model)))
    entries = [{"source": "real", "form": kind, "text": text} for kind, texts in real.items() for text in texts]
    for s, (name, args) in enumerate(settings.items()):
        for k, kind in enumerate(kinds):
            for text in generated_poems(model, kind, per_form, seed * 1000 + s * 10 + k, args, tune):
                entries.append({"source": name, "form": kind, "text": text})
    random.Random(seed).shuffle(entries)
    return [{"number": i + 1, **entry} for i, entry in enumerate(entries)]


def poems_markdown(entries: list[dict]) -> str:
    """Every poem laid out the same way (one clause a line), so the layout tells nothing."""
    blocks = [INSTRUCTIONS]
    for entry in entries:
        blocks.append(f"## {entry['number']}\n\n" + "  \n".join(clauses(entry["text"])) + "\n")
    return "\n".join(blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="Directory for poems.md and key.json.")
    parser.add_argument("--per-form", type=int, default=5, help="Poems of each source per form (or per tune).")
    parser.add_argument("--seed", type=int, default=0, help="Chooses the real poems, the samples and the order.")
    parser.add_argument("--model", default=None, help="Bundle directory (default: the shipped model).")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OPTIONS",
                        help="A decoding setting: a name and `poetgen generate` options (repeatable; "
                             "default: defaults= , generate's defaults).")
    parser.add_argument("--tune", default=None,
                        help="Ci of this tune: held-out real Song ci of the tune against `generate --tune`.")
    parser.add_argument("--force", action="store_true", help="Replace poems.md and key.json in --out.")
    args = parser.parse_args(argv)
    try:
        settings = dict(parse_setting(text) for text in args.setting or ["defaults="])
        if len(settings) < len(args.setting):
            raise ValueError("two --setting options have the same name")
    except ValueError as error:
        parser.error(str(error))
    check_output(parser, args.out, args.per_form, args.force)
    try:
        entries = build_set(settings, args.per_form, args.seed, args.model, args.tune)
    except PoetgenError as error:   # a --model (a setting's own too) that cannot be read
        raise SystemExit(f"blind_set.py: {' '.join(str(error).split())}") from None
    try:
        write_set(args.out, entries, key_of(args, settings, entries))
    except OSError as error:   # what check_output cannot foresee (a full disk, /proc)
        parser.error(f"cannot write the set in {args.out}: {error.strerror or error}")
    print(f"wrote {len(entries)} poems to {args.out / 'poems.md'} and the key to {args.out / 'key.json'}")


def key_of(args, settings: dict[str, list[str]], entries: list[dict]) -> dict:
    return {"seed": args.seed, "per_form": args.per_form, "model": args.model or "shipped", "tune": args.tune,
            "settings": {name: shlex.join(options) for name, options in settings.items()},
            "poems": {str(e["number"]): {"source": e["source"], "form": e["form"], "text": e["text"]}
                      for e in entries}}


def write_set(out: Path, entries: list[dict], key: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "poems.md").write_text(poems_markdown(entries), encoding="utf-8")
    (out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
