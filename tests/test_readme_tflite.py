"""The README's TFLite examples run as written against tiny exports, need neither poetgen nor TensorFlow:
the whole wujue passes the checker after the control prefix the CLI feeds, and the prefix example
builds the CLI's prefixes."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from poetgen.checks import check_poem
from poetgen.prosody import table

README = Path(__file__).resolve().parent.parent / "README.md"
# Runs before the example: importing poetgen or tensorflow in it fails.
BLOCKER = textwrap.dedent("""
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("poetgen", "tensorflow", "keras"):
                raise ImportError(name + " must not be needed")

    sys.meta_path.insert(0, Blocked())
""")
# Runs before the example too: the ids it steps the model with, printed last on stderr.
RECORDER = textwrap.dedent("""
    import atexit
    from ai_edge_litert import interpreter as _lite

    _fed, _runner = [], _lite.Interpreter.get_signature_runner

    class _Recording:
        def __init__(self, run):
            self.run = run

        def __getattr__(self, name):
            return getattr(self.run, name)

        def __call__(self, **inputs):
            _fed.append(int(inputs["ids"][0][0]))
            return self.run(**inputs)

    _lite.Interpreter.get_signature_runner = lambda self, *a, **k: _Recording(_runner(self, *a, **k))
    atexit.register(lambda: print("FED", _fed, file=sys.stderr))
""")


def readme_example(marker: str = "tflite-example") -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"the README lost its {marker} block"
    return textwrap.dedent(match.group(1))


def run_example(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def conditioned_bundle(tmp_path_factory) -> Path:
    """An untrained conditioned bundle (random weights) with one tune token, so a tune without one
    reads <anytune>."""
    from conftest import shipped_records
    from poetgen.bundle import save_bundle
    from poetgen.control import control_vocabulary
    from poetgen.model import ModelConfig, build_model
    from poetgen.tokenizer import Tokenizer

    texts = [r["text"] for r in shipped_records(300)]
    tokenizer = Tokenizer.build(texts, controls=control_vocabulary([], 0) + ["<tune:浣溪沙>"])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, units=16, embedding_dim=8)
    path = tmp_path_factory.mktemp("conditioned") / "bundle"
    save_bundle(path, build_model(config), tokenizer, {"model": dataclasses.asdict(config)})
    return path


def export_tflite(bundle: Path, where: Path) -> None:
    from poetgen.bundle import load_bundle
    from poetgen.export import ExportOptions, export

    export(load_bundle(bundle), ExportOptions(where / "poet_tflite", "tflite"))


def cli_prefix(bundle: Path, **request) -> list[int]:
    from poetgen.generate import Generator, PoemRequest

    generator = Generator.load(bundle)
    return generator.prefix(generator.prepare(PoemRequest(**request)))


@pytest.mark.parametrize("conditioned", [False, True])
def test_readme_tflite_example_writes_a_regular_poem_after_the_cli_s_prefix(tiny_bundle, conditioned_bundle,
                                                                            tmp_path, conditioned):
    """The example fed no control prefix, so the shipped (conditioned) model's TFLite poems were not the
    CLI's: it feeds the boundary and the ids `poetgen generate --form wujue` feeds, from tables.npz."""
    bundle = conditioned_bundle if conditioned else tiny_bundle
    export_tflite(bundle, tmp_path)
    done = run_example(BLOCKER + RECORDER + readme_example(), tmp_path)
    poem = done.stdout.strip().splitlines()[-1]
    check = check_poem(poem, "wujue", table())
    assert poem.startswith("春风") and check.layout_ok and check.rhyme_ok, poem
    lines = [poem[i:i + 5] for i in range(0, len(poem), 6)]
    assert all(len(set(line)) == 5 for line in lines), poem
    fed = ast.literal_eval(done.stderr.strip().splitlines()[-1].removeprefix("FED "))
    prefix = cli_prefix(bundle, form="wujue")
    assert len(prefix) == (2 if conditioned else 0)
    assert fed[:len(prefix) + 1] == [2, *prefix]
    assert len(fed) == len(prefix) + len(poem)   # then every character of the poem but the last


def test_readme_tflite_prefix_example_builds_the_cli_s_prefixes(conditioned_bundle, tmp_path):
    export_tflite(conditioned_bundle, tmp_path)
    done = run_example(BLOCKER + readme_example("tflite-prefix-example"), tmp_path)
    printed = ast.literal_eval("(" + done.stdout.strip().splitlines()[-1].replace("] [", "], [") + ")")
    expected = (cli_prefix(conditioned_bundle, form="qilv", style="song"), cli_prefix(conditioned_bundle, tune="浣溪沙"),
                cli_prefix(conditioned_bundle, tune="蝶恋花"))
    assert list(printed) == list(expected)
    assert expected[1] != expected[2]   # the tune's own token, and the generic one
