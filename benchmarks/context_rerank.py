"""Experiment (issue 11, reranking): rank best-of candidates by how much each line owes to the lines
before it, judged by paired blind reading.

    python benchmarks/context_rerank.py stats [--best-of 8] [--weight 1.0] [--per-form 100]
    python benchmarks/context_rerank.py pairs --out runs/blind/x1 --seed 301 [--best-of 8] [--weight 1.0]
    python benchmarks/blind_pairs.py score runs/blind/x1/key.json judgements.json

Mean log-probability favours lines that are likely anywhere (不知何处, 一片孤帆): the best-of judge picks
the poem of the most common lines, not the one whose lines hold together. The context gain of a poem
is the forward model's log-probability of each line after the lines before it, less that of the same
line read alone (right after the control prefix), per character, over lines 2 on: the pointwise mutual
information between a line and its context (Li et al. 2016 rank dialogue replies so, against bland
ones). The picker adds weight × that gain to generate's score (forward and reverse model, rhyme and tone
terms). `stats` prints how often the pick changes, the gain, distinct-2 and copied lines; `pairs`
writes a blind_pairs.py set of the poems whose pick changed (the same candidates, the same seed: the
judge is all that differs), so a reader compares the two judges where they disagree.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blind_pairs import pairs_markdown   # noqa: E402  (the same reader's page)

FORMS = ("wujue", "qijue", "wulv", "qilv")


class Picker:
    """Candidates as generate ranks them, and each one's context gain."""

    def __init__(self):
        from poetgen.generate import Generator

        self.generator = Generator.load(None)

    def candidates(self, form: str, n: int, best_of: int, seed: int) -> list[dict]:
        from poetgen import ranking
        from poetgen.request import PoemRequest
        from poetgen.sampling import SampleOptions, row_streams

        g = self.generator
        prepared = g.prepare(PoemRequest(form=form, n=n, best_of=best_of, sample=SampleOptions(seed=seed)))
        candidates = g.sample_rows(prepared, row_streams(prepared.seed, 0, n * best_of))
        texts = [c["text"] for c in candidates]
        ranking.add_reverse_scores(candidates, g.backward_scores(prepared, texts), prepared.request.reverse_weight)
        for candidate, gain in zip(candidates, self.context_gains(texts, g.prefix(prepared))):
            candidate["gain"] = float(gain)
        return candidates

    def context_gains(self, texts: list[str], prefix: list[int]) -> np.ndarray:
        """Per poem (all of one regular form): mean over the characters of lines 2 on of log p(char |
        the poem before it) - log p(char | its own line alone, read right after the prefix)."""
        from poetgen.rerank import _step_log_probs

        g = self.generator
        ids = np.array([g.tokenizer.encode(text) for text in texts], np.int64)
        width = next(i for i, char in enumerate(texts[0]) if char in "，。") + 1   # a line and its mark
        lines = ids.shape[1] // width
        state, previous = g.stepper.after_prefix(tuple(prefix), len(ids))
        in_context = _step_log_probs(g.stepper, state, previous, ids)                   # (poems, positions)
        bodies = ids.reshape(len(ids) * lines, width)[:, :width - 1]                     # each line, no mark
        state, previous = g.stepper.after_prefix(tuple(prefix), len(bodies))
        alone = _step_log_probs(g.stepper, state, previous, bodies).reshape(len(ids), lines, width - 1)
        context = in_context.reshape(len(ids), lines, width)[:, :, :width - 1]
        return (context[:, 1:] - alone[:, 1:]).mean(axis=(1, 2))


def pick(candidates: list[dict], n: int, best_of: int, weight: float) -> list[dict]:
    groups = [candidates[i * best_of:(i + 1) * best_of] for i in range(n)]
    return [max(group, key=lambda c: c["score"] + weight * c["gain"]) for group in groups]


def stats(args) -> None:
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.evaluate import distinct, line_bodies
    from poetgen.importers import load_corpus

    picker = Picker()
    training = {line for p in load_corpus(shipped_corpus_path()) if not is_held_out(p.text) for line in line_bodies(p.text)}
    for k, form in enumerate(FORMS):
        candidates = picker.candidates(form, args.per_form, args.best_of, 7000 + k)
        gains = np.array([c["gain"] for c in candidates])
        scores = np.array([c["score"] for c in candidates])
        print(f"{form}: gain mean {gains.mean():.3f} sd {gains.std():.3f}; score sd {scores.std():.3f}; "
              f"corr(score, gain) {np.corrcoef(scores, gains)[0, 1]:+.2f}")
        base = pick(candidates, args.per_form, args.best_of, 0.0)
        for weight in (0.0, args.weight / 2, args.weight, 2 * args.weight):
            picks = pick(candidates, args.per_form, args.best_of, weight)
            lines = [line for p in picks for line in line_bodies(p["text"])]
            changed = sum(a is not b for a, b in zip(picks, base))
            print(f"  weight {weight:.2f}: changed {changed}/{len(picks)}, gain {np.mean([p['gain'] for p in picks]):.3f}, "
                  f"logprob {np.mean([p['logprob'] for p in picks]):.3f}, distinct-2 {distinct(lines, 2):.3f}, "
                  f"copied lines {np.mean([line in training for line in lines]):.4f}")


def pairs(args) -> None:
    picker = Picker()
    rng = random.Random(args.seed)
    found = []
    for k, form in enumerate(FORMS):
        candidates = picker.candidates(form, args.per_form * 3, args.best_of, args.seed * 1000 + k)
        base = pick(candidates, args.per_form * 3, args.best_of, 0.0)
        ranked = pick(candidates, args.per_form * 3, args.best_of, args.weight)
        differ = [(a["text"], b["text"]) for a, b in zip(base, ranked) if a is not b][:args.per_form]
        for old, new in differ:
            poems = [("score", old), ("context", new)]
            rng.shuffle(poems)
            found.append({"form": form, "sources": [s for s, _ in poems], "texts": [t for _, t in poems]})
    rng.shuffle(found)
    numbered = [{"number": i + 1, **pair} for i, pair in enumerate(found)]
    key = {"seed": args.seed, "per_form": args.per_form, "model": "shipped",
           "settings": {"score": f"best of {args.best_of}, generate's score",
                        "context": f"best of {args.best_of}, + {args.weight} x context gain"},
           "pairs": {str(p["number"]): {k: p[k] for k in ("form", "sources", "texts")} for p in numbered}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pairs.md").write_text(pairs_markdown(numbered), encoding="utf-8")
    (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(numbered)} pairs to {args.out / 'pairs.md'} and the key to {args.out / 'key.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["stats", "pairs"])
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--weight", type=float, default=1.0, help="times the context gain, added to the score")
    parser.add_argument("--per-form", type=int, default=100, help="stats: poems per form; pairs: pairs per form")
    parser.add_argument("--seed", type=int, default=301, help="pairs: the samples and the order")
    parser.add_argument("--out", type=Path, default=Path("runs/blind/x1"), help="pairs: where pairs.md and key.json go")
    args = parser.parse_args()
    {"stats": stats, "pairs": pairs}[args.step](args)


if __name__ == "__main__":
    main()
