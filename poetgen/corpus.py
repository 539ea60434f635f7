"""The poem record, the text cleaner, form tags, the fixed held-out split and corpus files.

It knows one file format (JSON lines, optionally gzipped); reading users' raw formats is readers.py, finding
and decoding their files corpus_files.py.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Iterable

from poetgen.errors import BadCorpus
from poetgen.atomic import atomic_write
# The shapes of the forms and the form tagger live in the layout spec (import them from poetgen.layout).
from poetgen.layout import FORMS, MARKS, form_of

DYNASTIES = ("tang", "song", "wudai")
GENRES = ("shi", "ci")
CI_FORM = "ci"        # the form tag of every ci (its shape is its tune's)
# Names a user's file may give a dynasty; anything else is read as the default, tang.
DYNASTY_ALIASES = {"唐": "tang", "唐代": "tang", "初唐": "tang", "盛唐": "tang", "中唐": "tang", "晚唐": "tang",
                   "宋": "song", "宋代": "song", "北宋": "song", "南宋": "song", "五代": "wudai", "五代十国": "wudai",
                   "南唐": "wudai", "后蜀": "wudai", "前蜀": "wudai"}

PUNCTUATION = MARKS
# The CJK ideographs: extension A, the unified block, the compatibility ones, extensions B to G. One spec
# for the corpus, prompts and the SavedModel's graph (graph_tables), as are the two tables below.
HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
HAN = "".join(f"{chr(low)}-{chr(high)}" for low, high in HAN_RANGES)
HALF_WIDTH = {",": "，", ".": "。", "．": "。", "?": "？", "!": "！", ";": "；", ":": "：", "、": "，", "︰": "：",
              "､": "，", "｡": "。"}            # marks written full-width, as the corpus writes them
DECORATION = "《》「」『』“”‘’\"'〝〞"      # dropped from texts, prompts and acrostics
_HALF_TO_FULL = str.maketrans(HALF_WIDTH)
_DECORATION = re.compile(f"[{re.escape(DECORATION)}]")
_SPACE = re.compile(r"\s+")
_PLACEHOLDER = re.compile("[□○●■◎]")
_NOTE = re.compile(r"[()（）\[\]【】〖〗{}〈〉<>⿰-⿻／/|=＝]")
_LATIN_DIGIT = re.compile("[A-Za-z0-9０-９Ａ-Ｚａ-ｚ]")
_ALLOWED = re.compile(f"[{HAN}{PUNCTUATION}]*")
_HAN_CHAR = re.compile(f"[{HAN}]")

MIN_CHARS = 5        # fewer Han characters than this is a fragment, not a poem
MAX_CHARS = 2000     # longer "poems" are whole books pasted as one line
HELD_OUT_FRACTION = 0.02   # share of poems held out, chosen by a hash of the text


class EmptyCorpus(BadCorpus):
    """Nothing survived cleaning."""


@dataclasses.dataclass(frozen=True)
class Poem:
    text: str          # cleaned, simplified, full-width punctuation, no whitespace
    title: str = ""
    author: str = ""
    form: str = "other"   # one of FORMS, "other", or CI_FORM for a ci
    dynasty: str = "tang"  # one of DYNASTIES; files without the field are Tang
    genre: str = "shi"     # one of GENRES
    tune: str = ""         # a ci's tune name (词牌) as the source spells it; "" for shi

    @property
    def tagged(self) -> bool:
        """True when the poem says more than an untagged (Tang shi) record does."""
        return (self.dynasty, self.genre, self.tune) != ("tang", "shi", "")


@functools.lru_cache(maxsize=2)
def _converter(config: str):
    import opencc  # a C extension: cheap, but only needed when text is converted

    return opencc.OpenCC(config)


def is_han(ch: str) -> bool:
    """True for one Han character (what a poem's lines are made of)."""
    return _HAN_CHAR.fullmatch(ch) is not None


def to_simplified(text: str) -> str:
    return _converter("t2s").convert(text)


@functools.lru_cache(maxsize=1)
def traditional_forms() -> dict[str, tuple[str, ...]]:
    """Each character -> the other Han characters to_simplified turns into it, one by one (溪: 谿; 发: 發 髮):
    every Han character converted once (a few hundredths of a second), for an export's tune names."""
    chars = [chr(code) for low, high in HAN_RANGES for code in range(low, high + 1)]
    forms: dict[str, list[str]] = {}
    for ch, plain in zip(chars, to_simplified("\n".join(chars)).split("\n")):   # a line per character: no phrases
        if plain != ch and len(plain) == 1:
            forms.setdefault(plain, []).append(ch)
    return {plain: tuple(others) for plain, others in forms.items()}


def chinese_forms(chars: list[str]) -> list[str]:
    """Each character as simplified Chinese writes it: a Japanese form as its Chinese one (髪 → 发, 隠 →
    隐, 歳 → 岁: OpenCC jp2t, then t2s), any other as t2s leaves it; converted one by one, no phrases."""
    if not chars:
        return []
    converted = to_simplified(_converter("jp2t").convert("\n".join(chars))).split("\n")
    if len(converted) != len(chars):
        converted = [to_simplified(_converter("jp2t").convert(ch)) for ch in chars]
    return [VARIANT_FORMS.get(ch, plain if len(plain) == 1 else ch) for ch, plain in zip(chars, converted)]


# variant spellings OpenCC does not convert (checked by hand): 徧 遍, 鴈 雁, 廻 回, 塲 场, 醆 盏, 碁 棋, 慙 惭,
# 賸 剩, 秪 只, 盌 碗, 煖 暖
VARIANT_FORMS = {"徧": "遍", "鴈": "雁", "廻": "回", "塲": "场", "醆": "盏", "碁": "棋", "慙": "惭", "賸": "剩",
                 "秪": "只", "盌": "碗", "煖": "暖"}


TRADITIONAL_SHARE = 0.05   # a vocabulary with more of its Han characters in traditional form is traditional


def traditional_script(chars) -> bool:
    """True when a vocabulary (its characters) is in traditional characters: over TRADITIONAL_SHARE of its
    Han characters change when written simplified (the shipped one: 7 of 9,186, 乾 於 徵…)."""
    han = [ch for ch in chars if len(ch) == 1 and is_han(ch)]
    if not han:
        return False
    converted = to_simplified("\n".join(han)).split("\n")
    return sum(a != b for a, b in zip(han, converted)) > TRADITIONAL_SHARE * len(han)


def everyday(ch: str) -> bool:
    """True for one of GB 2312's 6,763 characters, the everyday set of simplified Chinese."""
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


# OpenCC's s2t writes 征 as 徵 and 斗 as 鬥 outside the phrases it knows (征人 → 徵人, 斗牛 → 鬥牛), readings
# a poem almost never means: 征 (a journey, a campaign) and 斗 (the Dipper, a measure) stay, but in these.
_KEPT_AS_OPENCC = {
    "征": ("征召", "角征", "征羽", "征调", "征君", "征士", "征辟", "征诏", "征求", "征兆", "象征", "征聘", "征引",
          "特征", "征验", "征信", "征用", "征收", "征税", "征敛", "征发", "征集", "征拜", "征书"),
    "斗": ("斗争", "争斗", "战斗", "斗鸡", "斗草", "斗殴", "斗艳", "斗茶", "斗巧", "斗雪", "斗妍", "相斗", "斗百",
          "斗智", "角斗", "奋斗", "斗胜", "斗力", "斗武", "斗蟋", "斗气", "斗嘴", "决斗", "搏斗", "格斗", "打斗",
          "斗牌", "斗富", "斗奇", "斗靡", "斗丽", "斗新", "斗春", "斗芳", "斗香")}


def to_traditional(text: str) -> str:
    """Simplified to traditional (OpenCC s2t), keeping 征 and 斗 as poems mean them, and a doubled
    character doubled (郁郁 came out 鬱郁)."""
    converted = _converter("s2t").convert(text)
    if len(converted) != len(text):   # not one character for one: nothing to line up
        return converted
    out = list(converted)
    for i, ch in enumerate(text):
        if ch in _KEPT_AS_OPENCC and out[i] != ch \
                and not any(phrase in text[max(0, i - 1):i + 2] for phrase in _KEPT_AS_OPENCC[ch]):
            out[i] = ch
        if i and ch == text[i - 1]:
            out[i] = out[i - 1]
    return "".join(out)


def normalize_text(text: str, simplify: bool = True) -> str:
    """Traditional to simplified, full-width punctuation, no whitespace or quote marks."""
    if simplify:
        text = to_simplified(text)
    text = _SPACE.sub("", text.translate(_HALF_TO_FULL))
    return _DECORATION.sub("", text)


def drop_reason(text: str) -> str | None:
    """Why a normalised text is not a usable poem, or None when it is."""
    if _PLACEHOLDER.search(text):
        return "missing characters (□)"
    if _NOTE.search(text):
        return "brackets or notes"
    if _LATIN_DIGIT.search(text):
        return "Latin letters or digits"
    if not _ALLOWED.fullmatch(text):
        return "characters other than Han and punctuation"
    han = len(_HAN_CHAR.findall(text))
    if han < MIN_CHARS:
        return "too short" if han else "no Han characters"
    if han > MAX_CHARS:
        return "too long"
    return None


def clean_text(text: str, simplify: bool = True) -> tuple[str | None, str | None]:
    """Return (clean text, None) for a usable poem, (None, reason) otherwise."""
    text = normalize_text(text, simplify)
    reason = drop_reason(text)
    if reason:
        return None, reason
    if text[-1] not in PUNCTUATION:
        text += "。"
    return text, None


def make_poem(text: str, title: str = "", author: str = "", simplify: bool = True, dynasty: str = "tang",
              genre: str = "shi", tune: str = "") -> tuple[Poem | None, str | None]:
    clean, reason = clean_text(text, simplify)
    if clean is None:
        return None, reason
    convert = to_simplified if simplify else (lambda s: s)
    tune = _SPACE.sub("", tune)   # as the source spells it: OpenCC would turn 徵招 into 征招
    genre = "ci" if tune else genre
    form = CI_FORM if genre == "ci" else form_of(clean)
    return Poem(clean, _SPACE.sub("", convert(title)), _SPACE.sub("", convert(author)), form,
                dynasty, genre, tune), None


def known_dynasty(value) -> str | None:
    """A record's dynasty field as one of DYNASTIES (its Chinese names too); None when it is missing or
    names none of them."""
    value = str(value or "").strip()
    value = DYNASTY_ALIASES.get(value, value.lower())
    return value if value in DYNASTIES else None


def is_held_out(text: str, fraction: float = HELD_OUT_FRACTION) -> bool:
    """The fixed held-out split: the same poem is held out in every run, on every machine."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10000 < round(fraction * 10000)


def split(poems: Iterable[Poem]) -> tuple[list[Poem], list[Poem]]:
    train, held_out = [], []
    for poem in poems:
        (held_out if is_held_out(poem.text) else train).append(poem)
    return train, held_out


class Deduplicator:
    """Remembers 8-byte digests of texts seen, so memory stays small on large inputs."""

    def __init__(self):
        self._seen: set[bytes] = set()

    def is_new(self, text: str) -> bool:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True


def poem_to_json(poem: Poem) -> str:
    """An untagged Tang shi keeps the four-key record of the first corpus (so tang.jsonl.gz stays as it
    is); any other poem carries all seven keys."""
    if poem.tagged:
        record = {"title": poem.title, "author": poem.author, "dynasty": poem.dynasty, "genre": poem.genre,
                  "form": poem.form, "tune": poem.tune, "text": poem.text}
    else:
        record = {"title": poem.title, "author": poem.author, "form": poem.form, "text": poem.text}
    return json.dumps(record, ensure_ascii=False)


def write_corpus(poems: Iterable[Poem], path: str | os.PathLike) -> int:
    """Write JSON lines (gzipped when the name ends in .gz), atomically and byte-reproducibly."""
    path = Path(path)
    count = 0
    with atomic_write(path) as raw:
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) \
            if path.suffix == ".gz" else None
        out = io.TextIOWrapper(stream or raw, encoding="utf-8", newline="\n")
        for poem in poems:
            out.write(poem_to_json(poem) + "\n")
            count += 1
        out.flush()
        out.detach()
        if stream:
            stream.close()
        if count == 0:   # raised inside the block: the old file, if any, stays as it was
            raise EmptyCorpus(f"{path}: no usable poem to write")
    return count


def form_counts(poems: Iterable[Poem]) -> dict[str, int]:
    counts = collections.Counter(poem.form for poem in poems)
    return {form: counts.get(form, 0) for form in FORMS + ("other",)}


SHIPPED_FILES = ("corpus/tang.jsonl.gz", "corpus/song.jsonl.gz", "corpus/ci.jsonl.gz")
SHIPPED_LABEL = "shipped:"   # how a training run records the shipped corpus (followed by its files)


def shipped_corpus_path() -> Path:
    """The shipped Tang corpus: the held-out set that every perplexity so far was measured on."""
    from poetgen.resources import shipped_path

    return shipped_path(SHIPPED_FILES[0])


def shipped_corpus_paths(files: Iterable[str] = SHIPPED_FILES) -> list[Path]:
    """The shipped corpus files (default: all of them, Tang, Song shi and ci)."""
    from poetgen.resources import shipped_path

    return [shipped_path(name) for name in files]


def shipped_label(files: Iterable[str] = SHIPPED_FILES) -> str:
    return SHIPPED_LABEL + ",".join(files)


def shipped_files_of(label: str) -> tuple[str, ...] | None:
    """The shipped files a recorded corpus label names; None when it names a user's file."""
    if not label.startswith(SHIPPED_LABEL):
        return None
    return tuple(name for name in label[len(SHIPPED_LABEL):].split(",") if name) or SHIPPED_FILES[:1]


def corpus_hash(poems: Iterable[Poem]) -> str:
    digest = hashlib.sha256()
    for poem in poems:
        digest.update(poem.text.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]
