"""The reference the shipped model is judged against: a character n-gram with interpolated absolute
discounting, on the same tokenizer (same <unk>) and the same held-out poems, scored the same way."""

from __future__ import annotations

import argparse
import collections
import math

from poetgen.corpus import is_held_out, shipped_corpus_path
from poetgen.importers import load_corpus
from poetgen.tokenizer import BOUNDARY, Tokenizer


def sequences(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [[BOUNDARY] + tokenizer.encode(text) + [BOUNDARY] for text in texts]


class NGram:
    def __init__(self, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.counts = [collections.Counter() for _ in range(order + 1)]      # n -> (context + word) counts
        self.context = [collections.Counter() for _ in range(order + 1)]     # n -> context totals
        self.followers = [collections.Counter() for _ in range(order + 1)]   # n -> distinct next words
        self.discount = [0.0] * (order + 1)

    def fit(self, seqs: list[list[int]]) -> "NGram":
        for seq in seqs:
            for i in range(1, len(seq)):
                for n in range(1, self.order + 1):
                    if i - n + 1 < 0:
                        break
                    self.counts[n][tuple(seq[i - n + 1:i + 1])] += 1
        for n in range(1, self.order + 1):
            for gram, count in self.counts[n].items():
                self.context[n][gram[:-1]] += count
                self.followers[n][gram[:-1]] += 1
            hist = collections.Counter(c for c in self.counts[n].values() if c <= 2)
            self.discount[n] = hist[1] / (hist[1] + 2 * hist[2]) if hist[1] else 0.5
        return self

    def prob(self, history: tuple, word: int) -> float:
        p = 1.0 / self.vocab_size
        for n in range(1, self.order + 1):
            if n - 1 > len(history):
                break
            ctx = history[len(history) - (n - 1):] if n > 1 else ()
            total = self.context[n].get(ctx, 0)
            if not total:
                break
            d = self.discount[n]
            p = max(self.counts[n].get(ctx + (word,), 0) - d, 0) / total + d * self.followers[n][ctx] / total * p
        return p

    def perplexity(self, seqs: list[list[int]]) -> float:
        log_sum, count = 0.0, 0
        for seq in seqs:
            for i in range(1, len(seq)):
                log_sum += math.log(self.prob(tuple(seq[max(0, i - self.order + 1):i]), seq[i]))
                count += 1
        return math.exp(-log_sum / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/default", help="bundle whose tokenizer to use")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--val-split", type=float, default=0.02)
    args = parser.parse_args()
    tokenizer = Tokenizer.load(f"{args.model}/tokenizer.json")
    poems = load_corpus(shipped_corpus_path())   # Tang: the held-out set the models are compared on
    train = sequences(tokenizer, [p.text for p in poems if not is_held_out(p.text, args.val_split)])
    held = sequences(tokenizer, [p.text for p in poems if is_held_out(p.text, args.val_split)])
    for order in range(2, args.order + 1):
        model = NGram(order, tokenizer.vocab_size).fit(train)
        print(f"char {order}-gram, interpolated absolute discounting: held-out perplexity "
              f"{model.perplexity(held):.1f} (vocabulary {tokenizer.vocab_size})", flush=True)


if __name__ == "__main__":
    main()
