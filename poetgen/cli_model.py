"""`poetgen train | generate | export | evaluate | serve`: the commands that need a model.

Each imports TensorFlow and the stage it drives only when it runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from poetgen.control import DEFAULT_STYLE, STYLES
from poetgen.corpus import DYNASTIES, GENRES
from poetgen.model import CELLS
from poetgen.quiet import import_tensorflow

COMMANDS: list[click.Command] = []
logger = logging.getLogger(__name__)


def command(function):
    COMMANDS.append(function)
    return function


int8_option = click.option(
    "--int8", is_flag=True,
    help="Matrix products in int8 (needs poetgen[int8]): ~1.9x the batched speed, perplexity +0.02%.")


@command
@click.command()
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Corpus file or directory (what `poetgen corpus import` writes, or a raw format). "
                   "Default: the whole shipped corpus (Tang and Song shi, Song and 五代 ci).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--cell", type=click.Choice(CELLS), default="lstm", show_default=True, help="Recurrent cell.")
@click.option("--layers", type=click.IntRange(1, 8), default=1, show_default=True, help="Recurrent layers.")
@click.option("--units", type=click.IntRange(1, 4096), default=256, show_default=True, help="Units per layer.")
@click.option("--embedding-dim", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="Character embedding size.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Dropout on recurrent inputs and the output layer.")
@click.option("--projection", type=click.IntRange(0, 4096), default=0, show_default=True,
              help="Linear layer of this size before the output layer (0: none); it cuts the output layer's cost.")
@click.option("--tie-embeddings", is_flag=True,
              help="Output layer = the embedding table transposed (needs --projection or --units = --embedding-dim).")
@click.option("--embedding-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Drop whole character embeddings (AWD-LSTM's embedding dropout).")
@click.option("--recurrent-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the hidden-to-hidden connections, one mask per sequence (slower steps).")
@click.option("--sampled-softmax", type=click.IntRange(0), default=0, show_default=True,
              help="Train with a sampled-softmax loss over this many sampled classes (0: full softmax); "
                   "evaluation always uses the full softmax.")
@click.option("--conditioned", is_flag=True,
              help="Start each poem with control tokens (style, form or ci tune) so `generate --style` works.")
@click.option("--top-tunes", type=click.IntRange(0), default=200, show_default=True,
              help="With --conditioned: ci tunes with their own token (the others share one).")
@click.option("--reverse", is_flag=True,
              help="Train on reversed poems: a reverse model for best-of reranking (a bundle's reverse/ folder).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Epochs to reach.")
@click.option("--steps-per-epoch", type=click.IntRange(0), default=0, show_default=True,
              help="Steps per epoch; 0 means one pass over the training characters.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True, help="Windows per step.")
@click.option("--seq-len", type=click.IntRange(2), default=64, show_default=True, help="Characters per window.")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=3e-3, show_default=True,
              help="Peak Adam learning rate (warm-up, then cosine decay to 5%).")
@click.option("--warmup-steps", type=click.IntRange(0), default=200, show_default=True, help="Warm-up steps.")
@click.option("--clipnorm", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Clip gradients to this global norm; 0 means no clipping.")
@click.option("--min-count", type=click.IntRange(1), default=3, show_default=True,
              help="Characters seen fewer times in the training split become <unk>.")
@click.option("--val-split", type=click.FloatRange(0, 0.5, min_open=True, max_open=True), default=0.02,
              show_default=True, help="Held-out share, chosen by a hash of each poem (0.02 is the fixed split).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              show_default=True, help="Distribution strategy (multiworker is refused: broken in Keras 3).")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16"]), default="float32",
              show_default=True, help="mixed_bfloat16 computes in bf16 with float32 weights (fast on CPUs with bf16).")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a model.")
@click.option("--sample/--no-sample", default=True, show_default=True, help="Print a sample poem after each epoch.")
def train(sample: bool, **options) -> None:
    """Train a next-character model into a bundle directory."""
    from poetgen import api
    from poetgen.callbacks import sample_callback
    from poetgen.train import TrainConfig

    config = TrainConfig(**{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()})
    config.validate()
    import_tensorflow()
    result = api.train(config, callbacks=[sample_callback(config.out)] if sample else [])
    if result.best_val_perplexity is not None:
        click.echo(f"best held-out perplexity {result.best_val_perplexity:.1f} at epoch "
                   f"{result.best_epoch}; bundle in {result.path}")


@command
@click.command()
@click.argument("prompt", required=False, default="")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory from `poetgen train` or `poetgen export --format keras` (default: shipped model).")
@click.option("--form", default=None, help="wujue|qijue|wulv|qilv|free, or 五绝 七绝 五律 七律. [default: wujue]")
@click.option("--acrostic", default="", help="藏头: line i starts with character i (4 or 8 characters).")
@click.option("--theme", default="", help="What the poem is about, in free text (e.g. 写一首关于秋天思乡的诗).")
@click.option("--rhyme/--no-rhyme", default=None, help="Rhyme lines 2, 4, 6, 8 in one 平水韵 group. [default: on for regular forms]")
@click.option("--tone/--no-tone", default=False, show_default=True, help="Steer toward a standard 平仄 pattern.")
@click.option("--no-repeat/--allow-repeat", default=True, show_default=True, help="No character twice in a line.")
@click.option("--temperature", type=float, default=0.8, show_default=True, help="0 is greedy; higher is wilder.")
@click.option("--top-k", type=int, default=0, show_default=True, help="Sample among the k likeliest (0: off).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus mass kept, in (0, 1].")
@click.option("--seed", type=int, default=None, help="Same seed and options give the same poems.")
@click.option("-n", "n", type=int, default=1, show_default=True, help="Poems to generate (as one batch).")
@click.option("--best-of", type=int, default=1, show_default=True, help="Candidates per poem; keep the best-scoring.")
@click.option("--max-chars", type=int, default=120, show_default=True, help="Length cap for free verse.")
@click.option("--reverse-weight", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With --best-of and a bundle holding a reverse model (reverse/): its weight in the score.")
@click.option("--style", type=click.Choice(STYLES), default=DEFAULT_STYLE, show_default=True,
              help="Tang shi, Song shi or ci (a ci defaults to free form), for a model trained with "
                   "--conditioned; other models ignore it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one poem per block; json: poems with scores.")
@click.option("--traditional", is_flag=True, help="Print traditional characters.")
@int8_option
@click.option("--interactive", is_flag=True,
              help="Load the model once, then write a poem for each line typed on stdin (/help lists commands).")
def generate(prompt, model_dir, fmt, traditional, int8, interactive, **options) -> None:
    """Write poems, starting with PROMPT if given."""
    from poetgen import api

    if interactive:
        from poetgen.interactive import run_session

        return run_session(generate, prompt, model_dir, int8, dict(options, fmt=fmt, traditional=traditional))
    request = api.poem_request(prompt, **options)   # a bad option fails before the model loads
    poems = api.load(model_dir, int8).run(request, traditional)
    click.echo(poems.to_json() if fmt == "json" else str(poems))


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory from `poetgen train` or `poetgen export --format keras` (default: shipped model).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="Poems stepped together at most (dynamic batching); 1 serves one request at a time.")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="How long a batch waits for more requests to join it.")
@click.option("--max-queue", type=click.IntRange(1), default=256, show_default=True,
              help="Requests waiting at most; more are answered 503.")
@click.option("--request-timeout", type=click.FloatRange(0, 3600, min_open=True), default=60.0, show_default=True,
              help="Seconds a request may wait for its poems; later it is answered 503.")
@click.option("--blas-threads", type=click.IntRange(0, 256), default=1, show_default=True,
              help="Threads for the model's matrix products; batching supplies the parallelism, and more "
                   "threads stall on busy cores. 0 keeps the BLAS library's default.")
@int8_option
def serve(model_dir, host, port, max_batch, batch_wait_ms, max_queue, request_timeout, blas_threads, int8) -> None:
    """Serve the poem page at / and the JSON API at /api/generate."""
    try:
        import threadpoolctl
        import uvicorn

        from poetgen.serve import create_app
    except ImportError as error:
        raise click.ClickException(f"`poetgen serve` needs the serve extra ({error.name} is missing): "
                                   f"pip install 'poetgen[serve]'") from None
    from poetgen.batching import BatchOptions

    options = BatchOptions(max_rows=max_batch, max_wait_ms=batch_wait_ms, max_queue=max_queue,
                           timeout_s=request_timeout)
    options.validate()
    if blas_threads:
        threadpoolctl.threadpool_limits(blas_threads, user_api="blas")
    from poetgen.generate import Generator

    app = create_app(Generator.load(model_dir, int8), options)
    logger.info(f"serving poems on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to export (default: shipped model).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory to write.")
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "keras", "tflite"]), default="savedmodel",
              show_default=True, help="savedmodel: TensorFlow-only, with serve and generate endpoints; "
                                      "keras: a portable bundle for `poetgen generate --model`; "
                                      "tflite: the one-step model for the TFLite interpreter.")
@click.option("--force", is_flag=True, help="Replace --out if it exists (once the new export is complete).")
def export(model_dir, out, fmt, force) -> None:
    """Export a model for use outside poetgen."""
    from poetgen import api
    from poetgen.export import ExportOptions

    path = api.export(ExportOptions(out, fmt, force), model=model_dir)
    click.echo(f"exported {fmt} to {path}")


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to evaluate (default: shipped model).")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Score this corpus file whole. Default: the held-out split of the shipped corpus.")
@click.option("--dynasty", type=click.Choice(DYNASTIES + ("all",)), default=None,
              help="Score only this dynasty's poems. Default: all, but tang on the shipped corpus when "
                   "--genre is not given either (the figure earlier models were measured on).")
@click.option("--genre", type=click.Choice(GENRES + ("all",)), default=None,
              help="Score only shi or only ci. Default: all.")
@click.option("--samples", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Poems generated per regular form.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (fixed, so runs compare).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a table; json: one object on stdout (progress stays on stderr).")
def evaluate(model_dir, corpus, dynasty, genre, samples, seed, fmt) -> None:
    """Held-out perplexity, and form, rhyme, 平仄, novelty and diversity of generated poems."""
    import contextlib
    import json
    import sys

    from poetgen import api
    from poetgen.evaluate import EvalOptions, format_text

    options = EvalOptions(str(corpus) if corpus is not None else None, samples, seed, dynasty=dynasty, genre=genre)
    options.validate()
    # Stray prints must not spoil --format json; the bar appears once the model and texts are read.
    with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as stack:
        bars = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(length=total, label="evaluating",
                                                                  file=sys.stderr)))
            bars[0].update(done - bars[0].pos)

        report = api.evaluate(options, model=model_dir, progress=progress)
    click.echo(json.dumps(report, ensure_ascii=False, indent=1) if fmt == "json" else format_text(report))
