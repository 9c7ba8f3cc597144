"""`output` with `output_fit`: the nonlinear fit after the ReLU, the asymmetric fit on the compressed prefix,
on a small conv net and real Fashion-MNIST images; the result reloads with plain Keras and converts to int8."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.data import load_dataset  # noqa: E402
from edge_lowrank.rank.select import RankError  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


@pytest.fixture(scope="module")
def toy():
    keras.utils.set_random_seed(0)
    x = keras.Input((28, 28, 1), batch_size=1)
    y = L.Conv2D(24, 3, activation="relu", name="c1")(x)
    y = L.Conv2D(32, 3, use_bias=False, name="c2")(y)
    y = L.BatchNormalization(name="bn2")(y)
    y = L.ReLU(name="r2")(y)
    y = L.Conv2D(32, 3, strides=2, name="c3")(y)  # feeds pooling: no ReLU, the linear fit
    y = L.GlobalAveragePooling2D()(L.ReLU(name="r3")(L.Add()([y, y])))
    model = keras.Model(x, L.Dense(10, name="head")(y))
    calib = load_dataset("fashion-mnist:calib").take(64).x
    return model, calib


def _at(model, name, x):
    return np.asarray(keras.Model(model.inputs, model.get_layer(name).output).predict(x, batch_size=64, verbose=0))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a - a.mean((0, 1, 2))))


_DONE = {}


def _compress(toy, fit):
    """Each fit once per module (every test reads the same rewrites)."""
    if fit not in _DONE:
        model, calib = toy
        _DONE[fit] = compress(model, CompressionPolicy("output", rank=4, rank_multiple=1, calib_data=calib,
                                                       output_fit=fit))
    return _DONE[fit]


def test_asymmetric_fit_uses_the_compressed_prefix(toy):
    """c2 refit on the inputs the compressed c1 gives: its post-ReLU output is closer to the original's."""
    model, calib = toy
    ref = _at(model, "r2", calib)
    errs = {fit: _rel(ref, _at(_compress(toy, fit)[0], "r2", calib))
            for fit in ("linear", "linear-asymmetric", "nonlinear", "nonlinear-asymmetric")}
    assert errs["linear-asymmetric"] < 0.99 * errs["linear"], errs
    assert errs["nonlinear-asymmetric"] < 0.99 * errs["nonlinear"], errs
    assert errs["nonlinear-asymmetric"] < errs["linear"], errs


def test_report_says_which_fit(toy):
    _, rep = _compress(toy, "nonlinear-asymmetric")
    rows = {d.name: d for d in rep.layers}
    assert "nonlinear-asymmetric fit" in rep.rule
    assert rows["c1"].reason.startswith("nonlinear (post-ReLU) fit, symmetric (its inputs are the model's")
    assert rows["c2"].reason == "nonlinear (post-ReLU) fit, asymmetric"  # BN folded, then ReLU
    assert rows["c3"].reason == "linear (no ReLU after it) fit, asymmetric"  # an Add comes first
    assert all(rows[n].response_error < 1 for n in ("c1", "c2", "c3")), rep.render()
    _, rep = _compress(toy, "linear")
    assert rep.layers[0].reason is None and "linear fit" in rep.rule


def test_bad_fit_name_is_refused():
    with pytest.raises(RankError, match="output_fit"):
        CompressionPolicy("output", rank=4, output_fit="quadratic")


def test_rewrite_reloads_and_converts_to_int8(toy, tmp_path):
    from converters.audit import xnnpack_delegation
    from converters.convert import to_tflite
    from converters.fidelity import run_tflite

    model, calib = toy
    new, _ = _compress(toy, "nonlinear-asymmetric")
    path = tmp_path / "m.keras"
    new.save(path)
    again = keras.models.load_model(path)
    x = calib[:16]
    assert np.allclose(again.predict(x, verbose=0), new.predict(x, verbose=0), atol=1e-5)
    flat = to_tflite(again, precision="int8", representative_data=calib[:32])
    assert xnnpack_delegation(flat)[0] == 1
    yq, yk = run_tflite(flat, x), again.predict(x, verbose=0)
    assert np.abs(yq - yk).max() < 0.1 * np.abs(yk).max() + 1e-3


def test_cli_output_fit(toy, tmp_path, capsys):
    from edge_lowrank.cli.main import main

    model, calib = toy
    path, out = tmp_path / "toy.keras", tmp_path / "new.keras"
    model.save(path)
    np.savez(tmp_path / "calib.npz", x=calib[:32])
    assert main(["compress", str(path), "--scheme", "spatial", "--rank", "2", "--output-fit", "nonlinear"]) == 1
    assert "--output-fit applies to --scheme output only" in capsys.readouterr().err
    assert main(["compress", str(path), "--scheme", "output", "--rank", "4", "--calib-data",
                 str(tmp_path / "calib.npz"), "--output-fit", "nonlinear-asymmetric", "-q", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nonlinear-asymmetric fit" in text and "nonlinear (post-ReLU) fit, asymmetric" in text and out.exists()


def test_run_setting_and_stage_key(tmp_path):
    """`run --output-fit` / TOML `output-fit`: validated in one line; in the output model stage's key only when
    it is not linear (runs cached before the setting existed stay valid), never in another scheme's."""
    import argparse
    import types

    from edge_lowrank.pipeline import config
    from edge_lowrank.pipeline.stages import Pipeline

    def parse(argv):
        p = argparse.ArgumentParser()
        config.add_arguments(p)
        return config.from_args(p.parse_args(argv))

    f = tmp_path / "run.toml"
    f.write_text('[run]\noutput-fit = "nonlinear-asymmetric"\n')
    assert parse([]).output_fit == "linear" and parse(["--config", str(f)]).output_fit == "nonlinear-asymmetric"
    with pytest.raises(config.ConfigError, match="Expected one of linear, nonlinear"):
        config.RunConfig(output_fit="quadratic").validate()

    def key(cfg, scheme):
        return Pipeline._policy_kwargs(types.SimpleNamespace(cfg=cfg), scheme)

    assert "output_fit" not in key(parse([]), "output")
    assert key(parse(["--config", str(f)]), "output")["output_fit"] == "nonlinear-asymmetric"
    assert "output_fit" not in key(parse(["--config", str(f)]), "spatial")
    assert CompressionPolicy(**key(parse(["--config", str(f)]), "output")).output_fit == "nonlinear-asymmetric"


@pytest.mark.parametrize("name", ["nested", "shared_layer", "two_inputs", "conv1d_dilated"])
def test_corpus_graphs_full_rank_exact(name):
    """Nested and shared layers (kept symmetric), two inputs, Conv1D: the asymmetric nonlinear fit runs and,
    at full rank, reproduces the model."""
    import importlib.util
    import sys
    from pathlib import Path

    mod = "edge_lowrank_corpus_models"  # the corpus conftest's name for tests/corpus/models.py
    if mod not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod, Path(__file__).parents[1] / "corpus" / "models.py")
        sys.modules[mod] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[mod])
    C = sys.modules[mod]
    model = C.build(name)
    x, calib = C.inputs(model, 4), C.inputs(model, 32, seed=1)
    full = max(min(int(np.prod(lyr.kernel.shape[:-1])), int(lyr.kernel.shape[-1]))
               for lyr in _leaves(model) if type(lyr) in (L.Conv2D, L.Conv1D, L.Dense))
    new, rep = compress(model, CompressionPolicy("output", rank=full, rank_multiple=1, calib_data=calib,
                                                 output_fit="nonlinear-asymmetric", skip_unprofitable=False))
    assert any(d.action == "factorized" for d in rep.layers)
    ys, yn = model.predict(x, verbose=0), new.predict(x, verbose=0)
    for a, b in zip(ys if isinstance(ys, list) else [ys], yn if isinstance(yn, list) else [yn]):
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)


def _leaves(model):
    for lyr in model.layers:
        yield from (_leaves(lyr) if isinstance(lyr, keras.Model) else [lyr])
