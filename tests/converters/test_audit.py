"""audit_ops on converted models and on committed fixtures (tests/fixtures/make_fixtures.py makes them)."""

import subprocess
import sys

import pytest

from converters import audit_ops
from converters.audit import UnsupportedOpsError, require_builtin_only
from converters.flatbuffer import pack_model, read_model
from edge_lowrank.errors import ModelError


def test_dynamic_batch_flatten_splits_the_xnnpack_graph(fixtures_dir):
    audit = audit_ops((fixtures_dir / "split_dynamic_batch.tflite").read_bytes())
    assert audit.builtin_only
    assert audit.xnnpack_partitions == 2
    assert audit.undelegated_ops == ("SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE")
    assert set(audit.unexplained_undelegated) == {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"}
    assert "2 partition(s)" in audit.render()


def test_flex_op_is_reported_and_refused_unless_allowed(fixtures_dir):
    audit = audit_ops((fixtures_dir / "flex_erf.tflite").read_bytes())
    assert audit.flex_ops == ("FlexErf",) and not audit.builtin_only
    assert audit.xnnpack_partitions is None and "Flex" in audit.delegation_error
    with pytest.raises(UnsupportedOpsError, match="FlexErf"):
        require_builtin_only(audit)
    require_builtin_only(audit, allow_custom=True)


def test_custom_op_is_reported(converted):
    from ai_edge_litert import schema_py_generated as schema

    model = read_model(converted("resnet", "float32"))
    code = next(c for c in model.operatorCodes if c.builtinCode == schema.BuiltinOperator.MEAN)
    code.builtinCode, code.deprecatedBuiltinCode, code.customCode = schema.BuiltinOperator.CUSTOM, 32, "MyMean"
    audit = audit_ops(pack_model(model), delegation=False)
    assert audit.custom_ops == ("MyMean",) and audit.flex_ops == ()
    assert audit.op_counts["MyMean"] == 1
    with pytest.raises(UnsupportedOpsError, match="MyMean"):
        require_builtin_only(audit)


def test_audit_counts_ops_and_sizes(converted):
    flat = converted("resnet", "float32")
    audit = audit_ops(flat)
    assert audit.op_counts == {"CONV_2D": 3, "ADD": 1, "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert audit.size_bytes == len(flat)
    kernels = 3 * 3 * 1 * 16 + 16 * 16 + 3 * 3 * 16 * 32 + 32 * 10
    # float32 kernels plus biases (the converter shares identical all-zero bias buffers).
    assert 4 * kernels < audit.weight_bytes < len(flat)
    d = audit.to_dict()
    assert d["n_ops"] == 7 and d["builtin_only"] is True and "edge_lowrank" in d["metadata_names"]


@pytest.mark.parametrize("data", [b"", b"hello world, not a flatbuffer", b"\x00" * 4 + b"TFL3" + b"\xff" * 8])
def test_garbage_bytes_are_refused(data):
    with pytest.raises(ModelError):
        audit_ops(data)


def test_audit_imports_no_tensorflow(fixtures_dir):
    code = ("import sys; from converters import audit_ops; from converters import read_metadata, c_array; "
            f"a = audit_ops(open({str(fixtures_dir / 'split_dynamic_batch.tflite')!r}, 'rb').read()); "
            "assert a.xnnpack_partitions == 2; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_softmax_is_an_expected_exception_only_in_int8(converted):
    import dataclasses

    audit = audit_ops(converted("resnet", "int8"))
    assert audit.undelegated_ops == ("SOFTMAX",) and audit.undelegated_dtypes == ("int8",)
    assert audit.unexplained_undelegated == () and "(expected:" in audit.render()
    as_float = dataclasses.replace(audit, undelegated_dtypes=("float32",))  # float SOFTMAX is delegated
    assert as_float.unexplained_undelegated == ("SOFTMAX",) and "(expected:" not in as_float.render()
