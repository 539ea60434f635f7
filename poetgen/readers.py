"""Reads one corpus file's records (plain text, JSON lines, chinese-poetry JSON) into raw poems.

A text file is one poem per line or blank-line separated blocks, with or without a bracketed title;
a JSON record gives its text, title, author, dynasty and tune. It does not find or decode the files
(corpus_files.py), nor clean, deduplicate or keep poems: poetgen.importers does, with corpus.py's cleaning.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from poetgen.corpus import GENRES, known_dynasty, normalize_text
from poetgen.corpus_files import (MAX_LINE_CHARS, MAX_RECORD_CHARS, READ_ERRORS, check_encoding, check_text,
                                  open_binary, sniff_format, text_stream, unreadable, without_bom)
from poetgen.errors import BadCorpus
from poetgen.layout import form_of


@dataclasses.dataclass(frozen=True)
class RawPoem:
    text: str
    title: str = ""
    author: str = ""
    dynasty: str = "tang"   # one of corpus.DYNASTIES
    genre: str = "shi"      # one of corpus.GENRES; a tune makes it ci
    tune: str = ""          # a ci's tune (chinese-poetry calls it `rhythmic`)
    whole_lines: bool = False   # a blank-line separated block whose every line is a whole poem of its own
    unknown_dynasty: bool = False   # the record named a dynasty none of DYNASTIES is (read as tang)


NO_TEXT = "no text or paragraphs field"
NOT_TEXT_TUNE = "a tune that is not text"


def file_dynasty(path: Path) -> str:
    """The dynasty of a file's records that name none: chinese-poetry's files leave it to their names
    (poet.song.1000.json, ci.song.0.json); any other file's are Tang (the corpus contract)."""
    match = _FILE_DYNASTY.match(path.name)
    return match.group(1).lower() if match else "tang"


_FILE_DYNASTY = re.compile(r"(?:poet|ci)\.(tang|song)\.", re.I)


def _record_to_raw(record, dynasty: str = "tang") -> RawPoem | str:
    """A record's raw poem, or the reason it is unusable; `dynasty` is the file's, for a record without
    its own."""
    if not isinstance(record, dict):
        return NO_TEXT
    tune = next((record[key] for key in ("tune", "rhythmic") if record.get(key) not in (None, "")), "")
    if not isinstance(tune, str):   # "tune": 7 became a tune named "7" ("tune": 0, a shi)
        return NOT_TEXT_TUNE
    text = record.get("text", record.get("paragraphs"))
    if isinstance(text, list):
        text = "".join(str(part) for part in text)
    if not isinstance(text, str):
        return NO_TEXT
    genre = str(record.get("genre") or "").lower()
    genre = "ci" if tune else genre if genre in GENRES else "shi"
    # chinese-poetry's Song ci have a tune and no title: the tune is the title they are known by
    title = _text_field(record.get("title")) or tune
    given = record.get("dynasty")
    named = known_dynasty(given)
    unknown = named is None and str(given or "").strip() != ""
    return RawPoem(text, title, _text_field(record.get("author")), named or ("tang" if unknown else dynasty), genre,
                   tune, unknown_dynasty=unknown)


def _text_field(value) -> str:
    """A title or author as text: a list (some files hold ["静夜思"]) joined, not written as "['静夜思']"."""
    if isinstance(value, list):
        return "".join(str(part) for part in value if part is not None)
    return str(value or "")


def _read_jsonl(lines: Iterator[str], dynasty: str = "tang") -> Iterator[RawPoem | str]:
    for line in lines:
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:   # text_stream cut it: not read whole
            yield "too long"
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            yield "not valid JSON"
            continue
        yield _record_to_raw(record, dynasty)


def _read_json(path: Path, encoding: str, found: bool = False) -> Iterator[RawPoem | str]:
    try:
        with open_binary(path) as raw:
            records = json.load(io.TextIOWrapper(raw, encoding=without_bom(encoding), errors="strict"))
    except UnicodeError:   # undecodable bytes, or utf-16 / utf-32 without a byte-order mark
        raise BadCorpus(f"{path}: not valid {encoding} text; pass the right --encoding") from None
    except ValueError as error:
        raise BadCorpus(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise BadCorpus(f"{path}: not valid JSON (nested deeper than a corpus ever is)") from None
    except READ_ERRORS as error:
        raise unreadable(path, error) from None
    if not isinstance(records, list):
        if found:
            yield "a .json file that is not a list of poems"
            return
        raise BadCorpus(f"{path}: expected a JSON list of poems with title, author and paragraphs")
    dynasty = file_dynasty(path)
    for record in records:
        yield _record_to_raw(record, dynasty)


# a line that opens with its title or number in brackets: [静夜思] 床前…, 【静夜思】床前…, 《江雪》, [1] 春眠…
_OPEN, _CLOSE = "[【《〔(（", "]】》〕)）"
_HEADED = re.compile(rf"\s*([{re.escape(_OPEN)}])([^{re.escape(_CLOSE)}\n]{{1,30}})([{re.escape(_CLOSE)}])\s*(.*)",
                     re.S)


def _title_head(line: str) -> tuple[str | None, str]:
    """(title, the rest) of a line that opens with a bracketed head, the title "" for a number (digits
    only); (None, line) for a line without one."""
    match = _HEADED.match(line)
    if not match or _OPEN.index(match.group(1)) != _CLOSE.index(match.group(3)):
        return None, line
    head = match.group(2).strip()
    return ("" if head.isdigit() else head), match.group(4)


def _headed(line: str) -> RawPoem:
    """A text line as a raw poem: a bracketed head before the poem is its title or number, not part of
    its text (which would be dropped for its brackets)."""
    title, rest = _title_head(line)
    return RawPoem(line) if title is None or not rest.strip() else RawPoem(rest, title)


def _read_text(lines: Iterable[str], blank_separated: bool) -> Iterator[RawPoem]:
    if not blank_separated:
        yield from (_headed(line) for line in lines if line.strip())
        return
    block: list[str] = []
    size, skipping = 0, False   # skipping: the rest of a block already reported as too long
    for line in lines:
        if not line.strip():
            if block:
                yield _block_poem(block)
            block, size, skipping = [], 0, False
        elif not skipping:
            block.append(line)
            size += len(line)
            if size > MAX_LINE_CHARS:   # no poem is that long: reported as such, and not held in memory
                yield RawPoem("".join(block)[:MAX_LINE_CHARS + 1])
                block, size, skipping = [], 0, True
    if block:
        yield _block_poem(block)


def _block_poem(block: list[str]) -> RawPoem:
    """A block as one poem, marked when each of its lines is a whole regular poem by itself (two 五绝 a
    line read as one 五律: the importer cannot tell them from a 五律 written four clauses a line, so it
    says so and --per-line reads them apart)."""
    title, rest = _title_head(block[0])   # [静夜思] alone on the block's first line, or before the poem's first line
    if title is not None and (rest.strip() or len(block) > 1):
        block = [rest, *block[1:]] if rest.strip() else block[1:]
    block, head, author = _signed(block, titled=bool(title))
    title = title or head
    whole = len(block) > 1 and all(form_of(normalize_text(line.strip())) != "other" for line in block)
    return RawPoem(_joined(block), title or "", author, whole_lines=whole)


def verses_of(lines: list[str]) -> str:
    """The verses of a poem typed with its title and author on lines of their own (江雪 / 柳宗元 above it,
    作者：柳宗元, ——柳宗元 under it), told apart as corpus import tells them in a block; the verse lines as
    typed, a line each, marks added to none (a ci typed without marks is laid on its variant's clauses,
    not on ， and 。 by turns); the lines as they are when none of them is a title or an author."""
    title, rest = _title_head(lines[0])   # as _block_poem reads a block
    block = lines
    if title is not None and (rest.strip() or len(lines) > 1):
        block = [rest, *lines[1:]] if rest.strip() else lines[1:]
    verses, head, author = _signed(block, titled=bool(title))
    return "\n".join(verses) if title or head or author else "\n".join(lines)


# the lines around a block's verses that name its author: ——李白 or （李白） under them, 作者：李白 above them
_SIGNATURE = re.compile(r"\s*(?:[—－]{1,2}|-{1,2})\s*([^\s，。？！；：,.?!;:—－-]{1,12})\s*$|\s*[（(]([^）)\n]{1,12})[）)]\s*$")
_SHORTEST_POEM = 20   # characters of a 五绝, the shortest regular poem
_AUTHOR_LABEL = re.compile(r"\s*作者\s*[:：]\s*(\S.{0,19}?)\s*$")


def _signed(block: list[str], titled: bool) -> tuple[list[str], str, str]:
    """(the verses, a title, the author) of a block whose verses come with an author line (——李白 at the
    foot, as `poetgen check` reads it; 作者：李白 at the head, the lines above it the title), or with one or
    two head lines without a mark above verses that make a regular form only without them (_verses_under;
    《静夜思》 then 李白: the title, then the author; one such line is the title, or the author under a
    bracketed title). `titled`: the block's bracketed head was its title."""
    title = author = ""
    foot = _SIGNATURE.match(block[-1]) if len(block) > 1 else None
    if foot:
        author, block = (foot.group(1) or foot.group(2)).strip(), block[:-1]
    label = next((i for i, line in enumerate(block[:3]) if _AUTHOR_LABEL.match(line)), None)
    if label is not None and label + 1 < len(block):
        title = "".join(line.strip() for line in block[:label])
        author, block = _AUTHOR_LABEL.match(block[label]).group(1), block[label + 1:]
    elif form_of(normalize_text(_joined(block))) == "other":
        for k in (1, 2):
            heads, verses = block[:k], block[k:]
            # verses on one line (the poem written whole) take only heads shorter than any poem, so an
            # unpunctuated poem above a punctuated one is not read as its title
            if (verses and (len(verses) > 1 or all(len(line.strip()) < _SHORTEST_POEM for line in heads))
                    and not any(line.strip().endswith(tuple(LINE_END_MARKS)) for line in heads)
                    and _verses_under(heads, verses, titled) and form_of(normalize_text(_joined(verses))) != "other"):
                heads = [line.strip() for line in heads]
                if k == 2:
                    return verses, heads[0], heads[1]
                return (verses, "", author or heads[0]) if titled else (verses, heads[0], author)
    return block, title, author


LINE_END_MARKS = "，。！？；：、,.!?;:"


NAME_CHARS = 4   # an author's name at most (99.4 % of the shipped corpus's: 李白, 欧阳修, 司马相如)


def _verses_under(heads: list[str], verses: list[str], titled: bool) -> bool:
    """Whether the lines under one or two head lines read as verses apart from them: each ends in a mark, or
    none holds one and all have one length, 5 or 7, that no head has (静夜思 above 床前明月光…), and a head
    read as the author (the second, or one under a bracketed title) is a name's length. A head as long as
    such verses could be one of them (千山鸟飞绝 above four of five), as could two lines opening a 杂言 poem
    whose second is longer than a name (杨白花 / 风吹度江水 above four of seven): neither is a title."""
    if all(line.strip().endswith(tuple(LINE_END_MARKS)) for line in verses):
        return True
    lengths = {_length(line) for line in verses}
    author = heads[-1] if len(heads) == 2 or titled else ""
    return (len(lengths) == 1 and lengths <= {5, 7} and not any(_length(head) in lengths for head in heads)
            and _length(author) <= NAME_CHARS and not any(mark in line for line in verses for mark in LINE_END_MARKS))


def _length(line: str) -> int:
    """A line's length as a poem's: no whitespace, no quote marks."""
    return len(normalize_text(line, simplify=False))


def _joined(lines: list[str]) -> str:
    """A blank-line separated block's lines as one poem: a line without a mark of its own ends in ， or
    。 by turns (the last in 。), as a couplet's lines do, so unpunctuated lines keep their form."""
    parts = [line.strip() for line in lines]
    return "".join(part if part.endswith(tuple(LINE_END_MARKS)) else part + ("。" if i % 2 or i == len(parts) - 1
                                                                              else "，")
                   for i, part in enumerate(parts))


def _has_blank_separators(lines: Iterable[str]) -> bool:
    """True when blank lines separate poems of several lines each (else: one poem per line). Only a blank
    line between two lines of text separates: blank lines before the first poem or after the last do not."""
    seen_text = blank_after_text = False
    for line in lines:
        if not line.strip():
            blank_after_text = seen_text
        elif blank_after_text:
            return True
        else:
            seen_text = True
    return False


def read_raw(path: Path, encoding: str = "utf-8", on_bytes: Callable[[int], None] | None = None,
             found: bool = False, per_line: bool = False) -> Iterator[RawPoem | str]:
    """Raw poems of one file; a string in the stream is the reason an entry was unusable. `found`: the
    file was found in a directory, where a .json that is not a list of poems (chinese-poetry's
    package.json) is passed over as one drop, not an error. `per_line`: a text file holds one poem per
    line, whatever blank lines it has."""
    check_encoding(encoding)
    check_text(path, encoding)
    kind = sniff_format(path, encoding)
    if kind == "json":
        yield from _read_json(path, encoding, found)
    elif kind == "jsonl":
        yield from _read_jsonl(text_stream(path, encoding, on_bytes), file_dynasty(path))
    else:
        blank = not per_line and _has_blank_separators(text_stream(path, encoding, None))
        yield from _read_text(text_stream(path, encoding, on_bytes), blank)
