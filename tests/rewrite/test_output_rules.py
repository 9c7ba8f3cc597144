"""The data-driven `output` scheme takes every rank rule: a global MAC or parameter budget, a fixed rank, a
fraction, kept energy and VBMF (a budget used to crash: its ranks come from response eigenvalues)."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.cli.main import main  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((12, 12, 8)), L.Conv2D(48, 3, activation="relu", name="a"),
                             L.Conv2D(48, 3, name="b"), L.GlobalAveragePooling2D(), L.Dense(32, name="d")])


def _calib(n=48):
    return np.random.default_rng(1).normal(size=(n, 12, 12, 8)).astype("float32")


@pytest.mark.parametrize("rule", [{"target_mac_ratio": 0.5}, {"target_param_ratio": 0.5}, {"rank": 8},
                                  {"rank_fraction": 0.5}, {"energy": 0.6}, {"vbmf": True}])
def test_output_takes_every_rank_rule(rule):
    model = _model()
    new, rep = compress(model, CompressionPolicy("output", calib_data=_calib(), **rule))
    rows = {d.name: d for d in rep.layers}
    assert rows["b"].action == "factorized" and rows["b"].response_error is not None, rep.render()
    x = _calib(4)
    assert new.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape
    if "target_mac_ratio" in rule:
        assert 0.45 <= rep.macs_after / rep.macs_before <= 0.5, rep.render()
    if "target_param_ratio" in rule:
        assert 0.45 <= rep.params_after / rep.params_before <= 0.5, rep.render()
    if "rank" in rule:
        assert rows["a"].ranks == (8,) and rows["b"].ranks == (8,)
    if "rank_fraction" in rule:
        assert rows["b"].ranks == (24,)


def test_output_at_full_rank_reproduces_the_model():
    model = _model()
    new, rep = compress(model, CompressionPolicy("output", rank_fraction=1.0, skip_unprofitable=False,
                                                 calib_data=_calib()))
    assert all(d.action == "factorized" for d in rep.layers), rep.render()
    x = _calib(8)
    ref, got = model.predict(x, verbose=0).astype(np.float64), new.predict(x, verbose=0).astype(np.float64)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-4


def test_cli_output_with_a_mac_budget(tmp_path, capsys):
    path, calib, rep = tmp_path / "m.keras", tmp_path / "calib.npz", tmp_path / "rep.json"
    _model().save(path)
    np.savez(calib, x=np.random.default_rng(1).random((48, 12, 12, 8), dtype=np.float32))  # images in [0, 1]
    code = main(["compress", str(path), "--scheme", "output", "--target-mac-ratio", "0.5", "--calib-data",
                 str(calib), "--json", str(rep), "-q"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(rep.read_text())
    assert 0.45 <= data["mac_ratio"] <= 0.5 and data["changed"]
