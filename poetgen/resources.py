"""Finds the files shipped with poetgen: the corpus (Tang, Song shi, ci) and the default model.

A source checkout reads them in place; an installed wheel reads them from <prefix>/share/poetgen.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SHARE = Path("share") / "poetgen"   # where setup.cfg's data_files put them, under the install prefix


def shipped_path(relative: str) -> Path:
    """The first existing copy of a shipped file; the checkout's path when none exists."""
    candidates = [REPO_ROOT / relative]
    # A wheel's data files go under the prefix of the scheme that installed the package (a venv, --user,
    # the system): an ancestor of <prefix>/lib/pythonX.Y/site-packages/poetgen; with `pip install
    # --target DIR`, DIR itself (DIR/poetgen, DIR/share/poetgen).
    candidates += [parent / SHARE / relative for parent in list(PACKAGE_DIR.parents)[:5]]
    for prefix in (sys.prefix, getattr(site, "USER_BASE", None) or "", "/usr/local"):
        if prefix:
            candidates.append(Path(prefix) / SHARE / relative)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]
