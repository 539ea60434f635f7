"""Reads corpus files (plain text, JSON lines, chinese-poetry JSON, directories, .gz) into raw poems.

Files are streamed line by line, so memory stays bounded on large inputs. It does not clean,
deduplicate or keep poems: poetgen.importers does, with corpus.py's cleaning.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import io
import json
import os
import re
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

from poetgen.corpus import GENRES, MAX_CHARS, known_dynasty, normalize_text
from poetgen.errors import BadCorpus
from poetgen.layout import form_of

SUFFIXES = (".txt", ".json", ".jsonl", ".gz")
_SNIFF_BYTES = 8192
_HEAD_CHARS = 65536   # characters of a file's head read to tell JSON from text
# What reading a damaged file raises: a truncated .gz (EOFError), a corrupt one (zlib.error, BadGzipFile), I/O.
_READ_ERRORS = (OSError, EOFError, zlib.error)
# A line longer than this is not read whole: it is skipped and counted as "too long".
MAX_LINE_CHARS = 8 * MAX_CHARS


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


def expand_paths(paths: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The corpus files of `paths`: files as given, and a directory's .txt, .json, .jsonl and .gz files
    at any depth, except hidden ones, the `exclude` paths (a command's own output) and whatever lies in
    a poetgen run or bundle (its config.json, tokenizer.json and state are no corpus: a run whose --out
    was inside its corpus directory read them back on --resume)."""
    excluded = {Path(p).resolve() for p in exclude}
    files = []
    for path in map(Path, paths):
        if not path.exists():
            raise BadCorpus(f"{path}: no such file or directory")
        if path.is_dir():
            found = []
            for folder, subfolders, names in os.walk(path):   # not into linked folders: a link loop never ends
                # the corpus directory may itself be the run's --out: its own files are left out, the rest read
                own = _poetgen_output(Path(folder))
                subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")
                                       and not _poetgen_output(Path(folder) / d)
                                       and not (own and d in RUN_FOLDERS))
                found += [Path(folder) / name for name in names if name.lower().endswith(SUFFIXES)
                          and not (own and name in RUN_FILES)
                          and not name.startswith(".") and (Path(folder) / name).resolve() not in excluded
                          and (Path(folder) / name).is_file()]
            if not found:
                raise BadCorpus(f"{path}: directory holds no .txt, .json, .jsonl or .gz file")
            files.extend(sorted(found))
        else:
            files.append(path)
    return files


RUN_FILES = ("config.json", "tokenizer.json")   # what a run or bundle writes that looks like a corpus file
RUN_FOLDERS = ("resume", "reverse", "tensorboard")   # and the folders it writes inside itself


def _poetgen_output(folder: Path) -> bool:
    """Whether `folder` is a poetgen bundle or run, or a run is writing it: its model, resume state or
    lock is there (a user's corpus folder holds none of them)."""
    from poetgen.lock import LOCK_NAME

    return any((folder / name).exists() for name in ("model.keras", "resume/state.json", LOCK_NAME))


def _open_binary(path: Path):
    raw = open(path, "rb")
    if not raw.seekable():   # a pipe or a FIFO: the format is sniffed first, then the file read again
        raw.close()
        raise BadCorpus(f"{path}: not a regular file (a pipe?); a corpus is read more than once, so save it "
                        f"to a file first")
    head = raw.read(2)
    raw.seek(0)
    return gzip.open(raw) if head == b"\x1f\x8b" else raw


def _unreadable(path: Path, error: BaseException) -> BadCorpus:
    reason = str(error) or ("the compressed data ends early: a truncated .gz"
                            if isinstance(error, EOFError) else type(error).__name__)
    return BadCorpus(f"{path}: cannot read it ({reason})")


def _check_text(path: Path, encoding: str) -> None:
    try:
        with _open_binary(path) as raw:
            head = raw.read(_SNIFF_BYTES)
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not encoding.lower().startswith("utf-16"):
        raise BadCorpus(f"{path}: UTF-16 text (it starts with a byte-order mark); "
                        + _encoding_hint("utf-16"))
    if b"\x00" in head and not encoding.lower().startswith("utf-16"):
        raise BadCorpus(f"{path}: binary data, not a text corpus")


def _encoding_hint(encoding: str) -> str:
    """How to read a file in `encoding`: `corpus import` and `corpus stats` take --encoding; `train`,
    `evaluate` and the Python API read UTF-8, so a file in another encoding is imported (converted) first."""
    return (f"pass --encoding {encoding} to `corpus import` or `corpus stats`; train and evaluate read UTF-8: "
            f"convert the file first with `poetgen corpus import FILE --encoding {encoding} --out corpus.jsonl`")


def _without_bom(encoding: str) -> str:
    """The codec that reads `encoding` and drops a leading UTF-8 byte-order mark (Notepad writes one)."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _text_stream(path: Path, encoding: str, on_bytes: Callable[[int], None] | None) -> Iterator[str]:
    """Lines of a file, decoded strictly; a decoding error names the file and the fix."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    pending = ""
    at_start = True    # a byte-order mark is dropped here, so decoding errors keep their true byte offsets
    skipping = False   # inside a line already reported as too long
    with _open_binary(path) as raw:
        while True:
            try:
                chunk = raw.read(1 << 20)
            except _READ_ERRORS as error:
                raise _unreadable(path, error) from None
            try:
                pending += decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                raise BadCorpus(_decode_error(path, encoding, offset + error.start)) from None
            except UnicodeError as error:   # utf-16 or utf-32 without a byte-order mark
                raise BadCorpus(f"{path}: not {encoding} text ({error}); pass the right --encoding, "
                                f"e.g. utf-16-le") from None
            offset += len(chunk)
            if at_start and pending:
                pending, at_start = pending.removeprefix("\ufeff"), False
            if on_bytes:
                on_bytes(len(chunk))
            # line ends as \r\n or a lone \r (old Mac files) too; a \r last in a chunk waits for the next
            held = "\r" if chunk and pending.endswith("\r") else ""
            pending = pending[:len(pending) - len(held)].replace("\r\n", "\n").replace("\r", "\n") + held
            if skipping:
                end = pending.find("\n")
                pending, skipping = ("", True) if end < 0 else (pending[end + 1:], False)
            lines = pending.split("\n")
            pending = lines.pop()
            yield from lines
            if len(pending) > MAX_LINE_CHARS:
                yield pending[:MAX_LINE_CHARS + 1]   # the cleaner reports it as too long
                pending, skipping = "", True
            if not chunk:
                break
    if pending and not skipping:
        yield pending


def _decode_error(path: Path, encoding: str, where: int) -> str:
    hint = "if it is GBK, " + _encoding_hint("gbk") if codecs.lookup(encoding).name == "utf-8" \
        else "pass the right --encoding"
    return f"{path}: not valid {encoding} text at byte {where}; {hint}"


def _sniff_format(path: Path, encoding: str) -> str:
    """jsonl, json or text, from the name where it says so and from the file's head: a poem line may open
    with a bracket too ("[静夜思] 床前…", "[1] 春眠…"), so a guess of JSON must parse as far as the head
    goes. Only the head is read (memory stays bounded); a damaged JSON file still goes to the JSON readers,
    which report it."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    head, whole = _head(path, encoding)
    if head.startswith("{") and _json_lines(head, whole, first_only=name.endswith(".json")):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if head.startswith(("[", "{")) and _json_document(head, whole):
        return "json"
    return "text"


def _head(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's first _HEAD_CHARS characters, without the blanks (and byte-order mark) they start with,
    and whether that is the whole file; ("", True) when it cannot be read: its reader reports that."""
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, errors="ignore").read(_HEAD_CHARS + 1)
    except (UnicodeError, *_READ_ERRORS):
        return "", True
    whole = len(text) <= _HEAD_CHARS
    return text[:_HEAD_CHARS].lstrip("\ufeff \t\r\n"), whole


def _ran_out(error: json.JSONDecodeError, text: str, margin: int = 8) -> bool:
    """Whether JSON parsing stopped because the text ended (a head cut short), not at a wrong character:
    a token cut at the end fails up to a few characters back (\\ud83d\\ude0, fals, 1e+)."""
    return error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip()) - margin


def _json_lines(head: str, whole: bool, first_only: bool = False) -> bool:
    """JSON lines: one of the first lines is a JSON object (a damaged one aside), or the first record is
    longer than the head and parses as far as it goes."""
    lines = [line for line in head.split("\n") if line.strip()]   # not splitlines: U+2028 may be in a record
    complete = lines if whole else lines[:-1]   # the head's last line may be cut
    for line in complete[:1 if first_only else 5]:   # a .json file's later lines may be a list's items
        try:
            if isinstance(json.loads(line), dict):
                return True
        except (ValueError, RecursionError):   # RecursionError: nested deeper than the parser goes
            continue
    if complete or not lines:
        return False
    try:
        json.loads(lines[0])
    except json.JSONDecodeError as error:
        return _ran_out(error, lines[0])
    except RecursionError:
        return False
    return False


def _json_document(head: str, whole: bool) -> bool:
    """One JSON document: the head parses whole with nothing after it, or parsing runs out at the head's
    end, or it fails only after the first line (damaged: the JSON reader says where)."""
    try:
        _, end = json.JSONDecoder().raw_decode(head)
    except RecursionError:   # nested deeper than the parser goes: JSON, for the JSON reader to refuse
        return head.lstrip()[:1] in ("[", "{")
    except json.JSONDecodeError as error:
        if not whole and _ran_out(error, head):
            return True
        if "\n" not in head.rstrip() and _ran_out(error, head, margin=0):
            return True   # one line, cut short: a damaged minified document, for the JSON reader to report
        first_line = head.find("\n") if "\n" in head else len(head)
        return error.pos > first_line
    return not head[end:].strip()   # "[1] 春眠…" parses "[1]", then text follows


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
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            yield "not valid JSON"
            continue
        yield _record_to_raw(record, dynasty)


def _read_json(path: Path, encoding: str, found: bool = False) -> Iterator[RawPoem | str]:
    try:
        with _open_binary(path) as raw:
            records = json.load(io.TextIOWrapper(raw, encoding=_without_bom(encoding), errors="strict"))
    except UnicodeError:   # undecodable bytes, or utf-16 / utf-32 without a byte-order mark
        raise BadCorpus(f"{path}: not valid {encoding} text; pass the right --encoding") from None
    except ValueError as error:
        raise BadCorpus(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise BadCorpus(f"{path}: not valid JSON (nested deeper than a corpus ever is)") from None
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from None
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
    whole = len(block) > 1 and all(form_of(normalize_text(line.strip())) != "other" for line in block)
    return RawPoem(_joined(block), title or "", whole_lines=whole)


LINE_END_MARKS = "，。！？；：、,.!?;:"


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
    _check_text(path, encoding)
    kind = _sniff_format(path, encoding)
    if kind == "json":
        yield from _read_json(path, encoding, found)
    elif kind == "jsonl":
        yield from _read_jsonl(_text_stream(path, encoding, on_bytes), file_dynasty(path))
    else:
        blank = not per_line and _has_blank_separators(_text_stream(path, encoding, None))
        yield from _read_text(_text_stream(path, encoding, on_bytes), blank)


def check_encoding(encoding: str) -> None:
    """Refuse an encoding Python does not know, or one that is not a text encoding (base64, hex, zlib)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise BadCorpus(f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise BadCorpus(f"{encoding!r} is not a text encoding; give the corpus's character encoding (e.g. gbk)")
