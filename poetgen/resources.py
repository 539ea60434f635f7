"""Finds the files shipped with poetgen: the Tang corpus and the default model.

A source checkout reads them in place; an installed wheel reads them from <prefix>/share/poetgen.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shipped_path(relative: str) -> Path:
    """The first existing copy of a shipped file; the checkout's path when none exists."""
    candidates = [REPO_ROOT / relative]
    for prefix in (sys.prefix, getattr(site, "USER_BASE", None) or "", "/usr/local"):
        if prefix:
            candidates.append(Path(prefix) / "share" / "poetgen" / relative)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]
