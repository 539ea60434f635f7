"""Where an installed poetgen finds its shipped files (the wheel itself is built and installed by .ci/run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from poetgen import resources


@pytest.mark.parametrize("site_packages", ["lib/python3.11/site-packages", "Lib/site-packages",
                                           "lib/python3/dist-packages", "."])   # ".": pip install --target
def test_shipped_files_are_found_under_the_installing_prefix(tmp_path, monkeypatch, site_packages):
    prefix = tmp_path / "venv"
    package = prefix / site_packages / "poetgen"
    package.mkdir(parents=True)
    shipped = prefix / "share" / "poetgen" / "checkpoints" / "default"
    shipped.mkdir(parents=True)
    monkeypatch.setattr(resources, "PACKAGE_DIR", package)
    monkeypatch.setattr(resources, "REPO_ROOT", package.parent)
    assert resources.shipped_path("checkpoints/default") == shipped
    assert resources.shipped_path("corpus/missing.gz") == package.parent / "corpus" / "missing.gz"


def test_a_checkout_reads_its_own_files():
    assert resources.shipped_path("corpus/tang.jsonl.gz") == Path(resources.__file__).resolve().parent.parent \
        / "corpus" / "tang.jsonl.gz"
