"""Generation speed on the shipped model (or --model): warm latency vs the naive predict-per-character
loop, batched throughput, and cold start (wall time and peak memory) vs `import tensorflow`. Prints
ratios from one run; --cold-only measures the cold start alone. Each figure names the threads that stepped
the model and the BLAS thread count each saw, observed in one untimed run of the same work."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from poetgen.tokenizer import BOUNDARY, SPECIALS


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def blas_threads() -> int:
    """The calling thread's NumPy BLAS thread count (a pthreads OpenBLAS's is the process's)."""
    counts = [library.get_num_threads() for library in _blas().lib_controllers]
    return min(counts) if counts else 1


@functools.lru_cache(maxsize=None)
def _blas():
    import threadpoolctl

    return threadpoolctl.ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def observed_threads(stepper):
    """{(thread id, its BLAS thread count)} of every step of `stepper` in the block: the settings a figure ran
    under, seen in the step itself rather than assumed from the block around it (Generator.generate sets its
    own: one BLAS thread in int8, a large batch split over the cores' share threads)."""
    seen, advance, own = set(), stepper.advance, vars(stepper).get("advance")

    def watched(*args, **kwargs):
        seen.add((threading.get_ident(), blas_threads()))
        return advance(*args, **kwargs)

    stepper.advance = watched
    try:
        yield seen
    finally:
        if own is None:
            del stepper.advance   # the class's method again
        else:
            stepper.advance = own


def threads_of(stepper, work) -> str:
    """'on T thread(s), B BLAS thread(s) each': how one run of `work` stepped `stepper` (untimed; run before
    the timed ones, which then run unwatched)."""
    with observed_threads(stepper) as seen:
        work()
    threads, counts = len({ident for ident, _ in seen}), sorted({count for _, count in seen})
    blas = "/".join(map(str, counts))
    plural = "" if counts == [1] else "s"
    return f"on {threads} thread{'s' if threads != 1 else ''}, {blas} BLAS thread{plural}" + (" each" if threads > 1 else "")


@contextlib.contextmanager
def blas_setting(generator, threads: int):
    """The block's batch-1 generation on `threads` BLAS threads, int8 included: Generator.generate runs an int8
    model's BLAS on one thread itself (Generator._one_blas_thread), which left a figure labelled with the
    library's threads measured on one. Set with poetgen.blas (threadpoolctl's own limits keep OpenBLAS for the
    thread that set them)."""
    from poetgen.blas import set_process_blas_threads

    before = blas_threads()
    generator._one_blas_thread = contextlib.nullcontext   # the count set here, not generate's own
    set_process_blas_threads(threads)
    try:
        yield
    finally:
        del generator._one_blas_thread
        set_process_blas_threads(before)


def naive_poem(model, tokenizer, rng) -> str:
    """What many repositories do: model.predict on the whole text so far, once per character."""
    layout = "XXXXX，XXXXX。XXXXX，XXXXX。"
    ids = [BOUNDARY]
    for slot in layout:
        if slot != "X":
            ids.append(tokenizer.id_of(slot))
            continue
        logits = model.predict(np.array([ids], np.int32), verbose=0)[0, -1].astype(np.float64)
        logits[:len(SPECIALS)] = -np.inf
        probs = np.exp((logits - logits.max()) / 0.8)
        ids.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    return tokenizer.decode(ids)


def model_products(stepper, batch: int) -> None:
    """Only the model's arithmetic for one batch of wujue: no rules, no sampling, fixed inputs."""
    state = stepper.initial_state(batch)
    ids = np.full(batch, BOUNDARY)
    logits = None
    for pos in range(24):
        state = stepper.advance(ids, state)
        if pos % 6 != 5:
            logits = stepper.logits(state, out=logits)


def without_steps(generator):
    """The same generator with its int8 products called one by one, as from an int8.npz without a step."""
    generator.stepper.fused = None
    return generator


def int8_report(args, generator, batch, chars: int, float_seconds: float) -> None:
    """Int8 products (--int8): batched throughput, and held-out perplexity against float32."""
    from poetgen.errors import BadInput
    from poetgen.generate import Generator

    try:
        quantized = Generator.load(args.model, int8=True)   # from the bundle's int8.npz where it has one
    except BadInput as error:
        print(f"int8: skipped ({error})")
        return
    quantized.generate(batch)
    settings = threads_of(quantized.stepper, lambda: quantized.generate(batch))
    seconds = min(timed(lambda: quantized.generate(batch), 3))
    print(f"batched throughput in int8 ({settings}): {chars / seconds:,.0f} characters/s "
          f"({float_seconds / seconds:.2f}x float32; goal >= 50,000 characters/s)")
    by_products = None
    if quantized.stepper.fused is not None:   # the same products called one by one (an int8.npz without a step)
        by_products = without_steps(Generator.load(args.model, int8=True))
        by_products.generate(batch)
        settings = threads_of(by_products.stepper, lambda: by_products.generate(batch))
        product_seconds = min(timed(lambda: by_products.generate(batch), 3))
        print(f"  int8 product by product ({settings}): {chars / product_seconds:,.0f} characters/s (the whole step in one "
              f"graph: {product_seconds / seconds:.2f}x)")
    exact, int8 = (held_out_perplexity(g.stepper, g.tokenizer) for g in (generator, quantized))
    print(f"  held-out perplexity, stepping the model: float32 {exact:.3f}, int8 {int8:.3f} "
          f"({100 * (int8 / exact - 1):+.3f} %)", end="")
    if by_products is not None:
        print(f", int8 product by product {held_out_perplexity(by_products.stepper, by_products.tokenizer):.3f}", end="")
    print()


def held_out_perplexity(stepper, tokenizer) -> float:
    """Perplexity of the shipped corpus's held-out split, stepping every poem through `stepper` at once."""
    from poetgen.corpus import is_held_out, shipped_corpus_path
    from poetgen.importers import load_corpus

    poems = [tokenizer.encode(p.text) + [BOUNDARY] for p in load_corpus(shipped_corpus_path()) if is_held_out(p.text, 0.02)]
    rows, total, count = np.arange(len(poems)), 0.0, 0
    state, previous = stepper.initial_state(len(poems)), np.full(len(poems), BOUNDARY)
    for t in range(max(map(len, poems))):
        state = stepper.advance(previous, state)
        logits = stepper.logits(state).astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        live = np.array([t < len(p) for p in poems])
        target = np.array([p[t] if t < len(p) else 0 for p in poems])
        total += log_probs[rows[live], target[live]].sum()
        count += int(live.sum())
        previous = target
    return float(np.exp(-total / count))


def ci_latency(generator, repeats: int, library_threads: int | None = None) -> None:
    """One 浣溪沙 (48 positions) at batch 1 with its rhyme and --tone rules, against one wujue (24),
    interleaved; with the BLAS library's threads (`library_threads`, default: the count now) and with one
    (as `poetgen serve` runs by default)."""
    from poetgen.generate import PoemRequest
    from poetgen.sampling import SampleOptions

    wujue = PoemRequest(best_of=1, sample=SampleOptions(seed=1))   # one candidate each: the rules' cost
    ci = PoemRequest(tune="浣溪沙", tone=True, best_of=1, sample=SampleOptions(seed=1))
    generator.generate(ci)   # warm: the ci rhyme table
    library_threads = library_threads or blas_threads()
    for threads, label in ((library_threads, "the BLAS library's threads"), (1, "one BLAS thread")):
        with blas_setting(generator, threads):
            settings = threads_of(generator.stepper, lambda: generator.generate(ci))
            times = {"wujue": [], "ci": []}
            for _ in range(repeats):
                for name, request in (("wujue", wujue), ("ci", ci)):
                    times[name] += timed(lambda: generator.generate(request), 1)
        shi_ms, ci_ms = (1000 * statistics.median(times[k]) for k in ("wujue", "ci"))
        print(f"warm latency at batch 1, {label} ({settings}): one 浣溪沙 with rhyme and --tone {ci_ms:.2f} ms "
              f"median (goal <= 20 ms), one wujue {shi_ms:.2f} ms: {ci_ms / shi_ms:.2f}x for twice the positions")


def run_child(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak resident MiB, CPU seconds) of one child process, from its own rusage
    (os.wait4). CPU time is the steadier figure on a shared machine."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {child.stderr.read().decode()}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime   # Linux reports KiB


def cold_start(args) -> tuple[tuple, tuple]:
    """Best of `args.cold` runs each, interleaved: `import tensorflow`, then `poetgen generate` (no TF)."""
    model = ["--model", args.model] if args.model else []
    tf_runs, cli_runs = [], []
    for _ in range(args.cold):
        tf_runs.append(run_child([sys.executable, "-c", "import tensorflow"]))
        cli_runs.append(run_child([sys.executable, "-m", "poetgen", "generate", "--seed", "1", *model]))
    return tuple(map(min, zip(*tf_runs))), tuple(map(min, zip(*cli_runs)))


def cold_report(args) -> None:
    (tf_s, tf_mib, tf_cpu), (cli_s, cli_mib, cli_cpu) = cold_start(args)
    print(f"cold start (best of {args.cold}): `python -c 'import tensorflow'` {tf_s:.2f} s wall, {tf_cpu:.2f} s CPU, "
          f"{tf_mib:.0f} MiB peak; `poetgen generate` {cli_s:.2f} s wall, {cli_cpu:.2f} s CPU, {cli_mib:.0f} MiB peak")
    print(f"  ratio {cli_s / tf_s:.2f} x import tensorflow in wall time (goal <= 0.4), {cli_cpu / tf_cpu:.2f} x in "
          f"CPU time; peak {cli_mib:.0f} MiB (goal <= 200 MiB)")


def batched_against(args) -> None:
    """Batched throughput (batch --batch, one candidate per poem, int8 where the bundle carries it) of
    --model and of --against, timed alternately in one run: does another model (e.g. a narrower
    recurrence with the same vocabulary) write faster?"""
    from poetgen.generate import Generator
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    generators = {"model": Generator.load(args.model), "against": Generator.load(args.against)}
    batch = PoemRequest(n=args.batch, batch_size=args.batch, best_of=1, tone=False, sample=SampleOptions(seed=2))
    best, settings = {}, {}
    for name, g in generators.items():
        g.generate(batch)
        settings[name] = threads_of(g.stepper, lambda: g.generate(batch))
    for _ in range(4):
        for name, g in generators.items():
            best[name] = min(best.get(name, float("inf")), min(timed(lambda: g.generate(batch), 1)))
    chars = args.batch * 24
    for name, path in (("model", args.model or "shipped"), ("against", args.against)):
        units = generators[name].stepper.config.units
        print(f"batched throughput at batch {args.batch}, {path} (units {units}, "
              f"{'int8' if generators[name].int8 else 'float32'}, {settings[name]}): {chars / best[name]:,.0f} characters/s")
    print(f"  {args.against} writes {best['model'] / best['against']:.2f}x as fast (goal >= 50,000 characters/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="bundle directory (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ci-only", action="store_true", help="only the batch-1 latencies (wujue and 浣溪沙)")
    parser.add_argument("--cold", type=int, default=3, help="cold-start runs of each command")
    parser.add_argument("--cold-only", action="store_true", help="only the cold start against import tensorflow")
    parser.add_argument("--against", default=None, help="only batched throughput, of --model and this bundle, "
                        "timed alternately")
    args = parser.parse_args()
    if args.against:
        batched_against(args)
        return
    if args.cold_only or not args.ci_only:   # first, while this process is small: a forked child's peak
        cold_report(args)                     # memory counts its parent's pages until it execs
    if args.cold_only:
        return

    if not args.ci_only:   # the naive loop below runs Keras; generation itself never imports TensorFlow
        from poetgen.quiet import import_tensorflow

        import_tensorflow()
    from poetgen.generate import Generator
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    generator = Generator.load(args.model)                        # generate's default precision
    exact = Generator.load(args.model, int8=False)                # float32, the weights as trained
    precision = "int8" if generator.int8 else "float32"
    print(f"default precision: {precision} ({'the bundle carries int8.npz' if generator.int8 else 'no int8.npz'}"
          f"{', the whole step in one graph' if generator.stepper.fused is not None else ''})")
    compared = [("default", generator), ("float32", exact)]
    if generator.stepper.fused is not None:   # against the same int8 products called one by one
        by_products = without_steps(Generator.load(args.model))   # as a bundle whose int8.npz has no step
        compared.insert(1, ("int8 product by product", by_products))
    one = PoemRequest(sample=SampleOptions(seed=1))               # generate's defaults (best-of, --tone)
    single = PoemRequest(best_of=1, tone=False, sample=SampleOptions(seed=1))   # one candidate, no ranking
    latencies, settings = {}, {}
    library_threads = blas_threads()   # before any block of one
    for name, g in compared:
        g.generate(one)   # warm: rule tables, BLAS threads, the reverse model
        settings[name] = threads_of(g.stepper, lambda: g.generate(one))
        latencies[name] = timed(lambda: g.generate(one), args.repeats), timed(lambda: g.generate(single), args.repeats)
    if args.ci_only:
        for name, (ours, fastest) in latencies.items():
            print(f"warm latency, one wujue at batch 1, {name} precision ({settings[name]}): generate's defaults "
                  f"{1000 * statistics.median(ours):.2f} ms median (goal <= 15 ms), --best-of 1 --no-tone "
                  f"{1000 * statistics.median(fastest):.2f} ms")
        for name, g in compared:
            print(f"{name} precision:")
            ci_latency(g, args.repeats, library_threads)
        return
    rng = np.random.default_rng(0)
    from poetgen.bundle import load_bundle

    model, tokenizer = load_bundle(args.model).model, generator.tokenizer   # Keras, for the naive loop
    naive_poem(model, tokenizer, rng)
    naive = timed(lambda: naive_poem(model, tokenizer, rng), max(3, args.repeats // 10))
    naive_ms = 1000 * statistics.median(naive)
    for name, (ours, fastest) in latencies.items():
        label = f"{precision}, the default" if name == "default" else name if name != "float32" else "float32 (--float32)"
        print(f"warm latency, one wujue at batch 1, generate's defaults (best of {one.best_of}, --tone), {label} "
              f"({settings[name]}): "
              f"{1000 * statistics.median(ours):.2f} ms median (goal <= 15 ms)")
        print(f"  the same with --best-of 1 --no-tone: {1000 * statistics.median(fastest):.2f} ms median "
              f"({naive_ms / (1000 * statistics.median(fastest)):.1f}x faster than the naive loop)")
    print(f"naive model.predict per character:  {naive_ms:.1f} ms median")
    for name, g in compared:
        print(f"{name} precision:")
        ci_latency(g, args.repeats, library_threads)

    # raw generation speed: every row a poem (one candidate each, no 平仄 steering)
    batch = PoemRequest(n=args.batch, batch_size=args.batch, best_of=1, tone=False, sample=SampleOptions(seed=2))
    exact.generate(batch)
    settings = threads_of(exact.stepper, lambda: exact.generate(batch))
    seconds = min(timed(lambda: exact.generate(batch), 3))
    chars = args.batch * 24
    print(f"batched throughput at batch {args.batch}, float32 ({settings}): {chars / seconds:,.0f} characters/s "
          f"({args.batch * 20 / seconds:,.0f} Han characters/s; goal >= 50,000 characters/s)")

    settings = threads_of(exact.stepper, lambda: model_products(exact.stepper, args.batch))
    products = min(timed(lambda: model_products(exact.stepper, args.batch), 3))
    print(f"  the model's float32 products alone (24 state steps, 20 output layers at batch {args.batch}, {settings}): "
          f"{1000 * products:.0f} ms, a ceiling of {chars / products:,.0f} characters/s with free sampling")

    int8_report(args, exact, batch, chars, seconds)


if __name__ == "__main__":
    main()
