"""The character vocabulary: ids for padding, unknown and the poem boundary, then characters.

Ordering is deterministic (frequency, then code point), so the same corpus gives a byte-identical file.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from typing import Iterable

from poetgen.atomic import write_text
from poetgen.errors import BadModel

PAD, UNK, BOUNDARY = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", "<eop>")
FORMAT_VERSION = 1


class Tokenizer:
    def __init__(self, chars: Iterable[str], min_count: int = 1):
        self.chars = list(chars)
        self.min_count = min_count
        self.index = {ch: i for i, ch in enumerate(self.chars, len(SPECIALS))}
        if len(self.index) != len(self.chars):
            raise BadModel("tokenizer vocabulary has repeated characters")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Tokenizer":
        counts = collections.Counter()
        for text in texts:
            counts.update(text)
        kept = [ch for ch, n in counts.items() if n >= min_count]
        kept.sort(key=lambda ch: (-counts[ch], ord(ch)))
        return cls(kept, min_count)

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    @property
    def hash(self) -> str:
        return hashlib.sha256("\n".join(SPECIALS + tuple(self.chars)).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, UNK) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            out.append(self.chars[i - len(SPECIALS)] if i >= len(SPECIALS) else "")
        return "".join(out)

    def id_of(self, ch: str) -> int:
        return self.index.get(ch, UNK)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def to_json(self) -> str:
        record = {"format_version": FORMAT_VERSION, "specials": list(SPECIALS), "min_count": self.min_count,
                  "hash": self.hash, "chars": "".join(self.chars)}
        return json.dumps(record, ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, expected_hash: str | None = None) -> "Tokenizer":
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            tokenizer = cls(record["chars"], record.get("min_count", 1))
        except FileNotFoundError:
            raise BadModel(f"{path}: tokenizer file is missing") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise BadModel(f"{path}: tokenizer file is corrupt") from None
        if record.get("format_version", 0) > FORMAT_VERSION:
            raise BadModel(f"{path}: tokenizer format {record['format_version']} is newer than this poetgen")
        if record.get("hash") != tokenizer.hash:
            raise BadModel(f"{path}: tokenizer content does not match its hash (edited or corrupt)")
        if expected_hash is not None and tokenizer.hash != expected_hash:
            raise BadModel(f"{path}: tokenizer {tokenizer.hash} belongs to another model (expected {expected_hash})")
        return tokenizer
