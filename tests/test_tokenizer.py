import collections

import pytest
from hypothesis import given, strategies as st

from poetgen.errors import BadModel
from poetgen.tokenizer import BOUNDARY, PAD, SPECIALS, UNK, Tokenizer

TEXTS = ["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。", "白云千载空悠悠。"]


def test_build_is_deterministic_and_byte_identical(tmp_path):
    a, b = Tokenizer.build(TEXTS), Tokenizer.build(list(reversed(TEXTS)))
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    counts = collections.Counter("".join(TEXTS))
    assert set(a.chars) == set(counts) and a.vocab_size == len(SPECIALS) + len(counts)
    order = [(-counts[ch], ord(ch)) for ch in a.chars]
    assert order == sorted(order)   # most frequent first, ties by code point


def test_special_ids_are_never_given_to_characters():
    tok = Tokenizer.build(TEXTS)
    assert sorted(tok.index.values()) == list(range(len(SPECIALS), tok.vocab_size))
    assert tok.decode([PAD, UNK, BOUNDARY] + tok.encode("白日")) == "白日"   # specials decode to nothing
    assert tok.encode("".join(TEXTS)).count(UNK) == 0 and tok.encode("龙") == [UNK]


def test_min_count_and_unknown():
    tok = Tokenizer.build(TEXTS, min_count=2)
    assert "白" in tok.index and "尽" not in tok.index
    assert tok.encode("尽")[0] == UNK
    assert tok.unknown("白尽尽龙") == ["尽", "龙"]


def test_hash_mismatch_is_refused(tmp_path):
    Tokenizer.build(TEXTS).save(tmp_path / "t.json")
    with pytest.raises(BadModel, match="another model"):
        Tokenizer.load(tmp_path / "t.json", expected_hash="0" * 16)
    (tmp_path / "t.json").write_text((tmp_path / "t.json").read_text(encoding="utf-8").replace("白", "黑"),
                                     encoding="utf-8")
    with pytest.raises(BadModel, match="hash"):
        Tokenizer.load(tmp_path / "t.json")


@given(st.lists(st.text(min_size=1), min_size=1))
def test_round_trip_in_vocabulary(texts):
    tok = Tokenizer.build(texts)
    for text in texts:
        ids = tok.encode(text)
        assert all(i > BOUNDARY for i in ids)
        assert tok.decode(ids) == text
