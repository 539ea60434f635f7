"""Experiment (issue 11, planning at generation only): each poem gets a theme drawn from 20 classical
topics (`--theme`, whose keywords the Theme rule lays out line by line), against generate's defaults,
in a blind set for blind_score.py. The model was not trained with per-line keywords (Wang et al. 2016
plan during training too); this measures what the existing rule does for coherence.

    python benchmarks/plan_reading.py --out runs/blind/p1 --seed 101      # and --seed 111
    python benchmarks/blind_score.py runs/blind/p1/key.json judgements.json

Result (README, Blind reading): two readers scored the planned poems below the defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

THEMES = ("秋夜思乡 春日山行 送别友人 月夜独坐 江上晚泊 边塞征人 山寺访僧 闺中怀远 登高望远 雨后园林 "
          "渔舟唱晚 雪夜怀友 落花伤春 隐居田园 客中除夕 夏日荷塘 古寺钟声 长亭折柳 春江花月 暮年感怀").split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for poems.txt and key.json")
    parser.add_argument("--seed", type=int, default=101, help="chooses the real poems, themes, samples and order")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from blind_set import FORMS, real_poems

    from poetgen.generate import Generator
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions

    generator, rng, seed = Generator.load(None), random.Random(args.seed), args.seed
    entries = [{"source": "real", "form": k, "text": t} for k, ts in real_poems(list(FORMS), 5, seed, None).items()
               for t in ts]
    for k, form in enumerate(FORMS):
        result = generator.generate(PoemRequest(form=form, n=5, sample=SampleOptions(seed=seed * 1000 + k)))
        entries += [{"source": "b4", "form": form, "text": p["text"]} for p in result["poems"]]
        for i in range(5):
            theme = rng.choice(THEMES)
            request = PoemRequest(form=form, theme=theme, sample=SampleOptions(seed=seed * 1000 + 100 + k * 10 + i))
            entries.append({"source": "plan", "form": form, "theme": theme,
                            "text": generator.generate(request)["poems"][0]["text"]})
    random.Random(seed).shuffle(entries)
    args.out.mkdir(parents=True, exist_ok=True)
    key = {"seed": seed, "settings": {"b4": "generate's defaults", "plan": "the defaults + a --theme per poem"},
           "poems": {str(i + 1): entry for i, entry in enumerate(entries)}}
    (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
    (args.out / "poems.txt").write_text("\n\n".join(f"## {i + 1}\n{e['text']}" for i, e in enumerate(entries)) + "\n",
                                        encoding="utf-8")
    print(f"wrote {len(entries)} poems to {args.out / 'poems.txt'} and the key to {args.out / 'key.json'}")


if __name__ == "__main__":
    main()
