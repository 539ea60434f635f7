"""Finds a corpus's files and decodes them: paths and directories, .gz, the text encoding, the format told
from the file's head (JSON lines, one JSON document, or text).

Files are streamed line by line, so memory stays bounded on large inputs; a damaged file, a wrong encoding
or a pipe is one BadCorpus naming the file and the fix. It does not parse records or poems (readers.py).
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

from poetgen.corpus import MAX_CHARS
from poetgen.errors import BadCorpus

SUFFIXES = (".txt", ".json", ".jsonl", ".gz")
_SNIFF_BYTES = 8192
HEAD_CHARS = 65536   # characters of a file's head read to tell JSON from text
# What reading a damaged file raises: a truncated .gz (EOFError), a corrupt one (zlib.error, BadGzipFile), I/O.
READ_ERRORS = (OSError, EOFError, zlib.error)
# A text block longer than this is not read whole: it is skipped and counted as "too long".
MAX_LINE_CHARS = 8 * MAX_CHARS
# A line longer than this is not held whole, wherever it falls in the file (a JSON-lines record with long
# notes is read up to it): cut, and counted as "too long".
MAX_RECORD_CHARS = 1 << 22


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


def open_binary(path: Path):
    raw = open(path, "rb")
    if not raw.seekable():   # a pipe or a FIFO: the format is sniffed first, then the file read again
        raw.close()
        raise BadCorpus(f"{path}: not a regular file (a pipe?); a corpus is read more than once, so save it "
                        f"to a file first")
    head = raw.read(2)
    raw.seek(0)
    return gzip.open(raw) if head == b"\x1f\x8b" else raw


def unreadable(path: Path, error: BaseException) -> BadCorpus:
    reason = str(error) or ("the compressed data ends early: a truncated .gz"
                            if isinstance(error, EOFError) else type(error).__name__)
    return BadCorpus(f"{path}: cannot read it ({reason})")


def check_text(path: Path, encoding: str) -> None:
    try:
        with open_binary(path) as raw:
            head = raw.read(_SNIFF_BYTES)
    except READ_ERRORS as error:
        raise unreadable(path, error) from None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not encoding.lower().startswith("utf-16"):
        raise BadCorpus(f"{path}: UTF-16 text (it starts with a byte-order mark); "
                        + _encoding_hint("utf-16"))
    if b"\x00" in head and not encoding.lower().startswith("utf-16"):
        guess = utf16_without_bom(head)
        if guess:   # Windows's "Unicode" saved without its byte-order mark: text, not binary
            raise BadCorpus(f"{path}: UTF-16 text without a byte-order mark, it seems; " + _encoding_hint(guess))
        raise BadCorpus(f"{path}: binary data, not a text corpus")


def utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" or "utf-16-be" when `head` reads as Chinese or ASCII text in that byte order, else None.
    Random binary data decodes as UTF-16 too, but only about a third of it into Han characters."""
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            # final=False: the head may end inside a character (half of a surrogate pair: 𠂉, CJK Ext. B)
            text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        texty = sum(1 for c in text if c in "\n\r\t" or " " <= c <= "~" or "\u3000" <= c <= "\u9fff"
                    or "\uff00" <= c <= "\uffef")
        if text and texty >= 0.95 * len(text):
            return encoding
    return None


def _encoding_hint(encoding: str) -> str:
    """How to read a file in `encoding`: `corpus import` and `corpus stats` take --encoding; `train`,
    `evaluate` and the Python API read UTF-8, so a file in another encoding is imported (converted) first."""
    return (f"pass --encoding {encoding} to `corpus import` or `corpus stats`; train and evaluate read UTF-8: "
            f"convert the file first with `poetgen corpus import FILE --encoding {encoding} --out corpus.jsonl`")


def without_bom(encoding: str) -> str:
    """The codec that reads `encoding` and drops a leading UTF-8 byte-order mark (Notepad writes one)."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def text_stream(path: Path, encoding: str, on_bytes: Callable[[int], None] | None) -> Iterator[str]:
    """Lines of a file, decoded strictly; a decoding error names the file and the fix."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    pending = ""
    at_start = True    # a byte-order mark is dropped here, so decoding errors keep their true byte offsets
    skipping = False   # inside a line already reported as too long
    with open_binary(path) as raw:
        while True:
            try:
                chunk = raw.read(1 << 20)
            except READ_ERRORS as error:
                raise unreadable(path, error) from None
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
            # cut alike whether a line ends in this chunk or runs past it: a record straddling a chunk's
            # end was cut and one inside a chunk kept
            yield from (line if len(line) <= MAX_RECORD_CHARS else line[:MAX_RECORD_CHARS + 1] for line in lines)
            if len(pending) > MAX_RECORD_CHARS:
                yield pending[:MAX_RECORD_CHARS + 1]   # the readers report it as too long
                pending, skipping = "", True
            if not chunk:
                break
    if pending and not skipping:
        yield pending


def _decode_error(path: Path, encoding: str, where: int) -> str:
    hint = "if it is GBK, " + _encoding_hint("gbk") if codecs.lookup(encoding).name == "utf-8" \
        else "pass the right --encoding"
    return f"{path}: not valid {encoding} text at byte {where}; {hint}"


def sniff_format(path: Path, encoding: str) -> str:
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
    """The file's first HEAD_CHARS characters, without the blanks (and byte-order mark) they start with,
    and whether that is the whole file; ("", True) when it cannot be read: its reader reports that."""
    try:
        with open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, errors="ignore").read(HEAD_CHARS + 1)
    except (UnicodeError, *READ_ERRORS):
        return "", True
    whole = len(text) <= HEAD_CHARS
    return text[:HEAD_CHARS].lstrip("\ufeff \t\r\n"), whole


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


def check_encoding(encoding: str) -> None:
    """Refuse an encoding Python does not know, or one that is not a text encoding (base64, hex, zlib)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise BadCorpus(f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise BadCorpus(f"{encoding!r} is not a text encoding; give the corpus's character encoding (e.g. gbk)")
