"""The README's TFLite example runs as written against a tiny export, needs neither poetgen nor
TensorFlow, and writes a wujue that passes the checker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

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


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- tflite-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its TFLite example"
    return textwrap.dedent(match.group(1))


def test_readme_tflite_example_writes_a_regular_poem(tiny_bundle, tmp_path):
    from poetgen.bundle import load_bundle
    from poetgen.export import ExportOptions, export

    export(load_bundle(tiny_bundle), ExportOptions(tmp_path / "poet_tflite", "tflite"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BLOCKER + readme_example()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    poem = done.stdout.strip().splitlines()[-1]
    check = check_poem(poem, "wujue", table())
    assert poem.startswith("春风") and check.layout_ok and check.rhyme_ok, poem
    lines = [poem[i:i + 5] for i in range(0, len(poem), 6)]
    assert all(len(set(line)) == 5 for line in lines), poem
