"""Range equalization between chained factors: same float function, equal ranges, better int8 agreement."""

import warnings

import numpy as np
import pytest

from converters import check_fidelity, to_tflite
from converters.equalize import chain_pairs, equalize_factor_chains

rewrite = pytest.importorskip("edge_lowrank.rewrite")


@pytest.fixture(scope="module")
def cp_model(fixtures_dir):
    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model

    model = load_keras_model(fixtures_dir / "small_cnn_fmnist.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new, _ = rewrite.compress(model, rewrite.CompressionPolicy(scheme="cp", rank_fraction=0.5))
    return new, load_dataset("fashion-mnist:calib").x[:200], load_dataset("fashion-mnist:test").take(500)


def test_equalized_copy_computes_the_same_function_with_equal_ranges(cp_model):
    import keras

    model, calib, test = cp_model
    before = [w.copy() for w in model.get_weights()]
    eq, pairs = equalize_factor_chains(model, calib)
    assert pairs > 0 and eq is not model
    for w, w0 in zip(model.get_weights(), before):  # the input model is untouched
        np.testing.assert_array_equal(w, w0)
    np.testing.assert_allclose(eq.predict(test.x, verbose=0), model.predict(test.x, verbose=0), atol=1e-5)
    block = next(layer for layer in eq.layers if isinstance(layer, keras.Sequential) and chain_pairs(layer))
    a, _ = chain_pairs(block)[0]
    h = keras.Model(eq.inputs, block._inbound_nodes[0].input_tensors[0]).predict(calib, verbose=0)
    for layer in block.layers[:a + 1]:
        h = np.asarray(layer(h))
    ranges = np.abs(h).reshape(-1, h.shape[-1]).max(axis=0)
    live = ranges[ranges > 0]
    np.testing.assert_allclose(live, live.max(), rtol=1e-4)  # on the data it was measured on


def test_a_model_without_factor_chains_is_returned_as_is(fixtures_dir):
    from edge_lowrank.modelio import load_keras_model

    model = load_keras_model(fixtures_dir / "small_cnn_fmnist.keras")
    same, pairs = equalize_factor_chains(model, np.zeros((4, 28, 28, 1), np.float32))
    assert same is model and pairs == 0


@pytest.mark.slow
def test_equalization_improves_int8_agreement_of_a_cp_rewrite(cp_model):
    from converters import read_metadata

    model, calib, test = cp_model
    plain = check_fidelity(model, to_tflite(model, precision="int8", representative_data=calib,
                                            equalize=False), test)
    flat = to_tflite(model, precision="int8", representative_data=calib)
    equal = check_fidelity(model, flat, test)
    assert read_metadata(flat)["equalized_factor_pairs"] > 0
    assert equal.top1_agreement > plain.top1_agreement, (plain.render(), equal.render())
    assert equal.max_rel_err < plain.max_rel_err
