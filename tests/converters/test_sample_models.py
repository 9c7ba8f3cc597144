"""Both trained sample models in full int8 against Keras on 1,000 Fashion-MNIST test images.

Acceptance checks of the issue: only builtin ops; one XNNPACK partition apart from the documented
exception (int8 SOFTMAX runs on the builtin kernel); top-1 agreement >= 99%; accuracy within 0.5 points.
"""

import pytest

from converters import audit_ops, check_fidelity, to_tflite
from converters.audit import KNOWN_UNDELEGATED
from sample_models import SAMPLE_MODELS, sample_model_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_models():
    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model

    calib = load_dataset("fashion-mnist:calib").x[:200]
    cache = {}

    def get(name):
        path = sample_model_path(name)
        if not path.is_file():
            pytest.skip(f"{path.name} is not trained yet (sample_models/train.py makes it)")
        if name not in cache:
            model = load_keras_model(path)
            cache[name] = model, to_tflite(model, precision="int8", representative_data=calib)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def test_1000():
    from edge_lowrank.data import load_dataset

    return load_dataset("fashion-mnist:test").take(1000)


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_model_int8(int8_models, test_1000, name):
    model, flat = int8_models(name)
    audit = audit_ops(flat)
    assert audit.builtin_only, audit.render()
    assert audit.input_dtypes == ("int8",) and audit.output_dtypes == ("int8",)
    assert audit.xnnpack_partitions == 1, audit.render()
    assert set(audit.undelegated_ops) <= set(KNOWN_UNDELEGATED), audit.render()
    fid = check_fidelity(model, flat, test_1000)
    assert fid.n == 1000
    assert fid.top1_agreement >= 0.99, fid.render()
    assert abs(fid.accuracy_drop) <= 0.005, fid.render()
