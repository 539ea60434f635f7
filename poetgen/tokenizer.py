"""The character vocabulary: ids for padding, unknown and the poem boundary, then characters.

Ordering is deterministic (frequency, then code point), so the same corpus gives a byte-identical file.
A conditioned model's tokenizer also holds control tokens (poetgen.control), after the characters.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from typing import Iterable

from poetgen.atomic import read_small_text, write_text
from poetgen.errors import BadModel

PAD, UNK, BOUNDARY = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", "<eop>")
FORMAT_VERSION = 2   # 2: control tokens; a file without them is still written as version 1


def _fields(record) -> tuple:
    """(chars, min_count, controls) of a tokenizer file's record, of the types they must have; a
    ValueError for anything else (the caller names the file corrupt)."""
    chars, min_count, controls = record["chars"], record.get("min_count", 1), record.get("controls", [])
    if not (isinstance(chars, str) and isinstance(min_count, int) and not isinstance(min_count, bool)
            and isinstance(controls, list) and all(isinstance(token, str) for token in controls)):
        raise ValueError("wrong types")
    return chars, min_count, controls


class Tokenizer:
    def __init__(self, chars: Iterable[str], min_count: int = 1, controls: Iterable[str] = ()):
        self.chars = list(chars)
        self.min_count = min_count
        self.index = {ch: i for i, ch in enumerate(self.chars, len(SPECIALS))}
        if len(self.index) != len(self.chars):
            raise BadModel("tokenizer vocabulary has repeated characters")
        self.controls = list(controls)   # control tokens (e.g. "<tang>"), ids after the characters
        self.control_index = {token: i for i, token in enumerate(self.controls, len(SPECIALS) + len(self.chars))}
        if len(self.control_index) != len(self.controls):
            raise BadModel("tokenizer has repeated control tokens")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, controls: Iterable[str] = ()) -> "Tokenizer":
        counts = collections.Counter()
        for text in texts:
            counts.update(text)
        kept = [ch for ch, n in counts.items() if n >= min_count]
        kept.sort(key=lambda ch: (-counts[ch], ord(ch)))
        return cls(kept, min_count, controls)

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars) + len(self.controls)

    @property
    def char_limit(self) -> int:
        """One past the last character id: ids from here on are control tokens."""
        return len(SPECIALS) + len(self.chars)

    def control_id(self, token: str) -> int:
        return self.control_index[token]

    def has_control(self, token: str) -> bool:
        return token in self.control_index

    @property
    def hash(self) -> str:
        # Without control tokens the rule is the original one, so older tokenizer files keep their hash.
        items = SPECIALS + tuple(self.chars) + (("<controls>",) + tuple(self.controls) if self.controls else ())
        return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, UNK) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            out.append(self.chars[i - len(SPECIALS)] if len(SPECIALS) <= i < self.char_limit else "")
        return "".join(out)

    def id_of(self, ch: str) -> int:
        return self.index.get(ch, UNK)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def to_json(self) -> str:
        record = {"format_version": FORMAT_VERSION if self.controls else 1, "specials": list(SPECIALS), "min_count": self.min_count,
                  "hash": self.hash, "chars": "".join(self.chars)}
        if self.controls:   # absent for an unconditioned model: its file stays as it always was
            record["controls"] = self.controls
        return json.dumps(record, ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, expected_hash: str | None = None) -> "Tokenizer":
        try:
            text = read_small_text(path, "tokenizer file")   # BadModel naming the path if not a small file
        except FileNotFoundError:
            raise BadModel(f"{path}: tokenizer file is missing") from None
        except UnicodeError:   # cut inside a character
            raise BadModel(f"{path}: tokenizer file is corrupt") from None
        try:
            record = json.loads(text)
            tokenizer = cls(*_fields(record))
            content_hash = tokenizer.hash   # a lone surrogate ("\ud800") cannot be encoded: corrupt too
        except FileNotFoundError:
            raise BadModel(f"{path}: tokenizer file is missing") from None
        except (ValueError, KeyError, TypeError, UnicodeError):
            raise BadModel(f"{path}: tokenizer file is corrupt") from None
        except BadModel as error:   # repeated characters or controls
            raise BadModel(f"{path}: {error}") from None
        if not isinstance(record.get("format_version", 0), int) or isinstance(record.get("format_version"), bool):
            raise BadModel(f"{path}: tokenizer file is corrupt (format_version is not a number)")
        if record.get("format_version", 0) > FORMAT_VERSION:
            raise BadModel(f"{path}: tokenizer format {record['format_version']} is newer than this poetgen")
        if record.get("hash") != content_hash:
            raise BadModel(f"{path}: tokenizer content does not match its hash (edited or corrupt)")
        if expected_hash is not None and tokenizer.hash != expected_hash:
            raise BadModel(f"{path}: tokenizer {tokenizer.hash} belongs to another model (expected {expected_hash})")
        return tokenizer
