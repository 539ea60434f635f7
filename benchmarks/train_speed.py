"""Training speed, three ways, each comparing its competitors in the same run (the CPU is shared):

  pipeline  `poetgen train`'s input pipeline and step vs a plain `model.fit` on in-memory numpy windows;
  steps     ms per training step of model variants (projection, tying, dropouts, sampled softmax),
            round-robin so a busy neighbour slows them all alike;
  quality   time to reach a held-out perplexity (--target, e.g. 109.8) per recipe, training each for
            at most --minutes, against today's recipe's 86 minutes; perplexity curves on the way.

Recipes are TrainConfig fields, e.g. "units=512,projection=256,tie_embeddings=1,sampled_softmax=1024";
the corpus is the shipped Tang file (today's figures were measured on it) unless a recipe sets corpus=….
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time

TODAY_MINUTES = 86.0   # the shipped LSTM-256 reached 109.8 after 14 epochs, 86 minutes on 2 cores
VARIANTS = (
    "today:",
    "today+sampled:sampled_softmax=1024",
    "512-proj256-tied:units=512,projection=256,tie_embeddings=1",
    "512-proj256-tied+sampled:units=512,projection=256,tie_embeddings=1,sampled_softmax=1024",
    "512-proj256-tied+sampled+awd:units=512,projection=256,tie_embeddings=1,sampled_softmax=1024,"
    "embedding_dropout=0.1,recurrent_dropout=0.1",
)


def parse_recipe(text: str) -> tuple[str, dict]:
    """"name:key=value,…" (or just "key=value,…") → (name, TrainConfig overrides)."""
    from poetgen.train import TrainConfig

    name, _, body = text.rpartition(":") if ":" in text else ("", "", text)
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    options = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        kind = types[key.strip()]
        if "bool" in str(kind):
            options[key.strip()] = value.strip().lower() in ("1", "true", "yes")
        elif "int" in str(kind):
            options[key.strip()] = int(value)
        elif "float" in str(kind):
            options[key.strip()] = float(value)
        else:
            options[key.strip()] = value
    return name or body or "today", options


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


def prepared_run(options: dict):
    """A poetgen training Run (data, tokenizer, held-out split) for a recipe, outside any bundle."""
    from poetgen.train import Run, TrainConfig

    from poetgen.corpus import shipped_corpus_path

    options = {"corpus": str(shipped_corpus_path()), **options}   # the Tang corpus unless the recipe says
    config = TrainConfig(out=tempfile.mkdtemp(prefix="train_speed_"), **options)
    config.validate()
    run = Run(config)
    run.prepare()
    return run


def trainable_model(run, planned_steps: int):
    """The recipe's model, compiled with its schedule planned over `planned_steps`, its loss chosen."""
    from poetgen.model import build_model
    from poetgen.train_setup import compile_model
    from poetgen.train_step import use_sampled_softmax

    model = build_model(run.model_config())
    compile_model(model, run.config, planned_steps)
    use_sampled_softmax(model, run.model_config(), run.config.sampled_softmax)
    return model


def step_times(args) -> None:
    from poetgen.windows import training_dataset

    import tensorflow as tf

    recipes = [parse_recipe(v) for v in (args.variant or VARIANTS)]
    runs = {}
    base = prepared_run({})   # the corpus is read once; recipes here differ only in the model
    dataset, _ = training_dataset(base.train_stream, base.config.batch_size, base.config.seq_len, 0)
    one_batch = tf.data.Dataset.from_tensors(next(iter(dataset))).repeat()   # a step costs the same on any batch
    for name, options in recipes:
        model = trainable_model(_with_config(base, dataclasses.replace(base.config, **options)), 10_000)
        model.fit(one_batch, epochs=1, steps_per_epoch=2, verbose=0)   # trace and warm up
        runs[name] = (model, [])
    for _ in range(args.rounds):
        for name, (model, times) in runs.items():
            clock = Clock()
            model.fit(one_batch, epochs=1, steps_per_epoch=args.steps, callbacks=[clock.callback], verbose=0)
            times.append(clock.seconds / args.steps)
    today = statistics.median(runs[recipes[0][0]][1])
    print(f"ms per step, batch {base.config.batch_size} x {base.config.seq_len}, vocabulary {base.tokenizer.vocab_size}, "
          f"median of {args.rounds} rounds of {args.steps} steps:")
    for name, (model, times) in runs.items():
        ms = 1000 * statistics.median(times)
        print(f"  {name:34s} {ms:7.0f} ms  {model.count_params():>11,} parameters  speed-up vs "
              f"{recipes[0][0]}: {today / statistics.median(times):.2f}x")


def _with_config(run, config):
    """The same prepared data under another recipe's options (model options only)."""
    clone = object.__new__(type(run))
    clone.__dict__.update(run.__dict__)
    clone.config = config
    return clone


def time_to_quality(args) -> None:
    import keras

    from poetgen.model import sequence_log_likelihood
    from poetgen.windows import training_dataset

    results = []
    for name, options in (parse_recipe(r) for r in args.recipe):
        run = prepared_run(options)
        config = run.config
        keras.utils.set_random_seed(config.seed)
        dataset, windows = training_dataset(run.train_stream, config.batch_size, config.seq_len, config.seed)
        planned = args.planned_steps or config.epochs * (windows // config.batch_size)
        model = trainable_model(run, planned)
        count = args.held_out_poems or len(run.held_out)
        held, prefixes = run.held_out[:count], run.held_out_prefixes[:count]
        curve = []
        budget = 60 * args.minutes

        class Watch(keras.callbacks.Callback):
            """Scores the held-out poems every --eval-seconds of training; scoring time is not counted."""

            def on_train_begin(self, logs=None):
                self.began, self.scoring, self.steps = time.perf_counter(), 0.0, 0

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                trained = time.perf_counter() - self.began - self.scoring
                if trained < args.eval_seconds * (len(curve) + 1) and trained < budget:
                    return
                started = time.perf_counter()
                total, tokens = sequence_log_likelihood(self.model, held, prefixes=prefixes)
                self.scoring += time.perf_counter() - started
                curve.append((trained, self.steps, math.exp(-total / tokens)))
                print(f"  {name}: {trained / 60:5.1f} min, {self.steps} steps, "
                      f"{self.steps * config.batch_size * config.seq_len / 1e6:.2f} M chars, "
                      f"held-out perplexity {curve[-1][2]:.1f}", flush=True)
                if curve[-1][2] <= args.target or trained >= budget:
                    self.model.stop_training = True

        model.fit(dataset, epochs=1, steps_per_epoch=10**9, callbacks=[Watch()], verbose=0)
        reached = next((seconds for seconds, _, ppl in curve if ppl <= args.target), None)
        results.append((name, curve, reached))
    subset = f"first {args.held_out_poems} held-out poems" if args.held_out_poems else "whole held-out split"
    print(f"time to held-out perplexity {args.target} ({subset}; today's recipe: {TODAY_MINUTES:.0f} min):")
    for name, curve, reached in results:
        seconds, steps, ppl = curve[-1]
        verdict = (f"reached in {reached / 60:.1f} min ({TODAY_MINUTES * 60 / reached:.1f}x faster than today)"
                   if reached else f"not reached in {seconds / 60:.1f} min")
        print(f"  {name:34s} {verdict}; last {ppl:.1f} after {steps} steps")


def pipeline_rate(args, min_count: int, precision: str, plain: bool) -> tuple[float, int]:
    import keras

    from poetgen.model import ModelConfig, build_model
    from poetgen.train import TrainConfig
    from poetgen.train_setup import compile_model
    from poetgen.windows import training_dataset

    run = prepared_run({"min_count": min_count})
    texts_stream = run.train_stream
    clock = Clock()
    if plain:
        count = args.steps * args.batch_size
        windows = texts_stream[:count * (args.seq_len + 1)].reshape(count, args.seq_len + 1)
        model = build_model(ModelConfig(run.tokenizer.vocab_size, "lstm", 1, args.units, args.units))
        model.compile(optimizer=keras.optimizers.Adam(2e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(windows[:, :-1], windows[:, 1:], batch_size=args.batch_size, epochs=2, callbacks=[clock.callback],
                  verbose=0)
        return count * args.seq_len / clock.seconds, run.tokenizer.vocab_size
    keras.mixed_precision.set_global_policy(precision)
    config = TrainConfig(out="unused", batch_size=args.batch_size, seq_len=args.seq_len, min_count=min_count)
    dataset, _ = training_dataset(texts_stream, args.batch_size, args.seq_len, 0)
    model = build_model(ModelConfig(run.tokenizer.vocab_size, "lstm", 1, args.units, args.units))
    compile_model(model, config, 10_000)
    model.fit(dataset, epochs=2, steps_per_epoch=args.steps, callbacks=[clock.callback], verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    return args.steps * args.batch_size * args.seq_len / clock.seconds, run.tokenizer.vocab_size


def pipeline(args) -> None:
    base, vocab = pipeline_rate(args, 1, "float32", plain=True)
    ours, _ = pipeline_rate(args, 1, "float32", plain=False)
    print(f"LSTM-{args.units}, batch {args.batch_size} x {args.seq_len}, vocabulary {vocab}:")
    print(f"  plain model.fit on numpy windows: {base:,.0f} characters/s")
    print(f"  poetgen train step and pipeline:  {ours:,.0f} characters/s   ratio {ours / base:.2f} (goal >= 1.0)")
    recipe, recipe_vocab = pipeline_rate(args, args.min_count, args.precision, plain=False)
    print(f"  poetgen recipe (min-count {args.min_count} -> vocabulary {recipe_vocab}, {args.precision}): "
          f"{recipe:,.0f} characters/s   ratio {recipe / base:.2f} (stretch >= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("pipeline", help="poetgen's pipeline vs plain model.fit")
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    p.add_argument("--min-count", type=int, default=3, help="the recipe's vocabulary cut-off")
    p.add_argument("--precision", default="float32", help="the recipe's precision (float32|mixed_bfloat16)")
    s = modes.add_parser("steps", help="ms per step of model variants, round-robin")
    s.add_argument("--variant", action="append", help="name:recipe (repeatable); default: a built-in set")
    s.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    s.add_argument("--rounds", type=int, default=4)
    q = modes.add_parser("quality", help="time to a held-out perplexity per recipe")
    q.add_argument("--recipe", action="append", required=True, help="name:recipe (repeatable)")
    q.add_argument("--target", type=float, default=109.8, help="held-out perplexity to reach")
    q.add_argument("--minutes", type=float, default=30.0, help="training wall time per recipe at most")
    q.add_argument("--eval-seconds", type=float, default=120.0, help="training seconds between held-out scorings")
    q.add_argument("--held-out-poems", type=int, default=0, help="score only the first N held-out poems (0: all)")
    q.add_argument("--planned-steps", type=int, default=0,
                   help="steps the learning-rate schedule is planned over (0: the recipe's epochs)")
    args = parser.parse_args()
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    {"pipeline": pipeline, "steps": step_times, "quality": time_to_quality}[args.mode](args)


if __name__ == "__main__":
    main()
