"""Export a trained torch model to ONNX (fixed opset, dynamic batch axis)."""

from pathlib import Path

import torch

OPSET = 17
ONNX_FILE = "model.onnx"  # a model folder's ONNX file (a trained model's cache folder, a prepared copy)


def export_onnx(model: torch.nn.Module, n_features: int | tuple, path: Path) -> Path:
    shape = (1, n_features) if isinstance(n_features, int) else (1, *n_features)
    model = model.to("cpu").eval()
    torch.onnx.export(model, torch.zeros(shape), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=OPSET, dynamo=False)
    return Path(path)


def onnx_file(source) -> Path:
    """The ONNX file ``source`` names: itself, or a model folder's ``model.onnx``."""
    path = Path(source)
    return path / ONNX_FILE if path.is_dir() else path
