"""Imports corpora into clean, deduplicated poems (load_corpus): poetgen.corpus_files finds and decodes
the files, poetgen.readers reads their records, corpus.py cleans each poem. It does not know the formats.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from poetgen.corpus import Deduplicator, Poem, make_poem, shipped_corpus_paths, to_simplified
from poetgen.errors import BadCorpus
from poetgen.corpus_files import check_encoding, expand_paths
from poetgen.layout import MARKS
from poetgen.readers import RawPoem, read_raw


@dataclasses.dataclass
class ImportResult:
    poems: list[Poem]               # kept, in input order, deduplicated
    dropped: collections.Counter    # reason -> count
    files: int = 0                  # files read



def stream_poems(paths: Iterable[str | os.PathLike], dropped: collections.Counter, encoding: str = "utf-8",
                 simplify: bool = True, on_bytes: Callable[[int], None] | None = None,
                 exclude: Iterable[str | os.PathLike] = (), per_line: bool = False,
                 notes: collections.Counter | None = None) -> Iterator[Poem]:
    """Clean poems of all files (but `exclude`, see expand_paths), one at a time; drop reasons are
    counted into `dropped`, and what the reader should know into `notes` (see iter_clean)."""
    files = expand_paths(paths, exclude)
    given = {Path(p) for p in paths if not Path(p).is_dir()}
    check_encoding(encoding)
    raws = (raw for path in files for raw in read_raw(path, encoding, on_bytes, path not in given, per_line))
    return iter_clean(raws, dropped, simplify, notes=notes)


def import_poems(paths: Iterable[str | os.PathLike], encoding: str = "utf-8", simplify: bool = True,
                 on_bytes: Callable[[int], None] | None = None, per_line: bool = False) -> ImportResult:
    dropped = collections.Counter()
    files = len(expand_paths(paths))
    return ImportResult(list(stream_poems(paths, dropped, encoding, simplify, on_bytes, per_line=per_line)),
                        dropped, files)


WHOLE_LINES = "blank-line separated blocks whose every line is a whole poem by itself"
ONE_CLAUSE = "poems of one five- or seven-character clause"   # a poem a verse per line, read one poem per line
UNKNOWN_DYNASTY = "poems whose dynasty is none of tang, song, wudai (nor 唐, 宋, 五代 and the like)"


@functools.lru_cache(maxsize=4096)   # a corpus repeats its ~1,400 tune names thousands of times
def simplified_tune(tune: str) -> str:
    """A tune name in simplified characters, as the 词谱 writes it: 蝶戀花 → 蝶恋花, 浣溪紗 → 浣溪沙. A
    traditional name was kept as written, so a conditioned model trained a <tune:蝶戀花> token that
    `--tune 蝶恋花` never fed. Not OpenCC's phrase conversion, which turns 徵招 into 征招: a name the tune
    table does not know stays as written."""
    plain = to_simplified(tune)
    if plain == tune:
        return tune
    from poetgen.tunes import tune_table

    found = tune_table().find(tune)
    if found is None:
        return tune
    return plain if plain in found.names else found.name


def iter_clean(raws: Iterable[RawPoem | str], dropped: collections.Counter, simplify: bool = True,
               seen: Deduplicator | None = None, notes: collections.Counter | None = None) -> Iterator[Poem]:
    """Clean and deduplicate raw poems (against `seen` too, when given); a string in the stream is
    counted as a drop reason; a block of whole-poem lines is counted into `notes` as WHOLE_LINES."""
    seen = seen if seen is not None else Deduplicator()
    for raw in raws:
        if isinstance(raw, str):
            dropped[raw] += 1
            continue
        if raw.whole_lines and notes is not None:
            notes[WHOLE_LINES] += 1
        tune = simplified_tune(raw.tune) if simplify and raw.tune else raw.tune
        poem, reason = make_poem(raw.text, raw.title, raw.author, simplify, raw.dynasty, raw.genre, tune)
        if poem is None:
            dropped[reason] += 1
        elif not seen.is_new(poem.text):
            dropped["duplicate"] += 1
        else:
            if notes is not None and len(poem.text) in (6, 8) and poem.text[-1] in MARKS \
                    and not any(mark in poem.text[:-1] for mark in MARKS):
                notes[ONE_CLAUSE] += 1
            if notes is not None and raw.unknown_dynasty:   # counted among the poems kept only
                notes[UNKNOWN_DYNASTY] += 1
            yield poem


def load_corpus(path: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
                **import_options) -> list[Poem]:
    """Poems of corpus files (one path or several) or any raw format the importers read; None means the
    whole shipped corpus (Tang, Song shi and ci). Duplicates across files are dropped, keeping the first."""
    if path is None:
        paths = shipped_corpus_paths()
    elif isinstance(path, (str, os.PathLike)):
        paths = [Path(path)]
    else:
        paths = [Path(p) for p in path]
    result = import_poems(paths, **import_options)
    if not result.poems:
        raise BadCorpus(f"{', '.join(map(str, paths))}: no usable poem in it")
    return result.poems
