"""`poetgen tunes [QUERY]`: the ci tunes of the 词谱, searchable by name, other name or pinyin.

It reads the shipped table and, when present, counts the ci of each tune in the ci corpus; no TensorFlow.
"""

from __future__ import annotations

import collections
import gzip
import json
import zlib
from pathlib import Path

import click

from poetgen.errors import BadCorpus, BadInput
from poetgen.quiet import progress_shown
from poetgen.resources import shipped_path
from poetgen.tunes import TuneTable, tune_table

CI_CORPUS = "corpus/ci.jsonl.gz"   # h5's combined ci corpus: records with genre "ci" and a `tune` field


def ci_counts(path: Path, tunes: TuneTable) -> collections.Counter:
    """Ci per tune (by its main name) in a corpus file with a `tune` field."""
    counts = collections.Counter()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as stream:
            for line in stream:
                if not line.strip():
                    continue
                record = json.loads(line)
                name = record.get("tune") if isinstance(record, dict) else None
                if name is not None and not isinstance(name, str):
                    raise ValueError(f"a tune that is not text: {name!r}")
                tune = tunes.find_label(name) if name else None   # 望江南・忆江南 counts for 忆江南
                if tune is not None:
                    counts[tune.name] += 1
    except (OSError, ValueError, EOFError, zlib.error) as error:   # zlib.error: a corrupt .gz
        raise BadCorpus(f"cannot read the ci corpus {path}: {error}") from None
    return counts


def tune_rows(query: str, corpus: Path | None) -> list[dict]:
    tunes = tune_table()
    path = corpus if corpus is not None else shipped_path(CI_CORPUS)
    counts = ci_counts(path, tunes) if path.exists() else None
    return [{"name": t.name, "other_names": list(t.names[1:]), "traditional": t.names_trad[0],
             "pinyin": max(t.pinyin, key=len, default=""), "sections": t.sections,
             "characters": [v.length for v in t.variants], "variants": len(t.variants),
             "ci_in_corpus": None if counts is None else counts[t.name]}
            for t in tunes.search(query)]


@click.command("tunes")
@click.argument("query", required=False, default="")
@click.option("--corpus", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=f"Corpus with a `tune` field to count ci in (default: the shipped {CI_CORPUS} when present).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one tune per line; json: one object per tune.")
def tunes_command(query: str, corpus: Path | None, fmt: str) -> None:
    """List the ci tunes (词牌) of the 词谱, or those whose names or pinyin contain QUERY."""
    if corpus is not None and not corpus.exists():
        raise BadCorpus(f"{corpus}: no such corpus file")
    rows = tune_rows(query, corpus)
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        raise BadInput(f"no tune matches {query!r}; `poetgen tunes` without a query lists them all",
                       field="query")
    for row in rows:
        others = f" ({'、'.join(row['other_names'])})" if row["other_names"] else ""
        chars = "/".join(map(str, row["characters"]))
        count = "" if row["ci_in_corpus"] is None else f"  {row['ci_in_corpus']} ci"
        click.echo(f"{row['name']}{others}  {row['pinyin']}  {row['sections']}  {chars} chars  "
                   f"{row['variants']} variant{'s' if row['variants'] > 1 else ''}{count}")
    if progress_shown():   # a count, not a result: --quiet drops it
        click.echo(f"{len(rows)} tune{'s' if len(rows) > 1 else ''}", err=True)
