"""`poetgen corpus ...`: import users' corpora, show statistics, rebuild the shipped Tang corpus.

None of these commands imports TensorFlow.
"""

from __future__ import annotations

import collections
import json

from pathlib import Path

import click

from poetgen.corpus import FORMS, EmptyCorpus, Poem, form_counts, shipped_corpus_path, write_corpus
from poetgen.errors import BadCorpus, OutputExists
from poetgen.importers import expand_paths, load_corpus, stream_poems

PROGRESS_BYTES = 8 << 20   # show a progress bar for inputs larger than this


@click.group()
def corpus() -> None:
    """Import, inspect and rebuild poem corpora."""


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise OutputExists(f"{out} is a directory; give a file name such as poems.jsonl.gz")


def _input_bytes(paths) -> int:
    return sum(path.stat().st_size for path in expand_paths(paths))


def _print_import_summary(kept: int, dropped: collections.Counter, out: Path) -> None:
    click.echo(f"kept {kept} poems, dropped {sum(dropped.values())}; wrote {out}")
    for reason, count in dropped.most_common():
        click.echo(f"  dropped {count}: {reason}")


@corpus.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Corpus file to write: JSON lines, gzipped if the name ends in .gz.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of the input files (e.g. gbk).")
@click.option("--keep-script", is_flag=True, help="Keep traditional characters instead of converting to simplified.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def import_command(paths, out: Path, encoding: str, keep_script: bool, force: bool) -> None:
    """Import plain text, JSON lines, chinese-poetry JSON files or directories of them."""
    _check_output(out, force)
    total = _input_bytes(paths)
    dropped = collections.Counter()
    try:
        if total > PROGRESS_BYTES:
            with click.progressbar(length=total, label="importing", file=click.get_text_stream("stderr")) as bar:
                kept = write_corpus(stream_poems(paths, dropped, encoding, not keep_script, bar.update), out)
        else:
            kept = write_corpus(stream_poems(paths, dropped, encoding, not keep_script), out)
    except EmptyCorpus:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "nothing found"
        raise BadCorpus(f"no usable poem in the input ({reasons}); {out} not written") from None
    _print_import_summary(kept, dropped, out)


def corpus_stats(poems: list[Poem], top: int = 20) -> dict:
    counts = collections.Counter()
    for poem in poems:
        counts.update(poem.text)
    han = {ch: n for ch, n in counts.items() if ch not in "，。？！；："}
    return {"poems": len(poems), "chars": sum(len(p.text) for p in poems), "han_chars": sum(han.values()),
            "vocab": len(han), "forms": form_counts(poems),
            "top_chars": [[ch, n] for ch, n in sorted(han.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]}


@corpus.command("stats")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of a raw input file.")
def stats_command(path: Path | None, fmt: str, encoding: str) -> None:
    """Poems, characters, vocabulary and forms of a corpus (default: the shipped Tang corpus)."""
    stats = corpus_stats(load_corpus(path, encoding=encoding))
    if fmt == "json":
        click.echo(json.dumps(stats, ensure_ascii=False))
        return
    click.echo(f"corpus:     {path or shipped_corpus_path()}")
    click.echo(f"poems:      {stats['poems']}")
    click.echo(f"characters: {stats['chars']} ({stats['han_chars']} Han)")
    click.echo(f"vocabulary: {stats['vocab']} distinct characters")
    for form in FORMS + ("other",):
        click.echo(f"  {form:<7} {stats['forms'][form]}")
    click.echo("most frequent: " + " ".join(f"{ch}{n}" for ch, n in stats["top_chars"]))


@corpus.command("build-tang")
@click.argument("tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: the shipped corpus/tang.jsonl.gz).")
def build_tang_command(tarball: Path, out: Path | None) -> None:
    """Rebuild the shipped corpus from `npm pack chinese-poetry` (the same bytes every time)."""
    from poetgen.tang import build_tang

    out = out or shipped_corpus_path()
    result = build_tang(tarball)
    write_corpus(result.poems, out)
    _print_import_summary(len(result.poems), result.dropped, out)
    counts = form_counts(result.poems)
    click.echo("forms: " + ", ".join(f"{form} {n}" for form, n in counts.items()))

