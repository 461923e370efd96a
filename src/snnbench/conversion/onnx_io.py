"""Read a feed-forward ONNX classifier into populations and the linear paths between them, and
store the result: the public face of :mod:`snnbench.conversion.graph` (the model as stages and
paths), :mod:`snnbench.conversion.onnx_ops` (reading ONNX; the supported ops and MaxPool routes
are listed there) and :mod:`snnbench.conversion.spec_files` (the NPZ + JSON files)."""

from snnbench.conversion.graph import INPUT, ConvertedModel, LinearOp, Path, Stage, fan_out, sum_paths
from snnbench.conversion.onnx_graph import SUPPORTED_OPS
from snnbench.conversion.onnx_ops import MAXPOOL_ROUTES, extract
from snnbench.conversion.spec_files import SPEC_FILE, SPEC_FORMAT, WEIGHTS_FILE, load, load_any, save

__all__ = ["INPUT", "ConvertedModel", "LinearOp", "Path", "Stage", "fan_out", "sum_paths", "SUPPORTED_OPS",
           "MAXPOOL_ROUTES", "extract", "SPEC_FILE", "SPEC_FORMAT", "WEIGHTS_FILE", "load", "load_any", "save"]
