"""Low-rank factorizations of conv and Dense kernels in pure numpy (and tensorly for CP). No Keras here.

Each function takes a kernel (HWIO for convs, (in, out) for Dense), ranks and an optional bias, and returns a
frozen result that unpacks into its factor kernels and bias, rebuilds the kernel (`to_kernel()`) and reports
`relative_error` and `n_params`.
"""

from edge_lowrank.factorize._base import FactorizationError, relative_error
from edge_lowrank.factorize.channel import ChannelFactors, channel
from edge_lowrank.factorize.cp import CPFactors, cp
from edge_lowrank.factorize.output import OutputFactors, output
from edge_lowrank.factorize.spatial import SpatialFactors, spatial
from edge_lowrank.factorize.svd import SVDFactors, weight_svd
from edge_lowrank.factorize.tucker2 import Tucker2Factors, tucker2
from edge_lowrank.factorize.tucker2_spatial import Tucker2SpatialFactors, tucker2_spatial

__all__ = ["FactorizationError", "relative_error", "ChannelFactors", "channel", "CPFactors", "cp",
           "OutputFactors", "output", "SpatialFactors", "spatial", "SVDFactors", "weight_svd",
           "Tucker2Factors", "tucker2", "Tucker2SpatialFactors", "tucker2_spatial"]
