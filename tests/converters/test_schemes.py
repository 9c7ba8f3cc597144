"""One rewritten model per low-rank scheme, in full int8: the sample models' acceptance checks.

The model is tests/fixtures/small_cnn_fmnist.keras (trained, with Conv2D 3x3/1x1, Add, stride 2, Dense);
each scheme rewrites it at half rank with `edge_lowrank.rewrite.compress`, and the int8 .tflite is compared
with the rewritten Keras model on 1,000 test images.
"""

import pytest

from converters import audit_ops, check_fidelity, to_tflite
from converters.audit import KNOWN_UNDELEGATED

rewrite = pytest.importorskip("edge_lowrank.rewrite")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_and_data(fixtures_dir):
    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model

    model = load_keras_model(fixtures_dir / "small_cnn_fmnist.keras")
    calib = load_dataset("fashion-mnist:calib").x[:200]
    return model, calib, load_dataset("fashion-mnist:test").take(1000)


@pytest.mark.parametrize("scheme", rewrite.SCHEMES)
def test_rewritten_model_int8(base_and_data, scheme):
    import warnings

    model, calib, test = base_and_data
    policy = rewrite.CompressionPolicy(scheme=scheme, rank_fraction=0.5,
                                       **({"calib_data": calib} if scheme == "output" else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "would not shrink it; kept" for the smallest layers
        new, report = rewrite.compress(model, policy)
    assert report.changed
    ranks = {d.name: list(d.ranks) for d in report.layers if d.ranks}
    flat = to_tflite(new, precision="int8", representative_data=calib,
                     metadata={"scheme": scheme, "ranks": ranks})
    audit = audit_ops(flat)
    assert audit.builtin_only, audit.render()
    assert audit.xnnpack_partitions == 1, audit.render()
    assert set(audit.undelegated_ops) <= set(KNOWN_UNDELEGATED), audit.render()
    fid = check_fidelity(new, flat, test)
    assert fid.top1_agreement >= 0.99, fid.render()
    assert abs(fid.accuracy_drop) <= 0.005, fid.render()
