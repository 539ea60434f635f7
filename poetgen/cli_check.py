"""`poetgen check [TEXT]`: scans a poem someone wrote (its form's rhyme and 平仄, or a ci's tune) and says
line by line what breaks them.

It reads the tables only (poetgen.scansion), never a model, so it answers at once; it does not rewrite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from poetgen.errors import EXIT_FAULTS, BadInput
from poetgen.layout import FORM_ALIASES, FORMS
from poetgen.quiet import require_output, writing_stdout


@click.command("check")
@click.argument("text", required=False, default="-")
@click.option("--form", default=None,
              help=f"The shi form to scan it as: {', '.join(FORMS)} or {' '.join(FORM_ALIASES)} (default: the one its "
                   f"line lengths have).")
@click.option("--tune", default=None, help="Scan it as a ci of this tune (any name or pinyin, 浣溪沙#3 for a variant).")
@click.option("--variant", type=click.IntRange(min=1), default=None,
              help="The tune's variant (格) to scan against (default: the one it fits best).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: each line with its pattern and faults; json: the whole scansion.")
@click.option("--strict", is_flag=True,
              help=f"Exit {EXIT_FAULTS} when the layout, a 平仄 position or a rhyme breaks the form (the scansion is printed all the same).")
def check_command(text: str, form: str | None, tune: str | None, variant: int | None, fmt: str, strict: bool) -> None:
    """Scan a poem: its form's rhyme and 平仄 line by line, or a ci against its tune.

    TEXT is the poem, with its punctuation or one line per line; `-` (the default) reads it from stdin.
    """
    from poetgen.scansion import scan

    require_output()
    if tune is not None and not tune.strip():   # `--tune ""` would scan it as shi: refused, as generate refuses it
        from poetgen.request import blank

        raise blank("tune")
    if text == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInput("give the poem as TEXT, or pipe it in (poetgen check - < poem.txt)", field="text")
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise BadInput(f"standard input is not UTF-8 text (byte {error.start}); convert it first, e.g. "
                           f"iconv -f gbk -t utf-8 poem.txt | poetgen check -", field="text") from None
    elif _names_a_path(text):   # `poetgen check poem.txt`: the name would be scanned as the poem
        shown = "FILE" if Path(text).is_dir() else text
        raise BadInput(f"{text} is a {'folder' if shown == 'FILE' else 'file'}: TEXT is the poem itself; "
                       f"read a file with poetgen check < {shown}", field="text")
    scansion = scan(text, form=form, tune=tune, variant=variant)
    if scansion.read_as:   # 乌夜啼 of 36 characters: 相见欢's, which Song poets also called so
        click.echo(f"poetgen: note: {scansion.read_as}", err=True)
    if scansion.left_out:   # 静夜思 / 李白 above the verses: a title and an author, not lines of the poem
        click.echo(f"poetgen: note: {' / '.join(scansion.left_out)} left out: read as the poem's title, tune "
                   f"or author, above it", err=True)
    with writing_stdout():
        click.echo(json.dumps(scansion.to_dict(), ensure_ascii=False, indent=2) if fmt == "json" else str(scansion))
    if strict and not scansion.ok:
        raise click.exceptions.Exit(EXIT_FAULTS)


def _names_a_path(text: str) -> bool:
    """True when TEXT is the name of a file or folder that exists (a poem's text is none: too long, or
    with marks no one names a file with)."""
    try:
        return bool(text.strip()) and Path(text).exists()   # "" would be the current folder
    except (OSError, ValueError):   # a name too long for the system, or with a NUL
        return False
