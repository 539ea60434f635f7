"""`poetgen evaluate --tune …`: how the ci a model writes keep their tunes (layout, rhyme, 平仄), with the
rules and without them (the model alone). It measures; it never trains. Poems come from the Generator.
"""

from __future__ import annotations

from typing import Callable

from poetgen.ci_checks import check_ci
from poetgen.request import PoemRequest
from poetgen.sampling import SampleOptions
from poetgen.tunes import resolve, tune_table


def _share(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _compliance(generator, variant, request: PoemRequest) -> dict:
    result = generator.generate(request)
    prosody, rhyme = generator.tables.checking, generator.tables.checking_ci_rhyme
    checks = [check_ci(p["text"], variant, prosody, rhyme) for p in result["poems"]]
    slots = [ok for c in checks for ok in (c.rhyme_positions or [])]
    tones = [ok for c in checks for ok in (c.tone_positions or [])]
    return {"layout": _share([c.layout_ok for c in checks]),
            "rhyme_poems": _share([bool(c.rhyme_ok) for c in checks]),
            "rhyme_positions": _share(slots), "tone_positions": _share(tones),
            "ms_per_poem": result["ms_per_poem"]}


def tune_report(generator, tunes: list[str], samples: int, seed: int,
                advance: Callable[[int], None] = lambda n: None) -> dict:
    """Per tune asked (its usual variant, or the one `name#k` names; keyed so, each once): compliance of
    `samples` ci with rhyme and --tone, and of as many with the layout alone (no rhyme, tone or
    repetition rule: the model alone)."""
    report = {"samples": samples, "seed": seed, "knows_ci": generator.knows_ci(), "tunes": {}}
    for name in tunes:
        variant = resolve(name)
        usual = tune_table().get(variant.tune).usual   # a bare name is the tune's usual variant (tunes.Tune.usual)
        key = variant.tune if variant.number == usual else f"{variant.tune}#{variant.number}"
        if key in report["tunes"]:   # the same variant by another name (huanxisha, 浣溪沙)
            advance(2 * samples)
            continue
        options = SampleOptions(seed=seed)
        ruled = _compliance(generator, variant, PoemRequest(tune=name, tone=True, n=samples, sample=options))
        alone = _compliance(generator, variant, PoemRequest(tune=name, rhyme=False, tone=False, no_repeat=False,
                                                            best_of=1, n=samples, sample=options))
        report["tunes"][key] = {"variant": variant.number, "with_rules": ruled, "model_alone": alone}
        advance(2 * samples)
    return report


def format_tune_text(report: dict) -> str:
    rows = [f"{report['samples']} ci per tune, seed {report['seed']}; the model "
            + ("was trained on ci" if report["knows_ci"] else "was NOT trained on ci (no <ci> control token)"),
            "tune        rules   layout  rhyme/poem  rhyme/pos  平仄/pos  ms/poem"]
    for tune, values in report["tunes"].items():
        for label, key in (("rules", "with_rules"), ("alone", "model_alone")):
            v = values[key]
            rows.append(f"{tune:<10}  {label:<6}  {_fmt(v['layout'])} {_fmt(v['rhyme_poems'])}     "
                        f"{_fmt(v['rhyme_positions'])}    {_fmt(v['tone_positions'])}  {v['ms_per_poem']:.1f}")
    rows.append("rules: rhyme by 词林正韵 and --tone; alone: the tune's layout only (no rhyme, 平仄 or repeat rule)")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return f"{value:<6.3f}" if value is not None else "n/a   "
