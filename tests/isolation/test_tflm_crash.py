"""TFLite Micro segfaults on some too-small arenas (a real TFLM bug, not ours); the arena search survives it.

The witness is device_bench's forked probe, independent of the search under test.
"""

import numpy as np
import pytest

pytest.importorskip("tflite_micro")

pytestmark = pytest.mark.tflm


@pytest.fixture(scope="module")
def two_conv_int8():
    """An int8 model whose CONV_2D with 128 per-channel scales crashes TFLM below about 4.7 KB of arena."""
    import keras

    from converters import to_tflite

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(128, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(7)(x))
    calib = np.random.default_rng(0).random((16, 16, 16, 1)).astype(np.float32)
    return to_tflite(model, precision="int8", representative_data=calib)


def test_tflm_really_crashes_on_a_small_arena(two_conv_int8):
    import faulthandler

    from device_bench.tflm import probe_arena

    dump = faulthandler.is_enabled()
    faulthandler.disable()  # pytest's handler would print the forked probe's expected crash
    try:
        ok, msg = probe_arena(two_conv_int8, 256, [np.zeros((1, 16, 16, 1), np.int8)])
    finally:
        if dump:
            faulthandler.enable()
    assert not ok and msg.startswith("crashed (SIGSEGV)"), msg


def test_a_crashing_try_counts_as_too_small(two_conv_int8):
    from converters.tflm import _probe, _runtime

    works, _, crash = _probe(_runtime(), two_conv_int8, 256)
    assert (works, crash) == (False, "SIGSEGV")


def test_search_survives_and_agrees_with_device_bench(two_conv_int8):
    from converters import tflm_arena_size
    from device_bench.tflm import find_arena

    size = tflm_arena_size(two_conv_int8, subject="two_conv.tflite")
    want, _ = find_arena(two_conv_int8, [np.zeros((1, 16, 16, 1), np.int8)])
    assert size == want and size % 16 == 0
