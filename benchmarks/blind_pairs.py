"""A paired blind reading: two settings write poems of the same form, and a reader says which poem of each
pair reads better. Scale-free where blind_set.py's 1-5 scores are not: readers differ by ±0.3 from one
another, and they squeeze generated poems into 1-3, so settings a tenth apart need many readers there.

    python benchmarks/blind_pairs.py set --out pairs/ --per-form 10 --seed 1 \
        --setting "new=--model runs/new" --setting "old=--model checkpoints/default"
    python benchmarks/blind_pairs.py score pairs/key.json judgements.json [--format json]

`set` writes DIR/pairs.md (numbered pairs, the two poems in random order, nothing else) and DIR/key.json.
Both poems of a pair use the same seed, so two decodings of one model share their random draws. A pair
whose two poems are the same is left out and further seeds drawn (the key counts those left out). The
reader answers with a JSON list of {"pair": N, "better": 1 or 2}. `score` prints how often each setting
won, the 95 % Wilson interval of that rate and the two-sided sign-test p-value against no preference.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blind_score import BadJudgements, print_report   # noqa: E402  (the same errors and edge)
from blind_set import check_output, generated_poems, parse_setting   # noqa: E402  (the same settings)

from poetgen.layout import FORMS, clauses   # noqa: E402

INSTRUCTIONS = """# Paired reading

Each pair below holds two classical Chinese poems of the same form. For every pair say which of the two
reads better as a poem (fluency, coherence and imagery taken together); you must choose one. Write the
answers as JSON, e.g.

    [{"pair": 1, "better": 2}, {"pair": 2, "better": 1}, ...]

and score them with `python benchmarks/blind_pairs.py score key.json judgements.json`.
"""


SEEDS_PER_FORM = 10   # seeds of --per-form poems each drawn for a form before giving up on differing pairs


class TooAlike(ValueError):
    """The two settings write the same poem for too many seeds to fill a form's pairs."""


def build_pairs(settings: dict[str, list[str]], per_form: int, seed: int,
                model: str | None = None) -> tuple[list[dict], dict[str, int]]:
    """Pairs of poems, one from each setting, of the same form and seed, in shuffled order, and per form
    the pairs left out because both settings wrote the same poem."""
    (a, _), (b, _) = settings.items()
    rng = random.Random(seed)
    pairs, identical = [], {}
    for k, form in enumerate(FORMS):
        found, identical[form] = differing_pairs(settings, form, k, per_form, seed, model)
        for text_a, text_b in found:
            poems = [(a, text_a), (b, text_b)]
            rng.shuffle(poems)
            pairs.append({"form": form, "sources": [s for s, _ in poems], "texts": [t for _, t in poems]})
    rng.shuffle(pairs)
    return [{"number": i + 1, **pair} for i, pair in enumerate(pairs)], identical


def differing_pairs(settings: dict[str, list[str]], form: str, k: int, per_form: int, seed: int,
                    model: str | None) -> tuple[list[tuple[str, str]], int]:
    """`per_form` pairs of the `k`th form whose two poems differ, and how many alike were left out. A
    pair of the same poem twice only makes the reader toss a coin: further seeds are drawn (seed * 1000 +
    10 * round + k; the first round's is every earlier set's), at most SEEDS_PER_FORM rounds."""
    (a, a_args), (b, b_args) = settings.items()
    found, identical = [], 0
    for round_ in range(SEEDS_PER_FORM):
        pair_seed = seed * 1000 + 10 * round_ + k
        first = generated_poems(model, form, per_form, pair_seed, a_args, None)
        second = generated_poems(model, form, per_form, pair_seed, b_args, None)
        for text_a, text_b in zip(first, second):
            if text_a == text_b:
                identical += 1
                continue
            found.append((text_a, text_b))
            if len(found) == per_form:
                return found, identical
    raise TooAlike(f"{a} and {b} wrote the same {form} poem in {identical} of the {identical + len(found)} pairs "
                   f"drawn from {SEEDS_PER_FORM} seeds, leaving {len(found)} of the {per_form} asked for: the two "
                   f"settings barely differ (ask for fewer with --per-form, or compare settings that change the poems)")


def pairs_markdown(pairs: list[dict]) -> str:
    blocks = [INSTRUCTIONS]
    for pair in pairs:
        poems = ["  \n".join(clauses(text)) for text in pair["texts"]]
        blocks.append(f"## Pair {pair['number']}\n\n1.  \n{poems[0]}\n\n2.  \n{poems[1]}\n")
    return "\n".join(blocks)


def read_judgements(data) -> dict[str, int]:
    """The chosen poem (1 or 2) by pair number, from a list of {"pair", "better"} objects."""
    if not isinstance(data, list):
        raise BadJudgements("expected a JSON list of {\"pair\": N, \"better\": 1 or 2}")
    choices = {}
    for value in data:
        if not isinstance(value, dict) or "pair" not in value:
            raise BadJudgements(f"a judgement without a pair number: {value!r}")
        number = str(value["pair"])
        if value.get("better") not in (1, 2, "1", "2"):
            raise BadJudgements(f"pair {number}: better must be 1 or 2, not {value.get('better')!r}")
        if number in choices:
            raise BadJudgements(f"pair {number} is judged twice")
        choices[number] = int(value["better"])
    return choices


def sign_test(wins: int, n: int) -> float:
    """Two-sided exact binomial p-value of `wins` out of `n` under no preference (p = 0.5)."""
    if n == 0:
        return 1.0
    observed = math.comb(n, wins)
    return min(1.0, sum(math.comb(n, k) for k in range(n + 1) if math.comb(n, k) <= observed) / 2 ** n)


def wilson(wins: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a win rate."""
    if n == 0:
        return None
    p = wins / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))


def score(key: dict, choices: dict[str, int]) -> dict:
    pairs = key["pairs"]
    unknown = sorted(set(choices) - set(pairs), key=lambda n: (len(n), n))
    if unknown:
        raise BadJudgements(f"pairs {', '.join(unknown)} are not in the key")
    a, b = key["settings"]
    winners = [pairs[n]["sources"][choice - 1] for n, choice in choices.items()]
    wins_a, n = winners.count(a), len(winners)
    by_form = {form: sum(pairs[num]["sources"][c - 1] == a for num, c in choices.items() if pairs[num]["form"] == form)
               for form in FORMS}
    interval = wilson(wins_a, n)
    return {"settings": [a, b], "judged": n, "pairs": len(pairs), "wins": {a: wins_a, b: n - wins_a},
            "win_rate": {a: round(wins_a / n, 4) if n else None},
            "interval_95": [round(x, 4) for x in interval] if interval else None,
            "sign_test_p": round(sign_test(wins_a, n), 4),
            "wins_by_form": {form: {a: w, "of": sum(pairs[num]["form"] == form for num in choices)}
                             for form, w in by_form.items()},
            "identical_skipped": identical_skipped(key)}


def identical_skipped(key: dict) -> dict | None:
    """Pairs of one poem twice that `set` left out, in all and by form; None for a key written before
    2026-11-28, which kept them (count them by hand: pairs whose two texts are the same)."""
    by_form = key.get("identical_skipped")
    if by_form is None:
        return None
    return {"total": sum(by_form[form] for form in FORMS), "by_form": {form: by_form[form] for form in FORMS}}


def format_text(report: dict) -> str:
    a, b = report["settings"]
    rows = [f"{report['judged']} of {report['pairs']} pairs judged"]
    if report["judged"]:
        low, high = report["interval_95"]
        rows.append(f"{a} preferred to {b} in {report['wins'][a]} of {report['judged']} "
                    f"({report['win_rate'][a]:.1%}; 95 % interval {low:.1%}-{high:.1%}; "
                    f"sign test p = {report['sign_test_p']:.3f})")
        rows.append("by form: " + ", ".join(f"{form} {row[a]}/{row['of']}" for form, row in report["wins_by_form"].items()))
    skipped = report["identical_skipped"]
    if skipped is None:
        rows.append("pairs of the same poem twice: not recorded (a key from before 2026-11-28 kept them)")
    else:
        rows.append(f"pairs of the same poem twice left out when the set was made: {skipped['total']} ("
                    + ", ".join(f"{form} {n}" for form, n in skipped["by_form"].items()) + ")")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("set", help="write pairs.md and key.json")
    p.add_argument("--out", required=True, type=Path, help="Directory for pairs.md and key.json.")
    p.add_argument("--per-form", type=int, default=10, help="Pairs per regular form.")
    p.add_argument("--seed", type=int, default=0, help="Chooses the samples and the order.")
    p.add_argument("--model", default=None, help="Bundle directory (default: the shipped model).")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=OPTIONS",
                   help="Exactly two: a name and `poetgen generate` options each (as in blind_set.py).")
    p.add_argument("--force", action="store_true", help="Replace pairs.md and key.json in --out.")
    p = commands.add_parser("score", help="score a reader's choices")
    p.add_argument("key", type=Path, help="key.json written by `set`")
    p.add_argument("judgements", type=Path, help="the reader's choices (JSON)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.command == "set":
        try:
            settings = dict(parse_setting(text) for text in args.setting)
            if len(args.setting) != 2 or len(settings) != 2:
                raise ValueError("give exactly two --setting options, with different names")
        except ValueError as error:
            parser.error(str(error))
        check_output(parser, args.out, args.per_form, args.force)
        try:
            pairs, identical = build_pairs(settings, args.per_form, args.seed, args.model)
        except TooAlike as error:   # before anything is written
            print(f"blind_pairs.py: error: {error}", file=sys.stderr)
            return 2
        key = {"seed": args.seed, "per_form": args.per_form, "model": args.model or "shipped",
               "settings": {name: shlex.join(options) for name, options in settings.items()},
               "identical_skipped": identical,
               "pairs": {str(p["number"]): {k: p[k] for k in ("form", "sources", "texts")} for p in pairs}}
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "pairs.md").write_text(pairs_markdown(pairs), encoding="utf-8")
            (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
        except OSError as error:   # what check_output cannot foresee (a full disk, /proc)
            parser.error(f"cannot write the pairs in {args.out}: {error.strerror or error}")
        print(f"wrote {len(pairs)} pairs to {args.out / 'pairs.md'} and the key to {args.out / 'key.json'}")
        return 0
    return print_report("blind_pairs.py", args.key, args.judgements, args.format, entries="pairs",
                        writer="blind_pairs.py set", read=read_judgements, score=score, text=format_text)


if __name__ == "__main__":
    sys.exit(main())
