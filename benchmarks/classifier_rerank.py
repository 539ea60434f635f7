"""Experiment (issue 11, reranking): a small classifier that tells held-in real poems from the shipped
model's samples, used as an extra best-of term, judged by blind reading.

    python benchmarks/classifier_rerank.py train --out runs/clf        # samples, features, weights, AUC
    python benchmarks/classifier_rerank.py check --out runs/clf        # distinct-2 and copied lines by weight
    python benchmarks/classifier_rerank.py set --out runs/clf --blind runs/blind/c1 --seed 81

`train` samples 1,500 poems per regular form from the model (one candidate each, generate's other
defaults), takes as many held-in real Tang poems of each form, and fits an L2 logistic regression on
hashed character unigrams, bigrams and skip-bigrams within lines (2^18 features); it prints the AUC on a
fifth held back. `set` writes a blind set (poems.md-style prompt.txt and key.json for blind_score.py) of
held-out real poems against three settings: b4 (generate's defaults), clf4 and clf8 (best of 4 or 8,
score + 1.0 × the classifier's logit). Result (README, Blind reading): the classifier read worse.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zlib
from pathlib import Path

import numpy as np

FORMS = ("wujue", "qijue", "wulv", "qilv")
FEATURES = 1 << 18


def features(text: str) -> list[int]:
    keys = set()
    for line in (line for line in text.replace("。", "，").split("，") if line):
        for i, char in enumerate(line):
            keys.add("u" + char)
            if i:
                keys.add("b" + line[i - 1:i + 1])
            if i > 1:
                keys.add("s" + line[i - 2] + char)
    return sorted({zlib.crc32(key.encode()) % FEATURES for key in keys})


def matrix(texts: list[str]):
    import scipy.sparse as sparse

    rows, columns = [], []
    for row, text in enumerate(texts):
        found = features(text)
        rows += [row] * len(found)
        columns += found
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=(len(texts), FEATURES))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(len(scores))
    positive = labels == 1
    return float((ranks[positive].sum() - positive.sum() * (positive.sum() - 1) / 2)
                 / (positive.sum() * (~positive).sum()))


def fit(x, y: np.ndarray, l2: float) -> np.ndarray:
    from scipy.optimize import minimize

    def loss(w):
        z = x @ w[:-1] + w[-1]
        p = 1 / (1 + np.exp(-z))
        value = np.logaddexp(0, -z * (2 * y - 1)).mean() + l2 * (w[:-1] ** 2).sum()
        return value, np.append(x.T @ (p - y) / len(y) + 2 * l2 * w[:-1], (p - y).mean())

    return minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 300}).x


def train(out: Path) -> None:
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.generate import Generator
    from poetgen.importers import load_corpus
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    generator, rng = Generator.load(None), random.Random(0)
    real = [p for p in load_corpus(shipped_corpus_path()) if p.form in FORMS and not is_held_out(p.text)]
    texts, labels = [], []
    for form in FORMS:
        texts += rng.sample([p.text for p in real if p.form == form], 1500)
        labels += [1] * 1500
        for seed in (1000, 1001, 1002):
            request = PoemRequest(form=form, n=500, best_of=1, batch_size=250, sample=SampleOptions(seed=seed))
            texts += [p["text"] for p in generator.generate(request)["poems"]]
            labels += [0] * 500
    x, y = matrix(texts), np.array(labels, np.float64)
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(0.8 * len(texts))
    w = fit(x[order[:cut]], y[order[:cut]], 1e-4)
    print(f"held-back AUC, real vs generated: {auc(x[order[cut:]] @ w[:-1] + w[-1], y[order[cut:]]):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "weights.npy", fit(x, y, 1e-4))


class Picker:
    """Best-of with generate's ranking (reverse model included) plus weight × the classifier's logit."""

    def __init__(self, out: Path):
        from poetgen.generate import Generator

        self.generator, self.w = Generator.load(None), np.load(out / "weights.npy")

    def best(self, form: str, n: int, best_of: int, seed: int, weight: float) -> list[dict]:
        from poetgen import ranking
        from poetgen.request import PoemRequest
        from poetgen.sampling import SampleOptions, row_streams

        g = self.generator
        prepared = g.prepare(PoemRequest(form=form, n=n, best_of=best_of, sample=SampleOptions(seed=seed)))
        candidates = g.sample_rows(prepared, row_streams(prepared.seed, 0, n * best_of))
        ranking.add_reverse_scores(candidates, g.backward_scores(prepared, [c["text"] for c in candidates]), 0.5)
        for candidate, logit in zip(candidates, matrix([c["text"] for c in candidates]) @ self.w[:-1] + self.w[-1]):
            candidate["classifier"] = float(logit)
            candidate["score"] += weight * float(logit)
        return ranking.keep_best(candidates, n, best_of)


def check(out: Path) -> None:
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.evaluate import distinct, line_bodies
    from poetgen.importers import load_corpus

    picker = Picker(out)
    training = {line for p in load_corpus(shipped_corpus_path()) if not is_held_out(p.text) for line in line_bodies(p.text)}
    for weight in (0.0, 0.3, 1.0):
        picks = [p for form in FORMS for p in picker.best(form, 100, 8, 5, weight)]
        lines = [line for p in picks for line in line_bodies(p["text"])]
        print(f"weight {weight}: mean classifier logit {np.mean([p['classifier'] for p in picks]):.2f}, "
              f"distinct-2 over 400 poems {distinct(lines, 2):.3f}, copied lines {np.mean([l in training for l in lines]):.4f}")


def blind_set(out: Path, directory: Path, seed: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from blind_set import real_poems

    picker = Picker(out)
    entries = [{"source": "real", "form": k, "text": t} for k, ts in real_poems(list(FORMS), 5, seed, None).items()
               for t in ts]
    for offset, (name, best_of, weight) in enumerate((("b4", 4, 0.0), ("clf4", 4, 1.0), ("clf8", 8, 1.0))):
        for k, form in enumerate(FORMS):   # a seed per setting: no poem twice in the set
            entries += [{"source": name, "form": form, "text": p["text"]}
                        for p in picker.best(form, 5, best_of, seed * 1000 + 100 * offset + k, weight)]
    random.Random(seed).shuffle(entries)
    directory.mkdir(parents=True, exist_ok=True)
    key = {"seed": seed, "settings": {"b4": "generate's defaults", "clf4": "best of 4 + 1.0 x classifier logit",
                                      "clf8": "best of 8 + 1.0 x classifier logit"},
           "poems": {str(i + 1): entry for i, entry in enumerate(entries)}}
    (directory / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
    (directory / "poems.txt").write_text("\n\n".join(f"## {i + 1}\n{e['text']}" for i, e in enumerate(entries)) + "\n",
                                         encoding="utf-8")
    print(f"wrote {len(entries)} poems to {directory / 'poems.txt'} and the key to {directory / 'key.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["train", "check", "set"])
    parser.add_argument("--out", type=Path, default=Path("runs/clf"), help="where the classifier's weights live")
    parser.add_argument("--blind", type=Path, default=Path("runs/blind/c1"), help="set: the blind set's directory")
    parser.add_argument("--seed", type=int, default=81, help="set: chooses the real poems, samples and order")
    args = parser.parse_args()
    {"train": lambda: train(args.out), "check": lambda: check(args.out),
     "set": lambda: blind_set(args.out, args.blind, args.seed)}[args.step]()


if __name__ == "__main__":
    main()
