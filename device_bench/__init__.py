"""device_bench: benchmark .tflite files with LiteRT + XNNPACK, without TensorFlow.

Runs on the host, on aarch64 under QEMU, with the TFLM interpreter, and on boards over ssh. Only numpy and
ai-edge-litert are needed (see requirements.txt); importing this package never imports TensorFlow.
"""

__version__ = "0.1.0"
