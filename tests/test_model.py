import numpy as np
import pytest

from poetgen.model import CELLS, ModelConfig, NumpyStepper, build_model, build_step_model


@pytest.mark.parametrize("cell", CELLS)
def test_step_forms_match_the_full_model(cell):
    config = ModelConfig(vocab_size=30, cell=cell, layers=2, units=12, embedding_dim=8)
    model = build_model(config)
    ids = np.random.default_rng(0).integers(3, 30, (3, 6)).astype(np.int32)
    full = np.asarray(model(ids))
    stepper, step_model = NumpyStepper.from_model(model, config), build_step_model(model, config)
    state = stepper.initial_state(3)
    keras_state = [np.zeros((3, 12), np.float32) for _ in state]
    for t in range(6):
        logits, state = stepper.step(ids[:, t], state)
        outputs = step_model([ids[:, t:t + 1]] + keras_state)
        keras_state = [np.asarray(s) for s in outputs[1:]]
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)
        np.testing.assert_allclose(np.asarray(outputs[0]), full[:, t], atol=1e-4)


def test_h5py_loaded_bundle_steps_like_the_keras_loaded_model(tiny_bundle):
    from poetgen.bundle import load_bundle

    keras_bundle, h5py_bundle = load_bundle(tiny_bundle), load_bundle(tiny_bundle, keras=False)
    assert h5py_bundle.model is None and h5py_bundle.weights
    ids = np.array([[2, 5, 6, 7, 8], [2, 9, 4, 11, 3]], np.int32)
    full = np.asarray(keras_bundle.model(ids))
    stepper = NumpyStepper(h5py_bundle.weights, h5py_bundle.model_config)
    state = stepper.initial_state(2)
    for t in range(ids.shape[1]):
        logits, state = stepper.step(ids[:, t], state)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)
