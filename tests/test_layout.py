"""The one layout spec: shapes, accepted marks, positions, prompt fitting and form tagging."""

from __future__ import annotations

import pytest

from poetgen.errors import BadInput
from poetgen.layout import FORM_SHAPES, FORMS, MARKS, Layout, banned_inside, form_of, layout_of


@pytest.mark.parametrize("form", FORMS)
def test_shi_layouts_have_the_form_shape(form):
    layout = layout_of(form)
    length, count = FORM_SHAPES[form]
    assert layout.line_lengths == (length,) * count and layout.length == (length + 1) * count
    assert layout.end_marks == tuple("，。" * (count // 2)) and layout.rhyme_lines == tuple(range(1, count, 2))
    assert [layout.line_column(p) for p in range(length + 2)] == [(0, c) for c in range(length)] + [(0, -1), (1, 0)]
    assert sum(layout.is_line_end(p) for p in range(layout.length)) == count


def test_aliases_and_free_verse():
    assert layout_of("五律") is layout_of("wulv")
    assert layout_of("free") is None and layout_of(None) is None and layout_of("sonnet") is None


def test_lines_may_differ_in_length_and_marks():
    tune = Layout("tune", (3, 3, 7), ("，", "。", "。"), ("，", "。", "。！"), (1, 2))
    assert tune.length == 16 and tune.starts == (0, 4, 8)
    assert tune.line_column(4) == (1, 0) and tune.line_column(7) == (1, -1) and tune.line_column(15) == (2, -1)
    assert tune.fits("一二三，四五六。七八九十一二三！") and not tune.fits("一二三。四五六。七八九十一二三。")
    assert tune.fit_prompt("一二三。四五六七") == "一二三，四五六。七"
    with pytest.raises(ValueError):
        Layout("bad", (3,), ("，",), ("。",))


def test_fit_prompt_normalises_line_end_marks():
    wujue = layout_of("wujue")
    assert wujue.fit_prompt("白日依山尽。") == "白日依山尽，"          # "。" is not accepted after line 1
    assert wujue.fit_prompt("白日依山尽；黄河入海流！") == "白日依山尽；黄河入海流！"   # accepted marks are kept
    assert wujue.fit_prompt("白日依山尽黄河入海流") == "白日依山尽，黄河入海流"
    with pytest.raises(BadInput, match="line 1 has 3 characters"):
        wujue.fit_prompt("白日依，")
    with pytest.raises(BadInput, match="longer than a wujue"):
        wujue.fit_prompt("白" * 21)
    assert wujue.fit_prompt("白日依山尽，黄河入海流，欲穷千里目。更上一层楼") == "白日依山尽，黄河入海流。欲穷千里目，更上一层楼"


def test_checker_marks_and_tagging():
    wujue = layout_of("wujue")
    assert wujue.fits("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    assert not wujue.fits("白日依山尽。黄河入海流。欲穷千里目，更上一层楼。")
    assert form_of("白日依山尽。黄河入海流。欲穷千里目，更上一层楼。") == "wujue"   # tagging reads lengths only
    assert form_of("白日依山尽，黄河入海流。") == "other"


def test_banned_inside_holds_specials_and_marks():
    index = {ch: i + 4 for i, ch in enumerate("，。白日？")}
    assert banned_inside(index, [0, 1, 2, 3]) == [0, 1, 2, 3, 4, 5, 8]
    assert set(MARKS) >= set("，。？")


@pytest.mark.parametrize("prompt, form", [("白日依山尽。", "wujue"), ("白日依山尽。黄河入海流，", "wulv"),
                                          ("春风不度玉门关！", "qijue")])
def test_a_punctuated_prompt_gives_a_regular_poem(generator, prompt, form):
    from poetgen.generate import PoemRequest
    from poetgen.sampling import SampleOptions

    result = generator.generate(PoemRequest(prompt=prompt, form=form, n=8, sample=SampleOptions(seed=1)))
    for poem in result["poems"]:
        assert poem["layout_ok"] and poem["rhyme_ok"], poem["text"]
        assert poem["text"].startswith(layout_of(form).fit_prompt(prompt))
