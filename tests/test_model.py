import numpy as np
import pytest

from conftest import assert_h5py_bundle_steps_like_keras
from poetgen.model import CELLS, ModelConfig, build_model, build_step_model
from poetgen.stepper import NumpyStepper


def test_h5py_loaded_bundle_steps_like_the_keras_loaded_model(tiny_bundle):
    assert_h5py_bundle_steps_like_keras(tiny_bundle, np.array([[2, 5, 6, 7, 8], [2, 9, 4, 11, 3]], np.int32))


OPTIONS = {   # the plain model and every newer option, alone and combined: each steps exactly like Keras
    "plain": dict(),
    "projection": dict(projection=6),
    "tied": dict(tie_embeddings=True, units=8),
    "tied_projection": dict(tie_embeddings=True, projection=8),
    "awd_dropouts": dict(dropout=0.2, embedding_dropout=0.1, recurrent_dropout=0.2, projection=8,
                         tie_embeddings=True),
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_step_forms_match_the_full_model(cell, option):
    settings = {"units": 12, **OPTIONS[option]}
    config = ModelConfig(vocab_size=30, cell=cell, layers=2, embedding_dim=8, **settings)
    model = build_model(config)
    ids = np.random.default_rng(0).integers(3, 30, (3, 6)).astype(np.int32)
    full = np.asarray(model(ids, training=False))
    stepper, step_model = NumpyStepper.from_model(model, config), build_step_model(model, config)
    state = stepper.initial_state(3)
    keras_state = [np.zeros((3, config.units), np.float32) for _ in state]
    for t in range(6):
        logits, state = stepper.step(ids[:, t], state)
        outputs = step_model([ids[:, t:t + 1]] + keras_state)
        keras_state = [np.asarray(s) for s in outputs[1:]]
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)
        np.testing.assert_allclose(np.asarray(outputs[0]), full[:, t], atol=1e-4)
    top = stepper.top(state)
    picks = np.array([4, 9, 17])
    np.testing.assert_allclose(stepper.logit_at(state, picks), logits[np.arange(3), picks], atol=1e-4)
    assert (config.tie_embeddings and "logits" not in [l.name for l in model.layers]) or not config.tie_embeddings
    assert top.shape[1] == config.output_inputs + 1


def test_tied_output_is_the_embedding_table():
    config = ModelConfig(vocab_size=30, units=8, embedding_dim=8, tie_embeddings=True)
    model = build_model(config)
    table = model.get_layer("embedding").get_weights()[0]
    assert len(model.get_layer("embedding").get_weights()) == 1   # no separate output matrix
    h = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    step = build_step_model(model, config)
    ids = np.array([[5], [6]], np.int32)
    logits, h_new, c_new = (np.asarray(o) for o in step([ids, h, h]))
    np.testing.assert_allclose(logits, h_new @ table.T, atol=1e-5)


def test_tied_and_projected_models_reload_with_safe_mode(tmp_path):
    import keras

    config = ModelConfig(vocab_size=30, units=12, embedding_dim=8, projection=8, tie_embeddings=True,
                         embedding_dropout=0.1, recurrent_dropout=0.1, dropout=0.1)
    model = build_model(config)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    ids = np.array([[2, 5, 6, 7, 8]], np.int32)
    np.testing.assert_allclose(np.asarray(model(ids)), np.asarray(again(ids)), atol=1e-6)


def test_old_configs_without_new_keys_mean_todays_model():
    old = {"vocab_size": 30, "cell": "lstm", "layers": 1, "units": 12, "embedding_dim": 8, "dropout": 0.1}
    config = ModelConfig(**old)
    assert (config.projection, config.tie_embeddings, config.embedding_dropout, config.recurrent_dropout) == \
        (0, False, 0.0, 0.0)
    assert [layer.name for layer in build_model(config).layers if layer.weights] == ["embedding", "rnn_0", "logits"]


@pytest.mark.parametrize("settings, words", [
    (dict(tie_embeddings=True, units=12, embedding_dim=8), "tied embeddings"),
    (dict(projection=-1), "projection"),
    (dict(recurrent_dropout=1.0), "recurrent dropout"),
    (dict(embedding_dropout=-0.1), "embedding dropout"),
])
def test_invalid_model_options_say_why(settings, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig(vocab_size=30, **settings).validate()


def test_held_out_scoring_caps_the_tokens_of_a_batch(monkeypatch):
    """Long poems are scored in small batches (64 poems of 2,000 characters at a 12k vocabulary would
    need 6 GB of logits), and the total is the same however the poems are batched."""
    import poetgen.model as model_module

    model = build_model(ModelConfig(vocab_size=40, units=8, embedding_dim=4))
    rng = np.random.default_rng(0)
    poems = [list(rng.integers(3, 40, size=n)) for n in [5] * 30 + [300] * 6 + [900]]
    full = model_module.sequence_log_likelihood(model, poems, batch_size=64)
    shapes = []
    forward = model_module.traced_forward(model)
    monkeypatch.setattr(model_module, "MAX_SCORED_TOKENS", 1024)
    monkeypatch.setattr(model_module, "traced_forward", lambda m: lambda x: shapes.append(x.shape) or forward(x))
    capped = model_module.sequence_log_likelihood(model, poems, batch_size=64)
    assert capped[1] == full[1] and capped[0] == pytest.approx(full[0], rel=1e-5)
    # Every batch of long poems stays under the cap (a single poem longer than it is scored alone).
    assert all(rows * length <= 1024 + 16 * rows or rows == 1 for rows, length in shapes)
    assert max(rows for rows, _ in shapes) == 30 and len(shapes) >= 4


def test_a_wide_models_first_layer_keeps_its_input_product_and_steps_the_same(tiny_bundle, monkeypatch):
    """Above FOLD_LIMIT_BYTES the table is folded row by row on first use (the shipped LSTM-768's whole
    table would be 115 MB): only the ids seen are folded, with the same logits and state."""
    import numpy as np

    from poetgen import stepper as stepper_module
    from poetgen.bundle import load_bundle
    from poetgen.stepper import NumpyStepper

    bundle = load_bundle(tiny_bundle, keras=False)
    folded = NumpyStepper(bundle.weights, bundle.model_config)
    monkeypatch.setattr(stepper_module, "FOLD_LIMIT_BYTES", 0)
    unfolded = NumpyStepper(bundle.weights, bundle.model_config)
    assert folded._folded.all() and not unfolded._folded.any()
    ids = np.random.default_rng(1).integers(3, bundle.model_config.vocab_size, (12, 3))
    states = [folded.initial_state(3), unfolded.initial_state(3)]
    for step in ids:
        (a, states[0]), (b, states[1]) = folded.step(step, states[0]), unfolded.step(step, states[1])
        np.testing.assert_allclose(a, b, atol=1e-5)
    for x, y in zip(*states):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert set(np.flatnonzero(unfolded._folded)) == set(ids.ravel().tolist())


def test_folding_the_whole_table_gives_the_rows_first_use_gives(tiny_bundle, monkeypatch):
    """fold_all (poetgen serve, at start-up) folds each row as its first use would: the same values, so a
    server's poems are the command line's."""
    from poetgen import stepper as stepper_module
    from poetgen.bundle import load_bundle

    bundle = load_bundle(tiny_bundle, keras=False)
    monkeypatch.setattr(stepper_module, "FOLD_LIMIT_BYTES", 0)
    lazy, whole = NumpyStepper(bundle.weights, bundle.model_config), NumpyStepper(bundle.weights, bundle.model_config)
    ids = np.arange(bundle.model_config.vocab_size)
    lazy._input_rows(ids[:7])   # a few rows first, as a poem would
    lazy._input_rows(ids)
    whole.fold_all()
    assert whole._complete and whole._folded.all()
    np.testing.assert_array_equal(whole.input_table, lazy.input_table)
    whole.fold_all()   # nothing left to fold
    np.testing.assert_array_equal(whole._input_rows(ids), lazy.input_table)


def test_a_row_by_row_table_costs_small_pages_not_huge_ones():
    """The lazily folded table is its own mapping kept from transparent huge pages: NumPy asks for 2 MB
    pages for a large array, and one poem's few hundred scattered rows then cost ~33 MB."""
    import re
    import sys

    from poetgen.stepper import _sparse_table

    table = _sparse_table(4096, 3072)   # 48 MB, as wide as the shipped model's gate inputs
    assert table.shape == (4096, 3072) and table.dtype == np.float32 and table.flags.writeable
    rows = np.arange(0, 4096, 64)
    table[rows] = 1.5
    assert table[rows].sum() == 1.5 * len(rows) * 3072 and not table[1].any()
    if not sys.platform.startswith("linux"):
        return
    start = table.__array_interface__["data"][0]
    end = start + table.nbytes
    with open("/proc/self/smaps") as smaps:
        blocks = re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", smaps.read())
    rss, eligible = 0, []
    for block in blocks:   # the mappings over the table (an madvise()d range splits one)
        low, high = (int(x, 16) for x in block.split()[0].split("-"))
        if low < end and start < high:
            rss += int(re.search(r"\nRss:\s+(\d+) kB", block).group(1))
            found = re.search(r"THPeligible:\s+(\d)", block)
            eligible += [found.group(1)] if found else []
    assert rss and set(eligible) <= {"0"}
    assert rss <= 2 * len(rows) * 16   # 64 rows of 12 KB in 4 KB pages, not 64 × 2 MB


def test_prefix_states_are_kept_a_few_and_shared_safely_between_threads():
    import threading

    from poetgen.stepper import PREFIX_STATES
    from poetgen.tokenizer import BOUNDARY

    config = ModelConfig(vocab_size=30, units=8, embedding_dim=8)
    stepper = NumpyStepper.from_model(build_model(config), config)
    reference = {}
    for batch in range(1, 4):
        state = stepper.initial_state(batch)
        for token in (BOUNDARY, 7):                           # the boundary, then the prefix but its last id
            state = stepper.advance(np.full(batch, token), state)
        reference[batch] = state
    errors = []

    def ask(offset):
        try:
            for i in range(3 * PREFIX_STATES):
                batch = 1 + (i + offset) % 3
                state, previous = stepper.after_prefix((7, 8, 9 + i % PREFIX_STATES), batch)
                if i % PREFIX_STATES == 0:
                    expected = reference[batch]
                    state2, previous2 = stepper.after_prefix((7, 8), batch)
                    assert all(np.array_equal(a, b) for a, b in zip(state2, expected)) and (previous2 == 8).all()
        except Exception as error:   # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(stepper._prefixed) <= PREFIX_STATES


def test_freed_heap_goes_back_to_the_system_where_the_c_library_can():
    import platform

    from poetgen.heap import release_freed

    assert release_freed() is (platform.libc_ver()[0] == "glibc")
