"""poetgen: a character-level generator of classical Chinese poetry.

    import poetgen
    poet = poetgen.load()                          # the shipped model (or load("path/to/bundle"))
    for poem in poet.generate("白日", form="qijue", n=2, seed=7):
        print(poem.text, poem.rhyme_ok, poem.score)

Importing the package is cheap (no TensorFlow, Keras or jieba): each stage loads what it needs when
it runs.
"""

from __future__ import annotations

__version__ = "0.1.0"

import sys
import types
from typing import TYPE_CHECKING

from poetgen.api import Poet, TrainResult, check, evaluate, export, load, train
from poetgen.errors import BadCorpus, BadInput, BadModel, InUse, OutputError, OutputExists, PoetgenError
from poetgen.poems import Poem, Poems

if TYPE_CHECKING:   # what a type checker sees of the lazy names below ("X as X": exported, mypy --strict)
    from poetgen.evaluate import EvalOptions as EvalOptions
    from poetgen.export import ExportOptions as ExportOptions
    from poetgen.request import PoemRequest as PoemRequest
    from poetgen.sampling import SampleOptions as SampleOptions
    from poetgen.scansion import Scansion as Scansion
    from poetgen.train import TrainConfig as TrainConfig

# The option dataclasses live with their stages; they are imported on first use (PEP 562).
_LAZY = {"PoemRequest": "poetgen.request", "SampleOptions": "poetgen.sampling", "TrainConfig": "poetgen.train",
         "ExportOptions": "poetgen.export", "EvalOptions": "poetgen.evaluate", "Scansion": "poetgen.scansion"}

# Spelled out: type checkers read __all__ only as a literal list (`*_LAZY` hid the lazy names from them).
__all__ = ["__version__", "load", "Poet", "Poem", "Poems", "train", "TrainResult", "export", "evaluate", "check",
           "PoetgenError", "BadInput", "BadCorpus", "BadModel", "OutputExists", "InUse", "OutputError",
           "PoemRequest", "SampleOptions", "TrainConfig", "ExportOptions", "EvalOptions", "Scansion"]


class _Package(types.ModuleType):
    """`poetgen.train`, `.export` and `.evaluate` stay the API functions when the stage modules of the
    same names are imported (the import system would bind the modules over them). Reach a stage
    module with `from poetgen.train import TrainConfig` or `importlib.import_module("poetgen.train")`."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("train", "export", "evaluate") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'poetgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
