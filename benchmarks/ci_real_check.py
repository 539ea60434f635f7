"""How real ci pass poetgen's own ci check: layout, rhyme (词林正韵) and 平仄 per tune, against the
variant of the 词谱 each ci fits best, of the tunes its title may mean (a 36-character 乌夜啼 is 相见欢's).
The figures in the README come from this script.

Usage: python benchmarks/ci_real_check.py CORPUS [--top 20]
CORPUS: a poetgen corpus with a `tune` field (corpus/ci.jsonl.gz) or chinese-poetry's songci folder
(ci.song.*.json, field `rhythmic`), e.g. from `npm pack chinese-poetry@2.0.1`.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from poetgen.ci_checks import check_against_tunes  # noqa: E402
from poetgen.ci_rhyme import ci_rhyme  # noqa: E402
from poetgen.prosody import table  # noqa: E402
from poetgen.tunes import tune_table  # noqa: E402


def read_ci(path: Path):
    """(tune name as written, text) of every ci."""
    if path.is_dir():
        for file in sorted(path.glob("ci.song.*.json")):
            for record in json.loads(file.read_text(encoding="utf-8")):
                yield record.get("rhythmic", ""), "".join(record.get("paragraphs", []))
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            if record.get("genre", "shi") == "ci":
                yield record.get("tune", ""), record["text"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--top", type=int, default=20, help="tunes to list, the most written first")
    args = parser.parse_args()
    tunes, prosody, rhyme = tune_table(), table(), ci_rhyme()
    per_tune = collections.defaultdict(collections.Counter)
    unknown = 0
    for name, text in read_ci(args.corpus):
        readings = tunes.readings(name)   # 乌夜啼: its own tune and 相见欢, which Song poets also called so
        if not readings:
            unknown += 1
            continue
        check = check_against_tunes(text, readings, prosody, rhyme)   # the one it fits, as `poetgen check` reads it
        counts = per_tune[check.tune]
        counts["ci"] += 1
        counts["chars"] += check.chars_ok
        counts["layout"] += check.layout_ok
        if check.chars_ok:
            counts["rhyme"] += bool(check.rhyme_ok)
            counts["rhyme_slots"] += check.rhyme_score
            counts["tone"] += check.tone_score
    total = sum((c for c in per_tune.values()), collections.Counter())
    print(f"{total['ci']} ci of {len(per_tune)} tunes in the 词谱 ({unknown} of other tunes skipped)")

    def row(name: str, c: collections.Counter) -> str:
        judged = max(c["chars"], 1)
        return (f"{name:<8} {c['ci']:>6} {c['chars'] / c['ci']:>7.1%} {c['layout'] / c['ci']:>7.1%} "
                f"{c['rhyme'] / judged:>7.1%} {c['rhyme_slots'] / judged:>7.1%} {c['tone'] / judged:>7.1%}")

    print(f"{'tune':<8} {'ci':>6} {'chars':>7} {'layout':>7} {'rhyme':>7} {'r.slot':>7} {'平仄':>7}")
    for name, c in sorted(per_tune.items(), key=lambda kv: -kv[1]["ci"])[:args.top]:
        print(row(name, c))
    print(row("all", total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
