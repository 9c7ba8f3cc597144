"""The C array compiles with gcc, is 16-byte aligned, and holds exactly the flatbuffer's bytes."""

import shutil
import subprocess

import pytest

from converters import c_array, tflm_op_registrations
from edge_lowrank.errors import ModelError

MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include "model.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "wb");
  fwrite(g_model, 1, g_model_len, f);
  fclose(f);
  printf("%d %d %d\n", (int)(((uintptr_t)g_model) % 16), G_MODEL_OP_COUNT, G_MODEL_ARENA_SIZE);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_c_array_compiles_and_holds_the_flatbuffer(converted, tmp_path):
    flat = converted("resnet", "int8")
    source, header = c_array(flat, "g_model", arena_size=12345, header_name="model.h")
    (tmp_path / "model.cc").write_text(source)
    (tmp_path / "model.h").write_text(header)
    (tmp_path / "main.cc").write_text(MAIN)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-o", str(tmp_path / "dump"),
                    str(tmp_path / "main.cc"), str(tmp_path / "model.cc")], check=True, timeout=120)
    out = subprocess.run([str(tmp_path / "dump"), str(tmp_path / "out.bin")], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()
    assert (tmp_path / "out.bin").read_bytes() == flat
    assert out == ["0", "5", "12345"]  # aligned, five op kinds, the arena we passed
    assert "alignas(16) const unsigned char g_model[]" in source
    assert f"const unsigned int g_model_len = {len(flat)};" in source


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_c_array_source_links_without_including_its_header(converted, tmp_path):
    source, header = c_array(converted("resnet", "float32"), "g_other")
    assert "#include" not in source
    (tmp_path / "other.cc").write_text(source)
    (tmp_path / "main.cc").write_text('extern const unsigned char g_other[]; extern const unsigned int g_other_len;\n'
                                      'int main() { return g_other_len > 0 && g_other[4] == 0x54 ? 0 : 1; }\n')
    subprocess.run(["g++", "-std=c++11", "-o", str(tmp_path / "t"), str(tmp_path / "main.cc"),
                    str(tmp_path / "other.cc")], check=True, timeout=120)
    subprocess.run([str(tmp_path / "t")], check=True, timeout=60)  # byte 4 is 'T' of TFL3


def test_op_registrations_match_the_model(converted):
    assert tflm_op_registrations(converted("resnet", "int8")) == [
        "AddAdd", "AddConv2D", "AddFullyConnected", "AddMean", "AddSoftmax"]
    _, header = c_array(converted("resnet", "int8"), "g_model")
    assert "if (resolver.AddConv2D() != kTfLiteOk) return kTfLiteError;" in header
    assert "MicroMutableOpResolver<G_MODEL_OP_COUNT>" in header


def test_bad_array_name_and_custom_op_are_refused(converted, fixtures_dir):
    with pytest.raises(ModelError, match="C identifier"):
        c_array(converted("resnet", "int8"), "2bad-name")
    with pytest.raises(ModelError, match="FlexErf"):
        c_array((fixtures_dir / "flex_erf.tflite").read_bytes(), "g_model")
