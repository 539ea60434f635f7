"""Builds the shipped corpus from the `chinese-poetry` npm tarball: Tang shi, Song shi, and the ci.

Read straight from the .tgz, each source in file-number order, so every output is the same byte for byte.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import tarfile
from pathlib import Path
from typing import Iterator

from poetgen.corpus import Deduplicator
from poetgen.errors import BadCorpus
from poetgen.importers import ImportResult, iter_clean
from poetgen.readers import RawPoem

_DIST = r"package/dist/"


@dataclasses.dataclass(frozen=True)
class Source:
    """One set of files in the tarball, all of one dynasty and genre."""
    pattern: str    # regular expression on member names; group 1 orders the files (numbers first)
    dynasty: str    # corpus.DYNASTIES
    genre: str      # corpus.GENRES

    @property
    def shown(self) -> str:
        """The pattern as a reader writes file names: poet.tang.N.json, huajianji-N-juan.json."""
        return re.sub(r"\((?:\\d\+(?:\|x)?|[a-z]+)\)", lambda m: m.group(0)[1:-1] if m.group(0)[1].isalpha() else "N",
                      self.pattern).replace("\\.", ".")

    def order(self, name: str) -> tuple[int, int] | None:
        match = re.fullmatch(_DIST + self.pattern, name)
        if match is None:
            return None
        key = match.group(1)
        return (0, int(key)) if key.isdigit() else (1, 0)


@dataclasses.dataclass(frozen=True)
class Output:
    """One shipped corpus file and the sources it is built from, in this order."""
    name: str                      # file name under corpus/
    sources: tuple[Source, ...]


TANG = Output("tang.jsonl.gz", (Source(r"quantangshi/poet\.tang\.(\d+)\.json", "tang", "shi"),))
SONG = Output("song.jsonl.gz", (Source(r"quantangshi/poet\.song\.(\d+)\.json", "song", "shi"),))
CI = Output("ci.jsonl.gz", (Source(r"wudaishici/huajianji/huajianji-(\d+|x)-juan\.json", "wudai", "ci"),
                            Source(r"wudaishici/nantang/(poetrys)\.json", "wudai", "ci"),
                            Source(r"songci/ci\.song\.(\d+)\.json", "song", "ci")))
# Built in this order with one duplicate filter: a Song poem already among the Tang ones is dropped.
OUTPUTS = (TANG, SONG, CI)


def _read_members(path: Path, outputs: tuple[Output, ...]) -> dict[str, bytes]:
    """The files the outputs need, read in one pass over the compressed tarball."""
    sources = [source for output in outputs for source in output.sources]
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|gz") as archive:
            for info in archive:
                if info.isfile() and any(source.order(info.name) for source in sources):
                    found[info.name] = archive.extractfile(info).read()
    except (OSError, EOFError, tarfile.TarError) as error:
        reason = str(error)
        if reason == "empty file" and path.stat().st_size:   # tarfile's words for a gzip with no archive in it
            reason = "no archive in it: truncated or damaged"
        raise BadCorpus(f"{path}: not a readable npm tarball ({reason})") from None
    return found


def _records(source: Source, members: dict[str, bytes]) -> Iterator[RawPoem]:
    names = sorted((key, name) for name in members if (key := source.order(name)) is not None)
    for _, name in names:
        try:
            records = json.loads(members[name])
            for record in records:
                tune = str(record.get("rhythmic") or "") if source.genre == "ci" else ""
                # chinese-poetry's Song ci have no title; they are known by their tune
                poem = RawPoem("".join(record.get("paragraphs", [])), str(record.get("title") or "") or tune,
                               str(record.get("author") or ""), source.dynasty, source.genre, tune)   # null: none
                yield poem
        except (ValueError, TypeError, AttributeError) as error:   # not chinese-poetry's JSON: a list of poems
            raise BadCorpus(f"{name}: not a chinese-poetry file of poems ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:120]})") from None


def build(path: Path, outputs: tuple[Output, ...] = OUTPUTS) -> dict[str, ImportResult]:
    """Clean poems per output file name; a poem seen in an earlier output is a duplicate."""
    members = _read_members(path, outputs)
    seen = Deduplicator()
    results = {}
    for output in outputs:
        if not any(source.order(name) for source in output.sources for name in members):
            raise BadCorpus(f"{path}: no {' or '.join(_DIST + s.shown for s in output.sources)} inside")
        result = ImportResult([], collections.Counter())
        raws = (raw for source in output.sources for raw in _records(source, members))
        result.poems = list(iter_clean(raws, result.dropped, seen=seen))
        results[output.name] = result
    return results


def build_tang(path: Path) -> ImportResult:
    return build(path, (TANG,))[TANG.name]
