import contextlib
import gzip
import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from poetgen.cli import cli
from poetgen.corpus import (Poem, clean_text, is_held_out, normalize_text, shipped_corpus_path, split,
                            write_corpus)
from poetgen.errors import BadCorpus
from poetgen.importers import import_poems, load_corpus
from poetgen.layout import form_of
from poetgen.readers import read_raw


def test_clean_converts_and_normalises():
    text, reason = clean_text("床前明月光, 疑是地上霜. 舉頭望明月， 低頭思故鄉。")
    assert reason is None
    assert text == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert form_of(text) == "wujue"


@pytest.mark.parametrize("raw, reason", [
    ("床前□月光，疑是地上霜。", "missing characters (□)"),
    ("床前明月光（一作看），疑是地上霜。", "brackets or notes"),
    ("床前明月光abc，疑是地上霜。", "Latin letters or digits"),
    ("，。！", "no Han characters"),
    ("明月。", "too short"),
    ("床前明月光😀，疑是地上霜。", "characters other than Han and punctuation"),
])
def test_drop_reasons(raw, reason):
    assert clean_text(raw) == (None, reason)


@pytest.mark.parametrize("text, form", [
    ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "wujue"),
    ("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", "qijue"),
    ("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。" * 2, "wulv"),
    ("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。" * 2, "qilv"),
    ("白日依山尽，黄河入海流。欲穷千里目。", "other"),
])
def test_form_tags(text, form):
    assert form_of(text) == form


def test_shipped_corpus_counts_and_split():
    poems = load_corpus(shipped_corpus_path())
    assert len(poems) >= 50_000
    assert sum(p.form != "other" for p in poems) >= 35_000
    train, held = split(poems)
    assert 0.015 < len(held) / len(poems) < 0.025
    assert all(is_held_out(p.text) for p in held[:50])


def test_write_corpus_is_byte_reproducible(tmp_path):
    poems = [Poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "登鹳雀楼", "王之涣", "wujue")]
    write_corpus(poems, tmp_path / "a.jsonl.gz")
    write_corpus(poems, tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert json.loads(gzip.open(tmp_path / "a.jsonl.gz", "rt").readline())["title"] == "登鹳雀楼"


POEM_A = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
POEM_B = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"


def test_importers_read_every_format(tmp_path):
    (tmp_path / "lines.txt").write_text(f"{POEM_A}\n{POEM_B}\n", encoding="utf-8")
    (tmp_path / "blocks.txt").write_text("床前明月光，\n疑是地上霜。\n\n春眠不觉晓，\n处处闻啼鸟。\n", encoding="utf-8")
    (tmp_path / "records.jsonl").write_text(json.dumps({"text": "红豆生南国，春来发几枝。"}) + "\n"
                                            + json.dumps({"paragraphs": ["千山鸟飞绝，", "万径人踪灭。"]}) + "\n",
                                            encoding="utf-8")
    (tmp_path / "poet.tang.json").write_text(json.dumps([{"title": "江雪", "author": "柳宗元",
                                                          "paragraphs": ["孤舟蓑笠翁，", "獨釣寒江雪。"]}],
                                                        ensure_ascii=False), encoding="utf-8")
    with gzip.open(tmp_path / "more.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "独在异乡为异客，每逢佳节倍思亲。"}, ensure_ascii=False) + "\n")
    result = import_poems([tmp_path])
    texts = {p.text for p in result.poems}
    assert {POEM_A, POEM_B, "床前明月光，疑是地上霜。", "春眠不觉晓，处处闻啼鸟。", "红豆生南国，春来发几枝。",
            "千山鸟飞绝，万径人踪灭。", "孤舟蓑笠翁，独钓寒江雪。", "独在异乡为异客，每逢佳节倍思亲。"} == texts
    assert result.files == 5


def test_a_text_file_opening_with_a_bracket_is_text_and_json_is_still_json(tmp_path):
    """The format was sniffed from the first character, so a plain-text corpus whose first line opened
    with "[" or "{" was read as JSON and refused as corrupt."""
    (tmp_path / "a.txt").write_text(f"[静夜思] 床前明月光，疑是地上霜。举头望明月，低头思故乡。\n{POEM_A}\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(f"{{春晓}}\n{POEM_B}\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text(' \n[ {"text": "红豆生南国，春来发几枝。"} ]', encoding="utf-8")
    (tmp_path / "d.txt").write_text(json.dumps({"text": "千山鸟飞绝，万径人踪灭。"}) + "\n", encoding="utf-8")
    (tmp_path / "e.txt").write_text(f"[1] 床前明月光，疑是地上霜。举头望明月，低头思故乡。\n{POEM_A}\n", encoding="utf-8")
    (tmp_path / "f.txt").write_text(f'{{"静夜思"}} 床前明月光，疑是地上霜。举头望明月，低头思故乡。\n{POEM_B}\n',
                                    encoding="utf-8")
    (tmp_path / "g").write_text('\ufeff\n[\n {"text": "春眠不觉晓，处处闻啼鸟。"}\n]\n', encoding="utf-8")
    (tmp_path / "h.json").write_text(json.dumps({"text": "独在异乡为异客，每逢佳节倍思亲。"}, ensure_ascii=False)
                                     + "\n", encoding="utf-8")
    quiet_night = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"   # its bracketed head is its title or number
    assert [(p.title, p.text) for p in import_poems([tmp_path / "a.txt"]).poems] == [("静夜思", quiet_night),
                                                                                  ("", POEM_A)]
    assert [p.text for p in import_poems([tmp_path / "b.txt"]).poems] == [POEM_B]
    assert [p.text for p in import_poems([tmp_path / "c.txt"]).poems] == ["红豆生南国，春来发几枝。"]
    assert [p.text for p in import_poems([tmp_path / "d.txt"]).poems] == ["千山鸟飞绝，万径人踪灭。"]
    assert [p.text for p in import_poems([tmp_path / "e.txt"]).poems] == [quiet_night, POEM_A]   # "[1]" parses, the file not
    assert [p.text for p in import_poems([tmp_path / "f.txt"]).poems] == [POEM_B]
    assert [p.text for p in import_poems([tmp_path / "g"]).poems] == ["春眠不觉晓，处处闻啼鸟。"]
    assert [p.text for p in import_poems([tmp_path / "h.json"]).poems] == ["独在异乡为异客，每逢佳节倍思亲。"]


def test_a_json_lines_record_is_read_alike_wherever_it_falls(tmp_path):
    """A record with long notes (20,000 characters) was kept first in a file and dropped as "not valid JSON"
    where it straddled a 1 MiB read: the reader cut a line running past a chunk, not one inside it."""
    short = [{"text": POEM_B, "notes": f"{i}"} for i in range(20_000)]
    long = {"text": POEM_A, "notes": "注" * 20_000}
    first = [long, *short]
    ends = list(itertools.accumulate(len((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8")) for r in short))
    at = next(i for i, end in enumerate(ends) if end > (1 << 20) - 1000)   # starts just before the first read's end
    straddling = [*short[:at], long, *short[at:]]
    for name, records in (("first.jsonl", first), ("straddling.jsonl", straddling)):
        (tmp_path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                     encoding="utf-8")
        result = import_poems([tmp_path / name])
        assert not result.dropped.get("not valid JSON") and POEM_A in [p.text for p in result.poems], name
    huge = json.dumps({"text": POEM_A, "notes": "n" * (1 << 22)}) + "\n" + json.dumps({"text": POEM_B}) + "\n"
    (tmp_path / "huge.jsonl").write_text(huge, encoding="utf-8")   # longer than a line is held: too long
    result = import_poems([tmp_path / "huge.jsonl"])
    assert [p.text for p in result.poems] == [POEM_B] and result.dropped["too long"] == 1, result.dropped


def test_json_is_still_json_when_long_damaged_or_misnamed(tmp_path):
    """The sniffing reads a bounded head: a first record longer than it is still JSON lines, and a damaged
    JSON file still reaches the JSON reader's message instead of being imported as text fragments."""
    records = [{"text": POEM_A, "notes": "注" * 70_000}, {"text": POEM_B}]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    for name in ("long.json", "long.txt"):
        (tmp_path / name).write_text(lines, encoding="utf-8")
        assert [p.text for p in import_poems([tmp_path / name]).poems] == [POEM_A, POEM_B]
    damaged = "{broken\n" + lines.split("\n", 1)[1]   # JSON lines whose first line is damaged
    (tmp_path / "damaged.txt").write_text(damaged, encoding="utf-8")
    result = import_poems([tmp_path / "damaged.txt"])
    assert [p.text for p in result.poems] == [POEM_B] and result.dropped["not valid JSON"] == 1
    pretty = json.dumps([{"paragraphs": ["床前明月光，", "疑是地上霜。"]}, {"paragraphs": ["春眠不觉晓，", "处处闻啼鸟。"]}],
                        ensure_ascii=False, indent=1)
    (tmp_path / "cut.txt").write_text(pretty[:-20], encoding="utf-8")
    with gzip.open(tmp_path / "cut.gz", "wt", encoding="utf-8") as handle:
        handle.write(pretty[:-20])
    (tmp_path / "cut-minified.txt").write_text(json.dumps(json.loads(pretty), ensure_ascii=False)[:-5], encoding="utf-8")
    for name in ("cut.txt", "cut.gz", "cut-minified.txt"):
        with pytest.raises(BadCorpus, match="not valid JSON"):
            import_poems([tmp_path / name])


def test_json_sniffing_survives_escapes_cut_by_the_head_line_separators_and_wrapped_lists(tmp_path):
    """Three more ways the head check misread JSON as text (found by a reviewer): a head cut inside a
    \\uXXXX escape or a literal fails a few characters before its end; U+2028 in a record split a line for
    str.splitlines; and a .json wrapper object's last list item looked like a line of JSON lines."""
    from poetgen.corpus_files import HEAD_CHARS, sniff_format

    record = {"paragraphs": ["床前明月光，", "疑是地上霜。"], "title": "静夜思", "author": "李白", "id": 7, "ok": True}
    minified = json.dumps([record] * 3000)   # ensure_ascii: every character an escape, 200 K characters
    assert len(minified) > 2 * HEAD_CHARS
    for shift in range(8):   # the head's cut at each position within an escape
        path = tmp_path / f"tang{shift}"
        path.write_text(" " * shift + minified, encoding="utf-8")
        assert sniff_format(path, "utf-8") == "json", shift
    assert len(import_poems([tmp_path / "tang0"]).poems) == 1   # 3000 copies of one poem
    long_lines = "".join(json.dumps(r) + "\n" for r in [{"text": POEM_A, "notes": "注释" * 40000}, {"text": POEM_B}])
    (tmp_path / "long.txt").write_text(long_lines, encoding="utf-8")
    assert [p.text for p in import_poems([tmp_path / "long.txt"]).poems] == [POEM_A, POEM_B]
    separated = "".join(json.dumps({"text": t, "notes": "注\u2028释"}, ensure_ascii=False) + "\n" for t in (POEM_A, POEM_B))
    (tmp_path / "sep.txt").write_text(separated, encoding="utf-8")
    assert [p.text for p in import_poems([tmp_path / "sep.txt"]).poems] == [POEM_A, POEM_B]
    (tmp_path / "wrapped.json").write_text('{"poems": [\n  {"text": "%s"},\n  {"text": "%s"}\n]}\n' % (POEM_A, POEM_B),
                                           encoding="utf-8")
    with pytest.raises(BadCorpus, match="expected a JSON list"):
        import_poems([tmp_path / "wrapped.json"])


def test_import_keep_script_and_duplicates(tmp_path):
    (tmp_path / "a.txt").write_text("孤舟蓑笠翁，獨釣寒江雪。\n孤舟蓑笠翁，獨釣寒江雪。\n", encoding="utf-8")
    result = import_poems([tmp_path / "a.txt"], simplify=False)
    assert [p.text for p in result.poems] == ["孤舟蓑笠翁，獨釣寒江雪。"]
    assert result.dropped["duplicate"] == 1


def test_blank_lines_after_the_last_poem_do_not_merge_one_poem_per_line(tmp_path):
    path = tmp_path / "trail.txt"
    path.write_text("\n床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
                    f"{POEM_A}\n春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n\n\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "kept 3 poems" in result.output
    assert [p.form for p in load_corpus(tmp_path / "o.jsonl")] == ["wujue"] * 3


def test_blocks_of_whole_poem_lines_are_said_and_per_line_reads_them_apart(tmp_path):
    """One 五绝 a line, two lines a group, groups between blank lines: each group was silently imported as
    one 五律. The importer cannot tell it from a 五律 written four clauses a line, so it warns, and
    --per-line reads one poem per line."""
    path = tmp_path / "groups.txt"
    path.write_text("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n\n"
                    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。\n",
                    encoding="utf-8")
    out = tmp_path / "o.jsonl"
    joined = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(out)])
    assert joined.exit_code == 0 and "kept 2 poems" in joined.output
    assert "warning: 2 blank-line separated blocks whose every line is a whole poem" in joined.output
    assert "--per-line" in joined.output
    apart = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(out), "--force", "--per-line"])
    assert apart.exit_code == 0 and "kept 4 poems" in apart.output and "warning" not in apart.output
    assert [p.form for p in load_corpus(out)] == ["wujue"] * 4
    assert len(import_poems([path], per_line=True).poems) == 4
    # a poem written a couplet a line is no such block: no warning
    couplets = tmp_path / "couplets.txt"
    couplets.write_text("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n\n春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\n",
                        encoding="utf-8")
    plain = CliRunner().invoke(cli, ["corpus", "import", str(couplets), "--out", str(tmp_path / "c.jsonl")])
    assert "kept 2 poems" in plain.output and "warning" not in plain.output


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_poem(tmp_path):
    bom = "\ufeff"
    (tmp_path / "a.txt").write_text(f"{bom}{POEM_A}\n{POEM_B}\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(bom + json.dumps({"text": POEM_A}) + "\n"
                                      + json.dumps({"text": POEM_B}) + "\n", encoding="utf-8")
    (tmp_path / "c.json").write_text(bom + json.dumps([{"paragraphs": [POEM_A]}, {"paragraphs": [POEM_B]}]),
                                     encoding="utf-8")
    for name in ["a.txt", "b.jsonl", "c.json"]:
        result = import_poems([tmp_path / name])
        assert [p.text for p in result.poems] == [POEM_A, POEM_B] and not result.dropped, name
    bad = tmp_path / "bad.txt"
    bad.write_bytes(("\ufeff" + POEM_A).encode("utf-8") + b"\xff\n")
    with pytest.raises(BadCorpus, match=f"at byte {3 + len(POEM_A.encode())};"):   # offsets count the mark
        import_poems([bad])


def test_gbk_file_needs_encoding(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes((POEM_A + "\n").encode("gbk"))
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "gbk" in result.output and "gbk.txt" in result.output
    ok = CliRunner().invoke(cli, ["corpus", "import", str(path), "--encoding", "gbk", "--out", str(tmp_path / "o.jsonl")])
    assert ok.exit_code == 0, ok.output
    assert "kept 1 poem," in ok.output


def test_cli_import_reports_drops_and_stats_json(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text(f"{POEM_A}\nabc def\n{POEM_A}\n{POEM_B}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl.gz"
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kept 2 poems, dropped 2" in result.output
    assert "dropped 1: duplicate" in result.output and "dropped 1: Latin letters or digits" in result.output
    stats = CliRunner().invoke(cli, ["corpus", "stats", str(out), "--format", "json"])
    data = json.loads(stats.output)
    assert data["poems"] == 2 and data["forms"]["wujue"] == 1 and data["forms"]["qijue"] == 1
    assert data["chars"] == len(POEM_A) + len(POEM_B)
    assert data["vocab"] == len(set(POEM_A + POEM_B) - set("，。"))


def test_corpus_commands_do_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from poetgen.cli import cli; "
            "r = CliRunner().invoke(cli, ['corpus', 'stats', '--format', 'json']); assert r.exit_code == 0, r.output; "
            "CliRunner().invoke(cli, ['--help']); print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_cleaner_never_crashes_and_output_is_clean(raw):
    text, reason = clean_text(raw)
    assert (text is None) != (reason is None)
    if text is not None:
        assert normalize_text(text) == text
        assert clean_text(text) == (text, None)


def test_build_tang_from_tarball_is_reproducible(tmp_path):
    import io
    import tarfile

    def add(archive, name, records):
        data = json.dumps(records, ensure_ascii=False).encode("utf-8")
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    tarball = tmp_path / "chinese-poetry.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        add(archive, "package/dist/quantangshi/poet.tang.1000.json",
            [{"title": "江雪", "author": "柳宗元", "paragraphs": ["千山鳥飛絕，萬徑人蹤滅。", "孤舟蓑笠翁，獨釣寒江雪。"]}])
        add(archive, "package/dist/quantangshi/poet.tang.0.json",
            [{"title": "登鸛雀樓", "author": "王之渙", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},
             {"title": "缺", "author": "某", "paragraphs": ["白日□山盡，黃河入海流。"]}])
        add(archive, "package/dist/quantangshi/poet.song.0.json",
            [{"title": "宋", "author": "某", "paragraphs": ["春眠不觉晓，处处闻啼鸟。"]}])
    outs = []
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        result = CliRunner().invoke(cli, ["corpus", "build-tang", str(tarball), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    records = [json.loads(line) for line in gzip.decompress(outs[0]).decode("utf-8").splitlines()]
    assert [r["title"] for r in records] == ["登鹳雀楼", "江雪"]   # numeric file order, Tang only, □ dropped
    assert records[0]["form"] == "wujue" and records[0]["text"].startswith("白日依山尽")


def _tarball(path, files: dict):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, records in files.items():
            data = json.dumps(records, ensure_ascii=False).encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_build_writes_tagged_song_and_ci_reproducibly(tmp_path):
    dist = "package/dist/"
    tarball = _tarball(tmp_path / "chinese-poetry.tgz", {
        dist + "quantangshi/poet.tang.0.json": [{"title": "登鸛雀樓", "author": "王之渙", "paragraphs": [POEM_A]}],
        dist + "quantangshi/poet.song.1000.json": [{"title": "乙", "author": "某", "paragraphs": ["春眠不觉晓，处处闻啼鸟。"]}],
        dist + "quantangshi/poet.song.0.json": [{"title": "甲", "author": "某", "paragraphs": [POEM_B]},
                                                {"title": "重", "author": "某", "paragraphs": [POEM_A]}],
        dist + "songci/ci.song.0.json": [{"author": "苏轼", "rhythmic": "浣溪沙",
                                          "paragraphs": ["山下兰芽短浸溪，松间沙路净无泥。", "萧萧暮雨子规啼。"]}],
        dist + "wudaishici/huajianji/huajianji-x-juan.json": [
            {"title": "河满子·寂寞", "author": "毛熙震", "rhythmic": "河满子", "paragraphs": ["寂寞芳菲暗度，岁华如箭堪惊。"]}],
        dist + "wudaishici/huajianji/huajianji-1-juan.json": [
            {"title": "菩萨蛮 其一", "author": "温庭筠", "rhythmic": "菩萨蛮", "paragraphs": ["小山重叠金明灭，鬓云欲度香腮雪。"]}],
        dist + "wudaishici/huajianji/huajianji-0-preface.json": [{"rhythmic": "花间集", "paragraphs": ["序文不是词也。"]}],
        dist + "wudaishici/nantang/poetrys.json": [
            {"title": "相见欢", "author": "李煜", "rhythmic": "相见欢", "paragraphs": ["无言独上西楼，月如钩。"]}],
    })
    outs = []
    for name in ("a", "b"):
        result = CliRunner().invoke(cli, ["corpus", "build", str(tarball), "--out-dir", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outs.append({f: (tmp_path / name / f).read_bytes() for f in ("tang.jsonl.gz", "song.jsonl.gz", "ci.jsonl.gz")})
    assert outs[0] == outs[1]
    read = {f: [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines()]
            for f, data in outs[0].items()}
    assert set(read["tang.jsonl.gz"][0]) == {"title", "author", "form", "text"}   # the first corpus's records
    song = read["song.jsonl.gz"]
    assert [r["title"] for r in song] == ["甲", "乙"]     # numeric order; the Tang poem again is a duplicate
    assert all((r["dynasty"], r["genre"], r["tune"]) == ("song", "shi", "") for r in song)
    assert song[0]["form"] == "qijue"
    ci = read["ci.jsonl.gz"]
    assert [(r["dynasty"], r["tune"]) for r in ci] == [("wudai", "菩萨蛮"), ("wudai", "河满子"), ("wudai", "相见欢"),
                                                      ("song", "浣溪沙")]   # no preface; juan 1 before x
    assert all(r["genre"] == "ci" and r["form"] == "ci" for r in ci)
    assert ci[-1]["title"] == "浣溪沙" and ci[-1]["author"] == "苏轼"   # a Song ci is known by its tune


def test_shipped_files_are_tagged_and_tang_is_unchanged():
    import hashlib

    from poetgen.corpus import shipped_corpus_paths

    tang, song, ci = shipped_corpus_paths()
    # the shipped model's config records the Tang corpus's hash: its bytes never change
    assert hashlib.sha256(tang.read_bytes()).hexdigest() == \
        "fa122069d4bf7fa51b908e803a5bd02fc96384d891be50078074a6c1e27bcce0"
    for path, kinds, least in ((song, {("song", "shi")}, 250_000), (ci, {("song", "ci"), ("wudai", "ci")}, 20_000)):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        assert len(records) >= least
        assert {(r["dynasty"], r["genre"]) for r in records} == kinds
        assert all(bool(r["tune"]) == (r["genre"] == "ci") for r in records)
        held = sum(is_held_out(r["text"]) for r in records)
        assert 0.015 < held / len(records) < 0.025


def test_load_corpus_reads_several_files_with_their_tags(tmp_path):
    shi = Poem(POEM_A, "登鹳雀楼", "王之涣", "wujue")
    ci = Poem("山下兰芽短浸溪，松间沙路净无泥。萧萧暮雨子规啼。", "浣溪沙", "苏轼", "ci", "song", "ci", "浣溪沙")
    write_corpus([shi], tmp_path / "a.jsonl.gz")
    write_corpus([ci, shi], tmp_path / "b.jsonl")
    poems = load_corpus([tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"])
    assert poems == [shi, ci]                   # read back as written; the repeated poem is a duplicate
    lines = (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()
    assert list(json.loads(lines[0])) == ["title", "author", "dynasty", "genre", "form", "tune", "text"]
    assert list(json.loads(lines[1])) == ["title", "author", "form", "text"]   # untagged means Tang shi


def test_importing_chinese_poetry_ci_keeps_the_tune(tmp_path):
    (tmp_path / "ci.song.0.json").write_text(json.dumps([
        {"author": "苏轼", "rhythmic": "浣溪沙", "paragraphs": ["山下兰芽短浸溪，", "松间沙路净无泥。"]},
        {"author": "某", "rhythmic": "徵招", "paragraphs": ["一二三四五，", "六七八九十。"]},
        {"author": "某", "title": "題", "dynasty": "宋", "paragraphs": ["春眠不觉晓，处处闻啼鸟。"]}],
        ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["corpus", "import", str(tmp_path / "ci.song.0.json"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["tune"], r["title"], r["genre"], r["form"]) for r in records[:2]] == \
        [("浣溪沙", "浣溪沙", "ci", "ci"), ("徵招", "征招", "ci", "ci")]   # the tune as spelled; titles are simplified
    assert (records[2]["dynasty"], records[2]["genre"], records[2]["title"]) == ("song", "shi", "题")
    assert [p.tune for p in load_corpus(out)] == ["浣溪沙", "徵招", ""]


def test_a_records_dynasty_comes_from_the_chinese_poetry_file_name_and_an_unknown_one_is_named(tmp_path):
    # chinese-poetry's Song files carry no dynasty field: their names say it (they were read as Tang)
    ci, shi = "山下兰芽短浸溪，松间沙路净无泥。", "春眠不觉晓，处处闻啼鸟。"
    (tmp_path / "ci.song.0.json").write_text(json.dumps([{"author": "苏轼", "rhythmic": "浣溪沙", "paragraphs": [ci]}],
                                                        ensure_ascii=False), encoding="utf-8")
    (tmp_path / "poet.song.1000.json").write_text(json.dumps([{"title": "甲", "paragraphs": [POEM_B]}],
                                                           ensure_ascii=False), encoding="utf-8")
    (tmp_path / "mine.json").write_text(json.dumps([
        {"title": "乙", "paragraphs": [shi]},                                    # no field, no telling name: Tang
        {"title": "丙", "dynasty": "清", "paragraphs": [POEM_A]},
        {"title": "丙", "dynasty": "清", "paragraphs": [POEM_A]},                # a duplicate: not counted again
        {"title": "戊", "dynasty": "南宋", "paragraphs": ["床前明月光，疑是地上霜。"]}], ensure_ascii=False),
        encoding="utf-8")
    (tmp_path / "poet.song.9.jsonl").write_text(json.dumps({"text": "红豆生南国，春来发几枝。"}, ensure_ascii=False) + "\n",
                                                encoding="utf-8")   # JSON lines named so: Song too
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["corpus", "import", str(tmp_path / "ci.song.0.json"),
                                      str(tmp_path / "poet.song.1000.json"), str(tmp_path / "mine.json"),
                                      str(tmp_path / "poet.song.9.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.text: p.dynasty for p in load_corpus(out)} == {ci: "song", POEM_B: "song", shi: "tang", POEM_A: "tang",
                                                             "床前明月光，疑是地上霜。": "song", "红豆生南国，春来发几枝。": "song"}
    assert "warning: 1 poems whose dynasty is none of tang, song, wudai" in result.stderr
    assert "were read as Tang" in result.stderr


def test_stats_count_dynasties_genres_and_tunes(tmp_path):
    poems = [Poem(POEM_A, form="wujue"), Poem(POEM_B, form="qijue", dynasty="song"),
             Poem("山下兰芽短浸溪，松间沙路净无泥。", "", "", "ci", "song", "ci", "浣溪沙"),
             Poem("小山重叠金明灭，鬓云欲度香腮雪。", "", "", "ci", "wudai", "ci", "菩萨蛮"),
             Poem("无言独上西楼，月如钩。", "", "", "ci", "song", "ci", "浣溪沙"),
             Poem("帘外雨潺潺，春意阑珊。", "", "", "ci", "wudai", "ci", "")]   # a ci without its tune
    write_corpus(poems, tmp_path / "mixed.jsonl")
    result = CliRunner().invoke(cli, ["corpus", "stats", str(tmp_path / "mixed.jsonl"), "--format", "json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["by_dynasty_genre"] == {"tang/shi": 1, "song/shi": 1, "song/ci": 2, "wudai/ci": 2}
    # a ci without a tune is no tune named "" (it was: "most written:  1")
    assert stats["top_tunes"] == [["浣溪沙", 2], ["菩萨蛮", 1]] and stats["ci_tunes"] == 2
    assert stats["forms"]["wujue"] == 1 and stats["forms"]["qijue"] == 1 and sum(stats["forms"].values()) == 2
    text = CliRunner().invoke(cli, ["corpus", "stats", str(tmp_path / "mixed.jsonl")])
    assert "song/ci" in text.output and "浣溪沙 2, 菩萨蛮 1" in text.output


def test_builds_never_replace_an_existing_file_without_force(tmp_path):
    dist = "package/dist/"
    tarball = _tarball(tmp_path / "chinese-poetry.tgz", {
        dist + "quantangshi/poet.tang.0.json": [{"title": "登鸛雀樓", "author": "王之渙", "paragraphs": [POEM_A]}],
        dist + "quantangshi/poet.song.0.json": [{"title": "甲", "author": "某", "paragraphs": [POEM_B]}],
        dist + "songci/ci.song.0.json": [{"author": "苏轼", "rhythmic": "浣溪沙",
                                          "paragraphs": ["山下兰芽短浸溪，松间沙路净无泥。", "萧萧暮雨子规啼。"]}],
        dist + "wudaishici/huajianji/huajianji-1-juan.json": [
            {"title": "菩萨蛮 其一", "author": "温庭筠", "rhythmic": "菩萨蛮", "paragraphs": ["小山重叠金明灭，鬓云欲度香腮雪。"]}],
        dist + "wudaishici/nantang/poetrys.json": [
            {"title": "相见欢", "author": "李煜", "rhythmic": "相见欢", "paragraphs": ["无言独上西楼，月如钩。"]}]})
    precious = tmp_path / "precious.jsonl.gz"
    precious.write_bytes(b"my own corpus")
    refused = CliRunner().invoke(cli, ["corpus", "build-tang", str(tarball), "--out", str(precious)])
    assert refused.exit_code == 2 and "--force" in refused.output and precious.read_bytes() == b"my own corpus"
    out_dir = tmp_path / "dir"
    out_dir.mkdir()
    (out_dir / "song.jsonl.gz").write_bytes(b"mine")
    refused = CliRunner().invoke(cli, ["corpus", "build", str(tarball), "--out-dir", str(out_dir)])
    assert refused.exit_code == 2 and "song.jsonl.gz exists" in refused.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["song.jsonl.gz"]   # nothing written before the refusal
    replaced = CliRunner().invoke(cli, ["corpus", "build-tang", str(tarball), "--out", str(precious), "--force"])
    assert replaced.exit_code == 0, replaced.output
    assert gzip.decompress(precious.read_bytes()).decode("utf-8").count("\n") == 1
    rebuilt = CliRunner().invoke(cli, ["corpus", "build", str(tarball), "--out-dir", str(out_dir), "--force"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["ci.jsonl.gz", "song.jsonl.gz", "tang.jsonl.gz"]


def test_a_member_that_is_not_chinese_poetry_json_is_one_line(tmp_path):
    import io
    import tarfile

    tarball = tmp_path / "bad.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name, data in (("package/dist/quantangshi/poet.tang.0.json", b'[{"title": "\x01'),
                           ("package/dist/quantangshi/poet.tang.1000.json", b'{"not": "a list"}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    result = CliRunner().invoke(cli, ["corpus", "build-tang", str(tarball), "--out", str(tmp_path / "t.jsonl.gz")])
    assert result.exit_code == 2, result.output
    assert "poet.tang.0.json: not a chinese-poetry file" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.jsonl.gz").exists()


def test_an_output_inside_an_input_directory_is_not_read_back(tmp_path):
    """--force re-imported the previous output with the inputs (a deleted poem came back), and a run
    whose --out lay in its corpus directory read its own config.json on --resume."""
    folder = tmp_path / "poems"
    folder.mkdir()
    (folder / "a.txt").write_text(POEM_A + "\n", encoding="utf-8")
    (folder / "b.txt").write_text(POEM_B + "\n", encoding="utf-8")
    out = folder / "all.jsonl"
    assert CliRunner().invoke(cli, ["corpus", "import", str(folder), "--out", str(out)]).exit_code == 0
    (folder / "b.txt").unlink()
    result = CliRunner().invoke(cli, ["corpus", "import", str(folder), "--out", str(out), "--force"])
    assert result.exit_code == 0 and "kept 1 poem, dropped 0" in result.output, result.output
    assert [p.text for p in load_corpus(out)] == [POEM_A]
    run = folder / "run"                            # a bundle or a run in the folder is not corpus either
    (run / "resume").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    (run / "model.keras").write_bytes(b"PK")
    (run / "resume" / "state.json").write_text("{}", encoding="utf-8")
    (run / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert [p.text for p in load_corpus(folder)] == [POEM_A]


def test_line_ends_of_every_kind_and_a_huge_block_in_bounded_memory(tmp_path):
    r"""A lone \r (old Mac files) merged every poem into one; a blank-line separated block with no
    blank line for millions of lines was held whole (1.3 GB for 42 MB) before being dropped as too long."""
    import tracemalloc

    path = tmp_path / "cr.txt"
    path.write_text(f"{POEM_A}\r{POEM_B}\r", encoding="utf-8", newline="")
    assert [p.text for p in load_corpus(path)] == [POEM_A, POEM_B]
    path.write_bytes(f"{POEM_A}\r\n\r\n{POEM_B}\r\n".encode())   # \r\n cut between chunks is one line end
    assert [p.text for p in load_corpus(path)] == [POEM_A, POEM_B]
    big = tmp_path / "block.txt"
    with open(big, "w", encoding="utf-8") as handle:
        handle.write(POEM_A + "\n\n")
        handle.write("春眠不觉晓处处闻啼鸟\n" * 300_000)   # 3 M characters without a blank line
        handle.write("\n" + POEM_B + "\n")
    tracemalloc.start()
    result = import_poems([big])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.dropped["too long"] == 1 and [p.text for p in result.poems] == [POEM_A, POEM_B]
    assert peak < 15_000_000, peak   # the block is not held (~30 MB in 300,000 strings); chunks are 1 MB


def test_a_null_author_or_title_in_chinese_poetry_is_none(tmp_path):
    dist = "package/dist/"
    tarball = _tarball(tmp_path / "chinese-poetry.tgz", {
        dist + "quantangshi/poet.tang.0.json": [{"title": None, "author": None, "paragraphs": [POEM_A]}]})
    result = CliRunner().invoke(cli, ["corpus", "build-tang", str(tarball), "--out", str(tmp_path / "t.jsonl.gz")])
    assert result.exit_code == 0, result.output
    poem, = load_corpus(tmp_path / "t.jsonl.gz")
    assert poem.author == "" and poem.text == POEM_A


def test_a_pipe_is_one_line_saying_to_save_it(tmp_path):
    """A corpus is read more than once (sniffed, then read): a pipe gave "File or stream is not seekable"."""
    import os
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with contextlib.suppress(BrokenPipeError):   # the reader refuses and closes its end
            with open(fifo, "w", encoding="utf-8") as pipe:
                pipe.write(POEM_A + "\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = CliRunner().invoke(cli, ["corpus", "import", str(fifo), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "not a regular file" in result.output, result.output
    writer.join(10)


def test_a_link_loop_in_a_corpus_directory_is_read_once(tmp_path):
    """Following linked folders walked x/y/x/y/… (two links to '.' never ended; one gave 41 copies)."""
    import os

    (tmp_path / "a.txt").write_text(POEM_A + "\n", encoding="utf-8")
    os.symlink(".", tmp_path / "x")
    os.symlink(".", tmp_path / "y")
    result = import_poems([tmp_path])
    assert [p.text for p in result.poems] == [POEM_A] and result.files == 1


def test_json_nested_deeper_than_the_parser_goes_is_one_line(tmp_path):
    """200,000 nested brackets were `internal error: RecursionError`, exit 1."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200000 + "]" * 200000, encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(deep), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == f"poetgen: error: {deep}: not valid JSON (nested deeper than a corpus ever is)"
    lines = tmp_path / "deep.jsonl"
    lines.write_text(json.dumps({"text": "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"}, ensure_ascii=False) + "\n"
                     + "[" * 200000 + "]" * 200000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(lines), "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0 and "dropped 1: not valid JSON" in result.output, result.output


def test_a_corpus_directory_that_is_also_the_runs_out_gives_its_poems_not_the_runs_files(tmp_path):
    """`train --corpus D --out D --force` worked, then `--resume` read D/config.json as a corpus file."""
    from poetgen.corpus_files import expand_paths

    folder = tmp_path / "both"
    (folder / "resume").mkdir(parents=True)
    (folder / "poems.jsonl").write_text(json.dumps({"text": "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"},
                                                   ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "more").mkdir()
    (folder / "more" / "b.txt").write_text("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n", encoding="utf-8")
    for name in ("model.keras", "config.json", "tokenizer.json", "resume/state.json", "resume/tokenizer.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    assert expand_paths([folder]) == [folder / "more" / "b.txt", folder / "poems.jsonl"]
    (folder / "model.keras").unlink()
    shutil.rmtree(folder / "resume")   # no run here: a config.json is the user's own file
    assert folder / "config.json" in expand_paths([folder])


def test_a_directory_import_reads_upper_case_suffixes_and_passes_over_a_package_json(tmp_path):
    """A.TXT was skipped without a word, and the unpacked chinese-poetry package's package.json stopped
    the whole import (expected a JSON list of poems)."""
    from poetgen.importers import import_poems

    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "A.TXT").write_text("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n", encoding="utf-8")
    (folder / "b.txt").write_text("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n", encoding="utf-8")
    (folder / "package.json").write_text(json.dumps({"name": "chinese-poetry", "version": "2.0.1"}, indent=2),
                                          encoding="utf-8")
    result = import_poems([folder])
    assert sorted(p.text for p in result.poems) == sorted(["床前明月光，疑是地上霜。举头望明月，低头思故乡。",
                                                           "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"])
    assert result.dropped == {"a .json file that is not a list of poems": 1}
    with pytest.raises(BadCorpus, match="expected a JSON list"):   # named on its own: an error, as before
        import_poems([folder / "package.json"])


def test_unpunctuated_lines_of_a_blank_line_separated_poem_keep_their_breaks(tmp_path):
    """A wujue typed one line per line, without marks, was joined into one run-on line of form other."""
    from poetgen.importers import import_poems

    source = tmp_path / "a.txt"
    source.write_text("白日依山尽\n黄河入海流\n欲穷千里目\n更上一层楼\n\n千山鸟飞绝，万径人踪灭。\n孤舟蓑笠翁，独钓寒江雪。\n",
                      encoding="utf-8")
    poems = import_poems([source]).poems
    assert [(p.text, p.form) for p in poems] == [("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "wujue"),
                                                 ("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。", "wujue")]


def test_a_record_whose_tune_is_not_text_is_dropped_with_its_reason(tmp_path):
    """"tune": 7 was imported as a ci to a tune named "7"."""
    path = tmp_path / "ci.jsonl"
    path.write_text(json.dumps({"text": POEM_A, "tune": 7}) + "\n" + json.dumps({"text": POEM_B}) + "\n"
                    + json.dumps({"text": "千山鸟飞绝，万径人踪灭。", "tune": 0}) + "\n", encoding="utf-8")
    result = import_poems([path])
    assert [p.text for p in result.poems] == [POEM_B] and result.dropped["a tune that is not text"] == 2


def test_a_bracketed_head_is_the_title_not_part_of_the_text(tmp_path):
    """[静夜思] 床前… was dropped for its brackets; a number [1] is no title; a bracket elsewhere still drops."""
    lines = tmp_path / "lines.txt"
    lines.write_text(f"[静夜思] {POEM_A}\n[1] {POEM_B}\n《江雪》千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。\n"
                     "春眠不觉晓，处处闻啼鸟。[注]夜来风雨声，花落知多少。\n", encoding="utf-8")
    result = import_poems([lines])
    assert [(p.title, p.text) for p in result.poems] == [("静夜思", POEM_A), ("", POEM_B),
                                                         ("江雪", "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。")]
    assert result.dropped["brackets or notes"] == 1
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("【静夜思】\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n\n（其二）千山鸟飞绝，万径人踪灭。\n"
                      "孤舟蓑笠翁，独钓寒江雪。\n", encoding="utf-8")
    result = import_poems([blocks])
    assert [(p.title, p.form) for p in result.poems] == [("静夜思", "wujue"), ("其二", "wujue")]


def test_a_damaged_tarball_is_not_called_empty(tmp_path):
    """A gzip header followed by garbage was refused as "(empty file)": tarfile's words."""
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    result = CliRunner().invoke(cli, ["corpus", "build", str(bad), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no archive in it: truncated or damaged" in result.output and "empty file" not in result.output


def test_a_poem_written_a_verse_per_line_in_a_file_without_blank_lines_is_warned_of(tmp_path):
    """One poem, a verse per line, no blank line: read as four one-clause poems, silently (the opposite
    mistake, whole poems in one block, was warned of)."""
    source, out = tmp_path / "one.txt", tmp_path / "one.jsonl"
    source.write_text("床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(source), "--out", str(out)])
    assert result.exit_code == 0 and "kept 4 poems" in result.stdout
    assert "warning: every poem kept is one five- or seven-character clause" in result.stderr
    source.write_text("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n红豆生南国，春来发几枝。愿君多采撷，此物最相思。\n",
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(source), "--out", str(out), "--force"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_one_clause_poems_with_their_own_marks_are_warned_of_too(tmp_path):
    source, out = tmp_path / "marked.txt", tmp_path / "marked.jsonl"
    source.write_text("白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(source), "--out", str(out)])
    assert result.exit_code == 0 and "warning: every poem kept is one five- or seven-character clause" in result.stderr


def test_the_one_clause_warning_says_how_the_file_was_read_blank_lines_or_not(tmp_path):
    """The warning said "(a file without blank lines holds a poem per line)" for files that have them: a
    blank line between every two verses, or --per-line over poems a blank line apart, read a verse a poem
    too. It warns there still, and says what read the file so."""
    source, out = tmp_path / "spaced.txt", tmp_path / "spaced.jsonl"
    source.write_text("床前明月光\n\n疑是地上霜\n\n举头望明月\n\n低头思故乡\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(source), "--out", str(out)])
    assert result.exit_code == 0 and "kept 4 poems" in result.stdout
    warning = result.stderr.strip()
    assert warning.startswith("poetgen: warning: every poem kept is one five- or seven-character clause")
    assert "without blank lines" not in warning and "one between every two verses" in warning
    assert "--per-line" not in warning
    source.write_text("床前明月光\n疑是地上霜\n\n举头望明月\n低头思故乡\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(source), "--out", str(out), "--force", "--per-line"])
    assert result.exit_code == 0 and "kept 4 poems" in result.stdout
    warning = result.stderr.strip()
    assert "without blank lines" not in warning and "is read with --per-line" in warning
    assert warning.endswith("with a blank line between poems and no --per-line")


def test_a_title_or_author_given_as_a_list_is_joined(tmp_path):
    """A chinese-poetry-like record with "title": ["静夜思"] was imported as the title "['静夜思']"."""
    record = {"paragraphs": ["床前明月光，", "疑是地上霜。"], "title": ["静夜思"], "author": ["李", "白"]}
    (tmp_path / "t.json").write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    poem = import_poems([tmp_path / "t.json"]).poems[0]
    assert (poem.title, poem.author) == ("静夜思", "李白")


def test_a_traditional_tune_name_is_simplified_as_the_tune_table_writes_it(tmp_path):
    """A traditional ci file kept its tunes as written (蝶戀花) while its text became simplified: a
    conditioned model trained <tune:蝶戀花>, which `--tune 蝶恋花` never fed, and stats counted 鷓鴣天 apart
    from 鹧鸪天. A name the table lacks stays as written (OpenCC would turn 徵招 into 征招)."""
    records = [{"rhythmic": tune, "paragraphs": [f"{line}花落知多少，春风又一年。"]}
               for line, tune in zip("一二三四", ("蝶戀花", "鷓鴣天", "徵招", "不知名調"))]
    (tmp_path / "ci.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert [p.tune for p in import_poems([tmp_path / "ci.json"]).poems] == ["蝶恋花", "鹧鸪天", "徵招", "不知名調"]
    kept = import_poems([tmp_path / "ci.json"], simplify=False).poems
    assert [p.tune for p in kept] == ["蝶戀花", "鷓鴣天", "徵招", "不知名調"]


def test_a_tarball_without_the_sources_names_them_as_file_names(tmp_path):
    """The error showed the sources' regular expressions (poet\\.tang\\.(\\d+)\\.json)."""
    tarball = _tarball(tmp_path / "empty.tgz", {"package/README.md": "nothing"})
    result = CliRunner().invoke(cli, ["corpus", "build", str(tarball), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "package/dist/quantangshi/poet.tang.N.json inside" in result.stderr, result.output
    assert "\\" not in result.stderr and "(" not in result.stderr.split(":", 2)[-1]


def test_title_and_author_lines_around_a_block_are_not_its_verses(tmp_path):
    """A block written as people copy a poem, its title and author on lines of their own, was imported
    with them as verses (every poem then 'other'), and one signed ——李白 under it was dropped whole."""
    source = tmp_path / "signed.txt"
    source.write_text("《静夜思》\n李白\n床前明月光，\n疑是地上霜。\n举头望明月，\n低头思故乡。\n\n"
                      "江雪\n作者：柳宗元\n千山鸟飞绝\n万径人踪灭\n孤舟蓑笠翁\n独钓寒江雪\n\n"
                      "红豆生南国，\n春来发几枝。\n愿君多采撷，\n此物最相思。\n——王维\n\n"
                      "登鹳雀楼\n白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。\n", encoding="utf-8-sig")
    result = import_poems([source])
    assert [(p.title, p.author, p.form) for p in result.poems] == [
        ("静夜思", "李白", "wujue"), ("江雪", "柳宗元", "wujue"), ("", "王维", "wujue"), ("登鹳雀楼", "", "wujue")]
    assert result.poems[0].text == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def test_a_plain_title_above_verses_without_marks_is_not_a_verse(tmp_path):
    """A title (and author) line above verses written without marks was joined to them (静夜思，床前明月光。…:
    'other'), as was an author line under a bracketed title. Heads of another length than the verses,
    which all have one length, 5 or 7, and make a regular form without them, are the title and author now
    (an author of a name's length); a head as long as the verses could be one of them, a second head longer
    than a name could open a 杂言 poem, and a block that is no regular form without its first line keeps it."""
    source = tmp_path / "plain.txt"
    verses = "床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\n"
    seven = "朝辞白帝彩云间\n千里江陵一日还\n两岸猿声啼不住\n轻舟已过万重山\n"
    source.write_text(f"静夜思\n{verses}\n静夜思\n李白\n{verses}\n《静夜思》\n李白\n{verses}\n"
                      f"早发白帝城\n{seven}\n"                       # a five-character title above seven-character verses
                      f"千山鸟飞绝\n{verses}\n"                      # as long as the verses: a verse, 'other'
                      f"杨白花\n风吹度江水\n{seven}\n"                  # no author: a 杂言 poem's opening
                      f"君不见\n{seven}三更灯火五更鸡\n", encoding="utf-8")   # no regular form without it
    poems = [(raw.title, raw.author, raw.text, form_of(normalize_text(raw.text))) for raw in read_raw(source)]
    text = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert poems[:3] == [("静夜思", "", text, "wujue"), ("静夜思", "李白", text, "wujue"), ("静夜思", "李白", text, "wujue")]
    assert poems[3][:2] == ("早发白帝城", "") and poems[3][3] == "qijue"
    assert [(title, author, form) for title, author, _, form in poems[4:]] == [("", "", "other")] * 3
    assert poems[4][2].startswith("千山鸟飞绝，床前明月光。") and poems[5][2].startswith("杨白花，风吹度江水。")
    assert poems[6][2].startswith("君不见，")


def test_title_and_author_lines_above_a_poem_written_on_one_line(tmp_path):
    """A title and author on lines of their own above a poem written whole on one line (江雪 / 柳宗元 /
    千山鸟飞绝，…独钓寒江雪。) were read as its first verses ('江雪，柳宗元。千山…', form other), and the
    author under a bracketed title likewise: only verses on two or more lines were read so. A head line as
    long as a whole poem is still no title (an unpunctuated 五绝 above a punctuated one)."""
    source = tmp_path / "one_line.txt"
    source.write_text("江雪\n柳宗元\n千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。\n\n"
                      "【登鹳雀楼】\n王之涣\n白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n\n"
                      "春晓\n春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n\n"
                      "床前明月光疑是地上霜举头望明月低头思故乡\n红豆生南国，春来发几枝。愿君多采撷，此物最相思。\n",
                      encoding="utf-8")
    result = import_poems([source])
    assert [(p.title, p.author, p.form) for p in result.poems][:3] == [
        ("江雪", "柳宗元", "wujue"), ("登鹳雀楼", "王之涣", "wujue"), ("春晓", "", "wujue")]
    assert result.poems[0].text == "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
    assert all("床前明月光" not in p.title for p in result.poems)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_named_not_called_binary(tmp_path, encoding):
    path = tmp_path / "poems.txt"
    path.write_bytes((POEM_A + "\n").encode(encoding))
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and f"UTF-16 text without a byte-order mark, it seems; pass --encoding {encoding}" \
        in result.output, result.output
    ok = CliRunner().invoke(cli, ["corpus", "import", str(path), "--encoding", encoding,
                                  "--out", str(tmp_path / "o.jsonl")])
    assert ok.exit_code == 0 and "kept 1 poem," in ok.output, ok.output
    binary = tmp_path / "noise.txt"   # random bytes with zeros in them are still binary
    binary.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)) + b"\0")
    refused = CliRunner().invoke(cli, ["corpus", "import", str(binary), "--out", str(tmp_path / "n.jsonl")])
    assert refused.exit_code == 2 and "binary data, not a text corpus" in refused.output, refused.output


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_whose_head_ends_inside_a_surrogate_pair_is_named(tmp_path, encoding):
    """The head read to tell UTF-16 from binary data (8,192 bytes) may end inside a character beyond the BMP
    (𠂉, CJK Ext. B: a surrogate pair in UTF-16); decoding it whole failed, and the text was called binary."""
    from poetgen.corpus_files import _SNIFF_BYTES

    lines = ((POEM_A + "\n") * (_SNIFF_BYTES // len(POEM_A)))[:_SNIFF_BYTES // 2 - 1]
    assert len(lines) == _SNIFF_BYTES // 2 - 1   # the pair's first half is the head's last two bytes
    path = tmp_path / "poems.txt"
    path.write_bytes((lines + "\U00020089" + "\n" + POEM_A + "\n").encode(encoding))
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and f"UTF-16 text without a byte-order mark, it seems; pass --encoding {encoding}" \
        in result.output, result.output
