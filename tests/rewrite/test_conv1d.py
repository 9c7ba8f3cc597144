"""Conv1D is factorized as a k x 1 kernel and rebuilt from Conv1D layers; MAC layers with no rewrite are kept
with a reason (they used to vanish from the report)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


def _model():
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((20, 6))
    x = L.Conv1D(16, 3, padding="causal", dilation_rate=2, activation="relu", name="causal")(x)
    x = L.Conv1D(12, 5, strides=2, padding="same", name="strided")(x)
    x = L.Conv1D(10, 1, name="pointwise")(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize("scheme, factorized, full", [("channel", {"causal", "strided", "pointwise"}, 16),
                                                      ("tucker2", {"causal", "strided"}, 16),
                                                      ("weight-svd", {"pointwise"}, 10),
                                                      ("output", {"causal", "strided", "pointwise"}, 16)])
def test_conv1d_at_full_rank_is_exact(scheme, factorized, full):
    model = _model()
    x = np.random.default_rng(0).random((4, 20, 6), dtype=np.float32)
    new, rep = compress(model, CompressionPolicy(scheme, rank=full, rank_multiple=1, skip_unprofitable=False,
                                                 calib_data=x if scheme == "output" else None))
    rows = {d.name: d for d in rep.layers}
    assert {n for n, d in rows.items() if d.action == "factorized"} == factorized, rep.render()
    assert all(d.reason for d in rows.values() if d.action == "kept")
    ref, got = model.predict(x, verbose=0), new.predict(x, verbose=0)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert {type(lyr).__name__ for blk in new.layers if isinstance(blk, keras.Model) for lyr in blk.layers} \
        == {"Conv1D"}


def test_spatial_schemes_keep_conv1d_and_transpose_convs_with_a_reason():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2DTranspose(8, 3, strides=2, name="up"),
                              L.Reshape((-1, 8)), L.Conv1D(8, 3, name="c1")])
    with pytest.warns(UserWarning, match="no layer was rewritten"):
        _, rep = compress(model, CompressionPolicy("spatial", rank=4))
    rows = {d.name: d.reason for d in rep.layers}
    assert "no low-rank rewrite" in rows["up"] and "needs a 2-D kernel" in rows["c1"]
