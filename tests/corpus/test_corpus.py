"""The conformance corpus (issue 12): real architectures and the graph shapes users have, every scheme.

For every model: the graph's MAC count equals the one recounted from its float32 .tflite (within 1 %); at full
rank every scheme reproduces the outputs (relative L2 <= 1e-4) and every layer it keeps has a reason; at a 0.5
MAC budget the whole-model ratio lies in 0.45-0.55 or the report's notes say why not; int8 exports hold only
builtin ops and the benchmark runs them. The quick suite counts MACs on the hand-built models where counting
went wrong before (reloaded Sequential, nesting, sharing, SeparableConv2D, Conv1D, Conv2DTranspose) and checks
the rewrites on a cheap subset; the rest, and the keras.applications models (seconds per rewrite, tens of
seconds per export), are `slow`; `benchmarks/bench_corpus.py` runs the whole matrix.
"""

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from converters import audit_ops, tflite_macs, to_tflite  # noqa: E402
from edge_lowrank.profile import profile_model  # noqa: E402
from edge_lowrank.rank.schemes import SCHEMES, LayerSpec, full_ranks  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402
from edge_lowrank.rewrite.base import _eligibility  # noqa: E402

import edge_lowrank_corpus_models as C  # noqa: E402  (registered by this folder's conftest)
# A budget is "met" within this band around 0.5, or the report says why not (issue 12).
BAND = (0.45, 0.55)
# Models whose int8 export the corpus checks: together they hold every layer type of the corpus except
# those only MobileNetV3 brings (hard-swish, squeeze-excite as keras.ops nodes), which
# `test_applications_int8` adds. ConvNeXtTiny's int8 export alone took ~7 min: `convnext_block` stands in.
INT8_LIGHT = ("sequential_h5", "conv_relu_bn", "nested", "shared_layer", "preprocessing", "mini_xception",
              "convnext_block", "mlp", "conv1d_dilated", "unet", "two_inputs", "two_outputs", "variable_size")
FAST_CP = {"cp_time_budget_s": 2.0, "cp_n_iter_max": 30}  # random kernels do not converge: bound ALS


def _predict(model, x):
    y = model.predict(x, verbose=0, batch_size=len(x[0]) if isinstance(x, list) else len(x))
    return [np.asarray(a, np.float64) for a in (y if isinstance(y, list) else [y])]


def _rel(ref, got) -> float:
    num = sum(float(np.sum((a - b) ** 2)) for a, b in zip(ref, got))
    den = sum(float(np.sum(a ** 2)) for a in ref)
    return float(np.sqrt(num / den)) if den else float(np.sqrt(num))


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def full_rank(model, scheme: str) -> int:
    """The largest full rank among the layers `scheme` takes: as a rank rule it puts every layer at its own
    full rank (ranks are capped per layer)."""
    best = 1
    for layer in _layers(model):
        if _eligibility(layer, scheme) is not None:
            continue
        sep = isinstance(layer, keras.layers.SeparableConv2D)
        shape = tuple((layer.pointwise_kernel if sep else layer.kernel).shape)
        shape = (shape[0], 1) + shape[1:] if len(shape) == 3 else shape
        kind = "separable" if sep else ("conv" if len(shape) == 4 else "dense")
        best = max(best, *full_ranks(scheme, LayerSpec("x", kind, shape, (), False)))
    return best


def _compress(model, scheme, calib, **rule):
    policy = CompressionPolicy(scheme, calib_data=calib if scheme == "output" else None, **FAST_CP, **rule)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes and reasons are asserted on the report itself
        return compress(model, policy)


def check_full_rank(model, schemes=SCHEMES):
    x, calib = C.inputs(model, 4), C.inputs(model, 32, seed=1)
    ref = _predict(model, x)
    for scheme in schemes:
        new, rep = _compress(model, scheme, calib, rank=full_rank(model, scheme), rank_multiple=1,
                             skip_unprofitable=False)
        assert all(d.reason for d in rep.layers if d.action == "kept"), (scheme, rep.render())
        err = _rel(ref, _predict(new, x))
        assert err <= 1e-4, f"{scheme}: relative error {err:.2e} at full rank\n{rep.render()}"


def check_half_budget(model, schemes=SCHEMES):
    calib = C.inputs(model, 32, seed=1)
    x = C.inputs(model, 2)
    for scheme in schemes:
        new, rep = _compress(model, scheme, calib, target_mac_ratio=0.5)
        ratio = rep.macs_after / rep.macs_before
        assert ratio == pytest.approx(profile_model(new).macs / profile_model(model).macs)
        if not BAND[0] <= ratio <= BAND[1]:
            assert rep.notes, f"{scheme}: ratio {ratio:.3f} outside {BAND} and no note says why\n{rep.render()}"
        if ratio > 0.5 + 1e-9:
            assert "cannot be met" in " ".join(rep.notes), rep.render()
        assert all(d.reason for d in rep.layers if d.action == "kept"), rep.render()
        assert all(np.all(np.isfinite(y)) for y in _predict(new, x))


def check_macs(model):
    flat = to_tflite(model, precision="float32")
    graph, counted = profile_model(model).macs, tflite_macs(flat).total
    assert abs(graph - counted) <= 0.01 * graph, (graph, counted)
    assert audit_ops(flat, delegation=False).builtin_only


def _light(names):
    """The quick suite's cheap subset first; the other hand-built models are `slow`."""
    return [n if n in names else pytest.param(n, marks=pytest.mark.slow) for n in C.LIGHT]


@pytest.mark.parametrize("name", _light(("sequential_h5", "nested", "shared_layer", "mini_xception",
                                          "conv1d_dilated", "unet")))
def test_graph_macs_equal_tflite_macs(name, built):
    check_macs(built(name))


@pytest.mark.parametrize("name", _light(("nested", "conv1d_dilated", "two_inputs")))
def test_full_rank_reproduces_the_outputs(name, built):
    check_full_rank(built(name))


@pytest.mark.parametrize("name", _light(("shared_layer", "two_outputs")))
def test_half_mac_budget_is_met_or_explained(name, built):
    check_half_budget(built(name))


def test_depthwise_dominated_budget_says_why(built):
    """MobileNet at a 0.5 budget with a conv-only scheme: most MACs sit in depthwise and 1x1 convs."""
    _, rep = _compress(built("mobilenet"), "spatial", None, target_mac_ratio=0.5)
    (note,) = rep.notes
    assert "cannot be met" in note and "DepthwiseConv2D" in note and "1x1 conv" in note


@pytest.mark.slow
@pytest.mark.parametrize("name", ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"))
def test_applications_graph_macs_equal_tflite_macs(name, built):
    """The applications whose graphs hold keras.ops nodes, Normalization and Dense on 4-D; the script counts
    all nine (tens of seconds per export)."""
    check_macs(built(name))


@pytest.mark.slow
@pytest.mark.parametrize("name, schemes", [
    ("mobilenet_v3_small", SCHEMES),  # ~2 min on the loaded VM
    ("convnext_tiny", ("weight-svd",)),  # Dense on 4-D; with output too it took ~10 min
])
def test_applications_full_rank_and_budget(name, schemes, built):
    model = built(name)
    check_full_rank(model, schemes)
    check_half_budget(model, schemes)


def _int8_and_bench(models, tmp_path):
    from device_bench import bench_models
    from device_bench.results import BenchParams

    paths = []
    for name, model in models:
        new, rep = _compress(model, "channel", None, target_mac_ratio=0.5)
        assert rep.changed, rep.render()
        flat = to_tflite(new, precision="int8", representative_data=C.inputs(new, 16, seed=2))
        audit = audit_ops(flat)
        assert audit.builtin_only, (name, audit.custom_ops, audit.flex_ops)
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(flat)
        paths.append(path)
    params = BenchParams(num_runs=3, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0, rounds=1)
    results = bench_models(paths, params, interleave=False)
    for path, res in zip(paths, results):
        assert res.error is None and res.inference_us.count >= 3, (path.name, res.error)


@pytest.mark.slow
def test_int8_exports_are_builtin_and_run(built, tmp_path):
    _int8_and_bench([(n, built(n)) for n in INT8_LIGHT], tmp_path)


@pytest.mark.slow
def test_applications_int8(built, tmp_path):
    _int8_and_bench([("mobilenet_v3_small", built("mobilenet_v3_small"))], tmp_path)
