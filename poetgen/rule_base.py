"""The interface of a logit rule: `Rule`, the base every rule (rules.py, shi_rules.py, ci_rules.py,
word_rules.py) derives from, and the `Step` the sampling loop shows it. No rule lives here.

It sits apart from rules.py because rules.py builds the rule list from the other rule modules, which
derive from this base: one module for both would be an import cycle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poetgen.layout import Layout as LayoutSpec

NEG = np.float32(-np.inf)   # the logit of a character a rule forbids


@dataclasses.dataclass
class Step:
    pos: int                  # index of the character being chosen (0 = first character of the poem)
    line: np.ndarray          # (batch,) line index of that character
    column: np.ndarray        # (batch,) its column within the line; -1 at a punctuation slot
    layout: LayoutSpec | None   # the fixed layout (poetgen.layout), None for free verse
    history: np.ndarray       # (batch, pos) ids chosen so far


class Rule:
    """A constraint on a sampling step: the loop (sampling.py) asks every rule, in order, whether it
    forces the step (the first that does wins), lets each edit the logits where the model chooses, and
    shows each the ids chosen. A rule overrides only what it needs."""

    essential = False   # essential rules are kept when the others together forbid every character

    def forced(self, step: Step) -> np.ndarray | None:
        """Ids every row must take at this step, or None."""
        return None

    def apply(self, logits: np.ndarray, step: Step) -> None:
        """Edit (batch, vocab) logits in place for a step where the model chooses."""

    def observe(self, chosen: np.ndarray, step: Step) -> None:
        """See the ids chosen at this step (forced or sampled)."""
