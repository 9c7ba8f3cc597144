"""Bad input gives one clear error (or a report that says nothing changed), never a deep traceback."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.errors import DataError, EdgeLowrankError, ModelError  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(16, 3, name="c"), L.Flatten(), L.Dense(4, name="d")])


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank"), ({"rank": -2}, "rank"), ({"rank_fraction": 0.0}, "rank_fraction"),
    ({"energy": 1.5}, "energy"), ({"rank": 4, "energy": 0.9}, "one rank rule"),
    ({"target_mac_ratio": 2.0}, "target_mac_ratio"), ({"rank_multiple": 0}, "rank_multiple"),
])
def test_bad_policy_values(kwargs, match):
    with pytest.raises(EdgeLowrankError, match=match):
        CompressionPolicy("tucker2", **kwargs)
    with pytest.raises(ValueError):
        CompressionPolicy("tucker2", **kwargs)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="Expected one of spatial"):
        CompressionPolicy("svd")


def test_rank_above_every_full_rank():
    with pytest.raises(ModelError, match="above the full rank"):
        compress(_model(), CompressionPolicy("tucker2", rank=1000))


def test_rank_that_saves_nothing_is_kept_with_a_reason():
    with pytest.warns(UserWarning):
        new, rep = compress(_model(), CompressionPolicy("channel", rank=12, rank_multiple=1))
    row = {d.name: d for d in rep.layers}["c"]
    assert row.action == "kept" and "would not shrink" in row.reason
    with pytest.warns(UserWarning, match="not below full rank"):
        new, rep = compress(_model(), CompressionPolicy("channel", rank=16, rank_multiple=1))


def test_no_supported_layer_reports_nothing_changed():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.DepthwiseConv2D(3), L.GlobalAveragePooling2D()])
    with pytest.warns(UserWarning, match="no layer was rewritten"):
        new, rep = compress(model, CompressionPolicy("tucker2", rank=8))
    assert not rep.changed and rep.macs_after == rep.macs_before
    assert "already one filter per channel" in rep.layers[0].reason


def test_nan_weights():
    model = _model()
    w = model.get_layer("c").get_weights()
    w[0][0, 0, 0, 0] = np.nan
    model.get_layer("c").set_weights(w)
    with pytest.raises(ModelError, match="NaN or Inf"):
        compress(model, CompressionPolicy("tucker2", rank=8))


def test_output_scheme_needs_calibration_data():
    with pytest.raises(DataError, match="calibration"):
        compress(_model(), CompressionPolicy("output", rank=8))
    with pytest.raises(DataError, match="does not fit"):
        compress(_model(), CompressionPolicy("output", rank=8, calib_data=np.zeros((4, 9, 9, 3))))


def test_not_a_model_and_subclassed_model():
    with pytest.raises(ModelError, match="takes a Keras model"):
        compress("model.keras", CompressionPolicy())

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.c = L.Conv2D(4, 3)

        def call(self, x):
            return self.c(x)

    m = Sub()
    m(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ModelError, match="subclassed"):
        compress(m, CompressionPolicy())


def test_output_scheme_with_vbmf_and_energy_on_data():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 8)), L.Conv2D(32, 3, name="c")])
    calib = np.random.default_rng(0).normal(size=(32, 8, 8, 8)).astype("float32")
    for rule in ({"vbmf": True}, {"energy": 0.5}):
        new, rep = compress(model, CompressionPolicy("output", rank_multiple=1, calib_data=calib, **rule))
        row = {d.name: d for d in rep.layers}["c"]
        assert row.action == "factorized" and 1 <= row.ranks[0] < 22 and row.response_error is not None, rep.render()


def test_per_layer_ranks_override_the_rule():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 8)), L.Conv2D(32, 3, name="a"), L.Conv2D(32, 3, name="b")])
    _, rep = compress(model, CompressionPolicy("tucker2", rank=8, layer_ranks={"b": (4, 12)}))
    ranks = {d.name: d.ranks for d in rep.layers}
    assert ranks == {"a": (8, 8), "b": (4, 12)}
    with pytest.raises(ModelError, match="at most 8x32"):
        compress(model, CompressionPolicy("tucker2", rank=8, layer_ranks={"a": (9, 4)}))
    with pytest.raises(ModelError, match="named nope"):
        compress(model, CompressionPolicy("tucker2", rank=8, layer_ranks={"nope": 4}))
    with pytest.raises(ValueError, match="positive ints"):
        CompressionPolicy("tucker2", layer_ranks={"a": 0})
