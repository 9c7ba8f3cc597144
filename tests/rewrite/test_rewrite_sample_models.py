"""The schemes on the committed sample models with real Fashion-MNIST data (skipped until the files exist)."""

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def _load(name):
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path.name} is not committed yet")
    from edge_lowrank.modelio import load_keras_model

    return load_keras_model(path)


def _data(split, n):
    from edge_lowrank.data import load_dataset

    try:
        return load_dataset(f"fashion-mnist:{split}").take(n)
    except Exception as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")


def test_output_beats_channel_on_a_resnet_layer():
    """Zhang et al.'s data-driven fit reconstructs held-out responses better than the weight SVD."""
    model = _load("resnet_fmnist.keras")
    calib, held = _data("calib", 256).x, _data("test", 200).x
    convs = [lyr for lyr in model.layers if type(lyr) is keras.layers.Conv2D and lyr.kernel.shape[:2] == (3, 3)]
    name = max(convs, key=lambda c: (c.kernel.shape[3], c.name)).name
    # the response: the conv's own output (BN not folded, so both sides compare the same tensor)
    ref = keras.Model(model.inputs, model.get_layer(name).output).predict(held, verbose=0)
    errs = {}
    for scheme in ("output", "channel"):
        new, rep = compress(model, CompressionPolicy(scheme, rank=8, layers=(name,), fold_batchnorm=False,
                                                     calib_data=calib))
        assert [d.name for d in rep.layers if d.action == "factorized"] == [name]
        got = keras.Model(new.inputs, new.get_layer(name).output).predict(held, verbose=0)
        errs[scheme] = np.linalg.norm(got - ref) / np.linalg.norm(ref - ref.mean(axis=(0, 1, 2)))
    assert errs["output"] < errs["channel"], errs


@pytest.mark.slow
@pytest.mark.parametrize("file, scheme, rule", [("vgg_fmnist.keras", "weight-svd", {"rank": 8}),
                                                ("resnet_fmnist.keras", "tucker2", {"target_mac_ratio": 0.3})])
def test_compress_then_distill_recovers_accuracy(file, scheme, rule):
    from edge_lowrank.finetune import distill

    model = _load(file)
    train, val = _data("train", 4000), _data("test", 1000)
    student, rep = compress(model, CompressionPolicy(scheme, **rule))
    assert rep.changed and rep.macs_after < rep.macs_before
    hist = distill(student, model, train, epochs=1, batch_size=128, val=val, verbose=False)
    assert hist["val_top1_after"] >= hist["val_top1_before"], hist
    assert hist["val_top1_after"] >= hist["teacher_val_top1"] - 0.05, hist
