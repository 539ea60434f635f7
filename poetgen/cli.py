"""The `poetgen` command: one click command per user task, errors as one line on stderr.

Heavy imports (TensorFlow, jieba) happen inside the commands that need them, so --help is instant.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from poetgen import __version__
from poetgen.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PoetgenError
from poetgen.quiet import tensorflow_required


class StderrHandler(logging.Handler):
    """poetgen's log records as lines on whatever sys.stderr is when they are emitted (stdout stays results)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not break the command
            self.handleError(record)


class _Formatter(logging.Formatter):
    """A warning logged reads as one the commands echo (`poetgen: warning: …`); progress as it is."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"poetgen: warning: {message}" if record.levelno == logging.WARNING else message


def setup_logging(quiet: bool = False) -> None:
    """Send the `poetgen` loggers to stderr: progress (INFO) unless quiet, warnings always."""
    logger = logging.getLogger("poetgen")
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(_Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class PoetgenGroup(click.Group):
    """Turns every failure into one line on stderr and a documented exit code."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("POETGEN_DEBUG") == "1"
        try:
            with tensorflow_required():   # a --no-deps install without TensorFlow: one line, not an internal error
                code = super().main(args=args, prog_name=prog_name or "poetgen", standalone_mode=False, **extra)
            if isinstance(code, int) and code:   # click returns a command's Exit(code) without standalone_mode
                sys.exit(code)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.exceptions.NoArgsIsHelpError as error:   # `poetgen` or `poetgen corpus` alone: the help
            error.show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            click.echo(f"poetgen: error: {_one_line(error.format_message())}", err=True)
            sys.exit(EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code)
        except PoetgenError as error:
            click.echo(f"poetgen: error: {_one_line(error)}", err=True)
            sys.exit(error.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("poetgen: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            sys.exit(EXIT_OK)
        except OSError as error:   # a file the user named cannot be read or written
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"poetgen: error: {where}{error.strerror or _one_line(error)}", err=True)
            sys.exit(EXIT_USAGE)
        except Exception as error:  # a bug: one line, the traceback only on request
            if debug:
                traceback.print_exc()
            click.echo(f"poetgen: internal error: {type(error).__name__}: {_one_line(error)[:300]} "
                       f"(run with --debug for the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)
        sys.exit(EXIT_OK)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:   # `poetgen tunes | head -1`: the reader has all it wanted (click would exit 1)
            _drop_stdout()
            raise click.exceptions.Exit(EXIT_OK) from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):   # no real stdout (a test runner's buffer): nothing to flush
        pass


@click.group(cls=PoetgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poetgen")
@click.option("--debug", is_flag=True, help="Show the full traceback of internal errors (or set POETGEN_DEBUG=1).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr, no progress messages.")
def cli(debug: bool, quiet: bool) -> None:
    """Generate classical Chinese poems; train, export and evaluate the models behind them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    setup_logging(quiet)


def main() -> None:
    cli.main()


def _register() -> None:
    from poetgen.cli_check import check_command
    from poetgen.cli_corpus import corpus
    from poetgen.cli_model import COMMANDS
    from poetgen.cli_tunes import tunes_command

    cli.add_command(corpus)
    cli.add_command(tunes_command)
    cli.add_command(check_command)
    for command in COMMANDS:
        cli.add_command(command)


_register()
