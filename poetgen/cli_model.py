"""`poetgen train | generate | export | quantize | evaluate | serve`: the commands that need a model.

Each imports TensorFlow (and jieba) only when it runs, and only where its stage needs it; the stages' option
classes are imported up front, since the options are derived from them. The commands do not sample or train.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

import click

from poetgen.batching import BatchOptions
from poetgen.errors import EXIT_INTERRUPTED, OutputError
from poetgen.evaluate import EvalOptions
from poetgen.export import ExportOptions
from poetgen.cli_options import option
from poetgen.quiet import import_tensorflow, progress_shown, require_output, writing_stdout
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions
from poetgen.train import TrainConfig

COMMANDS: list[click.Command] = []
logger = logging.getLogger(__name__)


def command(function):
    COMMANDS.append(function)
    return function


int8_option = click.option(
    "--int8/--float32", default=None,
    help="Matrix products in int8 (a default wujue ~3x faster; held-out perplexity +0.001 % on the shipped "
         "model) or float32. Default: int8 when the bundle carries its int8 products (`poetgen quantize`; the "
         "shipped model does) and LiteRT is installed.")


@command
@click.command()
@option(TrainConfig, "corpus", type=click.Path(path_type=Path),
        help="Corpus file or directory (what `poetgen corpus import` writes, or a raw format). "
             "Default: the whole shipped corpus (Tang and Song shi, Song and 五代 ci).")
@option(TrainConfig, "out", type=click.Path(path_type=Path))
@option(TrainConfig, "cell")
@option(TrainConfig, "layers")
@option(TrainConfig, "units")
@option(TrainConfig, "embedding_dim")
@option(TrainConfig, "dropout")
@option(TrainConfig, "projection")
@option(TrainConfig, "tie_embeddings")
@option(TrainConfig, "embedding_dropout")
@option(TrainConfig, "recurrent_dropout")
@option(TrainConfig, "sampled_softmax")
@option(TrainConfig, "conditioned")
@option(TrainConfig, "top_tunes")
@option(TrainConfig, "titles")
@option(TrainConfig, "reverse")
@option(TrainConfig, "epochs")
@option(TrainConfig, "steps_per_epoch")
@option(TrainConfig, "checkpoint_minutes")
@option(TrainConfig, "batch_size")
@option(TrainConfig, "seq_len")
@option(TrainConfig, "learning_rate")
@option(TrainConfig, "warmup_steps")
@option(TrainConfig, "clipnorm")
@option(TrainConfig, "min_count")
@option(TrainConfig, "val_split")
@option(TrainConfig, "seed")
@option(TrainConfig, "strategy")
@option(TrainConfig, "precision")
@option(TrainConfig, "resume")
@option(TrainConfig, "force")
@click.option("--sample/--no-sample", default=True, show_default=True, help="Log a sample poem after each epoch.")
def train(sample: bool, **options) -> None:
    """Train a next-character model into a bundle directory."""
    from poetgen import api

    config = TrainConfig(**{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()})
    config.validate()
    import_tensorflow()
    started = time.time()
    try:
        with contextlib.redirect_stdout(sys.stderr):   # Keras's progress bar: stdout carries the result alone
            result = api.train(config, sample=sample, explicit=given_options(options))
    except KeyboardInterrupt:   # a second Ctrl-C: aborted mid-step; the run goes on from its last saved state
        from poetgen.resume import RESUME_DIR, RESUME_STATE
        from poetgen.train import resume_command

        state = Path(config.out) / RESUME_DIR / RESUME_STATE
        # with --force, a state saved before this command is the old run's, which this one was replacing
        if not state.is_file() or (config.force and state.stat().st_mtime < started):
            raise
        click.echo(f"poetgen: interrupted; the run goes on from its last saved state with: "
                   f"{resume_command(config)}", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    try:
        if result.best_val_perplexity is not None:
            with writing_stdout([result.path]):
                click.echo(f"best held-out perplexity {result.best_val_perplexity:.1f} at epoch "
                           f"{result.best_epoch}; bundle in {result.path}")
    except OutputError as error:
        if not result.stopped:
            raise
        click.echo(f"poetgen: warning: {error}", err=True)   # the exit code that says "resume" comes first
    if result.stopped:   # saved, but not done: a script's `train && quantize` must not carry on
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


def given_options(options: dict) -> frozenset[str]:
    """The options typed on the command line (or set in the environment), not left at their defaults."""
    from click.core import ParameterSource

    context = click.get_current_context()
    return frozenset(name for name in options
                     if context.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP))


@command
@click.command()
@click.argument("prompt", required=False, default="")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory from `poetgen train` or `poetgen export --format keras` (default: shipped model).")
@option(PoemRequest, "form")
@option(PoemRequest, "tune")
@option(PoemRequest, "variant")
@option(PoemRequest, "acrostic")
@option(PoemRequest, "theme")
@option(PoemRequest, "title")
@option(PoemRequest, "rhyme", "--rhyme/--no-rhyme")
@option(PoemRequest, "tone", "--tone/--no-tone")
@option(PoemRequest, "no_repeat", "--no-repeat/--allow-repeat")
@option(PoemRequest, "repeat_penalty")
@option(SampleOptions, "temperature")
@option(SampleOptions, "top_k")
@option(SampleOptions, "top_p")
@option(SampleOptions, "seed")
@option(PoemRequest, "n", "-n")
@option(PoemRequest, "best_of")
@option(PoemRequest, "max_chars")
@option(PoemRequest, "reverse_weight")
@option(PoemRequest, "polish")
@option(PoemRequest, "polish_lines")
@option(PoemRequest, "style")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one poem per block; json: poems with scores.")
@click.option("--traditional", is_flag=True, help="Print traditional characters.")
@int8_option
@click.option("--interactive", is_flag=True,
              help="Load the model once, then write a poem for each line typed on stdin (/help lists commands).")
def generate(prompt, model_dir, fmt, traditional, int8, interactive, **options) -> None:
    """Write poems, starting with PROMPT if given."""
    from click.core import ParameterSource

    require_output()

    from poetgen import api
    from poetgen.request import BLANK_REFUSED, blank

    for name in BLANK_REFUSED:   # `--tune ""` given, which parses as left out (a shi)
        if options[name] == "" and click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE:
            raise blank(name)

    if interactive:
        from poetgen.interactive import run_session

        return run_session(generate, prompt, model_dir, int8, dict(options, fmt=fmt, traditional=traditional))
    request = api.poem_request(prompt, **options)   # a bad option fails before the model loads
    if "max_chars" in given_options(options) and request.resolved_form() != "free":
        click.echo("poetgen: note: --max-chars caps free verse (--form free); a form or a tune fixes the length",
                   err=True)
    poet = api.load(model_dir, int8)
    from poetgen.tunes import variant_spelling

    if request.tune and request.variant is None and "#" not in variant_spelling(request.tune):
        from poetgen.tunes import tune_table

        note = tune_table().also_note(request.tune)
        if note:   # 乌夜啼 is the 谱's 48-character tune; Song poets also called 相见欢 so
            click.echo(f"poetgen: note: {note}", err=True)
    if request.tune and not poet.knows_ci:
        click.echo("poetgen: warning: this model was not trained on ci (no <ci> control token in its tokenizer): "
                   "its ci keep the tune's layout, rhyme and 平仄 but read like shi", err=True)
    poems = poet.run(request, traditional)
    with writing_stdout():
        click.echo(poems.to_json() if fmt == "json" else str(poems))


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory from `poetgen train` or `poetgen export --format keras` (default: shipped model).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@option(BatchOptions, "max_rows", "--max-batch")
@option(BatchOptions, "max_wait_ms", "--batch-wait-ms")
@option(BatchOptions, "max_queue")
@option(BatchOptions, "timeout_s", "--request-timeout")
@option(BatchOptions, "max_request_chars")
@click.option("--blas-threads", type=click.IntRange(0, 256), default=1, show_default=True,
              help="Threads for the model's matrix products; batching supplies the parallelism, and more "
                   "threads stall on busy cores. 0 keeps the BLAS library's default.")
@int8_option
def serve(model_dir, host, port, max_rows, max_wait_ms, max_queue, timeout_s, max_request_chars, blas_threads,
          int8) -> None:
    """Serve the poem page at / and the JSON API at /api/generate."""
    try:
        import uvicorn

        from poetgen.http_server import listening_sockets, run_server
        from poetgen.serve import create_app
    except ImportError as error:
        from poetgen.errors import BadInput

        raise BadInput(f"`poetgen serve` needs the serve extra ({error.name} is missing): "
                       f"pip install 'poetgen[serve]'") from None

    options = BatchOptions(max_rows=max_rows, max_wait_ms=max_wait_ms, max_queue=max_queue, timeout_s=timeout_s,
                           max_request_chars=max_request_chars)
    options.validate()
    if blas_threads:
        from poetgen.blas import set_process_blas_threads

        set_process_blas_threads(blas_threads)
    from poetgen.lock import sigterm_interrupts

    with sigterm_interrupts():   # while the model loads, as uvicorn's handlers do once it serves
        from poetgen.generate import Generator

        sockets = listening_sockets(host, port)
        try:
            app = create_app(Generator.load(model_dir, int8), options)
            logger.info(f"serving poems on http://{host}:{port}/ (Ctrl-C stops)")
            run_server(app, sockets, options.timeout_s)
        finally:
            for sock in sockets:
                sock.close()


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to export (default: shipped model).")
@option(ExportOptions, "out", type=click.Path(path_type=Path))
@option(ExportOptions, "format", "--format", "fmt",
        help="savedmodel: TensorFlow-only, with serve and generate endpoints; keras: a portable bundle for "
             "`poetgen generate --model`; tflite: the one-step model for the TFLite interpreter.")
@option(ExportOptions, "force")
@option(ExportOptions, "tunes",
        help="ci tunes the savedmodel's generate can write (every variant of each): -1 every tune of the 词谱, "
             "N the N most common in the shipped ci corpus, 0 none (shi forms only).")
def export(model_dir, out, fmt, force, tunes) -> None:
    """Export a model for use outside poetgen."""
    from poetgen import api

    path = api.export(ExportOptions(out, fmt, force, tunes), model=model_dir)
    with writing_stdout([path]):
        click.echo(f"exported {fmt} to {path}")


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to quantize (default: shipped model).")
def quantize(model_dir) -> None:
    """Convert a bundle's matrix products to int8 once, so that generate and serve run it in int8."""
    from poetgen import api

    paths = api.quantize(model_dir)
    with writing_stdout(paths):
        for path in paths:
            click.echo(f"wrote {path}")


@command
@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to evaluate (default: shipped model).")
@option(EvalOptions, "corpus", type=click.Path(path_type=Path))
@option(EvalOptions, "dynasty",
        help="Score only this dynasty's poems. Default: all, but tang on the shipped corpus when "
             "--genre is not given either (the figure earlier models were measured on).")
@option(EvalOptions, "genre", help="Score only shi or only ci. Default: all.")
@option(EvalOptions, "held_out",
        help="With --corpus: score only the file's held-out poems, by the model's own split (the poems "
             "training held out of your corpus and reported on). The shipped corpus is always read so.")
@option(EvalOptions, "samples")
@option(EvalOptions, "seed")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a table; json: one object on stdout (progress stays on stderr).")
@click.option("--tune", "tunes", multiple=True,
              help="Report ci of this tune instead (repeatable): layout, rhyme and 平仄 with the rules and "
                   "the model alone.")
def evaluate(model_dir, corpus, dynasty, genre, held_out, samples, seed, fmt, tunes) -> None:
    """Held-out perplexity, and form, rhyme, 平仄, novelty and diversity of generated poems."""
    import contextlib
    import json

    require_output()
    import sys

    from poetgen import api
    from poetgen.evaluate import format_text
    from poetgen.evaluate_ci import format_tune_text

    options = EvalOptions(str(corpus) if corpus is not None else None, samples, seed, dynasty=dynasty, genre=genre,
                          held_out=held_out)
    options.validate()
    # Stray prints must not spoil --format json; the bar appears once the model and texts are read.
    with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as stack:
        bars = []

        def progress(done: int, total: int) -> None:
            if not progress_shown():   # --quiet
                return
            if not bars:
                bars.append(stack.enter_context(click.progressbar(length=total, label="evaluating",
                                                                  file=sys.stderr)))
            bars[0].update(done - bars[0].pos)

        report = api.evaluate(options, model=model_dir, progress=progress, tunes=tunes)
    as_text = format_tune_text if tunes else format_text
    text = json.dumps(report, ensure_ascii=False, indent=1) if fmt == "json" else as_text(report)
    with writing_stdout():
        click.echo(text)
