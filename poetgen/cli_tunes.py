"""`poetgen tunes [QUERY]`: the ci tunes of the 词谱, searchable by name, other name or pinyin.

It reads the shipped table and, when present, counts the ci of each tune in the ci corpus; no TensorFlow.
"""

from __future__ import annotations

import collections
import json
import zlib
from pathlib import Path

import click

from poetgen.errors import BadCorpus, BadInput
from poetgen.quiet import progress_shown, require_output, writing_stdout
from poetgen.resources import shipped_path
from poetgen.tunes import TuneTable, tune_table

CI_CORPUS = "corpus/ci.jsonl.gz"   # h5's combined ci corpus: records with genre "ci" and a `tune` field


def ci_counts(path: Path, tunes: TuneTable) -> collections.Counter:
    """Ci per tune (by its main name) in a corpus file of any format `corpus import` reads: JSON lines
    with a `tune` field, chinese-poetry JSON with `rhythmic`, gzipped or not (text has no tunes)."""
    from poetgen.readers import read_raw

    counts = collections.Counter()
    try:
        for number, raw in enumerate(read_raw(path), 1):
            if isinstance(raw, str):   # a reason `corpus import` would drop the record for: the counts would be off
                raise ValueError(f"record {number}: {raw}")
            tune = tunes.find_written(raw.tune, raw.text) if raw.tune else None
            if tune is not None:   # 望江南・忆江南 counts for 忆江南; a 36-character 乌夜啼 for 相见欢
                counts[tune.name] += 1
    except (OSError, ValueError, EOFError, zlib.error, BadCorpus) as error:   # zlib.error: a corrupt .gz
        raise BadCorpus(f"cannot read the ci corpus {path}: {error}") from None
    return counts


def tune_rows(query: str, corpus: Path | None) -> list[dict]:
    tunes = tune_table()
    path = corpus if corpus is not None else shipped_path(CI_CORPUS)
    counts = ci_counts(path, tunes) if path.exists() else None

    def shared(pairs) -> list[dict]:   # tune: the other tune; ci of all ci titled with the name alone
        return [{"name": s.name, "tune": tune, "ci": s.count, "of": s.total} for tune, s in pairs]

    def rows_of(t) -> dict:
        also_names = shared((other.name, s) for other, s in tunes.also_names(t))
        return {"also_names": also_names, "also_called": shared((s.of, s) for s in t.also_called),
                "written_as": next((a["tune"] for a in also_names if a["name"] == t.name and 2 * a["ci"] > a["of"]), None)}

    return [{"name": t.name, "other_names": list(t.names[1:]), "traditional": t.names_trad[0],
             "pinyin": t.full_pinyin, "sections": t.sections_of(t.variant(None)),   # the variant written by default
             "variant_sections": [t.sections_of(v) for v in t.variants],
             "characters": [v.length for v in t.variants], "variants": len(t.variants), "usual": t.usual,
             "ci_in_corpus": None if counts is None else counts[t.name], **rows_of(t)}
            for t in tunes.search(query)]


@click.command("tunes")
@click.argument("query", required=False, default="")
@click.option("--corpus", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=f"Corpus to count ci per tune in: JSON lines with `tune`, or chinese-poetry JSON with "
                   f"`rhythmic` (default: the shipped {CI_CORPUS} when present).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one tune per line; json: one object per tune.")
def tunes_command(query: str, corpus: Path | None, fmt: str) -> None:
    """List the ci tunes (词牌) of the 词谱, or those whose names or pinyin contain QUERY."""
    require_output()
    if corpus is not None and not corpus.exists():
        raise BadCorpus(f"{corpus}: no such corpus file")
    rows = tune_rows(query, corpus)
    if fmt == "json":
        with writing_stdout():
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        raise BadInput(f"no tune matches {query!r}; `poetgen tunes` without a query lists them all",
                       field="query")
    lines = []
    for row in rows:
        others = f" ({'、'.join(row['other_names'])})" if row["other_names"] else ""
        chars = "/".join(f"[{n}]" if k == row["usual"] and row["variants"] > 1 else str(n)
                         for k, n in enumerate(row["characters"], 1))   # [60]: the variant written by default
        count = "" if row["ci_in_corpus"] is None else f"  {row['ci_in_corpus']} ci"
        shared = "".join(f"  ({a['name']} also names {a['tune']}: {a['ci']} of {a['of']} ci so titled"
                         f"{', most' if a['tune'] == row['written_as'] else ''})" for a in row["also_names"])
        shared += "".join(f"  (also called {a['name']}: --tune {a['name']} writes {a['tune']})" for a in row["also_called"])
        lines.append(f"{row['name']}{others}  {row['pinyin']}  {row['sections']}  {chars} chars  "
                     f"{row['variants']} variant{'s' if row['variants'] > 1 else ''}{count}{shared}")
    with writing_stdout():
        for line in lines:
            click.echo(line)
    note = tune_table().also_note(query) if query.strip() and tune_table().find(query) else ""
    if note:   # 乌夜啼: the tune --tune writes, and the one its name also means
        click.echo(f"poetgen: note: {note}", err=True)
    if progress_shown():   # a count, not a result: --quiet drops it
        click.echo(f"{len(rows)} tune{'s' if len(rows) > 1 else ''}", err=True)
