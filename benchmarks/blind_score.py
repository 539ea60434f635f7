"""Scores a blind reading: per-source means of the reader's scores and how well the reader told the
machine's poems from the real ones (AUC of machine_prob; 0.5 is chance, 1.0 every one told apart).

    python benchmarks/blind_score.py blind/key.json judgements.json [--format json]

JUDGEMENTS is a JSON list of {"id" or "number", "fluency", "coherence", "imagery", "overall",
"machine_prob"} or a dict from number to such an object (without the id). It reads nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCORES = ("fluency", "coherence", "imagery", "overall", "machine_prob")
REAL = "real"


class BadJudgements(ValueError):
    """The judgement file cannot be read against the key."""


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney statistic)."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def read_judgements(data) -> dict[str, dict]:
    """Judgements by poem number (as a string), from a list of objects with an id or a dict by number."""
    if isinstance(data, dict):
        items = [(str(number), value) for number, value in data.items()]
    elif isinstance(data, list):
        items = []
        for value in data:
            number = value.get("id", value.get("number")) if isinstance(value, dict) else None
            if number is None:
                raise BadJudgements(f"a judgement without an id or number: {value!r}")
            items.append((str(number), value))
    else:
        raise BadJudgements("expected a JSON list or object of judgements")
    judgements = {}
    for number, value in items:
        if not isinstance(value, dict):
            raise BadJudgements(f"poem {number}: expected an object of scores, not {value!r}")
        if number in judgements:
            raise BadJudgements(f"poem {number} is judged twice")
        scores = {}
        for field in SCORES:
            if value.get(field) is None:
                continue
            try:
                if isinstance(value[field], bool):
                    raise TypeError
                scores[field] = float(value[field])
            except (TypeError, ValueError):
                raise BadJudgements(f"poem {number}: {field} is not a number: {value[field]!r}") from None
        if "machine_prob" in scores and not 0 <= scores["machine_prob"] <= 1:
            raise BadJudgements(f"poem {number}: machine_prob must be between 0 and 1")
        for field in SCORES[:-1]:   # a reader's 0-10 (or NaN) would be averaged into the 1-5 means
            if field in scores and not 1 <= scores[field] <= 5:
                raise BadJudgements(f"poem {number}: {field} must be from 1 to 5, not {value[field]!r}")
        judgements[number] = scores
    return judgements


def score(key: dict, judgements: dict[str, dict]) -> dict:
    poems = key["poems"]
    if not all(isinstance(poem, dict) and isinstance(poem.get("source"), str) for poem in poems.values()):
        raise BadJudgements("a malformed key: every poem needs a source named in text")
    unknown = sorted(set(judgements) - set(poems), key=lambda n: (len(n), n))
    if unknown:
        raise BadJudgements(f"poems {', '.join(unknown)} are not in the key")
    sources = [REAL] + sorted({poem["source"] for poem in poems.values()} - {REAL})
    by_source = {}
    machine = {source: [] for source in sources}
    for source in sources:
        judged = [judgements[n] for n, poem in poems.items() if poem["source"] == source and n in judgements]
        row = {"poems": sum(poem["source"] == source for poem in poems.values()), "judged": len(judged)}
        for field in SCORES:
            values = [j[field] for j in judged if field in j]
            row[field] = round(sum(values) / len(values), 3) if values else None
        machine[source] = [j["machine_prob"] for j in judged if "machine_prob" in j]
        row["auc_vs_real"] = None if source == REAL else _round(auc(machine[source], machine[REAL]))
        by_source[source] = row
    generated = [p for source in sources[1:] for p in machine[source]]
    return {"sources": by_source, "auc_generated_vs_real": _round(auc(generated, machine[REAL])),
            "judged": len(judgements), "poems": len(poems)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def format_text(report: dict) -> str:
    rows = [f"{report['judged']} of {report['poems']} poems judged",
            f"{'source':<16} {'poems':>5} " + " ".join(f"{f:>12}" for f in SCORES) + f" {'AUC vs real':>12}"]
    for source, row in report["sources"].items():
        cells = " ".join(f"{_cell(row[f]):>12}" for f in SCORES)
        rows.append(f"{source:<16} {row['judged']:>5} {cells} {_cell(row['auc_vs_real']):>12}")
    rows.append(f"generated vs real, all settings: AUC of machine_prob {_cell(report['auc_generated_vs_real'])} "
                "(0.5: chance; 1.0: every machine poem told apart)")
    return "\n".join(rows)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("key", type=Path, help="key.json written by blind_set.py")
    parser.add_argument("judgements", type=Path, help="the reader's judgements (JSON)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    return print_report("blind_score.py", args.key, args.judgements, args.format, entries="poems",
                        writer="blind_set.py", read=read_judgements, score=score, text=format_text)


def print_report(program: str, key_path: Path, judgements_path: Path, fmt: str, *, entries: str, writer: str,
                 read, score, text) -> int:
    """Reads a key (whose `entries` field `writer` wrote) and a reader's judgements, prints the report
    as text or JSON: 0; any unreadable or mismatched file is one line on stderr: 2."""
    try:
        key = json.loads(key_path.read_text(encoding="utf-8"))
        if not isinstance(key, dict) or not isinstance(key.get(entries), dict):
            raise BadJudgements(f"{key_path}: not a key written by {writer}")
        judgements = read(json.loads(judgements_path.read_text(encoding="utf-8"), object_pairs_hook=_once))
        try:
            report = score(key, judgements)
        except (KeyError, TypeError, IndexError, AttributeError) as error:   # read() checked the judgements
            raise BadJudgements(f"{key_path}: a malformed key, not as {writer} writes it "
                                f"({type(error).__name__}: {error})") from None
    except (OSError, ValueError) as error:   # BadJudgements and JSONDecodeError are ValueErrors
        print(f"{program}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False, indent=1) if fmt == "json" else text(report))
    return 0


def _once(pairs: list[tuple]) -> dict:
    """A JSON object whose keys are all different: json keeps the last of two alike (a poem judged twice
    in a dict by number lost its first judgement without a word)."""
    keys = [key for key, _ in pairs]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise BadJudgements(f"{twice!r} is given twice in one object (a poem judged twice?)")
    return dict(pairs)


if __name__ == "__main__":
    sys.exit(main())
