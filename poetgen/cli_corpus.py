"""`poetgen corpus ...`: import users' corpora, show statistics, rebuild the shipped corpus.

None of these commands imports TensorFlow.
"""

from __future__ import annotations

import collections
import contextlib
import json

from pathlib import Path

import click

from poetgen.corpus import (DYNASTIES, GENRES, EmptyCorpus, Poem, form_counts, shipped_corpus_path,
                            shipped_corpus_paths, write_corpus)
from poetgen.errors import BadCorpus, OutputExists
from poetgen.importers import ONE_CLAUSE, UNKNOWN_DYNASTY, WHOLE_LINES, load_corpus, stream_poems
from poetgen.corpus_files import expand_paths
from poetgen.quiet import progress_shown, require_output, writing_stdout
from poetgen.layout import FORMS
from poetgen.lock import Lock

PROGRESS_BYTES = 8 << 20   # show a progress bar for inputs larger than this


@click.group()
def corpus() -> None:
    """Import, inspect and rebuild poem corpora."""


def _check_output(out: Path, force: bool) -> None:
    if out.is_dir() and not out.is_symlink():
        raise OutputExists(f"{out} is a directory; give a file name such as poems.jsonl.gz")
    if out.is_symlink() or (out.exists() and not out.is_file()):   # --force replaces an earlier corpus file only
        kind = "a symbolic link" if out.is_symlink() else "not a regular file (a device or a pipe)"
        raise OutputExists(f"{out} is {kind}; poetgen writes only a new file or replaces one (--force): "
                           f"give another --out")
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to replace it")


def _input_bytes(paths, exclude) -> int:
    return sum(path.stat().st_size for path in expand_paths(paths, exclude))


def _print_import_summary(kept: int, dropped: collections.Counter, out: Path) -> None:
    click.echo(f"kept {kept} poem{'' if kept == 1 else 's'}, dropped {sum(dropped.values())}; wrote {out}")
    for reason, count in dropped.most_common():
        click.echo(f"  dropped {count}: {reason}")


@corpus.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Corpus file to write: JSON lines, gzipped if the name ends in .gz.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of the input files (e.g. gbk).")
@click.option("--keep-script", is_flag=True, help="Keep traditional characters instead of converting to simplified.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--per-line", is_flag=True,
              help="Plain text: one poem per line, whatever blank lines there are (by default blank lines, where "
                   "they separate lines of text, separate poems of several lines).")
def import_command(paths, out: Path, encoding: str, keep_script: bool, force: bool, per_line: bool) -> None:
    """Import plain text, JSON lines, chinese-poetry JSON files or directories of them."""
    _check_output(out, force)
    total = _input_bytes(paths, [out])   # the output, in an input directory, is not read back (--force)
    dropped, notes = collections.Counter(), collections.Counter()
    options = {"per_line": per_line, "notes": notes}
    try:
        with Lock.file(out):   # a second import onto the same file refuses, naming this one
            if total > PROGRESS_BYTES and progress_shown():
                with click.progressbar(length=total, label="importing", file=click.get_text_stream("stderr")) as bar:
                    kept = write_corpus(stream_poems(paths, dropped, encoding, not keep_script, bar.update, [out],
                                                     **options), out)
            else:
                kept = write_corpus(stream_poems(paths, dropped, encoding, not keep_script, exclude=[out], **options),
                                    out)
    except EmptyCorpus:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "nothing found"
        raise BadCorpus(f"no usable poem in the input ({reasons}); {out} not written") from None
    try:
        with writing_stdout([out]):
            _print_import_summary(kept, dropped, out)
    finally:   # stderr's lines: a standard output closed or full, which stops the command, does not lose them
        _warn_about_data(kept, notes, per_line)


def _warn_about_data(kept: int, notes: collections.Counter, per_line: bool) -> None:
    """What corpus import read in a way its user may not mean, one warning line each on stderr."""
    if kept > 1 and notes[ONE_CLAUSE] == kept:   # whatever blank lines there are: it is how they were read
        how = ("a poem written a verse per line is read with --per-line" if per_line else
               "a poem is written a verse per line, with no blank line between poems or one between every two verses")
        click.echo(f"poetgen: warning: every poem kept is one five- or seven-character clause, as when {how}: write "
                   f"each poem on one line, or its verses on lines of their own with a blank line between poems"
                   f"{' and no --per-line' if per_line else ''}", err=True)
    if notes[UNKNOWN_DYNASTY]:
        click.echo(f"poetgen: warning: {notes[UNKNOWN_DYNASTY]} {UNKNOWN_DYNASTY} were read as Tang", err=True)
    if notes[WHOLE_LINES] and not per_line:
        click.echo(f"poetgen: warning: {notes[WHOLE_LINES]} {WHOLE_LINES} were each read as one poem (as a 律诗 "
                   f"written four clauses a line must be); pass --per-line to read one poem per line", err=True)


def corpus_stats(poems: list[Poem], top: int = 20) -> dict:
    counts = collections.Counter()
    for poem in poems:
        counts.update(poem.text)
    han = {ch: n for ch, n in counts.items() if ch not in "，。？！；："}
    kinds = collections.Counter((poem.dynasty, poem.genre) for poem in poems)
    tunes = collections.Counter(poem.tune for poem in poems if poem.genre == "ci" and poem.tune)   # untuned ci: none
    return {"poems": len(poems), "chars": sum(len(p.text) for p in poems), "han_chars": sum(han.values()),
            "vocab": len(han), "forms": form_counts(p for p in poems if p.genre == "shi"),
            "by_dynasty_genre": {f"{d}/{g}": kinds[d, g] for d in DYNASTIES for g in GENRES if kinds[d, g]},
            "ci_tunes": len(tunes),
            "top_tunes": [[tune, n] for tune, n in sorted(tunes.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
            "top_chars": [[ch, n] for ch, n in sorted(han.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]}


@corpus.command("stats")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of a raw input file.")
def stats_command(paths: tuple[Path, ...], fmt: str, encoding: str) -> None:
    """Poems, characters, vocabulary, dynasties, genres, forms and ci tunes of corpus files (default: the
    whole shipped corpus)."""
    require_output()
    stats = corpus_stats(load_corpus(list(paths) or None, encoding=encoding))
    with writing_stdout():
        if fmt == "json":
            click.echo(json.dumps(stats, ensure_ascii=False))
            return
        click.echo(f"corpus:     {', '.join(map(str, paths or shipped_corpus_paths()))}")
        click.echo(f"poems:      {stats['poems']}")
        click.echo(f"characters: {stats['chars']} ({stats['han_chars']} Han)")
        click.echo(f"vocabulary: {stats['vocab']} distinct characters")
        for kind, count in stats["by_dynasty_genre"].items():
            click.echo(f"  {kind:<10} {count}")
        click.echo("shi forms:")
        for form in FORMS + ("other",):
            click.echo(f"  {form:<7} {stats['forms'][form]}")
        if stats["ci_tunes"]:
            click.echo(f"ci tunes:   {stats['ci_tunes']}; most written: "
                       + ", ".join(f"{tune} {n}" for tune, n in stats["top_tunes"]))
        click.echo("most frequent: " + ", ".join(f"{ch} {n}" for ch, n in stats["top_chars"]))


def _print_build(result, out: Path) -> None:
    _print_import_summary(len(result.poems), result.dropped, out)
    kinds = collections.Counter((poem.dynasty, poem.genre) for poem in result.poems)
    click.echo("  " + ", ".join(f"{d}/{g} {n}" for (d, g), n in sorted(kinds.items())))
    counts = form_counts(p for p in result.poems if p.genre == "shi")
    if any(counts.values()):
        click.echo("  forms: " + ", ".join(f"{form} {n}" for form, n in counts.items()))


@corpus.command("build")
@click.argument("tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to write tang.jsonl.gz, song.jsonl.gz and ci.jsonl.gz into "
                   "(default: the shipped corpus/).")
@click.option("--force", is_flag=True, help="Replace the files if they exist (the shipped ones do).")
def build_command(tarball: Path, out_dir: Path | None, force: bool) -> None:
    """Rebuild the whole shipped corpus from `npm pack chinese-poetry@2.0.1` (the same bytes every time)."""
    from poetgen.build_corpus import OUTPUTS, build

    out_dir = out_dir or shipped_corpus_path().parent
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExists(f"{out_dir} is not a directory")
    for output in OUTPUTS:
        _check_output(out_dir / output.name, force)
    results = build(tarball)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locks:   # a second build onto the same files refuses, naming this one
        for name in results:
            locks.enter_context(Lock.file(out_dir / name))
        for name, result in results.items():
            write_corpus(result.poems, out_dir / name)
    with writing_stdout([out_dir / name for name in results]):   # said once all are written
        for name, result in results.items():
            _print_build(result, out_dir / name)


@corpus.command("build-tang")
@click.argument("tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: the shipped corpus/tang.jsonl.gz).")
@click.option("--force", is_flag=True, help="Replace --out if it exists (the shipped one does).")
def build_tang_command(tarball: Path, out: Path | None, force: bool) -> None:
    """Rebuild only the shipped Tang corpus from `npm pack chinese-poetry` (the same bytes every time)."""
    from poetgen.build_corpus import build_tang

    out = out or shipped_corpus_path()
    _check_output(out, force)
    result = build_tang(tarball)
    with Lock.file(out):
        write_corpus(result.poems, out)
    with writing_stdout([out]):
        _print_build(result, out)

