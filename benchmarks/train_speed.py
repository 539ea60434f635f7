"""Training throughput: `poetgen train`'s input pipeline and step vs a plain `model.fit` on in-memory
numpy windows, same model and batch, in one run; prints characters/second and the ratio.

A second comparison adds the recipe's real improvements (vocabulary cut-off, mixed bf16 precision
where requested) against the plain full-vocabulary baseline."""

from __future__ import annotations

import argparse
import time



class Clock:
    """Keras callback timing the last epoch."""

    def __init__(self):
        import keras

        clock = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                clock.seconds = time.perf_counter() - clock.start

        self.callback = Callback()


def texts_and_tokenizer(min_count: int):
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.importers import load_corpus
    from poetgen.tokenizer import Tokenizer

    texts = [p.text for p in load_corpus(shipped_corpus_path()) if not is_held_out(p.text)]
    return texts, Tokenizer.build(texts, min_count)


def poetgen_rate(args, min_count: int, precision: str) -> tuple[float, int]:
    import keras

    from poetgen.model import ModelConfig, build_model
    from poetgen.train import TrainConfig, compile_model, token_stream, training_dataset

    texts, tokenizer = texts_and_tokenizer(min_count)
    keras.mixed_precision.set_global_policy(precision)
    config = TrainConfig(out="unused", batch_size=args.batch_size, seq_len=args.seq_len, min_count=min_count)
    dataset, _ = training_dataset(token_stream(tokenizer, texts), args.batch_size, args.seq_len, 0)
    model = build_model(ModelConfig(tokenizer.vocab_size, "lstm", 1, args.units, args.units))
    compile_model(model, config, 10_000)
    clock = Clock()
    model.fit(dataset, epochs=2, steps_per_epoch=args.steps, callbacks=[clock.callback], verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    return args.steps * args.batch_size * args.seq_len / clock.seconds, tokenizer.vocab_size


def plain_rate(args, min_count: int) -> tuple[float, int]:
    import keras

    from poetgen.model import ModelConfig, build_model
    from poetgen.train import token_stream

    texts, tokenizer = texts_and_tokenizer(min_count)
    stream = token_stream(tokenizer, texts)
    count = args.steps * args.batch_size
    windows = stream[:count * (args.seq_len + 1)].reshape(count, args.seq_len + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    model = build_model(ModelConfig(tokenizer.vocab_size, "lstm", 1, args.units, args.units))
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = Clock()
    model.fit(x, y, batch_size=args.batch_size, epochs=2, callbacks=[clock.callback], verbose=0)
    return count * args.seq_len / clock.seconds, tokenizer.vocab_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--min-count", type=int, default=3, help="the recipe's vocabulary cut-off")
    parser.add_argument("--precision", default="float32", help="the recipe's precision (float32|mixed_bfloat16)")
    args = parser.parse_args()
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    base, vocab = plain_rate(args, 1)
    ours, _ = poetgen_rate(args, 1, "float32")
    print(f"LSTM-{args.units}, batch {args.batch_size} x {args.seq_len}, vocabulary {vocab}:")
    print(f"  plain model.fit on numpy windows: {base:,.0f} characters/s")
    print(f"  poetgen train step and pipeline:  {ours:,.0f} characters/s   ratio {ours / base:.2f} (goal >= 1.0)")
    recipe, recipe_vocab = poetgen_rate(args, args.min_count, args.precision)
    print(f"  poetgen recipe (min-count {args.min_count} -> vocabulary {recipe_vocab}, {args.precision}): "
          f"{recipe:,.0f} characters/s   ratio {recipe / base:.2f} (stretch >= 1.5)")


if __name__ == "__main__":
    main()
