"""A converted model's files: ``weights.npz`` (every array) and ``spec.json`` (the graph of
:mod:`snnbench.conversion.graph`), and :func:`load_any`, which also reads an ONNX file
(:func:`snnbench.conversion.onnx_ops.extract`).

Format ``snnbench-layers/3`` stores each distinct op once (conv ops with their pads, groups and
dilations) and each stage with its paths and, for a Clip layer, its upper bound. Formats /1 (a chain
of stages, each a list of ops with their biases) and /2 (no pads, groups, dilations or bounds) are read too.
"""

import json
from pathlib import Path

import numpy as np
import torch

from snnbench.conversion.graph import ConvertedModel, LinearOp, LinearPath, Stage
from snnbench.conversion.onnx_ops import extract
from snnbench.errors import DataError
from snnbench.models.export import ONNX_FILE

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"
SPEC_FORMAT = "snnbench-layers/3"
READ_FORMATS = ("snnbench-layers/1", "snnbench-layers/2", SPEC_FORMAT)
_OP_FIELDS = ("kernel", "strides", "offset", "pads", "dilations")


def save(converted: ConvertedModel, folder) -> Path:
    """Write ``weights.npz`` and ``spec.json`` into ``folder`` (ops shared by paths stored once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, ops, stages = {}, [], []
    number = {id(op): i for i, op in enumerate(converted.linear_ops())}
    for i, op in enumerate(converted.linear_ops()):
        entry = {"kind": op.kind, "in_shape": list(op.in_shape), "out_shape": list(op.out_shape),
                 "padding": op.padding, "groups": op.groups, **{k: list(getattr(op, k)) for k in _OP_FIELDS}}
        for name in ("weight", "bias", "index"):
            if getattr(op, name) is not None:
                entry[name] = f"op{i}.{name}"
                arrays[entry[name]] = getattr(op, name)
        ops.append(entry)
    for i, stage in enumerate(converted.stages):
        arrays[f"stage{i}.bias"] = stage.bias
        stages.append({"name": stage.name, "activation": "relu" if stage.activation else None,
                       "upper": stage.upper, "shape": list(stage.shape), "bias": f"stage{i}.bias",
                       "paths": [{"source": p.source, "ops": [number[id(op)] for op in p.ops], "scale": p.scale}
                                 for p in stage.paths]})
    spec = {"format": SPEC_FORMAT, "input_shape": list(converted.input_shape), "source": converted.source,
            "approximations": list(converted.approximations), "ops": ops, "stages": stages}
    np.savez(folder / WEIGHTS_FILE, **arrays)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    return folder


def _op_from_entry(entry: dict, arrays) -> LinearOp:
    return LinearOp(entry["kind"], tuple(entry["in_shape"]), tuple(entry["out_shape"]),
                    arrays[entry["weight"]] if "weight" in entry else None,
                    arrays[entry["bias"]] if "bias" in entry else None,
                    index=arrays[entry["index"]] if "index" in entry else None,
                    padding=entry["padding"], groups=entry.get("groups", 1),
                    **{k: tuple(entry[k]) for k in _OP_FIELDS if k in entry})


def _chain_stage(index: int, ops: list, activation: bool) -> Stage:
    """A stage of a format-1 chain: its ops with their biases, from the stage before it."""
    h = torch.zeros(1, ops[0].size_in, dtype=torch.float64)
    for op in ops:
        h = op.apply(h)
    return Stage([LinearPath(index - 1, ops)], h.numpy()[0], activation, ops[-1].out_shape)


def load(folder) -> ConvertedModel:
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(f"{folder} has no {SPEC_FILE} + {WEIGHTS_FILE}; write them with "
                        "snnbench.conversion.converted_files.save")
    spec = json.loads((folder / SPEC_FILE).read_text())
    if spec.get("format") not in READ_FORMATS:
        raise DataError(f"{folder / SPEC_FILE} has format {spec.get('format')!r}; this version reads "
                        f"{', '.join(READ_FORMATS)} (convert the ONNX model again)")
    with np.load(folder / WEIGHTS_FILE) as arrays:
        if spec["format"] == "snnbench-layers/1":
            stages = [_chain_stage(i, [_op_from_entry(o, arrays) for o in s["ops"]], s["activation"] == "relu")
                      for i, s in enumerate(spec["stages"])]
        else:
            ops = [_op_from_entry(o, arrays) for o in spec["ops"]]
            stages = [Stage([LinearPath(p["source"], [ops[k] for k in p["ops"]], p["scale"]) for p in s["paths"]],
                            arrays[s["bias"]], s["activation"] == "relu", tuple(s["shape"]), s["name"],
                            upper=s.get("upper"))
                      for s in spec["stages"]]
    return ConvertedModel(tuple(spec["input_shape"]), stages, spec.get("source", ""),
                          spec.get("approximations", []))


def load_any(source, maxpool: str = "exact") -> ConvertedModel:
    """A ConvertedModel from itself, an .onnx file, or a folder with model.onnx or weights + spec
    (``maxpool``: the MaxPool route when an ONNX file is read)."""
    if isinstance(source, ConvertedModel):
        return source
    path = Path(source)
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            return load(path)
        if (path / ONNX_FILE).is_file():
            return extract(path / ONNX_FILE, maxpool)
        raise DataError(f"{path} holds neither {ONNX_FILE} nor {SPEC_FILE} + {WEIGHTS_FILE}")
    return extract(path, maxpool)
