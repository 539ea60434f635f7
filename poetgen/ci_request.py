"""The checks of a ci request (a tune's variant) that poetgen.request runs in `prepare`: what a prompt or
acrostic fixes at the tune's rhyme slots must leave each rhyme group a 部, and an acrostic head where a 叠
repeats an earlier character must be that character. Raised as BadInput naming the field.
"""

from __future__ import annotations

import bisect
import itertools

from poetgen.errors import BadInput
from poetgen.tunes import Variant


def check_ci_prompt_rhymes(prompt: str, acrostic: str, variant: Variant, shown: str = "") -> None:
    """The characters a prompt (then an acrostic too) fixes at rhyme slots of a tune must leave each rhyme
    group a 部 of the group's tone that they all share (a 叶 slot's in the other tone), as check_ci reads
    them within one 部: the rule could not rhyme the rest with them (--no-rhyme keeps it; the checker also
    accepts 十灰's two halves and 通押, and the message says so). A character the rhyme table does not know
    is left out, as the rule leaves it."""
    from poetgen.ci_checks import han_chars

    fixed = dict(enumerate(han_chars(prompt)))
    heads = itertools.accumulate(variant.layout.line_lengths[:-1], initial=0)   # each clause's first character
    for what, given in (("prompt", fixed), ("acrostic", {**fixed, **dict(zip(heads, acrostic))})):
        slot = _ci_rhyme_conflict(given, variant)
        if slot is not None:
            raise BadInput(f"{what} puts {given[slot.pos]!r} at character {slot.pos + 1}, a rhyme of {shown or variant.tune} "
                           f"that cannot rhyme with the tune's tone there or with the rhymes given before it"
                           f"{_split_group_note(given, variant, slot)}; change it, or pass --no-rhyme (rhyme: false) "
                           f"to keep it", field=what)


def _split_group_note(fixed: dict, variant: Variant, slot) -> str:
    """Why a rhyme a reader accepts is refused, when it is the 词林正韵's cut of one 平水韵 group: 杯 and 台
    are both 十灰, which the 词林正韵 puts in 第三部 and 第五部; or two neighbouring 部 Song poets rhymed
    together (通押: 合 and 缺), which the checker accepts; the rules rhyme a ci within one 部."""
    from poetgen.ci_checks import HALVES_RHYMED_AS_ONE, neighbouring_bu
    from poetgen.ci_rhyme import LEVEL_CODES, codes_for_group, describe, usual_ci_rhyme
    from poetgen.prosody import PING

    rhyme = usual_ci_rhyme()
    before = [fixed[s.pos] for s in variant.steered_rhymes if s.group == slot.group and s.pos < slot.pos
              and s.pos in fixed and not s.xie]
    chars = [*before, fixed[slot.pos]]
    allowed = codes_for_group(variant, slot.group)
    sets = {k: rhyme.codes(ch) & allowed for k, ch in enumerate(chars)}
    if before and not slot.xie and all(sets.values()) and neighbouring_bu(sets, [slot]):
        parts = "、".join(f"{ch} {'/'.join(describe(c) for c in sorted(sets[k]))}" for k, ch in enumerate(chars))
        return (f" ({'、'.join(dict.fromkeys(chars))} rhyme in neighbouring 部 (通押), which the checker accepts, "
                f"but the rules rhyme a ci within one 部 of the 词林正韵: {parts})")
    level = [rhyme.codes(ch) & LEVEL_CODES for ch in chars]   # their 平 部
    common = set.intersection(*({g for g in rhyme.groups_of.get(ch, ()) if g[0] == PING} for ch in chars))
    common &= set(HALVES_RHYMED_AS_ONE)   # what the checker accepts (十灰), though the rules cannot write it
    if slot.xie or not before or not common or not codes_for_group(variant, slot.group) <= LEVEL_CODES \
            or not all(level) or set.intersection(*map(set, level)):
        return ""   # not a 平 rhyme, or not one the 词林正韵's cut alone refuses
    name = HALVES_RHYMED_AS_ONE[min(common)]
    parts = "、".join(f"{ch} {'/'.join(describe(c) for c in sorted(codes))}"
                     for ch, codes in dict(zip(chars, level)).items())
    return (f" ({'、'.join(dict.fromkeys(chars))} share {name} in the 平水韵, but the rules rhyme a ci within one "
            f"部 of the 词林正韵: {parts})")


def _ci_rhyme_conflict(fixed: dict, variant: Variant):
    """The first rhyme slot whose fixed character (`fixed`: position -> character) leaves its group no
    shared 部, or None."""
    from poetgen.ci_rhyme import codes_for_group, flip, usual_ci_rhyme

    rhyme = usual_ci_rhyme()   # the readings the rules use (VocabularyTables.ci_rhyme), as the graph does
    for group in range(variant.group_count):
        slots = [s for s in variant.steered_rhymes if s.group == group and s.pos in fixed]   # 转应's source too
        given = [frozenset(flip(c) if s.xie else c for c in rhyme.codes(fixed[s.pos])) for s in slots
                 if rhyme.codes(fixed[s.pos])]
        shared = set(codes_for_group(variant, group, given))   # an 入声 group rhymed in 上去 by the user: 仄
        for slot in slots:
            codes = rhyme.codes(fixed[slot.pos])
            shared &= {flip(c) if slot.xie else c for c in codes} if codes else shared
            if not shared:
                return slot
    return None


def check_acrostic_repeats(acrostic: str, prompt: str, variant: Variant, shown: str = "") -> None:
    """A ci's acrostic head where a 叠 repeats an earlier character (如梦令's 争渡。争渡, 忆秦娥's 秦楼月) must be
    that character as the prompt or the acrostic fixes it: the rules kept the head and broke the 叠 without a
    word (repeat_ok said so afterwards). Where nothing fixes that character the rules write it freely before
    the head, so the two could meet only by chance: refused too (a prompt that writes it makes both hold).
    A head the prompt writes is the prompt's text, kept as a prompt's characters at a 叠 are."""
    from poetgen.ci_checks import han_chars

    written = han_chars(prompt)
    starts = list(itertools.accumulate(variant.line_lengths, initial=0))   # clause i's first character
    given = {**dict(zip(starts, acrostic)), **dict(enumerate(written))}
    sources = dict(variant.repeats)
    for clause, (head, char) in enumerate(zip(starts, acrostic)):
        if head < len(written) or head not in sources:
            continue
        source = sources[head]
        while source not in given and source in sources:   # a 叠 that repeats a 叠 the request leaves free
            source = sources[source]
        if given.get(source) != char:
            what = f"{given[source]!r}: give {given[source]!r} there" if source in given else \
                f"which nothing fixes: write {char!r} there too with a prompt that reaches it"
            raise BadInput(f"acrostic puts {char!r} at the head of clause {clause + 1} of {shown or variant.tune}, a 叠 "
                           f"that repeats character {source + 1} (clause {bisect.bisect_right(starts, source)}), "
                           f"{what}, or end the acrostic before clause {clause + 1}", field="acrostic")
