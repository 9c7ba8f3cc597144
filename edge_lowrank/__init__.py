"""edge-lowrank: low-rank rewrites of Keras CNNs, exported to TFLite and measured on the target.

Importing this package is cheap: it imports neither TensorFlow nor Keras. The heavy modules
(`edge_lowrank.rewrite`, `converters`) import them when they are used.
"""

__version__ = "0.1.0"

from edge_lowrank.errors import EdgeLowrankError  # noqa: F401
