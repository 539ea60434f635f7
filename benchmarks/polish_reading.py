"""Experiment (issue 11, iterative polishing): rewrite a generated poem line by line, keeping a new line
only when the whole poem then reads better to both models, against generate's defaults, in a blind set
for blind_score.py.

Polishing after Yan (IJCAI 2016, "i, Poet"), with this project's two models: a poem from generate's
defaults; then, for each line in turn, K fresh versions of that line are sampled after the lines before
it (generate with the earlier lines as its prompt, same rules), each spliced between the earlier and the
later lines; a splice that keeps the form, the rhyme group, the 平仄 fit and no repeated character
replaces the poem (no more repeated characters than it had) when its mean log-probability, forward plus backward (the reverse model), is higher.
Sampling left to right cannot see the lines that follow; this lets every line be chosen knowing them.

    python benchmarks/polish_reading.py --out runs/blind/o1 --seed 141      # and --seed 151
    python benchmarks/blind_score.py runs/blind/o1/key.json judgements.json
    python benchmarks/polish_reading.py --measure                            # distinct-2, copies, ms
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

FORMS_READ = ("wujue", "qijue", "wulv", "qilv")


class Polisher:
    """Rounds of line-by-line rewriting of one poem, judged by the forward and the reverse model."""

    def __init__(self, generator, alternatives: int, rounds: int):
        from poetgen.rerank import ReverseScorer

        self.generator, self.alternatives, self.rounds = generator, alternatives, rounds
        # the forward model reads a text forwards: ReverseScorer reverses what it is given
        self.forward = ReverseScorer(generator.stepper, generator.tokenizer)
        self.backward = generator.reverse_scorer

    def score(self, texts: list[str], prefix) -> list[float]:
        forward = self.forward.mean_log_probs([t[::-1] for t in texts], prefix)
        backward = self.backward.mean_log_probs(texts, prefix)
        return list((forward + backward) / 2)

    def polish(self, text: str, form: str, seed: int) -> tuple[str, int]:
        """The polished poem, and how many lines were replaced."""
        from poetgen.checks import check_poem
        from poetgen.generate import PoemRequest
        from poetgen.layout import clauses
        from poetgen.sampling import SampleOptions

        g = self.generator
        prefix = g.prefix(g.prepare(PoemRequest(form=form)))
        original = check_poem(text, form, g.tables.prosody)
        repeats = _repeats(text)
        best = self.score([text], prefix)[0]
        replaced = 0
        for r in range(self.rounds):
            lines = clauses(text)
            for i in range(len(lines)):
                before, after = "".join(lines[:i]), "".join(lines[i + 1:])
                request = PoemRequest(form=form, prompt=before, n=self.alternatives, best_of=1,
                                      sample=SampleOptions(seed=seed * 100 + r * 10 + i))
                splices = []
                for poem in g.generate(request)["poems"]:
                    candidate = before + clauses(poem["text"])[i] + after
                    check = check_poem(candidate, form, g.tables.prosody)
                    if (candidate != text and check.layout_ok and check.rhyme_ok
                            and check.rhyme_group == original.rhyme_group
                            and (check.tone_score or 0) >= (original.tone_score or 0)
                            and _repeats(candidate) <= repeats):
                        splices.append(candidate)
                if not splices:
                    continue
                scores = self.score(splices, prefix)
                top = max(range(len(splices)), key=scores.__getitem__)
                if scores[top] > best:
                    text, best, replaced = splices[top], scores[top], replaced + 1
                    lines = clauses(text)
        return text, replaced


def _repeats(text: str) -> int:
    """Characters of the poem's body that repeat an earlier one."""
    body = [c for c in text if c.isalpha()]
    return len(body) - len(set(body))


def blind_set(args) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from blind_set import poems_markdown, real_poems

    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    generator, seed = Generator.load(None), args.seed
    polisher = Polisher(generator, args.alternatives, args.rounds)
    entries = [{"source": "real", "form": k, "text": t}
               for k, ts in real_poems(list(FORMS_READ), 5, seed, None).items() for t in ts]
    for k, form in enumerate(FORMS_READ):
        result = generator.generate(PoemRequest(form=form, n=5, sample=SampleOptions(seed=seed * 1000 + k)))
        entries += [{"source": "defaults", "form": form, "text": p["text"]} for p in result["poems"]]
        result = generator.generate(PoemRequest(form=form, n=5, sample=SampleOptions(seed=seed * 1000 + 100 + k)))
        for i, poem in enumerate(result["poems"]):
            text, replaced = polisher.polish(poem["text"], form, seed * 1000 + 200 + k * 10 + i)
            entries.append({"source": "polish", "form": form, "text": text, "from": poem["text"],
                            "replaced": replaced})
    random.Random(seed).shuffle(entries)
    entries = [{"number": i + 1, **e} for i, e in enumerate(entries)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poems.md").write_text(poems_markdown(entries), encoding="utf-8")
    key = {"seed": seed, "per_form": 5, "model": "shipped",
           "settings": {"defaults": "generate's defaults",
                        "polish": f"the defaults, then {args.rounds} round(s) of polishing, "
                                  f"{args.alternatives} versions per line"},
           "poems": {str(e["number"]): {k: v for k, v in e.items() if k != "number"} for e in entries}}
    (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(entries)} poems to {args.out / 'poems.md'} and the key to {args.out / 'key.json'}")


def measure(args) -> None:
    """distinct-2 and lines copied from the training split, over 40 polished poems per form, and ms each."""
    from poetgen.bundle import load_bundle
    from poetgen.evaluate import EvalOptions, Evaluation, distinct, line_bodies
    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    generator = Generator.load(None)
    training = Evaluation(load_bundle(None, keras=False), EvalOptions()).training_lines
    polisher = Polisher(generator, args.alternatives, args.rounds)
    for form in FORMS_READ:
        poems = [p["text"] for p in generator.generate(PoemRequest(form=form, n=40, sample=SampleOptions(seed=0)))["poems"]]
        started = time.perf_counter()
        polished = [polisher.polish(text, form, 7 + i)[0] for i, text in enumerate(poems)]
        ms = 1000 * (time.perf_counter() - started) / len(poems)
        for name, texts in (("defaults", poems), ("polished", polished)):
            lines = [line for text in texts for line in line_bodies(text)]
            copied = sum(line in training for line in lines) / len(lines)
            print(f"{form} {name:9s} distinct-2 {distinct(lines, 2):.3f} copied {copied:.3f}"
                  + (f"  {ms:.0f} ms per poem to polish" if name == "polished" else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="directory for poems.md and key.json")
    parser.add_argument("--seed", type=int, default=141, help="chooses the real poems, samples and order")
    parser.add_argument("--alternatives", type=int, default=4, help="versions sampled per line and round")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the poem's lines")
    parser.add_argument("--measure", action="store_true", help="diversity, copies and time instead of a set")
    args = parser.parse_args()
    if args.measure:
        measure(args)
    elif args.out is None:
        parser.error("--out is required for a blind set")
    else:
        blind_set(args)


if __name__ == "__main__":
    main()
