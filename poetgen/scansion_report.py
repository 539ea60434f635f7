"""A scansion (poetgen.scansion) as text: a head line with the form, rhyme and 平仄 verdicts, then each line
with its pattern and, in words, what breaks it (三平尾, 孤平, 失粘, 失对, 出韵, 重韵)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetgen.ci_rhyme import ci_rhyme, describe
from poetgen.layout import layout_of
from poetgen.metre import PING, ZE, guarded_fault
from poetgen.prosody import table
from poetgen.tunes import EITHER as EITHER_TONE

if TYPE_CHECKING:
    from poetgen.scansion import Scansion, ScannedLine

FULL_NAMES = {"wujue": "五言绝句", "qijue": "七言绝句", "wulv": "五言律诗", "qilv": "七言律诗"}


def position_counts(lines) -> tuple[int, int]:
    """(fixed positions, those that break) as the lines show them; a line off 粘 or 对 counts one."""
    fixed = sum(sum(tone != EITHER_TONE for tone in line.pattern) for line in lines)
    return fixed, sum(len(line.faults) + line.unglued + line.unpaired for line in lines)


def report(scansion: Scansion) -> str:
    """The scansion as text: a head line, then each line with its pattern and what breaks it."""
    prosody = table()
    if scansion.genre == "shi":
        head = [FULL_NAMES[scansion.form]] + ([scansion.tone_pattern] if scansion.tone_pattern else [])
    else:
        head = [scansion.form, f"variant {scansion.variant}"]
    head.append("layout ok" if scansion.layout_ok else f"layout off ({_layout_fault(scansion)})")
    off = sum(line.rhyme is False for line in scansion.lines)
    if any(line.rhyme is not None for line in scansion.lines):
        head.append(f"rhyme {scansion.rhyme_group} ok" if not off and scansion.rhyme_group else
                    "rhyme ok" if not off else
                    f"rhyme {scansion.rhyme_group}, {off} off" if scansion.rhyme_group else "no shared rhyme")
    if scansion.repeat_ok is False:
        head.append("叠 broken (a repeated phrase differs)")
    if scansion.tone_score is not None:
        fixed, broken = position_counts(scansion.lines)
        head.append(f"平仄 {fixed - broken}/{fixed}")
    elif scansion.layout_ok:
        head.append("仄韵 (古绝): 平仄 not judged (regular verse rhymes 平)")
    if scansion.unknown:
        head.append(f"not in the rhyme table, not judged: {scansion.unknown}")
    rows = [" · ".join(head)]
    width = max(len(line.text) for line in scansion.lines)
    seen = set()
    for i, line in enumerate(scansion.lines):
        notes = [_fault(line, c, prosody) for c in line.faults]
        for fault, broken in (("失粘", line.unglued), ("失对", line.unpaired)):
            if broken:   # the line before: the previous couplet's last (粘), or this couplet's first (对)
                before = scansion.lines[i - 1]
                notes.append(f"{fault}: {line.text[1]} {line.pattern[1]}, the line before's {before.text[1]} "
                             f"{before.pattern[1]}")
        if line.rhyme is not None:
            end = line.read[-2]
            borrowed = scansion.genre == "shi" and line.rhyme and scansion.rhyme_group is not None and \
                scansion.rhyme_group not in prosody.rhyme_groups(end) | prosody.oblique_groups(end)
            notes.insert(0, f"韵 (借邻韵: {line.text[-2]} in {'/'.join(sorted(prosody.rhyme_groups(end)))})" if borrowed
                         else "韵" if line.rhyme else f"韵 ✗ ({_off_rhyme(line.text[-2], end, seen, prosody, scansion)})")
            seen.add(end)
        row = f"{line.text}{'　' * (width - len(line.text))}  {line.pattern}"
        rows.append(row + (f"  {'; '.join(notes)}" if notes else ""))
    return "\n".join(rows)


def _layout_fault(scansion: Scansion) -> str:
    """What a layout that is off has: its lines' lengths against the form's (a shi), or that its clauses
    or marks are not the variant's (a ci)."""
    if scansion.genre == "ci":   # its lines are shown in the variant's clauses, not its own
        return f"its clauses or their marks differ from variant {scansion.variant}'s"
    lengths = "/".join(str(len(line.text) - 1) for line in scansion.lines)
    layout = layout_of(scansion.form)
    return f"lines of {lengths} characters; a {FULL_NAMES[scansion.form]} has {layout.line_count} of " \
           f"{layout.uniform_length}, marked ，。 in turn"


def _fault(line: ScannedLine, column: int, prosody) -> str:
    """Why the character at `column` breaks the line: its tone, and the rule that column guards (三平尾: a
    平 there ends 仄仄仄平平 in three 平; 孤平: a 仄 there leaves 平平仄仄平 one 平 beside the rhyme), or for
    a two-tone character that only its rare reading would fit."""
    ch, asked = line.text[column], line.pattern[column]
    tones = prosody.tones(line.read[column])   # as the checker read it: 峯 as 峰
    rule = guarded_fault(line.pattern, column)
    if tones == {PING, ZE}:
        return f"{ch}: {asked} asked, read {ZE if asked == PING else PING} ({rule or 'a reading poets barely used'})"
    shown = next(iter(tones)) if tones else "? (not in the rhyme table)"
    return f"{ch} reads {shown}, {asked} asked" + (f" ({rule})" if rule and tones else "")


def _off_rhyme(ch: str, read: str, seen: set, prosody, scansion: Scansion) -> str:
    """Why a rhyme line's last character (`read` as the checker read `ch`) is off: rhymed twice (重韵: it
    repeats another rhyme, or is in the poem's group and still off), or in another group (出韵; a ci's
    names the 部 the character is in)."""
    if scansion.genre == "ci":
        parts = "/".join(describe(code) for code in sorted(ci_rhyme().codes(read), key=abs)) or "no 部"
        return f"{ch} rhymes twice: 重韵" if read in seen else f"{ch} in {parts}: off the rhyme"
    if scansion.rhyme_group is None:
        return f"{ch} rhymes twice: 重韵" if read in seen else "off the rhyme"
    groups = prosody.rhyme_groups(read) | prosody.oblique_groups(read)
    if read in seen or scansion.rhyme_group in groups:
        return f"{ch} rhymes twice: 重韵"
    return f"{ch} in {'/'.join(sorted(groups)) or 'no group'}, not {scansion.rhyme_group}: 出韵"
