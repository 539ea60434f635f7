"""Shared fixtures: a tiny corpus cut from the shipped one, and a tiny model trained on it once."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "corpus" / "tang.jsonl.gz"


def shipped_records(count: int, forms=("wujue", "qijue", "wulv", "qilv")) -> list[dict]:
    records = []
    with gzip.open(SHIPPED, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["form"] in forms:
                records.append(record)
                if len(records) == count:
                    break
    return records


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(1500)),
                    encoding="utf-8")
    return path


def wait_until(condition, what: str = "the awaited event", timeout: float = 60, poll: float = 0.01) -> None:
    """Poll `condition` until it holds; fail naming `what` after a generous `timeout` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened within {timeout:g} s")
        time.sleep(poll)


def kill_after_save(process, saved_step, steps: int) -> int:
    """Kill a training `process` once `saved_step()` reaches `steps` (or it exited); the step saved then."""
    try:
        wait_until(lambda: saved_step() >= steps or process.poll() is not None, "a save within epoch 1", 240,
                   poll=0.1)
    finally:
        process.kill()
        process.wait()
    return saved_step()


def assert_h5py_bundle_steps_like_keras(path, ids):
    """The bundle's weights read with h5py, stepped by NumpyStepper, give the Keras-loaded model's logits."""
    import numpy as np

    from poetgen.bundle import load_bundle
    from poetgen.stepper import NumpyStepper

    keras_bundle, h5py_bundle = load_bundle(path), load_bundle(path, keras=False)
    assert h5py_bundle.model is None and h5py_bundle.weights
    full = np.asarray(keras_bundle.model(ids))
    stepper = NumpyStepper(h5py_bundle.weights, h5py_bundle.model_config)
    state = stepper.initial_state(ids.shape[0])
    for t in range(ids.shape[1]):
        logits, state = stepper.step(ids[:, t], state)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)
    return h5py_bundle


TINY_TRAIN = dict(units=48, embedding_dim=32, batch_size=16, seq_len=32, epochs=2, steps_per_epoch=60,
                  learning_rate=1e-2, warmup_steps=10, val_split=0.05, min_count=2, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_corpus, tmp_path_factory) -> Path:
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    from poetgen.train import TrainConfig, train

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    train(TrainConfig(out=str(out), corpus=str(tiny_corpus), **TINY_TRAIN))
    return out


@pytest.fixture(scope="session")
def generator(tiny_bundle):
    from poetgen.generate import Generator

    return Generator.load(tiny_bundle)


@pytest.fixture(scope="session")
def with_reverse(tiny_bundle, tiny_corpus, tmp_path_factory):
    """A copy of the tiny bundle with a reverse model in reverse/ (best-of ranking, polishing), and that
    model's training run."""
    import shutil

    from poetgen.train import TrainConfig, train

    bundle = tmp_path_factory.mktemp("reranked") / "model"
    shutil.copytree(tiny_bundle, bundle)
    run = train(TrainConfig(out=str(bundle / "reverse"), corpus=str(tiny_corpus), reverse=True,
                            **{**TINY_TRAIN, "epochs": 1}))
    return bundle, run


def tagged_corpus(path):
    """A corpus file of Tang shi as shipped, and shipped poems tagged as Song shi or as ci of two tunes."""
    records = shipped_records(900)
    for i, record in enumerate(records):
        if i % 3 == 1:
            record.update(dynasty="song", genre="shi")
        elif i % 3 == 2:
            record.update(dynasty="song", genre="ci", form="ci", tune="浣溪沙" if i % 2 else "蝶恋花")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def train_tagged(tmp_path_factory, name: str, **options):
    """A conditioned tiny model (and its run) trained on tagged_corpus in a fresh folder `name`."""
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    from poetgen.train import TrainConfig, train

    root = tmp_path_factory.mktemp(name)
    corpus = tagged_corpus(root / "tagged.jsonl")
    out = root / "model"
    run = train(TrainConfig(out=str(out), corpus=str(corpus), conditioned=True, sampled_softmax=32, **options,
                            **{**TINY_TRAIN, "epochs": 1}))
    return out, run


@pytest.fixture(scope="session")
def titled_bundle(tmp_path_factory):
    """A conditioned tiny model trained with titles (poetgen train --conditioned --titles), and its run."""
    return train_tagged(tmp_path_factory, "titled", titles=True)
