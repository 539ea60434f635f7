"""scripts/train_jax.py: the JAX trainer computes poetgen's network exactly, on poetgen's own data, and
writes bundles that poetgen reads (the shipped model was trained with it on a GPU)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from conftest import REPO

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
sys.path.insert(0, str(REPO / "scripts"))
import train_jax  # noqa: E402

TINY = ["--embedding-dim", "16", "--batch-size", "8", "--seq-len", "24", "--eval-every", "0",
        "--held-out-poems", "40", "--eval-tokens", "2048", "--minutes", "10"]


@pytest.fixture(scope="module")
def data(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("jax") / "data"
    train_jax.main(["prepare", "--out", str(out), "--corpus", str(tiny_corpus), "--conditioned",
                    "--min-count", "2", "--val-split", "0.05"])
    return out


def test_prepare_writes_what_poetgen_train_would_train_on(data, tiny_corpus):
    from poetgen.tokenizer import Tokenizer
    from poetgen.train import Run, TrainConfig

    run = Run(TrainConfig(out=str(data.parent / "unused"), corpus=str(tiny_corpus), conditioned=True, min_count=2,
                          val_split=0.05))
    run.prepare()
    assert Tokenizer.load(data / "tokenizer.json").hash == run.tokenizer.hash
    np.testing.assert_array_equal(np.load(data / "train.npy"), run.train_stream)
    held = np.load(data / "held_out.npz")
    assert held["lengths"].tolist() == [len(t) for t in run.held_out]
    np.testing.assert_array_equal(held["ids"], np.concatenate(run.held_out))
    assert held["prefix_lengths"].tolist() == [len(p) for p in run.held_out_prefixes]
    reverse = np.load(data / "held_out_reverse.npz")
    first = held["lengths"][0]
    assert reverse["ids"][:first].tolist() == held["ids"][:first][::-1].tolist()
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))
    assert meta["vocab_size"] == run.tokenizer.vocab_size and meta["conditioned"] is True


def test_prepare_with_titles_writes_poetgen_trains_titled_stream(titled_bundle, tmp_path):
    from poetgen.tokenizer import Tokenizer

    model, run = titled_bundle
    out = tmp_path / "titled"
    train_jax.main(["prepare", "--out", str(out), "--corpus", str(model.parent / "tagged.jsonl"), "--conditioned",
                    "--titles", "--min-count", "2", "--val-split", "0.05"])
    assert Tokenizer.load(out / "tokenizer.json").hash == run.tokenizer.hash
    np.testing.assert_array_equal(np.load(out / "train.npy"), run.train_stream)
    assert np.load(out / "held_out.npz")["prefix_lengths"].tolist() == [2] * len(run.held_out)   # untitled
    assert json.loads((out / "meta.json").read_text(encoding="utf-8"))["titles"] is True


@pytest.mark.parametrize("shape", [
    dict(layers=1, units=24, embedding_dim=16, projection=16, tie_embeddings=True),
    dict(layers=2, units=20, embedding_dim=12, projection=0, tie_embeddings=False),
])
def test_forward_is_the_keras_model(shape):
    """Same weights, same logits: gate order, projection, tying and stacking match build_model."""
    from poetgen.model import ModelConfig, build_model

    vocab = 50
    params = train_jax.init_params(train_jax.Shape(vocab, **shape), seed=3)
    rng = np.random.default_rng(0)
    params = {name: [w + rng.normal(0, 0.1, w.shape).astype(np.float32) for w in ws] for name, ws in params.items()}
    model = build_model(ModelConfig(vocab_size=vocab, **shape), dtype="float32")
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(params[layer.name])
    ids = rng.integers(0, vocab, (3, 17)).astype(np.int32)
    expected = np.asarray(model(ids))
    got = np.asarray(train_jax.forward(params, ids, train_jax.Shape(vocab, **shape)))
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_training_learns_and_the_bundle_scores_the_same_in_poetgen(data, tmp_path):
    from poetgen.bundle import load_bundle
    from poetgen.model import sequence_log_likelihood

    weights = tmp_path / "w"
    train_jax.main(["train", "--data", str(data), "--out", str(weights), "--units", "32", "--projection", "16",
                    "--tie-embeddings", "--max-steps", "40", "--learning-rate", "1e-2", *TINY])
    record = json.loads((weights / "train.json").read_text(encoding="utf-8"))
    first, last = record["log"][0]["held_out_perplexity"], record["log"][-1]["held_out_perplexity"]
    assert record["steps"] == 40 and last < 0.5 * first
    bundle = tmp_path / "bundle"
    train_jax.main(["bundle", "--data", str(data), "--weights", str(weights / "weights.npz"), "--out", str(bundle)])
    loaded = load_bundle(bundle)
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["tie_embeddings"] and config["train"]["conditioned"] and config["progress"]["steps"] == 40
    # poetgen's own held-out scoring of the same 40 poems gives the trainer's perplexity (float16 weights)
    held = np.load(data / "held_out.npz")
    starts = np.cumsum(held["lengths"]) - held["lengths"]
    prefix_starts = np.cumsum(held["prefix_lengths"]) - held["prefix_lengths"]
    chosen = np.sort(np.random.default_rng(0).permutation(len(held["lengths"]))[:40])
    poems = [held["ids"][starts[i]:starts[i] + held["lengths"][i]].tolist() for i in chosen]
    prefixes = [held["prefix_ids"][prefix_starts[i]:prefix_starts[i] + held["prefix_lengths"][i]].tolist()
                for i in chosen]
    total, count = sequence_log_likelihood(loaded.model, poems, prefixes=prefixes)
    assert math.exp(-total / count) == pytest.approx(record["best_held_out_perplexity"], rel=2e-3)


def test_init_continues_from_saved_weights(data, tmp_path):
    first = tmp_path / "first"
    train_jax.main(["train", "--data", str(data), "--out", str(first), "--reverse", "--units", "16",
                    "--projection", "0", "--max-steps", "20", "--learning-rate", "1e-2", *TINY])
    second = tmp_path / "second"
    train_jax.main(["train", "--data", str(data), "--out", str(second), "--reverse", "--units", "16",
                    "--projection", "0", "--max-steps", "1", "--learning-rate", "1e-9",
                    "--init", str(first / "weights.npz"), *TINY])
    before = json.loads((first / "train.json").read_text(encoding="utf-8"))["best_held_out_perplexity"]
    after = json.loads((second / "train.json").read_text(encoding="utf-8"))["log"][0]["held_out_perplexity"]
    assert after == pytest.approx(before, rel=1e-3)
    bundle = tmp_path / "bundle"
    train_jax.main(["bundle", "--data", str(data), "--weights", str(second / "weights.npz"), "--out", str(bundle),
                    "--earlier", str(first / "train.json")])
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    # progress counts each stage up to the weights it kept (its best scoring), not to its last step: the
    # second stage's one step at a rate of 1e-9 scored no better than its start, so its step 0 was kept
    kept = [json.loads((run / "train.json").read_text(encoding="utf-8"))["best_step"] for run in (first, second)]
    assert kept[1] == 0
    assert config["train"]["reverse"] is True and config["progress"]["steps"] == sum(kept)
    assert len(config["train"]["stages"]) == 2


def test_init_reads_a_bundle_directory_as_the_weights_it_was_written_from(data, tmp_path):
    """--init BUNDLE (the shipped model itself, read with h5py alone) gives exactly the float16 weights
    the bundle was written from, and config.json of a continued bundle keeps the stages before it."""
    weights = tmp_path / "w"
    train_jax.main(["train", "--data", str(data), "--out", str(weights), "--units", "32", "--projection", "16",
                    "--tie-embeddings", "--max-steps", "3", "--learning-rate", "1e-2", *TINY])
    bundle = tmp_path / "bundle"
    train_jax.main(["bundle", "--data", str(data), "--weights", str(weights / "weights.npz"), "--out", str(bundle)])
    saved, read = train_jax.load_weights(weights / "weights.npz"), train_jax.initial_weights(bundle)
    assert sorted(read) == sorted(saved) == ["embedding", "projection", "rnn_0"]
    for name in saved:
        assert len(read[name]) == len(saved[name])
        for a, b in zip(read[name], saved[name]):
            np.testing.assert_array_equal(a, b)
    more = tmp_path / "more"
    train_jax.main(["train", "--data", str(data), "--out", str(more), "--units", "32", "--projection", "16",
                    "--tie-embeddings", "--max-steps", "2", "--learning-rate", "1e-2", "--init", str(bundle), *TINY])
    continued = tmp_path / "continued"
    train_jax.main(["bundle", "--data", str(data), "--weights", str(more / "weights.npz"), "--out", str(continued),
                    "--earlier-bundle", str(bundle)])
    before = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    after = json.loads((continued / "config.json").read_text(encoding="utf-8"))
    assert len(after["train"]["stages"]) == 2 and after["train"]["stages"][0] == before["train"]["stages"][0]
    assert after["progress"]["steps"] >= before["progress"]["steps"]
    assert after["log"][:len(before["log"])] == before["log"]


def test_style_positions_give_each_style_its_share_of_windows():
    boundary, tang, song, ci = 2, 10, 11, 12
    # three poems: tang (5 ids), song (4), ci (3); each starts at a boundary followed by its style control
    stream = np.array([boundary, tang, 20, 21, 22, boundary, song, 23, 24, boundary, ci, 25, boundary], np.int32)
    ids = {"tang": tang, "song": song, "ci": ci}
    names, groups, shares = train_jax.style_positions(stream, boundary, ids, {"tang": 0.5})
    assert names == ["tang", "song", "ci"]
    assert [g.tolist() for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    np.testing.assert_allclose(shares, [0.5, 0.5 * 4 / 7, 0.5 * 3 / 7])   # the rest shared by size
    names, groups, shares = train_jax.style_positions(stream, boundary, ids, {"tang": 0.2, "song": 0.8})
    assert names == ["tang", "song"] and shares.tolist() == pytest.approx([0.2, 0.8])   # ci gets nothing
    for bad in ({"tang": 1.2}, {"han": 0.5}, {"tang": -0.1, "song": 0.5}):
        with pytest.raises(SystemExit):
            train_jax.style_positions(stream, boundary, ids, bad)
    # drawn windows follow the shares
    long = np.tile(stream, 200)
    names, groups, shares = train_jax.style_positions(long, boundary, ids, {"tang": 0.7, "song": 0.3})
    windows = np.asarray(train_jax.draw_windows(jax.numpy.asarray(long), train_jax.window_sampler(groups, shares),
                                                jax.random.PRNGKey(0), 4000, 3))
    # a window's style is its first id's poem's: the control itself, one of its characters, or (at a
    # boundary) the control that follows
    first = np.where(windows[:, 0] == boundary, windows[:, 1], windows[:, 0])
    tang_rows, song_rows = np.isin(first, [tang, 20, 21, 22]), np.isin(first, [song, 23, 24])
    assert (tang_rows | song_rows).all()   # ci was given no share
    assert abs(tang_rows.mean() - 0.7) < 0.03


def test_select_style_keeps_the_weights_that_score_best_on_that_style(data, tmp_path):
    run = tmp_path / "tang"
    train_jax.main(["train", "--data", str(data), "--out", str(run), "--units", "16", "--projection", "0",
                    "--max-steps", "6", "--learning-rate", "1e-2", "--style-weights", "tang=0.6",
                    "--select-style", "tang", *TINY])
    record = json.loads((run / "train.json").read_text(encoding="utf-8"))
    scored = [entry for entry in record["log"] if "tang_perplexity" in entry]
    assert len(scored) == len(record["log"]) == 7
    best = min(scored, key=lambda entry: entry["tang_perplexity"])
    assert record["best_tang_perplexity"] == best["tang_perplexity"]
    assert record["best_held_out_perplexity"] == best["held_out_perplexity"]
    assert record["style_weights"] == "tang=0.6" and record["select_style"] == "tang"
    with pytest.raises(SystemExit, match="no style han"):
        train_jax.main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--units", "16",
                        "--projection", "0", "--max-steps", "1", "--select-style", "han", *TINY])


def test_the_bundle_counts_a_stage_up_to_the_step_whose_weights_were_saved():
    """The log rounds perplexity to two decimals: two scorings equal there must not make the first one
    pass for the saved one (the weights of the later, better one were saved)."""
    record = {"log": [{"step": 0, "tokens": 0, "seconds": 0.0, "held_out_perplexity": 60.0},
                      {"step": 1000, "tokens": 10, "seconds": 60.0, "held_out_perplexity": 54.6},
                      {"step": 2000, "tokens": 20, "seconds": 120.0, "held_out_perplexity": 54.6}],
              "best_step": 2000}
    chosen = train_jax.chosen_point(record)
    assert (chosen["steps"], chosen["tokens"], chosen["seconds"]) == (2000, 20, 120.0)
    del record["best_step"]   # a train.json of an earlier stage: its best scoring
    assert train_jax.chosen_point(record)["steps"] == 1000


def test_average_after_scores_and_saves_the_mean_of_the_iterates(data, tmp_path):
    """--average-after 0.5 over 10 steps: from the fifth step on, the model scored (and saved) is the
    running mean of the weights after each step; a mean of one iterate is that iterate."""
    run = tmp_path / "avg"
    train_jax.main(["train", "--data", str(data), "--out", str(run), "--units", "16", "--projection", "0",
                    "--max-steps", "10", "--learning-rate", "1e-2", "--average-after", "0.5", *TINY])
    record = json.loads((run / "train.json").read_text(encoding="utf-8"))
    averaged = [entry for entry in record["log"] if "averaged_steps" in entry]
    assert [entry["averaged_steps"] for entry in averaged] == [1, 2, 3, 4, 5]
    assert [entry["step"] for entry in averaged] == [6, 7, 8, 9, 10]
    assert averaged[0]["held_out_perplexity"] == pytest.approx(averaged[0]["last_iterate_perplexity"], rel=1e-4)
    assert averaged[-1]["held_out_perplexity"] != averaged[-1]["last_iterate_perplexity"]
    assert record["average_after"] == 0.5
    for bad in ("1", "-0.1"):   # 1 or more never averaged, a negative share averaged from the first step
        with pytest.raises(SystemExit, match="--average-after must be in"):
            train_jax.main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--units", "16",
                            "--projection", "0", "--max-steps", "1", "--average-after", bad, *TINY])
    # the weights saved are the scored ones: the mean, where the mean scored best
    bundle = tmp_path / "bundle"
    train_jax.main(["bundle", "--data", str(data), "--weights", str(run / "weights.npz"), "--out", str(bundle)])
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    best = min(record["log"], key=lambda entry: entry["held_out_perplexity"])
    assert config["metrics"]["best_val_perplexity"] == best["held_out_perplexity"]
    assert config["progress"]["steps"] == best["step"]
