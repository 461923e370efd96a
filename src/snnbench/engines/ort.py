"""Engine ``ort-dnn``: a feed-forward DNN in ONNX Runtime. Noise is inserted into a copy of the graph
(snnbench.conversion.onnx_noise) and, for the activity metrics, its hidden ReLU outputs are read as
extra graph outputs.
"""

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from snnbench.conversion.graph import INPUT
from snnbench.engines import ORT_DNN, register
from snnbench.errors import DataError, UnsupportedModelError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model
from snnbench.models.export import onnx_file


class OrtRunner:
    """One ONNX Runtime session run in batches (``predict(x, start=0) -> logits``); ``feeds(start, n)``
    adds extra inputs (e.g. noise) for samples ``start .. start + n``."""

    def __init__(self, model: str | Path | bytes, batch_size: int = 1000, intra_op_threads: int | None = None):
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise UnsupportedModelError(f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:200]}); "
                                        "check the .onnx file") from None
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        dims = [d if isinstance(d, int) and d > 0 else None for d in declared.shape]  # None: symbolic
        # the declared per-sample shape, e.g. (1, 28, 28) or (784,); a static batch size is kept to exactly
        self.static_batch, self.input_shape = dims[0], tuple(dims[1:])
        self.batch_size = self.static_batch or batch_size
        self.feeds: Callable[[int, int], dict] | None = None

    def shaped(self, x: np.ndarray) -> np.ndarray:
        """``x`` (flat ``(n, features)`` or already so) in the model's declared input layout, as float32."""
        x = np.asarray(x, dtype=np.float32)
        if None in self.input_shape or x.shape[1:] == self.input_shape:  # symbolic dimensions: as given
            return x
        features = int(np.prod(self.input_shape))
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != features:
            raise DataError(f"the model's input {self.input_name!r} takes {features} features per sample "
                            f"(shape {self.input_shape}) but got inputs of shape {x.shape}; pass an "
                            f"(n, {features}) array")
        return x.reshape(len(x), *self.input_shape)

    def predict(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        return self.predict_outputs(x, start)[0]

    def predict_outputs(self, x: np.ndarray, start: int = 0) -> list[np.ndarray]:
        """Every graph output (the logits first), concatenated over batches."""
        batches = []
        for a in range(0, len(x), self.batch_size):
            xb = np.ascontiguousarray(self.shaped(x[a: a + self.batch_size]))
            n = len(xb)
            if self.static_batch and n < self.static_batch:  # the last batch, padded with zeros
                xb = np.concatenate([xb, np.zeros((self.static_batch - n, *xb.shape[1:]), xb.dtype)])
            extra = self.feeds(start + a, len(xb)) if self.feeds else {}
            outputs = self.session.run(None, {self.input_name: xb, **extra})
            # an unbatched graph's inner tensors (given a batch axis of 1 only at its input) have none
            batches.append([(out if len(out) == len(xb) else out.reshape(len(xb), -1))[:n] for out in outputs])
        if not batches:
            return [np.zeros((0, 0), np.float32)]
        return [np.concatenate(parts) for parts in zip(*batches)]


class OrtModel(Model):
    """A feed-forward ONNX DNN; with ``activity``, its ReLU outputs give the activity (nonzero
    activations, effective MACs), else the graph runs as it is (for timing)."""
    engine = ORT_DNN

    def __init__(self, onnx_path, batch_size: int = 1000, threads: int | None = None, activity: bool = True):
        self.path = Path(onnx_path)
        self.batch_size, self.threads, self.activity = batch_size, threads, activity
        self._runners = {}
        if activity:  # weights and fan-outs; unsupported ops fail here
            self._fan_outs = [self.converted.fan_out(i) for i in range(INPUT, len(self.converted.hidden))]

    @cached_property
    def converted(self):
        """The network's layers (one population per ONNX Relu: MaxPool read as its window's
        connectivity, not as the exact route's extra populations)."""
        from snnbench.conversion import onnx_ops

        return onnx_ops.extract(self.path, maxpool="average")

    def _runner(self, position: str):
        """A runner of the graph with noise inputs at ``position`` (and every hidden activation as an
        output, with ``activity``), and the noisy graph."""
        if position not in self._runners:
            import onnx
            from onnx import helper

            from snnbench.conversion.onnx_noise import add_noise, hidden_activations

            graph = add_noise(self.path, position) if position != "none" else None
            if graph is None and not self.activity:
                source = self.path
            else:
                proto = graph.model if graph else onnx.load(str(self.path))
                if self.activity:
                    hidden = [n.output[0] for n in hidden_activations(proto)]
                    proto.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in hidden)
                source = proto.SerializeToString()
            self._runners[position] = (OrtRunner(source, self.batch_size, self.threads), graph)
        return self._runners[position]

    def predict(self, x, noise=CLEAN, start=0):
        runner, graph = self._runner(noise.position if noise.active else "none")
        if graph is not None:
            runner.feeds = graph.feeds(noise)
        outputs = runner.predict_outputs(x, start)
        if not self.activity:
            self.last_activity = None
            return outputs[0]
        logits, hidden = outputs[0], [h.reshape(len(x), -1) for h in outputs[1:]]
        nonzero = [h != 0 for h in hidden]
        macs = float(((np.asarray(x) != 0) @ self._fan_outs[0]).sum())
        macs += sum(float((a @ f).sum()) for a, f in zip(nonzero, self._fan_outs[1:]))
        active = float(sum(a.sum() for a in nonzero))
        self.last_activity = M.Activity(len(x), 1, sum(h.shape[1] for h in hidden), active, active, macs, 0.0,
                                        0.0, float(self.converted.macs()))
        return logits


@register(ORT_DNN)
def build(artifact, batch_size: int = 1000, threads: int | None = None, activity: bool = True) -> OrtModel:
    return OrtModel(onnx_file(artifact), batch_size, threads, activity)
