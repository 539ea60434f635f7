"""Best-of reranking by a reverse model: training it, loading it from the bundle, its scores, the choice."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_TRAIN
from poetgen.cli import cli
from poetgen.errors import BadModel
from poetgen.tokenizer import BOUNDARY


def test_reverse_training_reads_poems_backwards(with_reverse, tiny_corpus):
    from poetgen.corpus import is_held_out
    from poetgen.importers import load_corpus

    _, run = with_reverse
    first = next(p.text for p in load_corpus(tiny_corpus) if not is_held_out(p.text, TINY_TRAIN["val_split"]))
    expected = [BOUNDARY] + run.tokenizer.encode(first[::-1]) + [BOUNDARY]
    assert run.train_stream[:len(expected)].tolist() == expected


def test_best_of_scores_with_the_reverse_model(with_reverse):
    from poetgen.bundle import load_bundle
    from poetgen.generate import Generator, PoemRequest
    from poetgen.model import sequence_log_likelihood
    from poetgen.sampling import SampleOptions

    bundle, _ = with_reverse
    generator = Generator.load(bundle)
    candidates = []
    original = generator.finish

    def spy(job, found, elapsed):   # keep every candidate to check the choice
        result = original(job, found, elapsed)
        candidates.extend(found)
        return result

    generator.finish = spy
    result = generator.generate(PoemRequest(n=2, best_of=4, sample=SampleOptions(seed=3)))
    assert len(candidates) == 8 and all("reverse_logprob" in c for c in candidates)
    for i, poem in enumerate(result["poems"]):
        assert poem["score"] == max(c["score"] for c in candidates[4 * i:4 * i + 4])
    reverse = load_bundle(bundle / "reverse")
    for candidate in candidates[:3]:   # the NumPy score is the reverse Keras model's likelihood
        total, count = sequence_log_likelihood(reverse.model, [reverse.tokenizer.encode(candidate["text"][::-1])])
        assert candidate["reverse_logprob"] == pytest.approx(total / count, abs=1e-3)
    plain = Generator.load(bundle).generate(PoemRequest(n=2, best_of=4, reverse_weight=0.0,
                                                        sample=SampleOptions(seed=3)))
    assert all("reverse_logprob" not in p for p in plain["poems"])


def test_cli_best_of_with_reverse_weight(with_reverse):
    bundle, _ = with_reverse
    result = CliRunner().invoke(cli, ["generate", "--model", str(bundle), "--best-of", "3", "--reverse-weight", "1",
                                      "--seed", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    poem = json.loads(result.output)["poems"][0]
    bonus = (0.5 if poem["rhyme_ok"] else 0.0) + 0.5 * (poem["tone_score"] or 0.0)
    assert poem["score"] == pytest.approx(poem["reverse_logprob"] + bonus, abs=2e-4)


def test_a_reverse_model_of_another_tokenizer_is_refused(with_reverse, tmp_path):
    from poetgen.generate import Generator

    bundle, _ = with_reverse
    other = tmp_path / "model"
    shutil.copytree(bundle, other)
    tokenizer = json.loads((other / "reverse" / "tokenizer.json").read_text(encoding="utf-8"))
    chars = tokenizer["chars"]
    tokenizer["chars"] = chars[1] + chars[0] + chars[2:]
    from poetgen.tokenizer import Tokenizer

    tokenizer["hash"] = Tokenizer(tokenizer["chars"]).hash
    (other / "reverse" / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = json.loads((other / "reverse" / "config.json").read_text(encoding="utf-8"))
    (other / "reverse" / "config.json").write_text(json.dumps({**config, "tokenizer_hash": tokenizer["hash"]}),
                                                   encoding="utf-8")
    with pytest.raises(BadModel, match="reverse model's tokenizer"):
        Generator.load(other).reverse_scorer
    result = CliRunner().invoke(cli, ["generate", "--model", str(other), "--best-of", "2"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "reverse" in result.output


def test_a_forward_model_in_the_reverse_folder_is_refused(with_reverse, tmp_path):
    """A forward model put where the reverse one belongs reads every poem the wrong way: refused in one line."""
    from poetgen.generate import Generator

    bundle, _ = with_reverse
    other = tmp_path / "model"
    shutil.copytree(bundle, other, ignore=shutil.ignore_patterns("reverse"))
    shutil.copytree(bundle, other / "reverse", ignore=shutil.ignore_patterns("reverse"))
    with pytest.raises(BadModel, match="not a reverse model"):
        Generator.load(other).reverse_scorer
    result = CliRunner().invoke(cli, ["generate", "--model", str(other), "--best-of", "2"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "not a reverse model" in result.output


def test_reverse_scores_do_not_depend_on_how_the_output_layer_is_blocked(with_reverse, monkeypatch):
    import poetgen.rerank as rerank
    from poetgen.generate import Generator

    bundle, _ = with_reverse
    scorer = Generator.load(bundle).reverse_scorer
    texts = ["白日依山尽，黄河入海流。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "床前明月光，疑是地上霜。"]
    whole = scorer.mean_log_probs(texts, [])
    monkeypatch.setattr(rerank, "OUTPUT_ROWS", 5)        # blocks that cut across steps and poems
    np.testing.assert_allclose(scorer.mean_log_probs(texts, []), whole, rtol=1e-6)
    alone = [scorer.mean_log_probs([text], [])[0] for text in texts]   # shorter poems are padded, not scored
    np.testing.assert_allclose(alone, whole, rtol=1e-5)


def test_a_served_batch_is_read_backwards_at_once_and_ranks_as_alone(with_reverse):
    pytest.importorskip("ai_edge_litert.interpreter")
    from poetgen.batching import Batcher, BatchOptions
    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    bundle, _ = with_reverse
    generator = Generator.load(bundle, int8=True)   # int8: a row's scores are the same in any batch
    calls = []
    original = generator.backward_scores
    generator.backward_scores = lambda prepared, texts: calls.append(len(texts)) or original(prepared, texts)
    requests = [PoemRequest(n=2, best_of=3, sample=SampleOptions(seed=1)),
                PoemRequest(best_of=3, reverse_weight=0.0, sample=SampleOptions(seed=2)),   # forward only
                PoemRequest(best_of=4, sample=SampleOptions(seed=3))]
    batcher = Batcher(generator, BatchOptions(max_wait_ms=0))
    futures = [batcher.submit(generator.prepare(request)) for request in requests]   # queued: one batch
    batcher.start()
    try:
        served = [future.result(timeout=120) for future in futures]
    finally:
        batcher.stop()
    assert batcher.stats.batches == 1 and calls == [2 * 3 + 4]   # one reading, of the ranked requests' rows
    calls.clear()
    for request, result in zip(requests, served):
        alone = generator.generate(request)
        assert [p["text"] for p in result["poems"]] == [p["text"] for p in alone["poems"]]
        assert [p.get("reverse_logprob") for p in result["poems"]] == [p.get("reverse_logprob") for p in alone["poems"]]
    assert "reverse_logprob" in served[0]["poems"][0] and "reverse_logprob" not in served[1]["poems"][0]


def test_many_texts_are_read_backwards_in_shares_with_the_same_scores(with_reverse, monkeypatch):
    pytest.importorskip("ai_edge_litert.interpreter")
    import poetgen.generate as generate
    from poetgen.generate import Generator, PoemRequest

    bundle, _ = with_reverse
    generator = Generator.load(bundle, int8=True)
    texts = [p["text"] for p in generator.generate(PoemRequest(n=10, best_of=1))["poems"]]
    prepared = generator.prepare(PoemRequest())
    whole = generator.reverse_scorer.mean_log_probs(texts, generator.prefix(prepared))
    monkeypatch.setattr(generate, "SHARE_ROWS", 3)                # 10 texts: one share per core
    shared = []
    original = generator._in_shares
    monkeypatch.setattr(generator, "_in_shares", lambda rows, shares, work: shared.append(shares) or
                        original(rows, shares, work))
    # equal but for float32 rounding in the row sums (a row's place in its block of steps)
    np.testing.assert_allclose(generator.backward_scores(prepared, texts), whole, rtol=1e-7)
    assert shared == ([min(generate.cores(), 3)] if generate.cores() > 1 else [])


def test_a_reverse_run_logs_no_backwards_sample_poem(with_reverse):
    """The per-epoch sample of `train --reverse` used to be a forward poem written by a model that reads
    backwards; a reverse model writes none (the forward model still does)."""
    from poetgen.bundle import load_bundle
    from poetgen.generate import sample_from_model

    bundle, _ = with_reverse
    assert sample_from_model(load_bundle(bundle / "reverse").model, bundle / "reverse") is None
    assert sample_from_model(load_bundle(bundle).model, bundle)


def test_a_reverse_model_still_being_trained_leaves_the_forward_model_usable(with_reverse, tmp_path, caplog):
    """While `train --reverse --out BUNDLE/reverse` ran (or after it was killed in its first epoch),
    reverse/ held only its lock: generate, export, quantize and evaluate all failed, "no config.json"."""
    from poetgen.api import quantize
    from poetgen.generate import Generator
    from poetgen.lock import LOCK_NAME

    bundle, _ = with_reverse
    other = tmp_path / "model"
    shutil.copytree(bundle, other, ignore=shutil.ignore_patterns("reverse"))
    (other / "reverse").mkdir()
    (other / "reverse" / LOCK_NAME).write_text("{}", encoding="utf-8")
    assert Generator.load(other).reverse_scorer is None
    assert "holds no finished model yet" in caplog.text
    result = CliRunner().invoke(cli, ["generate", "--model", str(other), "--best-of", "2", "--seed", "1"])
    assert result.exit_code == 0 and result.stdout.count("\n") == 4, result.output
    assert [path.parent.name for path in quantize(other)] == ["model"]
