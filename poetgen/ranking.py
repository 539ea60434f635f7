"""Best-of ranking: each candidate's score, its poem record, and the best candidate of each group.

The score reads what checks.py measured and the model's log-probability; ranking never samples.
"""

from __future__ import annotations

from poetgen.checks import PoemCheck
from poetgen.ci_checks import CiCheck
from poetgen.layout import shown_lines

RHYME_BONUS = 0.5    # added when the rhyming lines share one 平水韵 group
TONE_WEIGHT = 0.5    # times the share of strict positions that fit the 平仄 pattern


def score(logprob: float, check: PoemCheck | CiCheck) -> float:
    """Higher is better: the mean log-probability per sampled character, plus rhyme and tone bonuses."""
    return logprob + (RHYME_BONUS if check.rhyme_ok else 0.0) + (check.tone_score or 0.0) * TONE_WEIGHT


def poem_record(text: str, form: str, logprob: float, check: PoemCheck, tone_pattern: str | None) -> dict:
    """One candidate as the answer shows it, score included."""
    return {"text": text, "lines": shown_lines(text) or [text], "form": form, "logprob": round(logprob, 4),
            "score": round(score(logprob, check), 4), "rhyme_group": check.rhyme_group,
            "tone_pattern": tone_pattern,
            "tone_score": None if check.tone_score is None else round(check.tone_score, 4),
            "layout_ok": check.layout_ok, "rhyme_ok": check.rhyme_ok, "acrostic_ok": check.acrostic_ok}


def ci_record(text: str, logprob: float, check: CiCheck) -> dict:
    """One ci candidate: its clauses, the tune variant and the ci checks (ci_checks.py)."""
    return {"text": text, "lines": shown_lines(text) or [text], "form": "ci", "tune": check.tune,
            "variant": check.variant, "logprob": round(logprob, 4), "score": round(score(logprob, check), 4),
            "rhyme_group": "、".join(check.rhyme_parts or []) or None, "tone_pattern": None,
            "tone_score": None if check.tone_score is None else round(check.tone_score, 4),
            "layout_ok": check.layout_ok, "rhyme_ok": check.rhyme_ok, "acrostic_ok": check.acrostic_ok,
            "checks": {"layout_ok": check.layout_ok, "rhyme_ok": check.rhyme_ok,
                       "rhyme_score": None if check.rhyme_score is None else round(check.rhyme_score, 4),
                       "rhyme_parts": check.rhyme_parts,
                       "tone_score": None if check.tone_score is None else round(check.tone_score, 4),
                       "repeat_ok": check.repeat_ok}}


def add_reverse_scores(candidates: list[dict], backward, weight: float) -> None:
    """Move each candidate's score toward a reverse model's reading of it (poetgen.rerank), weight w:
    (1 - w) × forward mean log-prob + w × reverse mean log-prob + the rhyme and tone terms."""
    for candidate, value in zip(candidates, backward):
        candidate["reverse_logprob"] = round(float(value), 4)
        candidate["score"] = round(float(candidate["score"] + weight * (float(value) - candidate["logprob"])), 4)


def keep_best(candidates: list[dict], n: int, best_of: int) -> list[dict]:
    """The best-scoring candidate of each of the n consecutive groups of best_of candidates."""
    return [max(candidates[i * best_of:(i + 1) * best_of], key=lambda poem: poem["score"]) for i in range(n)]
